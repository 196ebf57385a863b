#!/usr/bin/env node
// Builds the npm package from ../sdk-wasm, offline:
//   1. wasm-pack build --mode no-install --target web (wasm-bindgen-cli from PATH, at the
//      Cargo.lock version; size-optimised cargo profile through CARGO_PROFILE_RELEASE_*)
//   2. wasm-opt -Oz from npm binaryen@132 (never Debian's binaryen 108)
//   3. the .wasm embedded as base64 in a generated module (initSync: Node, Vite, webpack
//      without plugins or top-level await: the `realtime-bridge` and `/react` entry points),
//      and shipped as a file, with a module that finds it by `new URL(.., import.meta.url)`
//      (`realtime-bridge/url` and `/url/react`)
//   4. tsc: the TypeScript layer -> dist/ (ES modules, .js + .d.ts), then a CommonJS copy
//      (.cjs + .d.cts: the package's "require" condition, for Jest and require()), with
//      'use client' at the top of the React entry points (Next.js App Router)
// and prints the sizes; it fails when the gzipped .wasm is over its budget (scripts/wasm-budget.mjs).
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { buildSync } from 'esbuild';
import { WASM_GZIP_BUDGET, gzippedSize } from './wasm-budget.mjs';

const npmDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const crateDir = join(npmDir, '..', 'sdk-wasm');
const rootDir = join(npmDir, '..');
const pkgDir = join(npmDir, 'pkg');
const genDir = join(npmDir, 'src', 'wasm');
const distDir = join(npmDir, 'dist');
const name = 'realtime_bridge_sdk';

function run(cmd, args, opts = {}) {
  console.log(`[build] ${cmd} ${args.join(' ')}`);
  execFileSync(cmd, args, { stdio: 'inherit', ...opts });
}

function lockedVersion(crate) {
  const lock = readFileSync(join(rootDir, 'Cargo.lock'), 'utf8');
  const m = lock.match(new RegExp(`name = "${crate}"\\nversion = "([^"]+)"`));
  return m?.[1];
}

// 0. Tools: wasm-bindgen must match Cargo.lock exactly, or wasm-pack would try to download it.
const want = lockedVersion('wasm-bindgen');
let have = '';
try {
  have = execFileSync('wasm-bindgen', ['--version'], { encoding: 'utf8' }).trim().split(/\s+/)[1];
} catch {
  /* missing */
}
if (have !== want) {
  console.error(`[build] wasm-bindgen ${want} is needed on PATH (found: ${have || 'none'}); run scripts/setup-sdk.sh`);
  process.exit(1);
}
const wasmOpt = join(npmDir, 'node_modules', '.bin', 'wasm-opt');
if (!existsSync(wasmOpt)) {
  console.error('[build] npm binaryen@132 is missing (npm ci in npm/); run scripts/setup-sdk.sh');
  process.exit(1);
}

// 1. wasm-pack. Size-first profile for this build only (the workspace's release profile
//    serves the server); the wasm32 target has its own target dir, so nothing else rebuilds.
const env = {
  ...process.env,
  CARGO_PROFILE_RELEASE_OPT_LEVEL: 'z',
  CARGO_PROFILE_RELEASE_LTO: 'fat',
  CARGO_PROFILE_RELEASE_CODEGEN_UNITS: '1',
  CARGO_PROFILE_RELEASE_PANIC: 'abort',
  CARGO_PROFILE_RELEASE_DEBUG: 'false',
  CARGO_PROFILE_RELEASE_INCREMENTAL: 'false',
};
rmSync(pkgDir, { recursive: true, force: true });
run(
  'wasm-pack',
  ['build', crateDir, '--release', '--target', 'web', '--mode', 'no-install', '--no-pack', '--out-dir', pkgDir, '--out-name', name],
  { env },
);

// 2. wasm-opt (features: what rustc enables by default for wasm32-unknown-unknown).
const rawWasm = join(pkgDir, `${name}_bg.wasm`);
const optWasm = join(pkgDir, `${name}_bg.opt.wasm`);
run(wasmOpt, [
  '-Oz',
  '--enable-bulk-memory',
  '--enable-nontrapping-float-to-int',
  '--enable-sign-ext',
  '--enable-mutable-globals',
  '--enable-reference-types',
  '--enable-multivalue',
  // RB_SDK_KEEP_NAMES=1: function names kept, for a profile (npm/test/bench/run.mjs --profile);
  // never for the package (the name section is a few KB).
  ...(process.env.RB_SDK_KEEP_NAMES ? ['-g'] : ['--strip-debug']),
  '--strip-producers',
  rawWasm,
  '-o',
  optWasm,
]);
const bytes = readFileSync(optWasm);
// Validate before shipping: a module that does not compile must fail the build, not the browser.
new WebAssembly.Module(bytes);

