// One behaviour suite (test/behaviour-suite.mjs), run against the real SDK (its stream served by
// the fixture server) and against the in-memory client of `realtime-bridge/testing`, so the
// test client cannot drift from what the SDK does.
import { test, before, after } from 'node:test';
import { subscribe } from 'realtime-bridge';
import { createTestRealtime } from 'realtime-bridge/testing';
import { behaviourCases } from '../behaviour-suite.mjs';
import { startFixture } from '../fixture-server.mjs';
import { waitFor } from '../helpers.mjs';

let fx;
before(async () => {
  fx = await startFixture();
});
after(async () => {
  await fx?.close();
});

const until = (fn, what) => waitFor(fn, { timeoutMs: 10000, intervalMs: 5, what });

const sdk = {
  name: 'SDK',
  subscribe: (user, events, cb, opts) =>
    subscribe(user, events, cb, { url: fx.url, token: 'fixture-token', backoff: { initialMs: 50, maxMs: 200 }, ...opts }),
  opened: (user, sub) => until(() => sub.status === 'open' && fx.current(user), `${user} open`),
  emit: (user, event, data, id) => fx.current(user).event(id, event, data),
  broadcast: (user, event, data, id) => fx.current(user).event(id, event, data, { broadcast: true }),
  reset: (user, reason) => fx.current(user).reset(reason),
  until,
};

const rt = createTestRealtime();
const testing = {
  name: 'testing client',
  subscribe: (user, events, cb, opts) => rt.subscribe(user, events, cb, opts),
  opened: (user, sub) => until(() => sub.status === 'open', `${user} open`),
  emit: (user, event, data, id) => rt.emit(user, event, data, { id }),
  broadcast: (user, event, data, id) => rt.broadcast(event, data, { id }),
  reset: (user, reason) => rt.sendReset(reason, user),
  until,
};

for (const driver of [sdk, testing]) {
  for (const [name, fn] of behaviourCases) {
    test(`${driver.name}: ${name}`, { timeout: 30000 }, () => fn(driver));
  }
}
