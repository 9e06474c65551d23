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
    .argument('<source>', 'model folder or Hugging Face Hub repo id (org/name)')
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
    .option('--mla-split', 'MLA models (kv_lora_rank): also write self_attn.w_uk / w_uv in FP8 (MLC LLM layout)')
    .option('--stack-experts', 'write per-expert MoE weights as stacked [E, N, K] experts.gate_up_proj / down_proj')
    .option('--requantize', 'accept an FP8 input: dequantize it to float32 on the fly and quantize it again')
    .option('--threads <n>', 'worker threads quantizing (default: available cores)')
    .addOption(new Option('--activation-scheme <scheme>', 'dynamic, or static: activation scales measured on --calibration data').choices(['dynamic', 'static']))
    .option('--calibration <file>', 'static: calibration text (one sample per line), JSONL of {"text": ...}, or input_ids .safetensors')
    .option('--calibration-samples <n>', 'static: samples used (default 128)')
    .option('--calibration-seq-len <n>', 'static: tokens per sample (default 512)')
    .addOption(new Option('--calibration-split <mode>', 'static: sample (each line/record/row, cut to seq-len) or chunk (all text cut in seq-len pieces)').choices(['sample', 'chunk']))
    .addOption(new Option('--calibration-device <device>', 'static: where the calibration forward runs (default auto)').choices(['auto', 'cpu', 'cuda']))
    .addOption(
      new Option('--activation-scale-granularity <g>', 'static: group (one scale per bk input channels, MLC LLM) or tensor (one scalar, transformers)').choices(['group', 'tensor']),
    )
    .option('--revision <rev>', 'Hub source: branch, tag or commit (default main)')
    .option('--hub-url <url>', 'Hub endpoint (default $HF_ENDPOINT or https://huggingface.co)')
    .option('--push-to <org/name>', 'upload the converted folder to this Hub repo, with a generated model card')
    .option('--private', 'with --push-to: create the repo private')
    .option('--json', 'print one JSON summary on stdout and nothing else')
    .option('-q, --quiet', 'no progress output')
    .action(async (source: string, flags) => {
      const { convertCommand } = await import('./commands/convert.js');
      await convertCommand(source, flags);
    });

  program
    .command('dequant')
    .description('write an FP8 checkpoint back as BF16/FP16 (fp8 × scale_inv, rounded once), quantization_config removed')
    .argument('<source>', 'FP8 model folder (DeepSeek-V3, Qwen3-FP8, transformers or fp8q layout)')
    .option('-o, --output <dir>', 'output folder (written atomically)')
    .option('--dtype <dtype>', 'bfloat16 or float16', 'bfloat16')
    .option('--max-shard-size <size>', 'largest output shard', '5GB')
    .option('--force', 'replace a non-empty output folder')
    .option('--json', 'print one JSON summary on stdout and nothing else')
    .option('-q, --quiet', 'no progress output')
    .action(async (source: string, flags) => {
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
    .command('logits')
    .description("run a checkpoint's forward (original or FP8) and write its logits")
    .argument('<model>', 'model folder')
    .option('--input-ids <file>', 'safetensors file with "input_ids" I64 [B, T]')
    .option('--text <file|->', "plain text (a file, or - for stdin), tokenized with the model's tokenizer.json")
    .option('--dataset <file.jsonl>', 'JSONL, one {"text": ...} record per line, tokenized the same way')
    .option('--seq-len <n>', 'tokens per row of text input (default 512, at most the model context)')
    .option('--max-samples <n>', 'most rows of text input')
    .option('--max-tokens <n>', 'most tokens of text input (default 1024)')
    .option('-o, --output <file>', 'where to write "logits" F32 [B, T, vocab] (safetensors; with text input also its "input_ids")')
    .option('--device <device>', 'auto, cpu or cuda', 'auto')
    .option('--threads <n>', 'onnxruntime intra-op threads (default: all cores)')
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
    .option('--dataset <file.jsonl>', 'JSONL, one {"text": ...} record per line, tokenized the same way')
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
    .option('--json', 'print one JSON report on stdout and nothing else')
    .option('-q, --quiet', 'no progress output')
    .action(async (original: string, quantized: string, flags) => {
      const { verifyCommand } = await import('./commands/verify.js');
      await verifyCommand(original, quantized, flags);
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
