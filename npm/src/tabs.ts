/**
 * One stream per browser: the tabs of one origin share one connection per url + user.
 *
 * Every tab that subscribes asks for a Web Lock named after the url and user; the tab holding
 * it (the leader) opens the real connection (a plain `subscribe` of the core, with its own
 * options and token) and relays what it receives (envelopes with the cursor, statuses, errors,
 * resets) over a `BroadcastChannel` of the same name. The others (followers) announce the event
 * names they need, so the leader asks for the union, and deliver to their own callbacks what
 * matches, each envelope id once. When the leader goes (tab closed, last subscription closed),
 * the lock passes to another tab, which connects again from the last cursor it saw; the ids it
 * has delivered already are dropped if the resume replays them. Tabs of one origin trust each
 * other: any of them can read what the channel carries.
 *
 * Written in TypeScript, not in the core: locks and channels are browser built-ins, and the
 * `.wasm` has a size budget.
 */
import type {
  EventCallback,
  EventType,
  RealtimeError,
  RealtimeEvent,
  RealtimeOptions,
  Subscription,
  SubscriptionStatus,
} from './types.js';

type Direct = <T>(
  userId: string,
  events: readonly EventType[] | null | undefined,
  callback: EventCallback<T>,
  options: RealtimeOptions,
) => Subscription<T>;

/** Names to deliver (a set), or null for all. */
type Filter = Set<string> | null;

/** A serialised `RealtimeError` (a structured clone of an `Error` keeps only name and message). */
interface ErrorData {
  name: string;
  message: string;
  status?: number;
  code?: string;
  final?: boolean;
}

/** What the tabs say to each other (`from`: the sending tab's id). */
type Message =
  /** The event names a tab needs (null: all); also the answer to `hello`. */
  | { t: 'want'; from: string; f: string[] | null }
  /** A tab has no subscription left; `leader`: it held the stream. */
  | { t: 'bye'; from: string; leader: boolean }
  /** A tab has just become leader: the others announce their names again. */
  | { t: 'hello'; from: string }
  /** An envelope, and the cursor right after it. */
  | { t: 'ev'; e: RealtimeEvent; c: string | null }
  /** The cursor moved without an event (`id:`-only blocks). */
  | { t: 'cur'; c: string | null }
  | { t: 'st'; s: SubscriptionStatus }
  | { t: 'err'; e: ErrorData }
  | { t: 'reset'; r: { reason?: string } }
  /** A follower's `reconnect()`. */
  | { t: 'reconnect' };

/** Envelope ids remembered for de-duplication, as in the core. */
const DEDUPE_CAPACITY = 4096;
/** Bumped when the messages change: tabs running another version of the package never mix. */
const PREFIX = 'realtime-bridge/1\n';
/** How often the leader tells the cursor when it moved without an event. */
const CURSOR_EVERY_MS = 1000;
const TOKEN = /^[A-Za-z0-9_-]{1,128}$/;

interface LockManagerLike {
  request(name: string, options: { signal: AbortSignal }, callback: () => Promise<void> | void): Promise<unknown>;
}

function lockManager(): LockManagerLike | undefined {
  const g = globalThis as { navigator?: { locks?: LockManagerLike }; process?: { versions?: { node?: string } } };
  // Node keeps one connection per process: its BroadcastChannel (and, in newer versions, its
  // locks) span worker threads, not tabs.
  if (g.process?.versions?.node) return undefined;
  const locks = g.navigator?.locks;
  return locks && typeof locks.request === 'function' && typeof BroadcastChannel === 'function' ? locks : undefined;
}

/** Whether `subscribe` shares its stream with the other tabs (the option, and the built-ins). */
export function sharesAcrossTabs(options: RealtimeOptions): boolean {
  return options.shareAcrossTabs !== false && lockManager() !== undefined;
}

function union(filters: Iterable<Filter>): Filter {
  const out = new Set<string>();
  for (const f of filters) {
    if (f === null) return null;
    for (const n of f) out.add(n);
  }
  return out;
}

/** Whether a stream asked for `have` carries every event `want` needs. */
function covers(have: Filter, want: Filter): boolean {
  if (have === null) return true;
  if (want === null) return false;
  for (const n of want) if (!have.has(n)) return false;
  return true;
}

function list(f: Filter): string[] | null {
  return f === null ? null : [...f];
}

function errorData(e: unknown): ErrorData {
  const r = e as Partial<RealtimeError>;
  const out: ErrorData = { name: String(r?.name ?? 'Error'), message: String(r?.message ?? e) };
  if (typeof r?.status === 'number') out.status = r.status;
  if (typeof r?.code === 'string') out.code = r.code;
  if (typeof r?.final === 'boolean') out.final = r.final;
  return out;
}

