// The CLI: declares commands and options (commander), lazily imports each command, and is the
// one error handler — known errors print one line, unknown ones their stack; the exit code says
// which (see errors.ts).

import { Command, CommanderError, Option } from 'commander';
import { rmSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { discardAllStagingSync } from '../pipeline/output-folder.js';
import { collect } from './common/options.js';
import { addFlags } from './common/flags.js';
import { CONVERT_FLAGS, type ConvertFlags } from './commands/convert-flags.js';
import { DEQUANT_FLAGS, type DequantFlags } from './commands/dequant-flags.js';
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

  program
    .command('inspect')
    .description('show what a checkpoint holds and what a convert would quantize')
    .argument('<dir>', 'model folder')
    .option('--json', 'print JSON')
    .action(async (dir: string, flags) => {
      const { inspectCommand } = await import('./commands/inspect.js');
      await inspectCommand(dir, flags);
    });

  program
    .command('check')
    .description('will this checkpoint load? per engine and tensor-parallel size, the engine rules it breaks, and what would fix it')
    .argument('<dir>', 'model folder (FP8: checked as stored; BF16/FP16: as fp8q convert would write it)')
    .option('--engine <list>', 'engines: vllm,sglang,mlc,transformers,deepseek (default all)')
    .option('--tp <list>', 'tensor-parallel sizes (default 1,2,4,8)')
    .option('--block <NxK>', 'BF16/FP16 input: the block a convert would use (default 128x128)')
    .option('--json', 'print JSON')
    .action(async (dir: string, flags) => {
      const { checkCommand } = await import('./commands/check.js');
      await checkCommand(dir, flags);
    });

  program
    .command('logits')
    .description("run a checkpoint's forward (original or FP8) and write its logits")
    .argument('<model>', 'model folder')
    .option('--input-ids <file>', 'safetensors file with "input_ids" I64 [B, T]')
    .option('--text <file|->', "plain text (a file, or - for stdin), tokenized with the model's tokenizer.json")
    .option('--dataset <file.jsonl|->', 'JSONL, one {"text": ...} record per line, tokenized the same way (- reads standard input)')
    .option('--seq-len <n>', 'tokens per row of text input (default 512, at most the model context)')
    .option('--max-samples <n>', 'most rows of text input')
    .option('--max-tokens <n>', 'most tokens of text input (default 1024)')
    .option('-o, --output <file>', 'where to write "logits" F32 [B, T, vocab] (safetensors; with text input also its "input_ids")')
    .option('--device <device>', 'auto, cpu or cuda', 'auto')
    .option('--threads <n>', 'onnxruntime intra-op threads (default: all cores)')
    .option('--force', 'replace an existing output file')
    .option('--json', 'print one JSON summary on stdout and nothing else')
    .option('-q, --quiet', 'no progress output')
    .action(async (model: string, flags) => {
      const { logitsCommand } = await import('./commands/logits.js');
      await logitsCommand(model, flags);
    });

  program
    .command('verify')
    .description('compare a quantized checkpoint with its original, layer by layer; exit 3 if a gate fails')
    .argument('<original>', 'original model folder')
    .argument('<quantized>', 'quantized model folder')
    .option('--input-ids <file>', 'token ids: safetensors file with "input_ids" I64 [B, T]')
    .option('--text <file|->', "plain text (a file, or - for stdin), tokenized with the model's tokenizer.json")
    .option('--dataset <file.jsonl|->', 'JSONL, one {"text": ...} record per line, tokenized the same way (- reads standard input)')
    .option('--seq-len <n>', 'tokens per row of text input (default 512, at most the model context)')
    .option('--max-samples <n>', 'most rows of text input')
    .option('--max-tokens <n>', 'most tokens of text input (default 1024)')
    .option('--tokens <n>', 'random token ids, this many (the default input only for a model without tokenizer.json: 32)')
    .option('--seed <n>', 'seed of the random token ids (default 0)')
    .option('--device <device>', 'auto, cpu or cuda', 'auto')
    .option('--threads <n>', 'onnxruntime intra-op threads (default: all cores)')
    .option('--max-kl <x>', 'largest mean KL(original ‖ quantized) per token (default 0.15)')
    .option('--min-top1 <x>', 'smallest top-1 agreement (default 0.5)')
    .option('--max-layer-rel-error <x>', 'largest relative error of any quantized linear (default 0.3)')
    .option('--max-layer-error-ratio <x>', "largest ratio of a linear's error to its FP8 floor, the original weights re-quantized the same way (default 2)")
    .option('--max-ppl-increase <percent>', 'largest perplexity increase on text input, percent (default 10)')
    .option('--allow-unverified', 'pass even when some quantized tensors were not run (experts no token reached)')
    .option('--junit <file>', 'also write the report as JUnit XML (one test case per gate and per quantized linear)')
    .option('--markdown <file>', 'also write the report as Markdown')
    .option('--no-summary', 'do not append the Markdown report to $GITHUB_STEP_SUMMARY')
    .option('--force', 'replace existing --junit/--markdown files')
    .option('--json', 'print one JSON report on stdout and nothing else')
    .option('-q, --quiet', 'no progress output')
    .action(async (original: string, quantized: string, flags) => {
      const { verifyCommand } = await import('./commands/verify.js');
      await verifyCommand(original, quantized, flags);
    });

  program
    .command('setup-cuda')
    .description("install ONNX Runtime's CUDA execution provider (CUDA 13) for --device cuda; --check only reports what --device auto picks")
    .argument('[source]', 'the provider package as a .tgz or unpacked folder (offline); default: fetched from the npm registry')
    .option('--check', 'install nothing; say which provider is there and what --device auto would pick')
    .option('--json', 'print one JSON report on stdout and nothing else')
    .action(async (source: string | undefined, flags) => {
      const { setupCudaCommand } = await import('./commands/setup-cuda.js');
      await setupCudaCommand(source, flags);
    });

  program
    .command('generate')
    .description("a model's continuation of a prompt, streamed; with --compare, an FP8 checkpoint's beside it")
    .argument('<model>', 'model folder (original or FP8)')
    .option('--prompt <text>', 'prompt text; repeatable', collect, [])
    .option('--prompts <file|->', 'more prompts, one per non-empty line (- reads standard input)')
    .option('--max-new-tokens <n>', 'most tokens generated per prompt (default 64)')
    .option('--temperature <x>', 'sampling temperature (default 0: greedy)')
    .option('--top-p <x>', 'sampling: keep the most likely tokens up to this probability (default 1)')
    .option('--seed <n>', 'sampling: seed of the random generator (default 0)')
    .option('--chat', "apply the tokenizer config's chat template to the prompt")
    .option('--compare <quantized-dir>', 'also run this (FP8) checkpoint on the same prompts and compare')
    .option('--no-cache', 'recompute the whole sequence at every step instead of using the KV cache')
    .addOption(new Option('--weights <mode>', 'keep weights in memory across steps, or stream them layer by layer').choices(['auto', 'resident', 'streamed']).default('auto'))
    .option('--device <device>', 'auto, cpu or cuda', 'auto')
    .option('--threads <n>', 'onnxruntime intra-op threads (default: all cores)')
    .option('--json', 'print one JSON document (ids, text, per-token log-probabilities) on stdout and nothing else')
    .option('-q, --quiet', 'no progress output')
    .action(async (model: string, flags) => {
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
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
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
