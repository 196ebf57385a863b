// Next.js App Router: `next build` of this app (app/layout.tsx -> app/providers.tsx, a
// Server Component page importing realtime-bridge/react, a client component with
// useRealtimeMessages), then `next start` on a loopback port: the page's HTML holds the
// hooks in their initial state (server render: no connection yet). A second page, app/url/,
// uses realtime-bridge/url/react: its .wasm must come out of the build as a static file.
import { spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';

const appDir = dirname(fileURLToPath(import.meta.url));
const next = `${appDir}/node_modules/.bin/next`;
const env = { ...process.env, NEXT_TELEMETRY_DISABLED: '1', NODE_ENV: 'production' };

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

test('next build', { timeout: 240_000 }, () => {
  const r = spawnSync(next, ['build'], { cwd: appDir, env, encoding: 'utf8' });
  if (r.status !== 0) console.log(r.stdout, r.stderr);
  assert.equal(r.status, 0, 'next build failed');
});

let server;
after(() => {
  if (server && server.exitCode === null) server.kill('SIGTERM');
});

test('next start serves the page with the hooks in their initial state', { timeout: 90_000 }, async () => {
  const port = await freePort();
  let output = '';
  server = spawn(next, ['start', '-H', '127.0.0.1', '-p', String(port)], { cwd: appDir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  server.stdout.on('data', (d) => (output += d));
  server.stderr.on('data', (d) => (output += d));
  const deadline = Date.now() + 60_000;
  let html;
  while (!html) {
    assert.equal(server.exitCode, null, `next start exited: ${output}`);
    assert.ok(Date.now() < deadline, `next start did not answer: ${output}`);
    try {
      const res = await fetch(`http://127.0.0.1:${port}/`);
      assert.equal(res.status, 200);
      html = await res.text();
    } catch (e) {
      if (e instanceof assert.AssertionError) throw e;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  const text = html.replaceAll('<!-- -->', '');
  assert.match(text, /<p id="inbox" data-status="connecting">inbox-marker: not-connected, 0 events<\/p>/);
});

test('realtime-bridge/url/react: next build (Turbopack) emits the .wasm as a static file, served as application/wasm; the page renders its initial state', { timeout: 30_000 }, async () => {
  const media = join(appDir, '.next', 'static', 'media');
  const wasm = existsSync(media) ? readdirSync(media).filter((f) => f.endsWith('.wasm')) : [];
  assert.equal(wasm.length, 1, `a .wasm in .next/static/media: ${wasm}`);
  assert.ok(server && server.exitCode === null, 'next start runs (the previous test)');
  const port = server.spawnargs[server.spawnargs.indexOf('-p') + 1];
  const res = await fetch(`http://127.0.0.1:${port}/url`);
  assert.equal(res.status, 200);
  const text = (await res.text()).replaceAll('<!-- -->', '');
  assert.match(text, /<p id="feed" data-status="connecting">url-feed-marker: 0 events<\/p>/);
  const served = await fetch(`http://127.0.0.1:${port}/_next/static/media/${wasm[0]}`);
  assert.equal(served.status, 200);
  assert.equal(served.headers.get('content-type'), 'application/wasm');
});
