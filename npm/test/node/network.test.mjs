// Flaky networks and shared connections, against a real bridge and nats-server: the page's
// `offline`, `online` and `visibilitychange` events, `closeWhenHidden`, the server's `retry:` as
// the backoff's floor, and a shared connection that grows without a gap (make-before-break)
// (docs/protocol.md §6.2, §6.3).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect as tcpConnect } from 'node:net';
import { subscribe } from 'realtime-bridge';
import {
  startNats,
  startBridge,
  token,
  producer,
  jsProducer,
  waitFor,
  sleep,
  collector,
  recordFetches,
  openStreams,
  publishAndWait,
  verify,
  bounded,
} from '../helpers.mjs';

// Node has no window and no document: an EventTarget stands in for each, where the SDK looks
// for them (`globalThis`, `globalThis.document`), before the first subscribe.
const page = new EventTarget();
globalThis.addEventListener = page.addEventListener.bind(page);
globalThis.removeEventListener = page.removeEventListener.bind(page);
const doc = Object.assign(new EventTarget(), { visibilityState: 'visible' });
globalThis.document = doc;
const fire = (type) => page.dispatchEvent(new Event(type));
function setVisibility(state) {
  doc.visibilityState = state;
  doc.dispatchEvent(new Event('visibilitychange'));
}

const { forUser: fetchesFor } = recordFetches();

let nats;
let pub;
let js;
let bridge;
before(async () => {
  nats = await startNats();
  pub = await producer(nats.url);
  js = await jsProducer(nats.url);
  bridge = await startBridge({ natsUrl: nats.url });
});
after(async () => {
  await bridge?.kill('SIGTERM');
  await js?.close();
  await pub?.close();
  await nats?.stop();
  delete globalThis.document;
  delete globalThis.addEventListener;
  delete globalThis.removeEventListener;
});

/**
 * A loopback TCP proxy to `target` whose open connections can be made silent: `stall()` stops
 * forwarding what the bridge sends on them (the sockets stay open, as on a dead Wi-Fi link);
 * connections made later are forwarded normally.
 */
