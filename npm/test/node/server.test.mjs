// realtime-bridge/server (docs/protocol.md §1.7) against a real nats-server and real bridges:
// message ids, input errors, presence over two bridges, no_bridge, core mode with a live bridge,
// jetstream/auto mode and the stream, close. Retries, JetStream error answers, the in-flight
// window and timeouts are checked against a nats-server without JetStream, where the test
// itself answers the publishes the way JetStream would (or does not answer them).
// The flood is in server-flood.test.mjs.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'nats';
import { RealtimeService, RealtimeServiceError, isRealtimeServiceError } from 'realtime-bridge/server';
import { startBridge, token, waitFor, bounded } from '../helpers.mjs';
import { startNatsServer, sseReader, storedCounts } from '../server-helpers.mjs';

// Everything a test starts, stopped at its end even when it fails.
const cleanups = [];
const defer = (fn) => cleanups.push(fn);
async function cleanup() {
  while (cleanups.length) await cleanups.pop()().catch(() => {});
}
after(cleanup);

async function natsWithBridge({ history = 'on', jetstream = true } = {}) {
  const nats = await startNatsServer({ jetstream });
  defer(() => nats.stop());
  const bridge = await startBridge({ natsUrl: nats.url, args: ['--history', history] });
  defer(() => bridge.kill('SIGTERM'));
  const nc = await connect({ servers: nats.url });
  defer(() => nc.close());
  return { nats, bridge, nc };
}

async function open(bridge, user, clientId) {
  const r = sseReader(bridge.url, user, { token: token(user), clientId });
  defer(() => r.stop());
  await bounded(r.opened, 10000, `stream of ${user}`);
  return r;
}

/** Rejects with a RealtimeServiceError of `code`: returns it. */
async function rejectsWith(p, code) {
  let err;
  await assert.rejects(p, (e) => ((err = e), true));
  assert.ok(isRealtimeServiceError(err) && err instanceof RealtimeServiceError, `not a RealtimeServiceError: ${err}`);
  assert.equal(err.code, code, err.message);
  return err;
}

const datas = (reader) => reader.events.map((e) => e.data);

test('a msgId is stored and delivered once; with several users each subject gets <msgId>:<subject>; made-up ids differ per message', { timeout: 60000 }, async (t) => {
  t.after(cleanup);
  const { bridge, nc } = await natsWithBridge();
  const rt = await RealtimeService.connect({ servers: nc.getServer() });
  defer(() => rt.close());
  assert.equal(rt.mode, 'jetstream');
  const a = await open(bridge, 'dup-a');
  const b = await open(bridge, 'dup-b');
  // The ids as they travel (a core subscription sees every copy published).
  const seen = [];
  const spy = nc.subscribe('user.>', { callback: (_, m) => seen.push([m.subject, m.headers?.get('Nats-Msg-Id')]) });
  defer(async () => spy.unsubscribe());
  await nc.flush();

  await rt.sendEventToUser('dup-a', 'order', { k: 1 }, { msgId: 'order-1' });
  await rt.sendEventToUser('dup-a', 'order', { k: 1 }, { msgId: 'order-1' }); // the app's retry
  await rt.sendEventToUsers(['dup-a', 'dup-b'], 'order', { k: 2 }, { msgId: 'order-2' });
  await rt.sendEventToUsers(['dup-a', 'dup-b'], 'order', { k: 2 }, { msgId: 'order-2' });
  await rt.sendEventToUser('dup-a', 'order', { k: 3 });
  await rt.sendEventToUser('dup-a', 'order', { k: 3 }); // no msgId: two messages
  await rt.sendEventToUser('dup-a', 'sentinel', {});
  await rt.sendEventToUser('dup-b', 'sentinel', {});

  await waitFor(() => a.events.some((e) => e.event === 'sentinel') && b.events.some((e) => e.event === 'sentinel'), {
    what: 'sentinels',
  });
  assert.deepEqual(datas(a), [{ k: 1 }, { k: 2 }, { k: 3 }, { k: 3 }, {}]);
  assert.deepEqual(datas(b), [{ k: 2 }, {}]);
  assert.deepEqual(await storedCounts(nc, 'user.>'), {
    'user.dup-a.order': 4,
    'user.dup-a.sentinel': 1,
    'user.dup-b.order': 1,
    'user.dup-b.sentinel': 1,
  });
  await waitFor(() => seen.length === 10, { what: '10 copies seen by the spy' }).catch((e) => assert.fail(`${e.message}: ${JSON.stringify(seen)}`));
  const ids = seen.map(([s, id]) => `${s} ${id}`);
  assert.deepEqual(ids.slice(0, 6), [
    'user.dup-a.order order-1',
    'user.dup-a.order order-1',
    'user.dup-a.order order-2:user.dup-a.order',
    'user.dup-b.order order-2:user.dup-b.order',
    'user.dup-a.order order-2:user.dup-a.order',
    'user.dup-b.order order-2:user.dup-b.order',
  ]);
  const made = seen.slice(6).map(([, id]) => id);
  assert.equal(new Set(made).size, 4, `made-up ids are unique: ${made}`);
  assert.ok(made.every((id) => /^rb-[0-9a-f-]{36}-\d+$/.test(id)), made.join(' '));
});

