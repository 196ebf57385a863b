// One stream per browser: tabs of one origin share one connection per url + user (npm/src/tabs.ts).
// Headless Chromium (Debian's, driven by playwright-core), pages of one browser context (the
// tabs of one profile), the package's dist/ loaded as ES modules from a loopback server, a real
// bridge in history mode on a real nats-server with JetStream. Events are published with
// JetStream publish, so each one's sequence (its envelope id) is known from its ack. Every wait
// is bounded.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startBridge, token, openStreams, waitFor } from '../helpers.mjs';
import { startBrowserBridge } from './harness.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const dist = resolve(here, '..', '..', 'dist');
const reactDist = join(here, 'dist');

// Each tab: one subscribe (query: bridge, user, token, events, share; `gate`: getToken waits for
// window.rb.open(); `cursor`: lastEventId), what it got in `window.rb`. `watch` counts the tabs
// announcing their names on the package's channel (docs/protocol.md §6.3).
const PAGE = `<!doctype html>
<meta charset="utf-8"><title>tabs</title>
<script type="module">
import { subscribe, isRealtimeError } from '/dist/embedded.js';
const q = new URLSearchParams(location.search);
const rb = (window.rb = { got: [], statuses: [], errors: [], resets: [], tokenAsked: 0, wants: new Set() });
const gate = new Promise((r) => (rb.open = r));
const options = {
  url: q.get('bridge'),
  getToken: async () => {
    rb.tokenAsked++;
    if (q.get('gate')) await gate;
    return q.get('token');
  },
  backoff: { initialMs: 100, maxMs: 500 },
  onStatus: (s) => rb.statuses.push(s),
  onError: (e) => rb.errors.push({ rt: isRealtimeError(e), name: e.name, message: e.message, status: e.status, code: e.code, final: e.final }),
  onReset: (r) => rb.resets.push(r),
};
if (q.get('share') === 'off') options.shareAcrossTabs = false;
if (q.get('cursor')) options.lastEventId = q.get('cursor');
if (q.get('watch')) {
  new BroadcastChannel('realtime-bridge/1\\n' + q.get('bridge') + '\\n' + q.get('user')).onmessage = (m) => {
    if (m.data.t === 'want') rb.wants.add(m.data.from);
  };
}
const events = q.get('events') ? q.get('events').split(',') : null;
rb.sub = subscribe(q.get('user'), events, (e) => rb.got.push({ id: e.id, event: e.event, k: e.data && e.data.k }), options);
</script>`;

/**
 * Serves the page at /, the built package at /dist/, and the React page of e2e.test.mjs (Vite's
 * build in ./dist: hooks and a plain subscribe under StrictMode) at /react.
 */
function route(path) {
  if (path === '/') return { body: PAGE, type: 'text/html' };
  if (path === '/react') return { root: reactDist, file: join(reactDist, 'index.html') };
  if (path.startsWith('/assets/')) return { root: reactDist, file: join(reactDist, path.slice(1)) };
  if (path.startsWith('/dist/')) return { root: dist, file: join(dist, path.slice('/dist/'.length)) };
  return null;
}

let nats;
let bridge;
let pub;
let origin;
let context;
let env;
const pageErrors = [];

before(async () => {
  assert.ok(existsSync(join(dist, 'index.js')), 'build the package first (node scripts/build.mjs)');
  assert.ok(existsSync(join(reactDist, 'index.html')), 'build the React page first (npx vite build)');
  env = await startBrowserBridge(route, 'tabs');
  ({ nats, bridge, pub, origin, context } = env);
});

after(async () => {
  await env?.close();
});

/** Opens a tab subscribed for `user`; resolves once its subscription says `open`. */
async function openTab(user, { events, share, wait = 'open', params = {}, on = bridge } = {}) {
  const page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => m.type() === 'error' && pageErrors.push(m.text()));
  const q = new URLSearchParams({ bridge: on.url, user, token: token(user), ...params });
  if (events) q.set('events', events.join(','));
  if (share === false) q.set('share', 'off');
  await page.goto(`${origin}/?${q}`);
  await page.waitForFunction((s) => window.rb?.sub?.status === s, wait, { timeout: 15000 });
  return page;
}

const state = (page) =>
  page.evaluate(() => ({ got: window.rb.got, statuses: window.rb.statuses, errors: window.rb.errors, resets: window.rb.resets, tokenAsked: window.rb.tokenAsked }));
const keysOf = async (page) => (await state(page)).got.map((e) => e.k);

