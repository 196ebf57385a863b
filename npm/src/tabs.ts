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
import { FROM_HUB, warnIgnoredOptions } from './joiner.js';
import { errorData, errorFrom, type ErrorData } from './error-data.js';

type Direct = <T>(
  userId: string,
  events: readonly EventType[] | null | undefined,
  callback: EventCallback<T>,
  options: RealtimeOptions,
) => Subscription<T>;

/** Names to deliver (a set), or null for all. */
type Filter = Set<string> | null;

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
export const TOKEN = /^[A-Za-z0-9_-]{1,128}$/;

/**
 * Arguments the core accepts as they are (a user id and event names in the id grammar). Any
 * other goes straight to the page's core, which throws its own `TypeError` for it.
 */
export function validArgs(userId: unknown, events: readonly unknown[] | null | undefined): boolean {
  return (
    typeof userId === 'string' &&
    TOKEN.test(userId) &&
    (events == null || (Array.isArray(events) && events.length > 0 && events.every((n) => typeof n === 'string' && TOKEN.test(n))))
  );
}

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
  // closeWhenHidden: a hidden tab holds no stream, so each visible tab holds its own (a leader
  // would otherwise follow its own visibility for every tab).
  return options.shareAcrossTabs !== false && !options.closeWhenHidden && lockManager() !== undefined;
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

/**
 * This tab's side of one url + user: its subscriptions, and either the stream or the channel.
 * (`private` rather than `#` fields: compiled for ES2020, those become a WeakMap each.)
 */
class TabHub {
  private readonly _name: string;
  private readonly _me = Math.random().toString(36).slice(2) + Date.now().toString(36);
  private readonly _userId: string;
  /** The first `subscribe` call's options: they configure the stream when this tab leads. */
  private readonly _options: RealtimeOptions;
  /** The connection options (those of this tab's first subscription). */
  get options(): RealtimeOptions {
    return this._options;
  }
  private readonly _direct: Direct;
  private readonly _channel: BroadcastChannel;
  private readonly _abort = new AbortController();
  private readonly _locals = new Set<Local>();
  /** The other tabs' names, by tab id. */
  private readonly _wants = new Map<string, Filter>();
  private readonly _seen = new Set<string>();
  /** The same ids, oldest first from `_next` (a ring). */
  private readonly _order: (string | undefined)[] = [];
  private _next = 0;
  private _status: SubscriptionStatus = 'connecting';
  private _cursor: string | null;
  private _leader = false;
  private _closed = false;
  /** Leader: the core's subscription, and the names it asked for. */
  private _raw: Subscription<unknown> | null = null;
  private _rawFilter: Filter = new Set();
  private _release: (() => void) | null = null;
  private _ticker: ReturnType<typeof setInterval> | undefined;
  private _toldCursor: string | null = null;

  constructor(name: string, userId: string, options: RealtimeOptions, direct: Direct, locks: LockManagerLike) {
    this._name = name;
    this._userId = userId;
    this._options = { ...options, onStatus: undefined, onError: undefined, onReset: undefined };
    this._direct = direct;
    this._cursor = options.lastEventId ?? null;
    this._channel = new BroadcastChannel(name);
    this._channel.onmessage = (m: MessageEvent<Message>) => this._receive(m.data);
    locks
      .request(name, { signal: this._abort.signal }, () => {
        if (this._closed) return undefined;
        return new Promise<void>((resolve) => {
          this._release = resolve;
          this._lead();
        });
      })
      // Aborted: this tab left before its turn.
      .catch(() => undefined);
  }

  get status(): SubscriptionStatus {
    return this._status;
  }

  get cursor(): string | null {
    // The leader reads the core's cursor when asked (not at each event: a string out of wasm).
    return (this._raw ? this._raw.lastEventId : null) ?? this._cursor;
  }

  add(local: Local): void {
    this._locals.add(local);
    if (this._leader) this._grow();
    else this._post({ t: 'want', from: this._me, f: list(this._localNames()) });
    // Told the current status after `subscribe` has returned, as the core does.
    queueMicrotask(() => {
      if (this._locals.has(local)) this._tell(local);
    });
  }

