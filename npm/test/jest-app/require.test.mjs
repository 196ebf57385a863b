// The package from a CommonJS / plain Node consumer (this folder's node_modules link):
// require() of every entry point, no TextDecoder/TextEncoder touched at import (jsdom has
// neither), the .wasm loaded on first use only, and 'use client' on the React entry points.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import assert from 'node:assert/strict';

const appDir = dirname(fileURLToPath(import.meta.url));
const node = (args) => execFileSync(process.execPath, args, { cwd: appDir, encoding: 'utf8' }).trim();

test("node -e \"require('realtime-bridge')\"", () => {
  assert.equal(node(['-e', "require('realtime-bridge')"]), '');
  assert.equal(node(['-p', "typeof require('realtime-bridge').subscribe"]), 'function');
});

test('require() of every entry point without TextDecoder/TextEncoder; the .wasm only on first use', () => {
  const script = `
    delete globalThis.TextDecoder; delete globalThis.TextEncoder;
    const root = require('realtime-bridge');
    const react = require('realtime-bridge/react');
    const testing = require('realtime-bridge/testing');
    const wasm = () => Object.keys(require.cache).filter((f) => /[\\\\/]dist[\\\\/]wasm[\\\\/]/.test(f)).length;
    const before = wasm();
    const rt = testing.createTestRealtime();
    const seen = [];
    rt.subscribe('42', null, (e) => seen.push(e.data));
    rt.emit('42', 'message_new', { content: 'hi' });
    const afterTesting = wasm();
    globalThis.TextDecoder = require('node:util').TextDecoder;
    globalThis.TextEncoder = require('node:util').TextEncoder;
    root.load();
    console.log(JSON.stringify({ before, afterTesting, after: wasm(), memory: root.wasmMemoryBytes() > 0,
      hooks: typeof react.useRealtimeMessages, provider: typeof testing.RealtimeTestProvider }));`;
  assert.deepEqual(JSON.parse(node(['-e', script])), {
    before: 0,
    afterTesting: 0,
    after: 2,
    memory: true,
    hooks: 'function',
    provider: 'function',
  });
});

test('import of every entry point (ES modules) without TextDecoder/TextEncoder', () => {
  const script = `
    delete globalThis.TextDecoder; delete globalThis.TextEncoder;
    const [root, react, testing] = await Promise.all(['realtime-bridge', 'realtime-bridge/react', 'realtime-bridge/testing'].map((m) => import(m)));
    console.log([typeof root.subscribe, typeof react.useRealtimeMessages, typeof testing.createTestRealtime].join(' '));`;
  assert.equal(node(['--input-type=module', '-e', script]), 'function function function');
});

test("'use client' opens the React entry points, in both formats", () => {
  const require = createRequire(`${appDir}/`);
  const files = ['realtime-bridge/react', 'realtime-bridge/testing'].map((m) => require.resolve(m));
  const esm = ['react.js', 'testing.js'].map((f) => new URL(f, `file://${dirname(files[0])}/`));
  assert.deepEqual(files.map((f) => f.split(/[\\/]/).pop()), ['react.cjs', 'testing.cjs']);
  for (const f of [...files, ...esm]) assert.match(readFileSync(f, 'utf8'), /^'use client';\n/, String(f));
  assert.doesNotMatch(readFileSync(require.resolve('realtime-bridge'), 'utf8'), /use client/);
});
