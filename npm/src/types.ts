/**
 * Types shared by `realtime-bridge`, `realtime-bridge/react` and `realtime-bridge/testing`, and
 * the runtime helpers that go with them (`isRealtimeError`, `isKnownErrorCode`,
 * `UnauthorizedError`). The DTO and
 * event-name types keep the names of the original realtime system, so code written against it
 * type-checks unchanged.
 */

/** Connection state of a subscription. */
export type SubscriptionStatus = 'connecting' | 'open' | 'reconnecting' | 'closed';

/**
 * The original system's generic event DTO (without the envelope id). `E`: the event's name, a
 * literal when the names are registered (`RealtimeEvents`), so that `event` discriminates `data`.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export interface RealtimeEventDto<T = any, E extends string = string> {
  event: E;
  data: T;
  timestamp: string;
  userId?: string;
}

/** One event as delivered: the bridge's JSON envelope (docs/protocol.md §2.5). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export interface RealtimeEvent<T = any, E extends string = string> extends RealtimeEventDto<T, E> {
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

/**
 * The app's event names and payloads, empty here: an app fills it by declaration merging (from
 * any entry point, it is the same interface), and from then on the names and payloads are typed
 * everywhere: `subscribe`, `useRealtime`, `onEvent`, the specialised hooks and the test client's
 * `emit` and `broadcast`.
 *
 * ```ts
 * declare module 'realtime-bridge' {
 *   interface RealtimeEvents {
 *     message_new: ChatMessage;
 *     typing_start: { userId: string; conversationId: string };
 *   }
 * }
 * ```
 *
 * Registering closes the list of names: a name that is not registered no longer type-checks
 * where a name is expected (register it, with `unknown` if its payload does not matter). With
 * nothing registered, any valid name is accepted and payloads are not checked.
 */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface RealtimeEvents {}

/** True when an app registered no event in `RealtimeEvents`. */
type NothingRegistered = [keyof RealtimeEvents] extends [never] ? true : false;

declare const fromRegistry: unique symbol;
/**
 * The default of the payload type parameters (`subscribe<T>`, `useRealtime<T>`,
 * `useRealtimeMessages<T>`, `emit<T>`, ...): each event's payload is the one registered for its
 * name in `RealtimeEvents` (or the hook's stand-in DTO when the name is not registered). Pass
 * your own type instead to give every event of the call that payload.
 */
export interface FromRegistry {
  readonly [fromRegistry]: true;
}

/** `T` is the default marker (`any` is not: it stays an explicit, loose payload). */
type IsFromRegistry<T> = 0 extends 1 & T ? false : [T] extends [FromRegistry] ? true : false;

/** The event names accepted: the registered ones, or any name (`EventType`) when none is registered. */
export type RealtimeEventName = NothingRegistered extends true ? EventType : Extract<keyof RealtimeEvents, string>;

/**
 * The payload of the events named `N`: `T` when given, else what `RealtimeEvents` registers for
 * each name, else `Fallback`.
 */
export type RealtimeDataOf<N extends string = RealtimeEventName, T = FromRegistry, Fallback = unknown> =
  IsFromRegistry<T> extends true ? (N extends keyof RealtimeEvents ? RealtimeEvents[N] : Fallback) : T;

/**
 * The envelope a callback gets for the events named `N`. With registered names it is a union
 * discriminated by `event` (`e.event === 'message_new'` narrows `e.data`), unless `T` gives one
 * payload for all; with nothing registered, `RealtimeEvent<T>` (or `<Fallback>`) as before.
 */
export type RealtimeEventOf<N extends string = RealtimeEventName, T = FromRegistry, Fallback = unknown> =
  NothingRegistered extends true
    ? RealtimeEvent<RealtimeDataOf<N, T, Fallback>>
    : // With a registry, `T` is never inferred from a callback's annotation: a wrongly typed
      // callback is an error, not a new payload type.
      RegisteredEventOf<N, NoInfer_<T>, Fallback>;

type RegisteredEventOf<N extends string, T, Fallback> =
  IsFromRegistry<T> extends true
    ? N extends unknown
      ? RealtimeEvent<RealtimeDataOf<N, T, Fallback>, N>
      : never
    : RealtimeEvent<T, N>;

/** `T`, but not a place to infer `T` from (the built-in `NoInfer` needs TypeScript 5.4). */
type NoInfer_<T> = [T][T extends unknown ? 0 : never];

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

/**
 * The `code` of the bridge's JSON error answers (docs/protocol.md §3), with their HTTP status.
 * 400 and 403 are final for a subscription; the others are retried.
 */
