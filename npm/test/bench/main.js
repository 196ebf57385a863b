// SDK vs native EventSource: time from start to the n-th event of the same stream
// (served by run.mjs at /v1/users/42/events). Both parse the JSON envelope of every event.
import { load, subscribe } from 'realtime-bridge';

const url = `${location.origin}/v1/users/42/events`;
const out = document.getElementById('out');

/** Resolves with ms from start to the n-th event; rejects after timeoutMs or on a wrong event. */
function runNative(n, timeoutMs) {
  return new Promise((resolve, reject) => {
    let count = 0;
    const t0 = performance.now();
    const es = new EventSource(url);
    const timer = setTimeout(() => {
      es.close();
      reject(new Error(`native: ${count}/${n} events after ${timeoutMs} ms`));
    }, timeoutMs);
    es.addEventListener('bench', (e) => {
      const env = JSON.parse(e.data);
      count++;
      if (env.data.n !== count) {
        clearTimeout(timer);
        es.close();
        reject(new Error(`native: event ${count} carried n=${env.data.n}`));
      } else if (count === n) {
        const ms = performance.now() - t0;
        clearTimeout(timer);
        es.close();
        resolve(ms);
      }
    });
  });
}

function runSdk(n, timeoutMs) {
  return new Promise((resolve, reject) => {
    let count = 0;
    let sub = null;
    let done = false;
    const finish = (fn) => {
      done = true;
      clearTimeout(timer);
      // Close outside the callback (we are inside the core's delivery loop).
      queueMicrotask(() => sub?.close());
      fn();
    };
    const t0 = performance.now();
    const timer = setTimeout(() => finish(() => reject(new Error(`sdk: ${count}/${n} events after ${timeoutMs} ms`))), timeoutMs);
    sub = subscribe(
      '42',
      null,
      (e) => {
        if (done) return;
        count++;
        if (e.data.n !== count) {
          finish(() => reject(new Error(`sdk: event ${count} carried n=${e.data.n}`)));
        } else if (count === n) {
          const ms = performance.now() - t0;
          finish(() => resolve(ms));
        }
      },
      { url: location.origin, token: 'x', onError: (err) => console.error(`sdk error: ${err.message}`) },
    );
  });
}

/**
 * A plain JavaScript SSE reader over fetch (no SDK): the body piped into a sink that decodes,
 * frames and JSON.parses each event (`fetch-pipe`; `fetch-pipe-hwm`: the sink with a
 * high-water mark of 16), or read with a `reader.read()` loop (`fetch-read`). Not a client (no
 * ids, retry, reconnection): what reading a stream through fetch costs the page at the least,
 * to compare the SDK's cost with.
 */
function runFetch(n, timeoutMs, mode) {
  return new Promise((resolve, reject) => {
    let count = 0;
    let buf = '';
    let done = false;
    const ctrl = new AbortController();
    const decoder = new TextDecoder();
    const t0 = performance.now();
    const finish = (err, ms) => {
      done = true;
      clearTimeout(timer);
      ctrl.abort();
      if (err) reject(err);
      else resolve(ms);
    };
    const timer = setTimeout(() => finish(new Error(`${mode}: ${count}/${n} events after ${timeoutMs} ms`)), timeoutMs);
    const write = (chunk) => {
      if (done) return;
      buf += decoder.decode(chunk, { stream: true });
      let end;
      while (!done && (end = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, end);
        buf = buf.slice(end + 2);
        const at = block.indexOf('\ndata: ');
        if (at < 0) continue;
        const env = JSON.parse(block.slice(at + 7));
        count++;
        if (env.data.n !== count) finish(new Error(`${mode}: event ${count} carried n=${env.data.n}`));
        else if (count === n) finish(null, performance.now() - t0);
      }
    };
    fetch(url, { headers: { authorization: 'Bearer x' }, signal: ctrl.signal })
      .then(async (res) => {
        if (mode === 'fetch-pipe') return res.body.pipeTo(new WritableStream({ write }));
        if (mode === 'fetch-pipe-hwm') return res.body.pipeTo(new WritableStream({ write }, { highWaterMark: 16 }));
        const reader = res.body.getReader();
        for (;;) {
          const { value, done: end } = await reader.read();
          if (end) return;
          write(value);
        }
      })
      .catch((e) => done || finish(e));
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** One run of one reader (`native`, `sdk`, or a `fetch-*` one): ms to the n-th event. run.mjs calls this per run
 * in the paced mode, reading the page's main-thread time around it. */
window.runOne = async ({ reader, n, timeoutMs }) => {
  load();
  out.textContent = `${reader}: ${n} events`;
  const ms = await (reader === 'native'
    ? runNative(n, timeoutMs)
    : reader === 'sdk'
      ? runSdk(n, timeoutMs)
      : runFetch(n, timeoutMs, reader));
  await sleep(100);
  return ms;
};

/** runs of each, alternating native / sdk; returns every figure. */
window.bench = async ({ n, runs, timeoutMs }) => {
  load(); // instantiate the .wasm before timing (it is otherwise done by the first subscribe)
  const nativeMs = [];
  const sdkMs = [];
  for (let i = 0; i < runs; i++) {
    out.textContent = `run ${i + 1}/${runs}: native`;
    nativeMs.push(await runNative(n, timeoutMs));
    await sleep(100);
    out.textContent = `run ${i + 1}/${runs}: sdk`;
    sdkMs.push(await runSdk(n, timeoutMs));
    await sleep(100);
  }
  const nativeEps = nativeMs.map((ms) => (n * 1000) / ms);
  const sdkEps = sdkMs.map((ms) => (n * 1000) / ms);
  const result = {
    events: n,
    runs,
    native_ms: nativeMs,
    sdk_ms: sdkMs,
    native_events_per_s: median(nativeEps),
    sdk_events_per_s: median(sdkEps),
    userAgent: navigator.userAgent,
  };
  result.ratio_sdk_vs_native = result.sdk_events_per_s / result.native_events_per_s;
  out.textContent = JSON.stringify(result, null, 2);
  return result;
};
out.textContent = 'ready';
