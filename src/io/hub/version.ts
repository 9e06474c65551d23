// fp8q's version, read from its package.json: the nearest one named "fp8q" above this module
// (src/io/hub/ when run from source, dist/io/hub/ when built).

import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** How far up to look: the module sits three folders below the package root. */
const MAX_LEVELS_UP = 6;

let cached: string | undefined;

export function fp8qVersion(): string {
  if (cached !== undefined) return cached;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < MAX_LEVELS_UP; i++) {
    try {
      const pkg: unknown = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
      if (typeof pkg === 'object' && pkg !== null) {
        const { name, version } = pkg as { name?: unknown; version?: unknown };
        if (name === 'fp8q' && typeof version === 'string') return (cached = version);
      }
    } catch {
      // no package.json here: keep going up
    }
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return (cached = 'unknown');
}
