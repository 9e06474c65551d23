// The CLI: wires each command (its arguments, and its options from its table in
// commands/<command>-flags.ts) to commander, lazily imports each command, and is the
// one error handler — known errors print one line, unknown ones their stack; the exit code says
// which (see errors.ts).

import { Command, CommanderError } from 'commander';
import { rmSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { discardAllStagingSync } from '../pipeline/output-folder.js';
import { addFlags } from './common/flags.js';
import { CHECK_FLAGS, type CheckFlags } from './commands/check-flags.js';
import { CONVERT_FLAGS, type ConvertFlags } from './commands/convert-flags.js';
import { DEQUANT_FLAGS, type DequantFlags } from './commands/dequant-flags.js';
import { GENERATE_FLAGS, type GenerateFlags } from './commands/generate-flags.js';
import { INSPECT_FLAGS, type InspectFlags } from './commands/inspect-flags.js';
import { LOGITS_FLAGS, type LogitsFlags } from './commands/logits-flags.js';
import { SETUP_CUDA_FLAGS, type SetupCudaFlags } from './commands/setup-cuda-flags.js';
import { VERIFY_FLAGS, type VerifyFlags } from './commands/verify-flags.js';
import { redactSecrets } from './common/redact.js';
import { describeError, EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED, EXIT_USAGE, ExitError, exitCodeOf, isKnownError } from './common/errors.js';
import { errorCodeOf, type ErrorCode } from './common/error-codes.js';

export function version(): string {
  const require = createRequire(import.meta.url);
  return (require('../../package.json') as { version: string }).version;
}

export function buildProgram(): Command {
  const program = new Command('fp8q')
    .description('Convert LLM safetensors checkpoints to block-scale FP8, and verify them')
    // main() answers --version itself (with the runtime's versions); this declares it for --help.
    .version(version(), '-V, --version', 'print the versions of fp8q, Node and onnxruntime-node, and the execution providers')
    .exitOverride()
    .configureOutput({ outputError: () => undefined })
    .showHelpAfterError(false);

  addFlags(
    program.command('convert').description('quantize a BF16/FP16/FP32 checkpoint to block-scale FP8').argument('<source>', 'model folder or Hugging Face Hub repo id (org/name)'),
    CONVERT_FLAGS,
  ).action(async (source: string, flags: ConvertFlags) => {
    const { convertCommand } = await import('./commands/convert.js');
    await convertCommand(source, flags);
  });

  addFlags(
    program
      .command('dequant')
      .description('write an FP8 checkpoint back as BF16/FP16 (fp8 × scale_inv, rounded once), quantization_config removed')
      .argument('<source>', 'FP8 model folder (DeepSeek-V3, Qwen3-FP8, transformers or fp8q layout)'),
    DEQUANT_FLAGS,
  ).action(async (source: string, flags: DequantFlags) => {
    const { dequantCommand } = await import('./commands/dequant.js');
    await dequantCommand(source, flags);
  });

  addFlags(program.command('inspect').description('show what a checkpoint holds and what a convert would quantize').argument('<dir>', 'model folder'), INSPECT_FLAGS).action(
    async (dir: string, flags: InspectFlags) => {
      const { inspectCommand } = await import('./commands/inspect.js');
      await inspectCommand(dir, flags);
    },
  );

  addFlags(
    program
      .command('check')
      .description('will this checkpoint load? per engine and tensor-parallel size, the engine rules it breaks, and what would fix it')
      .argument('<dir>', 'model folder (FP8: checked as stored; BF16/FP16: as fp8q convert would write it)'),
    CHECK_FLAGS,
  ).action(async (dir: string, flags: CheckFlags) => {
    const { checkCommand } = await import('./commands/check.js');
    await checkCommand(dir, flags);
  });

  addFlags(program.command('logits').description("run a checkpoint's forward (original or FP8) and write its logits").argument('<model>', 'model folder'), LOGITS_FLAGS).action(
    async (model: string, flags: LogitsFlags) => {
      const { logitsCommand } = await import('./commands/logits.js');
      await logitsCommand(model, flags);
    },
  );

  addFlags(
    program
      .command('verify')
      .description('compare a quantized checkpoint with its original, layer by layer; exit 3 if a gate fails')
      .argument('<original>', 'original model folder')
      .argument('<quantized>', 'quantized model folder'),
    VERIFY_FLAGS,
  ).action(async (original: string, quantized: string, flags: VerifyFlags) => {
    const { verifyCommand } = await import('./commands/verify.js');
    await verifyCommand(original, quantized, flags);
  });

  addFlags(
    program
      .command('setup-cuda')
      .description("install ONNX Runtime's CUDA execution provider (CUDA 13) for --device cuda; --check only reports what --device auto picks")
      .argument('[source]', 'the provider package as a .tgz or unpacked folder (offline); default: fetched from the npm registry'),
    SETUP_CUDA_FLAGS,
  ).action(async (source: string | undefined, flags: SetupCudaFlags) => {
    const { setupCudaCommand } = await import('./commands/setup-cuda.js');
    await setupCudaCommand(source, flags);
  });

  addFlags(
    program
      .command('generate')
      .description("a model's continuation of a prompt, streamed; with --compare, an FP8 checkpoint's beside it")
      .argument('<model>', 'model folder (original or FP8)'),
    GENERATE_FLAGS,
  ).action(async (model: string, flags: GenerateFlags) => {
    const { generateCommand } = await import('./commands/generate.js');
    await generateCommand(model, flags);
  });

  return program;
}

/** True when the command line asks for JSON (`--json` before any `--`): failures are then JSON too. */
export function wantsJson(argv: readonly string[]): boolean {
  const end = argv.indexOf('--');
  return (end === -1 ? argv : argv.slice(0, end)).includes('--json');
}

/** The JSON a failed command prints on stdout with --json: one object, `error.code` from src/cli/common/error-codes.ts. */
export function jsonError(code: ErrorCode, message: string, exitCode: number): string {
  return `${JSON.stringify({ error: { code, exitCode, message } }, null, 2)}\n`;
}

/** Runs the CLI and returns the exit code (never throws, never calls process.exit). */
export async function main(argv: readonly string[]): Promise<number> {
  const json = wantsJson(argv.slice(2));
  const fail = (code: ErrorCode, message: string, exitCode: number): number => {
    const text = redactSecrets(message);
    process.stderr.write(`fp8q: ${text}\n`);
    if (json) process.stdout.write(redactSecrets(jsonError(code, text.split('\n')[0]!, exitCode)));
    return exitCode;
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    // A run in flight leaves only its staging folders and temporary files: remove them, then stop.
    discardAllStagingSync(rmSync);
    const exitCode = signal === 'SIGTERM' ? EXIT_TERMINATED : EXIT_INTERRUPTED;
    // Only the commands that write have partial output to speak of.
    const command = argv.slice(2).find((a) => !a.startsWith('-'));
    const writes = command === 'convert' || command === 'dequant' || command === 'logits' || command === 'setup-cuda';
    const message = writes ? `interrupted by ${signal}; partial output removed` : `interrupted by ${signal}`;
    // Synchronous writes: process.exit does not wait for a piped stream to drain.
    writeSync(2, `\nfp8q: ${message}\n`);
    if (json) writeSync(1, jsonError('E_INTERRUPTED', message, exitCode));
    process.exit(exitCode);
  };
  // `on`, not `once`: a terminal's Ctrl-C reaches both bin/fp8q.js's relaunching parent and this
  // process, and the parent passes it on too. With the listener gone after the first, node would
  // restore the default action and the second signal could end the process half-way through the
  // cleanup (the handler itself ends in process.exit, so a second run of it never starts).
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const args = argv.slice(2);
    // `--version` alone, or with --json (one document) / --quiet, which it would otherwise shadow.
    if (args.some((a) => a === '--version' || a === '-V') && args.every((a) => ['--version', '-V', '--json', '--quiet', '-q'].includes(a))) {
      const { versionInfo, versionLines } = await import('./commands/version.js');
      if (args.includes('--json')) process.stdout.write(`${JSON.stringify(await versionInfo(version()), null, 2)}\n`);
      else process.stdout.write(`${(await versionLines(version())).join('\n')}\n`);
      return EXIT_OK;
    }
    await buildProgram().parseAsync([...argv]);
    return EXIT_OK;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.exitCode === 0 || e.code === 'commander.helpDisplayed' || e.code === 'commander.version') return EXIT_OK;
      // No command given: commander has already printed the help on stderr; its message is "(outputHelp)".
      if (e.code === 'commander.help') return json ? fail('E_USAGE', 'no command given: see fp8q --help', EXIT_USAGE) : EXIT_USAGE;
      return fail('E_USAGE', e.message.replace(/^error: /, ''), EXIT_USAGE);
    }
    // Every message is redacted: an error may quote a path, URL or header holding an HF token.
    if (isKnownError(e)) {
      const exitCode = exitCodeOf(e);
      if (e instanceof ExitError && e.jsonPrinted) {
        process.stderr.write(redactSecrets(`fp8q: ${describeError(e)}\n`));
        return exitCode;
      }
      return fail(errorCodeOf(e), describeError(e), exitCode);
    }
    return fail('E_INTERNAL', `internal error (please report it):\n${e instanceof Error ? (e.stack ?? e.message) : String(e)}`, 1);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
