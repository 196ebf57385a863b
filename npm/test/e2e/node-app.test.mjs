// `node app.mjs` with the package installed from its folder: plain Node, no bundler.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startNats, startBridge, token, producer, sleep, waitFor } from '../helpers.mjs';

const here = dirname(fileURLToPath(import.meta.url));
let nats;
let bridge;
let pub;

before(async () => {
  nats = await startNats();
  bridge = await startBridge({ natsUrl: nats.url });
  pub = await producer(nats.url);
});

after(async () => {
  await pub?.close();
  await bridge?.kill('SIGTERM');
  await nats?.stop();
});

test('node app.mjs receives an event and exits by itself after close()', async () => {
  const user = 'node-app';
  const child = spawn(process.execPath, [join(here, 'app.mjs')], {
    cwd: here,
    env: { ...process.env, BRIDGE_URL: bridge.url, RB_USER: user, RB_TOKEN: token(user) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise((r) => child.once('exit', (code) => r(code)));
  /** Waits (bounded) until app.mjs printed `needle`; fails at once if it exited without. */
  const printed = async (needle, timeoutMs) => {
    await waitFor(() => out.includes(needle) || child.exitCode !== null, { timeoutMs, what: needle }).catch(() => {});
    assert.ok(out.includes(needle), `app.mjs did not print ${needle}\nstdout: ${out}\nstderr: ${err}`);
  };
  // Once the program says `open`, the one event published must reach it.
  await printed('"open"', 15000);
  await pub.send(user, 'message_new', { text: 'hello node' });
  await printed('"got"', 10000);
  const code = await Promise.race([exited, sleep(5000).then(() => 'still running')]);
  if (code === 'still running') child.kill();
  assert.equal(code, 0, `exit: ${code}\nstdout: ${out}\nstderr: ${err}`);
  const lines = out.trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(lines[0], { status: 'connecting' });
  assert.deepEqual(lines[1], { status: 'open' });
  const got = lines.find((l) => l.got);
  assert.equal(got.got, 'message_new');
  assert.deepEqual(got.data, { text: 'hello node' });
  assert.equal(err, '');
});
