/**
 * Loading the WebAssembly core: once per program, with the loader an entry point installed
 * (embedded bytes, or the `.wasm` by URL). Kept apart from index.ts so that the entry points'
 * `export *` of the API does not export this machinery.
 */

import type { WorkerStart } from './worker-protocol.js';

/**
 * How an entry point instantiates the WebAssembly core (each returns the module's memory), and
 * how the core's worker gets the same `.wasm` (`worker`).
 */
export type WasmLoader = (
  | { sync: () => WebAssembly.Memory; async?: undefined }
  | { async: () => Promise<WebAssembly.Memory>; sync?: undefined }
) & { worker: () => WorkerStart };

let loader: WasmLoader | null = null;
let memory: WebAssembly.Memory | undefined;
/** An asynchronous load under way (forgotten when it fails, so that a later call retries). */
let loading: Promise<void> | null = null;

/**
 * Sets how `subscribe` loads the core. A synchronous loader wins over an asynchronous one: when
 * both entry points are in one program, the embedded bytes are there anyway.
 */
export function installLoader(l: WasmLoader): void {
  if (!loader || (l.sync && !loader.sync)) loader = l;
}

/** Loads the core if needed: undefined once it is ready, a promise while it loads asynchronously. */
export function loadCore(): Promise<void> | undefined {
  if (memory) return undefined;
  // A load already under way (another entry point's): never instantiate the module twice.
  if (loading) return loading;
  if (!loader) {
    throw new Error("realtime-bridge: no WebAssembly loader: import from 'realtime-bridge' or 'realtime-bridge/url'");
  }
  if (loader.sync) {
    memory = loader.sync();
    return undefined;
  }
  const p = loader.async().then(
    (m) => {
      memory = m;
      loading = null;
    },
    (err: unknown) => {
      loading = null;
      throw err;
    },
  );
  loading = p;
  return p;
}

/** How to start the core's worker and give it the `.wasm`, from the installed loader. */
export function workerStart(): WorkerStart {
  if (!loader) {
    throw new Error("realtime-bridge: no WebAssembly loader: import from 'realtime-bridge' or 'realtime-bridge/url'");
  }
  return loader.worker();
}

/** Whether the page's own core is loaded (the page's network events go to it then). */
export function coreLoaded(): boolean {
  return memory !== undefined;
}

/** Diagnostics: bytes of WebAssembly memory in use by the core (0 before the first subscribe). */
export function wasmMemoryBytes(): number {
  return memory?.buffer.byteLength ?? 0;
}


/** `f` (an entry point's `subscribe`) with loader `l` installed first; same signature. */
export function withLoader<F extends (...args: never[]) => unknown>(l: WasmLoader, f: F): F {
  const call = f as unknown as (...a: unknown[]) => unknown;
  const wrapped = (...args: unknown[]) => {
    installLoader(l);
    return call(...args);
  };
  return wrapped as unknown as F;
}
