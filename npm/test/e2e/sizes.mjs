// What the package costs in a real bundle: Vite builds (production, this folder's Vite and
// React) of small pages, gzip -9 of what they emit. The React pages are the same component
// without the package, with the hooks of realtime-bridge/react (the .wasm embedded in the
// JavaScript) and with those of realtime-bridge/url/react (the .wasm as a separate file); the
// package's share is the difference with the first; the .wasm and realtime-bridge/url's worker
// script are separate files, shown apart. Run after building the package:
//   node sizes.mjs            prints a table
//   node sizes.mjs --json     prints the numbers as JSON
import { build } from 'vite';
import react from '@vitejs/plugin-react';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, dirname, extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const here = dirname(fileURLToPath(import.meta.url));
const work = join(here, '.sizes');

const page = (imports, body) => `import { StrictMode, useState } from 'react';
import { createRoot } from 'react-dom/client';
${imports}
function App() {
  const [n, setN] = useState(0);
${body}
  return <p onClick={() => setN(n + 1)}>{n} {status}</p>;
}
createRoot(document.getElementById('root')).render(<StrictMode><App /></StrictMode>);
`;

const variants = {
  react: page('', "  const status = 'none';"),
  'react + realtime-bridge/react': page(
    "import { useRealtime } from 'realtime-bridge/react';",
    "  const { status } = useRealtime({ userId: '42', events: ['message_new'] });",
  ),
  'react + realtime-bridge/url/react': page(
    "import { useRealtime } from 'realtime-bridge/url/react';",
    "  const { status } = useRealtime({ userId: '42', events: ['message_new'] });",
  ),
  'realtime-bridge (subscribe only)': "import { subscribe } from 'realtime-bridge';\nsubscribe('42', null, console.log);\n",
  'realtime-bridge/url (subscribe only)': "import { subscribe } from 'realtime-bridge/url';\nsubscribe('42', null, console.log);\n",
};

const gz = (b) => gzipSync(b, { level: 9 }).length;

async function measure(name, source) {
  const dir = join(work, name.replace(/[^a-z]+/gi, '-'));
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'main.jsx'), source);
  writeFileSync(join(dir, 'index.html'), '<!doctype html><div id="root"></div><script type="module" src="./main.jsx"></script>\n');
  await build({
    configFile: false,
    root: dir,
    base: './',
    logLevel: 'error',
    plugins: [react()],
    resolve: { dedupe: ['react', 'react-dom'] },
    build: { outDir: join(dir, 'dist'), emptyOutDir: true },
  });
  const assets = join(dir, 'dist', 'assets');
  const out = { js: 0, jsRaw: 0, wasm: 0, wasmRaw: 0, worker: 0, workerRaw: 0 };
  for (const f of readdirSync(assets)) {
    const b = readFileSync(join(assets, f));
    // realtime-bridge/url's worker script: a file of its own, loaded by the worker, not the page.
    if (/^realtime_bridge_worker.*\.js$/.test(f)) {
      out.worker += gz(b);
      out.workerRaw += b.length;
    } else if (extname(f) === '.js') {
      out.js += gz(b);
      out.jsRaw += b.length;
    } else if (extname(f) === '.wasm') {
      out.wasm += gz(b);
      out.wasmRaw += b.length;
    }
  }
  return out;
}

const results = {};
for (const [name, source] of Object.entries(variants)) results[name] = await measure(name, source);
rmSync(work, { recursive: true, force: true });

if (process.argv.includes('--json')) {
  console.log(JSON.stringify(results, null, 2));
} else {
  const base = results.react.js;
  const kb = (n) => `${(n / 1000).toFixed(1)} kB`;
  console.log('page                                     JS gzip    (package share)   separate .wasm gzip   separate worker script gzip');
  for (const [name, r] of Object.entries(results)) {
    const share = name.startsWith('react +') ? `+${kb(r.js - base)}` : name === 'react' ? '' : kb(r.js);
    console.log(`${name.padEnd(40)} ${kb(r.js).padStart(9)}   ${share.padStart(14)}   ${(r.wasm ? kb(r.wasm) : '-').padStart(19)}   ${r.worker ? kb(r.worker) : '-'}`);
  }
}