test('every input error has its code, names what is wrong, and sends nothing', { timeout: 60000 }, async (t) => {
  t.after(cleanup);
  const { nc } = await natsWithBridge();
  const rt = await RealtimeService.connect({ servers: nc.getServer(), maxEventBytes: 100 });
  defer(() => rt.close());
  const seen = [];
  const spy = nc.subscribe('>', { callback: (_, m) => m.subject.match(/^(user|broadcast)\./) && seen.push(m.subject) });
  defer(async () => spy.unsubscribe());
  await nc.flush();

  for (const id of ['a.b', '', 'x'.repeat(129), '*', '>', 'tab 1', 'é', 42, null]) {
    const e = await rejectsWith(rt.sendEventToUser(id, 'ev', {}), 'invalid_user_id');
    assert.ok(e.message.includes(JSON.stringify(id)), e.message);
    await rejectsWith(rt.getPresence(id), 'invalid_user_id');
  }
  // One bad id among good ones: nothing is sent to the good ones either.
  const bad = await rejectsWith(rt.sendEventToUsers(['ok-1', 'ok-2', 'bad id'], 'ev', {}), 'invalid_user_id');
  assert.equal(bad.userId, 'bad id');
  await rejectsWith(rt.sendEventToUsers('ok-1', 'ev', {}), 'invalid_user_id');
  for (const ev of ['a.b', '', 'x'.repeat(129), 'user.*', '>', 'é', undefined]) {
    await rejectsWith(rt.sendEventToUser('ok-1', ev, {}), 'invalid_event_name');
    await rejectsWith(rt.broadcastEvent(ev, {}), 'invalid_event_name');
  }
  for (const ev of ['end', 'reset']) {
    await rejectsWith(rt.sendEventToUser('ok-1', ev, {}), 'reserved_event');
    await rejectsWith(rt.sendEventToUsers(['ok-1', 'ok-2'], ev, {}), 'reserved_event');
    await rejectsWith(rt.broadcastEvent(ev, {}), 'reserved_event');
  }
  const cycle = {};
  cycle.self = cycle;
  for (const data of [undefined, () => 1, Symbol('s'), cycle, NaN, Infinity, { x: [1, -Infinity] }, 10n]) {
    await rejectsWith(rt.sendEventToUser('ok-1', 'ev', data), 'invalid_data');
    await rejectsWith(rt.broadcastEvent('ev', data), 'invalid_data');
  }
  // maxEventBytes counts the serialised UTF-8 bytes: "é" is 2.
  const e = await rejectsWith(rt.sendEventToUser('ok-1', 'ev', 'é'.repeat(50)), 'too_large');
  assert.match(e.message, /102 bytes.*100/);
  await rejectsWith(rt.sendEventToUsers(['ok-1', 'ok-2'], 'ev', 'x'.repeat(99)), 'too_large');
  for (const msgId of ['', 'a\nb', 'a\rb', 'tab\there', '\u007f', 7]) {
    await rejectsWith(rt.sendEventToUser('ok-1', 'ev', {}, { msgId }), 'invalid_msg_id');
  }
  await assert.rejects(rt.sendEventToUser('ok-1', 'ev', {}, 'order-1'), TypeError);

  // The limits themselves pass: 100 bytes, a 128-character id, null data.
  await rt.sendEventToUser('ok-1', 'limit', 'x'.repeat(98));
  await rt.sendEventToUser('u'.repeat(128), 'e'.repeat(128), null);
  await rt.flush();
  await waitFor(() => seen.length === 2, { what: 'the two valid sends' });
  assert.deepEqual(seen, ['user.ok-1.limit', `user.${'u'.repeat(128)}.${'e'.repeat(128)}`]);
  assert.deepEqual(await storedCounts(nc, 'user.>'), { 'user.ok-1.limit': 1, [`user.${'u'.repeat(128)}.${'e'.repeat(128)}`]: 1 });
  await rt.close();
  await rejectsWith(rt.sendEventToUser('ok-1', 'ev', {}), 'closed');
  await rejectsWith(rt.getPresence('ok-1'), 'closed');
  await nc.flush();
  assert.equal(seen.length, 2);
});

