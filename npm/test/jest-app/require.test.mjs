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
    const url = require('realtime-bridge/url');
    const urlReact = require('realtime-bridge/url/react');
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
      hooks: typeof react.useRealtimeMessages, provider: typeof testing.RealtimeTestProvider,
      url: [typeof url.load, typeof url.subscribe, typeof urlReact.useRealtime].join(' ') }));`;
  assert.deepEqual(JSON.parse(node(['-e', script])), {
    before: 0,
    afterTesting: 0,
    after: 2,
    memory: true,
    hooks: 'function',
    provider: 'function',
    url: 'function function function',
  });
});

test('import of every entry point (ES modules) without TextDecoder/TextEncoder', () => {
  const script = `
    delete globalThis.TextDecoder; delete globalThis.TextEncoder;
    const [root, react, testing, url, urlReact] = await Promise.all(
      ['realtime-bridge', 'realtime-bridge/react', 'realtime-bridge/testing', 'realtime-bridge/url', 'realtime-bridge/url/react'].map((m) => import(m)));
    console.log([typeof root.subscribe, typeof react.useRealtimeMessages, typeof testing.createTestRealtime, typeof url.load, typeof urlReact.useRealtime].join(' '));`;
  assert.equal(node(['--input-type=module', '-e', script]), 'function function function function function');
});

test("'use client' opens the React entry points, in both formats", () => {
  const require = createRequire(`${appDir}/`);
  const entries = ['realtime-bridge/react', 'realtime-bridge/url/react', 'realtime-bridge/testing'];
  const files = entries.map((m) => require.resolve(m));
  const names = files.map((f) => f.split(/[\\/]/).pop());
  assert.deepEqual(names, ['react-embedded.cjs', 'url-react.cjs', 'testing.cjs']);
  // The hooks' own module too (both React entry points re-export it).
  names.push('react.cjs');
  const esm = names.map((f) => new URL(f.replace(/\.cjs$/, '.js'), `file://${dirname(files[0])}/`));
  const cjs = names.map((f) => new URL(f, `file://${dirname(files[0])}/`));
  for (const f of [...cjs, ...esm]) assert.match(readFileSync(f, 'utf8'), /^'use client';\n/, String(f));
  assert.doesNotMatch(readFileSync(require.resolve('realtime-bridge'), 'utf8'), /use client/);
  assert.doesNotMatch(readFileSync(require.resolve('realtime-bridge/url'), 'utf8'), /use client/);
});
