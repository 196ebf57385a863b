// The page of url/ (realtime-bridge/url/react), built into dist-url/ with relative asset
// paths: csp.test.mjs serves it under several prefixes, each with its own policy.
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';
import { fileURLToPath } from 'node:url';

export default defineConfig({
  root: fileURLToPath(new URL('./url', import.meta.url)),
  base: './',
  plugins: [react()],
  resolve: { dedupe: ['react', 'react-dom'] },
  build: { outDir: fileURLToPath(new URL('./dist-url', import.meta.url)), emptyOutDir: true },
  logLevel: 'warn',
});
