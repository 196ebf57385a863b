/**
 * realtime-bridge/testing: an in-memory realtime client for unit tests. Wrap the
 * components under test in `<RealtimeTestProvider client={rt}>` and emit events into
 * the hooks with `rt.emit(userId, event, data)`: no bridge, no network, same types.
 *
 * ```tsx
 * const rt = createTestRealtime();
 * render(<RealtimeTestProvider client={rt}><Chat userId="42" /></RealtimeTestProvider>);
 * act(() => { rt.emit('42', 'message_new', { content: 'hi' }); });
 * ```
 */
import type { ReactNode } from 'react';
import { RealtimeProvider } from './react.js';
import type {
  EventCallback,
  EventType,
  RealtimeClient,
  RealtimeError,
  RealtimeEvent,
  SubscribeOptions,
  Subscription,
  SubscriptionStatus,
} from './types.js';

export type * from './types.js';

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
}

const disposeSymbol: typeof Symbol.dispose =
  (Symbol as { dispose?: typeof Symbol.dispose }).dispose ?? (Symbol.for('Symbol.dispose') as typeof Symbol.dispose);

/** The in-memory client. Implements `RealtimeClient`, so it can replace the real one anywhere. */
export class RealtimeTestClient implements RealtimeClient {
  #entries = new Set<Entry>();
  #seq = 0;
  #opts: Required<TestRealtimeOptions>;

  constructor(options: TestRealtimeOptions = {}) {
    this.#opts = {
      initialStatus: options.initialStatus ?? 'open',
      now: options.now ?? (() => new Date().toISOString()),
    };
  }

  subscribe<T = unknown>(
    userId: string,
    events: readonly EventType[] | null | undefined,
    callback: EventCallback<T>,
    options: SubscribeOptions = {},
  ): Subscription<T> {
    const entry: Entry = {
      info: { userId, events: events ? [...events] : null, status: 'connecting', options },
      callback: callback as EventCallback<unknown>,
      cursor: options.lastEventId ?? null,
    };
    this.#entries.add(entry);
    const initial = this.#opts.initialStatus;
    queueMicrotask(() => {
      if (this.#entries.has(entry) && entry.info.status === 'connecting') this.#setStatus(entry, initial);
    });
    const self = this;
    return {
      get status() {
        return entry.info.status;
      },
      get lastEventId() {
        return entry.cursor;
      },
      reconnect() {
        if (!self.#entries.has(entry)) return;
        self.#setStatus(entry, 'reconnecting');
        queueMicrotask(() => self.#entries.has(entry) && self.#setStatus(entry, 'open'));
      },
      close() {
        if (!self.#entries.delete(entry)) return;
        self.#setStatus(entry, 'closed');
      },
      [disposeSymbol]() {
        this.close();
      },
    };
  }

  #setStatus(entry: Entry, status: SubscriptionStatus): void {
    if (entry.info.status === status) return;
    entry.info.status = status;
    entry.info.options.onStatus?.(status);
  }

  /** Delivers an event to the subscriptions of `userId` that want it. Returns the envelope. */
  emit<T>(userId: string, event: string, data: T, extra: Partial<Pick<RealtimeEvent<T>, 'id' | 'timestamp'>> = {}): RealtimeEvent<T> {
    const envelope: RealtimeEvent<T> = {
      id: extra.id ?? `test-${++this.#seq}`,
      event,
      data,
      timestamp: extra.timestamp ?? this.#opts.now(),
      userId,
    };
    this.#deliver(envelope, (e) => e.info.userId === userId);
    return envelope;
  }

  /** Delivers a broadcast (no `userId`) to every subscription that wants it. */
  broadcast<T>(event: string, data: T, extra: Partial<Pick<RealtimeEvent<T>, 'id' | 'timestamp'>> = {}): RealtimeEvent<T> {
    const envelope: RealtimeEvent<T> = {
      id: extra.id ?? `test-${++this.#seq}`,
      event,
      data,
      timestamp: extra.timestamp ?? this.#opts.now(),
    };
    this.#deliver(envelope, () => true);
    return envelope;
  }

  #deliver(envelope: RealtimeEvent<unknown>, match: (e: Entry) => boolean): void {
    for (const e of [...this.#entries]) {
      if (!this.#entries.has(e) || !match(e)) continue;
      if (e.info.events && !e.info.events.includes(envelope.event)) continue;
      e.cursor = envelope.id;
      e.callback(envelope);
    }
  }

  /** Sets the status of every subscription (of `userId`, if given), e.g. to test a "disconnected" badge. */
  setStatus(status: SubscriptionStatus, userId?: string): void {
    for (const e of [...this.#entries]) {
      if (userId === undefined || e.info.userId === userId) this.#setStatus(e, status);
      if (status === 'closed') this.#entries.delete(e);
    }
  }

  /** Gives an error to every subscription's `onError` (of `userId`, if given). `final` closes them. */
  fail(error: Partial<RealtimeError> & { message?: string } = {}, userId?: string): void {
    const err = Object.assign(new Error(error.message ?? 'test error'), { name: 'RealtimeError', final: false }, error) as RealtimeError;
    for (const e of [...this.#entries]) {
      if (userId !== undefined && e.info.userId !== userId) continue;
      e.info.options.onError?.(err);
      if (err.final) {
        this.#entries.delete(e);
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
