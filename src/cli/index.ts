// The CLI: declares commands and options (commander), lazily imports each command, and is the
// one error handler — known errors print one line, unknown ones their stack; the exit code says
// which (see errors.ts).

import { Command, CommanderError, Option } from 'commander';
import { rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { discardAllStagingSync } from '../io/output-folder.js';
import { collect } from './options.js';
import { redactSecrets } from './redact.js';
import { describeError, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, exitCodeOf, isKnownError } from './errors.js';

export function version(): string {
  const require = createRequire(import.meta.url);
  return (require('../../package.json') as { version: string }).version;
}

export function buildProgram(): Command {
  const program = new Command('fp8q')
    .description('Convert LLM safetensors checkpoints to block-scale FP8, and verify them')
    .version(version())
    .exitOverride()
    .configureOutput({ outputError: () => undefined })
    .showHelpAfterError(false);

  program
    .command('convert')
    .description('quantize a BF16/FP16/FP32 checkpoint to block-scale FP8')
    .argument('<source>', 'model folder')
    .option('-o, --output <dir>', 'output folder (written atomically)')
    .option('--block <NxK>', 'block size (rows x columns of each scale block)', '128x128')
    .option('--weight-dtype <dtype>', 'float8_e4m3fn or float8_e5m2', 'float8_e4m3fn')
    .addOption(new Option('--scale-fmt <fmt>', 'block scale format').choices(['float', 'ue8m0']).default('float'))
    .addOption(
      new Option('--format <layout>', 'checkpoint layout: hf (weight_scale_inv, quant_method fp8) or compressed-tensors (llm-compressor FP8_BLOCK)')
        .choices(['hf', 'compressed-tensors'])
        .default('hf'),
    )
    .option('--exclude <pattern>', 'keep matching modules unquantized (module suffix, or re:<regex>); repeatable', collect, [])
    .option('--max-shard-size <size>', 'largest output shard', '5GB')
    .option('--dry-run', 'print the plan, write nothing')
    .option('--force', 'replace a non-empty output folder')
    .option('--allow-nonfinite', 'saturate ±Inf to ±FP8 max and NaN to 0 instead of failing')
    .option('--json', 'print one JSON summary on stdout and nothing else')
    .option('-q, --quiet', 'no progress output')
    .action(async (source: string, flags) => {
      const { convertCommand } = await import('./commands/convert.js');
      await convertCommand(source, flags);
    });

  program
    .command('inspect')
    .description('show what a checkpoint holds and what a convert would quantize')
    .argument('<dir>', 'model folder')
    .option('--json', 'print JSON')
    .action(async (dir: string, flags) => {
      const { inspectCommand } = await import('./commands/inspect.js');
      await inspectCommand(dir, flags);
    });

  return program;
}

/** Runs the CLI and returns the exit code (never throws, never calls process.exit). */
export async function main(argv: readonly string[]): Promise<number> {
  const onSignal = (signal: NodeJS.Signals): void => {
    // A conversion in flight leaves only its staging folder: remove it, then stop.
    discardAllStagingSync(rmSync);
    process.stderr.write(`\nfp8q: interrupted by ${signal}; partial output removed\n`);
    process.exit(EXIT_INTERRUPTED);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    await buildProgram().parseAsync([...argv]);
    return EXIT_OK;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.exitCode === 0 || e.code === 'commander.helpDisplayed' || e.code === 'commander.version') return EXIT_OK;
      // No command given: commander has already printed the help on stderr; its message is "(outputHelp)".
      if (e.code === 'commander.help') return EXIT_USAGE;
      process.stderr.write(redactSecrets(`fp8q: ${e.message.replace(/^error: /, '')}\n`));
      return EXIT_USAGE;
    }
    // Every message is redacted: an error may quote a path, URL or header holding an HF token.
    if (isKnownError(e)) {
      process.stderr.write(redactSecrets(`fp8q: ${describeError(e)}\n`));
      return exitCodeOf(e);
    }
    process.stderr.write(redactSecrets(`fp8q: internal error (please report it):\n${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`));
    return 1;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
