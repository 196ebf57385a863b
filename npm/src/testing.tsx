/**
 * realtime-bridge/testing: an in-memory realtime client for unit tests. Wrap the
 * components under test in `<RealtimeTestProvider client={rt}>` and emit events into
 * the hooks with `rt.emit(userId, event, data)`: no bridge, no network, same types.
 *
 * ```tsx
 * const rt = createTestRealtime();
 * render(<RealtimeTestProvider client={rt}><Chat userId="42" /></RealtimeTestProvider>);
 * act(() => { rt.emit('42', 'message_new', { content: 'hi' }); });
 * act(() => { rt.sendReset('history_recreated', '42'); });
 * ```
 */
import type { ReactNode } from 'react';
import { RealtimeProvider } from './react.js';
import type {
  EventCallback,
  FromRegistry,
  RealtimeClient,
  RealtimeDataOf,
  RealtimeError,
  RealtimeEvent,
  RealtimeEventName,
  RealtimeEventOf,
  RealtimeEvents,
  SubscribeOptions,
  Subscription,
  SubscriptionStatus,
} from './types.js';

export type * from './types.js';
export { isKnownErrorCode, isRealtimeError, UnauthorizedError } from './types.js';

/** What the test client knows about one subscription. */
export interface TestSubscriptionInfo {
  userId: string;
  /** null: all events. */
  events: readonly string[] | null;
  status: SubscriptionStatus;
  options: SubscribeOptions;
}

export interface TestRealtimeOptions {
  /** Status a new subscription reaches (asynchronously, like the real one). 'open'. */
  initialStatus?: SubscriptionStatus;
  /** Timestamp source for emitted events. `new Date().toISOString()`. */
  now?: () => string;
}

interface Entry {
  info: TestSubscriptionInfo;
  callback: EventCallback<unknown>;
  cursor: string | null;
  /** The connection the real client would share: url + user. */
  key: string;
}

/** The envelope's own fields `emit` and `broadcast` may be given (else generated). */
export interface EmitExtra {
  id?: string;
  timestamp?: string;
}

/** `T`, but not a place to infer `T` from (`NoInfer`, for TypeScript before 5.4). */
type NoInfer_<T> = [T][T extends unknown ? 0 : never];

/**
 * What `emit` and `broadcast` accept as `data`. With nothing registered: anything, its type
 * inferred (the envelope returned carries it). With a registry: the payload registered for
 * the name, or `T` when given (never inferred from `data`: that would skip the check).
 */
export type EmitData<T, N extends string> = [keyof RealtimeEvents] extends [never] ? T : RealtimeDataOf<N, NoInfer_<T>>;

/** As many envelope ids as the real client remembers per connection (sdk-wasm DEDUPE_CAPACITY). */
const DEDUPE_CAPACITY = 4096;

/** The ids one shared connection has delivered, oldest first, bounded like the real client's. */
class Dedupe {
  #seen = new Set<string>();

  firstTime(id: string): boolean {
    if (this.#seen.has(id)) return false;
    if (this.#seen.size >= DEDUPE_CAPACITY) {
      // A Set iterates in insertion order: the first one is the oldest.
      const oldest = this.#seen.values().next().value as string;
      this.#seen.delete(oldest);
    }
    this.#seen.add(id);
    return true;
  }

  forget(): void {
    this.#seen.clear();
  }
}

const disposeSymbol: typeof Symbol.dispose =
  (Symbol as { dispose?: typeof Symbol.dispose }).dispose ?? (Symbol.for('Symbol.dispose') as typeof Symbol.dispose);

/**
 * The in-memory client. Implements `RealtimeClient`, so it can replace the real one anywhere,
 * and behaves like it where a component can tell: statuses (`connecting` first, then `open`),
 * per-subscription event filters, an envelope id delivered at most once per url + user until
 * a reset (`sendReset`), and a throwing callback reported to its `onError`.
 */
export class RealtimeTestClient implements RealtimeClient {
  #entries = new Set<Entry>();
  /** Per url + user, like the real client's shared connections; gone with their last subscription. */
  #dedupe = new Map<string, Dedupe>();
  #seq = 0;
  #opts: Required<TestRealtimeOptions>;

