// Presence names the SDK's connections: `clientId` as given, or a made-up one per connection
// (docs/protocol.md §4.2 and §6.1), against a real bridge and nats-server.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'nats';
import { subscribe } from 'realtime-bridge';
import { startNats, startBridge, token, producer, waitFor, collector, recordFetches, bounded } from '../helpers.mjs';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

let nats;
let bridge;
let pub;
let nc;
let presenceToken;
before(async () => {
  nats = await startNats();
  bridge = await startBridge({ natsUrl: nats.url });
  pub = await producer(nats.url);
  nc = await connect({ servers: nats.url });
  presenceToken = token('svc', ['--scope', 'presence']);
});
after(async () => {
  await nc?.close();
  await pub?.close();
  await bridge?.kill();
  await nats?.stop();
});

const { forUser: fetchesFor } = recordFetches();

/** The bridge's presence instance id, from its `listening` log line. */
function instanceId() {
  for (const line of bridge.logs) {
    try {
      const j = JSON.parse(line);
      if (j.fields?.message === 'listening' && j.fields.instance) return j.fields.instance;
    } catch {
      /* not JSON */
    }
  }
  assert.fail('no instance in the listening line');
}

async function presenceHttp(user) {
  const r = await bounded(fetch(`${bridge.url}/v1/presence/${user}`, { headers: { authorization: `Bearer ${presenceToken}` } }), 5000, 'presence');
  assert.equal(r.status, 200);
  return r.json();
}

async function presenceNats(user) {
  const m = await nc.request(`realtime.presence.${user}`, '', { timeout: 5000 });
  return JSON.parse(new TextDecoder().decode(m.data));
}

/** Waits until HTTP presence of `user` lists `n` clients, and returns that answer. */
async function clientsOf(user, n, what) {
  let last;
  await waitFor(
    async () => {
      last = await presenceHttp(user);
      return last.clients.length === n;
    },
    { what },
  ).catch((e) => {
    throw new Error(`${e.message}; last answer ${JSON.stringify(last)}`);
  });
  return last;
}

/** `since` is RFC 3339 UTC with milliseconds, between `from` and now. */
function assertSince(since, from) {
  assert.match(since, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  const t = Date.parse(since);
  assert.ok(t >= from - 1 && t <= Date.now(), `since ${since} is not when the stream opened`);
}

test('clientId: tab-1 is listed as tab-1 (HTTP and NATS), the events filter still applies, and a closed subscription leaves the list', { timeout: 30000 }, async () => {
  const user = 'presence-given';
  const from = Date.now();
  const c = collector();
  const sub = subscribe(user, ['message_new'], c.cb, { url: bridge.url, getToken: async () => token(user), clientId: 'tab-1', ...c.opts });
  try {
    await waitFor(() => sub.status === 'open', { what: 'open' });
    const url = new URL(fetchesFor(user)[0].url);
    assert.equal(url.searchParams.get('clientId'), 'tab-1');
    assert.equal(url.searchParams.get('events'), 'message_new');
    const v = await clientsOf(user, 1, 'tab-1 in presence');
    assert.deepEqual({ ...v, clients: undefined }, { userId: user, connected: true, streams: 1, clients: undefined });
    assert.equal(v.clients[0].id, 'tab-1');
    assert.equal(v.clients[0].instance, instanceId());
    assertSince(v.clients[0].since, from);
    assert.deepEqual(await presenceNats(user), v, 'NATS answers the same');
    // Both query parameters reached the bridge: only the filtered name is delivered.
    await pub.send(user, 'typing_start', { k: 'filtered out' });
    await pub.send(user, 'message_new', { k: 'in' });
    await waitFor(() => c.keys().includes('in'), { what: 'the filtered event' });
    assert.deepEqual(c.keys(), ['in']);
    assert.deepEqual(c.errors, []);
  } finally {
    sub.close();
  }
  const gone = await clientsOf(user, 0, 'the closed subscription to leave presence');
  assert.deepEqual(gone, { userId: user, connected: false, streams: 0, clients: [] });
});

test('no clientId: the connection gets a random UUID, kept across reconnections', { timeout: 30000 }, async () => {
  const user = 'presence-made-up';
  const from = Date.now();
  const c = collector();
  const sub = subscribe(user, null, c.cb, { url: bridge.url, getToken: async () => token(user), ...c.opts });
  try {
    await waitFor(() => sub.status === 'open', { what: 'open' });
    const v = await clientsOf(user, 1, 'the made-up id in presence');
    const id = v.clients[0].id;
    assert.match(id, UUID, 'crypto.randomUUID() in Node 20');
    assert.equal(new URL(fetchesFor(user)[0].url).searchParams.get('clientId'), id);
    assertSince(v.clients[0].since, from);
    // A reconnection is the same connection to the app: the same id, a later `since`.
    sub.reconnect();
    await waitFor(() => fetchesFor(user).length === 2 && sub.status === 'open', { what: 'reopened' });
    let again;
    await waitFor(
      async () => {
        again = await presenceHttp(user);
        return again.clients.length === 1 && again.clients[0].since !== v.clients[0].since;
      },
      { what: 'only the new stream listed' },
    );
    assert.equal(again.clients[0].id, id);
    // Another user's connection gets another id.
    const other = subscribe('presence-made-up-2', null, () => {}, { url: bridge.url, getToken: async () => token('presence-made-up-2') });
    try {
      const w = await waitFor(async () => (await presenceHttp('presence-made-up-2')).clients[0], { what: 'the second connection' });
      assert.match(w.id, UUID);
      assert.notEqual(w.id, id);
    } finally {
      other.close();
    }
  } finally {
    sub.close();
  }
});

test('an invalid clientId throws a TypeError before anything is sent', () => {
  const before = fetchesFor('presence-bad').length;
  for (const clientId of ['a.b', '', 'tab 1', 'x'.repeat(129), 42]) {
    assert.throws(
      () => subscribe('presence-bad', null, () => {}, { url: bridge.url, token: 'x', clientId }),
      (e) => e instanceof TypeError && /clientId/.test(e.message),
      JSON.stringify(clientId),
    );
  }
  assert.equal(fetchesFor('presence-bad').length, before);
});
