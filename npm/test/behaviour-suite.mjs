// Behaviour both clients must share: the real SDK (driven through the fixture server) and the
// in-memory client of `realtime-bridge/testing` (driven with emit/sendReset). A component tested
// with the in-memory client must see what it would see in production, so the same cases run
// against both (test/node/behaviour.test.mjs); a difference fails one of the two runs.
//
// A driver gives:
//   name
//   subscribe(user, events, callback, options) -> Subscription
//   opened(user, sub)                resolves once the subscription's stream is open
//   emit(user, event, data, id)      an event for `user` with envelope id `id`
//   broadcast(user, event, data, id) a broadcast, as it reaches `user`'s stream
//   reset(user, reason)              the bridge's `reset` control frame on `user`'s stream
//   until(fn, what)                  resolves once fn() is truthy (bounded)
import assert from 'node:assert/strict';

/** A subscription's deliveries (each event's `data.k`), statuses, errors and resets. */
function recorder() {
  const r = { events: [], statuses: [], errors: [], resets: [] };
  r.cb = (e) => r.events.push(e);
  r.opts = {
    onStatus: (s) => r.statuses.push(s),
    onError: (e) => r.errors.push(e),
    onReset: (info) => r.resets.push(info),
  };
  r.keys = () => r.events.map((e) => e.data?.k);
  return r;
}

