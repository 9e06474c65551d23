// config.json keeps every value and its JSON type: every fixture converted in both output formats,
// and dequantized back, is compared with its source literal by literal (a float written `0.0` must
// stay `0.0`, not become `0`) outside the keys fp8q owns; the edit keeps key order, indentation and
// line ends, so removing fp8q's keys gives the source file byte for byte.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseTree, type Node } from 'jsonc-parser';
import { editConfigText } from '../src/io/checkpoint/config-json.js';
import { convertCheckpoint } from '../src/pipeline/convert-checkpoint.js';
import { dequantCheckpoint } from '../src/pipeline/dequant-checkpoint.js';
import { MODELS } from './helpers/fixtures.js';
import { makeTempDir, type TempDir } from './helpers/temp-dir.js';

const FIXTURES = ['llama', 'mixtral', 'deepseek_v3', 'stories260K'] as const;
const FORMATS = ['hf', 'compressed-tensors'] as const;

/**
 * Every difference between two JSON documents' trees, as "path: what" lines: a number is compared
 * by its literal text (so 0.0 vs 0 and 1e-05 vs 0.00001 both differ), other scalars by value, key
 * order included. Keys in `ignore` are skipped at the top level.
 */
function literalDifferences(a: string, b: string, ignore: readonly string[]): string[] {
  const ta = parseTree(a);
  const tb = parseTree(b);
  assert.ok(ta && tb, 'both documents parse');
  const out: string[] = [];
  const walk = (x: Node, y: Node, path: string, top: boolean): void => {
    if (x.type !== y.type) return void out.push(`${path}: ${x.type} became ${y.type}`);
    if (x.type === 'number') {
      const lx = a.slice(x.offset, x.offset + x.length);
      const ly = b.slice(y.offset, y.offset + y.length);
      if (lx !== ly) out.push(`${path}: ${lx} became ${ly}`);
      return;
    }
    if (x.type === 'array') {
      const cx = x.children ?? [];
      const cy = y.children ?? [];
      if (cx.length !== cy.length) return void out.push(`${path}: ${cx.length} items became ${cy.length}`);
      cx.forEach((c, i) => walk(c, cy[i]!, `${path}[${i}]`, false));
      return;
    }
    if (x.type === 'object') {
      const props = (n: Node): [string, Node][] =>
        (n.children ?? []).map((p) => [p.children![0]!.value as string, p.children![1]!] as [string, Node]).filter(([k]) => !(top && ignore.includes(k)));
      const px = props(x);
      const py = props(y);
      const kx = px.map(([k]) => k);
      const ky = py.map(([k]) => k);
      if (kx.join('\u0000') !== ky.join('\u0000')) return void out.push(`${path}: keys ${JSON.stringify(kx)} became ${JSON.stringify(ky)}`);
      px.forEach(([k, v], i) => walk(v, py[i]![1], `${path}.${k}`, false));
      return;
    }
    if (x.value !== y.value) out.push(`${path}: ${JSON.stringify(x.value)} became ${JSON.stringify(y.value)}`);
  };
  walk(ta, tb, '$', true);
  return out;
}

