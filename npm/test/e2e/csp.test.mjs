// The package under a strict Content-Security-Policy, in headless Chromium, with a real bridge
// and nats-server:
//   * the Vite build of url/ (realtime-bridge/url/react) has the .wasm as a separate asset and
//     no base64 copy of it in its JavaScript;
//   * served with `script-src 'self' 'wasm-unsafe-eval'` (nothing else: no 'unsafe-eval', no
//     inline script) it loads the .wasm and shows events, with the core in its worker (started
//     from its own file); so does the embedded page (dist/), whose blob: worker that policy
//     refuses: the core runs on the page, and with `worker-src blob:` added, in the worker;
//   * two tabs of one user share one stream, and only the tab holding it downloads the .wasm;
//   * without 'wasm-unsafe-eval' the same page shows the failure (error wasm_load_failed,
//     status closed): proof that the header is applied, and that the app hears of it;
//   * a server that sends the .wasm with a wrong Content-Type still works (the fallback);
//   * Vite's dev server, configured as the README says, serves the .wasm too.
// Build both pages first: npx vite build && npx vite build --config vite.url.config.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join, dirname, extname } from 'node:path';
import { tmpdir } from 'node:os';
import { gzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { createServer as createViteServer } from 'vite';
import { startNats, startBridge, token, producer, openStreams } from '../helpers.mjs';
import { chromiumPath, CHROMIUM_ARGS } from '../chromium.mjs';
import { serveFiles } from './static.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const urlDist = join(here, 'dist-url');
const embeddedDist = join(here, 'dist');
const shippedWasm = join(here, '..', '..', 'dist', 'wasm', 'realtime_bridge_sdk_bg.wasm');

/**
 * The CSP of each mode: `strict` allows wasm compilation and nothing more; `nowasm` does not;
 * `blob` is `strict` plus workers from blob: URLs (the embedded entry's worker).
 */
function policy(mode, bridgeOrigin) {
  const script = mode === 'nowasm' ? "script-src 'self'" : "script-src 'self' 'wasm-unsafe-eval'";
  const worker = mode === 'blob' ? "; worker-src 'self' blob:" : '';
  return `default-src 'self'; ${script}; connect-src 'self' ${bridgeOrigin}${worker}`;
}

/**
 * Serves the url/ page under /url/<mode>/ (strict, nowasm, wrongmime: the .wasm as
 * application/octet-stream) and the embedded page (dist/) at /, every answer with its mode's
 * Content-Security-Policy header (the embedded page: strict).
 */
function servePages() {
  const served = [];
  // Set once the bridge listens (it needs the page's origin first, for CORS).
  const state = { bridgeOrigin: '' };
  const server = serveFiles((path) => {
    if (path === '/favicon.ico') return { body: '', type: 'image/x-icon' };
    const m = path.match(/^\/url\/(strict|nowasm|wrongmime)(\/.*)$/);
    const b = path.match(/^\/embedded-(blob|nowasm)(\/.*)$/);
    const [root, mode, rel] = m ? [urlDist, m[1], m[2]] : b ? [embeddedDist, b[1], b[2]] : [embeddedDist, 'strict', path];
    const file = join(root, rel.endsWith('/') ? `${rel}index.html` : rel);
    if (existsSync(file)) served.push(path); // what was really served, not a 404
    const headers = { 'content-security-policy': policy(mode, state.bridgeOrigin) };
    if (mode === 'wrongmime' && extname(file) === '.wasm') headers['content-type'] = 'application/octet-stream';
    return { root, file, headers };
  });
  return server.then((s) => ({ server: s, served, state }));
}

let nats;
let pub;
let bridge;
let web;
let origin;
let context;
let userDataDir;

before(async () => {
  for (const d of [urlDist, embeddedDist]) assert.ok(existsSync(join(d, 'index.html')), `build ${d} first (see the top of this file)`);
  nats = await startNats();
  pub = await producer(nats.url);
  web = await servePages();
  origin = `http://127.0.0.1:${web.server.address().port}`;
  bridge = await startBridge({ natsUrl: nats.url, args: ['--cors-origin', origin] });
  web.state.bridgeOrigin = bridge.url;
  userDataDir = mkdtempSync(join(tmpdir(), 'rb-sdk-csp-'));
  context = await chromium.launchPersistentContext(userDataDir, { executablePath: chromiumPath(), headless: true, args: CHROMIUM_ARGS });
});

after(async () => {
  await context?.close();
  await bridge?.kill('SIGTERM');
  await pub?.close();
  await nats?.stop();
  web?.server.closeAllConnections();
  web?.server.close();
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
});

/** Opens `path` for `user`; collects what the page logs as errors and every response body type. */
async function open(path, user) {
  const page = await context.newPage();
  const errors = [];
  const warnings = [];
  page.on('console', (m) => (m.type() === 'error' ? errors : m.type() === 'warning' ? warnings : []).push(m.text()));
  const uncaught = [];
  page.on('pageerror', (e) => {
    errors.push(String(e));
    uncaught.push(String(e));
  });
  const q = new URLSearchParams({ bridge: bridge.url, user, token: token(user) });
  await page.goto(`${origin}${path}?${q}`);
  return { page, errors, warnings, uncaught };
}

test('the Vite build of realtime-bridge/url/react: the .wasm is a separate asset, and no JavaScript holds it in base64', () => {
  const assets = readdirSync(join(urlDist, 'assets'));
  const wasm = assets.filter((f) => f.endsWith('.wasm'));
  assert.equal(wasm.length, 1, assets.join(' '));
  assert.deepEqual(readFileSync(join(urlDist, 'assets', wasm[0])), readFileSync(shippedWasm));
  const js = assets.filter((f) => f.endsWith('.js'));
  assert.ok(js.length > 0);
  // "\0asm\x01\0\0\0" in base64, and a run of the real bytes' base64 from their middle.
  const b64 = readFileSync(shippedWasm).toString('base64');
  const probe = b64.slice(b64.length / 2, b64.length / 2 + 64);
  let jsGzip = 0;
  for (const f of js) {
    const code = readFileSync(join(urlDist, 'assets', f));
    const text = code.toString('utf8');
    assert.ok(!text.includes('AGFzbQEAAAA') && !text.includes(probe), `${f} holds the .wasm in base64`);
    jsGzip += gzipSync(code, { level: 9 }).length;
  }
  // The embedded page (dist/) does hold it: the probe finds it where it is.
  const embeddedJs = readdirSync(join(embeddedDist, 'assets')).filter((f) => f.endsWith('.js'));
  assert.ok(embeddedJs.some((f) => readFileSync(join(embeddedDist, 'assets', f), 'utf8').includes(probe)), 'the probe finds the embedded copy');
  console.log(`url page: JavaScript ${jsGzip} B gzipped (React included), .wasm ${gzipSync(readFileSync(shippedWasm), { level: 9 }).length} B gzipped, separate`);
});

test("under script-src 'self' 'wasm-unsafe-eval' the url page loads the .wasm by URL and shows events from the bridge", async () => {
  const user = 'csp-strict';
  const { page, errors } = await open('/url/strict/', user);
  await page.locator('#status', { hasText: 'open' }).waitFor({ timeout: 15000 });
  await pub.send(user, 'message_new', { text: 'sous CSP stricte' });
  await page.getByText('sous CSP stricte').waitFor({ timeout: 10000 });
  assert.equal(await page.locator('#error-code').textContent(), '-');
  assert.equal(await page.locator('#violations li').count(), 0);
  assert.ok(web.served.some((p) => /^\/url\/strict\/assets\/.*\.wasm$/.test(p)), 'the .wasm was fetched by URL');
  // The worker came from its own file (same origin: 'self' allows it), and runs the core.
  assert.ok(web.served.some((p) => /^\/url\/strict\/assets\/realtime_bridge_worker.*\.js$/.test(p)), web.served.join(' '));
  assert.equal(await page.locator('#core').textContent(), 'worker');
  assert.deepEqual(errors, []);
  await page.close();
});

test('two tabs of one user: one stream, and only the tab that holds it downloads the .wasm', async () => {
  const user = 'csp-tabs';
  const wasmFetches = () => web.served.filter((p) => /^\/url\/strict\/assets\/.*\.wasm$/.test(p)).length;
  const before = wasmFetches();
  const first = await open('/url/strict/', user);
  await first.page.locator('#status', { hasText: 'open' }).waitFor({ timeout: 15000 });
  const second = await open('/url/strict/', user);
  await second.page.locator('#status', { hasText: 'open' }).waitFor({ timeout: 15000 });
  await pub.send(user, 'message_new', { text: 'deux onglets' });
  for (const t of [first, second]) await t.page.getByText('deux onglets').waitFor({ timeout: 10000 });
  assert.equal(await openStreams(bridge.url), 1);
  assert.equal(wasmFetches() - before, 1, 'the following tab fetched the .wasm');
  await first.page.close();
  await second.page.close();
});

test("without 'wasm-unsafe-eval' the same page shows the failure: error wasm_load_failed, status closed", async () => {
  const user = 'csp-nowasm';
  const { page } = await open('/url/nowasm/', user);
  await page.locator('#status', { hasText: 'closed' }).waitFor({ timeout: 15000 });
  assert.equal(await page.locator('#error-code').textContent(), 'wasm_load_failed');
  const message = await page.locator('#error').textContent();
  assert.match(message, /could not be loaded \(a Content-Security-Policy must allow 'wasm-unsafe-eval' in script-src\)/);
  assert.match(message, /CompileError/);
  // The browser reported the blocked compilation as a violation of script-src.
  await page.locator('#violations li', { hasText: 'script-src' }).first().waitFor({ timeout: 5000 });
  await page.close();
});

test('a .wasm served as application/octet-stream still loads (instantiateStreaming fails, arrayBuffer + instantiate)', async () => {
  const user = 'csp-wrongmime';
  const { page, warnings } = await open('/url/wrongmime/', user);
  await page.locator('#status', { hasText: 'open' }).waitFor({ timeout: 15000 });
  // The glue says why it took the slower path: the streaming compile did fail.
  assert.ok(warnings.some((w) => /instantiateStreaming.*application\/wasm/s.test(w)), warnings.join('\n'));
  await pub.send(user, 'message_new', { text: 'mauvais type MIME' });
  await page.getByText('mauvais type MIME').waitFor({ timeout: 10000 });
  await page.close();
});

test("the embedded page (realtime-bridge/react) also needs nothing more than 'wasm-unsafe-eval'; its worker (blob:) is refused and the page runs the core", async () => {
  const user = 'csp-embedded';
  const { page, errors, warnings } = await open('/', user);
  await page.locator('#status', { hasText: 'open' }).waitFor({ timeout: 15000 });
  await pub.send(user, 'message_new', { text: 'intégré sous CSP' });
  await page.getByText('intégré sous CSP').waitFor({ timeout: 10000 });
  assert.equal(await page.locator('#core').textContent(), 'page');
  // What the app's console shows: the browser's refusal, and the package saying what it did
  // (this test page's own inline style, refused too, is not the package's).
  const ours = errors.filter((e) => !/^Applying inline style/.test(e));
  assert.ok(ours.length > 0 && ours.every((e) => /Creating a worker from 'blob:.*violates/.test(e)), errors.join('\n'));
  assert.ok(warnings.some((w) => /the core's worker failed .* connections run on the page/.test(w)), warnings.join('\n'));
  await page.close();
});

test("the embedded page with worker-src blob: added runs the core in its worker, with nothing refused", async () => {
  const user = 'csp-embedded-blob';
  const { page, errors, warnings } = await open('/embedded-blob/', user);
  await page.locator('#status', { hasText: 'open' }).waitFor({ timeout: 15000 });
  await pub.send(user, 'message_new', { text: 'dans le worker' });
  await page.getByText('dans le worker').waitFor({ timeout: 10000 });
  assert.equal(await page.locator('#core').textContent(), 'worker');
  assert.deepEqual(errors.filter((e) => !/^Applying inline style/.test(e)), []);
  assert.ok(!warnings.some((w) => /worker/.test(w)), warnings.join('\n'));
  await page.close();
});

test("the embedded page without 'wasm-unsafe-eval': its worker refused, the page's core cannot compile either: error wasm_load_failed, status closed", async () => {
  const user = 'csp-embedded-nowasm';
  const { page, uncaught } = await open('/embedded-nowasm/', user);
  await page.locator('#status', { hasText: 'closed' }).waitFor({ timeout: 15000 });
  const message = await page.locator('#error').textContent();
  assert.match(message, /could not be loaded \(a Content-Security-Policy must allow 'wasm-unsafe-eval' in script-src\)/);
  // Reported to the app, not thrown into the page from the worker's error handler.
  assert.deepEqual(uncaught, []);
  await page.close();
});

test("Vite's dev server with optimizeDeps.exclude (the README's setting): the page loads the .wasm and connects", async () => {
  // Pre-bundling would move the package's module away from its .wasm (the URL would miss);
  // the package is linked here, which Vite never pre-bundles, so `include` forces it to first
  // show that the setting is what makes it work.
  const start = async (optimizeDeps) => {
    const server = await createViteServer({
      configFile: join(here, 'vite.url.config.mjs'),
      logLevel: 'silent',
      optimizeDeps: { force: true, ...optimizeDeps },
      // The linked package lives outside this app's folder.
      server: { host: '127.0.0.1', port: 0, fs: { allow: [join(here, '..', '..')] } },
    });
    await server.listen();
    return server;
  };
  const statusWith = async (optimizeDeps, user) => {
    const server = await start(optimizeDeps);
    try {
      const devOrigin = `http://127.0.0.1:${server.httpServer.address().port}`;
      const page = await context.newPage();
      const q = new URLSearchParams({ bridge: bridge.url, user, token: token(user) });
      await page.goto(`${devOrigin}/?${q}`);
      // No CSP here, and this origin is not in the bridge's CORS list: 'open' is not reachable,
      // but loading the core is: 'reconnecting' (CORS refused) or 'closed' (no core).
      await page.locator('#status', { hasText: /reconnecting|closed/ }).waitFor({ timeout: 30000 });
      const result = [await page.locator('#status').textContent(), await page.locator('#error-code').textContent()];
      await page.close();
      return result;
    } finally {
      await server.close();
    }
  };
  assert.deepEqual(await statusWith({ include: ['realtime-bridge/url/react'] }, 'dev-prebundled'), ['closed', 'wasm_load_failed']);
  const [status, code] = await statusWith({ exclude: ['realtime-bridge'] }, 'dev-excluded');
  assert.equal(status, 'reconnecting');
  assert.notEqual(code, 'wasm_load_failed');
});
