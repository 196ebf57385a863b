/**
 * realtime-bridge: subscribe to a user's Realtime Bridge event stream.
 *
 * This entry point carries the WebAssembly core inside its JavaScript (base64) and instantiates
 * it synchronously on first use: no init call, no asset to serve, no bundler plugin, and
 * `subscribe` attaches at once. The cost is the size: the base64 weighs more than the `.wasm`,
 * in the page's own bundle. `realtime-bridge/url` fetches the `.wasm` as a separate, cacheable
 * file instead. Either way a Content-Security-Policy must allow `'wasm-unsafe-eval'` in
 * `script-src`.
 */
import { installLoader, loadCore, withLoader } from './loader.js';
import { embeddedLoader } from './load-embedded.js';
import { subscribe as coreSubscribe } from './index.js';
import type { RealtimeClient } from './types.js';

export * from './index.js';

/**
 * Instantiates the page's WebAssembly core (synchronously, once). `subscribe` calls it where
 * the connection runs on the page (Node, `worker: false`, no worker possible); in a browser
 * page the connections run in the core's worker, which compiles its own copy.
 */
export function load(): void {
  installLoader(embeddedLoader);
  // Pending only if realtime-bridge/url started loading first: that load is not repeated.
  void loadCore();
}

/**
 * Subscribes to the events of `userId` (`events`: the names to receive, or null for all).
 * Calls for the same url and user share one HTTP connection; each callback gets only its
 * own events, each event id at most once.
 *
 * `e.data` is typed by `T` when given, else by the app's `RealtimeEvents` registry (`e.event`
 * then narrows it), else `unknown`.
 *
 * ```ts
 * const sub = subscribe<RealtimeMessageDto>('42', ['message_new'], (e) => console.log(e.data));
 * sub.close();
 * ```
 */
export const subscribe: typeof coreSubscribe = withLoader(embeddedLoader, coreSubscribe);

/** The real client, as an object (what `realtime-bridge/react` uses unless told otherwise). */
export const realtimeClient: RealtimeClient = { subscribe };
