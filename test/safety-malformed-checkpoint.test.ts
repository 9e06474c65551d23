// Malformed checkpoint folders: an index naming a missing shard, a path outside the folder, or a
// tensor its shard lacks is refused with one line saying what and where (and nothing written);
// a missing or broken config.json is not fatal: convert goes on by the generic rules and says so;
// a config whose vocab_size is not the head's height stops verify and logits with one line.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { cp, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Checkpoint } from '../src/io/checkpoint/checkpoint.js';
import { CheckpointError } from '../src/io/errors.js';
import type { ConvertSummary } from '../src/pipeline/convert-checkpoint.js';
import { readJson, reshardFixture } from './helpers/checkpoint-files.js';
import { MODELS, modelDir } from './helpers/fixtures.js';
import { assertNoOutputLeft, assertOneLineFailure, rawSafetensors, runCli } from './helpers/safety.js';
import { makeTempDir, type TempDir } from './helpers/temp-dir.js';

const INDEX = 'model.safetensors.index.json';
const SHARD2 = 'model-00002-of-00003.safetensors';

let tmp: TempDir;
let sharded: string;
let caseNo = 0;

before(async () => {
  tmp = await makeTempDir('malformed-ckpt');
  sharded = join(tmp.path, 'llama-sharded');
  await reshardFixture(modelDir('llama'), sharded, 3);
});
after(async () => tmp.cleanup());

/** A fresh copy of the sharded Llama, its index passed through `edit`. */
async function withIndex(edit: (index: { weight_map: Record<string, string> }) => unknown): Promise<string> {
  const dir = join(tmp.path, `case-${caseNo++}`);
  await cp(sharded, dir, { recursive: true });
  const index = (await readJson(join(dir, INDEX))) as { weight_map: Record<string, string> };
  const edited = edit(index) ?? index;
  await writeFile(join(dir, INDEX), typeof edited === 'string' ? edited : JSON.stringify(edited));
  return dir;
}

/** Convert must fail with one line matching `patterns`, exit 1 and leave no output. */
async function assertConvertRefused(dir: string, ...patterns: (RegExp | string)[]): Promise<void> {
  const out = join(tmp.path, `out-${caseNo++}`);
  const result = await runCli(['convert', dir, '-o', out, '--quiet']);
  assert.equal(result.code, 1);
  assertOneLineFailure(result, ...patterns);
  await assertNoOutputLeft(out);
}

describe('malformed index', () => {
  test('weight_map names a shard that is not in the folder', async () => {
    const dir = await withIndex((ix) => {
      ix.weight_map['model.norm.weight'] = 'model-00004-of-00004.safetensors';
    });
    await assert.rejects(Checkpoint.open(dir), CheckpointError);
    await assertConvertRefused(dir, join(dir, INDEX), 'names shard "model-00004-of-00004.safetensors", which is not in the folder: the download is incomplete');
  });

  for (const [label, target] of [
    ['a parent-relative path', '../llama-sharded/model-00001-of-00003.safetensors'],
    ['a path that climbs out through a subfolder', 'sub/../../x.safetensors'],
    ['an absolute path', '/etc/passwd'],
    ['a Windows-style path', '..\\x.safetensors'],
  ] as const) {
    test(`weight_map points outside the folder: ${label}`, async () => {
      const dir = await withIndex((ix) => {
        ix.weight_map['model.norm.weight'] = target;
      });
      await assertConvertRefused(dir, `weight_map["model.norm.weight"] = ${JSON.stringify(target)} points outside the model folder; refusing to read it`);
    });
  }

  test('a tensor listed in the index is absent from its shard', async () => {
    const dir = await withIndex((ix) => {
      ix.weight_map['model.layers.9.mlp.up_proj.weight'] = SHARD2;
    });
    await assertConvertRefused(dir, join(dir, INDEX), 'maps tensor "model.layers.9.mlp.up_proj.weight" to model-00002-of-00003.safetensors, but that shard has no such tensor');
  });

  test('the index lists a tensor twice (JSON.parse would keep the last silently)', async () => {
    const dir = await withIndex((ix) => {
      const text = JSON.stringify(ix);
      return text.replace('"weight_map":{', `"weight_map":{"model.norm.weight":"${SHARD2}",`);
    });
    await assertConvertRefused(dir, join(dir, INDEX), 'weight_map lists tensor "model.norm.weight" more than once');
  });

  test('the index is not JSON', async () => {
    const dir = await withIndex(() => '{"weight_map": {');
    await assertConvertRefused(dir, join(dir, INDEX), 'is not valid JSON');
  });

  test('the index has no weight_map', async () => {
    const dir = await withIndex(() => ({ metadata: { total_size: 1 } }));
    await assertConvertRefused(dir, join(dir, INDEX), 'has no "weight_map" object');
  });

  test('a weight_map value is not a file name', async () => {
    const dir = await withIndex((ix) => ({ weight_map: { ...ix.weight_map, 'model.norm.weight': 42 } }));
    await assertConvertRefused(dir, 'weight_map["model.norm.weight"] is not a file name');
  });
});

