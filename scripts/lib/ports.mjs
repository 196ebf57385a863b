// Free loopback ports for the scripts' and tests' own servers (demo.sh, the docs test).
import { createServer } from 'node:net';

/** `n` distinct free ports on 127.0.0.1, held together while chosen so none repeats. */
export async function freePorts(n) {
  const servers = [];
  for (let i = 0; i < n; i++) {
    const s = createServer();
    await new Promise((r) => s.listen(0, '127.0.0.1', r));
    servers.push(s);
  }
  const ports = servers.map((s) => s.address().port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}
