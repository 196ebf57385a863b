/**
 * The page's side of the core's worker (browsers; docs/protocol.md §6.5): one dedicated worker
 * per page runs the WebAssembly core; `subscribe` returns a `WorkerSubscription` that mirrors
 * the status and cursor the worker reports and calls the app's callbacks with what it posts
 * (one message per chunk of the stream). The page's main thread then spends nothing on the
 * network read, the SSE framing or `JSON.parse`.
 *
 * Where a worker cannot run the core (no `Worker`; a Content-Security-Policy that refuses a
 * `blob:` worker; the `.wasm` failing to load in it; the worker crashing) every subscription
 * moves to the page's own core, from its last cursor, and later ones start there.
 */
import { errorData, errorFrom } from './error-data.js';
import { CURSOR, ERROR, EVENT, RESET, STATUS, THREW } from './worker-protocol.js';
import type { FromWorker, Item, ToWorker, WorkerOptions, WorkerStart } from './worker-protocol.js';
import type { EventType, RealtimeError, RealtimeOptions, Subscription, SubscriptionStatus } from './types.js';

/** What the worker path needs from index.ts (kept there: the page's own core and its bookkeeping). */
export interface WorkerEnv {
  /** The page's own core: a subscription with these options (`lastEventId`: where to resume). */
  here(userId: string, events: readonly EventType[] | null | undefined, callback: (e: unknown) => void, o: RealtimeOptions): Subscription<unknown>;
  /** Adds or removes a subscription from those the page's network events are listened for. */
  track(handle: object, on: boolean): void;
  /** The subscription has ended (closed, or moved to the page's core): its connection bookkeeping. */
  leave(key: string): void;
  /** The token function of the connection `key` (its opener's), if it has one. */
  token(key: string): ((stale: boolean) => Promise<string>) | undefined;
  /** The `RealtimeError` (`wasm_load_failed`) for a page's core that could not be loaded. */
  loadError(cause: unknown): RealtimeError;
}

/** How long a worker with no subscription left is kept (a remount, a user switch reuse it). */
const IDLE_MS = 10_000;

const disposeSymbol: typeof Symbol.dispose =
  (Symbol as { dispose?: typeof Symbol.dispose }).dispose ?? (Symbol.for('Symbol.dispose') as typeof Symbol.dispose);

/** The worker, once started; `null`: workers do not work on this page (use the page's core). */
let host: Host | null | undefined;

/** Whether this realm can start the core's worker: a browser page (not Node, not a worker), and no failure yet. */
export function workerPossible(): boolean {
  if (host === null) return false;
  const g = globalThis as {
    Worker?: unknown;
    Blob?: unknown;
    URL?: { createObjectURL?: unknown };
    document?: unknown;
    process?: { versions?: { node?: string } };
  };
  return (
    typeof g.Worker === 'function' &&
    typeof g.Blob === 'function' &&
    typeof g.URL?.createObjectURL === 'function' &&
    typeof g.document === 'object' &&
    !g.process?.versions?.node
  );
}

/** Diagnostics: where the core runs for this page: in its worker, on the page, or not started yet. */
export function coreThread(loadedHere: boolean): 'worker' | 'page' | 'none' {
  if (host) return 'worker';
  return loadedHere ? 'page' : 'none';
}

/** Forwards the page's network and visibility events to the worker's core. */
export function workerNetwork(n: number): void {
  host?.post({ t: 'net', n });
}

/**
 * A subscription run by the worker, or `undefined` when no worker can be started here (the
 * caller then uses the page's core).
 */
