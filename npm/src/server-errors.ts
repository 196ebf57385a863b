/**
 * The error of `realtime-bridge/server` and its codes (docs/protocol.md §1.7), shared by the
 * Node module and the stub the `browser` condition resolves to.
 */

/** Why a `RealtimeService` call failed. */
export type RealtimeServiceErrorCode =
  /** A user id that is not a token (1 to 128 of `A-Z a-z 0-9 _ -`); `userId` names it. Nothing was sent. */
  | 'invalid_user_id'
  /** An event name that is not a token. Nothing was sent. */
  | 'invalid_event_name'
  /** `end` or `reset`: the stream's own control frames. Nothing was sent. */
  | 'reserved_event'
  /** `data` that is not one JSON value (`undefined`, a function, a cycle, a BigInt, NaN or Infinity). Nothing was sent. */
  | 'invalid_data'
  /** Serialised `data` over `maxEventBytes`. Nothing was sent. */
  | 'too_large'
  /** A `msgId` that is empty or holds a control character (it travels as a NATS header value). Nothing was sent. */
  | 'invalid_msg_id'
  /** JetStream did not acknowledge within `publishTimeout` (retries included), or `flush()` got no round trip in that time. */
  | 'timeout'
  /** JetStream answered with an error, the stream is missing (`mode: 'jetstream'`), or the NATS connection is closed or unreachable. */
  | 'unavailable'
  /** A presence request that no bridge answered within `presenceTimeout`. */
  | 'no_bridge'
  /** The service was closed (`close()`): no new sends or presence requests. */
  | 'closed';

/** The error every failed `RealtimeService` call rejects with (or throws, for bad options). */
export class RealtimeServiceError extends Error {
  override readonly name = 'RealtimeServiceError';
  readonly code: RealtimeServiceErrorCode;
  /** The user the failure concerns, when there is one (a bad id, a send to that user that failed). */
  readonly userId?: string;

  constructor(code: RealtimeServiceErrorCode, message: string, options?: { userId?: string; cause?: unknown }) {
    super(message);
    this.code = code;
    if (options?.userId !== undefined) this.userId = options.userId;
    // Set by hand: the `cause` option of the Error constructor needs the ES2022 lib.
    if (options?.cause !== undefined) Object.defineProperty(this, 'cause', { value: options.cause, configurable: true, writable: true });
  }
}

/**
 * True for a `RealtimeServiceError`, recognised by its name and code rather than `instanceof`:
 * an error from the package's other build (ES module / CommonJS) counts too.
 */
export function isRealtimeServiceError(e: unknown): e is RealtimeServiceError {
  return (
    typeof e === 'object' &&
    e !== null &&
    (e as { name?: unknown }).name === 'RealtimeServiceError' &&
    typeof (e as { code?: unknown }).code === 'string'
  );
}
