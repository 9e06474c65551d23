// The three fixture models converted with default settings into a temp folder, once per test file
// (before/after hooks), for tests that run the quantized forward or verify.

import { after, before } from 'node:test';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { convertCheckpoint } from '../../src/pipeline/convert-checkpoint.js';
import { FIXTURE_MODELS, modelDir } from './fixtures.js';

export interface ConvertedFixtures {
  /** Fixture name → converted folder; filled in `before`. */
  readonly converted: Map<string, string>;
  /** The temp folder (removed in `after`), for a test's own extra outputs. */
  workDir(): string;
}

/** Registers the hooks that convert every fixture before the file's tests and clean up after. */
export function useConvertedFixtures(prefix: string): ConvertedFixtures {
  const converted = new Map<string, string>();
  let work: string | undefined;
  before(async () => {
    work = await mkdtemp(join(tmpdir(), `${prefix}-`));
    for (const name of FIXTURE_MODELS) {
      const out = join(work, name);
      await convertCheckpoint({ input: modelDir(name), output: out });
      converted.set(name, out);
    }
  });
  after(async () => {
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });
  return {
    converted,
    workDir: () => {
      if (work === undefined) throw new Error('useConvertedFixtures: workDir() called before the before() hook ran');
      return work;
    },
  };
}
