// The demo, end to end, as a newcomer runs it: scripts/demo.sh starts nats-server, the bridge
// and the page server on free loopback ports; headless Chromium (Debian's, driven by
// playwright-core) opens the page as user 42; each of the five example producers runs once,
// and the chat message, the typing indicator, the new balance and the bell count must appear.
// Then a second page (user 7) chats with the first, the bell's "mark all read" and delete
// round-trip through the bridge, and Ctrl-C (SIGINT) stops everything demo.sh started.
//
// Environment: DEMO_PROFILE (debug: the bridge build demo.sh runs), RUST_PRODUCER and
// GO_PRODUCER (the built example binaries), SCREENSHOTS (folder), CHROMIUM_PATH.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { chromiumPath, CHROMIUM_ARGS } from '../../../npm/test/chromium.mjs';
import { freePorts } from '../../../scripts/lib/ports.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const demoDir = join(here, '..');
const root = join(demoDir, '..', '..');
const producersDir = join(root, 'examples', 'producers');
const profile = process.env.DEMO_PROFILE || 'debug';
const rbBin = join(root, 'target', profile, 'realtime-bridge');
const rustProducer = process.env.RUST_PRODUCER || join(root, 'target', 'examples', 'debug', 'producer');
const goProducer = process.env.GO_PRODUCER || join(root, 'target', 'examples', 'go-producer');
const shots = process.env.SCREENSHOTS || join(demoDir, 'test-results');
const USER = '42';
const PEER = '7';
const TYPING_MS = '3000';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function portOpen(port) {
  return new Promise((resolve) => {
    const c = connect({ host: '127.0.0.1', port });
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

/** Runs a command; resolves {code, out, err}. */
function run(cmd, args, opts = {}) {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.once('error', reject);
    p.once('exit', (code) => resolve({ code, out, err }));
  });
}

let demo; // the scripts/demo.sh process
let demoOut = '';
let demoExit;
let ports;
let webUrl;
let natsUrl;
let printedCommand;
let secret;
let context;
let userDataDir;
let stateDir;
let page42;
const pageErrors = [];

before(async () => {
  const [natsPort, rbPort, webPort] = await freePorts(3);
  ports = { natsPort, rbPort, webPort };
  // At least 32 bytes: the bridge refuses shorter HS256 secrets.
  secret = `demo-test-${Date.now().toString(36)}-secret-${randomBytes(16).toString('hex')}`;
  stateDir = mkdtempSync(join(tmpdir(), 'rb-demo-state-'));
  demo = spawn('bash', [join(root, 'scripts', 'demo.sh')], {
    cwd: root,
    // Same process group as this test: a Ctrl-C on scripts/test-demo.sh reaches demo.sh too,
    // which then stops what it started.
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      NATS_PORT: String(natsPort),
      RB_PORT: String(rbPort),
      WEB_PORT: String(webPort),
      DEMO_PROFILE: profile,
      DEMO_STATE: stateDir,
      RB_JWT_SECRET: secret,
    },
  });
  demoExit = new Promise((r) => demo.once('exit', (code, signal) => r({ code, signal })));
  demo.stdout.on('data', (d) => (demoOut += d));
  demo.stderr.on('data', (d) => (demoOut += d));
  // demo.sh may build (the npm package, the page): allow it time.
  const end = Date.now() + 10 * 60 * 1000;
  while (!demoOut.includes('Ctrl-C stops everything.')) {
    if (demo.exitCode !== null) throw new Error(`scripts/demo.sh exited (${demo.exitCode}):\n${demoOut}`);
    if (Date.now() > end) throw new Error(`scripts/demo.sh did not come up:\n${demoOut}`);
    await sleep(100);
  }
  mkdirSync(shots, { recursive: true });
  writeFileSync(join(shots, 'demo.sh.log'), demoOut);
  webUrl = demoOut.match(/Open (http:\/\/127\.0\.0\.1:\d+)\//)?.[1];
  natsUrl = `nats://127.0.0.1:${natsPort}`;
  printedCommand = demoOut
    .split('\n')
    .map((l) => l.trim())
    .find((l) => l.startsWith('examples/producers/'));
  assert.equal(webUrl, `http://127.0.0.1:${webPort}`, demoOut);
  assert.ok(printedCommand, `no producer command printed:\n${demoOut}`);

  userDataDir = mkdtempSync(join(tmpdir(), 'rb-demo-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: chromiumPath(),
    headless: true,
    viewport: { width: 1280, height: 800 },
    args: CHROMIUM_ARGS,
  });
});

after(async () => {
  await context?.close().catch(() => {});
  if (demo && demo.exitCode === null && demo.signalCode === null) {
    demo.kill('SIGINT');
    const stopped = await Promise.race([demoExit, sleep(15000).then(() => null)]);
    if (!stopped) demo.kill('SIGKILL');
  }
  if (demoOut) writeFileSync(join(shots, 'demo.sh.log'), demoOut);
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
  if (stateDir && (demo?.exitCode !== null || demo?.signalCode !== null)) rmSync(stateDir, { recursive: true, force: true });
});

/** A screenshot once CSS animations (message pop-in, bell ring) have settled. */
async function shot(page, name) {
  await sleep(400);
  await page.screenshot({ path: join(shots, name) });
}

function watchErrors(page, who) {
  page.on('console', (m) => m.type() === 'error' && pageErrors.push(`${who}: ${m.text()}`));
  page.on('pageerror', (e) => pageErrors.push(`${who}: ${e}`));
}

async function openAs(user, peer) {
  const page = await context.newPage();
  watchErrors(page, user);
  await page.goto(`${webUrl}/?user=${user}&peer=${peer}`);
  await page.locator('#connection[data-status="open"]').waitFor({ timeout: 20000 });
  return page;
}

test('the sign-in page, then user 42 signed in with a live connection badge', async () => {
  const page = await context.newPage();
  watchErrors(page, 'signin');
  await page.goto(webUrl);
  await page.locator('#signin-user').waitFor();
  await shot(page, '1-sign-in.png');
  await page.locator('#signin-user').fill(USER);
  await page.locator('#signin-peer').fill(PEER);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#connection[data-status="open"]').waitFor({ timeout: 20000 });
  assert.equal(await page.locator('#connection').textContent(), 'Live');
  assert.equal(new URL(page.url()).search, `?user=${USER}&peer=${PEER}`);
  assert.equal(await page.locator('#balance').textContent(), '€1,000.00');
  await page.locator('.empty code', { hasText: 'producer.sh' }).waitFor();
  await shot(page, '2-live-empty.png');
  page42 = page;
});

// The five producers, each run once; balance starts at 1000.00. `out`: what a producer must
// print besides its events.
const producers = [
  {
    name: 'Rust (async-nats)',
    sender: 'rust-service',
    text: 'Hello from Rust',
    balance: '€1,250.00',
    cmd: () => [rustProducer, [natsUrl, USER]],
  },
  {
    name: 'Node/TypeScript (nats.js)',
    sender: 'node-service',
    text: 'Hello from Node.js',
    balance: '€1,207.50',
    cmd: () => [join(producersDir, 'node', 'node_modules', '.bin', 'tsx'), ['producer.ts', natsUrl, USER]],
    cwd: join(producersDir, 'node'),
  },
  {
    name: 'Python (nats-py)',
    sender: 'python-service',
    text: 'Hello from Python',
    balance: '€1,307.50',
    cmd: () => ['python3', [join(producersDir, 'python', 'producer.py'), natsUrl, USER]],
  },
  {
    name: 'shell (the command demo.sh prints)',
    sender: 'shell-script',
    text: 'Hello from the shell',
    balance: '€1,287.51',
    cmd: () => ['bash', ['-c', printedCommand]],
    cwd: root,
  },
  {
    name: 'Go (nats.go)',
    sender: 'go-service',
    text: 'Hello from Go',
    balance: '€1,300.00',
    cmd: () => [goProducer, [natsUrl, USER]],
    // The demo's bridge keeps history, so the stream exists: acknowledged JetStream publishes,
    // and the bridge's presence answer counts this page's stream.
    out: [/via JetStream, acknowledged/, new RegExp(`presence +→ user ${USER} has [1-9]\\d* open stream`)],
  },
];
const last = producers.length;
const finalBalance = producers[last - 1].balance;

producers.forEach((p, i) => {
  test(`${p.name} producer: typing indicator, chat message, balance ${p.balance}, bell ${i + 1}`, async () => {
    assert.ok(page42, 'the page did not open');
    const [cmd, args] = p.cmd();
    const done = run(cmd, args, {
      cwd: p.cwd ?? root,
      env: { ...process.env, TYPING_MS, RB_BIN: rbBin },
    });
    // typing_start first, the message TYPING_MS later.
    await page42.locator('#typing', { hasText: `${p.sender} is typing` }).waitFor({ timeout: 20000 });
    if (i === producers.length - 1) await shot(page42, '3-typing.png');
    const r = await done;
    assert.equal(r.code, 0, `producer exited ${r.code}:\n${r.out}\n${r.err}`);
    for (const re of p.out ?? []) assert.match(r.out, re);
    await page42.locator('#messages .msg', { hasText: p.text }).waitFor({ timeout: 10000 });
    assert.equal(await page42.locator(`#messages .msg[data-sender="${p.sender}"]`).count(), 1);
    await page42.locator('#balance', { hasText: p.balance }).waitFor({ timeout: 10000 });
    await page42.locator('#bell-count', { hasText: new RegExp(`^${i + 1}$`) }).waitFor({ timeout: 10000 });
    // typing_stop (and the message) end the indicator.
    await page42.waitForFunction(() => !document.querySelector('#typing')?.textContent?.includes('typing'), null, {
      timeout: 10000,
    });
  });
});

test(`after the ${last} producers: ${last} messages, balance ${finalBalance}, ${last} unread, every event in the log`, async () => {
  assert.equal(await page42.locator('#messages .msg').count(), last);
  assert.equal(await page42.locator('#balance').textContent(), finalBalance);
  assert.equal(await page42.locator('#bell-count').textContent(), String(last));
  assert.equal(await page42.locator('.txs li').count(), last);
  const log = await page42.locator('#event-log li').allTextContents();
  for (const e of ['typing_start', 'message_new', 'typing_stop', 'transaction_completed', 'notification']) {
    assert.ok(log.some((l) => l.includes(e)), `${e} missing from the event log: ${log.join(' | ')}`);
  }
  await shot(page42, '4-after-producers.png');
});

test(`the bell: ${last} notifications; mark all read and delete go round the bridge (notification_read, notification_deleted)`, async () => {
  await page42.locator('#bell').click();
  const items = page42.locator('#notifications li');
  await items.nth(last - 1).waitFor();
  assert.equal(await items.count(), last);
  assert.equal(await page42.locator('#notifications li.unread').count(), last);
  await shot(page42, '5-notifications.png');
  await page42.locator('#mark-all-read').click();
  await page42.locator('#bell-count').waitFor({ state: 'detached', timeout: 10000 });
  assert.equal(await page42.locator('#notifications li.unread').count(), 0);
  await items.first().getByRole('button', { name: 'Delete' }).click();
  await page42.waitForFunction((n) => document.querySelectorAll('#notifications li').length === n, last - 1, { timeout: 10000 });
  await page42.locator('#bell').click(); // close
});

test('two browsers chat: 42 types (7 sees the indicator) and sends (both see the message)', async () => {
  const page7 = await openAs(PEER, USER);
  const input = page42.locator('#chat-input');
  await input.click();
  await input.pressSequentially('Hi 7, from the browser', { delay: 15 });
  await page7.locator('#typing', { hasText: `${USER} is typing` }).waitFor({ timeout: 10000 });
  await input.press('Enter');
  await page7.locator('#messages .msg', { hasText: 'Hi 7, from the browser' }).waitFor({ timeout: 10000 });
  await page42.locator('#messages .msg.mine', { hasText: 'Hi 7, from the browser' }).waitFor({ timeout: 10000 });
  assert.equal(await input.inputValue(), '');
  await page7.waitForFunction(() => !document.querySelector('#typing')?.textContent?.includes('typing'), null, {
    timeout: 10000,
  });
  // 7 answers.
  await page7.locator('#chat-input').fill('Hello 42!');
  await page7.locator('#chat-send').click();
  await page42.locator('#messages .msg.theirs[data-sender="7"]', { hasText: 'Hello 42!' }).waitFor({ timeout: 10000 });
  await shot(page7, '6-chat-as-7.png');
  await shot(page42, '7-chat-as-42.png');
  await page7.close();
});

test('no page errors, and the secret is nowhere in the browser bundle', async () => {
  const assets = join(demoDir, 'dist', 'assets');
  for (const f of readdirSync(assets)) {
    assert.ok(!readFileSync(join(assets, f), 'utf8').includes(secret), `${f} contains the secret`);
  }
  assert.ok(!readFileSync(join(demoDir, 'dist', 'index.html'), 'utf8').includes(secret));
  assert.deepEqual(pageErrors, []);
});

test('each producer exits 69 with "NATS not reachable at URL: is nats-server running?" when NATS is down', async () => {
  const [closed] = await freePorts(1);
  const url = `nats://127.0.0.1:${closed}`;
  for (const p of producers) {
    const [cmd, args] = p.cmd();
    const swapped = p.name.startsWith('shell')
      ? ['bash', [join(producersDir, 'shell', 'producer.sh'), url, USER]]
      : [cmd, args.map((a) => (a === natsUrl ? url : a))];
    const r = await run(swapped[0], swapped[1], { cwd: p.cwd ?? root, env: { ...process.env, RB_BIN: rbBin } });
    assert.equal(r.code, 69, `${p.name}: exit ${r.code}\n${r.out}\n${r.err}`);
    assert.ok(r.err.includes(`NATS not reachable at ${url}: is nats-server running?`), `${p.name}: ${r.err}`);
  }
});

test('Ctrl-C (SIGINT to demo.sh) stops nats-server, the bridge and the page server', async () => {
  await context.close();
  context = null;
  demo.kill('SIGINT');
  const r = await Promise.race([demoExit, sleep(20000).then(() => null)]);
  assert.ok(r, `demo.sh still running 20 s after SIGINT:\n${demoOut}`);
  assert.match(demoOut, /stopped: nats-server realtime-bridge demo server/);
  for (const [name, port] of Object.entries(ports)) {
    assert.equal(await portOpen(port), false, `${name} ${port} still open after Ctrl-C`);
  }
  // The bridge stopped cleanly: no task panicked (a panic does not change its exit code),
  // and it finished its shutdown inside the grace.
  const bridgeLog = readFileSync(join(stateDir, 'bridge.log'), 'utf8');
  assert.doesNotMatch(bridgeLog, /panicked at/, `the bridge panicked:\n${bridgeLog.slice(-4000)}`);
  assert.match(bridgeLog, /shutdown complete/, `no clean shutdown in the bridge's log:\n${bridgeLog.slice(-4000)}`);
});
