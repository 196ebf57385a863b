#!/usr/bin/env node
// SDK browser benchmark: one Vite-built page in headless Chromium reads the same
// stream of 100,000 events through realtime-bridge's subscribe() and through a native
// EventSource (3 runs each, alternating), and reports events/s for each and their ratio,
// plus the gzipped sizes of the package's .wasm and JS.
//
//   cd npm && node scripts/build.mjs      # npm/dist (the package under test)
//   node npm/test/bench/run.mjs [--quick]  # --quick: 10,000 events, 1 run each
//   node npm/test/bench/run.mjs --paced 2000  # 20,000 events at 2,000/s, 3 runs each
//   node npm/test/bench/run.mjs --paced 200 --readers native,sdk,fetch-pipe  # and a plain
//     JavaScript fetch reader (main.js), what reading through fetch costs at the least
//   node npm/test/bench/run.mjs --paced 200 --chunk-times  # and each reader's synchronous
//     work per chunk (its body sink's write timed; the page cross-origin isolated for 5 us timers)
//   node npm/test/bench/run.mjs --paced 200 --profile sdk  # and where one reader's time goes
//     (DevTools sampling profiler, 100 us: self time per function, ms per 1,000 events; the
//     sampling itself inflates every figure, so compare within one profile)
//
// The burst (default) measures how fast each reader drains a stream that is all there; the
// paced mode serves events at a fixed rate, so both readers keep up, and compares what keeping
// up costs: the page's main-thread busy time (Chrome DevTools Protocol `Performance.getMetrics`,
// TaskDuration and ScriptDuration) per 1,000 events.
//
// Uses ../e2e's node_modules (vite, playwright-core) and Debian's chromium. Loopback only.
// Last line of output: one JSON object with every figure.
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir, loadavg, cpus } from 'node:os';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { chromiumPath, CHROMIUM_ARGS } from '../chromium.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const e2e = join(here, '..', 'e2e');
const npmDir = join(here, '..', '..');
const distPkg = join(npmDir, 'dist');
const pageDist = join(here, 'dist');
const { chromium } = createRequire(join(e2e, 'package.json'))('playwright-core');

const quick = process.argv.includes('--quick');
const pacedAt = process.argv.indexOf('--paced');
const RATE = pacedAt > 0 ? Number(process.argv[pacedAt + 1]) : 0;
if (pacedAt > 0 && !(RATE >= 100 && RATE <= 100_000)) {
  console.error('--paced takes events per second, 100 to 100000');
  process.exit(64);
}
const N = RATE ? Math.round(RATE * (quick ? 2 : 10)) : quick ? 10_000 : 100_000;
const RUNS = quick ? 1 : 3;
/** Paced mode: the readers compared (main.js: native, sdk, sdk-direct, sdk-page, fetch-pipe, fetch-pipe-hwm, fetch-read,
 * fetch-worker, fetch-worker-bytes), native first. */
const readersAt = process.argv.indexOf('--readers');
const READERS = readersAt > 0 ? process.argv[readersAt + 1].split(',') : ['native', 'sdk'];
/** Paced mode: a sampled CPU profile of these readers' runs (self time per function, printed). */
const profileAt = process.argv.indexOf('--profile');
const PROFILE = profileAt > 0 ? process.argv[profileAt + 1].split(',') : null;
/** Paced mode: time every body sink's write (the SDK's included), in a cross-origin isolated
 * page (timers at 5 µs, not 100): each reader's synchronous work per chunk. */
const CHUNK_TIMES = process.argv.includes('--chunk-times');
const RUN_TIMEOUT_MS = RATE ? Math.round((N / RATE) * 1000 * 3 + 10_000) : quick ? 30_000 : 120_000;
/** Paced mode: events are written every TICK_MS, RATE/1000*TICK_MS at a time. */
const TICK_MS = 10;

