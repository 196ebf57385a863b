// getToken over a subscription's life (docs/protocol.md §6.2): its token is reused by every
// reconnection until the bridge refuses it (401), ends a stream because it expired (`end` /
// `token_expired`), or its `exp` is near; no token or an `UnauthorizedError` ends the
// subscription (`unauthenticated`); any other failure is retried. Real nats-server and bridge
// processes. Where a test needs time to pass, or a client whose clock is off, it shifts the
// clock the SDK reads (`Date.now`) instead of waiting.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { subscribe as sdkSubscribe, isRealtimeError, UnauthorizedError } from 'realtime-bridge';
import { startNats, startBridge, token, bridgeBin, waitFor, collector, recordFetches } from '../helpers.mjs';

/** Every fetch the SDK makes (helpers.mjs `recordFetches`). */
const { forUser: fetchesFor, realFetch } = recordFetches();

let nats;
let bridge; // default flags: tokens of 1 h outlive every test

before(async () => {
  nats = await startNats();
  bridge = await startBridge({ natsUrl: nats.url });
});

after(async () => {
  for (const sub of opened) sub.close();
  await bridge?.kill();
  await nats?.stop();
});

/** Every subscription, closed after the file even when a test fails before its own close(). */
const opened = new Set();
const subscribe = (...args) => {
  const sub = sdkSubscribe(...args);
  opened.add(sub);
  return sub;
};

/**
 * A getToken that counts its calls; `next(n)` (n from 1) gives (or throws, synchronously or not)
 * the token of call n; `given` holds the tokens given.
 */
function tokenSource(next) {
  const src = { calls: 0, given: [] };
  src.getToken = () =>
    Promise.resolve(next(++src.calls)).then((t) => {
      src.given.push(t);
      return t;
    });
  return src;
}

/** A JWT for `user` the bridge refuses (401): well formed, 1 h, signed with another secret. */
function forgedToken(user) {
  return execFileSync(bridgeBin, ['token', '--user', user, '--jwt-secret', 'not-the-bridge-secret-0123456789abcdef'], {
    encoding: 'utf8',
  }).trim();
}

/** The `exp` of a JWT, in ms. */
const expMs = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString()).exp * 1000;

/**
 * Replaces `Date.now` (what the SDK's token reuse and its core read) with the real clock plus an
 * offset; `at(t)` makes the clock read `t` now; `restore()` puts the real one back.
 */
function shiftedClock() {
  const realNow = Date.now;
  let offset = 0;
  Date.now = () => realNow() + offset;
  return {
    set(ms) {
      offset = ms;
    },
    at(t) {
      offset = t - realNow();
    },
    restore() {
      Date.now = realNow;
    },
  };
}

/** `realtime_bridge_streams_cut_total{reason}` of a bridge. */
async function streamsCut(b, reason) {
  const text = await (await realFetch(`${b.url}/metrics`)).text();
  const m = text.match(new RegExp(`^realtime_bridge_streams_cut_total\\{reason="${reason}"\\} (\\d+)`, 'm'));
  return m ? Number(m[1]) : 0;
}

/** `sub.reconnect()`, then waits for the new request and for `open`; returns that request. */
async function reconnected(sub, user) {
  const n = fetchesFor(user).length;
  sub.reconnect();
  await waitFor(() => fetchesFor(user).length > n && sub.status === 'open', { what: 'reconnected' });
  return fetchesFor(user)[n];
}

/**
 * Resolves once a sentinel subscription refused with 401 on every attempt (backoff 20 ms, like
 * the subscriptions checked after it) has made `n` more requests: a retry of a closed
 * subscription would have come by then.
 */
async function sentinelRetries(user, n = 4) {
  const sentinel = subscribe(user, null, () => {}, { url: bridge.url, token: 'bogus', backoff: { initialMs: 20, maxMs: 20 }, onError() {} });
  try {
    const from = fetchesFor(user).length;
    await waitFor(() => fetchesFor(user).length >= from + n, { what: 'sentinel retries' });
  } finally {
    sentinel.close();
  }
}