describe('config.json value for value, type for type', () => {
  let tmp: TempDir;
  before(async () => {
    tmp = await makeTempDir('config-json');
  });
  after(async () => tmp.cleanup());

  test('the comparison sees a float that became an int, a changed literal and a reordered key', () => {
    assert.deepEqual(literalDifferences('{"a": 0.0, "b": 1}', '{"a": 0, "b": 1}', []), ['$.a: 0.0 became 0']);
    assert.deepEqual(literalDifferences('{"a": 1e-05}', '{"a": 0.00001}', []), ['$.a: 1e-05 became 0.00001']);
    assert.equal(literalDifferences('{"a": 1, "b": 2}', '{"b": 2, "a": 1}', []).length, 1);
    assert.deepEqual(literalDifferences('{"a": 1, "q": {}}', '{"a": 1}', ['q']), []);
  });

  test('a parse/serialise round trip loses what the edit keeps (why this module exists)', async () => {
    const source = await readFile(join(MODELS, 'mixtral', 'config.json'), 'utf8');
    const roundTrip = `${JSON.stringify(JSON.parse(source), null, 2)}\n`;
    const lost = literalDifferences(source, roundTrip, []);
    assert.ok(lost.includes('$.router_jitter_noise: 0.0 became 0'), lost.join('\n'));
    assert.deepEqual(literalDifferences(source, editConfigText(source, { set: { quantization_config: { quant_method: 'fp8' } } }), ['quantization_config']), []);
  });

  test('edits keep indentation, line ends and position; a key present is replaced where it stands', () => {
    const crlfTabs = '{\r\n\t"a": 1.0,\r\n\t"quantization_config": {"old": 1},\r\n\t"z": 10000.0\r\n}\r\n';
    const edited = editConfigText(crlfTabs, { set: { quantization_config: { quant_method: 'fp8', weight_block_size: [128, 128] } } });
    assert.equal(
      edited,
      '{\r\n\t"a": 1.0,\r\n\t"quantization_config": {\r\n\t\t"quant_method": "fp8",\r\n\t\t"weight_block_size": [\r\n\t\t\t128,\r\n\t\t\t128\r\n\t\t]\r\n\t},\r\n\t"z": 10000.0\r\n}\r\n',
    );
    const fourSpaces = '{\n    "rope_theta": 500000.0,\n    "torch_dtype": "float8_e4m3fn",\n    "quantization_config": {"quant_method": "fp8"}\n}';
    assert.equal(
      editConfigText(fourSpaces, { remove: ['quantization_config'], set: { torch_dtype: 'bfloat16' } }),
      '{\n    "rope_theta": 500000.0,\n    "torch_dtype": "bfloat16"\n}',
    );
    const minified = '{"a":0.0,"b":[1.5,2]}';
    const added = editConfigText(minified, { set: { q: 1 } });
    assert.deepEqual(JSON.parse(added), { a: 0, b: [1.5, 2], q: 1 });
    assert.deepEqual(literalDifferences(minified, added, ['q']), []);
  });

  for (const name of FIXTURES) {
    for (const format of FORMATS) {
      test(`${name}, --format ${format}: only quantization_config differs; dequant gives the source config back byte for byte`, async () => {
        const source = await readFile(join(MODELS, name, 'config.json'), 'utf8');
        const fp8 = join(tmp.path, `${name}-${format}`);
        await convertCheckpoint({ input: join(MODELS, name), output: fp8, outputFormat: format, threads: 0 });
        const converted = await readFile(join(fp8, 'config.json'), 'utf8');
        assert.deepEqual(literalDifferences(source, converted, ['quantization_config']), []);
        assert.equal((JSON.parse(converted) as { quantization_config: { quant_method: string } }).quantization_config.quant_method, format === 'hf' ? 'fp8' : 'compressed-tensors');
        // The source has no quantization_config: removing fp8q's one gives its bytes back.
        assert.equal(editConfigText(converted, { remove: ['quantization_config'] }), source);

        const back = join(tmp.path, `${name}-${format}-bf16`);
        await dequantCheckpoint({ input: fp8, output: back });
        const dequantized = await readFile(join(back, 'config.json'), 'utf8');
        assert.deepEqual(literalDifferences(source, dequantized, []), []);
        assert.equal(dequantized, source);
      });
    }
  }

  test('deepseek_v3 with --mla-split and --scale-fmt ue8m0: still only quantization_config differs', async () => {
    const source = await readFile(join(MODELS, 'deepseek_v3', 'config.json'), 'utf8');
    const fp8 = join(tmp.path, 'deepseek-mla');
    await convertCheckpoint({ input: join(MODELS, 'deepseek_v3'), output: fp8, mlaSplit: true, scaleFormat: 'ue8m0', threads: 0 });
    const converted = await readFile(join(fp8, 'config.json'), 'utf8');
    assert.deepEqual(literalDifferences(source, converted, ['quantization_config']), []);
    assert.equal(editConfigText(converted, { remove: ['quantization_config'] }), source);
  });

  test('dequant to float16 changes only the dtype field and drops quantization_config', async () => {
    const source = await readFile(join(MODELS, 'mixtral', 'config.json'), 'utf8');
    const fp8 = join(tmp.path, 'mixtral-f16-src');
    await convertCheckpoint({ input: join(MODELS, 'mixtral'), output: fp8, threads: 0 });
    const out = join(tmp.path, 'mixtral-f16');
    await dequantCheckpoint({ input: fp8, output: out, dtype: 'float16' });
    const dequantized = await readFile(join(out, 'config.json'), 'utf8');
    assert.deepEqual(literalDifferences(source, dequantized, []), ['$.dtype: "bfloat16" became "float16"']);
    assert.equal(editConfigText(dequantized, { set: { dtype: 'bfloat16' } }), source);
  });
});
