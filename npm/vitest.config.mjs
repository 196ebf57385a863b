import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/hooks/**/*.test.{js,jsx,mjs,tsx}'],
    environment: 'jsdom',
    testTimeout: 30000,
    hookTimeout: 30000,
    // One bridge per file; files one after the other (2 cores shared with others).
    fileParallelism: false,
  },
  esbuild: { jsx: 'automatic' },
});
