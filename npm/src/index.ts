/**
 * realtime-bridge's core: subscribe to a user's Realtime Bridge event stream.
 *
 * The work (fetch stream, SSE parsing, reconnection, resume, de-duplication, one shared
 * connection per url + user) is done by the Rust/WebAssembly core; this layer merges
 * options with `configure()` defaults, keeps `getToken`'s token for reuse (`token.ts`), loads
 * the `.wasm` on first use (once, with the loader its entry point installed), and gives the
 * API its TypeScript types.
 *
 * Not an entry point itself: `realtime-bridge` (embedded.ts) loads the `.wasm` from bytes
 * embedded in the JavaScript, synchronously; `realtime-bridge/url` (url.ts) fetches it as a
 * separate file. Neither module is imported here, so a bundle holds only the one it uses.
 */
import { network, subscribe as rawSubscribe } from './wasm/realtime_bridge_sdk.js';
import type { Subscription as RawSubscription, RawSubscribeOptions } from './wasm/realtime_bridge_sdk.js';
import { sharesAcrossTabs, subscribeShared, TOKEN, validArgs } from './tabs.js';
import { reusedToken } from './token.js';
import { FROM_HUB, warnIgnoredOptions } from './joiner.js';
import type {
  EventCallback,
  EventType,
  FromRegistry,
  RealtimeClient,
  RealtimeDataOf,
  RealtimeError,
  RealtimeEventName,
  RealtimeEventOf,
  RealtimeOptions,
  SubscribeOptions,
  Subscription,
  SubscriptionStatus,
} from './types.js';
import { coreLoaded, loadCore, workerStart } from './loader.js';
import { coreThread as workerCoreThread, subscribeInWorker, workerNetwork, workerPossible } from './worker-host.js';
import type { WorkerEnv } from './worker-host.js';
import type { WorkerOptions } from './worker-protocol.js';

export type * from './types.js';
export { isKnownErrorCode, isRealtimeError, UnauthorizedError } from './types.js';

export { wasmMemoryBytes } from './loader.js';

/**
 * Diagnostics: where this page's connections run: `'worker'` (the core's dedicated worker),
 * `'page'` (the page's own core: Node, a worker, `worker: false`, or no worker possible here)
 * or `'none'` (nothing subscribed yet).
 */
export function coreThread(): 'worker' | 'page' | 'none' {
  return workerCoreThread(coreLoaded());
}

let defaults: RealtimeOptions = {};

/** Sets defaults for every later `subscribe` (merged into the current defaults). */
export function configure(options: RealtimeOptions): void {
  defaults = merge(defaults, options);
}

/** `over` on top of `base`; keys set to `undefined` in `over` do not erase `base`'s. */
function merge(base: RealtimeOptions, over: RealtimeOptions | undefined): RealtimeOptions {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over ?? {})) if (v !== undefined) out[k] = v;
  out.backoff = { ...base.backoff, ...over?.backoff };
  return out as RealtimeOptions;
}

/** The current defaults (a copy). */
export function getConfig(): RealtimeOptions {
  return { ...defaults, backoff: { ...defaults.backoff } };
}

/** Forget every default set by `configure` (tests). */
export function resetConfig(): void {
  defaults = {};
}

function resolveUrl(url: string | undefined): string {
  const loc = (globalThis as { location?: { href?: string; origin?: string } }).location;
  const raw = url ?? loc?.origin;
  if (!raw) {
    throw new TypeError('realtime-bridge: no url: call configure({ url }) or pass { url } to subscribe');
  }
  try {
    return new URL(raw, loc?.href).href;
  } catch {
    throw new TypeError(`realtime-bridge: invalid url '${raw}' (an absolute http(s) URL is needed outside a browser)`);
  }
}

/**
 * The id a connection opened without `clientId` goes by in presence: a random UUID (its
 * characters are all in the id grammar). `randomUUID` needs a secure context in browsers and
 * Node 19+ (or a flag on 18): elsewhere 26 random base-36 characters (not for secrets; an
 * id only has to differ from the user's other tabs').
 */
function newClientId(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (typeof c?.randomUUID === 'function') return c.randomUUID();
  const part = () => Math.random().toString(36).slice(2, 15).padEnd(13, '0');
  return part() + part();
}