export function subscribeInWorker(
  userId: string,
  events: readonly EventType[] | null | undefined,
  callback: (e: unknown) => void,
  o: RealtimeOptions,
  wo: WorkerOptions,
  key: string,
  starter: () => WorkerStart,
  env: WorkerEnv,
): Subscription<unknown> | undefined {
  if (!host) {
    try {
      host = new Host(starter(), env);
    } catch {
      // No worker could be constructed here (a script URL the browser refuses at once).
      host = null;
      return undefined;
    }
  }
  const h = host;
  const sub = new WorkerSubscription(h, h.nextId++, userId, events, callback, o, key, env, h.sibling(key));
  h.add(sub);
  h.post({ t: 'sub', id: sub.id, key, user: userId, events: events == null ? null : [...events], o: wo });
  return sub;
}

class Host {
  readonly worker: Worker;
  nextId = 1;
  readonly #subs = new Map<number, WorkerSubscription>();
  readonly #env: WorkerEnv;
  #url: string | null;
  #idle: ReturnType<typeof setTimeout> | undefined;

  constructor({ wasm, start, source }: WorkerStart, env: WorkerEnv) {
    this.#env = env;
    if (start) {
      this.#url = null;
      this.worker = start();
    } else {
      this.#url = URL.createObjectURL(new Blob([source], { type: 'text/javascript' }));
      try {
        this.worker = new Worker(this.#url, { name: 'realtime-bridge' });
      } catch (e) {
        this.#revoke();
        throw e;
      }
    }
    this.worker.onmessage = (e: MessageEvent<FromWorker>) => this.#receive(e.data);
    // A script the page's CSP refuses, or a crash: the page's core takes over.
    this.worker.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      this.#giveUp(e.message || 'the script did not load');
    };
    const m: ToWorker = { t: 'init', wasm };
    if (wasm.bytes) this.worker.postMessage(m, [wasm.bytes.buffer as ArrayBuffer]);
    else this.worker.postMessage(m);
  }

  post(m: ToWorker): void {
    this.worker.postMessage(m);
  }

