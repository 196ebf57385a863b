// The SDK against a bridge in live mode (`--history off`): core NATS only, envelope ids
// `<boot>-<n>`, the cursor sent back but ignored by the bridge (docs/protocol.md §5.1).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { subscribe } from 'realtime-bridge';
import { startNats, startBridge, token, producer, waitFor, collector, recordFetches } from '../helpers.mjs';

const LIVE_ID = /^([A-Za-z0-9_-]{8})-(\d+)$/;

let nats;
let pub;
before(async () => {
  nats = await startNats();
  pub = await producer(nats.url);
});
after(async () => {
  await pub?.close();
  await nats?.stop();
});

/** Every fetch the SDK makes (helpers.mjs `recordFetches`). */
const { forUser: fetchesFor } = recordFetches();

test('live mode: an event published once after open arrives once; a reconnection and a restarted bridge go on with new ids', { timeout: 60000 }, async () => {
  const args = ['--history', 'off'];
  const first = await startBridge({ natsUrl: nats.url, args });
  let restarted;
  const user = 'live-user';
  const c = collector();
  const sub = subscribe(user, null, c.cb, {
    url: first.url,
    getToken: async () => token(user),
    backoff: { initialMs: 100, maxMs: 400 },
    ...c.opts,
  });
  try {
    assert.ok(first.logs.some((l) => l.includes('live mode')), 'the bridge runs in live mode');
    await waitFor(() => sub.status === 'open', { what: 'open' });
    assert.equal(fetchesFor(user)[0].lastEventId, null);
    await pub.send(user, 'message_new', { k: 'first' });
    await waitFor(() => c.keys().includes('first'), { what: 'the first event' });
    const [, boot, n] = LIVE_ID.exec(c.events[0].id) ?? assert.fail(`not a live-mode id: ${c.events[0].id}`);
    assert.equal(sub.lastEventId, c.events[0].id, 'in live mode the cursor is the envelope id');
    // A broadcast and a user event come through two subscriptions: ordered per kind only.
    await pub.broadcast('system_alert', { k: 'broadcast' });
    await pub.send(user, 'message_new', { k: 'second' });
    await waitFor(() => c.keys().includes('second') && c.keys().includes('broadcast'), { what: 'the second event and the broadcast' });
    assert.deepEqual([...c.keys()].sort(), ['broadcast', 'first', 'second']);
    assert.ok(c.events.every((e) => LIVE_ID.exec(e.id)?.[1] === boot), 'one boot prefix per bridge process');
    const secondEvent = c.events.find((e) => e.data.k === 'second');
    assert.ok(Number(LIVE_ID.exec(secondEvent.id)[2]) > Number(n), 'the counter goes up');

    // reconnect(): the cursor is sent, the bridge ignores it (nothing replayed), new events flow.
    const cursor = sub.lastEventId;
    sub.reconnect();
    await waitFor(() => fetchesFor(user).length === 2 && sub.status === 'open', { what: 'reopened' }).catch((e) => {
      throw new Error(`${e.message}; statuses ${c.statuses.join(',')}; requests ${fetchesFor(user).length}; errors ${c.errors.map((x) => x.message).join('; ')}`);
    });
    assert.equal(fetchesFor(user)[1].lastEventId, cursor);
    await pub.send(user, 'message_new', { k: 'third' });
    await waitFor(() => c.keys().includes('third'), { what: 'the third event' });
    assert.deepEqual(c.keys().slice(3), ['third'], 'nothing replayed');

    // A restarted bridge counts from 1 again under a new prefix: its events are new, not duplicates.
    await first.kill('SIGKILL');
    await waitFor(() => sub.status === 'reconnecting', { what: 'reconnecting' });
    restarted = await startBridge({ natsUrl: nats.url, listen: first.addr, args });
    await waitFor(() => sub.status === 'open', { what: 'open on the restarted bridge', timeoutMs: 15000 });
    await pub.send(user, 'message_new', { k: 'restarted' });
    await waitFor(() => c.keys().includes('restarted'), { what: 'the event after the restart' });
    const last = LIVE_ID.exec(c.events.at(-1).id);
    assert.ok(last, `not a live-mode id: ${c.events.at(-1).id}`);
    assert.notEqual(last[1], boot, 'a new boot prefix');
    assert.deepEqual(c.keys().slice(3), ['third', 'restarted']);
    const ids = c.events.map((e) => e.id);
    assert.equal(new Set(ids).size, ids.length);
    assert.ok(c.events.every((e) => e.event !== 'reset'), 'live mode sends no reset');
  } finally {
    sub.close();
    await first.kill('SIGKILL');
    await restarted?.kill('SIGTERM');
  }
});