const disposeSymbol: typeof Symbol.dispose =
  (Symbol as { dispose?: typeof Symbol.dispose }).dispose ?? (Symbol.for('Symbol.dispose') as typeof Symbol.dispose);

/** Subscriptions attached to a core (the page's or the worker's) and not yet closed: kept reachable
 * so that an open stream is never garbage-collected; while there is one, the page's events are
 * listened to. */
const live = new Set<object>();
/** Subscriptions waiting for the core to load (realtime-bridge/url): kept reachable too. */
const pending = new Set<SubscriptionHandle<unknown>>();

// The page's network and visibility events, for the core (docs/protocol.md §6.2): listened to
// here, on `globalThis` (window, a worker) and `document` where they exist, while at least one
// subscription is open.
type PageTarget = {
  addEventListener(type: string, f: () => void): void;
  removeEventListener(type: string, f: () => void): void;
  visibilityState?: string;
};
const eventTarget = (t: unknown): PageTarget | undefined =>
  typeof (t as Partial<PageTarget> | undefined)?.addEventListener === 'function' ? (t as PageTarget) : undefined;
const pageDocument = () => eventTarget((globalThis as { document?: unknown }).document);
const isHidden = () => pageDocument()?.visibilityState === 'hidden';
/** To both cores that may be running: the page's and the worker's. */
function signal(n: number): void {
  if (coreLoaded()) network(n);
  workerNetwork(n);
}
const onOffline = () => signal(0);
const onOnline = () => signal(1);
const onVisibility = () => signal(isHidden() ? 3 : 2);

function listenToPage(on: boolean): void {
  const m = on ? 'addEventListener' : 'removeEventListener';
  const g = eventTarget(globalThis);
  g?.[m]('offline', onOffline);
  g?.[m]('online', onOnline);
  pageDocument()?.[m]('visibilitychange', onVisibility);
}

/** Adds a subscription to the open set, or removes it; the first in and the last out (un)install the listeners. */
function track(handle: object, on: boolean): void {
  if (on === live.has(handle)) return;
  if (on) live.add(handle);
  else live.delete(handle);
  if (live.size === (on ? 1 : 0)) listenToPage(on);
}

/**
 * Per url + user (the core's key): the opener's options, how many subscriptions share it,
 * whether its connection runs in the worker (joiners go where it is), and its token function.
 */
const shared = new Map<string, { options: RealtimeOptions; count: number; inWorker: boolean; token: TokenFn }>();

class SubscriptionHandle<T> implements Subscription<T> {
  #raw: RawSubscription | null = null;
  #closed = false;
  #cursor: string | null = null;
  #key = '';
  /** Tells the subscriber it is closed, when closed before the core was loaded. */
  #closedEarly: (() => void) | undefined;

  /** `cursor`, `closedEarly`: for a subscription that waits for the core to load. */
  constructor(cursor: string | null = null, closedEarly?: () => void) {
    this.#cursor = cursor;
    this.#closedEarly = closedEarly;
  }

  /** @internal Still waiting for the core (not attached, not closed). */
  get waiting(): boolean {
    return !this.#raw && !this.#closed;
  }

  /** @internal The core could not be loaded, or refused the arguments: closed for good. */
  fail(): void {
    this.#closed = true;
    pending.delete(this as SubscriptionHandle<unknown>);
  }

  /** @internal */
  attach(raw: RawSubscription, key: string): void {
    this.#raw = raw;
    this.#key = key;
    pending.delete(this as SubscriptionHandle<unknown>);
    track(this as SubscriptionHandle<unknown>, true);
  }

