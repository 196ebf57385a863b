// The built SDK against the fixture server (test/fixture-server.mjs): the answers and frames a
// real bridge gives rarely or not on demand, each scripted per test, and what the SDK does with
// them as docs/protocol.md §6.2 says. Every request is recorded by the fixture (time, headers).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { subscribe } from 'realtime-bridge';
import { startFixture } from '../fixture-server.mjs';
import { collector, waitFor } from '../helpers.mjs';

let fx;
before(async () => {
  fx = await startFixture();
});
after(async () => {
  await fx?.close();
});

const until = (fn, what, timeoutMs = 10000) => waitFor(fn, { timeoutMs, intervalMs: 5, what });

/** Gaps between consecutive times, in ms. */
const gaps = (times) => times.slice(1).map((t, i) => t - times[i]);

test('a replayed envelope id is delivered once, within a stream and across a resume; the resume sends Last-Event-ID and Authorization', async () => {
  const user = 'fx-dedupe';
  const c = collector();
  const sub = subscribe(user, ['tick'], c.cb, { url: fx.url, token: 'tok-1', backoff: { initialMs: 50, jitter: 0 }, ...c.opts });
  try {
    const s0 = await fx.waitForStream(user, 0);
    s0.event('1', 'tick', { k: 'a' });
    s0.event('2', 'tick', { k: 'b' });
    s0.event('1', 'tick', { k: 'a-replayed' });
    s0.event('3', 'tick', { k: 'c' });
    await until(() => c.keys().includes('c'), 'c');
    assert.deepEqual(c.keys(), ['a', 'b', 'c']);
    s0.close(); // the link drops
    const s1 = await fx.waitForStream(user, 1);
    const [first, second] = fx.requestsFor(user);
    assert.equal(first.lastEventId, null);
    assert.equal(first.authorization, 'Bearer tok-1');
    assert.equal(first.accept, 'text/event-stream');
    // The made-up client id (presence) is sent again on the resume: one connection, one id.
    assert.deepEqual(first.query, { events: 'tick', clientId: first.query.clientId });
    assert.match(first.query.clientId, /^[A-Za-z0-9_-]{1,128}$/);
    assert.equal(second.query.clientId, first.query.clientId);
    assert.equal(second.lastEventId, '3', 'resumed from the cursor');
    assert.equal(second.authorization, 'Bearer tok-1');
    // The resume overlaps what was received, then goes on.
    s1.event('2', 'tick', { k: 'b-replayed' });
    s1.event('3', 'tick', { k: 'c-replayed' });
    s1.event('4', 'tick', { k: 'd' });
    await until(() => c.keys().includes('d'), 'd');
    assert.deepEqual(c.keys(), ['a', 'b', 'c', 'd']);
    assert.deepEqual(c.errors, []);
  } finally {
    sub.close();
  }
});

for (const reason of ['history_recreated', 'unknown_cursor', 'history_expired']) {
  test(`reset / ${reason} at the start of a resumed stream: onReset gets the reason, the stream goes on, ids seen before the reset are delivered again`, async () => {
    const user = `fx-reset-${reason}`;
    const c = collector();
    const resets = [];
    const sub = subscribe(user, null, c.cb, {
      url: fx.url,
      token: 't',
      backoff: { initialMs: 50, jitter: 0 },
      onReset: (info) => resets.push(info),
      ...c.opts,
    });
    try {
      const s0 = await fx.waitForStream(user, 0);
      for (const id of ['1', '2', '3']) s0.event(id, 'tick', { k: `old-${id}` });
      await until(() => c.keys().includes('old-3'), 'old-3');
      s0.close();
      const s1 = await fx.waitForStream(user, 1);
      assert.equal(fx.requestsFor(user)[1].lastEventId, '3');
      // As the bridge sends it: the `reset` in the block of the stream's first `id:` line,
      // then live events; after a re-created history their ids start again at 1.
      s1.reset(reason, { cursor: '0:0' });
      s1.event('1', 'tick', { k: 'new-1' });
      s1.event('2', 'tick', { k: 'new-2' });
      s1.event('2', 'tick', { k: 'new-2-replayed' });
      s1.event('4', 'tick', { k: 'new-4' });
      await until(() => c.keys().includes('new-4'), 'new-4');
      assert.deepEqual(c.keys(), ['old-1', 'old-2', 'old-3', 'new-1', 'new-2', 'new-4']);
      assert.deepEqual(resets, [{ reason }]);
      assert.equal(sub.lastEventId, '4');
      assert.equal(sub.status, 'open', 'a reset does not close the stream');
      assert.deepEqual(c.statuses, ['connecting', 'open', 'reconnecting', 'open']);
      assert.deepEqual(c.errors, []);
      assert.equal(fx.requestsFor(user).length, 2, 'no reconnection for a reset');
    } finally {
      sub.close();
    }
  });
}