  /** An open subscription of connection `key`: a joiner starts from its status and cursor. */
  sibling(key: string): WorkerSubscription | undefined {
    for (const s of this.#subs.values()) if (s.key === key) return s;
    return undefined;
  }

  add(sub: WorkerSubscription): void {
    clearTimeout(this.#idle);
    this.#subs.set(sub.id, sub);
  }

  drop(id: number): void {
    this.#subs.delete(id);
    if (this.#subs.size || host !== this) return;
    clearTimeout(this.#idle);
    this.#idle = setTimeout(() => {
      if (this.#subs.size || host !== this) return;
      host = undefined;
      this.worker.terminate();
      this.#revoke();
    }, IDLE_MS);
  }

  #revoke(): void {
    if (this.#url) URL.revokeObjectURL(this.#url);
    this.#url = null;
  }

  #receive(m: FromWorker): void {
    if (host !== this) return;
    switch (m.t) {
      case 'batch':
        for (const item of m.items) this.#subs.get(item[1])?.take(item);
        return;
      case 'tok':
        this.#token(m.q, m.key, m.stale);
        return;
      case 'ready':
        this.#revoke();
        return;
      case 'fail':
        // The page's core loads the same .wasm: if that fails too, it reports why.
        this.#giveUp(m.err.message);
        return;
    }
  }

  #token(q: number, key: string, stale: boolean): void {
    const f = this.#env.token(key);
    const answer = (m: ToWorker) => {
      if (host === this) this.post(m);
    };
    if (!f) {
      answer({ t: 'tok', q, err: { name: 'Error', message: 'realtime-bridge: no getToken for this connection' } });
      return;
    }
    f(stale).then(
      (token) => answer({ t: 'tok', q, token }),
      (e: unknown) => answer({ t: 'tok', q, err: errorData(e) }),
    );
  }

  /** Workers do not work here: every open subscription moves to the page's core. */
  #giveUp(why: string): void {
    if (host !== this) return;
    console.warn(`realtime-bridge: the core's worker failed (${why}); connections run on the page`);
    host = null;
    clearTimeout(this.#idle);
    this.worker.terminate();
    this.#revoke();
    const subs = [...this.#subs.values()];
    this.#subs.clear();
    for (const s of subs) s.moveToPage();
  }
}

class WorkerSubscription implements Subscription<unknown> {
  readonly id: number;
  readonly key: string;
  #host: Host;
  #env: WorkerEnv;
  #user: string;
  #events: readonly EventType[] | null | undefined;
  #callback: (e: unknown) => void;
  #o: RealtimeOptions;
  #status: SubscriptionStatus = 'connecting';
  #reported: SubscriptionStatus | null = null;
  #cursor: string | null;
  #closed = false;
  /** The page's core's subscription, after a move (see `moveToPage`). */
  #inner: Subscription<unknown> | null = null;

  constructor(
    h: Host,
    id: number,
    user: string,
    events: readonly EventType[] | null | undefined,
    callback: (e: unknown) => void,
    o: RealtimeOptions,
    key: string,
    env: WorkerEnv,
    sibling: WorkerSubscription | undefined,
  ) {
    this.#host = h;
    this.id = id;
    this.#user = user;
    this.#events = events;
    this.#callback = callback;
    this.#o = o;
    this.key = key;
    this.#env = env;
    // A joiner reads what its connection has (the core tells it the status again, shortly).
    this.#cursor = sibling ? sibling.lastEventId : (o.lastEventId ?? null);
    if (sibling) this.#status = sibling.status;
    env.track(this, true);
  }

  get status(): SubscriptionStatus {
    return this.#inner ? this.#inner.status : this.#status;
  }

  get lastEventId(): string | null {
    return this.#inner ? this.#inner.lastEventId : this.#cursor;
  }

  reconnect(): void {
    if (this.#inner) this.#inner.reconnect();
    else if (!this.#closed) this.#host.post({ t: 'reconnect', id: this.id });
  }

  close(): void {
    if (this.#inner) {
      this.#inner.close();
      return;
    }
    if (this.#closed) return;
    this.#host.post({ t: 'close', id: this.id });
    this.#end();
    this.#tell('closed');
  }

  [disposeSymbol](): void {
    this.close();
  }

  /** One item the worker posted for this subscription. */
  take(item: Item): void {
    if (this.#closed) return;
    switch (item[0]) {
      case CURSOR:
        this.#cursor = item[2];
        return;
      case EVENT:
        this.#call(this.#callback, item[2]);
        return;
      case RESET:
        if (this.#o.onReset) this.#call(this.#o.onReset, item[2]);
        return;
      case ERROR:
        this.#o.onError?.(errorFrom(item[2]));
        return;
      case STATUS:
        if (item[2] === 'closed') this.#end();
        this.#tell(item[2]);
        return;
      case THREW:
        this.#end();
        this.#o.onError?.(errorFrom(item[2]));
        this.#tell('closed');
        return;
    }
  }

  /** The worker is gone: the page's core resumes this subscription from the last cursor it saw. */
  moveToPage(): void {
    if (this.#closed) return;
    this.#end();
    try {
      this.#inner = this.#env.here(this.#user, this.#events, this.#callback, {
        ...this.#o,
        lastEventId: this.#cursor,
        worker: false,
      });
    } catch (e) {
      // The page cannot load the core either (the embedded entry compiles synchronously, and
      // throws): reported as `/url` reports it, since `subscribe` has long returned.
      this.#o.onError?.(this.#env.loadError(e));
      this.#tell('closed');
    }
  }

  /** A callback that throws must not stop the others: it goes to onError, as in the core. */
  #call<A>(f: (a: A) => void, a: A): void {
    try {
      f(a);
    } catch (thrown) {
      if (this.#o.onError) this.#o.onError(thrown as RealtimeError);
      else console.error(thrown);
    }
  }

  #tell(s: SubscriptionStatus): void {
    this.#status = s;
    if (this.#reported === s) return;
    this.#reported = s;
    this.#o.onStatus?.(s);
  }

  #end(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#status = 'closed';
    this.#host.drop(this.id);
    this.#env.track(this, false);
    this.#env.leave(this.key);
  }
}
