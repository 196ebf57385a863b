//! The TypeScript declarations of the raw API (`subscribe`'s arguments, the envelope, the
//! error, the status), emitted into the package's `.d.ts` as a custom section: the exported
//! function itself is `skip_typescript`, its declaration is here.

use wasm_bindgen::prelude::*;

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** Connection state of a subscription. */
export type SubscriptionStatus = 'connecting' | 'open' | 'reconnecting' | 'closed';

/** The JSON envelope the bridge sends for each event. */
export interface RawEnvelope {
  id: string;
  event: string;
  data: unknown;
  timestamp: string;
  userId?: string;
}

/** Error given to `onError`. `final` is true when the subscription is closed for good (400, 403, `unauthenticated`). */
export interface RealtimeErrorLike extends Error {
  status?: number;
  code?: string;
  final: boolean;
}

/** Options understood by the raw `subscribe` (the package's `configure`/`subscribe` merge them). */
export interface RawSubscribeOptions {
  url: string;
  token?: string | null;
  /**
   * Called (and awaited) before every connection; `stale` is true when the bridge refused (401)
   * or expired (`end` / `token_expired`) the token it gave last. A non-string or empty result:
   * no `Authorization`. A throw or rejection is `token_error` (retried), or, for an error named
   * `UnauthorizedError`, `unauthenticated` (final). The package wraps the app's `getToken` in
   * one that reuses its token.
   */
  getToken?: (stale: boolean) => string | null | undefined | Promise<string | null | undefined>;
  lastEventId?: string | null;
  /** Sent as `clientId=` (presence) when it is a token (1 to 128 of A-Z a-z 0-9 _ -); else not sent. */
  clientId?: string;
  backoff?: { initialMs?: number; maxMs?: number; multiplier?: number; jitter?: number };
  heartbeatTimeoutMs?: number;
  closeWhenHidden?: boolean;
  onStatus?: (status: SubscriptionStatus) => void;
  onError?: (error: RealtimeErrorLike) => void;
  onReset?: (info: { reason?: string }) => void;
}

/**
 * Subscribes to the events of one user. Calls for the same url and user share one HTTP
 * connection. Throws a TypeError for an invalid user id, event name or missing url.
 */
export function subscribe(
  userId: string,
  events: readonly string[] | null | undefined,
  callback: (envelope: RawEnvelope) => void,
  options: RawSubscribeOptions,
): Subscription;
"#;

#[wasm_bindgen]
extern "C" {
    /// `'connecting' | 'open' | 'reconnecting' | 'closed'`
    #[wasm_bindgen(typescript_type = "SubscriptionStatus")]
    pub type StatusJs;
}