  /** Removes a subscription (told `closed`); the last one ends this tab's part. */
  leave(local: Local): void {
    if (!this._locals.delete(local)) return;
    if (local.reported !== 'closed') {
      local.reported = 'closed';
      quietly(local.onStatus, 'closed');
    }
    if (this._locals.size === 0) this._end();
  }

  reconnect(): void {
    if (this._closed) return;
    if (this._leader) this._raw?.reconnect();
    else this._post({ t: 'reconnect' });
  }

  private _localNames(): Filter {
    return union([...this._locals].map((l) => l.filter));
  }

  private _post(m: Message): void {
    if (!this._closed) this._channel.postMessage(m);
  }

  /** This tab got the lock: it opens the stream, from the last cursor it saw. */
  private _lead(): void {
    this._leader = true;
    this._post({ t: 'hello', from: this._me });
    this._open(this._cursor);
    this._ticker = setInterval(() => this._tellCursor(), CURSOR_EVERY_MS);
  }

  /**
   * Subscribes the core for the union of every tab's names. When a subscription is already
   * there, the new one joins its connection (which reconnects with the grown union, from its
   * cursor) before the old one is closed.
   */
  private _open(cursor: string | null): void {
    const filter = union([this._localNames(), ...this._wants.values()]);
    const old = this._raw;
    let raw: Subscription<unknown> | undefined;
    const mine = () => raw !== undefined && raw === this._raw;
    try {
      const options: RealtimeOptions & { [FROM_HUB]: true } = {
        ...this._options,
        shareAcrossTabs: false,
        lastEventId: cursor,
        [FROM_HUB]: true,
        onStatus: (s) => mine() && this._statusFromCore(s),
        onError: (e) => mine() && this._error(e, true),
        onReset: (r) => mine() && this._reset(r, true),
      };
      raw = this._direct<unknown>(this._userId, list(filter), (e) => mine() && this._fromCore(e as RealtimeEvent), options);
    } catch (e) {
      // Cannot happen for arguments `subscribe` accepted; reported rather than lost.
      this._error(e as RealtimeError, true);
      return;
    }
    this._raw = raw;
    this._rawFilter = filter;
    old?.close();
  }

  private _grow(): void {
    if (this._raw && !covers(this._rawFilter, union([this._localNames(), ...this._wants.values()]))) {
      this._open(this._cursor);
    }
  }

  private _fromCore(e: RealtimeEvent): void {
    if (!this._admit(e)) return;
    let c: string | null = null;
    // Posted first: a callback may close the last subscription of this tab (and the channel).
    if (this._wants.size) {
      c = this._raw?.lastEventId ?? null;
      this._post({ t: 'ev', e, c });
      this._toldCursor = c;
    }
    this._deliver(e, c);
  }

  private _tellCursor(): void {
    if (!this._wants.size) return;
    const c = this._raw?.lastEventId ?? null;
    if (c !== null && c !== this._toldCursor) {
      this._toldCursor = c;
      this._post({ t: 'cur', c });
    }
  }

  /** An envelope id delivered once (until a reset), by whichever tab connected. */
  private _admit(e: RealtimeEvent): boolean {
    const id = e?.id;
    if (typeof id !== 'string') return true;
    if (this._seen.has(id)) return false;
    const oldest = this._order[this._next];
    if (oldest !== undefined) this._seen.delete(oldest);
    this._seen.add(id);
    this._order[this._next] = id;
    this._next = (this._next + 1) % DEDUPE_CAPACITY;
    return true;
  }

  private _deliver(e: RealtimeEvent, cursor: string | null): void {
    if (cursor !== null) this._cursor = cursor;
    for (const l of [...this._locals]) {
      // Looked up per call: an earlier callback may have closed this one.
      if (this._locals.has(l) && (l.filter === null || l.filter.has(e.event))) call(l, l.callback, e);
    }
  }

  private _statusFromCore(s: SubscriptionStatus): void {
    if (s === 'closed') {
      // A final error (400, 403, signed out): every tab's subscriptions are over, as the
      // connection is.
      this._setStatus('closed');
      this._post({ t: 'st', s });
      this._end();
      return;
    }
    // A tab that takes over connects anew: after an open stream that is a reconnection.
    const shown = s === 'connecting' && this._status !== 'connecting' ? 'reconnecting' : s;
    this._setStatus(shown);
    if (this._wants.size) this._post({ t: 'st', s: shown });
  }