export type BridgeErrorCode =
  /** 400: the user id is not a token. */
  | 'invalid_user_id'
  /** 400: a name in `events` is not a token. */
  | 'invalid_event_name'
  /** 400: `clientId` is not a token. */
  | 'invalid_client_id'
  /** 400: a bad query string (or publish body). */
  | 'bad_request'
  /** 400: more names in `events` than the bridge allows. */
  | 'too_many_events'
  /** 401: no token, or a malformed or invalid one (after the one immediate retry with a fresh token). */
  | 'unauthorized'
  /** 403: a valid token for another user's stream, or without the needed scope. */
  | 'forbidden'
  /** 403: a browser request from an origin the bridge does not know. */
  | 'cross_site'
  /** 403: a bridge started without authentication answers loopback hosts only. */
  | 'host_not_allowed'
  /** 404: unknown path (a wrong `url`?). */
  | 'not_found'
  /** 405: known path, other method. */
  | 'method_not_allowed'
  /** 408: a request body not received in time. */
  | 'request_timeout'
  /** 413: a publish body too large. */
  | 'payload_too_large'
  /** 414: the request target (path and `events`) is too long. */
  | 'uri_too_long'
  /** 415: a publish body that is not JSON. */
  | 'unsupported_media_type'
  /** 429: the user has as many open streams as the bridge allows. */
  | 'too_many_streams'
  /** 500: reserved for unexpected failures. */
  | 'internal'
  /** 503: NATS not reachable, keys not loaded yet, or the bridge is full: retry. */
  | 'unavailable';

/** The codes the SDK itself gives its errors (no HTTP status: the bridge did not answer). */
export type ClientErrorCode =
  /** `fetch` failed: the bridge cannot be reached. Retried. */
  | 'network_error'
  /** `getToken` threw or rejected. Retried. */
  | 'token_error'
  /** `getToken` gave no token (`null`, `undefined`, `''`) or threw an `UnauthorizedError`: signed out. Final. */
  | 'unauthenticated'
  /** No byte (not even a heartbeat) for `heartbeatTimeoutMs`: the connection is dropped and retried. */
  | 'heartbeat_timeout'
  /** An event whose data is not JSON: skipped, the stream goes on. */
  | 'invalid_event'
  /**
   * `realtime-bridge/url`: the `.wasm` could not be fetched, compiled or instantiated (a 404, or
   * a Content-Security-Policy without `'wasm-unsafe-eval'`). Final for the subscriptions that
   * waited for it; a later `subscribe` or `load()` tries again.
   */
  | 'wasm_load_failed';

/** Every error code known today. */
export type KnownRealtimeErrorCode = BridgeErrorCode | ClientErrorCode;
/**
 * `RealtimeError.code`: a known code, or any other string (a newer bridge may add codes).
 * `string & {}` keeps editor completion for the known codes while accepting any string.
 */
export type RealtimeErrorCode = KnownRealtimeErrorCode | (string & {});

/** Each known code once: the compiler checks that this is exactly `KnownRealtimeErrorCode`. */
const KNOWN_CODES: Record<KnownRealtimeErrorCode, true> = {
  invalid_user_id: true,
  invalid_event_name: true,
  invalid_client_id: true,
  bad_request: true,
  too_many_events: true,
  unauthorized: true,
  forbidden: true,
  cross_site: true,
  host_not_allowed: true,
  not_found: true,
  method_not_allowed: true,
  request_timeout: true,
  payload_too_large: true,
  uri_too_long: true,
  unsupported_media_type: true,
  too_many_streams: true,
  internal: true,
  unavailable: true,
  network_error: true,
  token_error: true,
  unauthenticated: true,
  heartbeat_timeout: true,
  invalid_event: true,
  wasm_load_failed: true,
};

/**
 * True for a code this version knows (`KnownRealtimeErrorCode`). `code === 'forbidden'` alone
 * leaves `code` open (any string may still be there); after this check, comparisons narrow it
 * to one code and a `switch` over the known codes can be exhaustive.
 */
export function isKnownErrorCode(code: unknown): code is KnownRealtimeErrorCode {
  return typeof code === 'string' && Object.prototype.hasOwnProperty.call(KNOWN_CODES, code);
}

/** An error given to `onError`. */
export interface RealtimeError extends Error {
  name: 'RealtimeError' | string;
  /** HTTP status, when the bridge answered. */
  status?: number;
  /**
   * The bridge's error code (`BridgeErrorCode`: `invalid_user_id`, `forbidden`, ...) or the
   * SDK's (`ClientErrorCode`: `network_error`, `heartbeat_timeout`, `token_error`,
   * `unauthenticated`, `invalid_event`). Absent when the bridge's answer carried none (e.g. a
   * 200 that is not an event stream, or a proxy's error page).
   */
  code?: RealtimeErrorCode;
  /** True when the subscription is closed for good (400, 403, `unauthenticated`). */
  final: boolean;
}

/**
 * True for a `RealtimeError` (what the SDK, or the test client's `fail`, gives `onError`), false
 * for anything else: plain `Error`s, the `TypeError`s `subscribe` throws for bad arguments, and
 * whatever a throwing event callback threw (it is handed to `onError` as it is).
 *
 * ```ts
 * onError: (e) => { if (isRealtimeError(e) && e.code === 'forbidden') logout(); }
 * ```
 */
