// ESLint (flat config) for the package's TypeScript sources: `npm run lint`, zero warnings
// allowed. typescript-eslint's recommended rules, and React's hooks rules including the React
// Compiler ones (`refs`: no ref read or written during render, `purity`, `set-state-in-render`,
// ...). The generated wasm-bindgen glue in src/wasm/ is not ours to lint.
import js from '@eslint/js';
import reactHooks from 'eslint-plugin-react-hooks';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'pkg/', 'src/wasm/', 'node_modules/', 'test/', 'test-results/'] },
  {
    files: ['src/**/*.{ts,tsx}'],
    extends: [js.configs.recommended, ...tseslint.configs.recommended, reactHooks.configs.flat['recommended-latest']],
    linterOptions: {
      // A disable comment that no longer silences anything is an error, not dead weight.
      reportUnusedDisableDirectives: 'error',
    },
  },
);