  private _setStatus(s: SubscriptionStatus): void {
    if (this._status === 'closed') return;
    this._status = s;
    for (const l of [...this._locals]) if (this._locals.has(l)) this._tell(l);
  }

  private _tell(l: Local): void {
    if (l.reported === this._status) return;
    l.reported = this._status;
    quietly(l.onStatus, this._status);
  }

  private _error(e: RealtimeError, relay: boolean): void {
    if (relay && this._wants.size) this._post({ t: 'err', e: errorData(e) });
    for (const l of [...this._locals]) if (this._locals.has(l)) quietly(l.onError, e);
  }

  private _reset(info: { reason?: string }, relay: boolean): void {
    // After a reset the ids start again (history re-created): those remembered would hide events.
    this._seen.clear();
    this._order.length = 0;
    this._next = 0;
    if (relay && this._wants.size) this._post({ t: 'reset', r: info });
    for (const l of [...this._locals]) if (this._locals.has(l)) call(l, l.onReset, info);
  }

  private _receive(m: Message): void {
    if (this._closed || typeof m !== 'object' || m === null) return;
    switch (m.t) {
      case 'want':
        this._wants.set(m.from, m.f === null ? null : new Set(m.f));
        if (this._leader) {
          this._grow();
          // The newcomer learns the status (and the others ignore what they know).
          this._post({ t: 'st', s: this._status });
        }
        break;
      case 'bye':
        this._wants.delete(m.from);
        if (m.leader && !this._leader && this._status === 'open') this._setStatus('reconnecting');
        break;
      case 'hello':
        if (!this._leader) this._post({ t: 'want', from: this._me, f: list(this._localNames()) });
        break;
      case 'reconnect':
        if (this._leader) this._raw?.reconnect();
        break;
      // Also taken by a leader: what the previous one sent just before it went.
      case 'ev':
        if (this._admit(m.e)) this._deliver(m.e, m.c);
        break;
      case 'reset':
        this._reset(m.r, false);
        break;
      case 'cur':
        if (!this._leader && m.c !== null) this._cursor = m.c;
        break;
      case 'st':
        if (this._leader) break;
        if (m.s === 'closed') {
          this._setStatus('closed');
          this._end();
        } else {
          this._setStatus(m.s);
        }
        break;
      case 'err':
        if (!this._leader) this._error(errorFrom(m.e), false);
        break;
    }
  }

  /** This tab's part ends: the stream closed (a follower takes over) or the lock request dropped. */
  private _end(): void {
    if (this._closed) return;
    this._post({ t: 'bye', from: this._me, leader: this._leader });
    this._closed = true;
    hubs.delete(this._name);
    for (const l of [...this._locals]) this.leave(l);
    clearInterval(this._ticker);
    const raw = this._raw;
    this._cursor = this.cursor;
    this._raw = null;
    raw?.close();
    this._abort.abort();
    this._release?.();
    this._channel.close();
  }
}

// As in index.ts: `Symbol.dispose` where the runtime has it, else the well-known registry key.
const disposeSymbol: typeof Symbol.dispose =
  (Symbol as { dispose?: typeof Symbol.dispose }).dispose ?? (Symbol.for('Symbol.dispose') as typeof Symbol.dispose);

/** This tab's hubs, by lock name (which is also the channel's). */
const hubs = new Map<string, TabHub>();

class SharedSubscription<T> implements Subscription<T> {
  private _hub: TabHub | null;
  private readonly _local: Local;
  private _status: SubscriptionStatus = 'closed';
  private _cursor: string | null = null;

  constructor(hub: TabHub, local: Local) {
    this._hub = hub;
    this._local = local;
  }

  get status(): SubscriptionStatus {
    return this._hub && this._local.reported !== 'closed' ? this._hub.status : this._status;
  }

  get lastEventId(): string | null {
    return this._hub ? this._hub.cursor : this._cursor;
  }

  reconnect(): void {
    if (this._local.reported !== 'closed') this._hub?.reconnect();
  }

  close(): void {
    const hub = this._hub;
    if (!hub) return;
    this._cursor = hub.cursor;
    this._hub = null;
    hub.leave(this._local);
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
  const valid = validArgs(userId, events);
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
  } else {
    warnIgnoredOptions(hub.options, options, userId, url);
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