test('failed attempts: the delay between them grows (503 without Retry-After; x2, no jitter), and starts over once open', async () => {
  const user = 'fx-backoff';
  const initialMs = 150;
  const failures = 4;
  fx.script(user, Array(failures).fill({ status: 503, code: 'unavailable', error: 'not ready' }));
  const c = collector();
  const sub = subscribe(user, null, c.cb, {
    url: fx.url,
    token: 't',
    backoff: { initialMs, multiplier: 2, maxMs: 60000, jitter: 0 },
    ...c.opts,
  });
  try {
    const s0 = await fx.waitForStream(user, 0, 20000);
    await until(() => sub.status === 'open', 'open');
    const measured = gaps(fx.requestsFor(user).map((r) => r.t));
    const expected = [...Array(failures).keys()].map((i) => initialMs * 2 ** i); // 150, 300, 600, 1200
    console.log(`fixture backoff: gaps ${measured.map((g) => g.toFixed(0)).join(', ')} ms (expected ${expected.join(', ')})`);
    assert.equal(measured.length, failures);
    // A timer never fires early, a loaded machine only makes gaps longer: lower bounds are
    // exact (less a little for clock granularity), upper bounds loose. A delay that did not
    // grow fails the lower bound of the third or fourth gap.
    measured.forEach((g, i) => {
      assert.ok(g >= expected[i] - 5, `gap ${i + 1} is ${g.toFixed(0)} ms, below the ${expected[i]} ms backoff`);
      assert.ok(g < expected[i] + 2000, `gap ${i + 1} is ${g.toFixed(0)} ms, far above the ${expected[i]} ms backoff`);
    });
    assert.deepEqual(
      c.errors.map((e) => [e.status, e.code, e.final]),
      Array(failures).fill([503, 'unavailable', false]),
    );
    assert.deepEqual(c.statuses, ['connecting', 'reconnecting', 'open']);
    // Opening reset the attempt count: the next drop waits the first delay again, not 2400 ms.
    const closedAt = fx.requestsFor(user).at(-1).t;
    s0.close();
    await fx.waitForStream(user, 1, 20000);
    const after = fx.requestsFor(user).at(-1).t - closedAt;
    assert.ok(after < (initialMs * 2 ** failures) / 2, `reconnected ${after.toFixed(0)} ms after the drop: the backoff started over`);
  } finally {
    sub.close();
  }
});

test('429 and 503, with and without Retry-After: onError with status, code and message, not final; retried on the SDK backoff', async () => {
  const user = 'fx-busy';
  fx.script(user, [
    { status: 429, code: 'too_many_streams', error: 'too many streams for this user', retryAfter: 30 },
    { status: 503, code: 'unavailable', error: 'NATS is not reachable', retryAfter: 30 },
    { status: 503, contentType: 'text/plain', body: 'Service Unavailable' },
    { status: 429, code: 'too_many_streams', error: 'still too many' },
  ]);
  const c = collector();
  const sub = subscribe(user, null, c.cb, { url: fx.url, token: 't', backoff: { initialMs: 100, maxMs: 100, jitter: 0 }, ...c.opts });
  try {
    const s = await fx.waitForStream(user, 0);
    await until(() => sub.status === 'open', 'open');
    assert.deepEqual(
      c.errors.map((e) => [e.name, e.status, e.code, e.final]),
      [
        ['RealtimeError', 429, 'too_many_streams', false],
        ['RealtimeError', 503, 'unavailable', false],
        ['RealtimeError', 503, undefined, false],
        ['RealtimeError', 429, 'too_many_streams', false],
      ],
    );
    assert.match(c.errors[0].message, /429: too many streams for this user/);
    assert.match(c.errors[2].message, /503/);
    // docs/protocol.md §6.2: 429 and 5xx are retried after the SDK's own backoff; Retry-After
    // (30 s here) is not what paces the retries.
    const g = gaps(fx.requestsFor(user).map((r) => r.t));
    assert.ok(g.every((x) => x < 10000), `retried after ${g.map((x) => x.toFixed(0)).join(', ')} ms`);
    assert.deepEqual(c.statuses, ['connecting', 'reconnecting', 'open']);
    s.event('1', 'tick', { k: 'x' });
    await until(() => c.keys().includes('x'), 'x');
  } finally {
    sub.close();
  }
});