test('sendEventToUsers: repeated ids are sent once, in order; an empty list sends nothing', { timeout: 60000 }, async (t) => {
  t.after(cleanup);
  const { nc } = await natsWithBridge();
  const rt = await RealtimeService.connect({ servers: nc.getServer() });
  defer(() => rt.close());
  const seen = [];
  const spy = nc.subscribe('user.>', { callback: (_, m) => seen.push(m.subject) });
  defer(async () => spy.unsubscribe());
  await nc.flush();
  await rt.sendEventToUsers([], 'ev', { x: 1 });
  await rt.sendEventToUsers(['b', 'a', 'b', 'c', 'a'], 'ev', { x: 1 });
  await rt.broadcastEvent('news', { x: 2 });
  await waitFor(() => seen.length === 3, { what: 'three copies' });
  assert.deepEqual([...seen].sort(), ['user.a.ev', 'user.b.ev', 'user.c.ev']);
  assert.deepEqual(await storedCounts(nc, '>'), { 'user.a.ev': 1, 'user.b.ev': 1, 'user.c.ev': 1, 'broadcast.news': 1 });
});

test('presence: the client ids of real streams on two bridges sharing a NATS, oldest first; a closed stream leaves', { timeout: 60000 }, async (t) => {
  t.after(cleanup);
  const { nats, bridge } = await natsWithBridge();
  const bridge2 = await startBridge({ natsUrl: nats.url, args: ['--history', 'on'] });
  defer(() => bridge2.kill('SIGTERM'));
  const rt = await RealtimeService.connect({ servers: nats.url });
  defer(() => rt.close());

  assert.deepEqual(await rt.getConnectedClients('pres-1'), []);
  assert.equal(await rt.isUserConnected('pres-1'), false);
  await open(bridge, 'pres-1', 'tab-1');
  const second = await open(bridge2, 'pres-1', 'phone-7');
  // Bridges learn of each other from their announcements: bounded wait until both are counted.
  await waitFor(async () => (await rt.getConnectedClients('pres-1')).length === 2, { timeoutMs: 20000, intervalMs: 200, what: 'both streams' });
  assert.deepEqual(await rt.getConnectedClients('pres-1'), ['tab-1', 'phone-7']);
  assert.equal(await rt.isUserConnected('pres-1'), true);
  const p = await rt.getPresence('pres-1');
  assert.equal(p.userId, 'pres-1');
  assert.equal(p.streams, 2);
  assert.equal(p.connected, true);
  assert.equal(new Set(p.clients.map((c) => c.instance)).size, 2, 'two bridges');
  assert.ok(p.clients.every((c) => !Number.isNaN(Date.parse(c.since))));
  assert.deepEqual(await rt.getConnectedClients('pres-2'), []);

  await second.stop();
  await waitFor(async () => (await rt.getConnectedClients('pres-1')).join() === 'tab-1', { intervalMs: 100, what: 'phone-7 leaving' });
});

test('no_bridge: nobody answers presence (no subscriber, or one that stays silent past presenceTimeout)', { timeout: 30000 }, async (t) => {
  t.after(cleanup);
  const nats = await startNatsServer();
  defer(() => nats.stop());
  const rt = await RealtimeService.connect({ servers: nats.url, presenceTimeout: 300 });
  defer(() => rt.close());
  let t0 = Date.now();
  await rejectsWith(rt.getPresence('42'), 'no_bridge');
  await rejectsWith(rt.isUserConnected('42'), 'no_bridge');
  await rejectsWith(rt.getConnectedClients('42'), 'no_bridge');
  assert.ok(Date.now() - t0 < 2000, 'no responders fails at once');

  const nc = await connect({ servers: nats.url });
  defer(() => nc.close());
  let asked = 0;
  nc.subscribe('realtime.presence.*', { callback: () => asked++ });
  await nc.flush();
  t0 = Date.now();
  await rejectsWith(rt.getPresence('42'), 'no_bridge');
  const took = Date.now() - t0;
  assert.ok(took >= 280 && took < 3000, `waited presenceTimeout: ${took} ms`);
  assert.equal(asked, 1);
});

