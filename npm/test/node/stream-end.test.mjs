// The bridge ends streams with an `end` control frame (token expired, max lifetime, shutdown);
// the SDK reconnects at once with its cursor, with a fresh token after `token_expired` and the
// same one otherwise. Real nats-server (JetStream: history mode) and real bridge processes;
// events published through JetStream so each one's sequence (its envelope id) is known. Every
// backoff is 30 s: one would be obvious.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { subscribe } from 'realtime-bridge';
import {
  startNats,
  startBridge,
  token,
  openStreams,
  waitFor,
  sleep,
  collector,
  jsProducer,
  publishAndWait,
  verify,
  forwarder,
  recordFetches,
} from '../helpers.mjs';

const NO_BACKOFF_BEFORE_MS = 30000;
const backoff = { initialMs: NO_BACKOFF_BEFORE_MS, maxMs: NO_BACKOFF_BEFORE_MS, jitter: 0 };

/** Every fetch the SDK makes (helpers.mjs `recordFetches`). */
const { forUser: fetchesFor, realFetch } = recordFetches();

/** `realtime_bridge_streams_cut_total{reason}` of a bridge: how many streams it ended, and why. */
async function streamsCut(bridge, reason) {
  const text = await (await realFetch(`${bridge.url}/metrics`)).text();
  const m = text.match(new RegExp(`^realtime_bridge_streams_cut_total\\{reason="${reason}"\\} (\\d+)`, 'm'));
  return m ? Number(m[1]) : 0;
}

/**
 * Publishes `${prefix}-<n>` events one after another (each acked) until `stop()`, which resolves
 * to the keys (or rejects with the publish error that ended the loop).
 */
function pump(p, user, prefix, everyMs = 20) {
  const keys = [];
  let running = true;
  const done = (async () => {
    for (let i = 0; running; i++) {
      const key = `${prefix}-${i}`;
      await p.publish(user, 'tick', key, { i });
      keys.push(key);
      await sleep(everyMs);
    }
    return keys;
  })();
  done.catch(() => {}); // reported by stop()
  return {
    keys,
    stop() {
      running = false;
      return done;
    },
  };
}

/** A collector that also timestamps statuses and remembers the cursor at each one. */
function timedCollector(getSub) {
  const c = collector();
  c.timed = [];
  const onStatus = c.opts.onStatus;
  c.opts.onStatus = (s) => {
    onStatus(s);
    c.timed.push({ s, t: Date.now(), cursor: getSub()?.lastEventId ?? null });
  };
  return c;
}

/**
 * Closes `sub` at a moment it is open: its last reconnection is complete (token, request,
 * open), so the checks below see whole cycles, and no further end can start a new one.
 */
async function closeWhenOpen(sub) {
  await waitFor(() => sub.status === 'open' && (sub.close(), true), { what: 'open, to close' });
}

/**
 * Checks each reconnection of `user` after the first connection: it came at most `maxMs` after
 * the status went `reconnecting` (no backoff), resumed from the cursor the subscription held
 * then, and the statuses alternate `open` / `reconnecting`. Returns the reconnection delays.
 */
function checkImmediateReconnects(c, user, maxMs) {
  const fetches = fetchesFor(user);
  const reconnecting = c.timed.filter((x) => x.s === 'reconnecting');
  assert.equal(reconnecting.length, fetches.length - 1, `one reconnection per end (statuses ${c.statuses.join(',')})`);
  const delays = reconnecting.map((r, i) => {
    const f = fetches[i + 1];
    assert.ok(f.t >= r.t, 'the request follows the status');
    assert.ok(r.cursor, 'a cursor to resume from');
    assert.equal(f.lastEventId, r.cursor, `reconnection ${i + 1} resumed from the cursor`);
    return f.t - r.t;
  });
  assert.ok(delays.every((d) => d <= maxMs), `reconnected at once, not after a backoff: delays ${delays.join(', ')} ms`);
  const expected = ['connecting', 'open', ...reconnecting.flatMap(() => ['reconnecting', 'open'])];
  assert.deepEqual(c.statuses.slice(0, expected.length), expected);
  return delays;
}

/**
 * Stops the producer, waits (bounded) for every event it published, then for a sentinel
 * published after them (a repeat would have come before it), closes the subscription, and checks
 * each event arrived once and in order. Returns the keys published and when the last one had
 * arrived.
 */