describe('malformed folders', () => {
  test('no index and the same tensor in two files', async () => {
    const dir = join(tmp.path, `case-${caseNo++}`);
    await mkdir(dir);
    const data = new Uint8Array(16);
    const header = { 'model.norm.weight': { dtype: 'F32', shape: [4], data_offsets: [0, 16] } };
    await writeFile(join(dir, 'a.safetensors'), rawSafetensors(header, data));
    await writeFile(join(dir, 'b.safetensors'), rawSafetensors(header, data));
    await assertConvertRefused(dir, 'tensor "model.norm.weight" is in both a.safetensors and b.safetensors');
  });

  test('no safetensors files at all', async () => {
    const dir = join(tmp.path, `case-${caseNo++}`);
    await mkdir(dir);
    await writeFile(join(dir, 'pytorch_model.bin'), 'not ours');
    await assertConvertRefused(dir, `no *.safetensors files in ${dir}`);
  });

  test('input folder missing', async () => {
    const dir = join(tmp.path, 'does-not-exist');
    await assertConvertRefused(dir, `cannot read model folder ${dir} (ENOENT)`);
  });

  test('input is a file, not a folder', async () => {
    const file = join(tmp.path, `file-${caseNo++}.safetensors`);
    await writeFile(file, rawSafetensors({}, new Uint8Array(0)));
    await assertConvertRefused(file, `${file} is not a folder`);
  });
});

describe('missing or invalid config.json: convert goes on by the generic rules, with a warning', () => {
  const cases: readonly [string, string | undefined, RegExp][] = [
    ['missing', undefined, /^no config\.json in /],
    ['not JSON', '{"architectures": ["LlamaForCausalLM"],\n', /config\.json is not valid JSON \(.*\)$/],
    ['a JSON array', '[1, 2]', /config\.json is not a JSON object$/],
    ['JSON null', 'null', /config\.json is not a JSON object$/],
  ];
  for (const [label, text, problem] of cases) {
    test(label, async () => {
      const dir = join(tmp.path, `case-${caseNo++}`);
      await mkdir(dir);
      await cp(join(modelDir('llama'), 'model.safetensors'), join(dir, 'model.safetensors'));
      if (text !== undefined) await writeFile(join(dir, 'config.json'), text);
      const out = join(tmp.path, `out-${caseNo++}`);
      const result = await runCli(['convert', dir, '-o', out, '--json']);
      assert.equal(result.code, 0, result.stderr);
      const summary = JSON.parse(result.stdout) as ConvertSummary;
      assert.match(summary.warnings[0]!, problem);
      assert.ok(!summary.warnings[0]!.includes('\n'), 'warning spans lines');
      assert.ok(
        summary.warnings.some((w) => /converting by the generic rules/.test(w)),
        summary.warnings.join(' | '),
      );
      // The user sees both warnings too.
      assert.match(result.stderr, /^warning: .*config\.json/m);
      assert.match(result.stderr, /^warning: .*generic rules/m);
      // The generic rules still quantize every linear and keep lm_head / embeddings.
      assert.equal(summary.tensorsQuantized, 14);
      const config = await readJson(join(out, 'config.json'));
      assert.equal((config['quantization_config'] as { quant_method: string }).quant_method, 'fp8');
      await rm(out, { recursive: true });
    });
  }

  test('a config.json with fields of the wrong type converts (or fails as a known error, never a crash)', async () => {
    const configs: readonly unknown[] = [
      { architectures: 7 },
      { architectures: [1, null] },
      { model_type: 5, num_hidden_layers: 'x' },
      { model_type: 'llama', modules_to_not_convert: 5 },
      { quantization_config: 'x' },
      { num_local_experts: '8', kv_lora_rank: -1 },
      { architectures: ['DeepseekV3ForCausalLM'], qk_nope_head_dim: 0, v_head_dim: null },
    ];
    for (const config of configs) {
      const dir = join(tmp.path, `case-${caseNo++}`);
      await mkdir(dir);
      await cp(join(modelDir('llama'), 'model.safetensors'), join(dir, 'model.safetensors'));
      await writeFile(join(dir, 'config.json'), JSON.stringify(config));
      const out = join(tmp.path, `out-${caseNo++}`);
      // Planning is what reads the config; --dry-run runs it without writing.
      const result = await runCli(['convert', dir, '-o', out, '--quiet', '--dry-run']);
      assert.ok(!/internal error/.test(result.stderr), `${JSON.stringify(config)}: ${result.stderr}`);
      if (result.code === 0) {
        assert.match(result.stdout, /to quantize/, JSON.stringify(config));
      } else {
        assertOneLineFailure(result);
        await assertNoOutputLeft(out);
      }
    }
  });
});

describe('a config at odds with its weights', () => {
  test("vocab_size other than lm_head's rows: verify and logits name the tensor, its shape and vocab_size (no internal error)", async () => {
    const original = join(tmp.path, `case-${caseNo++}`);
    await cp(modelDir('llama'), original, { recursive: true });
    const quantized = join(tmp.path, `case-${caseNo++}`);
    assert.equal((await runCli(['convert', original, '-o', quantized, '--quiet'])).code, 0);
    for (const dir of [original, quantized]) {
      const config = await readJson(join(dir, 'config.json'));
      await writeFile(join(dir, 'config.json'), JSON.stringify({ ...config, vocab_size: 1000 }));
    }
    const verify = await runCli(['verify', original, quantized, '--quiet', '--device', 'cpu']);
    assertOneLineFailure(verify, 'lm_head.weight is [1024, 256]', 'vocab_size 1000');
    const out = join(tmp.path, `out-${caseNo++}`, 'logits.safetensors');
    const logits = await runCli(['logits', original, '--input-ids', join(MODELS, 'llama.logits.safetensors'), '-o', out, '--quiet', '--device', 'cpu']);
    assertOneLineFailure(logits, 'lm_head.weight is [1024, 256]', 'vocab_size 1000');
    await assertNoOutputLeft(out);
  });
});
