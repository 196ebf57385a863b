import { defineConfig, type Plugin } from 'vite';
import react from '@vitejs/plugin-react';
import { createApi } from './server/api.mjs';

/**
 * `npm run dev`: the same /api endpoints as server/server.mjs, inside Vite's dev server.
 * The secret stays in this Node process (never `import.meta.env`, never the bundle).
 */
function demoApi(): Plugin {
  return {
    name: 'realtime-bridge-demo-api',
    configureServer(server) {
      server.middlewares.use(
        createApi({
          secret: process.env.RB_JWT_SECRET ?? '',
          bridgeUrl: process.env.RB_URL || 'http://127.0.0.1:8080',
          natsUrl: process.env.NATS_URL || 'nats://127.0.0.1:4222',
        }),
      );
    },
  };
}

export default defineConfig({
  plugins: [react(), demoApi()],
  // realtime-bridge is linked from ../../npm (a "file:" dependency makes a symlink), which has
  // its own node_modules/react for its tests: make the page use one React.
  resolve: { dedupe: ['react', 'react-dom'] },
  // strictPort: on another port the page's origin would not be the one the bridge's
  // --cors-origin lists, and every request would fail on CORS; better to stop and say so.
  server: { host: '127.0.0.1', port: 5173, strictPort: true },
  build: { outDir: 'dist', emptyOutDir: true },
});
