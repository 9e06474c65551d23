// The typed flag tables (src/cli/common/flags.ts): options registered from a table, in its order,
// with defaults, choices and repeatable values; a table key commander reads differently is refused;
// readFlags turns the raw flags into the options object; every command's options and --help come
// from its table (snapshots in fixtures/cli-help/).

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { Command } from 'commander';
import { addFlags, choiceOf, readFlags, type FlagTable } from '../src/cli/common/flags.js';
import { UsageError } from '../src/cli/common/errors.js';
import { numberIn, parseBlock, parsePositiveInt } from '../src/cli/common/options.js';
import { buildProgram } from '../src/cli/index.js';
import { CHECK_FLAGS } from '../src/cli/commands/check-flags.js';
import { CONVERT_FLAGS } from '../src/cli/commands/convert-flags.js';
import { DEQUANT_FLAGS } from '../src/cli/commands/dequant-flags.js';
import { GENERATE_FLAGS } from '../src/cli/commands/generate-flags.js';
import { INSPECT_FLAGS } from '../src/cli/commands/inspect-flags.js';
import { LOGITS_FLAGS } from '../src/cli/commands/logits-flags.js';
import { SETUP_CUDA_FLAGS } from '../src/cli/commands/setup-cuda-flags.js';
import { VERIFY_FLAGS } from '../src/cli/commands/verify-flags.js';
import { ROOT } from './helpers/fixtures.js';

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

const TABLES: Readonly<Record<string, FlagTable>> = {
  convert: CONVERT_FLAGS,
  dequant: DEQUANT_FLAGS,
  inspect: INSPECT_FLAGS,
  check: CHECK_FLAGS,
  logits: LOGITS_FLAGS,
  verify: VERIFY_FLAGS,
  'setup-cuda': SETUP_CUDA_FLAGS,
  generate: GENERATE_FLAGS,
};

test("every command's options are its table's rows, in order, with the table's flags and help text", () => {
  const program = buildProgram();
  assert.deepEqual(program.commands.map((c) => c.name()).sort(), Object.keys(TABLES).sort());
  for (const cmd of program.commands) {
    const table = TABLES[cmd.name()]!;
    assert.deepEqual(
      cmd.options.map((o) => [o.attributeName(), o.flags, o.description]),
      Object.entries(table).map(([key, def]) => [key, def.spec, def.description]),
      cmd.name(),
    );
  }
});

test('fp8q --help and each command --help print what fixtures/cli-help/ holds', async () => {
  const program = buildProgram();
  // What a pipe gets: 80 columns, no colour, whatever terminal runs the tests.
  const helpOf = (cmd: Command): string => cmd.configureOutput({ ...cmd.configureOutput(), getOutHelpWidth: () => 80, getOutHasColors: () => false }).helpInformation();
  for (const [name, cmd] of [['fp8q', program] as const, ...program.commands.map((c) => [c.name(), c] as const)]) {
    const expected = await readFile(join(ROOT, 'fixtures', 'cli-help', `${name}.txt`), 'utf8');
    assert.equal(helpOf(cmd), expected, `${name} --help differs from fixtures/cli-help/${name}.txt (see its README to update it)`);
  }
});

const READ = {
  block: { spec: '--block <NxK>', description: 'block', kind: 'string', default: '128x128', parse: parseBlock },
  maxShards: { spec: '--max-shards <n>', description: 'n', kind: 'string', parse: parsePositiveInt, to: 'shards' },
  ratio: { spec: '--ratio <x>', description: 'x', kind: 'string', parse: numberIn(0, 1) },
  mode: { spec: '--mode <m>', description: 'mode', kind: 'string', choices: ['a', 'b', 'c'] },
  exclude: { spec: '--exclude <p>', description: 'repeatable', kind: 'list', parse: (t: string) => t.toUpperCase() },
  dryRun: { spec: '--dry-run', description: 'switch', kind: 'boolean', to: 'preview' },
  cache: { spec: '--no-cache', description: 'negated switch', kind: 'boolean' },
  note: { spec: '--note <text>', description: 'free text', kind: 'string' },
} as const satisfies FlagTable;

test('readFlags: each value parsed by its row into its field; absent values take the default, false, true for --no-x, or []', () => {
  const empty = readFlags(READ, {});
  assert.deepEqual(empty, { block: { bn: 128, bk: 128 }, exclude: [], preview: false, cache: true });
  const full = readFlags(READ, { block: '64x32', maxShards: '3', ratio: '0.25', mode: 'c', exclude: ['a', 'b'], dryRun: true, cache: false, note: 'n' });
  assert.deepEqual(full, { block: { bn: 64, bk: 32 }, shards: 3, ratio: 0.25, mode: 'c', exclude: ['A', 'B'], preview: true, cache: false, note: 'n' });
  // The types follow the table: a parsed field has its parser's type, a renamed one its new name.
  const shards: number | undefined = full.shards;
  const mode: 'a' | 'b' | 'c' | undefined = full.mode;
  assert.deepEqual([shards, mode], [3, 'c']);
});

test("readFlags: a bad value is a UsageError naming the flag, with the parser's message", () => {
  const refused = (flags: Parameters<typeof readFlags<typeof READ>>[1], message: RegExp) =>
    assert.throws(
      () => readFlags(READ, flags),
      (e: unknown) => e instanceof UsageError && message.test(e.message),
    );
  refused({ block: '12' }, /^invalid --block "12": expected NxK with positive integers, e\.g\. 128x128$/);
  refused({ maxShards: '0' }, /^invalid --max-shards "0": expected a positive integer$/);
  refused({ ratio: '1.5' }, /^invalid --ratio "1\.5": expected a number in \[0, 1\]$/);
  refused({ ratio: ' ' }, /^invalid --ratio " ": expected a number in \[0, 1\]$/);
  // A choice from a caller in code is checked against the same list commander enforces.
  refused({ mode: 'd' }, /^invalid --mode "d": expected a, b or c$/);
});
