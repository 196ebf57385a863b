// Test fixtures: a real nats-server and real bridge processes on loopback (no mocks).
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { createServer, connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect } from 'nats';

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = join(here, '..', '..');
export const bridgeBin = process.env.RB_BIN || join(repoRoot, 'target', 'debug', 'realtime-bridge');
export const SECRET = 'sdk-test-secret-0123456789abcdef';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns a truthy value (returned) or throws after `timeoutMs`. */
export async function waitFor(fn, { timeoutMs = 10000, intervalMs = 20, what = 'condition' } = {}) {
  const end = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} (last: ${last})`);
    await sleep(intervalMs);
  }
}

/** Starts nats-server on a free loopback port, JetStream on, in a temp dir. */
export async function startNats() {
  const dir = mkdtempSync(join(tmpdir(), 'rb-sdk-nats-'));
  const proc = spawn('nats-server', ['-a', '127.0.0.1', '-p', '-1', '-js', '-sd', dir, '--ports_file_dir', dir], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  proc.stderr.on('data', (d) => (stderr += d));
  const portsFile = join(dir, `nats-server_${proc.pid}.ports`);
  const ports = await waitFor(() => existsSync(portsFile) && JSON.parse(readFileSync(portsFile, 'utf8')), {
    what: `nats-server ports file (${stderr})`,
  });
  const url = ports.nats[0];
  return {
    url,
    async stop() {
      if (proc.exitCode === null) {
        proc.kill('SIGTERM');
        await new Promise((r) => proc.once('exit', r));
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The environment minus `RB_*` (the bridge reads its flags from them): a developer's shell
 * must not change what a test checks. `RB_BIN` only tells the tests where the binary is. */
function withoutRbVariables(env) {
  return Object.fromEntries(Object.entries(env).filter(([k]) => !k.startsWith('RB_')));
}

/** Starts the bridge; resolves once it logged "listening". */
export async function startBridge({ natsUrl, listen = '127.0.0.1:0', heartbeat = '1s', args = [] }) {
  const proc = spawn(
    bridgeBin,
    ['serve', '--listen', listen, '--nats-url', natsUrl, '--jwt-secret', SECRET, '--log-format', 'json', '--heartbeat', heartbeat, ...args],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...withoutRbVariables(process.env), RUST_LOG: 'info' } },
  );
  const logs = [];
  let addr;
  const ready = new Promise((resolve, reject) => {
    let buf = '';
    const onData = (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        logs.push(line);
        try {
          const j = JSON.parse(line);
          if (j.fields?.message === 'listening' && !addr) {
            addr = j.fields.addr;
            resolve();
          }
        } catch {
          /* not JSON */
        }
      }
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.once('exit', (code) => reject(new Error(`bridge exited (${code}) before listening:\n${logs.join('\n')}`)));
  });
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error('bridge did not start in 15 s')), 15000);
  });
  try {
    await Promise.race([ready, timeout]);
  } finally {
    clearTimeout(timer);
  }
  const bridge = {
    proc,
    addr,
    url: `http://${addr}`,
    logs,
    /** Kills the process (SIGKILL by default: a crash, no graceful end of streams). */
    async kill(signal = 'SIGKILL') {
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill(signal);
        await exited;
      }
    },
  };
  return bridge;
}

/** A JWT for `user` signed with the test secret, from `realtime-bridge token`. */
export function token(user, extra = []) {
  return execFileSync(bridgeBin, ['token', '--user', user, '--jwt-secret', SECRET, ...extra], { encoding: 'utf8' }).trim();
}

/** The bridge's `realtime_bridge_open_streams` gauge. */
export async function openStreams(bridgeUrl) {
  const text = await (await fetch(`${bridgeUrl}/metrics`)).text();
  const m = text.match(/^realtime_bridge_open_streams(?:\{[^}]*\})? (\d+)/m);
  if (!m) throw new Error(`no realtime_bridge_open_streams in /metrics:\n${text}`);
  return Number(m[1]);
}

/** A nats.js producer. */
export async function producer(natsUrl) {
  const nc = await connect({ servers: natsUrl });
  // Strings, not Uint8Array: under jsdom a typed array from another realm fails nats.js' instanceof.
  return {
    async send(user, event, data) {
      nc.publish(`user.${user}.${event}`, JSON.stringify(data));
      await nc.flush();
    },
    async broadcast(event, data) {
      nc.publish(`broadcast.${event}`, JSON.stringify(data));
      await nc.flush();
    },
    async close() {
      await nc.drain();
    },
  };
}

/** Collects a subscription's deliveries, statuses and errors (`keys`: each event's `data.k`). */
export function collector() {
  const events = [];
  const statuses = [];
  const errors = [];
  return {
    events,
    statuses,
    errors,
    cb: (e) => events.push(e),
    opts: { onStatus: (s) => statuses.push(s), onError: (e) => errors.push(e) },
    keys: () => events.map((e) => e.data?.k),
  };
}

