// realtime-bridge/url in plain Node against a real nats-server and bridge: the core is loaded
// asynchronously from the .wasm file, and `subscribe` returns at once in the meantime. The
// tests run in order in one process: the first one needs a core that is not loaded yet.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { load, subscribe, wasmMemoryBytes, isRealtimeError } from 'realtime-bridge/url';
import { startNats, startBridge, token, openStreams, producer, waitFor, collector, bounded } from '../helpers.mjs';

const wasmFile = new URL('../../dist/wasm/realtime_bridge_sdk_bg.wasm', import.meta.url);

let nats;
let bridge;
let pub;
const opened = new Set();

before(async () => {
  assert.ok(existsSync(wasmFile), 'build the package first (node scripts/build.mjs)');
  nats = await startNats();
  bridge = await startBridge({ natsUrl: nats.url });
  pub = await producer(nats.url);
});

after(async () => {
  for (const sub of opened) sub.close();
  await pub?.close();
  await bridge?.kill('SIGTERM');
  await nats?.stop();
});

test('a .wasm that cannot be loaded: the waiting subscription gets a final wasm_load_failed, then closed; one closed while waiting never connects', async () => {
  const user = 'node-url-fail';
  const loading = load(new URL('file:///nonexistent/realtime_bridge_sdk_bg.wasm'));
  const c = collector();
  const sub = subscribe(user, null, c.cb, { url: bridge.url, token: token(user), ...c.opts });
  opened.add(sub);
  assert.equal(sub.status, 'connecting');
  const early = collector();
  const closedEarly = subscribe(user, null, early.cb, { url: bridge.url, token: token(user), ...early.opts });
  closedEarly.close();
  assert.equal(closedEarly.status, 'closed');
  assert.deepEqual(early.statuses, ['closed']);

  await assert.rejects(bounded(loading, 10000, 'the failed load'), /ENOENT|no such file/);
  await waitFor(() => c.errors.length > 0, { what: 'onError' });
  const [err] = c.errors;
  assert.ok(isRealtimeError(err), String(err));
  assert.equal(err.code, 'wasm_load_failed');
  assert.equal(err.final, true);
  assert.match(err.message, /could not be loaded/);
  assert.deepEqual(c.statuses, ['closed']);
  assert.equal(sub.status, 'closed');
  assert.equal(wasmMemoryBytes(), 0);
  assert.equal(await openStreams(bridge.url), 0);
  assert.deepEqual(early.errors, [], 'a subscription closed while waiting hears nothing more');
});

test('subscribe while the core loads: connecting at once, attached when it is ready, events from the bridge; bad arguments reach onError', async () => {
  const user = 'node-url-recv';
  // After the failure above, a new load starts again (here from an explicit file URL).
  const loading = load(wasmFile);
  const c = collector();
  const sub = subscribe(user, ['message_new'], c.cb, { url: bridge.url, token: token(user), ...c.opts });
  opened.add(sub);
  assert.equal(sub.status, 'connecting');
  assert.equal(wasmMemoryBytes(), 0, 'not loaded synchronously');
  const bad = collector();
  const refused = subscribe('not a user id!', null, bad.cb, { url: bridge.url, ...bad.opts });

  await bounded(loading, 10000, 'the load');
  assert.ok(wasmMemoryBytes() > 0);
  await waitFor(() => sub.status === 'open', { what: 'open' });
  await pub.send(user, 'message_new', { text: 'par URL' });
  await waitFor(() => c.events.length > 0, { what: 'the event' });
  assert.equal(c.events[0].data.text, 'par URL');
  assert.equal(typeof sub.lastEventId, 'string');
  assert.deepEqual(c.statuses.slice(0, 2), ['connecting', 'open']);
  assert.deepEqual(c.errors, []);

  // What subscribe throws once the core is loaded reaches onError while it loads.
  await waitFor(() => bad.errors.length > 0, { what: 'onError for a bad user id' });
  assert.ok(bad.errors[0] instanceof TypeError, String(bad.errors[0]));
  assert.equal(refused.status, 'closed');
  assert.deepEqual(bad.statuses, ['closed']);

  // Loaded: later calls behave like the embedded entry's (a synchronous throw, one load).
  assert.throws(() => subscribe('not a user id!', null, () => {}, { url: bridge.url }), TypeError);
  await load();
  sub.close();
  assert.equal(sub.status, 'closed');
  await waitFor(async () => (await openStreams(bridge.url)) === 0, { what: 'the stream closed' });
});
