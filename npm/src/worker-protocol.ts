/**
 * What the page and the core's worker say to each other (`worker-host.ts` on the page,
 * `worker.ts` in the worker; docs/protocol.md §6.5). Types only, plus the item kinds.
 */
import type { ErrorData } from './error-data.js';
import type { BackoffOptions, SubscriptionStatus } from './types.js';

/** How the worker gets the `.wasm`: its bytes (the embedded entry) or its absolute URL (`/url`). */
export type WorkerWasm = { bytes: Uint8Array; url?: undefined } | { url: string; bytes?: undefined };

/**
 * How an entry point starts the core's worker, and the `.wasm` to give it: from a `blob:` URL
 * of the script's text (`source`: the embedded entry, which ships no file) or from its own
 * file (`start`: `/url`).
 */
export type WorkerStart = { wasm: WorkerWasm } & (
  | { source: string; start?: undefined }
  | { start: () => Worker; source?: undefined }
);

/** A subscription's options as the worker gets them: values only (functions stay on the page). */
export interface WorkerOptions {
  url: string;
  token?: string | null;
  /** The page has a `getToken`: the worker asks it for each connection (`tok` messages). */
  getToken: boolean;
  lastEventId?: string | null;
  clientId: string;
  backoff?: Partial<BackoffOptions>;
  heartbeatTimeoutMs?: number;
  closeWhenHidden?: boolean;
}

export type ToWorker =
  | { t: 'init'; wasm: WorkerWasm }
  /** `key`: the page's key of the connection (url and user), what its token requests name. */
  | { t: 'sub'; id: number; key: string; user: string; events: string[] | null; o: WorkerOptions }
  | { t: 'close'; id: number }
  | { t: 'reconnect'; id: number }
  /** The page's network and visibility (the core's `network()` codes). */
  | { t: 'net'; n: number }
  /** The answer to a token request `q`: a token, or what `getToken` threw. */
  | { t: 'tok'; q: number; token?: string; err?: ErrorData };

/** What happened to one subscription, in order: `[kind, subscription id, payload]`. */
export type Item =
  | [typeof EVENT, number, unknown]
  | [typeof RESET, number, { reason?: string }]
  | [typeof STATUS, number, SubscriptionStatus]
  | [typeof ERROR, number, ErrorData]
  | [typeof CURSOR, number, string | null]
  /** `subscribe` threw in the worker (what it would have thrown on the page): closed. */
  | [typeof THREW, number, ErrorData];

export const EVENT = 0;
export const RESET = 1;
export const STATUS = 2;
export const ERROR = 3;
export const CURSOR = 4;
export const THREW = 5;

export type FromWorker =
  /** The core is loaded. */
  | { t: 'ready' }
  /** The core could not be loaded. */
  | { t: 'fail'; err: ErrorData }
  /** Everything since the last batch: one message per chunk of the stream. */
  | { t: 'batch'; items: Item[] }
  /**
   * The connection `key` (url and user, as the page keys them) needs a token from its opener's
   * `getToken` (`stale`: the bridge refused or expired the last one).
   */
  | { t: 'tok'; q: number; key: string; stale: boolean };
