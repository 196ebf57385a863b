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

function runSdk(n, timeoutMs, extra = {}) {
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
      { ...extra, url: location.origin, token: 'x', onError: (err) => console.error(`sdk error: ${err.message}`) },
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
function runFetch(n, timeoutMs, mode, ownBody) {
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
    (ownBody ? Promise.resolve({ body: ownBody }) : fetch(url, { headers: { authorization: 'Bearer x' }, signal: ctrl.signal }))
      .then(async (res) => {
        if (mode === 'fetch-worker-bytes') return res.body.pipeTo(new WritableStream({ write }), { signal: ctrl.signal });
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

/**
 * `?chunkTimes=1` (run.mjs --chunk-times): every WritableStream sink's `write` is timed, the
 * SDK's too (its body is piped into one): the synchronous work each reader does per chunk.
 */
const chunkTimes = { calls: 0, ms: 0 };
if (new URLSearchParams(location.search).has('chunkTimes')) {
  const Native = WritableStream;
  window.WritableStream = function WritableStream(sink, strategy) {
    const write = sink.write;
    const timed = {
      ...sink,
      write(chunk, controller) {
        const t = performance.now();
        try {
          return write.call(sink, chunk, controller);
        } finally {
          chunkTimes.ms += performance.now() - t;
          chunkTimes.calls++;
        }
      },
    };
    return new Native(timed, strategy);
  };
}
/** The sinks' write calls and their time since the last call (run.mjs reads it after each run). */
window.takeChunkTimes = () => {
  const out = { ...chunkTimes };
  chunkTimes.calls = 0;
  chunkTimes.ms = 0;
  return out;
};

/**
 * The plain reader of runFetch moved into a dedicated worker (`fetch-worker`): the worker
 * fetches, frames and parses; the page gets each chunk's envelopes in one message. Not the
 * SDK either: what the page's main thread would still pay if a client read the stream off it.
 */
const WORKER_SOURCE = `
onmessage = async ({ data: { url, bytes } }) => {
  const decoder = new TextDecoder();
  let buf = '';
  const res = await fetch(url, { headers: { authorization: 'Bearer x' } });
  await res.body.pipeTo(new WritableStream({
    write(chunk) {
      if (bytes) return postMessage(chunk, [chunk.buffer]);
      buf += decoder.decode(chunk, { stream: true });
      const out = [];
      let end;
      while ((end = buf.indexOf('\\n\\n')) >= 0) {
        const block = buf.slice(0, end);
        buf = buf.slice(end + 2);
        const at = block.indexOf('\\ndata: ');
        if (at >= 0) out.push(JSON.parse(block.slice(at + 7)));
      }
      if (out.length) postMessage(out);
    },
  }));
};`;

function runWorker(n, timeoutMs) {
  return new Promise((resolve, reject) => {
    const worker = new Worker(workerUrl());
    let count = 0;
    const t0 = performance.now();
    const finish = (err, ms) => {
      clearTimeout(timer);
      worker.terminate();
      if (err) reject(err);
      else resolve(ms);
    };
    const timer = setTimeout(() => finish(new Error(`fetch-worker: ${count}/${n} events after ${timeoutMs} ms`)), timeoutMs);
    worker.onmessage = ({ data }) => {
      for (const env of data) {
        count++;
        if (env.data.n !== count) return finish(new Error(`fetch-worker: event ${count} carried n=${env.data.n}`));
        if (count === n) return finish(null, performance.now() - t0);
      }
    };
    worker.postMessage({ url, bytes: false });
  });
}

let workerBlobUrl;
const workerUrl = () => (workerBlobUrl ??= URL.createObjectURL(new Blob([WORKER_SOURCE], { type: 'text/javascript' })));

/**
 * `fetch-worker-bytes`: the worker only fetches and hands each chunk over (transferred); the
 * page feeds them into a ReadableStream of its own and reads that as runFetch's `fetch-pipe`
 * reads a body. What a client keeping its parser on the main thread, with only the network
 * read moved off it, would cost.
 */
function runWorkerBytes(n, timeoutMs) {
  const worker = new Worker(workerUrl());
  let controller;
  const body = new ReadableStream({ start: (c) => (controller = c) });
  worker.onmessage = ({ data }) => controller.enqueue(data);
  worker.postMessage({ url, bytes: true });
  return runFetch(n, timeoutMs, 'fetch-worker-bytes', body).finally(() => worker.terminate());
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** One run of one reader (`native`, `sdk`, `sdk-direct`, `sdk-page`, or a `fetch-*` one): ms to the n-th event. run.mjs calls this per run
 * in the paced mode, reading the page's main-thread time around it. */
window.runOne = async ({ reader, n, timeoutMs }) => {
  load();
  out.textContent = `${reader}: ${n} events`;
  const readers = {
    native: () => runNative(n, timeoutMs),
    sdk: () => runSdk(n, timeoutMs),
    // The SDK without its one-stream-per-browser layer (tabs.ts): what that layer costs.
    'sdk-direct': () => runSdk(n, timeoutMs, { shareAcrossTabs: false }),
    'sdk-page': () => runSdk(n, timeoutMs, { worker: false }),
    'fetch-worker': () => runWorker(n, timeoutMs),
    'fetch-worker-bytes': () => runWorkerBytes(n, timeoutMs),
  };
  const ms = await (readers[reader] ?? (() => runFetch(n, timeoutMs, reader)))();
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
