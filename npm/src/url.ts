/**
 * realtime-bridge/url: the same API as `realtime-bridge`, with the WebAssembly core loaded as
 * a separate `.wasm` file (fetched by URL, compiled while it downloads) instead of embedded
 * in the JavaScript: a small bundle, and a `.wasm` the browser caches on its own.
 *
 * Loading is asynchronous. `subscribe` still returns at once: the subscription is
 * `connecting` until the core is ready, then connects; if the `.wasm` cannot be loaded
 * (a 404, a Content-Security-Policy without `'wasm-unsafe-eval'`), `onError` gets a final
 * `RealtimeError` with code `wasm_load_failed` and the status becomes `closed`. `await load()`
 * first to get that failure as a rejection instead, or to start the download early.
 */
import { installLoader, loadCore, withLoader } from './loader.js';
import { setWasmSource, urlLoader } from './load-url.js';
import { subscribe as coreSubscribe } from './index.js';
import type { RealtimeClient } from './types.js';

export * from './index.js';

/**
 * Fetches and instantiates the page's WebAssembly core (once; again after a failure).
 * `subscribe` calls it where the connection runs on the page (Node, `worker: false`, no worker
 * possible); call it first to start the download early or to handle a failure yourself. In a
 * browser page the connections run in the core's worker, which fetches its own copy.
 * `wasmUrl`: where to fetch the `.wasm` from, when it is not served next to the package's
 * JavaScript (a CDN); effective before the first load only.
 */
export function load(wasmUrl?: string | URL): Promise<void> {
  if (wasmUrl !== undefined) setWasmSource(wasmUrl);
  installLoader(urlLoader);
  return loadCore() ?? Promise.resolve();
}

/**
 * Subscribes to the events of `userId` (`events`: the names to receive, or null for all).
 * Returns at once; the subscription connects when the core is loaded (`connecting` until
 * then). Calls for the same url and user share one HTTP connection; each callback gets only
 * its own events, each event id at most once. `e.data` is typed by `T` when given, else by
 * the app's `RealtimeEvents` registry (`e.event` then narrows it), else `unknown`.
 */
export const subscribe: typeof coreSubscribe = withLoader(urlLoader, coreSubscribe);

/** The real client, as an object (what `realtime-bridge/url/react` uses unless told otherwise). */
export const realtimeClient: RealtimeClient = { subscribe };