test('core mode: a live-mode bridge (no stream) delivers; auto reports core; flush is a round trip', { timeout: 60000 }, async (t) => {
  t.after(cleanup);
  const { bridge, nc } = await natsWithBridge({ history: 'off' });
  const auto = await RealtimeService.connect({ servers: nc.getServer() });
  defer(() => auto.close());
  const core = new RealtimeService(nc, { mode: 'core' });
  assert.equal(auto.mode, 'core');
  assert.equal(core.mode, 'core');
  const r = await open(bridge, 'live-1');
  await auto.sendEventToUser('live-1', 'ev', { n: 1 });
  await auto.sendEventToUsers(['live-1', 'live-2'], 'ev', { n: 2 }, { msgId: 'x' });
  await auto.broadcastEvent('news', { n: 3 });
  await auto.flush();
  await core.sendEventToUser('live-1', 'ev', { n: 4 });
  await core.flush();
  await waitFor(() => r.events.length === 4, { what: 'four live events' });
  // Sorted: the user's events and the broadcasts come through different subscriptions, whose
  // order the bridge does not keep in live mode.
  const got = r.events.map((e) => [e.event, e.data.n, e.userId]).sort((a, b) => a[1] - b[1]);
  assert.deepEqual(got, [
    ['ev', 1, 'live-1'],
    ['ev', 2, 'live-1'],
    ['news', 3, undefined],
    ['ev', 4, 'live-1'],
  ]);
  await core.close();
  assert.equal(nc.isClosed(), false, 'a connection given to the constructor stays open');
});

test("mode 'jetstream' refuses a NATS without the stream (unavailable) and closes what it opened", { timeout: 30000 }, async (t) => {
  t.after(cleanup);
  const nats = await startNatsServer();
  defer(() => nats.stop());
  const e = await rejectsWith(RealtimeService.connect({ servers: nats.url, mode: 'jetstream' }), 'unavailable');
  assert.match(e.message, /REALTIME/);
  await waitFor(async () => (await nats.connections()) === 0, { what: 'the connection closed' });
  const plain = await startNatsServer({ jetstream: false });
  defer(() => plain.stop());
  const e2 = await rejectsWith(RealtimeService.connect({ servers: plain.url, mode: 'jetstream' }), 'unavailable');
  assert.match(e2.message, /JetStream/);
  // Given a connection, the stream is looked up at the first send, which fails.
  const nc = await connect({ servers: nats.url });
  defer(() => nc.close());
  const rt = new RealtimeService(nc, { mode: 'jetstream' });
  await rejectsWith(rt.sendEventToUser('42', 'ev', {}), 'unavailable');
  await rejectsWith(RealtimeService.connect({ servers: 'nats://127.0.0.1:1', reconnect: false, timeout: 1000 }), 'unavailable');
});

test('auto: core while there is no stream, JetStream once a bridge created it (looked up again after 30 s)', { timeout: 90000 }, async (t) => {
  t.after(cleanup);
  const nats = await startNatsServer();
  defer(() => nats.stop());
  const rt = await RealtimeService.connect({ servers: nats.url });
  defer(() => rt.close());
  const connectedAt = Date.now();
  assert.equal(rt.mode, 'core');
  // Built on a connection, a service looks only at its first send.
  const nc = await connect({ servers: nats.url });
  defer(() => nc.close());
  const lazy = new RealtimeService(nc);
  // A bridge with history on creates the stream after the service looked.
  const bridge = await startBridge({ natsUrl: nats.url, args: ['--history', 'on'] });
  defer(() => bridge.kill('SIGTERM'));
  assert.equal(lazy.mode, 'core');
  await lazy.sendEventToUser('lazy', 'ev', {});
  assert.equal(lazy.mode, 'jetstream');
  const r = await open(bridge, 'late');
  let n = 0;
  await waitFor(
    async () => {
      await rt.sendEventToUser('late', 'ev', { n: n++ });
      return rt.mode === 'jetstream';
    },
    { timeoutMs: 45000, intervalMs: 500, what: 'the switch to JetStream' },
  );
  const switchedAfter = Date.now() - connectedAt;
  assert.ok(switchedAfter >= 29000, `looked again after ${switchedAfter} ms, not before 30 s`);
  // Every send was delivered (core ones stored too: the stream existed); the last was acked.
  await waitFor(() => r.events.length === n, { what: `${n} events` });
  assert.deepEqual(datas(r).map((d) => d.n), [...Array(n).keys()]);
  assert.deepEqual(await storedCounts(nc, 'user.>'), { 'user.late.ev': n, 'user.lazy.ev': 1 });
});

