// The core in its dedicated worker (npm/src/worker-host.ts, worker.ts; docs/protocol.md §6.5):
// what crosses the message boundary must behave as the page's own core does. Headless Chromium
// (Debian's, driven by playwright-core), the package's dist/ loaded as ES modules from a
// loopback server, a real bridge in history mode on a real nats-server with JetStream; events
// published with JetStream publish, so each one's envelope id is known from its ack. Every wait
// is bounded.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { token, openStreams, waitFor } from '../helpers.mjs';
import { startBrowserBridge } from './harness.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const dist = resolve(here, '..', '..', 'dist');

// The page: the package, and `rb.record()`, which gives a callback and options that keep what
// a subscription is told (events as {id, event, k}, statuses, errors as data, resets).
const PAGE = `<!doctype html>
<meta charset="utf-8"><title>worker</title>
<script type="module">
import * as sdk from '/dist/embedded.js';
window.sdk = sdk;
window.rb = {
  record(extra = {}) {
    const r = { got: [], statuses: [], errors: [], resets: [] };
    r.cb = (e) => r.got.push({ id: e.id, event: e.event, k: e.data && e.data.k });
    r.opts = {
      onStatus: (s) => r.statuses.push(s),
      onError: (e) => r.errors.push({ name: e.name, message: e.message, code: e.code, final: e.final }),
      onReset: (x) => r.resets.push(x),
      ...extra,
    };
    return r;
  },
};
</script>`;

function route(path) {
  if (path === '/') return { body: PAGE, type: 'text/html' };
  if (path === '/favicon.ico') return { body: '', type: 'image/x-icon' };
  if (path.startsWith('/dist/')) return { root: dist, file: join(dist, path.slice('/dist/'.length)) };
  return null;
}

let bridge;
let pub;
let origin;
let context;
let env;

before(async () => {
  assert.ok(existsSync(join(dist, 'index.js')), 'build the package first (node scripts/build.mjs)');
  env = await startBrowserBridge(route, 'worker');
  ({ bridge, pub, origin, context } = env);
});

after(async () => {
  await env?.close();
});

/** A new tab on the page; its console errors and warnings, and uncaught page errors, are kept. */
async function openPage() {
  const page = await context.newPage();
  const log = { errors: [], warnings: [] };
  page.on('console', (m) => (m.type() === 'error' ? log.errors : m.type() === 'warning' ? log.warnings : []).push(m.text()));
  page.on('pageerror', (e) => log.errors.push(String(e)));
  await page.goto(`${origin}/`);
  await page.waitForFunction(() => window.sdk && window.rb, null, { timeout: 15000 });
  return { page, log };
}

/** Waits (bounded) until `fn` evaluated in the page is truthy. */
const until = (page, fn, arg, what) =>
  page.waitForFunction(fn, arg, { timeout: 15000 }).catch((e) => {
    throw new Error(`${what}: ${e.message}`);
  });

/** Publishes keys (each acked: its sequence is its envelope id). */
async function publish(user, keys, event = 'message_new') {
  for (const k of keys) await pub.publish(user, event, k);
}

/** `got` holds each key of `keys` exactly once, each with its acked sequence as id, ids ascending. */
function exactlyOnce(got, user, keys) {
  const mine = got.filter((e) => keys.includes(e.k));
  assert.deepEqual(mine.map((e) => e.k), keys, 'each key once, in order');
  for (const e of mine) assert.equal(e.id, String(pub.acked.get(`${user}/${e.k}`)), `${e.k}: id is its sequence`);
}

