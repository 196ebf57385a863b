#!/usr/bin/env node
// Serves the built demo (dist/, from `npm run build`) and its small API (api.mjs) on loopback.
//
//   RB_JWT_SECRET=... RB_URL=http://127.0.0.1:8080 node server/server.mjs
//
// Environment: RB_JWT_SECRET (required: the bridge's HS256 secret), RB_URL (the bridge, as the
// browser reaches it; default http://127.0.0.1:8080), NATS_URL (only shown in the page's hints),
// HOST (127.0.0.1; loopback only), PORT (5173; 0 picks a free one). Prints
// "demo listening on http://HOST:PORT" once it accepts connections.
import { createServer } from 'node:http';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, extname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createApi } from './api.mjs';

const dist = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist');
const host = process.env.HOST || '127.0.0.1';
const port = Number(process.env.PORT ?? 5173);

// The token endpoint signs for any user id: never expose it beyond this machine.
if (!/^(127\.\d+\.\d+\.\d+|localhost|::1|\[::1\])$/.test(host)) {
  console.error(`demo server: HOST=${host} is not a loopback address; this dev server signs tokens for anyone and only listens on loopback`);
  process.exit(64);
}
if (!existsSync(join(dist, 'index.html'))) {
  console.error(`demo server: ${dist}/index.html is missing: run \`npm run build\` in examples/react-demo first`);
  process.exit(66);
}

let api;
try {
  api = createApi({
    secret: process.env.RB_JWT_SECRET ?? '',
    bridgeUrl: process.env.RB_URL || 'http://127.0.0.1:8080',
    natsUrl: process.env.NATS_URL || 'nats://127.0.0.1:4222',
  });
} catch (e) {
  console.error(`demo server: ${e.message}`);
  process.exit(64);
}

const types = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
};

function serveStatic(req, res) {
  const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
  let file = normalize(join(dist, path));
  if (!file.startsWith(dist + sep) && file !== dist) {
    res.writeHead(403).end();
    return;
  }
  // Single-page app: unknown paths get index.html.
  if (!existsSync(file) || statSync(file).isDirectory()) file = join(dist, 'index.html');
  const hashed = file.includes(`${sep}assets${sep}`);
  res.writeHead(200, {
    'content-type': types[extname(file)] ?? 'application/octet-stream',
    'cache-control': hashed ? 'public, max-age=31536000, immutable' : 'no-cache',
  });
  res.end(req.method === 'HEAD' ? undefined : readFileSync(file));
}

const server = createServer((req, res) => {
  api(req, res, () => serveStatic(req, res));
});
server.on('error', (e) => {
  if (e.code === 'EADDRINUSE') {
    console.error(`demo server: port ${port} on ${host} is already in use (set PORT to another one)`);
  } else {
    console.error(`demo server: ${e.message}`);
  }
  process.exit(1);
});
server.listen(port, host, () => {
  const a = server.address();
  const shown = a.family === 'IPv6' ? `[${a.address}]` : a.address;
  console.log(`demo listening on http://${shown}:${a.port}`);
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  });
}