/** Checks `c` got exactly one error, `unauthenticated` and final, and the status ended `closed`. */
function assertSignedOut(c, sub, message) {
  assert.equal(sub.status, 'closed');
  assert.equal(c.statuses.at(-1), 'closed');
  assert.equal(c.errors.length, 1, c.errors.map((e) => `${e.code}: ${e.message}`).join('; '));
  const [e] = c.errors;
  assert.equal(isRealtimeError(e), true);
  assert.deepEqual([e.code, e.final, e.status], ['unauthenticated', true, undefined]);
  assert.match(e.message, message);
}

test('the token is reused across reconnections the bridge asks for (end / max_lifetime) and reconnect(): one getToken call', async () => {
  const own = await startBridge({ natsUrl: nats.url, heartbeat: '250ms', args: ['--max-stream-lifetime', '1s'] });
  const user = 'tok-reuse';
  const src = tokenSource(() => token(user));
  const c = collector();
  const sub = subscribe(user, null, c.cb, { url: own.url, getToken: src.getToken, ...c.opts });
  try {
    await waitFor(() => fetchesFor(user).length >= 3 && sub.status === 'open', { what: 'two ends and reconnections', timeoutMs: 15000 });
    assert.ok(await streamsCut(own, 'max_lifetime') >= 2, 'the bridge ended the streams (max_lifetime)');
    await reconnected(sub, user);
    assert.equal(src.calls, 1, 'getToken once, for the first connection');
    assert.ok(fetchesFor(user).every((f) => f.auth === `Bearer ${src.given[0]}`), 'every request carries that token');
    assert.deepEqual(c.errors, []);
  } finally {
    sub.close();
    await own.kill();
  }
});

test('a 401 makes exactly one getToken call; its token is then reused', async () => {
  const user = 'tok-401';
  const forged = forgedToken(user);
  const src = tokenSource((n) => (n === 1 ? forged : token(user)));
  const c = collector();
  const sub = subscribe(user, null, c.cb, { url: bridge.url, getToken: src.getToken, ...c.opts });
  try {
    await waitFor(() => sub.status === 'open', { what: 'open after the 401' });
    assert.equal(src.calls, 2);
    assert.deepEqual(
      fetchesFor(user).map((f) => f.auth),
      [`Bearer ${forged}`, `Bearer ${src.given[1]}`],
      'the refused token, then the new one',
    );
    assert.equal((await reconnected(sub, user)).auth, `Bearer ${src.given[1]}`);
    assert.equal(src.calls, 2, 'no call for the reconnection');
    assert.deepEqual(c.errors, [], 'a single 401 followed by success is not an error');
  } finally {
    sub.close();
  }
});

test('end / token_expired makes a getToken call even when the client clock says the token is still good', async () => {
  // Tokens of 2 s, no leeway, `exp` checked at every heartbeat (250 ms). The client's clock is
  // an hour behind, so only the bridge's `end` frame tells the SDK that the token expired.
  const own = await startBridge({ natsUrl: nats.url, heartbeat: '250ms', args: ['--jwt-leeway', '0s'] });
  const clock = shiftedClock();
  clock.set(-3600_000);
  const user = 'tok-expired';
  const src = tokenSource(() => token(user, ['--ttl', '2s']));
  const c = collector();
  const sub = subscribe(user, null, c.cb, { url: own.url, getToken: src.getToken, backoff: { initialMs: 30000, maxMs: 30000 }, ...c.opts });
  try {
    await waitFor(() => fetchesFor(user).length >= 3 && sub.status === 'open', { what: 'two expiries and reconnections', timeoutMs: 15000 });
    assert.ok(await streamsCut(own, 'token_expired') >= 2, 'the bridge ended the streams (token_expired)');
    const fetches = fetchesFor(user);
    // Every request carries a token of its own: no expired token was sent again (a 401).
    assert.equal(src.calls, fetches.length, 'one getToken call per request');
    fetches.forEach((f, i) => assert.equal(f.auth, `Bearer ${src.given[i]}`, `request ${i}`));
    assert.deepEqual(c.errors, []);
  } finally {
    sub.close();
    clock.restore();
    await own.kill();
  }
});