/** The same shape the core gives `onError`: an `Error` named `RealtimeError` with its fields. */
function errorFrom(d: ErrorData): RealtimeError {
  const e = new Error(d.message) as RealtimeError;
  e.name = d.name;
  if (d.status !== undefined) e.status = d.status;
  if (d.code !== undefined) e.code = d.code;
  if (d.final !== undefined) e.final = d.final;
  return e;
}

/** One `subscribe` call of this tab. */
interface Local {
  filter: Filter;
  callback: (e: RealtimeEvent) => void;
  onStatus?: (s: SubscriptionStatus) => void;
  onError?: (e: RealtimeError) => void;
  onReset?: (info: { reason?: string }) => void;
  /** The last status this subscription was told. */
  reported?: SubscriptionStatus;
}

/** Calls a callback of the app; what it throws goes to `onError` (or the console), as in the core. */
function call<A>(local: Local, f: ((a: A) => void) | undefined, arg: A): void {
  if (!f) return;
  try {
    f(arg);
  } catch (thrown) {
    try {
      if (local.onError) local.onError(thrown as RealtimeError);
      else console.error(thrown);
    } catch {
      /* as the core: what onError throws is dropped */
    }
  }
}

/** Calls onStatus / onError: what they throw is dropped, as in the core. */
function quietly<A>(f: ((a: A) => void) | undefined, arg: A): void {
  try {
    f?.(arg);
  } catch {
    /* dropped */
  }
}

/** This tab's side of one url + user: its subscriptions, and either the stream or the channel. */
class TabHub {
  readonly #name: string;
  readonly #me = Math.random().toString(36).slice(2) + Date.now().toString(36);
  readonly #userId: string;
  /** The first `subscribe` call's options: they configure the stream when this tab leads. */
  readonly #options: RealtimeOptions;
  readonly #direct: Direct;
  readonly #channel: BroadcastChannel;
  readonly #abort = new AbortController();
  readonly #locals = new Set<Local>();
  /** The other tabs' names, by tab id. */
  readonly #wants = new Map<string, Filter>();
  readonly #seen = new Set<string>();
  /** The same ids, oldest first from `#next` (a ring). */
  readonly #order: (string | undefined)[] = [];
  #next = 0;
  #status: SubscriptionStatus = 'connecting';
  #cursor: string | null;
  #leader = false;
  #closed = false;
  /** Leader: the core's subscription, and the names it asked for. */
  #raw: Subscription<unknown> | null = null;
  #rawFilter: Filter = new Set();
  #release: (() => void) | null = null;
  #ticker: ReturnType<typeof setInterval> | undefined;
  #toldCursor: string | null = null;