test('a 200 that is not text/event-stream: onError (status 200, not final), retried, then the stream is read', async () => {
  const user = 'fx-not-sse';
  fx.script(user, [
    { status: 200, contentType: 'application/json', body: '{"ok":true}' },
    { status: 200, contentType: 'text/html', body: '<html>login page</html>' },
  ]);
  const c = collector();
  const sub = subscribe(user, null, c.cb, { url: fx.url, token: 't', backoff: { initialMs: 50, jitter: 0 }, ...c.opts });
  try {
    const s = await fx.waitForStream(user, 0);
    await until(() => sub.status === 'open', 'open');
    assert.equal(fx.requestsFor(user).length, 3);
    assert.deepEqual(c.errors.map((e) => [e.status, e.final]), [[200, false], [200, false]]);
    assert.ok(c.errors.every((e) => /200 without an event stream/.test(e.message)), c.errors.map((e) => e.message).join('; '));
    assert.deepEqual(c.statuses, ['connecting', 'reconnecting', 'open']);
    s.event('1', 'tick', { k: 'x' });
    await until(() => c.keys().includes('x'), 'x');
    assert.deepEqual(c.keys(), ['x']);
  } finally {
    sub.close();
  }
});

test('getToken failing (throwing or rejecting): onError token_error, not final, no request; retried on the backoff until it gives a token', async () => {
  const user = 'fx-token';
  const calls = [];
  const c = collector();
  const sub = subscribe(user, null, c.cb, {
    url: fx.url,
    getToken: () => {
      calls.push(performance.now());
      if (calls.length === 1) throw new Error('identity provider down (sync)');
      if (calls.length <= 3) return Promise.reject(new Error('identity provider down'));
      return Promise.resolve('fresh-token');
    },
    backoff: { initialMs: 100, multiplier: 2, jitter: 0 },
    ...c.opts,
  });
  try {
    await fx.waitForStream(user, 0);
    await until(() => sub.status === 'open', 'open');
    assert.equal(calls.length, 4);
    const reqs = fx.requestsFor(user);
    assert.equal(reqs.length, 1, 'no request without a token');
    assert.equal(reqs[0].authorization, 'Bearer fresh-token');
    assert.deepEqual(c.errors.map((e) => [e.code, e.final, e.status]), Array(3).fill(['token_error', false, undefined]));
    assert.match(c.errors[0].message, /getToken failed: identity provider down \(sync\)/);
    assert.match(c.errors[1].message, /getToken failed: identity provider down/);
    const g = gaps(calls);
    [100, 200, 400].forEach((want, i) => assert.ok(g[i] >= want - 5, `getToken call ${i + 2} came ${g[i].toFixed(0)} ms after the previous, before the ${want} ms backoff`));
    assert.deepEqual(c.statuses, ['connecting', 'reconnecting', 'open']);
  } finally {
    sub.close();
  }
});