/** Rejects after ms (every wait is bounded). */
function within(promise, ms, what) {
  let t;
  const timeout = new Promise((_, reject) => {
    t = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(t));
}

// 1. Sizes of the package (what a page downloads), gzip -9 with zlib.
if (!existsSync(join(distPkg, 'index.js'))) {
  console.error('npm/dist is missing: cd npm && node scripts/build.mjs');
  process.exit(1);
}
const gz = (buf) => gzipSync(buf, { level: 9 }).length;
const b64Module = readFileSync(join(distPkg, 'wasm', 'bytes.js'), 'utf8');
const wasmBytes = Buffer.from(JSON.parse(b64Module.slice(b64Module.indexOf('"'), b64Module.lastIndexOf('"') + 1)), 'base64');
new WebAssembly.Module(wasmBytes); // it is the module, not garbage
const jsFiles = ['embedded.js', 'index.js', 'loader.js', 'load-embedded.js', 'tabs.js', 'types.js', join('wasm', 'realtime_bridge_sdk.js')];
const jsBuf = Buffer.concat(jsFiles.map((f) => readFileSync(join(distPkg, f))));
const sizes = {
  wasm_bytes: wasmBytes.length,
  wasm_gzip_bytes: gz(wasmBytes),
  embedded_module_bytes: Buffer.byteLength(b64Module),
  embedded_module_gzip_bytes: gz(Buffer.from(b64Module)),
  js_bytes: jsBuf.length, // the main entry point's modules + wasm-bindgen glue (without the embedded bytes)
  js_gzip_bytes: gz(jsBuf),
};

// 2. The page, built with ../e2e's vite.
const viteBin = join(e2e, 'node_modules', 'vite', 'bin', 'vite.js');
execFileSync(process.execPath, [viteBin, 'build', '--config', join(here, 'vite.config.mjs')], {
  cwd: here,
  stdio: 'inherit',
  timeout: 120_000,
  env: PROFILE ? { ...process.env, RB_BENCH_NO_MINIFY: '1' } : process.env,
});
const assets = readdirSync(join(pageDist, 'assets'));
const pageJs = Buffer.concat(assets.filter((f) => f.endsWith('.js')).map((f) => readFileSync(join(pageDist, 'assets', f))));
sizes.page_bundle_bytes = pageJs.length; // the whole built page (SDK + embedded .wasm + bench code)
sizes.page_bundle_gzip_bytes = gz(pageJs);

// 3. The stream: the bridge's wire format, pre-generated once.
const parts = ['retry: 2000\n\n'];
for (let n = 1; n <= N; n++) {
  parts.push(
    `id: ${n}:0\nevent: bench\ndata: {"id":"${n}","event":"bench","data":{"n":${n}},"timestamp":"2026-11-25T10:00:00.000Z","userId":"42"}\n\n`,
  );
}
const stream = Buffer.from(parts.join(''));
const CHUNK = 256 * 1024;
const cors = {
  'access-control-allow-origin': '*',
  'access-control-allow-headers': 'authorization, accept, last-event-id, cache-control',
  'access-control-allow-methods': 'GET, OPTIONS',
};
let streamsServed = 0;

/** Byte offset where event n (1-based) starts, for the paced mode. */
const offsets = [];
{
  let off = Buffer.byteLength(parts[0]);
  for (let i = 1; i < parts.length; i++) {
    offsets.push(off);
    off += Buffer.byteLength(parts[i]);
  }
  offsets.push(off);
}

async function writePaced(res) {
  res.write(parts[0]);
  const t0 = performance.now();
  let sent = 0;
  while (sent < N && !res.destroyed) {
    // Catch up to rate x elapsed, so timer jitter does not lower the rate.
    const due = Math.min(N, Math.floor(((performance.now() - t0) * RATE) / 1000) + 1);
    if (due > sent) {
      res.write(stream.subarray(offsets[sent], offsets[due]));
      sent = due;
    }
    await new Promise((r) => setTimeout(r, TICK_MS));
  }
}

async function writeStream(res) {
  if (RATE) return writePaced(res);
  for (let off = 0; off < stream.length && !res.destroyed; off += CHUNK) {
    if (!res.write(stream.subarray(off, off + CHUNK))) {
      await new Promise((r) => {
        const done = () => {
          res.off('drain', done);
          res.off('close', done);
          r();
        };
        res.on('drain', done);
        res.on('close', done);
      });
    }
  }
  // Then kept open until the client closes.
}

const types = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css' };
const server = createServer((req, res) => {
  const path = new URL(req.url, 'http://x').pathname;
  if (req.method === 'OPTIONS') {
    res.writeHead(204, cors).end();
    return;
  }
  if (path === '/favicon.ico') {
    res.writeHead(204).end();
    return;
  }
  if (path === '/v1/users/42/events') {
    streamsServed++;
    res.writeHead(200, { ...cors, 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    writeStream(res).catch(() => res.destroy());
    return;
  }
  const file = join(pageDist, path === '/' ? 'index.html' : path);
  if (!file.startsWith(pageDist) || !existsSync(file)) {
    res.writeHead(404, cors).end();
    return;
  }
  // Cross-origin isolated (--chunk-times): performance.now() to 5 µs instead of 100.
  const isolation = CHUNK_TIMES ? { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' } : {};
  res.writeHead(200, { ...cors, ...isolation, 'content-type': types[extname(file)] ?? 'application/octet-stream' });
  res.end(readFileSync(file));
});
await within(new Promise((r) => server.listen(0, '127.0.0.1', r)), 5000, 'listen');
const origin = `http://127.0.0.1:${server.address().port}`;

// 4. Chromium, fresh profile.
const userDataDir = mkdtempSync(join(tmpdir(), 'rb-sdk-bench-chromium-'));
let context;
let result;
const consoleErrors = [];
try {
  context = await within(
    chromium.launchPersistentContext(userDataDir, {
      executablePath: chromiumPath(),
      headless: true,
      timeout: 30_000,
      args: CHROMIUM_ARGS,
    }),
    40_000,
    'chromium launch',
  );
  const page = await context.newPage();
  page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  await page.goto(`${origin}/${CHUNK_TIMES ? '?chunkTimes=1' : ''}`, { timeout: 15_000 });
  await page.waitForFunction(() => typeof window.bench === 'function', null, { timeout: 15_000 });
  if (RATE) {
    result = await paced(page);
  } else {
    result = await within(
      page.evaluate((a) => window.bench(a), { n: N, runs: RUNS, timeoutMs: RUN_TIMEOUT_MS }),
      2 * RUNS * RUN_TIMEOUT_MS + 10_000,
      'benchmark',
    );
  }
} finally {
  await within(context?.close() ?? Promise.resolve(), 15_000, 'chromium close').catch((e) => console.error(String(e)));
  server.closeAllConnections();
  server.close();
  rmSync(userDataDir, { recursive: true, force: true });
}

/** Paced mode: each run of each reader between two readings of the page's main-thread time. */
async function paced(page) {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Performance.enable');
  const metrics = async () => {
    const { metrics: m } = await cdp.send('Performance.getMetrics');
    const get = (name) => m.find((x) => x.name === name)?.value ?? 0;
    return { task: get('TaskDuration'), script: get('ScriptDuration') };
  };
  const runs = Object.fromEntries(READERS.map((r) => [r, []]));
  /** Per profiled reader, self time per function over its runs (µs), by name and place. */
  const self = Object.fromEntries((PROFILE ?? []).map((r) => [r, new Map()]));
  for (let i = 0; i < RUNS; i++) {
    for (const reader of READERS) {
      const profiling = PROFILE?.includes(reader);
      if (profiling) {
        await cdp.send('Profiler.enable');
        await cdp.send('Profiler.setSamplingInterval', { interval: 100 });
        await cdp.send('Profiler.start');
      }
      const before = await metrics();
      const ms = await within(
        page.evaluate((a) => window.runOne(a), { reader, n: N, timeoutMs: RUN_TIMEOUT_MS }),
        RUN_TIMEOUT_MS + 10_000,
        `${reader} run`,
      );
      const after = await metrics();
      if (profiling) addProfile(self[reader], (await cdp.send('Profiler.stop')).profile);
      const chunks = CHUNK_TIMES ? await page.evaluate(() => window.takeChunkTimes()) : null;
      runs[reader].push({
        ms,
        chunks,
        task_ms_per_1000: ((after.task - before.task) * 1e6) / N,
        script_ms_per_1000: ((after.script - before.script) * 1e6) / N,
      });
    }
  }
  const med = (xs) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  };
  for (const [reader, times] of Object.entries(self)) {
    const per1000 = (us) => (us / 1000 / (N * RUNS)) * 1000;
    const busy = [...times.entries()].filter(([k]) => k !== '(idle)').reduce((a, [, b]) => a + b, 0);
    console.log(`\nprofile of ${reader}: self time, ms per 1,000 events (sampled at 100 us; ${per1000(busy).toFixed(1)} busy in all)`);
    for (const [k, us] of [...times.entries()].sort((a, b) => b[1] - a[1]).slice(0, 30)) {
      console.log(`${per1000(us).toFixed(2).padStart(8)}  ${k}`);
    }
  }
  const userAgent = await page.evaluate(() => navigator.userAgent);
  const summary = (r) => ({
    ms: r.map((x) => Number(x.ms.toFixed(1))),
    task_ms_per_1000: Number(med(r.map((x) => x.task_ms_per_1000)).toFixed(3)),
    script_ms_per_1000: Number(med(r.map((x) => x.script_ms_per_1000)).toFixed(3)),
    ...(CHUNK_TIMES && r[0].chunks.calls
      ? {
          chunks_per_run: r.map((x) => x.chunks.calls),
          write_us_per_chunk: Number(med(r.map((x) => (x.chunks.ms * 1000) / x.chunks.calls)).toFixed(1)),
        }
      : {}),
  });
  return { paced: true, ...Object.fromEntries(READERS.map((r) => [r, summary(runs[r])])), userAgent };
}

/** Adds a DevTools CPU profile's self time per function (µs) into `into`. */
function addProfile(into, profile) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const { samples, timeDeltas } = profile;
  for (let i = 0; i < samples.length; i++) {
    const f = byId.get(samples[i]).callFrame;
    const file = f.url ? f.url.slice(f.url.lastIndexOf('/') + 1) : '';
    const key = `${f.functionName || '(anonymous)'}${file ? ` ${file}:${f.lineNumber + 1}` : ''}`;
    // A sample's time is the gap to the next one.
    into.set(key, (into.get(key) ?? 0) + (timeDeltas[i + 1] ?? 0));
  }
}

if (RATE) {
  const { native, sdk } = result;
  const others = READERS.filter((r) => r !== 'native' && r !== 'sdk');
  console.log(`\nSDK vs native EventSource, ${N.toLocaleString('en-US')} events at ${RATE}/s, ${RUNS} run(s) each (median), ${origin}`);
  const label = { native: 'native EventSource', sdk: 'SDK subscribe()', 'sdk-direct': 'SDK, shareAcrossTabs: false', 'sdk-page': 'SDK, worker: false' };
  console.log('| reader | ms per run | main-thread task ms per 1,000 events | script ms per 1,000 events | sink write µs per chunk |');
  console.log('| --- | --- | --- | --- | --- |');
  for (const r of READERS) {
    const x = result[r];
    const name = label[r] ?? `${r} (plain JS, no SDK)`;
    console.log(`| ${name} | ${x.ms.map((m) => m.toFixed(0)).join(', ')} | ${x.task_ms_per_1000} | ${x.script_ms_per_1000} | ${x.write_us_per_chunk ?? ''} |`);
  }
  console.log(
    JSON.stringify({
      bench: 'sdk_browser_paced',
      quick,
      events: N,
      rate: RATE,
      runs: RUNS,
      native,
      ...(sdk ? { sdk } : {}),
      ...Object.fromEntries(others.map((r) => [r, result[r]])),
      ...(sdk ? { task_ratio_sdk_vs_native: Number((sdk.task_ms_per_1000 / native.task_ms_per_1000).toFixed(3)) } : {}),
      ...Object.fromEntries(
        others.map((r) => [`task_ratio_${r.replaceAll('-', '_')}_vs_native`, Number((result[r].task_ms_per_1000 / native.task_ms_per_1000).toFixed(3))]),
      ),
      browser: result.userAgent,
      loadavg: loadavg().map((x) => Number(x.toFixed(2))),
      cpus: cpus().length,
    }),
  );
  process.exit(0);
}

// 5. Report.
const kib = (b) => `${(b / 1024).toFixed(1)} KiB`;
const fmt = (x) => Math.round(x).toLocaleString('en-US');
console.log(`\nSDK vs native EventSource, ${N.toLocaleString('en-US')} events, ${RUNS} run(s) each (median), ${origin}`);
console.log(`| reader | ms per run | events/s (median) |`);
console.log(`| --- | --- | --- |`);
console.log(`| native EventSource | ${result.native_ms.map((m) => m.toFixed(0)).join(', ')} | ${fmt(result.native_events_per_s)} |`);
console.log(`| SDK subscribe() | ${result.sdk_ms.map((m) => m.toFixed(0)).join(', ')} | ${fmt(result.sdk_events_per_s)} |`);
console.log(`ratio sdk/native: ${result.ratio_sdk_vs_native.toFixed(3)} (target >= 1.0: ${result.ratio_sdk_vs_native >= 1 ? 'met' : 'missed'})`);
console.log(`| size | raw | gzip -9 |`);
console.log(`| --- | --- | --- |`);
console.log(`| .wasm | ${kib(sizes.wasm_bytes)} | ${kib(sizes.wasm_gzip_bytes)} (target <= 40 KiB: ${sizes.wasm_gzip_bytes <= 40 * 1024 ? 'met' : 'missed'}) |`);
console.log(`| embedded base64 module | ${kib(sizes.embedded_module_bytes)} | ${kib(sizes.embedded_module_gzip_bytes)} |`);
console.log(`| JS (index + tabs + types + glue) | ${kib(sizes.js_bytes)} | ${kib(sizes.js_gzip_bytes)} |`);
console.log(`| built bench page bundle | ${kib(sizes.page_bundle_bytes)} | ${kib(sizes.page_bundle_gzip_bytes)} |`);
if (consoleErrors.length) console.log(`page console errors: ${consoleErrors.join(' | ')}`);
console.log(
  JSON.stringify({
    bench: 'sdk_browser',
    quick,
    events: N,
    runs: RUNS,
    native_events_per_s: Math.round(result.native_events_per_s),
    sdk_events_per_s: Math.round(result.sdk_events_per_s),
    ratio_sdk_vs_native: Number(result.ratio_sdk_vs_native.toFixed(4)),
    native_ms: result.native_ms.map((m) => Number(m.toFixed(1))),
    sdk_ms: result.sdk_ms.map((m) => Number(m.toFixed(1))),
    target_ratio_met: result.ratio_sdk_vs_native >= 1,
    ...sizes,
    target_wasm_met: sizes.wasm_gzip_bytes <= 40 * 1024,
    streams_served: streamsServed,
    stream_bytes: stream.length,
    browser: result.userAgent,
    loadavg: loadavg().map((x) => Number(x.toFixed(2))),
    cpus: cpus().length,
  }),
);
