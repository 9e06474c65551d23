// Helpers of the hostile-use tests: a tiny synthetic Llama checkpoint written in the test, and the
// JSON error object a failed `--json` run prints on stdout.

import assert from 'node:assert/strict';
import { writeCheckpoint, type TensorData } from './checkpoint-files.js';
import type { CliResult } from './safety.js';
import { bf16Tensor } from './synthetic-moe.js';

export const LLAMA_CONFIG = { architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 128, intermediate_size: 128, num_hidden_layers: 1 };

/** Tensors of a one-layer Llama-shaped checkpoint: two quantizable linears, a norm, an lm_head. */
export function tinyLlamaTensors(): Map<string, TensorData> {
  return new Map<string, TensorData>([
    ['model.layers.0.mlp.down_proj.weight', bf16Tensor([128, 128], 1)],
    ['model.layers.0.mlp.up_proj.weight', bf16Tensor([128, 128], 2)],
    ['model.norm.weight', bf16Tensor([128], 3)],
    ['lm_head.weight', bf16Tensor([64, 128], 4)],
  ]);
}

export async function writeTinyLlama(dir: string, opts: { tensors?: Map<string, TensorData>; shards?: number; files?: Record<string, string> } = {}): Promise<void> {
  await writeCheckpoint(dir, opts.tensors ?? tinyLlamaTensors(), {
    config: LLAMA_CONFIG,
    ...(opts.shards !== undefined ? { shards: opts.shards } : {}),
    ...(opts.files !== undefined ? { files: opts.files } : {}),
  });
}

/** A failed --json run: exactly one JSON object on stdout with `error.code` = `code` and the exit code. */
export function assertJsonError(result: CliResult, code: string, exitCode?: number): { code: string; message: string; exitCode: number } {
  assert.notEqual(result.code, 0, `expected a failure; stderr: ${result.stderr}`);
  let parsed: { error?: { code: string; message: string; exitCode: number } };
  try {
    parsed = JSON.parse(result.stdout) as typeof parsed;
  } catch {
    assert.fail(`stdout is not one JSON document: ${JSON.stringify(result.stdout)}; stderr: ${result.stderr}`);
  }
  assert.ok(parsed.error, `no error object: ${result.stdout}`);
  assert.equal(parsed.error.code, code, `${parsed.error.message}`);
  assert.equal(parsed.error.exitCode, result.code);
  if (exitCode !== undefined) assert.equal(result.code, exitCode);
  return parsed.error;
}
