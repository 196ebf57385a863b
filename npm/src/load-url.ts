/**
 * The URL loader: the `.wasm` as a file next to the package's JavaScript. Bundlers (Vite,
 * webpack 5, Rollup with its URL plugin, esbuild with a file loader) see
 * `new URL('./x.wasm', import.meta.url)` in wasm/url.js and emit the file as an asset;
 * the browser fetches and compiles it while it downloads (`instantiateStreaming`).
 */
import { default as init } from './wasm/realtime_bridge_sdk.js';
import { startWorker, wasmUrl } from './wasm/url.js';
import type { WasmLoader } from './loader.js';

let source: string | URL | undefined;

/** Where the `.wasm` is fetched from, unless `setWasmSource` said otherwise. */
export function setWasmSource(url: string | URL): void {
  source = url;
}

async function fetchWasm(): Promise<WebAssembly.Memory> {
  const url = source ?? wasmUrl();
  const href = String(url);
  if (href.startsWith('file:')) {
    // Node (tests, scripts): fetch cannot read files. getBuiltinModule keeps 'node:fs' out of
    // every bundler's sight.
    const proc = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process;
    const fs = proc?.getBuiltinModule?.('fs') as { promises: { readFile(u: URL): Promise<Uint8Array> } } | undefined;
    if (!fs) throw new Error(`realtime-bridge: cannot read ${href} here (Node >= 20.16 reads it)`);
    return (await init({ module_or_path: await fs.promises.readFile(new URL(href)) })).memory;
  }
  // The glue compiles with instantiateStreaming and falls back to arrayBuffer + instantiate
  // (with a console warning) when the server does not send Content-Type: application/wasm.
  return (await init({ module_or_path: fetch(url) })).memory;
}

export const urlLoader: WasmLoader = {
  async: fetchWasm,
  // The worker is started from its file next to the .wasm, and fetches the .wasm itself.
  worker: () => {
    const loc = (globalThis as { location?: { href?: string } }).location;
    return { wasm: { url: new URL(String(source ?? wasmUrl()), loc?.href).href }, start: startWorker };
  },
};