  constructor(options: TestRealtimeOptions = {}) {
    this.#opts = {
      initialStatus: options.initialStatus ?? 'open',
      now: options.now ?? (() => new Date().toISOString()),
    };
  }

  subscribe<T = FromRegistry, N extends RealtimeEventName = RealtimeEventName>(
    userId: string,
    events: readonly N[] | null | undefined,
    callback: (event: RealtimeEventOf<N, T>) => void,
    options: SubscribeOptions = {},
  ): Subscription<RealtimeDataOf<N, T>> {
    const entry: Entry = {
      info: { userId, events: events ? [...events] : null, status: 'connecting', options },
      callback: callback as EventCallback<unknown>,
      cursor: options.lastEventId ?? null,
      key: `${options.url ?? ''}\n${userId}`,
    };
    this.#entries.add(entry);
    const initial = this.#opts.initialStatus;
    // The real client reports `connecting` too, after subscribe() returned.
    queueMicrotask(() => {
      if (!this.#entries.has(entry) || entry.info.status !== 'connecting') return;
      entry.info.options.onStatus?.('connecting');
      if (this.#entries.has(entry) && entry.info.status === 'connecting') this.#setStatus(entry, initial);
    });
    // Arrow functions: `this` is the client there, whatever the method is called on.
    const close = (): void => {
      if (!this.#remove(entry)) return;
      this.#setStatus(entry, 'closed');
    };
    return {
      get status() {
        return entry.info.status;
      },
      get lastEventId() {
        return entry.cursor;
      },
      reconnect: () => {
        if (!this.#entries.has(entry)) return;
        // The real client drops the connection it shares with every subscription of this url + user.
        const shared = [...this.#entries].filter((e) => e.key === entry.key);
        for (const e of shared) this.#setStatus(e, 'reconnecting');
        queueMicrotask(() => {
          for (const e of shared) if (this.#entries.has(e)) this.#setStatus(e, 'open');
        });
      },
      close,
      [disposeSymbol]() {
        this.close();
      },
    };
  }

  /** Removes a subscription; the last one of a url + user takes its remembered ids along. */
  #remove(entry: Entry): boolean {
    if (!this.#entries.delete(entry)) return false;
    if (![...this.#entries].some((e) => e.key === entry.key)) this.#dedupe.delete(entry.key);
    return true;
  }

  #setStatus(entry: Entry, status: SubscriptionStatus): void {
    if (entry.info.status === status) return;
    entry.info.status = status;
    entry.info.options.onStatus?.(status);
  }

  /**
   * Delivers an event to the subscriptions of `userId` that want it. Returns the envelope.
   * `data` must be the payload `RealtimeEvents` registers for `event` (or `T`, when given);
   * with nothing registered, anything.
   */
  emit<T = FromRegistry, N extends RealtimeEventName = RealtimeEventName>(
    userId: string,
    event: N,
    data: EmitData<T, N>,
    extra: EmitExtra = {},
  ): RealtimeEventOf<N, T> {
    const envelope: RealtimeEvent<unknown> = {
      id: extra.id ?? `test-${++this.#seq}`,
      event,
      data,
      timestamp: extra.timestamp ?? this.#opts.now(),
      userId,
    };
    this.#deliver(envelope, (e) => e.info.userId === userId);
    return envelope as RealtimeEventOf<N, T>;
  }

  /** Delivers a broadcast (no `userId`) to every subscription that wants it. `data`: as for `emit`. */
  broadcast<T = FromRegistry, N extends RealtimeEventName = RealtimeEventName>(
    event: N,
    data: EmitData<T, N>,
    extra: EmitExtra = {},
  ): RealtimeEventOf<N, T> {
    const envelope: RealtimeEvent<unknown> = {
      id: extra.id ?? `test-${++this.#seq}`,
      event,
      data,
      timestamp: extra.timestamp ?? this.#opts.now(),
    };
    this.#deliver(envelope, () => true);
    return envelope as RealtimeEventOf<N, T>;
  }

  #deliver(envelope: RealtimeEvent<unknown>, match: (e: Entry) => boolean): void {
    const targets = [...this.#entries].filter((e) => match(e) && (!e.info.events || e.info.events.includes(envelope.event)));
    // Decided once per connection before any callback runs, as the real client does: an id
    // only counts as seen where some subscription wanted the event.
    const fresh = new Map<string, boolean>();
    for (const e of targets) {
      if (fresh.has(e.key)) continue;
      let d = this.#dedupe.get(e.key);
      if (!d) this.#dedupe.set(e.key, (d = new Dedupe()));
      fresh.set(e.key, d.firstTime(envelope.id));
    }
    for (const e of targets) {
      // An earlier callback may have closed this one.
      if (!this.#entries.has(e) || !fresh.get(e.key)) continue;
      e.cursor = envelope.id;
      this.#call(e, () => e.callback(envelope));
    }
  }

  /** Runs a subscriber's callback; what it throws goes to its `onError`, else `console.error`. */
  #call(e: Entry, fn: () => void): void {
    try {
      fn();
    } catch (thrown) {
      if (e.info.options.onError) e.info.options.onError(thrown as RealtimeError);
      else console.error(thrown);
    }
  }

  /**
   * The bridge's `reset` control frame (of `userId`'s streams, if given): every subscription's
   * `onReset({ reason })`, whatever its event filter, and the ids delivered so far are
   * forgotten (the real client's de-duplication starts over, e.g. after `history_recreated`).
   */
  sendReset(reason = 'unknown_cursor', userId?: string): void {
    const targets = [...this.#entries].filter((e) => userId === undefined || e.info.userId === userId);
    for (const e of targets) this.#dedupe.get(e.key)?.forget();
    for (const e of targets) {
      if (this.#entries.has(e)) this.#call(e, () => e.info.options.onReset?.({ reason }));
    }
  }

  /** Sets the status of every subscription (of `userId`, if given), e.g. to test a "disconnected" badge. */
  setStatus(status: SubscriptionStatus, userId?: string): void {
    for (const e of [...this.#entries]) {
      if (userId !== undefined && e.info.userId !== userId) continue;
      this.#setStatus(e, status);
      if (status === 'closed') this.#remove(e);
    }
  }

  /** Gives an error to every subscription's `onError` (of `userId`, if given). `final` closes them. */
  fail(error: Partial<RealtimeError> & { message?: string } = {}, userId?: string): void {
    const err = Object.assign(new Error(error.message ?? 'test error'), { name: 'RealtimeError', final: false }, error) as RealtimeError;
    for (const e of [...this.#entries]) {
      if (userId !== undefined && e.info.userId !== userId) continue;
      e.info.options.onError?.(err);
      if (err.final) {
        this.#remove(e);
        this.#setStatus(e, 'closed');
      }
    }
  }

  /** The open subscriptions (of `userId`, if given). */
  subscriptions(userId?: string): TestSubscriptionInfo[] {
    return [...this.#entries].filter((e) => userId === undefined || e.info.userId === userId).map((e) => ({ ...e.info }));
  }

  /** Closes every subscription. */
  reset(): void {
    this.setStatus('closed');
  }
}

/** A new in-memory client. */
export function createTestRealtime(options?: TestRealtimeOptions): RealtimeTestClient {
  return new RealtimeTestClient(options);
}

export interface RealtimeTestProviderProps {
  client: RealtimeClient;
  children?: ReactNode;
}

/** `RealtimeProvider` bound to a test client: the hooks below it use it instead of the network. */
export function RealtimeTestProvider({ client, children }: RealtimeTestProviderProps) {
  return <RealtimeProvider client={client}>{children}</RealtimeProvider>;
}
