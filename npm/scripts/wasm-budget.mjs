// The size budget of the SDK's .wasm, gzipped (npm/README.md: about 39 KiB; the budget 40 KiB).
// Shared by the build, which refuses to finish over it, and test/node/wasm-size.test.mjs,
// which checks the package as built.
import { gzipSync } from 'node:zlib';

export const WASM_GZIP_BUDGET = 40 * 1024; // 40,960 bytes

/** Gzipped size at level 9 (what a server serving the file pre-compressed sends). */
export function gzippedSize(bytes) {
  return gzipSync(bytes, { level: 9 }).length;
}