test('a token near its exp is replaced before use: a tenth of the time it had left, ahead', async () => {
  const user = 'tok-near-exp';
  const src = tokenSource(() => token(user, ['--ttl', '10s']));
  const clock = shiftedClock();
  const c = collector();
  // No watchdog: the shifted clock would look like a silent link.
  const sub = subscribe(user, null, c.cb, { url: bridge.url, getToken: src.getToken, heartbeatTimeoutMs: 0, ...c.opts });
  try {
    await waitFor(() => sub.status === 'open', { what: 'open' });
    const exp = expMs(src.given[0]);
    // Received with 9 to 10 s left: replaced from 0.9 to 1 s before its exp.
    clock.at(exp - 3000);
    assert.equal((await reconnected(sub, user)).auth, `Bearer ${src.given[0]}`, '3 s before exp: reused');
    assert.equal(src.calls, 1);
    clock.at(exp - 500);
    const f = await reconnected(sub, user);
    assert.equal(src.calls, 2, '0.5 s before exp: a new one');
    assert.equal(f.auth, `Bearer ${src.given[1]}`);
    assert.deepEqual(c.errors, []);
  } finally {
    sub.close();
    clock.restore();
  }
});

test('a token near its exp is replaced before use: at most 30 s ahead', async () => {
  const user = 'tok-near-exp-long';
  const src = tokenSource(() => token(user)); // 1 h: a tenth would be 6 min
  const clock = shiftedClock();
  const c = collector();
  const sub = subscribe(user, null, c.cb, { url: bridge.url, getToken: src.getToken, heartbeatTimeoutMs: 0, ...c.opts });
  try {
    await waitFor(() => sub.status === 'open', { what: 'open' });
    const exp = expMs(src.given[0]);
    clock.at(exp - 5 * 60_000);
    assert.equal((await reconnected(sub, user)).auth, `Bearer ${src.given[0]}`, '5 min before exp: reused');
    assert.equal(src.calls, 1);
    clock.at(exp - 20_000);
    const f = await reconnected(sub, user);
    assert.equal(src.calls, 2, '20 s before exp: a new one');
    assert.equal(f.auth, `Bearer ${src.given[1]}`);
    assert.deepEqual(c.errors, []);
  } finally {
    sub.close();
    clock.restore();
  }
});

test('getToken giving null or undefined at once: closed, unauthenticated, no request', async () => {
  const results = [];
  for (const [user, getToken] of [
    ['tok-null', () => null],
    ['tok-undefined', async () => undefined],
  ]) {
    let calls = 0;
    const c = collector();
    const sub = subscribe(user, null, c.cb, {
      url: bridge.url,
      getToken: () => (calls++, getToken()),
      backoff: { initialMs: 20, maxMs: 20 },
      ...c.opts,
    });
    await waitFor(() => sub.status === 'closed', { what: `${user} closed` });
    results.push({ user, c, sub, calls: () => calls });
  }
  await sentinelRetries('tok-null-sentinel');
  for (const { user, c, sub, calls } of results) {
    assertSignedOut(c, sub, /getToken failed: no token \(signed out\)/);
    assert.deepEqual(c.statuses, ['connecting', 'closed']);
    assert.equal(calls(), 1, `${user}: one getToken call`);
    assert.equal(fetchesFor(user).length, 0, `${user}: no request`);
  }
});

