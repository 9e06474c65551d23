// The typed flag tables (src/cli/common/flags.ts): options registered from a table, in its order,
// with defaults, choices and repeatable values; a table key commander reads differently is refused.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Command } from 'commander';
import { addFlags, choiceOf, type FlagTable } from '../src/cli/common/flags.js';
import { UsageError } from '../src/cli/common/errors.js';
import { CONVERT_FLAGS } from '../src/cli/commands/convert-flags.js';
import { DEQUANT_FLAGS } from '../src/cli/commands/dequant-flags.js';

const TABLE = {
  output: { spec: '-o, --output <dir>', description: 'where', kind: 'string' },
  block: { spec: '--block <NxK>', description: 'block', kind: 'string', default: '128x128' },
  mode: { spec: '--mode <m>', description: 'mode', kind: 'string', choices: ['a', 'b'], default: 'a' },
  exclude: { spec: '--exclude <p>', description: 'repeatable', kind: 'list' },
  dryRun: { spec: '--dry-run', description: 'switch', kind: 'boolean' },
} as const satisfies FlagTable;

function parse(args: string[]): Record<string, unknown> {
  const cmd = addFlags(new Command('x').exitOverride().configureOutput({ writeErr: () => undefined }), TABLE);
  cmd.parse(args, { from: 'user' });
  return cmd.opts();
}

test('a table registers its options with defaults, choices and repeatable values', () => {
  assert.deepEqual(parse([]), { block: '128x128', mode: 'a', exclude: [] });
  assert.deepEqual(parse(['-o', 'out', '--mode', 'b', '--exclude', 'p', '--exclude', 'q', '--dry-run']), {
    output: 'out',
    block: '128x128',
    mode: 'b',
    exclude: ['p', 'q'],
    dryRun: true,
  });
  assert.throws(() => parse(['--mode', 'c']), /argument 'c' is invalid/);
});

test('a table key that is not the name commander reads is refused', () => {
  assert.throws(() => addFlags(new Command('x'), { outDir: { spec: '--output <dir>', description: 'x', kind: 'string' } }), /read as output, not outDir/);
});

test('choiceOf checks a value in code against the same list, absent → the default', () => {
  assert.equal(choiceOf(CONVERT_FLAGS.scaleFmt, undefined), 'float');
  assert.equal(choiceOf(CONVERT_FLAGS.scaleFmt, 'ue8m0'), 'ue8m0');
  assert.throws(
    () => choiceOf(CONVERT_FLAGS.scaleFmt, 'bogus'),
    (e: unknown) => e instanceof UsageError && /invalid --scale-fmt "bogus": expected float or ue8m0/.test(e.message),
  );
});

test('convert and dequant register every flag of their tables, in order', () => {
  for (const table of [CONVERT_FLAGS, DEQUANT_FLAGS]) {
    const cmd = addFlags(new Command('x'), table);
    assert.deepEqual(
      cmd.options.map((o) => o.attributeName()),
      Object.keys(table),
    );
  }
});