test('auto: back to core NATS when the stream is deleted; a live bridge gets each message once', { timeout: 90000 }, async (t) => {
  t.after(cleanup);
  const nats = await startNatsServer();
  defer(() => nats.stop());
  const nc = await connect({ servers: nats.url });
  defer(() => nc.close());
  const jsm = await nc.jetstreamManager();
  const history = () => jsm.streams.add({ name: 'REALTIME', subjects: ['user.>', 'broadcast.>'] });
  const opts = { servers: nats.url, ackTimeout: 1000, publishTimeout: 20000 };

  // 1. Nobody subscribes once the stream is gone: the publish meets "no responders", and the
  // message goes out with core NATS (seen by a subscriber that arrives after the lookup).
  // The stream is made the way a history-mode bridge makes it (no bridge: it would remake it).
  await history();
  const rt = await RealtimeService.connect(opts);
  defer(() => rt.close());
  assert.equal(rt.mode, 'jetstream');
  await rt.sendEventToUser('gone', 'ev', { n: 1 });
  assert.deepEqual(await storedCounts(nc, 'user.>'), { 'user.gone.ev': 1 });
  await jsm.streams.delete('REALTIME');
  // Resolves long before publishTimeout (it used to retry for 20 s), through core NATS.
  await bounded(rt.sendEventToUser('gone', 'ev', { n: 2 }), 5000, 'the send after the stream went');
  assert.equal(rt.mode, 'core');

  // 2. A live bridge on the subjects (what an operator turning history off runs): the JetStream
  // attempt reaches it as a plain message and no acknowledgement comes. The send resolves once
  // the lookup says the stream is gone, without sending again: the bridge's user gets it once.
  await history();
  const rt2 = await RealtimeService.connect(opts);
  defer(() => rt2.close());
  assert.equal(rt2.mode, 'jetstream');
  await jsm.streams.delete('REALTIME');
  const bridge = await startBridge({ natsUrl: nats.url, args: ['--history', 'off'] });
  defer(() => bridge.kill('SIGTERM'));
  const r = await open(bridge, 'live-after');
  await bounded(rt2.sendEventToUser('live-after', 'ev', { n: 3 }), 5000, 'the send to a live bridge');
  assert.equal(rt2.mode, 'core');
  await rt2.sendEventToUsers(['live-after', 'other'], 'ev', { n: 4 });
  await rt2.flush();
  await waitFor(() => r.events.length >= 2, { what: 'two live events' });
  // A third message through the same path proves nothing more is in flight for the first two.
  await rt2.sendEventToUser('live-after', 'ev', { n: 5 });
  await rt2.flush();
  await waitFor(() => r.events.length >= 3, { what: 'the third live event' });
  assert.deepEqual(datas(r).map((d) => d.n), [3, 4, 5]);
});

// --- JetStream played by the test (a nats-server without JetStream) ---------------------------

/** Answers stream-info and the publishes on user.fake.> as `answer(msg, attempt)` says. */
async function fakeJetStream(url, answer) {
  const nc = await connect({ servers: url });
  defer(() => nc.close());
  const attempts = [];
  nc.subscribe('$JS.API.STREAM.INFO.REALTIME', { callback: (_, m) => m.respond(JSON.stringify({ config: { name: 'REALTIME' } })) });
  nc.subscribe('user.fake.>', {
    callback: (_, m) => {
      attempts.push({ at: Date.now(), id: m.headers?.get('Nats-Msg-Id'), subject: m.subject });
      answer(m, attempts.length);
    },
  });
  await nc.flush();
  return attempts;
}
const ack = (m, seq) => m.respond(JSON.stringify({ stream: 'REALTIME', seq }));

