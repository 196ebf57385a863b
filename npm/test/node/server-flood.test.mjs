// The flood (docs/protocol.md §1.7, acknowledged publishing): FLOOD_EVENTS (20000) events sent
// through realtime-bridge/server all at once to one user of a history-mode bridge, its window
// bounding them; every send resolves, the stream holds exactly that many, and a reader opened
// before the flood gets each exactly once. Then, as a measurement only, the same number as bare
// core publishes (no window, no acknowledgement) to another user.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'nats';
import { RealtimeService } from 'realtime-bridge/server';
import { startBridge, token, waitFor, bounded } from '../helpers.mjs';
import { startNatsServer, sseReader, storedCounts } from '../server-helpers.mjs';

const N = Number(process.env.FLOOD_EVENTS || 20000);
const cleanups = [];
after(async () => {
  while (cleanups.length) await cleanups.pop()().catch(() => {});
});

const rate = (n, ms) => `${n} events in ${(ms / 1000).toFixed(2)} s = ${Math.round(n / (ms / 1000))} events/s`;

test(`flood: ${N} acked sends resolve, are stored once and read once; core baseline measured`, { timeout: 300000 }, async () => {
  const nats = await startNatsServer();
  cleanups.push(() => nats.stop());
  const bridge = await startBridge({ natsUrl: nats.url, args: ['--history', 'on'] });
  cleanups.push(() => bridge.kill('SIGTERM'));
  const reader = sseReader(bridge.url, 'flood', { token: token('flood') });
  cleanups.push(() => reader.stop());
  await bounded(reader.opened, 10000, 'the reader');

  const rt = await RealtimeService.connect({ servers: nats.url });
  cleanups.push(() => rt.close());
  assert.equal(rt.mode, 'jetstream');
  const t0 = performance.now();
  const sends = [];
  for (let i = 0; i < N; i++) sends.push(rt.sendEventToUser('flood', 'ev', { n: i }));
  const results = await Promise.allSettled(sends);
  const took = performance.now() - t0;
  console.log(`acked publish (ts): ${rate(N, took)} (maxInFlight=256)`);
  const failed = results.filter((r) => r.status === 'rejected');
  assert.equal(failed.length, 0, `${failed.length} sends failed, first: ${failed[0]?.reason}`);

  const nc = await connect({ servers: nats.url });
  cleanups.push(() => nc.close());
  assert.deepEqual(await storedCounts(nc, 'user.flood.>'), { 'user.flood.ev': N });

  await waitFor(() => reader.events.length >= N, { timeoutMs: 180000, intervalMs: 100, what: `the reader's ${N} events` }).catch((e) =>
    assert.fail(`${e.message}: got ${reader.events.length} (${reader.opens} opens, errors: ${reader.errors.join('; ')})`),
  );
  const seen = new Uint8Array(N);
  for (const e of reader.events) seen[e.data.n]++;
  assert.equal(reader.events.length, N, 'no event read twice');
  assert.ok(seen.every((c) => c === 1), 'every n read exactly once');
  console.log(`flood reader: ${N} events read once each, in ${reader.opens} stream opening(s)`);

  // Baseline: bare core publishes, nothing bounding or confirming them but a final round trip.
  const payloads = Array.from({ length: N }, (_, i) => JSON.stringify({ n: i }));
  const c0 = performance.now();
  for (const p of payloads) nc.publish('user.flood-core.ev', p);
  await nc.flush();
  const coreTook = performance.now() - c0;
  // What JetStream stored of them: read until the count stops moving (bounded).
  let stored = -1;
  await waitFor(
    async () => {
      const now = (await storedCounts(nc, 'user.flood-core.>'))['user.flood-core.ev'] ?? 0;
      const settled = now === stored || now === N;
      stored = now;
      return settled;
    },
    { timeoutMs: 20000, intervalMs: 250, what: 'the core copies stored' },
  );
  console.log(`core publish (ts): ${rate(N, coreTook)}, stored ${stored} of ${N}`);
});
