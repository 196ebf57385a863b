// Vite config for the SDK browser benchmark page (built with ../e2e's vite by run.mjs).
// No imports: this folder has no node_modules of its own.
import { fileURLToPath } from 'node:url';

export default {
  root: fileURLToPath(new URL('.', import.meta.url)),
  // The package as published: npm/dist, its main entry point (build it first with `node scripts/build.mjs`).
  resolve: { alias: { 'realtime-bridge': fileURLToPath(new URL('../../dist/embedded.js', import.meta.url)) } },
  build: { outDir: 'dist', emptyOutDir: true },
  logLevel: 'warn',
};
