// The SDK in plain Node against a real nats-server and a real bridge (history mode).
// Each event is published once, after the subscription is open: the bridge answers a stream
// request only once NATS confirmed its subscriptions, so an event published after `open` must
// arrive. "Nothing else arrived" is checked with a sentinel event published last.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { subscribe as sdkSubscribe, configure, resetConfig, wasmMemoryBytes, isRealtimeError, isKnownErrorCode } from 'realtime-bridge';
import { startNats, startBridge, token, openStreams, producer, waitFor, sleep, collector, recordFetches } from '../helpers.mjs';

let nats;
let bridge;
let pub;

/** Every fetch the SDK makes (helpers.mjs `recordFetches`). */
const { forUser: fetchesFor } = recordFetches();

/**
 * Every subscription a test opens, closed again after the file: a test that fails before its
 * own close() must not leave a stream open (it would keep the process, and the run, alive).
 */
const opened = new Set();
const subscribe = (...args) => {
  const sub = sdkSubscribe(...args);
  opened.add(sub);
  return sub;
};

before(async () => {
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


test('receives envelopes: id, event, data (parsed JSON), timestamp, userId', async () => {
  const c = collector();
  const sub = subscribe('node-recv', null, c.cb, { url: bridge.url, token: token('node-recv'), ...c.opts });
  assert.equal(sub.status, 'connecting');
  await waitFor(() => sub.status === 'open', { what: 'open' });
  await pub.send('node-recv', 'message_new', { text: 'hé 😀', n: 0 });
  await waitFor(() => c.events.length > 0, { what: 'the event' });
  const e = c.events[0];
  assert.equal(typeof e.id, 'string');
  assert.equal(e.event, 'message_new');
  assert.deepEqual(Object.keys(e.data).sort(), ['n', 'text']);
  assert.equal(e.data.text, 'hé 😀');
  assert.match(e.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.equal(e.userId, 'node-recv');
  assert.equal(typeof sub.lastEventId, 'string');
  assert.deepEqual(c.statuses.slice(0, 2), ['connecting', 'open']);
  assert.deepEqual(c.errors, []);
  sub.close();
  assert.equal(sub.status, 'closed');
  assert.equal(c.statuses.at(-1), 'closed');
});

test('configure() defaults apply, options override them', async () => {
  configure({ url: 'http://127.0.0.1:1', token: token('node-conf') });
  const c = collector();
  const sub = subscribe('node-conf', ['message_new'], c.cb, { url: bridge.url, ...c.opts });
  await waitFor(() => sub.status === 'open', { what: 'open' });
  await pub.send('node-conf', 'message_new', {});
  await waitFor(() => c.events.length > 0, { what: 'the event' });
  assert.match(fetchesFor('node-conf')[0].auth, /^Bearer ey/);
  sub.close();
  resetConfig();
});

test('filter: only the requested events, broadcasts included', async () => {
  const onlyMsg = collector();
  const all = collector();
  const user = 'node-filter';
  const t = token(user);
  const s1 = subscribe(user, ['message_new', 'system_alert'], onlyMsg.cb, { url: bridge.url, token: t });
  const s2 = subscribe(user, null, all.cb, { url: bridge.url, token: t });
  await waitFor(() => s1.status === 'open' && s2.status === 'open', { what: 'open' });
  await pub.send(user, 'typing_start', { a: 1 });
  await pub.send(user, 'message_new', { a: 2 });
  await pub.broadcast('system_alert', { a: 3 });
  await pub.broadcast('other_broadcast', { a: 4 });
  // User events and broadcasts come through two subscriptions, ordered per kind only (§5.2):
  // one sentinel of each kind, wanted by both subscriptions.
  await pub.send(user, 'message_new', { a: 5 });
  await pub.broadcast('system_alert', { a: 6 });
  const got = (c, a) => c.events.some((e) => e.data.a === a);
  await waitFor(() => [onlyMsg, all].every((c) => got(c, 5) && got(c, 6)), { what: 'the sentinels' });
  const perKind = (c) => ({
    user: c.events.filter((e) => e.userId === user).map((e) => `${e.event}:${e.data.a}`),
    broadcast: c.events.filter((e) => e.userId === undefined).map((e) => `${e.event}:${e.data.a}`),
  });
  assert.deepEqual(perKind(all), {
    user: ['typing_start:1', 'message_new:2', 'message_new:5'],
    broadcast: ['system_alert:3', 'other_broadcast:4', 'system_alert:6'],
  });
  assert.deepEqual(perKind(onlyMsg), { user: ['message_new:2', 'message_new:5'], broadcast: ['system_alert:3', 'system_alert:6'] });
  assert.equal(all.events.length, 6);
  assert.equal(onlyMsg.events.length, 4, 'broadcasts carry no userId; nothing else arrived');
  // The shared request asked for everything (one listener wants all).
  assert.ok(!fetchesFor(user).at(-1).url.includes('events='));
  s1.close();
  s2.close();
});

test('shared connection: several subscribes, one HTTP stream, each callback its own events', async () => {
  const user = 'node-shared';
  const t = token(user);
  const a = collector();
  const b = collector();
  const before = await openStreams(bridge.url);
  const sa = subscribe(user, ['message_new'], a.cb, { url: bridge.url, token: t, ...a.opts });
  const sb = subscribe(user, ['typing_start'], b.cb, { url: bridge.url, token: t, ...b.opts });
  await waitFor(() => sa.status === 'open' && sb.status === 'open', { what: 'open' });
  assert.equal(await openStreams(bridge.url), before + 1);
  assert.equal(fetchesFor(user).length, 1, 'one request for both');
  assert.ok(fetchesFor(user)[0].url.endsWith('&events=message_new,typing_start'));
  await pub.send(user, 'message_new', { n: 0 });
  await waitFor(() => a.events.length === 1, { what: 'message_new' });
  await pub.send(user, 'typing_start', {});
  await waitFor(() => b.events.length === 1, { what: 'typing_start' });
  assert.ok(a.events.every((e) => e.event === 'message_new'));
  assert.ok(b.events.every((e) => e.event === 'typing_start'));
  // A later subscribe with a new event name grows the union: one reconnection, still one stream.
  const c = collector();
  const sc = subscribe(user, ['notification'], c.cb, { url: bridge.url, token: t, ...c.opts });
  await waitFor(() => fetchesFor(user).length === 2 && sc.status === 'open', { what: 'reconnect with the grown union' });
  assert.ok(fetchesFor(user)[1].url.endsWith('&events=message_new,notification,typing_start'));
  assert.equal(fetchesFor(user)[1].lastEventId, sa.lastEventId);
  await waitFor(async () => (await openStreams(bridge.url)) === before + 1, { what: 'one stream' });
  await pub.send(user, 'notification', { id: 'n1' });
  await waitFor(() => c.events.length === 1, { what: 'notification' });
  // A subscribe whose events are covered joins without reconnecting.
  const d = collector();
  const sd = subscribe(user, ['typing_start'], d.cb, { url: bridge.url, token: t, ...d.opts });
  await waitFor(() => d.statuses.includes('open'), { what: 'joined status' });
  assert.equal(fetchesFor(user).length, 2);
  // Closing some keeps the stream; closing the last one closes it.
  sa.close();
  sb.close();
  sc.close();
  // The remaining subscription still gets events (a sentinel), over the same request.
  await pub.send(user, 'typing_start', { n: 'sentinel' });
  await waitFor(() => d.events.some((e) => e.data.n === 'sentinel'), { what: 'sentinel for the last subscription' });
  assert.equal(await openStreams(bridge.url), before + 1);
  assert.equal(fetchesFor(user).length, 2);
  assert.equal(sd.status, 'open');
  assert.equal(a.events.length + b.events.length + c.events.length, 3, 'closed subscriptions got nothing more');
  sd.close();
  await waitFor(async () => (await openStreams(bridge.url)) === before, { what: 'stream closed' });
});

test('resume after the bridge is killed and restarted: nothing lost after reconnection, nothing twice', async () => {
  const own = await startBridge({ natsUrl: nats.url });
  const user = 'node-resume';
  const c = collector();
  const sub = subscribe(user, null, c.cb, {
    url: own.url,
    getToken: async () => token(user),
    backoff: { initialMs: 100, maxMs: 400 },
    ...c.opts,
  });
  try {
    await waitFor(() => sub.status === 'open', { what: 'open' });
    for (let i = 0; i < 5; i++) await pub.send(user, 'before', { i });
    await waitFor(() => c.events.filter((e) => e.event === 'before').length === 5, { what: 'before events' });
    const cursor = sub.lastEventId;
    assert.ok(cursor);

    await own.kill('SIGKILL');
    await waitFor(() => sub.status === 'reconnecting', { what: 'reconnecting' });
    const restarted = await startBridge({ natsUrl: nats.url, listen: own.addr });
    try {
      await waitFor(() => sub.status === 'open', { what: 'open again', timeoutMs: 15000 });
      const reconnect = fetchesFor(user).at(-1);
      assert.equal(reconnect.lastEventId, cursor, 'resumed with Last-Event-ID');
      assert.ok(c.statuses.includes('reconnecting'));
      for (let i = 0; i < 20; i++) await pub.send(user, 'after', { i });
      await pub.send(user, 'sentinel', {});
      await waitFor(() => c.events.some((e) => e.event === 'sentinel'), { what: 'the sentinel' });
      assert.equal(c.events.at(-1).event, 'sentinel', 'nothing after the sentinel');
      const after = c.events.filter((e) => e.event === 'after').map((e) => e.data.i);
      assert.deepEqual(after, [...Array(20).keys()], 'every event after reconnection, in order, once');
      const ids = c.events.map((e) => e.id);
      assert.equal(new Set(ids).size, ids.length, 'no id delivered twice');
    } finally {
      sub.close();
      await restarted.kill('SIGTERM');
    }
  } finally {
    sub.close();
    await own.kill();
  }
});

test('getToken is called for the first connection and once more right after a 401', async () => {
  const user = 'node-401';
  let calls = 0;
  const c = collector();
  const sub = subscribe(user, null, c.cb, {
    url: bridge.url,
    getToken: async () => (++calls === 1 ? 'expired.or.bogus' : token(user)),
    ...c.opts,
  });
  await waitFor(() => sub.status === 'open', { what: 'open after 401' });
  assert.equal(calls, 2);
  assert.equal(fetchesFor(user).length, 2);
  assert.equal(fetchesFor(user)[0].auth, 'Bearer expired.or.bogus');
  assert.deepEqual(c.errors, [], 'a single 401 followed by success is not an error');
  await pub.send(user, 'x', {});
  await waitFor(() => c.events.length === 1, { what: 'the event' });
  sub.close();
});

test('a 401 that persists is retried with backoff and reported', async () => {
  const user = 'node-401b';
  let calls = 0;
  const c = collector();
  const sub = subscribe(user, null, c.cb, {
    url: bridge.url,
    getToken: () => (++calls, 'bogus'),
    backoff: { initialMs: 50, maxMs: 100 },
    ...c.opts,
  });
  await waitFor(() => c.errors.length >= 2, { what: 'errors' });
  assert.equal(c.errors[0].status, 401);
  assert.equal(c.errors[0].final, false);
  assert.notEqual(sub.status, 'closed');
  assert.ok(calls >= 3);
  sub.close();
});

test('403 is final: status closed, onError told, no retry', async () => {
  const user = 'node-403';
  let calls = 0;
  const c = collector();
  const sub = subscribe(user, null, c.cb, {
    url: bridge.url,
    getToken: () => (++calls, token('someone-else')),
    backoff: { initialMs: 20, maxMs: 20 },
    ...c.opts,
  });
  await waitFor(() => sub.status === 'closed', { what: 'closed' });
  assert.equal(c.errors.length, 1);
  assert.equal(c.errors[0].status, 403);
  assert.equal(c.errors[0].final, true);
  assert.equal(c.errors[0].name, 'RealtimeError');
  assert.equal(typeof c.errors[0].code, 'string');
  assert.equal(c.statuses.at(-1), 'closed');
  // A sentinel with the same backoff, refused with 401 on every attempt: once it has retried a
  // few times, a retry of the closed subscription would have come too.
  const sentinelUser = 'node-403-sentinel';
  const sentinel = subscribe(sentinelUser, null, () => {}, {
    url: bridge.url,
    getToken: () => 'bogus',
    backoff: { initialMs: 20, maxMs: 20 },
    onError() {},
  });
  try {
    await waitFor(() => fetchesFor(sentinelUser).length >= 4, { what: 'sentinel retries' });
    assert.equal(calls, 1);
    assert.equal(fetchesFor(user).length, 1);
    sub.reconnect(); // no effect once closed
    const seen = fetchesFor(sentinelUser).length;
    await waitFor(() => fetchesFor(sentinelUser).length >= seen + 2, { what: 'more sentinel retries' });
    assert.equal(fetchesFor(user).length, 1);
  } finally {
    sentinel.close();
  }
});

test('invalid arguments throw at once', () => {
  const cb = () => {};
  assert.throws(() => subscribe('*', null, cb, { url: bridge.url }), TypeError);
  assert.throws(() => subscribe('a.b', null, cb, { url: bridge.url }), /invalid user id/);
  assert.throws(() => subscribe('ok', ['a b'], cb, { url: bridge.url }), /invalid event name/);
  assert.throws(() => subscribe('ok', [], cb, { url: bridge.url }), TypeError);
  assert.throws(() => subscribe('ok', null, cb, {}), /no url/);
  assert.throws(() => subscribe('ok', null, cb, { url: '/relative' }), /invalid url/);
});

test('isRealtimeError: true for the errors the SDK gives onError, false for plain errors and what a callback throws; isKnownErrorCode', async () => {
  // The bridge's refusal (403 forbidden: a token for another user), final.
  const refused = collector();
  const a = subscribe('node-guard', null, refused.cb, { url: bridge.url, getToken: () => token('someone-else'), ...refused.opts });
  await waitFor(() => a.status === 'closed', { what: 'refused' });
  // One of the SDK's own: nothing listens on this loopback port (network_error), not final.
  const unreachable = collector();
  const b = subscribe('node-guard', null, unreachable.cb, { url: 'http://127.0.0.1:1', backoff: { initialMs: 60000 }, ...unreachable.opts });
  await waitFor(() => unreachable.errors.length >= 1, { what: 'network error' });
  b.close();
  // A callback that throws: its own error reaches onError as it is.
  const user = 'node-guard-throw';
  const throwing = collector();
  const c = subscribe(user, ['boom'], () => {
    throw new Error('boom');
  }, { url: bridge.url, getToken: () => token(user), ...throwing.opts });
  try {
    await waitFor(() => c.status === 'open', { what: 'open' });
    await pub.send(user, 'boom', {});
    await waitFor(() => throwing.errors.length >= 1, { what: 'the thrown error' });
  } finally {
    c.close();
  }

  const [forbidden] = refused.errors;
  assert.equal(forbidden.code, 'forbidden');
  assert.equal(isRealtimeError(forbidden), true);
  const [network] = unreachable.errors;
  assert.equal(network.code, 'network_error');
  assert.equal(isRealtimeError(network), true);
  assert.equal(throwing.errors[0].message, 'boom');
  assert.equal(isRealtimeError(throwing.errors[0]), false);

  let typeError;
  try {
    subscribe('*', null, () => {}, { url: bridge.url });
  } catch (e) {
    typeError = e;
  }
  assert.ok(typeError instanceof TypeError);
  assert.equal(isRealtimeError(typeError), false);
  for (const other of [
    new Error('plain'),
    Object.assign(new Error('no final'), { name: 'RealtimeError' }),
    { name: 'RealtimeError', message: 'not an Error', final: true },
    Object.assign(new Error('bad code'), { name: 'RealtimeError', final: false, code: 403 }),
    null,
    undefined,
    'RealtimeError',
  ]) {
    assert.equal(isRealtimeError(other), false, String(other?.message ?? other));
  }
  // What the in-memory test client's fail() builds has the same shape.
  assert.equal(isRealtimeError(Object.assign(new Error('made'), { name: 'RealtimeError', final: false })), true);

  // The codes of real errors are known ones; other strings (a newer bridge's) are not.
  assert.equal(isKnownErrorCode(forbidden.code), true);
  assert.equal(isKnownErrorCode(network.code), true);
  for (const other of ['some_future_code', 'unauthorised', 'toString', '', undefined, 403]) {
    assert.equal(isKnownErrorCode(other), false, String(other));
  }
});

test('close() stops delivery and ends the stream; [Symbol.dispose] closes too', async () => {
  const user = 'node-close';
  const c = collector();
  const before = await openStreams(bridge.url);
  const sub = subscribe(user, null, c.cb, { url: bridge.url, token: token(user), ...c.opts });
  await waitFor(() => sub.status === 'open', { what: 'open' });
  await pub.send(user, 'x', {});
  await waitFor(() => c.events.length === 1, { what: 'the event' });
  sub.close();
  sub.close();
  await waitFor(async () => (await openStreams(bridge.url)) === before, { what: 'stream gone' });

  // A new subscription (a new connection) sees an event and then a sentinel; the closed one
  // must have got neither.
  const d = collector();
  const sub2 = subscribe(user, null, d.cb, { url: bridge.url, token: token(user), ...d.opts });
  await waitFor(() => sub2.status === 'open', { what: 'open' });
  await pub.send(user, 'x', { after: 'close' });
  await pub.send(user, 'sentinel', {});
  await waitFor(() => d.events.some((e) => e.event === 'sentinel'), { what: 'the sentinel' });
  assert.deepEqual(d.events.map((e) => e.event), ['x', 'sentinel']);
  assert.equal(c.events.length, 1, 'nothing after close()');
  sub2[Symbol.dispose]();
  assert.equal(sub2.status, 'closed');
  await waitFor(async () => (await openStreams(bridge.url)) === before, { what: 'stream gone' });
});

test('a callback that closes its own subscription mid-batch gets nothing more', async () => {
  const user = 'node-selfclose';
  const got = [];
  const t = token(user);
  const other = collector();
  const keep = subscribe(user, null, other.cb, { url: bridge.url, token: t });
  const sub = subscribe(user, null, (e) => {
    got.push(e);
    sub.close();
  }, { url: bridge.url, token: t });
  await waitFor(() => keep.status === 'open', { what: 'open' });
  for (let i = 0; i < 6; i++) await pub.send(user, 'x', { i });
  await waitFor(() => other.events.length >= 6, { what: 'events' });
  assert.equal(got.length, 1);
  keep.close();
});

test('heartbeat watchdog: a silent link is dropped and reconnected', async () => {
  const user = 'node-watchdog';
  const c = collector();
  // The bridge sends a heartbeat every second; a 300 ms watchdog fires in between.
  const sub = subscribe(user, null, c.cb, {
    url: bridge.url,
    token: token(user),
    heartbeatTimeoutMs: 300,
    backoff: { initialMs: 10, maxMs: 10 },
    ...c.opts,
  });
  await waitFor(() => c.errors.some((e) => e.code === 'heartbeat_timeout'), { what: 'watchdog' });
  await waitFor(() => c.statuses.filter((s) => s === 'open').length >= 2, { what: 'reopened' });
  assert.ok(fetchesFor(user).length >= 2);
  sub.close();
});

test('the lastEventId option is sent as Last-Event-ID on the first request', async () => {
  const user = 'node-cursor';
  const c = collector();
  const sub = subscribe(user, ['x'], c.cb, { url: bridge.url, token: token(user), lastEventId: 'abc-41', ...c.opts });
  assert.equal(sub.lastEventId, 'abc-41');
  await waitFor(() => sub.status === 'open', { what: 'open' });
  assert.equal(fetchesFor(user)[0].lastEventId, 'abc-41');
  await pub.send(user, 'x', {});
  await waitFor(() => c.events.length === 1, { what: 'the event' });
  const cursor = sub.lastEventId;
  assert.notEqual(cursor, 'abc-41', 'the cursor follows the stream');
  sub.close();
  assert.equal(sub.lastEventId, cursor, 'still readable after close');
});

test('reconnect() drops the link and resumes at once, with the cursor', async () => {
  const user = 'node-reconnect';
  const c = collector();
  const sub = subscribe(user, null, c.cb, { url: bridge.url, token: token(user), backoff: { initialMs: 60000 }, ...c.opts });
  await waitFor(() => sub.status === 'open', { what: 'open' });
  await pub.send(user, 'x', {});
  await waitFor(() => c.events.length === 1, { what: 'the event' });
  const cursor = sub.lastEventId;
  sub.reconnect();
  await waitFor(() => fetchesFor(user).length === 2 && sub.status === 'open', { what: 'reopened', timeoutMs: 5000 });
  assert.equal(fetchesFor(user)[1].lastEventId, cursor);
  assert.deepEqual(c.statuses, ['connecting', 'open', 'reconnecting', 'open']);
  sub.close();
});

test('closed subscriptions leak nothing: WebAssembly memory stays flat over many cycles', async () => {
  const user = 'node-leak';
  const t = token(user);
  const cycle = async (connect) => {
    const a = sdkSubscribe(user, ['a'], () => {}, { url: bridge.url, token: t });
    const b = sdkSubscribe(user, ['b'], () => {}, { url: bridge.url, token: t, onStatus() {}, onError() {} });
    if (connect) await waitFor(() => a.status === 'open', { what: 'open' });
    a.close();
    b.close();
  };
  // Warm up (allocator pools, registry vectors), then measure.
  for (let i = 0; i < 300; i++) await cycle(i % 30 === 0);
  await sleep(50);
  const before = wasmMemoryBytes();
  for (let i = 0; i < 3000; i++) await cycle(i % 100 === 0);
  await sleep(50);
  assert.ok(before > 0);
  assert.equal(wasmMemoryBytes(), before, 'memory grew over 3000 subscribe/close cycles');
});
