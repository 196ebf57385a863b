// What the browser tests of the package's dist/ share (tabs.test.mjs, worker.test.mjs): a real
// nats-server with JetStream, a real bridge in history mode allowing the pages' origin, a
// JetStream producer (each event's envelope id known from its ack), a loopback server for the
// pages, and a persistent Chromium context (the tabs of one profile). `close()` stops them all.
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { chromium } from 'playwright-core';
import { startNats, startBridge, jsProducer } from '../helpers.mjs';
import { chromiumPath, CHROMIUM_ARGS } from '../chromium.mjs';
import { serveFiles } from './static.mjs';

/** `route(path)`: what serveFiles serves; `name`: the profile folder's prefix. */
export async function startBrowserBridge(route, name) {
  const env = {};
  try {
    env.nats = await startNats();
    env.web = await serveFiles(route);
    env.origin = `http://127.0.0.1:${env.web.address().port}`;
    env.bridge = await startBridge({ natsUrl: env.nats.url, args: ['--cors-origin', env.origin, '--history', 'on'] });
    env.pub = await jsProducer(env.nats.url);
    env.userDataDir = mkdtempSync(join(tmpdir(), `rb-sdk-${name}-`));
    env.context = await chromium.launchPersistentContext(env.userDataDir, { executablePath: chromiumPath(), headless: true, args: CHROMIUM_ARGS });
  } catch (e) {
    await closeAll(env);
    throw e;
  }
  env.close = () => closeAll(env);
  return env;
}

async function closeAll(env) {
  await env.context?.close();
  await env.bridge?.kill('SIGTERM');
  await env.pub?.close();
  await env.nats?.stop();
  env.web?.closeAllConnections();
  env.web?.close();
  if (env.userDataDir) rmSync(env.userDataDir, { recursive: true, force: true });
}
