// Test fixtures: a real nats-server and real bridge processes on loopback (no mocks).
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, existsSync, rmSync } from 'node:fs';
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

/** Starts the bridge; resolves once it logged "listening". */
export async function startBridge({ natsUrl, listen = '127.0.0.1:0', args = [] }) {
  const proc = spawn(
    bridgeBin,
    ['serve', '--listen', listen, '--nats-url', natsUrl, '--jwt-secret', SECRET, '--log-format', 'json', '--heartbeat', '1s', ...args],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: 'info' } },
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

/** Publishes until `received()` is true: the bridge's NATS subscription may lag its "open". */
export async function sendUntil(p, user, event, dataFn, received, { timeoutMs = 10000 } = {}) {
  const end = Date.now() + timeoutMs;
  let n = 0;
  while (Date.now() < end) {
    await p.send(user, event, dataFn(n++));
    const ok = await waitFor(received, { timeoutMs: 300, intervalMs: 10 }).catch(() => false);
    if (ok) return n;
  }
  throw new Error(`event ${event} never arrived`);
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