test('the core runs in the worker: each event once, in order, with its cursor; one stream; the page never instantiates the core', async () => {
  const user = 'wk-basic';
  const { page, log } = await openPage();
  await page.evaluate(
    ([url, tok, user]) => {
      const r = (window.r = window.rb.record());
      window.sub = window.sdk.subscribe(user, null, r.cb, { url, token: tok, ...r.opts });
    },
    [bridge.url, token(user), user],
  );
  await until(page, () => window.sub.status === 'open', null, 'open');
  assert.equal(await page.evaluate(() => window.sdk.coreThread()), 'worker');
  assert.equal(page.workers().length, 1, 'one dedicated worker');
  const keys = Array.from({ length: 50 }, (_, i) => `k${i}`);
  await publish(user, keys);
  await until(page, (n) => window.r.got.length >= n, keys.length, '50 events');
  const s = await page.evaluate(() => ({ got: window.r.got, statuses: window.r.statuses, errors: window.r.errors, last: window.sub.lastEventId, mem: window.sdk.wasmMemoryBytes() }));
  exactlyOnce(s.got, user, keys);
  // The cursor `u:b` (docs/protocol.md §5.3): u is the last user event's sequence.
  assert.equal(s.last.split(':')[0], String(pub.acked.get(`${user}/k49`)), `lastEventId ${s.last}: the cursor after the last event`);
  assert.deepEqual(s.statuses, ['connecting', 'open']);
  assert.deepEqual(s.errors, []);
  assert.equal(s.mem, 0, "the page's own core was never instantiated");
  assert.equal(await openStreams(bridge.url), 1);
  await page.evaluate(() => window.sub.close());
  assert.equal(await page.evaluate(() => window.sub.status), 'closed');
  await waitFor(async () => (await openStreams(bridge.url)) === 0, { timeoutMs: 10000, what: 'the stream closed' });
  assert.deepEqual(log.errors, []);
  await page.close();
});

test('getToken runs on the page: asked once and its token reused by reconnect(); no token closes the subscription (unauthenticated)', async () => {
  const user = 'wk-token';
  const { page } = await openPage();
  await page.evaluate(
    ([url, tok, user]) => {
      window.asked = 0;
      const r = (window.r = window.rb.record());
      const getToken = async () => {
        window.asked++;
        return tok;
      };
      window.sub = window.sdk.subscribe(user, null, r.cb, { url, getToken, shareAcrossTabs: false, backoff: { initialMs: 50, maxMs: 200 }, ...r.opts });
    },
    [bridge.url, token(user), user],
  );
  await until(page, () => window.sub.status === 'open', null, 'open');
  await page.evaluate(() => window.sub.reconnect());
  await until(page, () => window.r.statuses.filter((s) => s === 'open').length === 2, null, 'open again after reconnect()');
  await publish(user, ['after-reconnect']);
  await until(page, () => window.r.got.length === 1, null, 'the event');
  assert.equal(await page.evaluate(() => window.asked), 1, 'getToken asked once: its token was reused');

  // Signed out: getToken gives null; the subscription ends, with the reason, instead of retrying.
  await page.evaluate(
    ([url, user]) => {
      const r = (window.out = window.rb.record());
      window.sdk.subscribe(user, null, r.cb, { url, getToken: () => null, ...r.opts });
    },
    [bridge.url, 'wk-signed-out'],
  );
  await until(page, () => window.out.statuses.includes('closed'), null, 'closed');
  const out = await page.evaluate(() => window.out);
  assert.equal(out.errors.length, 1, JSON.stringify(out.errors));
  assert.equal(out.errors[0].code, 'unauthenticated');
  assert.equal(out.errors[0].final, true);
  assert.equal(out.statuses.at(-1), 'closed');
  await page.evaluate(() => window.sub.close());
  await page.close();
});

