/**
 * realtime-bridge/react: the hooks (react.tsx), with the WebAssembly core embedded in the
 * JavaScript (as `realtime-bridge`). For the `.wasm` as a separate file, import the same hooks
 * from `realtime-bridge/url/react`.
 *
 * Installing the loader is this module's side effect (package.json lists it in sideEffects,
 * so that bundlers keep it although everything it exports comes from react.tsx).
 */
import { installLoader } from './loader.js';
import { embeddedLoader } from './load-embedded.js';

installLoader(embeddedLoader);

export * from './react.js';