/** Races `p` against a timer: every await on the network is bounded. */
export function bounded(p, ms, what) {
  let t;
  return Promise.race([
    p,
    new Promise((_, reject) => {
      t = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

/**
 * A nats.js JetStream producer that keeps reconnecting. Each event gets a unique key (`k`, in
 * its data, also its Nats-Msg-Id) so a publish retried after a failure is stored once; the
 * sequence of every acked event is recorded.
 */
export async function jsProducer(natsUrl) {
  const nc = await connect({ servers: natsUrl, maxReconnectAttempts: -1, reconnectTimeWait: 100, timeout: 2000 });
  const js = nc.jetstream({ timeout: 2000 });
  const acked = new Map(); // `${user}/${key}` -> sequence
  return {
    acked,
    /** Publishes once; resolves to the sequence or throws (NATS away, no ack in time). */
    async publish(user, event, key, extra = {}, timeoutMs = 2000) {
      const id = `${user}/${key}`;
      const ack = await bounded(
        js.publish(`user.${user}.${event}`, JSON.stringify({ k: key, ...extra }), { msgID: id, timeout: timeoutMs }),
        timeoutMs + 1000,
        `publish ${id}`,
      );
      assert.ok(!acked.has(id) || acked.get(id) === ack.seq, `${id}: two sequences`);
      acked.set(id, ack.seq);
      return ack.seq;
    },
    /**
     * Resolves once JetStream answers for the bridge's stream (after a NATS restart: the store
     * is recovered), so that the next publish can be made once and must be acked.
     */
    async ready(stream = 'REALTIME', timeoutMs = 20000) {
      const answers = async () => {
        const jsm = await bounded(nc.jetstreamManager({ timeout: 1000 }), 2000, 'jetstream manager');
        await bounded(jsm.streams.info(stream), 2000, 'stream info');
        return true;
      };
      await waitFor(answers, { timeoutMs, intervalMs: 100, what: `JetStream stream ${stream}` });
    },
    async close() {
      await bounded(nc.close(), 5000, 'nats close').catch(() => {});
    },
  };
}

/**
 * Publishes one event (acked) and waits (bounded) for it to reach the collector `c`. Called
 * once the subscription is open: the bridge answers a stream request only after NATS confirmed
 * its subscriptions (server/src/hub.rs `attach`), so the first event published then must arrive.
 */
export async function publishAndWait(p, user, c, key, { event = 'probe', timeoutMs = 10000 } = {}) {
  await p.publish(user, event, key);
  await waitFor(() => c.keys().includes(key), { timeoutMs, intervalMs: 5, what: `event ${key}` });
}

/**
 * Checks that every acked event of `keys` was delivered exactly once with its sequence as the
 * envelope id, that ids only go up, and that no id came twice; prints the counts.
 */
export function verify(name, c, p, user, keys) {
  const want = new Set(keys);
  const deliveredCount = new Map();
  for (const e of c.events) {
    const k = e.data?.k;
    if (want.has(k)) deliveredCount.set(k, (deliveredCount.get(k) ?? 0) + 1);
  }
  const published = keys.filter((k) => p.acked.has(`${user}/${k}`)).length;
  const delivered = [...deliveredCount.values()].reduce((a, b) => a + b, 0);
  const lost = keys.filter((k) => !deliveredCount.has(k));
  const duplicated = [...deliveredCount.values()].reduce((a, n) => a + (n - 1), 0);
  const ids = c.events.map((e) => Number(e.id));
  let outOfOrder = 0;
  for (let i = 1; i < ids.length; i++) if (!(ids[i] > ids[i - 1])) outOfOrder++;
  const dupIds = ids.length - new Set(ids).size;
  const line =
    `${name}: published=${published} delivered=${delivered} lost=${lost.length} ` +
    `duplicated=${duplicated} out_of_order=${outOfOrder} duplicate_ids=${dupIds} (all deliveries incl. probes and sentinels: ${c.events.length})`;
  console.log(line);
  assert.equal(published, keys.length, 'every event was acked by JetStream');
  assert.deepEqual(lost, [], 'lost events');
  assert.equal(duplicated, 0, 'events delivered twice');
  assert.equal(dupIds, 0, 'envelope ids delivered twice');
  assert.equal(outOfOrder, 0, `envelope ids not ascending: ${ids.join(',')}`);
  for (const e of c.events) {
    const k = e.data?.k;
    if (want.has(k)) assert.equal(e.id, String(p.acked.get(`${user}/${k}`)), `${k}: envelope id is its JetStream sequence`);
  }
  return { published, delivered, lost: lost.length, duplicated, outOfOrder };
}

/** A loopback TCP forwarder whose target can be switched: the SDK's url stays the same. */
export async function forwarder(target) {
  const conns = new Set();
  const counts = new Map();
  let to = target;
  const server = createServer((client) => {
    const dest = to;
    counts.set(dest, (counts.get(dest) ?? 0) + 1);
    const [host, port] = dest.split(':');
    const upstream = tcpConnect({ host, port: Number(port) });
    conns.add(client);
    conns.add(upstream);
    const end = () => {
      client.destroy();
      upstream.destroy();
      conns.delete(client);
      conns.delete(upstream);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    counts,
    setTarget(t) {
      to = t;
    },
    async close() {
      for (const s of conns) s.destroy();
      await bounded(new Promise((r) => server.close(r)), 5000, 'forwarder close').catch(() => {});
    },
  };
}

/**
 * Records every fetch the SDK makes (a spy around the real fetch, not a mock): its time, url,
 * `Authorization` and `Last-Event-ID`, and when it was answered (`opened`, the headers) and
 * aborted by the SDK (`aborted`). Returns the log, `forUser(id)` (the stream requests of
 * one user) and `realFetch` (for the test's own requests, kept out of the log). Call once per
 * test file, at the top.
 */
export function recordFetches() {
  const log = [];
  const realFetch = globalThis.fetch;
  globalThis.fetch = (input, init) => {
    const headers = new Headers(init?.headers);
    const entry = {
      t: Date.now(),
      url: String(input),
      auth: headers.get('authorization'),
      lastEventId: headers.get('last-event-id'),
      opened: undefined,
      aborted: undefined,
    };
    log.push(entry);
    init?.signal?.addEventListener('abort', () => (entry.aborted ??= Date.now()));
    const answer = realFetch(input, init);
    answer.then(
      () => (entry.opened = Date.now()),
      () => {},
    );
    return answer;
  };
  const forUser = (user) => log.filter((f) => f.url.includes(`/v1/users/${user}/events`));
  return { log, forUser, realFetch };
}
