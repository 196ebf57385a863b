/**
 * Types shared by `realtime-bridge`, `realtime-bridge/react` and `realtime-bridge/testing`.
 * The DTO and event-name types keep the names of the original realtime system, so code
 * written against it type-checks unchanged.
 */

/** Connection state of a subscription. */
export type SubscriptionStatus = 'connecting' | 'open' | 'reconnecting' | 'closed';

/** The original system's generic event DTO (without the envelope id). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export interface RealtimeEventDto<T = any> {
  event: string;
  data: T;
  timestamp: string;
  userId?: string;
}

/** One event as delivered: the bridge's JSON envelope (docs/protocol.md §2.5). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export interface RealtimeEvent<T = any> extends RealtimeEventDto<T> {
  /** Identifies the event; never delivered twice to the same callback. */
  id: string;
  /** Absent on broadcasts. */
  userId?: string;
}

export type NotificationEventType = 'notification' | 'notification_read' | 'notification_deleted';
export type MessageEventType = 'message_new' | 'message_read' | 'typing_start' | 'typing_stop';
export type TransactionEventType = 'transaction_created' | 'transaction_completed' | 'transaction_failed';
/** Every event name of the original system, plus any other valid name. */
export type KnownEventType = NotificationEventType | MessageEventType | TransactionEventType;
// `string & {}` keeps editor completion for the known names while accepting any string.
export type EventType = KnownEventType | (string & {});

export interface RealtimeNotificationDto {
  id: string;
  type?: string;
  title?: string;
  message?: string;
  read?: boolean;
  createdAt?: string;
  [key: string]: unknown;
}

export interface RealtimeMessageDto {
  id?: string;
  conversationId?: string;
  senderId?: string;
  recipientId?: string;
  /** Set on `typing_start` / `typing_stop`: who is typing. */
  userId?: string;
  content?: string;
  createdAt?: string;
  [key: string]: unknown;
}

export interface RealtimeTransactionDto {
  transactionId?: string;
  accountId?: string;
  userId?: string;
  amount: number;
  type: 'CREDIT' | 'DEBIT' | (string & {});
  status?: string;
  [key: string]: unknown;
}

export interface BackoffOptions {
  /** Delay before the first retry, ms (500). */
  initialMs: number;
  /** Largest delay, ms (30000). */
  maxMs: number;
  /** Growth per retry (2). */
  multiplier: number;
  /** Randomised fraction of each delay, 0..1 (0.5). */
  jitter: number;
}

/** An error given to `onError`. */
export interface RealtimeError extends Error {
  name: 'RealtimeError' | string;
  /** HTTP status, when the bridge answered. */
  status?: number;
  /** The bridge's error code (`invalid_user_id`, `forbidden`, ...) or the SDK's
   * (`network_error`, `heartbeat_timeout`, `token_error`, `invalid_event`). */
  code?: string;
  /** True when the subscription is closed for good (400, 403). */
  final: boolean;
}

export type TokenSource = () => string | null | undefined | Promise<string | null | undefined>;

/** Defaults for every subscription (`configure`), or one subscription's overrides. */
export interface RealtimeOptions {
  /** Base URL of the bridge, e.g. `https://rt.example.com`. Defaults to the page's origin in a browser. */
  url?: string;
  /** A fixed JWT, sent as `Authorization: Bearer`. It cannot be renewed: prefer `getToken` when tokens expire. */
  token?: string | null;
  /**
   * Called (and awaited) before every (re)connection, and once more right after a 401. That
   * includes the immediate reconnection after the bridge ends a stream (`event: end`): after
   * `token_expired` the stream's token has expired, so return a fresh one, not a cached copy.
   */
  getToken?: TokenSource;
  /** Resume from this cursor (sent as `Last-Event-ID`). */
  lastEventId?: string | null;
  backoff?: Partial<BackoffOptions>;
  /** No byte (not even a heartbeat) for this long (checked every quarter of it) means a dead link: reconnect. 45000; 0 disables. */
  heartbeatTimeoutMs?: number;
  onStatus?: (status: SubscriptionStatus) => void;
  onError?: (error: RealtimeError) => void;
  /**
   * The bridge cannot resume from the cursor (`event: reset`; `reason`: `unknown_cursor`,
   * `history_expired`, `history_recreated`, or a newer one): reload your state. The stream goes
   * on live, and the envelope ids remembered for de-duplication are forgotten.
   */
  onReset?: (info: { reason?: string }) => void;
}

export type SubscribeOptions = RealtimeOptions;

/** What `subscribe` returns. */
export interface Subscription<T = unknown> {
  readonly status: SubscriptionStatus;
  /** The resume cursor: the last SSE `id:` line received, or null. */
  readonly lastEventId: string | null;
  /** Drop the connection and connect again at once. */
  reconnect(): void;
  /** Stop delivery; the last subscription of a shared connection closes it. */
  close(): void;
  [Symbol.dispose](): void;
  /** Phantom field carrying the event data type. */
  readonly __data?: T;
}

export type EventCallback<T> = (event: RealtimeEvent<T>) => void;

/** Anything that can subscribe: the real client, or the in-memory one of `realtime-bridge/testing`. */
export interface RealtimeClient {
  subscribe<T = unknown>(
    userId: string,
    events: readonly EventType[] | null | undefined,
    callback: EventCallback<T>,
    options?: SubscribeOptions,
  ): Subscription<T>;
}
