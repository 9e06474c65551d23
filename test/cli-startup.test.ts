// Start-up and runtime errors of the CLI: `fp8q --help`, `convert --help`, a plain dynamic convert,
// dequant and inspect never load onnxruntime-node, the ONNX graph builder or the tokenizers (a module-resolve hook in the
// child process lists what was loaded); a checkpoint the forward cannot run (no lm_head.weight,
// tie_word_embeddings false) is a one-line error with exit code 1, not an internal error.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { readCheckpointTensors, readJson, writeCheckpoint } from './helpers/checkpoint-files.js';
import { modelDir, ROOT } from './helpers/fixtures.js';
import { makeTempDir, type TempDir } from './helpers/temp-dir.js';

const CLI = join(ROOT, 'test/helpers/run-cli.ts');
// protobufjs: the ONNX graph builder's, which only the commands that run a model need.
const HEAVY = /onnxruntime-node|@huggingface\/tokenizers|protobufjs/;

describe('CLI start-up and runtime errors', () => {
  let tmp: TempDir;
  let hook: string;
  before(async () => {
    tmp = await makeTempDir('cli-startup');
    const hooks = join(tmp.path, 'hooks.mjs');
    await writeFile(
      hooks,
      `export async function resolve(s, c, next) { const r = await next(s, c); if (${HEAVY}.test(r.url)) process.stderr.write('LOADED ' + r.url + '\\n'); return r; }\n`,
    );
    hook = join(tmp.path, 'register.mjs');
    await writeFile(hook, `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(hooks).href)});\n`);
  });
  after(() => tmp.cleanup());

  function run(args: readonly string[]): { status: number | null; stderr: string; stdout: string } {
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--import', pathToFileURL(hook).href, CLI, ...args], { cwd: ROOT, encoding: 'utf8' });
    return { status: r.status, stderr: r.stderr, stdout: r.stdout };
  }

  test('--help, convert --help, a dynamic convert, dequant and inspect load neither onnxruntime, protobufjs nor the tokenizers', () => {
    const out = join(tmp.path, 'llama-fp8');
    const runs: [string, readonly string[]][] = [
      ['--help', ['--help']],
      ['convert --help', ['convert', '--help']],
      ['convert', ['convert', modelDir('llama'), '-o', out, '-q']],
      ['dequant', ['dequant', out, '-o', join(tmp.path, 'llama-bf16'), '-q']],
      ['inspect', ['inspect', out]],
    ];
    for (const [what, args] of runs) {
      const r = run(args);
      assert.equal(r.status, 0, `${what}: ${r.stderr}`);
      assert.doesNotMatch(r.stderr, /LOADED/, `${what} loaded: ${r.stderr}`);
    }
    // The hook itself works: logits does load onnxruntime.
    const probe = run([
      'logits',
      modelDir('llama'),
      '--input-ids',
      join(ROOT, 'fixtures/models/llama.logits.safetensors'),
      '-o',
      join(tmp.path, 'l.safetensors'),
      '--device',
      'cpu',
      '-q',
    ]);
    assert.equal(probe.status, 0, probe.stderr);
    assert.match(probe.stderr, /LOADED .*onnxruntime-node/);
  });

  test('a checkpoint without lm_head.weight is a one-line error, exit 1', async () => {
    const dir = join(tmp.path, 'no-head');
    const tensors = await readCheckpointTensors(modelDir('llama'));
    tensors.delete('lm_head.weight');
    const config = { ...(await readJson(join(modelDir('llama'), 'config.json'))), tie_word_embeddings: false };
    await writeCheckpoint(dir, tensors, { config });
    const r = run(['logits', dir, '--input-ids', join(ROOT, 'fixtures/models/llama.logits.safetensors'), '-o', join(tmp.path, 'x.safetensors'), '--device', 'cpu', '-q']);
    assert.equal(r.status, 1, r.stderr);
    assert.doesNotMatch(r.stderr, /internal error/);
    assert.match(r.stderr, /no lm_head\.weight/);
  });
});