/** Publishes `keys` (acked) and waits until every tab of `pages` got all of them. */
async function publishAndWaitAll(pages, user, keys, event = 'message_new') {
  for (const k of keys) await pub.publish(user, event, k);
  for (const p of pages) {
    await waitFor(async () => {
      const got = new Set(await keysOf(p));
      return keys.every((k) => got.has(k));
    }, { timeoutMs: 10000, intervalMs: 50, what: `${keys.length} events in every tab` });
  }
}

/** Every acked key of `keys` delivered exactly once, with its sequence as id, ids ascending. */
function checkExactlyOnce(name, got, user, keys) {
  const want = new Set(keys);
  const count = new Map();
  for (const e of got) if (want.has(e.k)) count.set(e.k, (count.get(e.k) ?? 0) + 1);
  const lost = keys.filter((k) => !count.has(k));
  const twice = [...count].filter(([, n]) => n > 1).map(([k]) => k);
  const ids = got.map((e) => Number(e.id));
  const unordered = ids.filter((id, i) => i > 0 && !(id > ids[i - 1]));
  console.log(`${name}: published=${keys.length} delivered=${[...count.values()].reduce((a, b) => a + b, 0)} lost=${lost.length} duplicated=${twice.length}`);
  assert.deepEqual(lost, [], `${name}: lost`);
  assert.deepEqual(twice, [], `${name}: delivered twice`);
  assert.deepEqual(unordered, [], `${name}: ids not ascending`);
  for (const e of got) if (want.has(e.k)) assert.equal(e.id, String(pub.acked.get(`${user}/${e.k}`)), `${e.k}: id is its sequence`);
}

test('three tabs of one user: the bridge has one stream, and every tab gets every event', { timeout: 60000 }, async () => {
  const user = 'tabs-three';
  const pages = [];
  for (let i = 0; i < 3; i++) pages.push(await openTab(user));
  const keys = [...Array(20).keys()].map((i) => `three-${i}`);
  await publishAndWaitAll(pages, user, keys);
  assert.equal(await openStreams(bridge.url), 1, 'one stream for three tabs');
  for (const [i, p] of pages.entries()) {
    const s = await state(p);
    checkExactlyOnce(`tab ${i}`, s.got, user, keys);
    assert.deepEqual(s.statuses, ['connecting', 'open'], `tab ${i} statuses`);
    assert.deepEqual(s.errors, []);
  }
  for (const p of pages) await p.close();
  await waitFor(async () => (await openStreams(bridge.url)) === 0, { what: 'stream closed after the last tab' });
});

test('each tab gets its own event names; the stream carries their union', { timeout: 60000 }, async () => {
  const user = 'tabs-filters';
  const a = await openTab(user, { events: ['message_new'] });
  const b = await openTab(user, { events: ['typing_start'] });
  const c = await openTab(user, { events: ['notification', 'message_new'] });
  // The second and third tab's names grew the leader's request (a reconnection from its cursor).
  await waitFor(async () => (await a.evaluate(() => window.rb.sub.status)) === 'open', { what: 'leader open again' });
  for (const [event, k] of [['message_new', 'm1'], ['typing_start', 't1'], ['notification', 'n1'], ['transaction_created', 'x1']]) {
    await pub.publish(user, event, k);
  }
  await waitFor(async () => (await keysOf(c)).includes('n1'), { what: 'notification in tab c' });
  await waitFor(async () => (await keysOf(b)).includes('t1'), { what: 'typing_start in tab b' });
  await waitFor(async () => (await keysOf(a)).includes('m1'), { what: 'message_new in tab a' });
  // A last event every tab wants, so that nothing else is still on its way.
  await pub.publish(user, 'message_new', 'm2');
  await waitFor(async () => (await keysOf(c)).includes('m2'), { what: 'm2 in tab c' });
  await waitFor(async () => (await keysOf(a)).includes('m2'), { what: 'm2 in tab a' });
  assert.deepEqual(await keysOf(a), ['m1', 'm2']);
  assert.deepEqual(await keysOf(b), ['t1']);
  assert.deepEqual(await keysOf(c), ['m1', 'n1', 'm2']);
  assert.equal(await openStreams(bridge.url), 1);
  for (const p of [a, b, c]) await p.close();
  await waitFor(async () => (await openStreams(bridge.url)) === 0, { what: 'stream closed after the last tab' });
});

