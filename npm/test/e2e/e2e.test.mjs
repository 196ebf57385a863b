// Browser end-to-end: the Vite-built page (dist/, from the realtime-bridge package) in
// headless Chromium (Debian's, driven by playwright-core), a real bridge, a real nats-server.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startNats, startBridge, token, producer, sleep } from '../helpers.mjs';
import { chromiumPath, CHROMIUM_ARGS } from '../chromium.mjs';
import { serveFiles } from './static.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, 'dist');
const shots = join(here, '..', '..', 'test-results');

/** Serves dist/ on loopback. */
const serveDist = () => serveFiles((path) => ({ root: dist, file: join(dist, path === '/' ? 'index.html' : path) }));

let nats;
let pub;
let web;
let context;
let userDataDir;
const bridges = [];

before(async () => {
  assert.ok(existsSync(join(dist, 'index.html')), 'build the page first (npx vite build)');
  nats = await startNats();
  pub = await producer(nats.url);
  web = await serveDist();
  userDataDir = mkdtempSync(join(tmpdir(), 'rb-sdk-chromium-'));
  // A new, empty profile (launchPersistentContext passes it as --user-data-dir).
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: chromiumPath(),
    headless: true,
    args: CHROMIUM_ARGS,
  });
});

after(async () => {
  await context?.close();
  for (const b of bridges) await b.kill('SIGTERM');
  await pub?.close();
  await nats?.stop();
  web?.closeAllConnections();
  web?.close();
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
});

/**
 * Publishes `event` once and waits (bounded) until the page shows `text`. Called once the page
 * shows `open`: the bridge answers a stream request only after NATS confirmed its subscriptions.
 */
async function publishAndShow(page, user, event, text, timeoutMs = 10000) {
  await pub.send(user, event, { text });
  await page.getByText(text, { exact: false }).first().waitFor({ timeout: timeoutMs });
}

test('events published to NATS appear on the page; after a bridge restart the page reconnects and shows the next one', async () => {
  const origin = `http://127.0.0.1:${web.address().port}`;
  const args = ['--cors-origin', origin];
  const first = await startBridge({ natsUrl: nats.url, args });
  bridges.push(first);
  const user = 'browser-42';
  const page = await context.newPage();
  const consoleErrors = [];
  page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  const q = new URLSearchParams({ bridge: first.url, user, token: token(user) });
  await page.goto(`${origin}/?${q}`);

  await page.locator('#status', { hasText: 'open' }).waitFor({ timeout: 15000 });
  await publishAndShow(page, user, 'message_new', 'Bonjour depuis NATS');
  await pub.send(user, 'notification', { id: 'n1', title: 'Nouvelle notification' });
  await pub.broadcast('system_alert', { text: 'Maintenance à 22h' });
  await page.getByText('Nouvelle notification').waitFor({ timeout: 10000 });
  await page.getByText('Maintenance à 22h').waitFor({ timeout: 10000 });
  const cursorBefore = await page.locator('#cursor').textContent();
  assert.notEqual(cursorBefore, '-');

  // Crash the bridge; the page notices and retries; a new bridge comes up on the same address.
  await first.kill('SIGKILL');
  await page.locator('#status', { hasText: 'reconnecting' }).waitFor({ timeout: 15000 });
  await sleep(300);
  const second = await startBridge({ natsUrl: nats.url, listen: first.addr, args });
  bridges.push(second);
  await page.locator('#status', { hasText: 'open' }).waitFor({ timeout: 15000 });
  await publishAndShow(page, user, 'message_new', 'Après le redémarrage');

  // Hooks + plain subscribe share one connection per user: the bridge has exactly one stream.
  const metrics = await (await fetch(`${second.url}/metrics`)).text();
  assert.match(metrics, /^realtime_bridge_open_streams(\{[^}]*\})? 1$/m);
  const plain = Number(await page.locator('#plain-count').textContent());
  assert.ok(plain >= 2, `plain subscribe got ${plain}`);
  const texts = await page.locator('#events li').allTextContents();
  assert.deepEqual(texts.slice(0, 2), ['message_new Bonjour depuis NATS', 'system_alert Maintenance à 22h']);
  assert.ok(texts.includes('message_new Après le redémarrage'));

  mkdirSync(shots, { recursive: true });
  const shot = join(shots, 'e2e-browser.png');
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`screenshot: ${shot}`);
  assert.deepEqual(consoleErrors.filter((e) => !/Failed to load resource|ERR_CONNECTION_REFUSED|ERR_EMPTY_RESPONSE|network error|ERR_INCOMPLETE_CHUNKED/i.test(e)), []);
  await page.close();
});

test("the browser's online event retries at once instead of waiting out the backoff", async () => {
  const origin = `http://127.0.0.1:${web.address().port}`;
  const args = ['--cors-origin', origin];
  const first = await startBridge({ natsUrl: nats.url, args });
  bridges.push(first);
  const user = 'browser-online';
  const page = await context.newPage();
  // Backoff of 60 s: without the online handler the page would stay disconnected.
  const q = new URLSearchParams({ bridge: first.url, user, token: token(user), initialMs: '60000', maxMs: '60000' });
  await page.goto(`${origin}/?${q}`);
  await page.locator('#status', { hasText: 'open' }).waitFor({ timeout: 15000 });
  await context.setOffline(true);
  await first.kill('SIGKILL');
  await page.locator('#status', { hasText: 'reconnecting' }).waitFor({ timeout: 15000 });
  const second = await startBridge({ natsUrl: nats.url, listen: first.addr, args });
  bridges.push(second);
  await sleep(500);
  const t0 = Date.now();
  await context.setOffline(false);
  await page.locator('#status', { hasText: 'open' }).waitFor({ timeout: 10000 });
  const took = Date.now() - t0;
  assert.ok(took < 10000, `reconnected ${took} ms after going online`);
  await publishAndShow(page, user, 'message_new', 'De retour en ligne');
  await page.close();
});

test("the browser's offline event shows reconnecting at once on a link that still looks open; online opens it again", async () => {
  const origin = `http://127.0.0.1:${web.address().port}`;
  const bridge = await startBridge({ natsUrl: nats.url, args: ['--cors-origin', origin] });
  bridges.push(bridge);
  const user = 'browser-offline';
  const page = await context.newPage();
  // Backoff of 60 s: only the online event can bring the page back within the test.
  const q = new URLSearchParams({ bridge: bridge.url, user, token: token(user), initialMs: '60000', maxMs: '60000' });
  await page.goto(`${origin}/?${q}`);
  await page.locator('#status', { hasText: 'open' }).waitFor({ timeout: 15000 });
  // The bridge stays up: without the offline handler the page would show open until the
  // heartbeat timeout (45 s).
  await context.setOffline(true);
  await page.locator('#status', { hasText: 'reconnecting' }).waitFor({ timeout: 3000 });
  await context.setOffline(false);
  await page.locator('#status', { hasText: 'open' }).waitFor({ timeout: 10000 });
  await publishAndShow(page, user, 'message_new', 'En ligne à nouveau');
  await page.close();
});
