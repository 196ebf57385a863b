// The package is linked from ../.. (a file: dependency): its folder is the root Turbopack
// may read from (and the one whose lock file it would otherwise guess from).
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export default { turbopack: { root }, outputFileTracingRoot: root };
