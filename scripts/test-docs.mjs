// The READMEs' own test: what a newcomer pastes must work and print what the page shows.
//
// (a) Every shell block (```sh, ```bash) of README.md, examples/README.md and npm/README.md runs,
//     from the repository root, against a demo stack started the way the README says
//     (scripts/demo.sh, here on free loopback ports with its state in a temporary folder), unless
//     its info string says `no-run`. A block marked `background` (a stream that stays open) is
//     started and left running while the next blocks run. A ```text block after a shell block is
//     that block's expected output (after a `background` block: the background one's), compared
//     line by line: `[..]` stands for any text inside a line, a line `...` for any lines.
//     The README's default addresses become the test's: literal 127.0.0.1:8080 / :4222 / :5173
//     and .tmp/demo/ are rewritten, and RB_URL / RB_NATS_URL (the variables behind the defaults of
//     `listen` and `send`) are set. `realtime-bridge` is on PATH, as after `cargo install`.
// (b) Every ```ts / ```tsx block is type-checked with tsc against the built package (npm/dist),
//     with the settings of npm/test/types; one marked `isolated` in a program of its own.
//
// Ends with "docs: N passed, N failed"; fails when a block fails or fewer ran than were found.
// Environment: DEMO_PROFILE (debug: the bridge build to run).
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePorts } from './lib/ports.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const npmDir = join(root, 'npm');
const profile = process.env.DEMO_PROFILE || 'debug';
const FILES = ['README.md', 'examples/README.md', 'npm/README.md'];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let passed = 0;
let failed = 0;
let found = 0;
const ranBlocks = new Set(); // blocks run (or type-checked), passed or not
const ok = (name) => {
  passed++;
  console.log(`ok   ${name}`);
};
const fail = (name, why) => {
  failed++;
  console.log(`FAIL ${name}\n${why.replace(/^/gm, '     ')}`);
};