test('a lost acknowledgement is retried with the same id after ackTimeout and a backoff; no responders is retried too', { timeout: 30000 }, async (t) => {
  t.after(cleanup);
  const nats = await startNatsServer({ jetstream: false });
  defer(() => nats.stop());
  // Attempts 1 and 2 get no answer (ack lost), the third is acknowledged.
  const attempts = await fakeJetStream(nats.url, (m, i) => i >= 3 && ack(m, 1));
  const rt = await RealtimeService.connect({ servers: nats.url, ackTimeout: 300 });
  defer(() => rt.close());
  assert.equal(rt.mode, 'jetstream');
  const t0 = Date.now();
  await rt.sendEventToUser('fake', 'ev', { x: 1 }, { msgId: 'm-1' });
  assert.deepEqual(attempts.map((a) => a.id), ['m-1', 'm-1', 'm-1']);
  // ackTimeout, then a backoff of 50-100 ms; ackTimeout, then 100-200 ms.
  const gaps = [attempts[1].at - attempts[0].at, attempts[2].at - attempts[1].at];
  assert.ok(gaps[0] >= 340 && gaps[0] < 1500, `first retry after ${gaps[0]} ms`);
  assert.ok(gaps[1] >= 390 && gaps[1] < 1500, `second retry after ${gaps[1]} ms`);
  assert.ok(Date.now() - t0 < 4000);

  // No responders (no JetStream leader for now): the publish is sent again until one answers.
  const nats2 = await startNatsServer({ jetstream: false });
  defer(() => nats2.stop());
  const late = await connect({ servers: nats2.url });
  defer(() => late.close());
  late.subscribe('$JS.API.STREAM.INFO.REALTIME', { callback: (_, m) => m.respond('{}') });
  await late.flush();
  const rt2 = await RealtimeService.connect({ servers: nats2.url, ackTimeout: 300 });
  defer(() => rt2.close());
  const sending = rt2.sendEventToUser('fake', 'ev', { x: 2 });
  await new Promise((r) => setTimeout(r, 400)); // the send meets "no responders" meanwhile
  const ids = [];
  late.subscribe('user.fake.>', { callback: (_, m) => (ids.push(m.headers.get('Nats-Msg-Id')), ack(m, 2)) });
  await late.flush();
  await bounded(sending, 5000, 'send after no responders');
  assert.equal(ids.length, 1);
});

test('auto stays on JetStream when the lookup after no responders answers anything but not found (a leader election answers 503)', { timeout: 30000 }, async (t) => {
  t.after(cleanup);
  const nats = await startNatsServer({ jetstream: false });
  defer(() => nats.stop());
  const nc = await connect({ servers: nats.url });
  defer(() => nc.close());
  let looks = 0;
  // Found at connect; afterwards JetStream "temporarily unavailable", as while it elects a leader.
  nc.subscribe('$JS.API.STREAM.INFO.REALTIME', {
    callback: (_, m) =>
      m.respond(++looks === 1 ? JSON.stringify({ config: { name: 'REALTIME' } }) : JSON.stringify({ error: { code: 503, err_code: 10008, description: 'JetStream system temporarily unavailable' } })),
  });
  await nc.flush();
  const rt = await RealtimeService.connect({ servers: nats.url, ackTimeout: 300, publishTimeout: 3000 });
  defer(() => rt.close());
  assert.equal(rt.mode, 'jetstream');
  // Nobody answers user.fake.>: every attempt meets "no responders" until publishTimeout.
  await rejectsWith(rt.sendEventToUser('fake', 'ev', {}), 'timeout');
  assert.equal(rt.mode, 'jetstream');
  assert.ok(looks >= 2 && looks <= 5, `${looks} lookups in 3 s (at most one a second after no responders)`);
});

test('a JetStream error answer fails at once (unavailable); no acknowledgement at all fails at publishTimeout (timeout)', { timeout: 30000 }, async (t) => {
  t.after(cleanup);
  const nats = await startNatsServer({ jetstream: false });
  defer(() => nats.stop());
  const attempts = await fakeJetStream(nats.url, (m) => {
    if (m.subject === 'user.fake.err') m.respond(JSON.stringify({ error: { code: 503, err_code: 10023, description: 'insufficient resources' } }));
    // user.fake.silent: never answered
  });
  const rt = await RealtimeService.connect({ servers: nats.url, ackTimeout: 200, publishTimeout: 1200 });
  defer(() => rt.close());
  let t0 = Date.now();
  const e = await rejectsWith(rt.sendEventToUser('fake', 'err', {}), 'unavailable');
  assert.match(e.message, /insufficient resources/);
  assert.equal(e.userId, 'fake');
  assert.equal(attempts.length, 1, 'not retried');
  assert.ok(Date.now() - t0 < 1500);
  t0 = Date.now();
  const e2 = await rejectsWith(rt.sendEventToUser('fake', 'silent', {}), 'timeout');
  const took = Date.now() - t0;
  assert.ok(took >= 1150 && took < 3000, `failed after ${took} ms`);
  const silent = attempts.filter((a) => a.subject === 'user.fake.silent');
  assert.ok(silent.length >= 3, `${silent.length} attempts`);
  assert.equal(new Set(silent.map((a) => a.id)).size, 1, 'one id for every attempt');
  assert.match(e2.message, /publishTimeout/);
});

