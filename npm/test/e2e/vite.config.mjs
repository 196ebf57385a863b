import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

export default defineConfig({
  plugins: [react()],
  // realtime-bridge is linked from ../.. (npm install <folder>), which has its own
  // node_modules/react for its tests: make the page use one React.
  resolve: { dedupe: ['react', 'react-dom'] },
  build: { outDir: 'dist', emptyOutDir: true },
  logLevel: 'warn',
});
