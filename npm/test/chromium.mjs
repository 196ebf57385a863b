// Debian's Chromium for the browser tests and the browser benchmark (never a test tool's own
// browser download): where it is, and the flags it runs with on these machines.
import { existsSync } from 'node:fs';

export function chromiumPath() {
  for (const p of [process.env.CHROMIUM_PATH, '/usr/lib/chromium/chromium', '/usr/bin/chromium']) {
    if (p && existsSync(p)) return p;
  }
  throw new Error('Chromium not found: apt-get install chromium (scripts/setup-sdk.sh)');
}

// Headless, no sandbox (root), and no background traffic: the network here is closed.
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