/** Fenced blocks of a Markdown file: { lang, flags, body, line }. */
function blocks(file) {
  const lines = readFileSync(join(root, file), 'utf8').split('\n');
  const out = [];
  for (let i = 0; i < lines.length; i++) {
    const open = lines[i].match(/^```(\S*)\s*(.*)$/);
    if (!open) continue;
    const start = i;
    const body = [];
    for (i++; i < lines.length && lines[i] !== '```'; i++) body.push(lines[i]);
    out.push({ lang: open[1], flags: open[2].split(/\s+/).filter(Boolean), body: body.join('\n'), line: start + 1, file });
  }
  return out;
}

/** trycmd-style comparison: `[..]` inside a line, `...` as a whole line. */
function matches(expected, actual) {
  const exp = expected.replace(/\s+$/, '').split('\n');
  const act = actual.replace(/\r/g, '').replace(/\s+$/, '').split('\n');
  const lineRe = (l) => new RegExp(`^${l.split('[..]').map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
  const go = (i, j) => {
    if (i === exp.length) return j === act.length;
    if (exp[i] === '...') {
      for (let k = j; k <= act.length; k++) if (go(i + 1, k)) return true;
      return false;
    }
    return j < act.length && lineRe(exp[i]).test(act[j]) && go(i + 1, j + 1);
  };
  return go(0, 0);
}

// ---- collect
const all = FILES.flatMap(blocks);
const shell = all.filter((b) => ['sh', 'bash', 'shell'].includes(b.lang) && !b.flags.includes('no-run'));
const typed = all.filter((b) => ['ts', 'tsx'].includes(b.lang) && !b.flags.includes('no-run'));
found = shell.length + typed.length;
const name = (b) => `${b.file}:${b.line} (${b.lang}${b.flags.length ? ' ' + b.flags.join(' ') : ''})`;

// ---- (b) TypeScript: one tsc run over every snippet, each in its own module file; a block
//     marked `isolated` (e.g. a `declare module` augmentation, which is global to a program)
//     gets a tsc run of its own.
function typeCheck(group) {
  const dir = mkdtempSync(join(npmDir, '.docs-types-'));
  try {
    const base = JSON.parse(readFileSync(join(npmDir, 'test', 'types', 'tsconfig.json'), 'utf8'));
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ ...base, include: ['*.ts', '*.tsx'] }));
    const fileOf = new Map();
    group.forEach((b) => {
      const f = `${b.file.replace(/[/.]/g, '_')}_${b.line}.${b.lang}`;
      // `export {}`: a module of its own, so two snippets may declare the same names.
      writeFileSync(join(dir, f), `${b.body}\nexport {};\n`);
      fileOf.set(b, f);
    });
    const tsc = spawnSync(join(npmDir, 'node_modules', '.bin', 'tsc'), ['-p', join(dir, 'tsconfig.json'), '--pretty', 'false'], {
      cwd: npmDir,
      encoding: 'utf8',
    });
    const out = `${tsc.stdout}${tsc.stderr}`;
    if (tsc.error) throw tsc.error;
    const errors = out.split('\n').filter((l) => l.includes('error TS'));
    const claimed = new Set();
    for (const b of group) {
      ranBlocks.add(b);
      const mine = errors.filter((l) => l.includes(fileOf.get(b)));
      mine.forEach((l) => claimed.add(l));
      if (mine.length === 0) ok(`${name(b)} type-checks`);
      else fail(`${name(b)} type-checks`, mine.join('\n'));
    }
    // An error in no snippet (the package's own .d.ts, the settings) fails the run too.
    const other = errors.filter((l) => !claimed.has(l));
    if (other.length || (tsc.status !== 0 && errors.length === 0)) fail('tsc (outside the snippets)', other.join('\n') || out);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
typeCheck(typed.filter((b) => !b.flags.includes('isolated')));
for (const b of typed.filter((b) => b.flags.includes('isolated'))) typeCheck([b]);

// ---- (a) shell blocks against scripts/demo.sh
const [natsPort, rbPort, webPort] = await freePorts(3);
const state = mkdtempSync(join(tmpdir(), 'rb-docs-state-'));
const bin = join(state, 'bin');
mkdirSync(bin);
symlinkSync(join(root, 'target', profile, 'realtime-bridge'), join(bin, 'realtime-bridge'));
const env = {
  ...process.env,
  PATH: `${bin}:${process.env.PATH}`,
  RB_URL: `http://127.0.0.1:${rbPort}`,
  RB_NATS_URL: `nats://127.0.0.1:${natsPort}`,
};
delete env.RB_JWT_SECRET;
delete env.RB_JWT_SECRET_FILE;
const rewrite = (s) =>
  s
    .replaceAll('127.0.0.1:8080', `127.0.0.1:${rbPort}`)
    .replaceAll('127.0.0.1:4222', `127.0.0.1:${natsPort}`)
    .replaceAll('127.0.0.1:5173', `127.0.0.1:${webPort}`)
    .replaceAll('.tmp/demo/', `${state}/demo/`);

let demoOut = '';
const demo = spawn('bash', [join(root, 'scripts', 'demo.sh')], {
  cwd: root,
  stdio: ['ignore', 'pipe', 'pipe'],
  env: {
    ...env,
    NATS_PORT: String(natsPort),
    RB_PORT: String(rbPort),
    WEB_PORT: String(webPort),
    DEMO_PROFILE: profile,
    DEMO_STATE: join(state, 'demo'),
  },
});
demo.stdout.on('data', (d) => (demoOut += d));
demo.stderr.on('data', (d) => (demoOut += d));
const demoExit = new Promise((r) => demo.once('exit', r));

/** Runs a block with bash; resolves { code, out, err }. */
function runBlock(script, background, withEnv = env) {
  const p = spawn('bash', ['-euo', 'pipefail', '-c', script], { cwd: root, env: withEnv, stdio: ['ignore', 'pipe', 'pipe'], detached: background });
  const r = { p, out: '', err: '', code: null };
  p.stdout.on('data', (d) => (r.out += d));
  p.stderr.on('data', (d) => (r.err += d));
  r.done = new Promise((res) => p.once('exit', (code, sig) => res((r.code = code ?? sig))));
  return r;
}
const stop = async (r) => {
  try {
    process.kill(-r.p.pid, 'SIGTERM');
  } catch {}
  await Promise.race([r.done, sleep(3000)]);
};

/** What demo.sh prints for reading a stream (listen; token + curl) works as pasted with send. */
async function printedCommands() {
  const lines = demoOut.split('\n').map((l) => l.trim());
  const find = (re) => lines.find((l) => re.test(l));
  const send = find(/^target\/\S+\/realtime-bridge send /);
  const listen = find(/^target\/\S+\/realtime-bridge listen /);
  const token = find(/^TOKEN=/);
  const curl = find(/^curl -N /);
  const what = "demo.sh's printed send, listen and curl commands";
  if (!send || !listen || !token || !curl) return fail(what, `not all printed:\n${demoOut}`);
  // Without the test's RB_URL / RB_NATS_URL: the printed lines must carry their addresses.
  const bare = { ...env };
  delete bare.RB_URL;
  delete bare.RB_NATS_URL;
  const bg = [listen, `${token}\n${curl}`].map((c) => runBlock(c, true, bare));
  const until = Date.now() + 10000;
  while (bg.some((r) => !r.out && r.code === null) && Date.now() < until) await sleep(50);
  const s = runBlock(send, false, bare);
  await Promise.race([s.done, sleep(30000)]);
  while (bg.some((r) => !r.out.includes('"text":"hi"')) && Date.now() < until + 10000) await sleep(100);
  await Promise.all(bg.map(stop));
  const got = bg.map((r) => r.out.includes('"text":"hi"'));
  if (s.code === 0 && got.every(Boolean)) ok(what);
  else fail(what, `send exit ${s.code} ${s.err}\nlisten:\n${bg[0].out}${bg[0].err}\ncurl:\n${bg[1].out}${bg[1].err}`);
}

try {
  const end = Date.now() + 10 * 60 * 1000;
  while (!demoOut.includes('Ctrl-C stops everything.')) {
    if (demo.exitCode !== null) throw new Error(`scripts/demo.sh exited (${demo.exitCode}):\n${demoOut}`);
    if (Date.now() > end) throw new Error(`scripts/demo.sh did not come up:\n${demoOut}`);
    await sleep(100);
  }
  await printedCommands();
  const pending = []; // background blocks awaiting their expected output
  let last = null; // the last foreground block run, with its result
  for (const b of all) {
    if (b.lang === 'text') {
      const bg = pending.shift();
      const target = bg ?? last;
      if (!target) continue; // a text block that follows no shell block: prose, not output
      if (bg) {
        const until = Date.now() + 10000;
        while (!matches(b.body, bg.r.out) && Date.now() < until) await sleep(100);
        await stop(bg.r);
      }
      if (matches(b.body, target.r.out)) ok(`${name(target.b)} prints ${name(b)}`);
      else fail(`${name(target.b)} prints ${name(b)}`, `expected:\n${b.body}\ngot:\n${target.r.out}${target.r.err}`);
      last = null;
      continue;
    }
    if (!shell.includes(b)) {
      if (b.lang !== '') last = null;
      continue;
    }
    if (b.flags.includes('background')) {
      ranBlocks.add(b);
      const r = runBlock(rewrite(b.body), true);
      // Started when it printed something (a stream's `retry:` line) or gave up.
      const until = Date.now() + 10000;
      while (!r.out && r.code === null && Date.now() < until) await sleep(50);
      if (r.code !== null || !r.out) fail(name(b), `exit ${r.code}, nothing printed\n${r.err}`);
      else {
        ok(`${name(b)} runs`);
        pending.push({ b, r });
      }
      continue;
    }
    ranBlocks.add(b);
    const r = runBlock(rewrite(b.body), false);
    await Promise.race([r.done, sleep(60000)]);
    if (r.code === 0) ok(`${name(b)} runs`);
    else fail(name(b), `exit ${r.code ?? 'none after 60 s'}\n${r.out}${r.err}`);
    if (r.code === null) await stop(r);
    last = { b, r };
  }
  for (const bg of pending) {
    await stop(bg.r);
    fail(name(bg.b), 'a background block with no expected output after it');
  }
} catch (e) {
  fail('demo', String(e?.stack ?? e));
} finally {
  demo.kill('SIGINT');
  await Promise.race([demoExit, sleep(20000)]);
  if (demo.exitCode === null) demo.kill('SIGKILL');
  rmSync(state, { recursive: true, force: true });
}

const ran = ranBlocks.size;
if (ran < found) fail('count', `found ${found} blocks to run, ran ${ran}`);
console.log(`docs: ${ran} of ${found} blocks run (${shell.length} shell, ${typed.length} TypeScript)`);
console.log(`docs: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 && ran >= found ? 0 : 1);