  /** @internal The core reported 'closed' (a final error, or close()). */
  closedByCore(): void {
    const raw = this.#raw;
    // Not synchronously: the core may be inside a method of `raw` right now.
    if (raw) queueMicrotask(() => this.#release(raw));
  }

  /** Frees the Rust object at once (not at some later garbage collection). */
  #release(raw: RawSubscription): void {
    if (this.#raw !== raw) return;
    this.#cursor = raw.lastEventId ?? null;
    this.#raw = null;
    this.#closed = true;
    track(this as SubscriptionHandle<unknown>, false);
    leave(this.#key);
    raw.free();
  }

  get status(): SubscriptionStatus {
    if (this.#raw) return this.#raw.status as SubscriptionStatus;
    return this.#closed ? 'closed' : 'connecting';
  }

  get lastEventId(): string | null {
    return this.#raw ? (this.#raw.lastEventId ?? null) : this.#cursor;
  }

  reconnect(): void {
    this.#raw?.reconnect();
  }

  close(): void {
    const raw = this.#raw;
    if (!raw) {
      if (!this.waiting) return;
      this.fail();
      this.#closedEarly?.();
      return;
    }
    raw.close();
    this.#release(raw);
  }

  [disposeSymbol](): void {
    this.close();
  }
}

/**
 * Subscribes to the events of `userId` (`events`: the names to receive, or null for all).
 * Calls for the same url and user share one HTTP connection; each callback gets only its
 * own events, each event id at most once.
 *
 * `e.data` is typed by `T` when given, else by the app's `RealtimeEvents` registry (`e.event`
 * then narrows it), else `unknown`.
 *
 * ```ts
 * const sub = subscribe<RealtimeMessageDto>('42', ['message_new'], (e) => console.log(e.data));
 * sub.close();
 * ```
 */
export function subscribe<T = FromRegistry, N extends RealtimeEventName = RealtimeEventName>(
  userId: string,
  events: readonly N[] | null | undefined,
  callback: (event: RealtimeEventOf<N, T>) => void,
  options?: SubscribeOptions,
): Subscription<RealtimeDataOf<N, T>> {
  if (typeof callback !== 'function') throw new TypeError('realtime-bridge: callback must be a function');
  const o = merge(defaults, options);
  if (o.clientId != null && (typeof o.clientId !== 'string' || !TOKEN.test(o.clientId))) {
    throw new TypeError(
      `realtime-bridge: invalid clientId ${JSON.stringify(o.clientId)} (1 to 128 characters from A-Z a-z 0-9 _ -)`,
    );
  }
  // Browsers: one stream per url + user for all the tabs of the origin (tabs.ts).
  if (sharesAcrossTabs(o)) {
    // The tab hub calls this same function back, typed loosely (its envelopes are plain JSON).
    const direct = subscribe as unknown as Parameters<typeof subscribeShared>[4];
    return subscribeShared(userId, events, callback as EventCallback<RealtimeDataOf<N, T>>, o, direct);
  }
  const fromHub = Boolean((options as { [FROM_HUB]?: boolean } | undefined)?.[FROM_HUB]);
  const cb = callback as (e: unknown) => void;
  // Browser pages: the core runs in a worker (worker-host.ts), joiners where their connection is.
  const url = o.worker !== false && workerPossible() && validArgs(userId, events) ? resolveUrl(o.url) : undefined;
  if (url !== undefined) {
    const key = connectionKey(url, userId);
    const entry = shared.get(key);
    if (!entry || entry.inWorker) {
      const sub = subscribeInWorker(userId, events, cb, o, workerOptions(o, url), key, workerStart, workerEnv);
      if (sub) {
        join(key, o, userId, url, fromHub, true, entry ? undefined : tokenOf(o));
        if (!entry && o.closeWhenHidden && isHidden()) workerNetwork(3);
        return sub as Subscription<RealtimeDataOf<N, T>>;
      }
    }
  }
  return subscribeHere(userId, events, cb, o, fromHub) as Subscription<RealtimeDataOf<N, T>>;
}

/** The page's key of a connection (the core's: url without trailing slashes, and user). */
function connectionKey(url: string, userId: string): string {
  return `${url.replace(/\/+$/, '')}\n${userId}`;
}

/**
 * Counts a subscription on its connection (an opener records its options, where the connection
 * runs and its token function); warns a joiner whose connection options are ignored.
 */
function join(key: string, o: RealtimeOptions, userId: string, url: string, fromHub: boolean, inWorker: boolean, token: TokenFn): void {
  const entry = shared.get(key);
  if (entry) {
    entry.count++;
    if (!fromHub) warnIgnoredOptions(entry.options, o, userId, url);
  } else {
    shared.set(key, { options: o, count: 1, inWorker, token });
  }
}

type TokenFn = ((stale: boolean) => Promise<string>) | undefined;

/** The token function of a connection: one cache per connection, from its opener's getToken. */
function tokenOf(o: RealtimeOptions): TokenFn {
  return typeof o.getToken === 'function' ? reusedToken(o.getToken) : undefined;
}

function leave(key: string): void {
  const entry = shared.get(key);
  if (entry && --entry.count === 0) shared.delete(key);
}

/** The options the worker's core gets: values only; a type the core would ignore is left out. */
function workerOptions(o: RealtimeOptions, url: string): WorkerOptions {
  const out: WorkerOptions = { url, clientId: o.clientId ?? newClientId(), getToken: typeof o.getToken === 'function' };
  if (typeof o.token === 'string') out.token = o.token;
  if (typeof o.lastEventId === 'string') out.lastEventId = o.lastEventId;
  if (typeof o.heartbeatTimeoutMs === 'number') out.heartbeatTimeoutMs = o.heartbeatTimeoutMs;
  if (typeof o.closeWhenHidden === 'boolean') out.closeWhenHidden = o.closeWhenHidden;
  const backoff: Record<string, number> = {};
  for (const [k, v] of Object.entries(o.backoff ?? {})) if (typeof v === 'number') backoff[k] = v;
  out.backoff = backoff;
  return out;
}

const workerEnv: WorkerEnv = {
  here: (userId, events, callback, o) => subscribeHere(userId, events, callback, o, true),
  track: (h, on) => track(h, on),
  leave,
  token: (key) => shared.get(key)?.token,
  loadError: (cause) => loadError(cause),
};

/** A subscription on the page's own core (Node, workers, `worker: false`, or no worker possible). */
function subscribeHere(
  userId: string,
  events: readonly EventType[] | null | undefined,
  callback: (e: unknown) => void,
  o: RealtimeOptions,
  fromHub: boolean,
): Subscription<unknown> {
  const loaded = loadCore();
  const userStatus = o.onStatus;
  const handle = new SubscriptionHandle<unknown>(o.lastEventId ?? null, () => userStatus?.('closed'));
  const url = resolveUrl(o.url);
  const start = () => {
    const key = connectionKey(url, userId);
    const entry = shared.get(key);
    const token = entry ? entry.token : tokenOf(o);
    const raw = rawSubscribe(userId, events ?? null, callback, {
      ...o,
      url,
      // Only the call that opens the connection has its id sent (a made-up one otherwise).
      clientId: o.clientId ?? newClientId(),
      // Only the call that opens the connection has its getToken used.
      getToken: token,
      onStatus: (s: SubscriptionStatus) => {
        if (s === 'closed') handle.closedByCore();
        userStatus?.(s);
      },
    } as RawSubscribeOptions);
    join(key, o, userId, url, fromHub, false, token);
    handle.attach(raw, key);
    // Opened while hidden with closeWhenHidden: wait until visible.
    if (!entry && o.closeWhenHidden && isHidden()) network(3);
  };
  if (!loaded) {
    start();
    return handle;
  }
  // The core is still loading (realtime-bridge/url): the subscription is 'connecting' and
  // attaches once it is ready; what fails on the way reaches onError, then status 'closed'.
  pending.add(handle);
  const fail = (err: unknown) => {
    handle.fail();
    o.onError?.(err as RealtimeError);
    userStatus?.('closed');
  };
  loaded.then(
    () => {
      if (!handle.waiting) return;
      try {
        start();
      } catch (err) {
        // Arguments the core refuses: what subscribe would have thrown had the core been loaded.
        fail(err);
      }
    },
    (err: unknown) => {
      if (handle.waiting) fail(loadError(err));
    },
  );
  return handle;
}

/** The `RealtimeError` for a core that could not be fetched, compiled or instantiated. */
function loadError(cause: unknown): RealtimeError {
  const msg = cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause);
  const csp = /content.security.policy|unsafe-eval/i.test(msg)
    ? " (a Content-Security-Policy must allow 'wasm-unsafe-eval' in script-src)"
    : '';
  const err = new Error(`realtime-bridge: the WebAssembly core could not be loaded${csp}: ${msg}`, { cause }) as RealtimeError;
  err.name = 'RealtimeError';
  err.code = 'wasm_load_failed';
  err.final = true;
  return err;
}

/**
 * The real client, as an object: what the hooks use unless told otherwise. It loads the core
 * with the loader installed by the entry point (`realtime-bridge/react`: embedded bytes;
 * `realtime-bridge/url/react`: the `.wasm` by URL).
 */
export const realtimeClient: RealtimeClient = { subscribe };
