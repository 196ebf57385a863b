// Fixtures of the realtime-bridge/server tests: nats-server with or without JetStream (and its
// monitoring port), an SSE reader of a user's stream that resumes from its last cursor, and
// stream counts read from the JetStream API. Real processes on loopback, no mocks.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sleep, waitFor, bounded } from './helpers.mjs';

/** nats-server on free loopback ports: JetStream unless `jetstream: false`; monitoring port too. */
export async function startNatsServer({ jetstream = true } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'rb-server-nats-'));
  const args = ['-a', '127.0.0.1', '-p', '-1', '-m', '-1', '--ports_file_dir', dir];
  if (jetstream) args.push('-js', '-sd', dir);
  const proc = spawn('nats-server', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => (stderr += d));
  const portsFile = join(dir, `nats-server_${proc.pid}.ports`);
  const ports = await waitFor(() => existsSync(portsFile) && JSON.parse(readFileSync(portsFile, 'utf8')), {
    what: `nats-server ports file (${stderr})`,
  });
  return {
    url: ports.nats[0],
    monitor: ports.monitoring[0],
    /** Client connections the server has now (its /connz). */
    async connections() {
      const r = await bounded(fetch(`${ports.monitoring[0]}/connz`), 5000, 'connz');
      return (await r.json()).num_connections;
    },
    async stop() {
      if (proc.exitCode === null) {
        proc.kill('SIGTERM');
        await new Promise((r) => proc.once('exit', r));
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Reads `GET /v1/users/<user>/events` (SSE) until stopped. Whenever the bridge ends or cuts the
 * stream (e.g. a slow reader during a flood), it opens it again with its last cursor
 * (`Last-Event-ID`), so in history mode it misses nothing. `events`: the envelopes received.
 */
export function sseReader(bridgeUrl, user, { token, clientId } = {}) {
  const events = [];
  const errors = [];
  let last = null;
  let stopped = false;
  let ctrl;
  let opens = 0;
  let resolveOpen;
  const opened = new Promise((r) => (resolveOpen = r));
  const query = clientId ? `?clientId=${encodeURIComponent(clientId)}` : '';
  const loop = (async () => {
    while (!stopped) {
      ctrl = new AbortController();
      const headers = {};
      if (token) headers.authorization = `Bearer ${token}`;
      if (last !== null) headers['last-event-id'] = last;
      try {
        const res = await fetch(`${bridgeUrl}/v1/users/${user}/events${query}`, { headers, signal: ctrl.signal });
        if (res.status !== 200) throw new Error(`stream answered ${res.status}: ${await res.text()}`);
        opens++;
        resolveOpen();
        const reader = res.body.getReader();
        const dec = new TextDecoder();
        let buf = '';
        let id = null;
        let event = null;
        let data = [];
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += dec.decode(value, { stream: true });
          let i;
          while ((i = buf.indexOf('\n')) >= 0) {
            let line = buf.slice(0, i);
            buf = buf.slice(i + 1);
            if (line.endsWith('\r')) line = line.slice(0, -1);
            if (line === '') {
              if (id !== null) last = id;
              if (data.length && event !== 'end' && event !== 'reset') events.push(JSON.parse(data.join('\n')));
              id = null;
              event = null;
              data = [];
              continue;
            }
            if (line.startsWith(':')) continue;
            const c = line.indexOf(':');
            const field = c < 0 ? line : line.slice(0, c);
            let v = c < 0 ? '' : line.slice(c + 1);
            if (v.startsWith(' ')) v = v.slice(1);
            if (field === 'id') id = v;
            else if (field === 'event') event = v;
            else if (field === 'data') data.push(v);
          }
        }
      } catch (e) {
        if (!stopped) errors.push(e);
      }
      // Not a synchronisation: a pause before opening the stream again after it ended.
      if (!stopped) await sleep(50);
    }
  })();
  return {
    events,
    errors,
    opened,
    get opens() {
      return opens;
    },
    async stop() {
      stopped = true;
      ctrl?.abort();
      await bounded(loop, 5000, 'sse reader stop');
    },
  };
}

/** Messages the JetStream stream holds per subject matching `filter`, from the JetStream API. */
export async function storedCounts(nc, filter, stream = 'REALTIME') {
  const jsm = await nc.jetstreamManager();
  const info = await jsm.streams.info(stream, { subjects_filter: filter });
  return info.state.subjects ?? {};
}
