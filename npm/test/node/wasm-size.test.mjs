// The .wasm the package ships (embedded in dist/wasm/bytes.js, and as dist/wasm/*.wasm for
// realtime-bridge/url) stays within its gzipped size budget: the figure npm/README.md gives must
// hold for what is built, not only at build time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { wasmBase64 } from '../../dist/wasm/bytes.js';
import { WASM_GZIP_BUDGET, gzippedSize } from '../../scripts/wasm-budget.mjs';

test('the gzipped .wasm is within its budget', () => {
  const bytes = Buffer.from(wasmBase64, 'base64');
  assert.ok(WebAssembly.validate(bytes), 'a valid WebAssembly module');
  const gz = gzippedSize(bytes);
  console.log(`sdk-wasm-size: ${bytes.length} bytes, gzip ${gz} bytes (budget ${WASM_GZIP_BUDGET})`);
  assert.ok(gz <= WASM_GZIP_BUDGET, `the gzipped .wasm is ${gz} bytes, over the budget of ${WASM_GZIP_BUDGET}`);
});

test('realtime-bridge/url ships the same .wasm as a file', () => {
  const file = readFileSync(new URL('../../dist/wasm/realtime_bridge_sdk_bg.wasm', import.meta.url));
  assert.ok(Buffer.from(wasmBase64, 'base64').equals(file), 'dist/wasm/realtime_bridge_sdk_bg.wasm differs from the embedded bytes');
});
