/**
 * The core's dedicated worker (browsers; docs/protocol.md §6.5). The page's `subscribe` posts
 * its arguments here; the unchanged WebAssembly core runs them (fetch, SSE framing, resume,
 * de-duplication, `JSON.parse`), and what it would have given the page's callbacks goes back in
 * one message per chunk of the stream, so the page's main thread only calls the callbacks.
 *
 * Not a module of the package: scripts/build.mjs bundles it (with the glue) into one classic
 * script, which the page starts from a `Blob`.
 */
import init, { initSync, network, subscribe } from './wasm/realtime_bridge_sdk.js';
import type { RawSubscribeOptions, Subscription as RawSubscription } from './wasm/realtime_bridge_sdk.js';
import { errorData, errorFrom } from './error-data.js';
import { CURSOR, ERROR, EVENT, RESET, STATUS, THREW } from './worker-protocol.js';
import type { FromWorker, Item, ToWorker } from './worker-protocol.js';
import type { SubscriptionStatus } from './types.js';

const scope = globalThis as unknown as {
  postMessage(m: FromWorker): void;
  onmessage: ((e: MessageEvent<ToWorker>) => void) | null;
};

/** How often a cursor that moved without an event (`id:`-only blocks) is told to the page. */
const CURSOR_EVERY_MS = 1000;

interface Sub {
  raw: RawSubscription | null;
  /** The cursor the page was last told. */
  told: string | null;
}

const subs = new Map<number, Sub>();
/** What the page has not been told yet; posted at the end of the current task. */
let items: Item[] = [];
let flushQueued = false;
let cursorTimer: ReturnType<typeof setInterval> | undefined;
/** Token requests waiting for the page's answer. */
const asks = new Map<number, { resolve: (t: string) => void; reject: (e: unknown) => void }>();
let nextAsk = 1;
/** Messages that came before the core was loaded (a `.wasm` fetched by URL). */
let waiting: ToWorker[] | null = [];

function push(item: Item): void {
  items.push(item);
  if (!flushQueued) {
    flushQueued = true;
    // One message for all the core did in this task (a chunk's frames and their statuses).
    queueMicrotask(flush);
  }
}

/** Changed cursors first: on the page, a callback reads `lastEventId` as the core's after the chunk. */
function flush(): void {
  flushQueued = false;
  const cursors = movedCursors();
  const out = cursors.length ? cursors.concat(items) : items;
  items = [];
  if (out.length) scope.postMessage({ t: 'batch', items: out });
}

function movedCursors(): Item[] {
  const out: Item[] = [];
  for (const [id, s] of subs) {
    const c = s.raw ? (s.raw.lastEventId ?? null) : s.told;
    if (c !== s.told) {
      s.told = c;
      out.push([CURSOR, id, c]);
    }
  }
  return out;
}

function askToken(key: string, stale: boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const q = nextAsk++;
    asks.set(q, { resolve, reject });
    scope.postMessage({ t: 'tok', q, key, stale });
  });
}

/** Forgets a subscription the core has closed (its last cursor goes to the page first). */
function release(id: number): void {
  const s = subs.get(id);
  const raw = s?.raw;
  if (!s || !raw) return;
  const c = raw.lastEventId ?? null;
  if (c !== s.told) push([CURSOR, id, c]);
  s.raw = null;
  subs.delete(id);
  // Not synchronously: the core may be inside a method of `raw` right now.
  queueMicrotask(() => raw.free());
  if (!subs.size && cursorTimer !== undefined) {
    clearInterval(cursorTimer);
    cursorTimer = undefined;
  }
}

function handle(m: ToWorker): void {
  switch (m.t) {
    case 'sub': {
      const { id, key, o } = m;
      const s: Sub = { raw: null, told: o.lastEventId ?? null };
      subs.set(id, s);
      try {
        s.raw = subscribe(m.user, m.events, (e: unknown) => push([EVENT, id, e]), {
          url: o.url,
          token: o.token,
          lastEventId: o.lastEventId,
          clientId: o.clientId,
          backoff: o.backoff,
          heartbeatTimeoutMs: o.heartbeatTimeoutMs,
          closeWhenHidden: o.closeWhenHidden,
          getToken: o.getToken ? (stale: boolean) => askToken(key, stale) : undefined,
          onStatus: (st: SubscriptionStatus) => {
            if (st === 'closed') release(id);
            push([STATUS, id, st]);
          },
          onError: (e: unknown) => push([ERROR, id, errorData(e)]),
          onReset: (info: { reason?: string }) => push([RESET, id, info]),
        } as RawSubscribeOptions);
      } catch (e) {
        subs.delete(id);
        push([THREW, id, errorData(e)]);
        return;
      }
      cursorTimer ??= setInterval(() => {
        const moved = movedCursors();
        if (moved.length) scope.postMessage({ t: 'batch', items: moved });
      }, CURSOR_EVERY_MS);
      return;
    }
    case 'close': {
      const raw = subs.get(m.id)?.raw;
      if (raw) {
        raw.close();
        release(m.id);
      }
      return;
    }
    case 'reconnect':
      subs.get(m.id)?.raw?.reconnect();
      return;
    case 'net':
      network(m.n);
      return;
    case 'tok': {
      const a = asks.get(m.q);
      asks.delete(m.q);
      if (!a) return;
      if (m.err) a.reject(errorFrom(m.err));
      else a.resolve(m.token ?? '');
      return;
    }
    case 'init':
      return;
  }
}

function loaded(): void {
  const queued = waiting ?? [];
  waiting = null;
  scope.postMessage({ t: 'ready' });
  for (const m of queued) handle(m);
}

scope.onmessage = ({ data: m }) => {
  if (m.t === 'init') {
    if (m.wasm.bytes) {
      try {
        initSync({ module: m.wasm.bytes });
      } catch (e) {
        scope.postMessage({ t: 'fail', err: errorData(e) });
        return;
      }
      loaded();
    } else {
      init({ module_or_path: fetch(m.wasm.url) }).then(loaded, (e: unknown) =>
        scope.postMessage({ t: 'fail', err: errorData(e) }),
      );
    }
    return;
  }
  if (waiting) waiting.push(m);
  else handle(m);
};