export function isRealtimeError(e: unknown): e is RealtimeError {
  if (typeof e !== 'object' || e === null) return false;
  // Not only `instanceof Error`: an error from another realm (iframe, test environment) counts.
  if (!(e instanceof Error) && Object.prototype.toString.call(e) !== '[object Error]') return false;
  const r = e as Partial<RealtimeError>;
  return (
    r.name === 'RealtimeError' &&
    typeof r.final === 'boolean' &&
    (r.status === undefined || typeof r.status === 'number') &&
    (r.code === undefined || typeof r.code === 'string')
  );
}

/**
 * Throw it from `getToken` (or return `null`) when the user is signed out: the subscription
 * closes (`onError` with code `unauthenticated`, `final: true`) instead of retrying.
 *
 * Recognised by its `name` (`'UnauthorizedError'`), not by `instanceof`: an error from the
 * package's other build (ES module / CommonJS), from another realm, or an app's own class with
 * that name counts too.
 *
 * ```ts
 * getToken: async () => {
 *   const r = await fetch('/api/realtime-token');
 *   if (r.status === 401) throw new UnauthorizedError('session ended');
 *   return r.text();
 * }
 * ```
 */
export class UnauthorizedError extends Error {
  constructor(message = 'signed out') {
    super(message);
    this.name = 'UnauthorizedError';
  }
}

/**
 * Gives the token for the next connection: a JWT, or `null`/`undefined` when signed out (then
 * the subscription closes, as for a thrown `UnauthorizedError`). Any other throw or rejection is
 * reported as `token_error` and retried with backoff.
 */
export type TokenSource = () => string | null | undefined | Promise<string | null | undefined>;

/** Defaults for every subscription (`configure`), or one subscription's overrides. */
export interface RealtimeOptions {
  /** Base URL of the bridge, e.g. `https://rt.example.com`. Defaults to the page's origin in a browser. */
  url?: string;
  /** A fixed JWT, sent as `Authorization: Bearer`. It cannot be renewed: prefer `getToken` when tokens expire. */
  token?: string | null;
  /**
   * Called (and awaited) for the first connection; its token is then reused by every
   * reconnection until the bridge refuses it (401), ends a stream because it expired (`end` /
   * `token_expired`), or its JWT `exp` is near (a tenth of the time it had left when received,
   * at most 30 s, before). Each of these calls must give a new token, not a cached copy of the
   * old one. `null` or a thrown `UnauthorizedError`: signed out, the subscription closes.
   * Overrides `token`.
   */
  getToken?: TokenSource;
  /** Resume from this cursor (sent as `Last-Event-ID`). */
  lastEventId?: string | null;
  /**
   * Names this connection in the bridge's presence answers (`clients[].id`), e.g. a tab or a
   * device: 1 to 128 characters from `A-Z a-z 0-9 _ -` (anything else throws a `TypeError`).
   * Not given: each connection gets a random one (`crypto.randomUUID()` where available).
   * Subscriptions sharing a connection share its opener's id.
   */
  clientId?: string;
  backoff?: Partial<BackoffOptions>;
  /** No byte (not even a heartbeat) for this long (checked every quarter of it) means a dead link: reconnect. 45000; 0 disables. */
  heartbeatTimeoutMs?: number;
  /**
   * Close the stream while the page is hidden (`document.visibilityState`), and open it again,
   * from the cursor, when it is visible (status `reconnecting` meanwhile). Off by default: the
   * inverse of `openWhenHidden` in `@microsoft/fetch-event-source`, which closes by default. In
   * live mode events published while hidden are not delivered.
   */
  closeWhenHidden?: boolean;
  onStatus?: (status: SubscriptionStatus) => void;
  onError?: (error: RealtimeError) => void;
  /**
   * The bridge cannot resume from the cursor (`event: reset`; `reason`: `unknown_cursor`,
   * `history_expired`, `history_recreated`, or a newer one): reload your state. The stream goes
   * on live, and the envelope ids remembered for de-duplication are forgotten.
   */
  onReset?: (info: { reason?: string }) => void;
  /**
   * In a browser, share one stream per url + user between all the tabs of the origin: one tab
   * (elected with `navigator.locks`) holds the connection and relays to the others over a
   * `BroadcastChannel`; when it closes, another takes over from the last cursor. Default: true
   * where both exist (never in Node). false: this subscription has the tab's own connection.
   */
  shareAcrossTabs?: boolean;
  /**
   * In a browser page, run the connection (fetch, SSE parsing, resume, de-duplication,
   * `JSON.parse`) in a dedicated Web Worker, one per page: the page's main thread only calls
   * the callbacks, with one message per chunk of the stream. The embedded entry starts it from
   * a `blob:` URL, `realtime-bridge/url` from its own file. Default: true where workers exist
   * (never in Node or inside a worker). Where the worker cannot run (a Content-Security-Policy
   * that refuses it, a `.wasm` it cannot load, a crash) the connection moves to the page, from
   * its cursor. false: always on the page.
   */
  worker?: boolean;
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
  subscribe<T = FromRegistry, N extends RealtimeEventName = RealtimeEventName>(
    userId: string,
    events: readonly N[] | null | undefined,
    callback: (event: RealtimeEventOf<N, T>) => void,
    options?: SubscribeOptions,
  ): Subscription<RealtimeDataOf<N, T>>;
}