test('a callback that throws, without onError: console.error gets it; the other callback and later events still arrive', async () => {
  const user = 'fx-throw';
  const logged = [];
  const realError = console.error;
  console.error = (...args) => logged.push(args);
  const good = collector();
  let calls = 0;
  const bad = subscribe(user, null, () => {
    calls++;
    throw new Error(`boom ${calls}`);
  }, { url: fx.url, token: 't' });
  const sub = subscribe(user, null, good.cb, { url: fx.url, token: 't', ...good.opts });
  try {
    const s = await fx.waitForStream(user, 0);
    await until(() => sub.status === 'open', 'open');
    s.event('1', 'tick', { k: 'one' });
    s.event('2', 'tick', { k: 'two' });
    await until(() => good.keys().includes('two'), 'two');
    assert.deepEqual(good.keys(), ['one', 'two']);
    assert.equal(calls, 2);
    assert.deepEqual(logged.map((args) => args[0]?.message), ['boom 1', 'boom 2']);
    assert.deepEqual(good.errors, [], "another subscription's onError is not told");
    assert.equal(bad.status, 'open');
  } finally {
    console.error = realError;
    bad.close();
    sub.close();
  }
});

test('close() while waiting out the backoff: no further request', async () => {
  // The same failing answer and backoff for two users: the second one, started later, is the
  // sentinel. Once it has retried twice, the first would have retried at least once.
  const backoff = { initialMs: 300, multiplier: 1, jitter: 0 };
  const failing = { status: 503, code: 'unavailable' };
  fx.script('fx-close-a', [], failing);
  fx.script('fx-close-b', [], failing);
  const a = collector();
  const subA = subscribe('fx-close-a', null, a.cb, { url: fx.url, token: 't', backoff, ...a.opts });
  await fx.waitForRequests('fx-close-a', 1);
  await until(() => a.statuses.includes('reconnecting') && a.errors.length === 1, 'waiting out the backoff');
  subA.close();
  assert.equal(subA.status, 'closed');
  const b = collector();
  const subB = subscribe('fx-close-b', null, b.cb, { url: fx.url, token: 't', backoff, ...b.opts });
  try {
    await fx.waitForRequests('fx-close-b', 3);
    assert.equal(fx.requestsFor('fx-close-a').length, 1, 'a closed subscription made a request');
    assert.deepEqual(a.statuses, ['connecting', 'reconnecting', 'closed']);
    assert.equal(a.errors.length, 1);
  } finally {
    subB.close();
  }
});

test('403 is final: onError final, status closed, no retry', async () => {
  const backoff = { initialMs: 50, multiplier: 1, jitter: 0 };
  fx.script('fx-403', [], { status: 403, code: 'forbidden', error: 'not your stream' });
  fx.script('fx-403-sentinel', [], { status: 503, code: 'unavailable' });
  const c = collector();
  const sub = subscribe('fx-403', null, c.cb, { url: fx.url, token: 't', backoff, ...c.opts });
  await until(() => sub.status === 'closed', 'closed');
  const s = collector();
  const sentinel = subscribe('fx-403-sentinel', null, s.cb, { url: fx.url, token: 't', backoff, ...s.opts });
  try {
    await fx.waitForRequests('fx-403-sentinel', 3);
    assert.equal(fx.requestsFor('fx-403').length, 1);
    assert.deepEqual(c.errors.map((e) => [e.status, e.code, e.final]), [[403, 'forbidden', true]]);
    assert.deepEqual(c.statuses, ['connecting', 'closed']);
  } finally {
    sentinel.close();
  }
});

test('end (a reason this SDK does not know): never delivered; reconnected at once with the cursor, not after the backoff', async () => {
  const user = 'fx-end';
  const c = collector();
  const sub = subscribe(user, null, c.cb, { url: fx.url, token: 't', backoff: { initialMs: 30000, maxMs: 30000, jitter: 0 }, ...c.opts });
  try {
    const s0 = await fx.waitForStream(user, 0);
    s0.event('1', 'tick', { k: 'before' });
    s0.end('something_new');
    const s1 = await fx.waitForStream(user, 1, 10000);
    assert.equal(fx.requestsFor(user)[1].lastEventId, '1');
    s1.event('2', 'tick', { k: 'after' });
    await until(() => c.keys().includes('after'), 'after');
    assert.deepEqual(c.keys(), ['before', 'after']);
    assert.deepEqual(c.errors, []);
    assert.deepEqual(c.statuses, ['connecting', 'open', 'reconnecting', 'open']);
  } finally {
    sub.close();
  }
});
