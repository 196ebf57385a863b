/**
 * realtime-bridge/url/react: the hooks (react.tsx), with the WebAssembly core fetched as a
 * separate `.wasm` file (as `realtime-bridge/url`). Until it is loaded the hooks show status
 * `connecting`; a failure to load it shows as `error` (code `wasm_load_failed`) and `closed`.
 *
 * Installing the loader is this module's side effect (package.json lists it in sideEffects,
 * so that bundlers keep it although everything it exports comes from react.tsx).
 */
import { installLoader } from './loader.js';
import { urlLoader } from './load-url.js';

installLoader(urlLoader);

export * from './react.js';
