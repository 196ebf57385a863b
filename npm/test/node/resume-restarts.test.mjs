// The SDK resumes through restarts with nothing lost and nothing twice, in plain Node
// against a real nats-server (JetStream on disk) and real bridge processes in history mode.
// Events are published with nats.js JetStream publish, so each one's stream sequence (the
// envelope id the SDK must hand over) is known from its ack. Only 127.0.0.1; every wait bounded.
// Each event is published once (while NATS is away, the attempts fail and the same events are
// published once more when JetStream answers again, under the same Nats-Msg-Id). "Nothing more
// arrived" is checked with a sentinel event published last.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { subscribe } from 'realtime-bridge';
import { startBridge, token, openStreams, waitFor, collector, jsProducer, publishAndWait, verify, forwarder, recordFetches } from '../helpers.mjs';

/** Every fetch the SDK makes (helpers.mjs `recordFetches`). */
const { forUser: fetchesFor, realFetch } = recordFetches();

/**
 * A nats-server with JetStream on disk that can be stopped and started again on the same port
 * with the same store directory (what a NATS restart is).
 */
async function restartableNats() {
  const dir = mkdtempSync(join(tmpdir(), 'rb-sdk-nats-restart-'));
  let proc;
  let port = -1;
  const start = async () => {
    proc = spawn(
      'nats-server',
      ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', join(dir, 'store'), '--ports_file_dir', dir],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    proc.stderr.on('data', (d) => (stderr += d));
    const portsFile = join(dir, `nats-server_${proc.pid}.ports`);
    const ports = await waitFor(() => existsSync(portsFile) && JSON.parse(readFileSync(portsFile, 'utf8')), {
      what: `nats-server ports file (${stderr})`,
    });
    port = Number(new URL(ports.nats[0]).port);
  };
  const stop = async (signal = 'SIGTERM') => {
    if (proc && proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill(signal);
      const t = setTimeout(() => proc.kill('SIGKILL'), 10000);
      await exited;
      clearTimeout(t);
    }
  };
  await start();
  return {
    get url() {
      return `nats://127.0.0.1:${port}`;
    },
    start,
    stop,
    async destroy() {
      await stop('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}


/** GET /readyz status (0 when the bridge does not answer). */
async function readyz(bridge) {
  try {
    const r = await realFetch(`${bridge.url}/readyz`, { signal: AbortSignal.timeout(3000) });
    await r.text();
    return r.status;
  } catch {
    return 0;
  }
}

for (const signal of ['SIGTERM', 'SIGKILL']) {
  test(`NATS restarted (${signal}; same port and store) under open subscriptions: before, during and after, each once, in order`, { timeout: 120000 }, async () => {
    const nats = await restartableNats();
    let bridge;
    let p;
    const subs = [];
    try {
      bridge = await startBridge({ natsUrl: nats.url });
      p = await jsProducer(nats.url);
      // 'stay' keeps its stream open through the restart (the bridge refills it); 'redial'
      // drops its link while NATS is away (reconnect()) and comes back with its cursor.
      const users = { stay: `rr-nats-stay-${signal}`, redial: `rr-nats-redial-${signal}` };
      const cs = {};
      for (const [role, user] of Object.entries(users)) {
        const c = collector();
        cs[role] = c;
        const sub = subscribe(user, null, c.cb, {
          url: bridge.url,
          getToken: async () => token(user),
          backoff: { initialMs: 100, maxMs: 500 },
          heartbeatTimeoutMs: 5000,
          ...c.opts,
        });
        c.sub = sub;
        subs.push(sub);
        await waitFor(() => sub.status === 'open', { what: `${role} open` });
        await publishAndWait(p, user, c, `first-${role}`);
      }
      // NATS away: an attempt fails (counted). Otherwise each publish must be acked.
      const publishAll = async (name, i, { mayFail = false } = {}) => {
        let failed = 0;
        for (const user of Object.values(users)) {
          if (mayFail) {
            await p.publish(user, name, `${name}-${i}`, { i }, 300).catch(() => failed++);
          } else {
            await p.publish(user, name, `${name}-${i}`, { i });
          }
        }
        return failed;
      };
      const keys = (name, n) => [...Array(n).keys()].map((i) => `${name}-${i}`);
      const before = keys('before', 10);
      for (let i = 0; i < 10; i++) await publishAll('before', i);
      for (const c of Object.values(cs)) await waitFor(() => before.every((k) => c.keys().includes(k)), { what: 'before events' });

      await nats.stop(signal);
      await waitFor(async () => (await readyz(bridge)) === 503, { what: 'bridge /readyz 503 while NATS is away' });
      const redialFrom = fetchesFor(users.redial).length;
      cs.redial.sub.reconnect();
      // Publish attempts while NATS is down fail; the same events are published again once it is back.
      const during = keys('during', 10);
      let failed = 0;
      for (let i = 0; i < 10; i++) failed += await publishAll('during', i, { mayFail: true });
      assert.ok(failed > 0, 'publishing while NATS is down fails');
      // The redialled subscription is refused by the bridge meanwhile (503) and keeps retrying.
      await waitFor(() => fetchesFor(users.redial).length >= redialFrom + 2, { what: 'redial attempts while NATS is away' });
      const redialWhileAway = cs.redial.sub.status;
      await nats.start(); // same port, same store directory
      // As soon as JetStream answers, before the bridge is necessarily back: stored while it reconnects.
      await p.ready();
      for (let i = 0; i < 10; i++) await publishAll('during', i);
      const readyAfterDuring = await readyz(bridge);
      const after = keys('after', 10);
      for (let i = 0; i < 10; i++) await publishAll('after', i);
      await waitFor(async () => (await readyz(bridge)) === 200, { what: 'bridge ready again', timeoutMs: 30000 });
      const all = [...before, ...during, ...after];
      for (const [role, c] of Object.entries(cs)) {
        await waitFor(() => all.every((k) => c.keys().includes(k)), { what: `every event (${role})`, timeoutMs: 30000 }).catch((e) => {
          verify(`sdk-resume nats-restart-${signal}-${role}`, c, p, users[role], all);
          throw e;
        });
      }
      // Sentinels: once each is in, anything repeated before it would have come.
      for (const [role, c] of Object.entries(cs)) await publishAndWait(p, users[role], c, `sentinel-${role}`);
      console.log(
        `sdk-resume nats-restart-${signal}: ${failed} publish attempts failed while NATS was down; ` +
          `/readyz right after their retries: ${readyAfterDuring}; redialled status while away: ${redialWhileAway}; ` +
          `statuses stay=${cs.stay.statuses.join(',')} redial=${cs.redial.statuses.join(',')}`,
      );
      for (const [role, c] of Object.entries(cs)) verify(`sdk-resume nats-restart-${signal}-${role}`, c, p, users[role], all);
      assert.equal(redialWhileAway, 'reconnecting', 'no stream while NATS is away');
      for (const [role, c] of Object.entries(cs)) assert.equal(c.events.at(-1).data.k, `sentinel-${role}`, `nothing after the sentinel (${role})`);
      assert.deepEqual(cs.stay.statuses, ['connecting', 'open'], 'the open stream was never dropped');
      assert.equal(cs.redial.sub.status, 'open');
    } finally {
      for (const s of subs) s.close();
      await p?.close();
      await bridge?.kill('SIGKILL');
      await nats.destroy();
    }
  });
}

test('two bridges on one NATS: the subscription resumes on the other instance after a SIGKILL, nothing lost or twice', { timeout: 120000 }, async () => {
  const nats = await restartableNats();
  let a;
  let b;
  let fwd;
  let p;
  let sub;
  try {
    a = await startBridge({ natsUrl: nats.url });
    b = await startBridge({ natsUrl: nats.url });
    fwd = await forwarder(a.addr);
    p = await jsProducer(nats.url);
    const user = 'rr-instances';
    const c = collector();
    sub = subscribe(user, null, c.cb, {
      url: fwd.url,
      getToken: async () => token(user),
      backoff: { initialMs: 100, maxMs: 400 },
      heartbeatTimeoutMs: 5000,
      ...c.opts,
    });
    await waitFor(() => sub.status === 'open', { what: 'open' });
    assert.equal(await openStreams(a.url), 1, 'the stream is on bridge A');
    await publishAndWait(p, user, c, 'first-inst');
    const before = [];
    for (let i = 0; i < 10; i++) {
      before.push(`before-${i}`);
      await p.publish(user, 'before', `before-${i}`, { i });
    }
    await waitFor(() => before.every((k) => c.keys().includes(k)), { what: 'before events' });

    const atKill = fetchesFor(user).length;
    await a.kill('SIGKILL');
    await waitFor(() => sub.status === 'reconnecting', { what: 'reconnecting' });
    const cursor = sub.lastEventId;
    assert.ok(cursor, 'a resume cursor');
    const away = [];
    for (let i = 0; i < 20; i++) {
      away.push(`away-${i}`);
      await p.publish(user, 'away', `away-${i}`, { i });
    }
    // A few failed attempts against the dead instance.
    await waitFor(() => fetchesFor(user).length >= atKill + 2, { what: 'attempts against the dead instance' });
    assert.equal(sub.status, 'reconnecting');
    assert.ok(away.every((k) => !c.keys().includes(k)), 'nothing arrives while away');
    fwd.setTarget(b.addr);
    await waitFor(() => away.every((k) => c.keys().includes(k)), { what: 'events published while away', timeoutMs: 20000 }).catch((e) => {
      verify('sdk-resume other-instance', c, p, user, [...before, ...away]);
      throw e;
    });
    assert.equal(sub.status, 'open');
    assert.ok((fwd.counts.get(b.addr) ?? 0) >= 1, 'reconnected through to bridge B');
    assert.equal(await openStreams(b.url), 1, 'the stream is now on bridge B');
    const resumed = fetchesFor(user).slice(atKill);
    assert.ok(resumed.length >= 1 && resumed.every((f) => f.lastEventId === cursor), 'resumed with Last-Event-ID = the cursor from A');

    const after = [];
    for (let i = 0; i < 10; i++) {
      after.push(`after-${i}`);
      await p.publish(user, 'after', `after-${i}`, { i });
    }
    const all = [...before, ...away, ...after];
    await waitFor(() => all.every((k) => c.keys().includes(k)), { what: 'events after the resume', timeoutMs: 20000 }).catch((e) => {
      verify('sdk-resume other-instance', c, p, user, all);
      throw e;
    });
    await publishAndWait(p, user, c, 'sentinel-inst');
    assert.equal(c.events.at(-1).data.k, 'sentinel-inst', 'nothing after the sentinel');
    verify('sdk-resume other-instance', c, p, user, all);
  } finally {
    sub?.close();
    await p?.close();
    await fwd?.close();
    await a?.kill('SIGKILL');
    await b?.kill('SIGKILL');
    await nats.destroy();
  }
});

test('a burst of 500 events while the bridge is down, then restarted: all 500 once, in order', { timeout: 120000 }, async () => {
  const nats = await restartableNats();
  let bridge;
  let restarted;
  let p;
  let sub;
  try {
    bridge = await startBridge({ natsUrl: nats.url });
    p = await jsProducer(nats.url);
    const user = 'rr-burst';
    const c = collector();
    sub = subscribe(user, null, c.cb, {
      url: bridge.url,
      getToken: async () => token(user),
      backoff: { initialMs: 100, maxMs: 400 },
      heartbeatTimeoutMs: 5000,
      ...c.opts,
    });
    await waitFor(() => sub.status === 'open', { what: 'open' });
    await publishAndWait(p, user, c, 'first-burst');
    const cursor = sub.lastEventId;
    const atKill = fetchesFor(user).length;
    await bridge.kill('SIGKILL');
    await waitFor(() => sub.status === 'reconnecting', { what: 'reconnecting' });
    const burst = [];
    for (let i = 0; i < 500; i++) {
      burst.push(`burst-${i}`);
      await p.publish(user, 'burst', `burst-${i}`, { i, pad: 'x'.repeat(200) });
    }
    assert.equal(c.keys().filter((k) => k?.startsWith('burst-')).length, 0, 'nothing while the bridge is down');
    restarted = await startBridge({ natsUrl: nats.url, listen: bridge.addr });
    await waitFor(() => burst.every((k) => c.keys().includes(k)), { what: 'the 500 events', timeoutMs: 30000 }).catch((e) => {
      verify('sdk-resume burst-500', c, p, user, burst);
      throw e;
    });
    await publishAndWait(p, user, c, 'sentinel-burst');
    assert.equal(c.events.at(-1).data.k, 'sentinel-burst', 'nothing after the sentinel');
    assert.equal(fetchesFor(user)[atKill]?.lastEventId, cursor, 'resumed with Last-Event-ID = the cursor');
    const order = c.events.filter((e) => e.event === 'burst').map((e) => e.data.i);
    assert.deepEqual(order, [...Array(500).keys()], 'in publish order');
    console.log(`sdk-resume burst-500: ${fetchesFor(user).length - atKill} requests from the kill to the end; statuses ${c.statuses.join(',')}`);
    verify('sdk-resume burst-500', c, p, user, burst);
  } finally {
    sub?.close();
    await p?.close();
    await restarted?.kill('SIGKILL');
    await bridge?.kill('SIGKILL');
    await nats.destroy();
  }
});