/** The cases, as [name, fn(driver)]; each uses users of its own. */
export const behaviourCases = [
  [
    'an envelope id is delivered once: a replayed id is dropped, the next new one delivered',
    async (d) => {
      const user = 'bh-dedupe';
      const a = recorder();
      const sub = d.subscribe(user, null, a.cb, a.opts);
      try {
        await d.opened(user, sub);
        await d.emit(user, 'tick', { k: 'one' }, '1');
        await d.emit(user, 'tick', { k: 'two' }, '2');
        await d.emit(user, 'tick', { k: 'one-again' }, '1');
        await d.emit(user, 'tick', { k: 'two-again' }, '2');
        // The sentinel: once it is in, whatever came before it has been handled.
        await d.emit(user, 'tick', { k: 'three' }, '3');
        await d.until(() => a.keys().includes('three'), 'the sentinel');
        assert.deepEqual(a.keys(), ['one', 'two', 'three']);
        assert.deepEqual(a.errors, []);
      } finally {
        sub.close();
      }
    },
  ],
  [
    'reset: onReset({ reason }) for every subscription of the user whatever its filter; ids seen before are delivered again',
    async (d) => {
      const user = 'bh-reset';
      const a = recorder();
      const b = recorder();
      const sa = d.subscribe(user, ['a'], a.cb, a.opts);
      const sb = d.subscribe(user, ['b'], b.cb, b.opts);
      try {
        await d.opened(user, sa);
        await d.opened(user, sb);
        await d.emit(user, 'a', { k: 'a1' }, '1');
        await d.emit(user, 'b', { k: 'b2' }, '2');
        // The history was re-created: sequences, so envelope ids, start again at 1.
        await d.reset(user, 'history_recreated');
        await d.emit(user, 'a', { k: 'a1-new' }, '1');
        await d.emit(user, 'b', { k: 'b2-new' }, '2');
        await d.emit(user, 'a', { k: 'a1-new-again' }, '1');
        await d.emit(user, 'a', { k: 'sentinel' }, '3');
        await d.until(() => a.keys().includes('sentinel'), 'the sentinel');
        await d.until(() => b.keys().includes('b2-new'), 'b2-new');
        assert.deepEqual(a.keys(), ['a1', 'a1-new', 'sentinel']);
        assert.deepEqual(b.keys(), ['b2', 'b2-new']);
        assert.deepEqual(a.resets, [{ reason: 'history_recreated' }]);
        assert.deepEqual(b.resets, [{ reason: 'history_recreated' }]);
        assert.ok([...a.events, ...b.events].every((e) => e.event !== 'reset'), 'the frame is not an event');
      } finally {
        sa.close();
        sb.close();
      }
    },
  ],
  [
    'filters: each subscription gets only its event names; null gets everything, broadcasts included',
    async (d) => {
      const user = 'bh-filter';
      const some = recorder();
      const all = recorder();
      const s1 = d.subscribe(user, ['message_new', 'system_alert'], some.cb, some.opts);
      const s2 = d.subscribe(user, null, all.cb, all.opts);
      try {
        await d.opened(user, s1);
        await d.opened(user, s2);
        await d.emit(user, 'message_new', { k: 'm1' }, '1');
        await d.emit(user, 'typing_start', { k: 't2' }, '2');
        await d.broadcast(user, 'system_alert', { k: 'b3' }, 'b-3');
        await d.broadcast(user, 'other_broadcast', { k: 'b4' }, 'b-4');
        await d.emit(user, 'message_new', { k: 'sentinel' }, '5');
        await d.until(() => some.keys().includes('sentinel') && all.keys().includes('sentinel'), 'the sentinel');
        assert.deepEqual(some.keys(), ['m1', 'b3', 'sentinel']);
        assert.deepEqual(all.keys(), ['m1', 't2', 'b3', 'b4', 'sentinel']);
        assert.deepEqual(all.events.map((e) => e.event), ['message_new', 'typing_start', 'system_alert', 'other_broadcast', 'message_new']);
        assert.equal(some.events[0].userId, user);
        assert.equal(some.events[1].userId, undefined, 'a broadcast carries no userId');
        assert.equal(typeof some.events[0].timestamp, 'string');
      } finally {
        s1.close();
        s2.close();
      }
    },
  ],
  [
    'statuses: connecting then open; reconnect() goes reconnecting then open for the shared connection; close() reports closed and ends delivery',
    async (d) => {
      const user = 'bh-status';
      const a = recorder();
      const b = recorder();
      const sa = d.subscribe(user, null, a.cb, a.opts);
      assert.equal(sa.status, 'connecting');
      const sb = d.subscribe(user, null, b.cb, b.opts);
      try {
        await d.opened(user, sa);
        await d.opened(user, sb);
        await d.until(() => a.statuses.length >= 2 && b.statuses.length >= 2, 'statuses');
        assert.deepEqual(a.statuses, ['connecting', 'open']);
        assert.deepEqual(b.statuses, ['connecting', 'open']);
        await d.emit(user, 'tick', { k: 'k1' }, '1');
        await d.until(() => a.keys().includes('k1'), 'k1');
        assert.equal(sa.lastEventId, '1');
        sa.reconnect();
        const reopened = (r) => r.statuses.length >= 4;
        await d.until(() => reopened(a) && reopened(b), 'reconnecting, open');
        assert.deepEqual(a.statuses, ['connecting', 'open', 'reconnecting', 'open']);
        assert.deepEqual(b.statuses, ['connecting', 'open', 'reconnecting', 'open']);
        await d.opened(user, sa);
        sa.close();
        assert.equal(sa.status, 'closed');
        assert.equal(a.statuses.at(-1), 'closed');
        assert.equal(sa.lastEventId, '1', 'the cursor is kept after close');
        sa.close(); // idempotent
        await d.emit(user, 'tick', { k: 'after-close' }, '2');
        await d.emit(user, 'tick', { k: 'sentinel' }, '3');
        await d.until(() => b.keys().includes('sentinel'), 'the sentinel');
        assert.deepEqual(a.keys(), ['k1'], 'nothing after close()');
        assert.deepEqual(b.keys(), ['k1', 'after-close', 'sentinel']);
        assert.equal(a.statuses.filter((s) => s === 'closed').length, 1);
        assert.equal(sb.status, 'open');
        assert.deepEqual(a.errors, []);
      } finally {
        sa.close();
        sb.close();
      }
    },
  ],
  [
    'a callback that throws is reported to its onError; other callbacks and later events are still delivered',
    async (d) => {
      const user = 'bh-throw';
      const bad = recorder();
      const good = recorder();
      let calls = 0;
      const sBad = d.subscribe(user, null, () => {
        calls++;
        throw new Error(`callback failed ${calls}`);
      }, bad.opts);
      const sGood = d.subscribe(user, null, good.cb, good.opts);
      try {
        await d.opened(user, sBad);
        await d.opened(user, sGood);
        await d.emit(user, 'tick', { k: 'k1' }, '1');
        await d.emit(user, 'tick', { k: 'k2' }, '2');
        await d.until(() => good.keys().includes('k2'), 'k2');
        assert.deepEqual(good.keys(), ['k1', 'k2']);
        assert.equal(calls, 2, 'the throwing callback still gets the later event');
        assert.deepEqual(bad.errors.map((e) => e.message), ['callback failed 1', 'callback failed 2']);
        assert.deepEqual(good.errors, []);
        assert.equal(sBad.status, 'open');
      } finally {
        sBad.close();
        sGood.close();
      }
    },
  ],
];