test('callbacks: one that throws goes to its onError and the stream goes on; two subscriptions share one stream; close() is at once', async () => {
  const user = 'wk-callbacks';
  const { page } = await openPage();
  await page.evaluate(
    ([url, tok, user]) => {
      const a = (window.a = window.rb.record());
      const b = (window.b = window.rb.record());
      const throwing = (e) => {
        a.cb(e);
        if (e.data.k === 'a-boom') throw new Error('thrown by the callback');
      };
      window.subA = window.sdk.subscribe(user, ['ev_a'], throwing, { url, token: tok, ...a.opts });
      window.subB = window.sdk.subscribe(user, ['ev_b'], b.cb, { url, token: tok, ...b.opts });
    },
    [bridge.url, token(user), user],
  );
  await until(page, () => window.subA.status === 'open' && window.subB.status === 'open', null, 'both open');
  await publish(user, ['a-boom'], 'ev_a');
  await publish(user, ['b-1'], 'ev_b');
  await publish(user, ['a-2'], 'ev_a');
  await until(page, () => window.a.got.length === 2 && window.b.got.length === 1, null, 'a: 2 events, b: 1');
  let s = await page.evaluate(() => ({ a: window.a, b: window.b }));
  assert.deepEqual(s.a.got.map((e) => e.k), ['a-boom', 'a-2']);
  assert.deepEqual(s.b.got.map((e) => e.k), ['b-1']);
  assert.deepEqual(s.a.errors.map((e) => e.message), ['thrown by the callback']);
  assert.deepEqual(s.b.errors, []);
  // The second subscription grew the stream's names: a new stream, then the old one closed.
  await waitFor(async () => (await openStreams(bridge.url)) === 1, { timeoutMs: 10000, what: 'one stream for both' });

  // close(): 'closed' at once (synchronously), and nothing more for it; the other goes on.
  const closed = await page.evaluate(() => {
    window.subA.close();
    return [window.subA.status, window.a.statuses.at(-1)];
  });
  assert.deepEqual(closed, ['closed', 'closed']);
  await publish(user, ['a-3'], 'ev_a');
  await publish(user, ['b-4'], 'ev_b');
  await until(page, () => window.b.got.length === 2, null, 'b: the next event');
  s = await page.evaluate(() => ({ a: window.a, b: window.b }));
  assert.deepEqual(s.a.got.map((e) => e.k), ['a-boom', 'a-2'], 'nothing after close()');
  assert.equal(await openStreams(bridge.url), 1);
  await page.evaluate(() => window.subB.close());
  await page.close();
});

test('the worker crashes: the page takes the subscription over from its cursor, nothing lost, nothing twice', async () => {
  const user = 'wk-crash';
  const { page, log } = await openPage();
  await page.evaluate(
    ([url, tok, user]) => {
      const r = (window.r = window.rb.record());
      window.sub = window.sdk.subscribe(user, null, r.cb, { url, token: tok, backoff: { initialMs: 50, maxMs: 200 }, ...r.opts });
    },
    [bridge.url, token(user), user],
  );
  await until(page, () => window.sub.status === 'open', null, 'open');
  const before = ['c0', 'c1', 'c2', 'c3', 'c4'];
  await publish(user, before);
  await until(page, () => window.r.got.length === 5, null, '5 events');
  assert.equal(await page.evaluate(() => window.sdk.coreThread()), 'worker');
  // An exception nobody catches, in the worker: what a bug or a trap in the core would be.
  const [worker] = page.workers();
  await worker.evaluate(() => setTimeout(() => {
    throw new Error('crash test');
  }));
  await until(page, () => window.sdk.coreThread() === 'page', null, 'the core on the page');
  // Published while the page's core connects: the resume from the cursor brings them.
  const after = ['c5', 'c6', 'c7', 'c8', 'c9'];
  await publish(user, after);
  await until(page, () => window.r.got.length >= 10, null, '10 events');
  const s = await page.evaluate(() => ({ got: window.r.got, status: window.sub.status, errors: window.r.errors }));
  exactlyOnce(s.got, user, [...before, ...after]);
  assert.equal(s.got.length, 10);
  assert.equal(s.status, 'open');
  assert.ok(log.warnings.some((w) => /the core's worker failed \(.*crash test\); connections run on the page/.test(w)), log.warnings.join('\n'));
  // The terminated worker's stream is closed too (the bridge notices at its next write).
  await waitFor(async () => (await openStreams(bridge.url)) === 1, { timeoutMs: 20000, what: 'one stream left' });
  await page.evaluate(() => window.sub.close());
  await page.close();
});

test('worker: false runs the core on the page', async () => {
  const user = 'wk-off';
  const { page } = await openPage();
  await page.evaluate(
    ([url, tok, user]) => {
      const r = (window.r = window.rb.record());
      window.sub = window.sdk.subscribe(user, null, r.cb, { url, token: tok, worker: false, ...r.opts });
    },
    [bridge.url, token(user), user],
  );
  await until(page, () => window.sub.status === 'open', null, 'open');
  await publish(user, ['on-page']);
  await until(page, () => window.r.got.length === 1, null, 'the event');
  assert.equal(await page.evaluate(() => window.sdk.coreThread()), 'page');
  assert.ok((await page.evaluate(() => window.sdk.wasmMemoryBytes())) > 0);
  assert.equal(page.workers().length, 0);
  await page.evaluate(() => window.sub.close());
  await page.close();
});