async function stallingProxy(target) {
  const conns = new Set();
  const server = createServer((client) => {
    const [host, port] = target.split(':');
    const upstream = tcpConnect({ host, port: Number(port) });
    const c = { client, upstream, stalled: false };
    conns.add(c);
    const end = () => {
      client.destroy();
      upstream.destroy();
      conns.delete(c);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.on('data', (d) => upstream.write(d));
    upstream.on('data', (d) => c.stalled || client.write(d));
  });
  await new Promise((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    stall() {
      for (const c of conns) c.stalled = true;
    },
    async close() {
      for (const c of conns) {
        c.client.destroy();
        c.upstream.destroy();
      }
      await bounded(new Promise((r) => server.close(r)), 5000, 'proxy close').catch(() => {});
    },
  };
}

test('offline: status reconnecting at once and the request aborted; online: open again at once, nothing lost (history mode)', async () => {
  const user = 'net-offline';
  const c = collector();
  // A 60 s backoff: only the online event can bring the stream back within the test.
  const sub = subscribe(user, null, c.cb, {
    url: bridge.url,
    getToken: async () => token(user),
    backoff: { initialMs: 60000, maxMs: 60000 },
    ...c.opts,
  });
  try {
    await waitFor(() => sub.status === 'open', { what: 'open' });
    await publishAndWait(js, user, c, 'k0');
    const cursor = sub.lastEventId;
    fire('offline');
    assert.equal(sub.status, 'reconnecting', 'reconnecting as soon as the page is offline');
    await waitFor(() => fetchesFor(user)[0].aborted, { timeoutMs: 2000, what: 'the request aborted' });
    const keys = ['k1', 'k2', 'k3', 'k4'];
    for (const k of keys) await js.publish(user, 'probe', k);
    assert.equal(fetchesFor(user).length, 1, 'no new request while waiting out the backoff');
    fire('online');
    await waitFor(() => fetchesFor(user).length === 2 && sub.status === 'open', { timeoutMs: 5000, what: 'open again after online' });
    assert.equal(fetchesFor(user)[1].lastEventId, cursor, 'resumed from the cursor');
    await waitFor(() => keys.every((k) => c.keys().includes(k)), { what: 'the events published while offline' });
    verify('offline/online', c, js, user, ['k0', ...keys]);
    assert.deepEqual(c.statuses, ['connecting', 'open', 'reconnecting', 'open']);
    assert.deepEqual(c.errors, [], 'going offline is not an error');
  } finally {
    sub.close();
  }
});

test('online or visible: a silent link reconnects at once, a healthy one is left alone', async () => {
  const proxy = await stallingProxy(bridge.addr);
  const user = 'net-silent';
  const c = collector();
  // The bridge's heartbeat is 1 s; a 12 s timeout counts a link silent after 4 s (a third of
  // it), and the watchdog would only cut it after 12 s.
  const sub = subscribe(user, null, c.cb, {
    url: proxy.url,
    token: token(user),
    heartbeatTimeoutMs: 12000,
    backoff: { initialMs: 100, maxMs: 100 },
    ...c.opts,
  });
  try {
    await waitFor(() => sub.status === 'open', { what: 'open' });
    // Healthy (a heartbeat a second): neither event reconnects. Watched for a second.
    fire('online');
    setVisibility('visible');
    await sleep(1000);
    assert.equal(fetchesFor(user).length, 1, 'a healthy stream is not reopened');
    assert.equal(sub.status, 'open');

    for (const [n, wake] of [
      [2, () => fire('online')],
      [3, () => setVisibility('visible')],
    ]) {
      proxy.stall();
      const stalledAt = Date.now();
      // Setup, not synchronisation: the link must have been silent for over 4 s.
      await sleep(4500);
      assert.equal(fetchesFor(user).length, n - 1, 'nothing reconnects on its own before the watchdog');
      wake();
      await waitFor(() => fetchesFor(user).length === n, { timeoutMs: 2000, what: `request ${n} right after the event` });
      assert.ok(fetchesFor(user)[n - 1].t - stalledAt < 10000, 'well before the 12 s watchdog');
      await waitFor(() => sub.status === 'open', { what: 'open again' });
    }
    await pub.send(user, 'probe', { k: 'after' });
    await waitFor(() => c.keys().includes('after'), { what: 'an event on the new stream' });
    assert.deepEqual(
      c.errors.map((e) => e.code),
      [],
      'no heartbeat_timeout: the reconnection came first',
    );
  } finally {
    sub.close();
    await proxy.close();
  }
});

test('closeWhenHidden: the stream is closed while the page is hidden and resumes from the cursor when visible', async () => {
  const user = 'net-hidden';
  const other = 'net-visible';
  const c = collector();
  const o = collector();
  const sub = subscribe(user, null, c.cb, { url: bridge.url, token: token(user), closeWhenHidden: true, ...c.opts });
  // The default: stays open while hidden.
  const stays = subscribe(other, null, o.cb, { url: bridge.url, token: token(other), ...o.opts });
  try {
    await waitFor(() => sub.status === 'open' && stays.status === 'open', { what: 'both open' });
    await publishAndWait(js, user, c, 'h0');
    const streams = await openStreams(bridge.url);
    const cursor = sub.lastEventId;
    setVisibility('hidden');
    await waitFor(() => sub.status === 'reconnecting', { timeoutMs: 2000, what: 'reconnecting while hidden' });
    await waitFor(() => fetchesFor(user)[0].aborted, { timeoutMs: 2000, what: 'the request aborted' });
    await waitFor(async () => (await openStreams(bridge.url)) === streams - 1, { what: 'the stream closed on the bridge' });
    const keys = ['h1', 'h2', 'h3'];
    for (const k of keys) await js.publish(user, 'probe', k);
    assert.equal(fetchesFor(user).length, 1, 'no request while hidden');
    assert.equal(stays.status, 'open');
    setVisibility('visible');
    await waitFor(() => sub.status === 'open' && fetchesFor(user).length === 2, { what: 'open again when visible' });
    assert.equal(fetchesFor(user)[1].lastEventId, cursor);
    await waitFor(() => keys.every((k) => c.keys().includes(k)), { what: 'the events published while hidden' });
    verify('closeWhenHidden', c, js, user, ['h0', ...keys]);
    assert.equal(fetchesFor(other).length, 1, 'the other subscription was never reopened');
    assert.deepEqual(c.errors, []);
  } finally {
    sub.close();
    stays.close();
  }
});

test('closeWhenHidden: a connection opened while the page is hidden waits until it is visible', async () => {
  const user = 'net-born-hidden';
  const c = collector();
  setVisibility('hidden');
  const sub = subscribe(user, null, c.cb, { url: bridge.url, token: token(user), closeWhenHidden: true, ...c.opts });
  try {
    // Watched for half a second: no request while hidden.
    await sleep(500);
    assert.equal(fetchesFor(user).length, 0, 'no request while hidden');
    assert.equal(sub.status, 'connecting');
    setVisibility('visible');
    await waitFor(() => sub.status === 'open', { what: 'open once visible' });
    assert.equal(fetchesFor(user).length, 1);
    await publishAndWait(js, user, c, 'v0');
  } finally {
    setVisibility('visible');
    sub.close();
  }
});

test("the server's retry: is the backoff's floor (bridge --retry 3000, backoff 10 ms)", async () => {
  const own = await startBridge({ natsUrl: nats.url, args: ['--retry', '3000'] });
  let again;
  const user = 'net-retry';
  const c = collector();
  const sub = subscribe(user, null, c.cb, {
    url: own.url,
    token: token(user),
    backoff: { initialMs: 10, maxMs: 20 },
    ...c.opts,
  });
  try {
    await waitFor(() => sub.status === 'open', { what: 'open' });
    const killedAt = Date.now();
    await own.kill('SIGKILL');
    await waitFor(() => fetchesFor(user).length >= 3, { timeoutMs: 20000, what: 'two retries' });
    const [, second, third] = fetchesFor(user);
    const gaps = [second.t - killedAt, third.t - second.t];
    console.log(`retry floor: gaps ${gaps.join(', ')} ms (floor 3000, backoff 10-20)`);
    // At least the floor (a timer never fires early; 50 ms for clock granularity), at most
    // floor × (1 + jitter) plus slack for a loaded machine.
    for (const g of gaps) assert.ok(g >= 2950 && g < 4500 + 3000, `gap ${g} ms`);
    again = await startBridge({ natsUrl: nats.url, listen: own.addr });
    await waitFor(() => sub.status === 'open', { timeoutMs: 15000, what: 'open on the restarted bridge' });
  } finally {
    sub.close();
    await own.kill('SIGKILL');
    await again?.kill('SIGTERM');
  }
});

test('make-before-break (live mode): a joiner with a new event name opens the grown stream before the old one closes; no gap, no duplicate', async () => {
  const live = await startBridge({ natsUrl: nats.url, args: ['--history', 'off'] });
  const user = 'net-grow';
  const t = token(user);
  const a = collector();
  const b = collector();
  const sa = subscribe(user, ['tick'], a.cb, { url: live.url, token: t, ...a.opts });
  let sb;
  let publishing = true;
  let n = 0;
  try {
    await waitFor(() => sa.status === 'open', { what: 'open' });
    // Ticks without pause, numbered, until told to stop.
    const loop = (async () => {
      while (publishing) {
        await pub.send(user, 'tick', { k: n++ });
        await sleep(2);
      }
    })();
    await waitFor(() => a.events.length >= 20, { what: 'ticks flowing' });
    sb = subscribe(user, ['other'], b.cb, { url: live.url, token: t, ...b.opts });
    await waitFor(() => fetchesFor(user)[0].aborted, { timeoutMs: 10000, what: 'the old stream closed' });
    const joinedAt = a.events.length;
    await waitFor(() => a.events.length >= joinedAt + 20, { what: 'ticks after the hand-over' });
    publishing = false;
    await loop;
    await waitFor(() => a.keys().includes(n - 1), { what: 'the last tick' });
    await pub.send(user, 'other', { k: 'o1' });
    await waitFor(() => b.keys().includes('o1'), { what: 'the joiner gets its event' });
    assert.deepEqual(a.keys(), [...Array(n).keys()], `every one of ${n} ticks once, in order`);
    const ids = a.events.map((e) => e.id);
    assert.equal(new Set(ids).size, ids.length, 'no envelope id twice');
    const [old, grown] = fetchesFor(user);
    assert.equal(fetchesFor(user).length, 2);
    assert.ok(grown.url.endsWith('&events=other,tick'), grown.url);
    assert.ok(grown.opened !== undefined && grown.opened <= old.aborted, `grown stream opened at ${grown.opened}, old one closed at ${old.aborted}`);
    assert.deepEqual(a.statuses, ['connecting', 'open'], 'the first subscriber never left open');
    await waitFor(async () => (await openStreams(live.url)) === 1, { what: 'one stream left' });
    console.log(`make-before-break: ${n} ticks, overlap ${old.aborted - grown.opened} ms`);
  } finally {
    publishing = false;
    sa.close();
    sb?.close();
    await live.kill('SIGTERM');
  }
});

test("a joiner's connection options are the opener's: a different one gets a console warning naming them", async () => {
  const user = 'net-joiner';
  const warnings = [];
  const realWarn = console.warn;
  console.warn = (...args) => warnings.push(args.join(' '));
  const subs = [];
  const cb = () => {};
  try {
    const opts = { url: bridge.url, token: token(user), backoff: { initialMs: 100 } };
    subs.push(subscribe(user, ['a'], cb, opts));
    subs.push(subscribe(user, ['a'], cb, { ...opts, backoff: { initialMs: 100 }, onError: () => {} }));
    assert.deepEqual(warnings, [], 'the same options (and per-subscription callbacks) do not warn');
    subs.push(subscribe(user, ['b'], cb, { ...opts, token: token(user, ['--ttl', '2h']), lastEventId: '5:0', backoff: { initialMs: 500 } }));
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /realtime-bridge: .*token, lastEventId, backoff differ .* ignored/);
    for (const s of subs.splice(0)) s.close();
    // The connection closed: the next subscribe opens one, with its own options.
    subs.push(subscribe(user, ['a'], cb, { ...opts, heartbeatTimeoutMs: 20000 }));
    assert.equal(warnings.length, 1);
  } finally {
    console.warn = realWarn;
    for (const s of subs) s.close();
  }
});
