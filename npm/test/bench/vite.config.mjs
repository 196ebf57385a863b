// Vite config for the SDK browser benchmark page (built with ../e2e's vite by run.mjs).
// No imports: this folder has no node_modules of its own.
import { fileURLToPath } from 'node:url';

export default {
  root: fileURLToPath(new URL('.', import.meta.url)),
  // The package as published: npm/dist, its main entry point (build it first with `node scripts/build.mjs`).
  resolve: { alias: { 'realtime-bridge': process.env.RB_BENCH_DIST_ENTRY ?? fileURLToPath(new URL('../../dist/embedded.js', import.meta.url)) } },
  // Unminified for a profile (run.mjs --profile): function names in the profile.
  build: { outDir: 'dist', emptyOutDir: true, minify: !process.env.RB_BENCH_NO_MINIFY },
  logLevel: 'warn',
};