test('at most maxInFlight messages wait for their acknowledgement; the others wait for a slot, in order', { timeout: 30000 }, async (t) => {
  t.after(cleanup);
  const nats = await startNatsServer({ jetstream: false });
  defer(() => nats.stop());
  const held = [];
  let acked = 0;
  let most = 0;
  let probed = false;
  const attempts = await fakeJetStream(nats.url, (m) => {
    if (m.subject === 'user.fake.probe') {
      attempts.pop();
      probed = true;
      return;
    }
    most = Math.max(most, attempts.length - acked);
    held.push(m);
  });
  // The service on the test's connection: a probe published on it after the first three
  // reaches the fake after anything the service had published before (one publisher's
  // messages keep their order), so "no fourth" is checked without waiting on a clock.
  const nc = await connect({ servers: nats.url });
  defer(() => nc.close());
  const rt = new RealtimeService(nc, { maxInFlight: 3 });
  let resolved = 0;
  const sends = Array.from({ length: 10 }, (_, i) => rt.sendEventToUser('fake', 'ev', { i }).then(() => resolved++));
  await waitFor(() => attempts.length === 3, { what: 'the first three' });
  nc.publish('user.fake.probe');
  await waitFor(() => probed, { what: 'the probe' });
  assert.equal(attempts.length, 3);
  while (resolved < 10) {
    await waitFor(() => held.length > 0 || resolved === 10, { what: 'a held publish' });
    if (held.length) ack(held.shift(), ++acked);
  }
  await bounded(Promise.all(sends), 5000, 'all sends');
  assert.equal(attempts.length, 10);
  assert.ok(most <= 3, `${most} waited at once`);
  // The ids are made up in call order: the slots were given in call order too.
  assert.deepEqual(
    attempts.map((a) => Number(a.id.split('-').pop())),
    Array.from({ length: 10 }, (_, i) => i + 1),
  );
});

test('close waits for the sends in flight, refuses new ones, and closes only a connection it opened', { timeout: 30000 }, async (t) => {
  t.after(cleanup);
  const nats = await startNatsServer({ jetstream: false });
  defer(() => nats.stop());
  const fake = await fakeJetStream(nats.url, (m, i) => setTimeout(() => ack(m, i), 300));
  assert.equal(await nats.connections(), 1);
  const rt = await RealtimeService.connect({ servers: nats.url });
  await waitFor(async () => (await nats.connections()) === 2, { what: 'two connections' });
  let done = 0;
  const sends = Array.from({ length: 20 }, (_, i) => rt.sendEventToUser('fake', 'ev', { i }).then(() => done++));
  const t0 = Date.now();
  await bounded(rt.close(), 5000, 'close');
  assert.equal(done, 20, 'every send settled before close resolved');
  assert.ok(Date.now() - t0 >= 250);
  await Promise.all(sends);
  await rejectsWith(rt.sendEventToUser('fake', 'ev', {}), 'closed');
  await rejectsWith(rt.broadcastEvent('ev', {}), 'closed');
  await rt.close(); // again: nothing more
  await waitFor(async () => (await nats.connections()) === 1, { what: 'its connection closed' });
  assert.equal(fake.length, 20);

  // Given a connection: close leaves it open, and flushes core sends first.
  const nc = await connect({ servers: nats.url });
  defer(() => nc.close());
  const core = new RealtimeService(nc, { mode: 'core' });
  const before = fake.length; // the fake sees core publishes too (it answers; nobody listens)
  await core.sendEventToUser('fake', 'core', { n: 1 });
  await core.close();
  assert.equal(nc.isClosed(), false);
  await waitFor(() => fake.length === before + 1, { what: 'the core send' });
});
