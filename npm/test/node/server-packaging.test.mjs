// How realtime-bridge/server is packaged: CommonJS require() works (and publishes), the browser
// entry points never reach `nats` or the server module (in dist/, ES modules and CommonJS), and
// a Vite browser build resolves realtime-bridge/server to the stub that throws.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { connect } from 'nats';
import { waitFor } from '../helpers.mjs';
import { startNatsServer } from '../server-helpers.mjs';

const npmDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const pkg = JSON.parse(readFileSync(join(npmDir, 'package.json'), 'utf8'));
const run = promisify(execFile);
const cleanups = [];
after(async () => {
  while (cleanups.length) await cleanups.pop()().catch(() => {});
});

test("require('realtime-bridge/server') (CommonJS): its own copy, it publishes and asks presence", { timeout: 30000 }, async () => {
  const nats = await startNatsServer({ jetstream: false });
  cleanups.push(() => nats.stop());
  const nc = await connect({ servers: nats.url });
  cleanups.push(() => nc.close());
  const got = [];
  nc.subscribe('user.cjs.*', { callback: (_, m) => got.push([m.subject, m.string()]) });
  await nc.flush();
  const script = `
    const server = require('realtime-bridge/server');
    const { RealtimeService, RealtimeServiceError, isRealtimeServiceError } = server;
    (async () => {
      const rt = await RealtimeService.connect({ servers: process.argv[1] });
      await rt.sendEventToUser('cjs', 'hello', { from: 'require' });
      await rt.flush();
      const presence = await rt.getPresence('cjs').catch((e) => [e instanceof RealtimeServiceError, isRealtimeServiceError(e), e.code]);
      const bad = await rt.sendEventToUser('a.b', 'x', 1).catch((e) => e.code);
      await rt.close();
      console.log(JSON.stringify({ file: require.resolve('realtime-bridge/server').split(/[\\\\/]/).pop(), mode: rt.mode, presence, bad,
        exports: Object.keys(server).sort() }));
    })().catch((e) => { console.error(e); process.exit(1); });`;
  // Run from the package's folder: the package resolves itself by name (self-reference).
  const { stdout } = await run(process.execPath, ['-e', script, nats.url], { cwd: npmDir, timeout: 20000 });
  assert.deepEqual(JSON.parse(stdout), {
    file: 'server.cjs',
    mode: 'core',
    presence: [true, true, 'no_bridge'],
    bad: 'invalid_user_id',
    exports: ['RealtimeService', 'RealtimeServiceError', 'isRealtimeServiceError'],
  });
  await waitFor(() => got.length === 1, { what: 'the CommonJS send' });
  assert.deepEqual(got, [['user.cjs.hello', '{"from":"require"}']]);
});

/** Every file a dist module reaches through relative imports/requires, and its bare specifiers. */
function graph(entry) {
  const files = new Set();
  const bare = new Set();
  const todo = [entry];
  while (todo.length) {
    const f = todo.pop();
    if (files.has(f)) continue;
    files.add(f);
    // Comment lines left out: doc comments show imports too.
    const code = readFileSync(f, 'utf8')
      .split('\n')
      .filter((l) => !/^\s*(\*|\/\/|\/\*)/.test(l))
      .join('\n');
    for (const m of code.matchAll(/(?:^(?:import|export)\b[^'"\n]*?\bfrom\s*|^import\s*|\bimport\s*\(\s*|\brequire\s*\(\s*)(['"])([^'"]+)\1/gm)) {
      const spec = m[2];
      if (spec.startsWith('.')) todo.push(resolve(dirname(f), spec));
      else bare.add(spec);
    }
  }
  return { files: [...files], bare: [...bare] };
}

test('the browser entry points (ES modules and CommonJS) reach neither nats nor the server module', () => {
  const entries = Object.entries(pkg.exports).filter(([k]) => k !== './server' && k !== './package.json');
  assert.deepEqual(entries.map(([k]) => k), ['.', './react', './url', './url/react', './testing']);
  for (const [name, cond] of entries) {
    for (const kind of ['import', 'require']) {
      const { files, bare } = graph(join(npmDir, cond[kind].default));
      assert.ok(files.length > 1, `${name} (${kind}): a graph was read`);
      assert.deepEqual(bare.filter((s) => !/^(react|react\/jsx-runtime|node:.*)$/.test(s)), [], `${name} (${kind}) imports ${bare}`);
      for (const f of files) {
        assert.doesNotMatch(f, /[\\/]server[^\\/]*$/, `${name} (${kind}) reaches ${f}`);
        assert.doesNotMatch(readFileSync(f, 'utf8'), /['"]nats['"]/, `${f} names nats`);
      }
    }
  }
  // And the other way: the server module is what imports nats, both formats, with no .wasm.
  for (const f of ['dist/server.js', 'dist/server.cjs']) {
    const { files, bare } = graph(join(npmDir, f));
    assert.deepEqual(bare, ['nats'], f);
    assert.ok(files.every((x) => !x.includes(`${join('dist', 'wasm')}`)), `${f} reaches the .wasm`);
  }
  assert.equal(pkg.peerDependencies.nats, '^2.29.0');
  assert.deepEqual(pkg.peerDependenciesMeta.nats, { optional: true });
  assert.equal(pkg.exports['./server'].browser.default, './dist/server-browser.js');
});

test('a Vite browser build: the page entries bundle no nats; realtime-bridge/server becomes a module that throws', { timeout: 120000 }, async () => {
  const { build } = await import('vite');
  const dir = mkdtempSync(join(tmpdir(), 'rb-server-vite-'));
  cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'node_modules'));
  symlinkSync(npmDir, join(dir, 'node_modules', 'realtime-bridge'), 'dir');
  writeFileSync(
    join(dir, 'page.js'),
    `import { subscribe } from 'realtime-bridge';\nimport { useRealtime } from 'realtime-bridge/react';\nimport { load } from 'realtime-bridge/url';\nimport { createTestRealtime } from 'realtime-bridge/testing';\nwindow.used = [subscribe, useRealtime, load, createTestRealtime];\n`,
  );
  writeFileSync(join(dir, 'wrong.js'), `import { RealtimeService } from 'realtime-bridge/server';\nwindow.used = RealtimeService;\n`);
  const out = {};
  for (const name of ['page', 'wrong']) {
    const outDir = join(dir, `dist-${name}`);
    await build({
      root: dir,
      configFile: false,
      logLevel: 'silent',
      build: { outDir, minify: false, lib: { entry: join(dir, `${name}.js`), formats: ['es'], fileName: name } },
    });
    out[name] = readdirSync(outDir, { recursive: true })
      .filter((f) => /\.m?js$/.test(f))
      .map((f) => readFileSync(join(outDir, f), 'utf8'))
      .join('\n');
  }
  for (const [name, code] of Object.entries(out)) {
    assert.doesNotMatch(code, /\bnats\b|NatsConnection|\$JS\.API/, `${name}: the bundle holds nats`);
  }
  assert.match(out.page, /subscribe/);
  assert.doesNotMatch(out.page, /realtime-bridge\/server runs in Node only/);
  assert.match(out.wrong, /realtime-bridge\/server runs in Node only/);
});
