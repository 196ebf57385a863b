// A scripted stand-in for the bridge's stream endpoint, for tests of what the SDK does with
// answers a real bridge gives rarely or never on demand: replayed ids, 429/503 with or without
// Retry-After, a 200 that is not an event stream, `reset` and `end` frames at chosen moments.
// Plain node:http on 127.0.0.1 (port 0). Each test scripts the answers per user and reads back
// every request (time, headers, query). The frames follow docs/protocol.md §2.5 and §2.7.
import { createServer } from 'node:http';
import { performance } from 'node:perf_hooks';
import { bounded } from './helpers.mjs';

const EVENTS_PATH = /^\/v1\/users\/([^/]+)\/events$/;

/** The bridge's JSON envelope (docs/protocol.md §2.5). */
export function envelope(id, event, data, userId) {
  const e = { id, event, data, timestamp: new Date().toISOString() };
  if (userId !== undefined) e.userId = userId;
  return JSON.stringify(e);
}

/** One open SSE response. */
class Stream {
  constructor(user, res, request) {
    this.user = user;
    this.res = res;
    this.request = request;
    this.closed = false;
    res.once('close', () => (this.closed = true));
  }

  write(text) {
    if (!this.closed) this.res.write(text);
  }

  /** An event frame; the `id:` line (the cursor) is the envelope id unless `cursor` says otherwise. */
  event(id, event, data = {}, { cursor = id, broadcast = false } = {}) {
    const body = envelope(id, event, data, broadcast ? undefined : this.user);
    this.write(`${cursor === null ? '' : `id: ${cursor}\n`}event: ${event}\ndata: ${body}\n\n`);
  }

  /** A `reset` control frame, in the same block as an `id:` line when `cursor` is given. */
  reset(reason, { cursor } = {}) {
    this.write(`${cursor ? `id: ${cursor}\n` : ''}event: reset\ndata: {"reason":"${reason}"}\n\n`);
  }

  /** An `end` control frame, then the bridge closes the connection. */
  end(reason) {
    this.write(`event: end\ndata: {"reason":"${reason}"}\n\n`);
    this.close();
  }

  heartbeat() {
    this.write(': hb\n\n');
  }

  close() {
    if (!this.closed) this.res.end();
  }
}

/**
 * Answers for one request, by kind:
 *   'stream' or { stream: true, retry? }       200 text/event-stream, `retry:` (10 ms: the SDK's
 *                                              backoff floor, so the backoff is what tests see), kept open
 *   { status, code?, error?, retryAfter? }     a JSON error as the bridge writes it
 *   { status: 200, contentType, body }          a 200 that is not an event stream
 */
function answer(spec, user, req, res, record, streams) {
  if (spec === 'stream' || spec?.stream) {
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache, no-transform',
      connection: 'close',
    });
    res.write(`retry: ${spec?.retry ?? 10}\n\n`);
    const s = new Stream(user, res, record);
    streams.push(s);
    return s;
  }
  const headers = { 'content-type': spec.contentType ?? 'application/json' };
  if (spec.retryAfter !== undefined) headers['retry-after'] = String(spec.retryAfter);
  const body =
    spec.body ?? JSON.stringify({ error: spec.error ?? `scripted ${spec.status}`, code: spec.code ?? 'unavailable' });
  res.writeHead(spec.status, headers);
  res.end(body);
  return null;
}

/** Starts the fixture; `close()` it at the end of the test. */
export async function startFixture() {
  const requests = [];
  const streams = [];
  const scripts = new Map(); // user -> { queue, then }
  const waiters = new Set();
  const notify = () => {
    for (const w of [...waiters]) w();
  };
  const server = createServer((req, res) => {
    const url = new URL(req.url, 'http://fixture');
    const m = EVENTS_PATH.exec(url.pathname);
    if (!m || req.method !== 'GET') {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found","code":"not_found"}');
      return;
    }
    const user = decodeURIComponent(m[1]);
    const record = {
      t: performance.now(),
      user,
      n: requests.filter((r) => r.user === user).length,
      query: Object.fromEntries(url.searchParams),
      lastEventId: req.headers['last-event-id'] ?? null,
      authorization: req.headers.authorization ?? null,
      accept: req.headers.accept ?? null,
    };
    requests.push(record);
    const script = scripts.get(user);
    const spec = script?.queue.length ? script.queue.shift() : (script?.then ?? 'stream');
    answer(spec, user, req, res, record, streams);
    notify();
  });
  await new Promise((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));

  /** Resolves with `fn()` once it is truthy (re-checked at each request), or rejects after `ms`. */
  const until = (fn, ms, what) => {
    const now = fn();
    if (now) return Promise.resolve(now);
    let w;
    const p = new Promise((resolve) => {
      w = () => {
        const v = fn();
        if (v) {
          waiters.delete(w);
          resolve(v);
        }
      };
      waiters.add(w);
    });
    return bounded(p, ms, `fixture: ${what}`).finally(() => waiters.delete(w));
  };

  return {
    url: `http://127.0.0.1:${server.address().port}`,
    requests,
    streams,
    /** The answers to `user`'s next requests, in order; `then` answers every later one. */
    script(user, queue, then = 'stream') {
      scripts.set(user, { queue: [...queue], then });
    },
    requestsFor(user) {
      return requests.filter((r) => r.user === user);
    },
    /** Resolves once `user` has made `n` requests in all. */
    waitForRequests(user, n, ms = 10000) {
      return until(() => this.requestsFor(user).length >= n && this.requestsFor(user), ms, `${n} requests of ${user}`);
    },
    /** The `index`-th stream opened for `user` (0-based), once it is there. */
    waitForStream(user, index = 0, ms = 10000) {
      return until(() => streams.filter((s) => s.user === user)[index], ms, `stream ${index} of ${user}`);
    },
    /** The newest stream of `user` that is still open. */
    current(user) {
      return streams.filter((s) => s.user === user && !s.closed).at(-1);
    },
    async close() {
      for (const s of streams) s.close();
      server.closeAllConnections();
      await bounded(new Promise((r) => server.close(r)), 5000, 'fixture close').catch(() => {});
    },
  };
}