async function finish(label, c, p, user, run, sub) {
  const keys = await run.stop();
  await waitFor(() => keys.every((k) => c.keys().includes(k)), { what: 'every event', timeoutMs: 10000 }).catch((e) => {
    verify(label, c, p, user, keys);
    throw e;
  });
  const arrived = Date.now();
  await publishAndWait(p, user, c, 'sentinel');
  assert.equal(c.events.at(-1).data.k, 'sentinel', 'nothing after the sentinel');
  await closeWhenOpen(sub);
  verify(label, c, p, user, keys);
  return { keys, arrived };
}

/** Stops what a test started, the last started first; each part may be missing (the test
 * failed before starting it). */
async function tearDown({ run, sub, p, fwd, bridges, nats }) {
  await run?.stop().catch(() => {});
  sub?.close();
  await p?.close();
  await fwd?.close();
  for (const b of bridges) await b?.kill('SIGKILL');
  await nats.stop();
}

test('end / token_expired: getToken gives a fresh token before each immediate reconnection; every event once, in order', { timeout: 90000 }, async () => {
  const nats = await startNats();
  let bridge;
  let p;
  let sub;
  let run;
  try {
    // Tokens of 2 s, no leeway, and a heartbeat (where the bridge checks `exp`) every 250 ms.
    bridge = await startBridge({ natsUrl: nats.url, heartbeat: '250ms', args: ['--jwt-leeway', '0s'] });
    p = await jsProducer(nats.url);
    const user = 'end-token';
    const handedOut = []; // { t, token }
    const c = timedCollector(() => sub);
    sub = subscribe(user, null, c.cb, {
      url: bridge.url,
      getToken: async () => {
        const t = token(user, ['--ttl', '2s']);
        handedOut.push({ t: Date.now(), token: t });
        return t;
      },
      backoff,
      heartbeatTimeoutMs: 5000,
      ...c.opts,
    });
    await waitFor(() => sub.status === 'open', { what: 'open' });
    await publishAndWait(p, user, c, 'first-token');
    const started = Date.now();
    run = pump(p, user, 'tok');
    // Three token expiries, each an `end` and a reconnection.
    await waitFor(() => fetchesFor(user).length >= 4, { what: 'three ends and reconnections', timeoutMs: 20000 });
    const { keys, arrived } = await finish('sdk-end token_expired', c, p, user, run, sub);
    const elapsed = arrived - started;
    assert.ok(keys.length > 100, `events published across the expiries (${keys.length})`);
    assert.ok(await streamsCut(bridge, 'token_expired') >= 3, 'the bridge ended the streams for token_expired');
    const fetches = fetchesFor(user);
    const delays = checkImmediateReconnects(c, user, 1000);
    // Each `end` is a `token_expired`, so getToken was called before every request: each
    // request carries the token handed out last before it, a new one each time.
    assert.equal(handedOut.length, fetches.length, 'one getToken call per request (no 401 on the way)');
    fetches.forEach((f, i) => {
      assert.ok(handedOut[i].t <= f.t && (i === 0 || handedOut[i].t >= fetches[i - 1].t), `getToken ran before request ${i}`);
      assert.equal(f.auth, `Bearer ${handedOut[i].token}`);
      if (i > 0) assert.notEqual(f.auth, fetches[i - 1].auth, `request ${i} carries a fresh token`);
    });
    assert.ok(elapsed < NO_BACKOFF_BEFORE_MS / 2, `the run took ${elapsed} ms: no backoff delay in it`);
    assert.deepEqual(c.errors, [], 'onError was not called');
    assert.ok(c.events.every((e) => e.event !== 'end' && e.event !== 'reset'), 'no control frame reached the callback');
    console.log(`sdk-end token_expired: ${fetches.length - 1} reconnections, delays ${delays.join(', ')} ms, ${keys.length} events in ${elapsed} ms`);
  } finally {
    await tearDown({ run, sub, p, bridges: [bridge], nats });
  }
});

