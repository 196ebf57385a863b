// A loopback file server for the browser tests: each test says where a path's file is (and
// which extra headers go with it); this serves it with its content type, or a 404 for anything
// unmapped or outside its root.
import { createServer } from 'node:http';
import { existsSync, readFileSync } from 'node:fs';
import { extname, normalize } from 'node:path';

export const CONTENT_TYPES = {
  '.html': 'text/html',
  '.js': 'text/javascript',
  '.css': 'text/css',
  '.wasm': 'application/wasm',
};

/**
 * `route(path)` (the decoded URL path) returns `{ root, file, headers? }` (`file` a path under
 * `root`), `{ body, type }` for generated content, or null for a 404. Resolves to the listening
 * server on 127.0.0.1, on a free port.
 */
export function serveFiles(route) {
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    const r = route(path);
    if (r && 'body' in r) {
      res.writeHead(200, { 'content-type': r.type }).end(r.body);
      return;
    }
    const file = r && normalize(r.file);
    if (!r || !file.startsWith(r.root) || !existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': CONTENT_TYPES[extname(file)] ?? 'application/octet-stream', ...r.headers });
    res.end(readFileSync(file));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}