  constructor(name: string, userId: string, options: RealtimeOptions, direct: Direct, locks: LockManagerLike) {
    this.#name = name;
    this.#userId = userId;
    this.#options = { ...options, onStatus: undefined, onError: undefined, onReset: undefined };
    this.#direct = direct;
    this.#cursor = options.lastEventId ?? null;
    this.#channel = new BroadcastChannel(name);
    this.#channel.onmessage = (m: MessageEvent<Message>) => this.#receive(m.data);
    locks
      .request(name, { signal: this.#abort.signal }, () => {
        if (this.#closed) return undefined;
        return new Promise<void>((resolve) => {
          this.#release = resolve;
          this.#lead();
        });
      })
      // Aborted: this tab left before its turn.
      .catch(() => undefined);
  }

  get status(): SubscriptionStatus {
    return this.#status;
  }

  get cursor(): string | null {
    // The leader reads the core's cursor when asked (not at each event: a string out of wasm).
    return (this.#raw ? this.#raw.lastEventId : null) ?? this.#cursor;
  }

  add(local: Local): void {
    this.#locals.add(local);
    if (this.#leader) this.#grow();
    else this.#post({ t: 'want', from: this.#me, f: list(this.#localNames()) });
    // Told the current status after `subscribe` has returned, as the core does.
    queueMicrotask(() => {
      if (this.#locals.has(local)) this.#tell(local);
    });
  }

  /** Removes a subscription (told `closed`); the last one ends this tab's part. */
  leave(local: Local): void {
    if (!this.#locals.delete(local)) return;
    if (local.reported !== 'closed') {
      local.reported = 'closed';
      quietly(local.onStatus, 'closed');
    }
    if (this.#locals.size === 0) this.#end();
  }

  reconnect(): void {
    if (this.#closed) return;
    if (this.#leader) this.#raw?.reconnect();
    else this.#post({ t: 'reconnect' });
  }

  #localNames(): Filter {
    return union([...this.#locals].map((l) => l.filter));
  }

  #post(m: Message): void {
    if (!this.#closed) this.#channel.postMessage(m);
  }

  /** This tab got the lock: it opens the stream, from the last cursor it saw. */
  #lead(): void {
    this.#leader = true;
    this.#post({ t: 'hello', from: this.#me });
    this.#open(this.#cursor);
    this.#ticker = setInterval(() => this.#tellCursor(), CURSOR_EVERY_MS);
  }

  /**
   * Subscribes the core for the union of every tab's names. When a subscription is already
   * there, the new one joins its connection (which reconnects with the grown union, from its
   * cursor) before the old one is closed.
   */
  #open(cursor: string | null): void {
    const filter = union([this.#localNames(), ...this.#wants.values()]);
    const old = this.#raw;
    let raw: Subscription<unknown> | undefined;
    const mine = () => raw !== undefined && raw === this.#raw;
    try {
      raw = this.#direct<unknown>(this.#userId, list(filter), (e) => mine() && this.#fromCore(e as RealtimeEvent), {
        ...this.#options,
        shareAcrossTabs: false,
        lastEventId: cursor,
        onStatus: (s) => mine() && this.#statusFromCore(s),
        onError: (e) => mine() && this.#error(e, true),
        onReset: (r) => mine() && this.#reset(r, true),
      });
    } catch (e) {
      // Cannot happen for arguments `subscribe` accepted; reported rather than lost.
      this.#error(e as RealtimeError, true);
      return;
    }
    this.#raw = raw;
    this.#rawFilter = filter;
    old?.close();
  }

  #grow(): void {
    if (this.#raw && !covers(this.#rawFilter, union([this.#localNames(), ...this.#wants.values()]))) {
      this.#open(this.#cursor);
    }
  }

  #fromCore(e: RealtimeEvent): void {
    if (!this.#admit(e)) return;
    let c: string | null = null;
    // Posted first: a callback may close the last subscription of this tab (and the channel).
    if (this.#wants.size) {
      c = this.#raw?.lastEventId ?? null;
      this.#post({ t: 'ev', e, c });
      this.#toldCursor = c;
    }
    this.#deliver(e, c);
  }

  #tellCursor(): void {
    if (!this.#wants.size) return;
    const c = this.#raw?.lastEventId ?? null;
    if (c !== null && c !== this.#toldCursor) {
      this.#toldCursor = c;
      this.#post({ t: 'cur', c });
    }
  }

  /** An envelope id delivered once (until a reset), by whichever tab connected. */
  #admit(e: RealtimeEvent): boolean {
    const id = e?.id;
    if (typeof id !== 'string') return true;
    if (this.#seen.has(id)) return false;
    const oldest = this.#order[this.#next];
    if (oldest !== undefined) this.#seen.delete(oldest);
    this.#seen.add(id);
    this.#order[this.#next] = id;
    this.#next = (this.#next + 1) % DEDUPE_CAPACITY;
    return true;
  }

  #deliver(e: RealtimeEvent, cursor: string | null): void {
    if (cursor !== null) this.#cursor = cursor;
    for (const l of [...this.#locals]) {
      // Looked up per call: an earlier callback may have closed this one.
      if (this.#locals.has(l) && (l.filter === null || l.filter.has(e.event))) call(l, l.callback, e);
    }
  }

  #statusFromCore(s: SubscriptionStatus): void {
    if (s === 'closed') {
      // A final error (400, 403): every tab's subscriptions are over, as the connection is.
      this.#setStatus('closed');
      this.#post({ t: 'st', s });
      this.#end();
      return;
    }
    // A tab that takes over connects anew: after an open stream that is a reconnection.
    const shown = s === 'connecting' && this.#status !== 'connecting' ? 'reconnecting' : s;
    this.#setStatus(shown);
    if (this.#wants.size) this.#post({ t: 'st', s: shown });
  }

  #setStatus(s: SubscriptionStatus): void {
    if (this.#status === 'closed') return;
    this.#status = s;
    for (const l of [...this.#locals]) if (this.#locals.has(l)) this.#tell(l);
  }

  #tell(l: Local): void {
    if (l.reported === this.#status) return;
    l.reported = this.#status;
    quietly(l.onStatus, this.#status);
  }

  #error(e: RealtimeError, relay: boolean): void {
    if (relay && this.#wants.size) this.#post({ t: 'err', e: errorData(e) });
    for (const l of [...this.#locals]) if (this.#locals.has(l)) quietly(l.onError, e);
  }

  #reset(info: { reason?: string }, relay: boolean): void {
    // After a reset the ids start again (history re-created): those remembered would hide events.
    this.#seen.clear();
    this.#order.length = 0;
    this.#next = 0;
    if (relay && this.#wants.size) this.#post({ t: 'reset', r: info });
    for (const l of [...this.#locals]) if (this.#locals.has(l)) call(l, l.onReset, info);
  }

  #receive(m: Message): void {
    if (this.#closed || typeof m !== 'object' || m === null) return;
    switch (m.t) {
      case 'want':
        this.#wants.set(m.from, m.f === null ? null : new Set(m.f));
        if (this.#leader) {
          this.#grow();
          // The newcomer learns the status (and the others ignore what they know).
          this.#post({ t: 'st', s: this.#status });
        }
        break;
      case 'bye':
        this.#wants.delete(m.from);
        if (m.leader && !this.#leader && this.#status === 'open') this.#setStatus('reconnecting');
        break;
      case 'hello':
        if (!this.#leader) this.#post({ t: 'want', from: this.#me, f: list(this.#localNames()) });
        break;
      case 'reconnect':
        if (this.#leader) this.#raw?.reconnect();
        break;
      // Also taken by a leader: what the previous one sent just before it went.
      case 'ev':
        if (this.#admit(m.e)) this.#deliver(m.e, m.c);
        break;
      case 'reset':
        this.#reset(m.r, false);
        break;
      case 'cur':
        if (!this.#leader && m.c !== null) this.#cursor = m.c;
        break;
      case 'st':
        if (this.#leader) break;
        if (m.s === 'closed') {
          this.#setStatus('closed');
          this.#end();
        } else {
          this.#setStatus(m.s);
        }
        break;
      case 'err':
        if (!this.#leader) this.#error(errorFrom(m.e), false);
        break;
    }
  }

  /** This tab's part ends: the stream closed (a follower takes over) or the lock request dropped. */
  #end(): void {
    if (this.#closed) return;
    this.#post({ t: 'bye', from: this.#me, leader: this.#leader });
    this.#closed = true;
    hubs.delete(this.#name);
    for (const l of [...this.#locals]) this.leave(l);
    clearInterval(this.#ticker);
    const raw = this.#raw;
    this.#cursor = this.cursor;
    this.#raw = null;
    raw?.close();
    this.#abort.abort();
    this.#release?.();
    this.#channel.close();
  }
}

// As in index.ts: `Symbol.dispose` where the runtime has it, else the well-known registry key.
const disposeSymbol: typeof Symbol.dispose =
  (Symbol as { dispose?: typeof Symbol.dispose }).dispose ?? (Symbol.for('Symbol.dispose') as typeof Symbol.dispose);

/** This tab's hubs, by lock name (which is also the channel's). */
const hubs = new Map<string, TabHub>();

class SharedSubscription<T> implements Subscription<T> {
  #hub: TabHub | null;
  readonly #local: Local;
  #status: SubscriptionStatus = 'closed';
  #cursor: string | null = null;

  constructor(hub: TabHub, local: Local) {
    this.#hub = hub;
    this.#local = local;
  }

  get status(): SubscriptionStatus {
    return this.#hub && this.#local.reported !== 'closed' ? this.#hub.status : this.#status;
  }

  get lastEventId(): string | null {
    return this.#hub ? this.#hub.cursor : this.#cursor;
  }

  reconnect(): void {
    if (this.#local.reported !== 'closed') this.#hub?.reconnect();
  }

  close(): void {
    const hub = this.#hub;
    if (!hub) return;
    this.#cursor = hub.cursor;
    this.#hub = null;
    hub.leave(this.#local);
  }

  [disposeSymbol](): void {
    this.close();
  }
}

/**
 * `subscribe` shared with the other tabs, or `direct(...)` when the arguments are not valid
 * (the core throws the same `TypeError` as for any call) or no url can be resolved.
 */
export function subscribeShared<T>(
  userId: string,
  events: readonly EventType[] | null | undefined,
  callback: EventCallback<T>,
  options: RealtimeOptions,
  direct: Direct,
): Subscription<T> {
  const locks = lockManager();
  const valid =
    typeof userId === 'string' &&
    TOKEN.test(userId) &&
    (events == null || (Array.isArray(events) && events.length > 0 && events.every((n) => typeof n === 'string' && TOKEN.test(n))));
  let url: string | undefined;
  try {
    const loc = (globalThis as { location?: { href?: string; origin?: string } }).location;
    url = new URL(options.url ?? loc?.origin ?? '', loc?.href).href.replace(/\/+$/, '');
  } catch {
    url = undefined;
  }
  if (!locks || !valid || !url) return direct(userId, events, callback, { ...options, shareAcrossTabs: false });
  const name = `${PREFIX}${url}\n${userId}`;
  let hub = hubs.get(name);
  if (!hub) {
    hub = new TabHub(name, userId, options, direct, locks);
    hubs.set(name, hub);
  }
  const local: Local = {
    filter: events == null ? null : new Set(events),
    callback: callback as (e: RealtimeEvent) => void,
    onStatus: options.onStatus,
    onError: options.onError,
    onReset: options.onReset,
  };
  hub.add(local);
  return new SharedSubscription<T>(hub, local);
}