test('the leader tab closes: another takes over from its cursor, nothing lost, nothing twice', { timeout: 90000 }, async () => {
  const user = 'tabs-takeover';
  const pages = [];
  for (let i = 0; i < 3; i++) pages.push(await openTab(user));
  // The first tab got the lock (it asked first, alone).
  const [leader, ...others] = pages;
  await publishAndWaitAll(pages, user, ['warmup']);

  // Publish without pause across the takeover (a steady producer, one every 20 ms).
  const keys = [];
  let stop = false;
  const producing = (async () => {
    for (let i = 0; !stop; i++) {
      const k = `steady-${i}`;
      await pub.publish(user, 'message_new', k);
      keys.push(k);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  await waitFor(() => keys.length >= 25, { what: 'events before the takeover' });
  const t0 = Date.now();
  await leader.close();
  // The others keep receiving: an event published after the close reaches both within seconds.
  const after = keys.length + 5;
  await waitFor(() => keys.length >= after, { what: 'publishing goes on' });
  const probe = keys[after - 1];
  for (const p of others) {
    await waitFor(async () => (await keysOf(p)).includes(probe), { timeoutMs: 10000, intervalMs: 50, what: `${probe} after the takeover` });
  }
  console.log(`takeover: events flowing again ${Date.now() - t0} ms after the leader closed`);
  await waitFor(() => keys.length >= after + 25, { what: 'events after the takeover' });
  stop = true;
  await producing;
  await publishAndWaitAll(others, user, ['last']);
  for (const [i, p] of others.entries()) {
    const s = await state(p);
    checkExactlyOnce(`tab ${i + 1}`, s.got, user, ['warmup', ...keys, 'last']);
    // The new leader's connection is a reconnection for every tab.
    assert.deepEqual(s.statuses, ['connecting', 'open', 'reconnecting', 'open'], `tab ${i + 1} statuses`);
    assert.deepEqual(s.errors, []);
  }
  // Exactly one of them connected (with its own token), once.
  const asked = await Promise.all(others.map(async (p) => (await state(p)).tokenAsked));
  assert.deepEqual(asked.sort(), [0, 1], `getToken calls: ${asked}`);
  assert.equal(await openStreams(bridge.url), 1, 'one stream after the takeover');
  for (const p of others) await p.close();
});

test('shareAcrossTabs: false: three tabs, three streams', { timeout: 60000 }, async () => {
  const user = 'tabs-optout';
  const pages = [];
  for (let i = 0; i < 3; i++) pages.push(await openTab(user, { share: false }));
  assert.equal(await openStreams(bridge.url), 3, 'one stream per tab');
  const keys = ['o1', 'o2', 'o3'];
  await publishAndWaitAll(pages, user, keys);
  for (const [i, p] of pages.entries()) checkExactlyOnce(`tab ${i}`, (await state(p)).got, user, keys);
  for (const p of pages) await p.close();
  assert.deepEqual(pageErrors.filter((e) => !/Failed to load resource|net::ERR/i.test(e)), []);
});

test("the bridge goes away and comes back: every tab gets the leader's statuses and errors, and the events", { timeout: 90000 }, async () => {
  const user = 'tabs-errors';
  const args = ['--cors-origin', origin, '--history', 'on'];
  const first = await startBridge({ natsUrl: nats.url, args });
  let second;
  const pages = [];
  try {
    for (let i = 0; i < 3; i++) pages.push(await openTab(user, { on: first }));
    const [leader, ...others] = pages;
    await publishAndWaitAll(pages, user, ['before']);
    await first.kill('SIGKILL');
    for (const p of pages) await p.waitForFunction(() => window.rb.errors.length > 0, null, { timeout: 15000 });
    // Published while no bridge runs: stored by JetStream, replayed on the resume.
    const during = ['during-0', 'during-1', 'during-2'];
    for (const k of during) await pub.publish(user, 'message_new', k);
    second = await startBridge({ natsUrl: nats.url, listen: first.addr, args });
    for (const p of pages) await p.waitForFunction(() => window.rb.sub.status === 'open', null, { timeout: 15000 });
    // A follower's reconnect() reconnects the shared stream: every tab sees it.
    await others[0].evaluate(() => window.rb.sub.reconnect());
    for (const p of pages) {
      await p.waitForFunction(() => window.rb.statuses.filter((x) => x === 'open').length === 3, null, { timeout: 15000 });
    }
    await publishAndWaitAll(pages, user, ['after']);
    const lead = await state(leader);
    assert.ok(lead.errors.length > 0 && lead.errors.every((e) => e.rt && e.name === 'RealtimeError' && e.final === false), JSON.stringify(lead.errors));
    assert.deepEqual(lead.statuses, ['connecting', 'open', 'reconnecting', 'open', 'reconnecting', 'open']);
    for (const [i, p] of others.entries()) {
      const s = await state(p);
      assert.deepEqual(s.errors, lead.errors, `tab ${i + 1}: the leader's errors`);
      assert.deepEqual(s.statuses, lead.statuses, `tab ${i + 1}: the leader's statuses`);
      assert.equal(s.tokenAsked, 0, `tab ${i + 1} never connected`);
    }
    for (const [i, p] of pages.entries()) checkExactlyOnce(`tab ${i}`, (await state(p)).got, user, ['before', ...during, 'after']);
    assert.equal(await openStreams(second.url), 1);
  } finally {
    for (const p of pages) await p.close();
    await first.kill();
    await second?.kill('SIGTERM');
  }
});

test('a reset reaches the onReset of every tab', { timeout: 60000 }, async () => {
  const user = 'tabs-reset';
  // The leader starts from a cursor past the end of the history (reset: unknown_cursor), once
  // the two other tabs have announced their names.
  const leader = await openTab(user, { wait: 'connecting', params: { gate: '1', watch: '1', cursor: '999999999:0' } });
  await leader.waitForFunction(() => window.rb.tokenAsked === 1, null, { timeout: 10000 });
  const others = [];
  for (let i = 0; i < 2; i++) others.push(await openTab(user, { wait: 'connecting' }));
  // Three: the leader's own (sent before it had the lock) and the two others'.
  await leader.waitForFunction(() => window.rb.wants.size === 3, null, { timeout: 10000 });
  await leader.evaluate(() => window.rb.open());
  const pages = [leader, ...others];
  for (const p of pages) await p.waitForFunction(() => window.rb.sub.status === 'open', null, { timeout: 15000 });
  await publishAndWaitAll(pages, user, ['r1']);
  for (const [i, p] of pages.entries()) {
    const s = await state(p);
    assert.deepEqual(s.resets, [{ reason: 'unknown_cursor' }], `tab ${i} resets`);
    assert.deepEqual(s.statuses, ['connecting', 'open'], `tab ${i} statuses`);
    checkExactlyOnce(`tab ${i}`, s.got, user, ['r1']);
  }
  // The followers hear of the leader's cursor with each event, and within a second when it moves alone.
  const cursors = () => Promise.all(pages.map((p) => p.evaluate(() => window.rb.sub.lastEventId)));
  await waitFor(async () => {
    const c = await cursors();
    return c[0] && c.every((x) => x === c[0]);
  }, { what: `the same lastEventId in every tab (${await cursors()})` });
  for (const p of pages) await p.close();
  assert.deepEqual(pageErrors.filter((e) => !/Failed to load resource|net::ERR/i.test(e)), []);
});

test('React hooks in two tabs share one stream, and the second tab goes on when the first closes', { timeout: 60000 }, async () => {
  const user = 'tabs-react';
  const q = new URLSearchParams({ bridge: bridge.url, user, token: token(user) });
  const pages = [];
  for (let i = 0; i < 2; i++) {
    const page = await context.newPage();
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    await page.goto(`${origin}/react?${q}`);
    await page.locator('#status', { hasText: 'open' }).waitFor({ timeout: 15000 });
    pages.push(page);
  }
  // Two hooks and a plain subscribe per tab, under StrictMode: one stream for the browser.
  assert.equal(await openStreams(bridge.url), 1);
  await pub.publish(user, 'message_new', 'r1', { text: 'Premier message' });
  await pub.publish(user, 'notification', 'n1', { id: 'n1', title: 'Une notification' });
  for (const p of pages) {
    await p.getByText('Premier message').waitFor({ timeout: 10000 });
    await p.getByText('Une notification').waitFor({ timeout: 10000 });
  }
  await pages[0].close();
  await pub.publish(user, 'message_new', 'r2', { text: 'Après la fermeture' });
  await pages[1].getByText('Après la fermeture').waitFor({ timeout: 10000 });
  await pages[1].locator('#status', { hasText: 'open' }).waitFor({ timeout: 10000 });
  assert.deepEqual(await pages[1].locator('#events li').allTextContents(), ['message_new Premier message', 'message_new Après la fermeture']);
  assert.equal(await pages[1].locator('#plain-count').textContent(), '2');
  assert.equal(await openStreams(bridge.url), 1);
  await pages[1].close();
});