test('end / max_lifetime: immediate reconnection with the same (still valid) token; every event once, in order', { timeout: 90000 }, async () => {
  const nats = await startNats();
  let bridge;
  let p;
  let sub;
  let run;
  try {
    bridge = await startBridge({ natsUrl: nats.url, heartbeat: '250ms', args: ['--jwt-leeway', '0s', '--max-stream-lifetime', '2s'] });
    p = await jsProducer(nats.url);
    const user = 'end-lifetime';
    const fixed = token(user); // 1 h: outlives the test
    const c = timedCollector(() => sub);
    sub = subscribe(user, null, c.cb, { url: bridge.url, token: fixed, backoff, heartbeatTimeoutMs: 5000, ...c.opts });
    await waitFor(() => sub.status === 'open', { what: 'open' });
    await publishAndWait(p, user, c, 'first-lifetime');
    const started = Date.now();
    run = pump(p, user, 'life');
    await waitFor(() => fetchesFor(user).length >= 3, { what: 'two ends and reconnections', timeoutMs: 15000 });
    const { keys, arrived } = await finish('sdk-end max_lifetime', c, p, user, run, sub);
    const elapsed = arrived - started;
    assert.ok(await streamsCut(bridge, 'max_lifetime') >= 2, 'the bridge ended the streams for max_lifetime');
    const delays = checkImmediateReconnects(c, user, 1000);
    assert.ok(fetchesFor(user).every((f) => f.auth === `Bearer ${fixed}`), 'the same token every time');
    assert.ok(elapsed < NO_BACKOFF_BEFORE_MS / 2, `the run took ${elapsed} ms: no backoff delay in it`);
    assert.deepEqual(c.errors, [], 'onError was not called');
    assert.ok(c.events.every((e) => e.event !== 'end'), 'no control frame reached the callback');
    console.log(`sdk-end max_lifetime: ${delays.length} reconnections, delays ${delays.join(', ')} ms, ${keys.length} events`);
  } finally {
    await tearDown({ run, sub, p, bridges: [bridge], nats });
  }
});

test('end / shutdown: SIGTERM to the bridge, another instance takes over the url; immediate resume with the same token, nothing lost or twice', { timeout: 90000 }, async () => {
  const nats = await startNats();
  let a;
  let b;
  let fwd;
  let p;
  let sub;
  let run;
  try {
    a = await startBridge({ natsUrl: nats.url });
    b = await startBridge({ natsUrl: nats.url });
    fwd = await forwarder(a.addr);
    p = await jsProducer(nats.url);
    const user = 'end-shutdown';
    let tokens = 0;
    const c = timedCollector(() => sub);
    sub = subscribe(user, null, c.cb, {
      url: fwd.url,
      getToken: async () => (++tokens, token(user)),
      backoff,
      heartbeatTimeoutMs: 5000,
      ...c.opts,
    });
    await waitFor(() => sub.status === 'open', { what: 'open' });
    assert.equal(await openStreams(a.url), 1, 'the stream is on bridge A');
    await publishAndWait(p, user, c, 'first-shutdown');
    run = pump(p, user, 'drain');
    await waitFor(() => run.keys.length >= 30, { what: 'events before the shutdown' });
    // New connections now reach B; A drains (end / shutdown to its streams) and exits.
    fwd.setTarget(b.addr);
    const killedAt = Date.now();
    await a.kill('SIGTERM');
    assert.equal(a.proc.exitCode, 0, 'A shut down cleanly');
    await waitFor(() => fetchesFor(user).length === 2 && sub.status === 'open', { what: 'open on B', timeoutMs: 10000 });
    const reopenedIn = Date.now() - killedAt;
    assert.equal(await openStreams(b.url), 1, 'the stream is now on bridge B');
    const onB = run.keys.length;
    await waitFor(() => run.keys.length >= onB + 20 && c.keys().includes(run.keys[onB + 19]), { what: 'more events, on B' });
    const { keys } = await finish('sdk-end shutdown', c, p, user, run, sub);
    assert.ok(a.logs.some((l) => l.includes('shutting down')), 'A went through its graceful shutdown');
    assert.equal(fwd.counts.get(b.addr), 1, 'one connection to B: one reconnection, not two');
    // The jitter after a shutdown is under 250 ms; the backoff would have been 30 s.
    const delays = checkImmediateReconnects(c, user, 1000);
    assert.ok(reopenedIn < 5000, `open again ${reopenedIn} ms after the SIGTERM`);
    assert.equal(tokens, 1, 'the reconnection reuses the token: no getToken call for a shutdown');
    assert.deepEqual(c.errors, [], 'onError was not called');
    assert.ok(c.events.every((e) => e.event !== 'end'), 'no control frame reached the callback');
    console.log(`sdk-end shutdown: reconnected after ${delays[0]} ms, open on B ${reopenedIn} ms after the SIGTERM, ${keys.length} events`);
  } finally {
    await tearDown({ run, sub, p, fwd, bridges: [a, b], nats });
  }
});