test('getToken giving null when the bridge ends the stream (token_expired): closed, unauthenticated, no further request', async () => {
  const own = await startBridge({ natsUrl: nats.url, heartbeat: '250ms', args: ['--jwt-leeway', '0s'] });
  const user = 'tok-signed-out';
  const src = tokenSource((n) => (n === 1 ? token(user, ['--ttl', '2s']) : null));
  const c = collector();
  const sub = subscribe(user, null, c.cb, { url: own.url, getToken: src.getToken, backoff: { initialMs: 20, maxMs: 20 }, ...c.opts });
  try {
    await waitFor(() => sub.status === 'open', { what: 'open' });
    await waitFor(() => sub.status === 'closed', { what: 'closed after the expiry', timeoutMs: 10000 });
    await sentinelRetries('tok-signed-out-sentinel');
    assertSignedOut(c, sub, /no token \(signed out\)/);
    assert.deepEqual(c.statuses, ['connecting', 'open', 'reconnecting', 'closed']);
    assert.equal(src.calls, 2);
    assert.equal(fetchesFor(user).length, 1, 'no request after the stream ended');
  } finally {
    sub.close();
    await own.kill();
  }
});

test('getToken throwing an UnauthorizedError (this package, its CommonJS copy, or a look-alike): closed, unauthenticated', async () => {
  const { UnauthorizedError: CjsUnauthorizedError } = createRequire(import.meta.url)('realtime-bridge');
  assert.notEqual(CjsUnauthorizedError, UnauthorizedError, 'two copies of the class');
  class LookAlike extends Error {
    name = 'UnauthorizedError';
  }
  const cases = [
    {
      what: 'at once, thrown synchronously',
      user: 'tok-unauth-sync',
      getToken: () => {
        throw new UnauthorizedError('session ended');
      },
      message: /getToken failed: session ended/,
      calls: 1,
      requests: 0,
    },
    {
      what: 'as the refresh after a 401, a rejection with the CommonJS build\'s class',
      user: 'tok-unauth-cjs',
      getToken: (n, user) => (n === 1 ? forgedToken(user) : Promise.reject(new CjsUnauthorizedError())),
      message: /signed out/,
      calls: 2,
      requests: 1,
    },
    {
      what: 'an app\'s own class of that name',
      user: 'tok-unauth-own',
      getToken: async () => {
        throw new LookAlike('logged out elsewhere');
      },
      message: /logged out elsewhere/,
      calls: 1,
      requests: 0,
    },
  ];
  const subs = [];
  for (const k of cases) {
    let calls = 0;
    const c = collector();
    const sub = subscribe(k.user, null, c.cb, {
      url: bridge.url,
      getToken: () => k.getToken(++calls, k.user),
      backoff: { initialMs: 20, maxMs: 20 },
      ...c.opts,
    });
    await waitFor(() => sub.status === 'closed', { what: `${k.what}: closed` });
    subs.push({ k, c, sub, calls: () => calls });
  }
  await sentinelRetries('tok-unauth-sentinel');
  for (const { k, c, sub, calls } of subs) {
    assertSignedOut(c, sub, k.message);
    assert.equal(calls(), k.calls, `${k.what}: getToken calls`);
    assert.equal(fetchesFor(k.user).length, k.requests, `${k.what}: requests`);
  }
});

test('getToken failing otherwise (throw, rejection): token_error, retried with backoff; the token it finally gives is reused', async () => {
  const user = 'tok-retry';
  const src = tokenSource((n) => {
    if (n === 1) throw new TypeError('identity provider down');
    if (n === 2) return Promise.reject(new Error('still down'));
    return token(user);
  });
  const c = collector();
  const sub = subscribe(user, null, c.cb, { url: bridge.url, getToken: src.getToken, backoff: { initialMs: 50, jitter: 0 }, ...c.opts });
  try {
    await waitFor(() => sub.status === 'open', { what: 'open after two failures' });
    assert.deepEqual(c.errors.map((e) => [e.code, e.final]), [['token_error', false], ['token_error', false]]);
    assert.match(c.errors[0].message, /getToken failed: identity provider down/);
    assert.deepEqual(c.statuses, ['connecting', 'reconnecting', 'open']);
    assert.equal(src.calls, 3);
    assert.equal(fetchesFor(user).length, 1, 'no request without a token');
    await reconnected(sub, user);
    assert.equal(src.calls, 3, 'reused by the reconnection');
  } finally {
    sub.close();
  }
});
