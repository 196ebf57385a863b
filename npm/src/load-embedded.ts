/** The embedded loader: the `.wasm` as base64 inside the JavaScript, instantiated synchronously. */
import { initSync } from './wasm/realtime_bridge_sdk.js';
import { wasmBase64 } from './wasm/bytes.js';
import { workerSource } from './wasm/worker-source.js';
import type { WasmLoader } from './loader.js';

function decodeBase64(b64: string): Uint8Array {
  const g = globalThis as { atob?: (s: string) => string; Buffer?: { from(s: string, enc: string): Uint8Array } };
  if (typeof g.atob !== 'function' && g.Buffer) return new Uint8Array(g.Buffer.from(b64, 'base64'));
  const bin = (g.atob as (s: string) => string)(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export const embeddedLoader: WasmLoader = {
  sync: () => initSync({ module: decodeBase64(wasmBase64) }).memory,
  // The bytes, transferred to the worker (started from a blob: URL), which compiles them.
  worker: () => ({ wasm: { bytes: decodeBase64(wasmBase64) }, source: workerSource }),
};