// 3. Generated modules: the glue (without its fetch-by-URL loader, which bundlers would try
//    to resolve as an asset) and the embedded bytes.
rmSync(genDir, { recursive: true, force: true });
mkdirSync(genDir, { recursive: true });
let glue = readFileSync(join(pkgDir, `${name}.js`), 'utf8');
const urlLoader = /\n\s*if \(module_or_path === undefined\) \{\n\s*module_or_path = new URL\('[^']+', import\.meta\.url\);\n\s*\}/;
if (!urlLoader.test(glue)) {
  console.error('[build] unexpected wasm-bindgen glue: the default .wasm URL loader was not found');
  process.exit(1);
}
glue = glue.replace(
  urlLoader,
  "\n    if (module_or_path === undefined) {\n        throw new Error('realtime-bridge: the .wasm is embedded; use initSync');\n    }",
);
if (glue.includes('import.meta')) {
  console.error('[build] the glue still refers to import.meta');
  process.exit(1);
}
// No TextDecoder / TextEncoder at module scope (jsdom has neither): created on first use.
const textCodecs = /\nlet cachedTextDecoder = new TextDecoder\([\s\S]*?\n(?=let WASM_VECTOR_LEN = 0;)/;
if (!textCodecs.test(glue)) {
  console.error('[build] unexpected wasm-bindgen glue: the module-scope TextDecoder/TextEncoder block was not found');
  process.exit(1);
}
glue = glue.replace(
  textCodecs,
  `
// realtime-bridge: TextDecoder and TextEncoder are created on first use, not at import.
let cachedTextDecoder = null;
const MAX_SAFARI_DECODE_BYTES = 2146435072;
let numBytesDecoded = 0;
function decodeText(bytes) {
    numBytesDecoded += bytes.length;
    if (cachedTextDecoder === null || numBytesDecoded >= MAX_SAFARI_DECODE_BYTES) {
        cachedTextDecoder = new TextDecoder('utf-8', { ignoreBOM: true });
        cachedTextDecoder.decode();
        numBytesDecoded = bytes.length;
    }
    return cachedTextDecoder.decode(bytes);
}

let realTextEncoder = null;
function textEncoder() {
    if (realTextEncoder === null) {
        realTextEncoder = new TextEncoder();
        if (!('encodeInto' in realTextEncoder)) {
            realTextEncoder.encodeInto = function (arg, view) {
                const buf = realTextEncoder.encode(arg);
                view.set(buf);
                return { read: arg.length, written: buf.length };
            };
        }
    }
    return realTextEncoder;
}
const cachedTextEncoder = {
    encode: (arg) => textEncoder().encode(arg),
    encodeInto: (arg, view) => textEncoder().encodeInto(arg, view),
};

`,
);
if (/^(let|const|var) \w+ = new Text(De|En)coder/m.test(glue) || /^\w+\.(decode|encode)/m.test(glue)) {
  console.error('[build] the glue still creates a TextDecoder/TextEncoder at import');
  process.exit(1);
}
writeFileSync(join(genDir, `${name}.js`), glue);
copyFileSync(join(pkgDir, `${name}.d.ts`), join(genDir, `${name}.d.ts`));
const b64 = bytes.toString('base64');
writeFileSync(
  join(genDir, 'bytes.js'),
  `// Generated by scripts/build.mjs: the optimised ${name}.wasm (${bytes.length} bytes), base64.\nexport const wasmBase64 = ${JSON.stringify(b64)};\n`,
);
writeFileSync(join(genDir, 'bytes.d.ts'), 'export declare const wasmBase64: string;\n');
// The .wasm as a file, and where it is: the literal `new URL('./x.wasm', import.meta.url)` is
// what bundlers recognise and emit as an asset. (CommonJS: a file URL next to the module.)
copyFileSync(optWasm, join(genDir, `${name}_bg.wasm`));
writeFileSync(
  join(genDir, 'url.js'),
  `// Generated by scripts/build.mjs: the URL of the optimised ${name}.wasm, next to this module,
// and the core's worker started from its file next to it (same origin: a CSP's 'self' allows
// it; bundlers see the literal pattern and emit the file).
export function wasmUrl() {
  return new URL('./${name}_bg.wasm', import.meta.url);
}
export function startWorker() {
  return new Worker(new URL('./realtime_bridge_worker.js', import.meta.url), { name: 'realtime-bridge' });
}
`,
);
writeFileSync(join(genDir, 'url.d.ts'), 'export declare function wasmUrl(): URL;\nexport declare function startWorker(): Worker;\n');

// 3b. The core's worker (src/worker.ts with the glue and what it imports): one minified classic
//     script, as a string the page starts from a Blob (worker-host.ts). A string, not a file:
//     no bundler has to find or emit it, and the embedded entry needs no asset at all.
const workerBundle = buildSync({
  entryPoints: [join(npmDir, 'src', 'worker.ts')],
  bundle: true,
  write: false,
  format: 'iife',
  platform: 'browser',
  target: 'es2020',
  minify: !process.env.RB_BENCH_NO_MINIFY,
  legalComments: 'none',
  logLevel: 'warning',
});
const workerCode = workerBundle.outputFiles[0].text;
if (workerCode.includes('import.meta') || /\bimport\(/.test(workerCode)) {
  console.error('[build] the worker script refers to import.meta or imports a module');
  process.exit(1);
}
writeFileSync(
  join(genDir, 'worker-source.js'),
  `// Generated by scripts/build.mjs: the core's worker (src/worker.ts, bundled with the glue).\nexport const workerSource = ${JSON.stringify(workerCode)};\n`,
);
writeFileSync(join(genDir, 'worker-source.d.ts'), 'export declare const workerSource: string;\n');
// The same script as a file, for realtime-bridge/url (wasm/url.js starts it by URL).
writeFileSync(join(genDir, 'realtime_bridge_worker.js'), workerCode);

// 4. TypeScript layer: ES modules.
const tsc = join(npmDir, 'node_modules', '.bin', 'tsc');
rmSync(distDir, { recursive: true, force: true });
run(tsc, ['-p', join(npmDir, 'tsconfig.json')]);
// The worker's source is in wasm/worker-source.js; its modules are not the package's.
for (const f of ['worker.js', 'worker.d.ts']) rmSync(join(distDir, f), { force: true });
mkdirSync(join(distDir, 'wasm'), { recursive: true });
for (const f of readdirSync(genDir)) copyFileSync(join(genDir, f), join(distDir, 'wasm', f));

// 4b. CommonJS copy (the "require" condition): tsc again, into pkg/cjs, renamed to .cjs.
//     The glue and the embedded bytes are required on first use (load()), not at import:
//     require('realtime-bridge/testing') never loads the .wasm.
const cjsDir = join(pkgDir, 'cjs');
run(tsc, [
  '-p', join(npmDir, 'tsconfig.json'),
  '--module', 'commonjs', '--moduleResolution', 'node10', '--verbatimModuleSyntax', 'false',
  '--declaration', 'false', '--outDir', cjsDir,
]);
const toCjsSpecifiers = (code) => code.replace(/(require\(|from |import\()(['"])(\.\.?\/[^'"]+)\.js\2/g, '$1$2$3.cjs$2');
// The modules that require ./wasm/, and how many requires each: all made lazy.
const wasmRequires = { 'index.js': 1, 'load-embedded.js': 3, 'load-url.js': 2 };
for (const f of readdirSync(cjsDir)) {
  if (!f.endsWith('.js') || f === 'worker.js') continue;
  let code = toCjsSpecifiers(readFileSync(join(cjsDir, f), 'utf8'));
  let lazy = 0;
  // (`import { default as x }` comes out as __importDefault(require(..)): the proxy's `default`
  // is the glue's own, which is what it means.)
  code = code.replace(/^const (\w+) = (?:__importDefault\()?require\("(\.\/wasm\/[^"]+\.cjs)"\)\)?;$/gm, (_, id, path) => {
    lazy++;
    return `let ${id}_loaded;\nconst ${id} = new Proxy({}, { get: (_, key) => (${id}_loaded ??= require("${path}"))[key] });`;
  });
  if (lazy !== (wasmRequires[f] ?? 0) || /require\("\.\/wasm\//.test(code.replace(/\?\?= require\("\.\/wasm\//g, ''))) {
    console.error(`[build] CommonJS ${f}: expected ${wasmRequires[f] ?? 0} requires of ./wasm/ to make lazy, found ${lazy}`);
    process.exit(1);
  }
  writeFileSync(join(distDir, f.replace(/\.js$/, '.cjs')), code);
}
// The glue and bytes modules are plain ES modules: exports -> CommonJS exports.
function esmToCjs(code, file) {
  const names = [];
  code = code.replace(/^export (class|function|const|let) (\w+)/gm, (_, kw, id) => {
    names.push([id, id]);
    return `${kw} ${id}`;
  });
  code = code.replace(/^export \{([^}]*)\};?$/gm, (_, list) => {
    for (const part of list.split(',')) {
      const [local, exported = local] = part.trim().split(/\s+as\s+/);
      names.push([local, exported]);
    }
    return '';
  });
  if (/^\s*(import|export)\b/m.test(code)) {
    console.error(`[build] ${file}: ES module syntax left after the CommonJS conversion`);
    process.exit(1);
  }
  return `"use strict";\n${code}\n${names.map(([l, e]) => `exports.${e} = ${l};`).join('\n')}\n`;
}
for (const f of readdirSync(genDir)) {
  if (f.endsWith('.js') && f !== 'url.js' && f !== 'realtime_bridge_worker.js') {
    writeFileSync(join(distDir, 'wasm', f.replace(/\.js$/, '.cjs')), esmToCjs(readFileSync(join(genDir, f), 'utf8'), f));
  }
}
writeFileSync(
  join(distDir, 'wasm', 'url.cjs'),
  `"use strict";\nexports.wasmUrl = () => require("node:url").pathToFileURL(require("node:path").join(__dirname, "${name}_bg.wasm"));\n` +
    // CommonJS runs in Node (no worker there); were it bundled for a page, the page's core runs.
    `exports.startWorker = () => { throw new Error("realtime-bridge: no worker file in the CommonJS build"); };\n`,
);
// Declarations for the require condition (.d.cts: TypeScript's node16/nodenext resolution
// must see CommonJS types there, not the ES module ones).
for (const dir of [distDir, join(distDir, 'wasm')]) {
  for (const f of readdirSync(dir)) {
    if (f.endsWith('.d.ts')) writeFileSync(join(dir, f.replace(/\.d\.ts$/, '.d.cts')), toCjsSpecifiers(readFileSync(join(dir, f), 'utf8')));
  }
}

// 4c. 'use client' at the top of the React entry points, both formats (Next.js App Router:
//     they create a React context at import, which React Server Components cannot).
for (const f of ['react.js', 'react-embedded.js', 'url-react.js', 'testing.js'].flatMap((f) => [f, f.replace(/\.js$/, '.cjs')])) {
  const file = join(distDir, f);
  const code = readFileSync(file, 'utf8');
  if (!/^['"]use client['"]/.test(code)) writeFileSync(file, `'use client';\n${code}`);
}

// Sizes.
const kib = (n) => `${(n / 1024).toFixed(1)} KiB`;
const gz = (b) => gzipSync(b, { level: 9 }).length;
const raw = readFileSync(rawWasm);
const bytesModule = readFileSync(join(distDir, 'wasm', 'bytes.js'));
const glueOut = readFileSync(join(distDir, 'wasm', `${name}.js`));
console.log(`[build] wasm (wasm-bindgen output): ${kib(raw.length)}, gzip ${kib(gz(raw))}`);
console.log(`[build] wasm (wasm-opt -Oz):        ${kib(bytes.length)}, gzip ${kib(gz(bytes))}`);
console.log(`[build] embedded base64 module:     ${kib(bytesModule.length)}, gzip ${kib(gz(bytesModule))}`);
console.log(`[build] JS glue:                    ${kib(glueOut.length)}, gzip ${kib(gz(glueOut))}`);
console.log(`[build] worker script (string):     ${kib(workerCode.length)}, gzip ${kib(gz(Buffer.from(workerCode)))}`);
// What each way of loading puts in a bundle besides the TypeScript layer: the glue plus the
// base64 (realtime-bridge), or the glue alone with the .wasm as a separate file (/url).
console.log(`[build] bundle JS, embedded:        gzip ${kib(gz(Buffer.concat([glueOut, bytesModule])))} (glue + base64)`);
console.log(`[build] bundle JS, /url:            gzip ${kib(gz(glueOut))} (glue) + the .wasm file, gzip ${kib(gz(bytes))}`);
const wasmGz = gzippedSize(bytes);
if (wasmGz > WASM_GZIP_BUDGET) {
  console.error(`[build] gzipped .wasm: ${wasmGz} bytes, over the budget of ${WASM_GZIP_BUDGET} bytes (${kib(WASM_GZIP_BUDGET)})`);
  // A build with names (for a profile) is over the budget by design: built, but not a package.
  if (!process.env.RB_SDK_KEEP_NAMES) process.exit(1);
}
console.log(`[build] gzipped .wasm: ${wasmGz} bytes (budget ${WASM_GZIP_BUDGET})`);
