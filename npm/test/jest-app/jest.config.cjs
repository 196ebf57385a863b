// Plain CommonJS tests: no Babel, no ts-jest (React.createElement instead of JSX). The
// package's own .wasm modules are mapped to a module that throws: realtime-bridge/testing
// must work without loading them.
module.exports = {
  testEnvironment: 'jsdom',
  testMatch: ['**/*.test.cjs'],
  transform: {},
  moduleNameMapper: {
    '/wasm/(realtime_bridge_sdk|bytes)\\.c?js$': '<rootDir>/wasm-must-not-load.cjs',
  },
};
