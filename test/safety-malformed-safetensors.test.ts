// Malformed safetensors files, each built in memory: the reader throws SafetensorsParseError with
// one line naming the file (and the tensor, where one is at fault) and saying what is wrong; the
// CLI exits non-zero with that line and leaves no output or staging folder behind.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SafetensorsParseError } from '../src/io/errors.js';
import { MAX_HEADER_BYTES, MAX_RANK, SafetensorsReader } from '../src/io/safetensors/safetensors-reader.js';
import { assertNoOutputLeft, assertOneLineFailure, rawSafetensors, runCli } from './helpers/safety.js';
import { makeTempDir, seededBytes, type TempDir } from './helpers/temp-dir.js';

const UP = 'model.layers.0.mlp.up_proj.weight';
const NORM = 'model.norm.weight';
const CONFIG = { architectures: ['LlamaForCausalLM'], model_type: 'llama' };

/** A valid header: UP BF16[4,8] (64 bytes) then NORM F32[8] (32 bytes). */
function goodHeader(): Record<string, { dtype: string; shape: number[]; data_offsets: number[] }> {
  return {
    [UP]: { dtype: 'BF16', shape: [4, 8], data_offsets: [0, 64] },
    [NORM]: { dtype: 'F32', shape: [8], data_offsets: [64, 96] },
  };
}
const DATA = seededBytes(96, 7);
const good = (): Uint8Array => rawSafetensors(goodHeader(), DATA);
function withEntry(name: string, entry: unknown, data: Uint8Array = DATA): Uint8Array {
  return rawSafetensors({ ...goodHeader(), [name]: entry }, data);
}

interface Case {
  readonly name: string;
  readonly bytes: () => Uint8Array;
  /** What the message must say. */
  readonly says: RegExp;
  /** The tensor the message must name, if one is at fault. */
  readonly tensor?: string;
}

const CASES: readonly Case[] = [
  { name: 'file shorter than the 8-byte length field', bytes: () => new Uint8Array([1, 2, 3]), says: /3 bytes, too short for a safetensors header/ },
  { name: 'truncated inside the header', bytes: () => good().subarray(0, 30), says: /header length \d+ is larger than the file \(30 bytes\): the file is truncated/ },
  {
    name: 'truncated inside the data',
    bytes: () => good().subarray(0, good().byteLength - 10),
    says: /run past the end of the data section \(86 bytes\): the file is truncated/,
    tensor: NORM,
  },
  { name: 'header length 2^64-1 (refused before allocating)', bytes: () => rawSafetensors(goodHeader(), DATA, 2n ** 64n - 1n), says: /exceeds the \d+-byte limit/ },
  {
    name: 'header length just over the limit',
    bytes: () => rawSafetensors(goodHeader(), DATA, BigInt(MAX_HEADER_BYTES + 1)),
    says: /exceeds the \d+-byte limit: the file is corrupt or not a safetensors file/,
  },
  { name: 'header length 0', bytes: () => rawSafetensors('', DATA), says: /header is not valid UTF-8 JSON/ },
  { name: 'header not UTF-8', bytes: () => rawSafetensors(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]), DATA), says: /header is not valid UTF-8 JSON/ },
  {
    name: 'header not JSON',
    bytes: () => rawSafetensors(`{"${UP}": {"dtype": "BF16",\n "shape": [4, 8]`, DATA),
    says: /header is not valid UTF-8 JSON.*corrupt or not a safetensors file/,
  },
  { name: 'header a JSON array', bytes: () => rawSafetensors('[1, 2, 3]', DATA), says: /header is not a JSON object/ },
  { name: 'header a JSON string', bytes: () => rawSafetensors('"tensors"', DATA), says: /header is not a JSON object/ },
  { name: 'tensor entry not an object', bytes: () => withEntry('lm_head.weight', [1, 2]), says: /entry is not an object/, tensor: 'lm_head.weight' },
  {
    name: '__metadata__ with a non-string value',
    bytes: () => rawSafetensors({ __metadata__: { format: 3 }, ...goodHeader() }, DATA),
    says: /__metadata__\["format"\] is not a string/,
  },
  {
    name: 'unknown dtype',
    bytes: () => rawSafetensors({ ...goodHeader(), [NORM]: { dtype: 'F128', shape: [2], data_offsets: [64, 96] } }, DATA),
    says: /unknown dtype "F128" \(supported: F64, F32/,
    tensor: NORM,
  },
  { name: 'missing dtype', bytes: () => rawSafetensors({ ...goodHeader(), [NORM]: { shape: [8], data_offsets: [64, 96] } }, DATA), says: /unknown dtype undefined/, tensor: NORM },
  {
    name: 'negative dimension',
    bytes: () => rawSafetensors({ ...goodHeader(), [UP]: { dtype: 'BF16', shape: [-4, -8], data_offsets: [0, 64] } }, DATA),
    says: /invalid shape \[-4,-8\]/,
    tensor: UP,
  },
  {
    name: 'non-integer dimension',
    bytes: () => rawSafetensors({ ...goodHeader(), [UP]: { dtype: 'BF16', shape: [4.5, 8], data_offsets: [0, 64] } }, DATA),
    says: /invalid shape \[4\.5,8\]/,
    tensor: UP,
  },
  {
    name: 'dimension given as a string',
    bytes: () => rawSafetensors({ ...goodHeader(), [UP]: { dtype: 'BF16', shape: ['4', 8], data_offsets: [0, 64] } }, DATA),
    says: /invalid shape \["4",8\]/,
    tensor: UP,
  },
  {
    name: 'rank above the limit',
    bytes: () => rawSafetensors({ ...goodHeader(), [UP]: { dtype: 'BF16', shape: new Array(MAX_RANK + 1).fill(1), data_offsets: [0, 64] } }, DATA),
    says: /invalid shape \[1,1,1/,
    tensor: UP,
  },
  {
    name: 'element count beyond 2^53',
    bytes: () => rawSafetensors({ ...goodHeader(), [UP]: { dtype: 'F32', shape: [2 ** 30, 2 ** 30, 2 ** 30], data_offsets: [0, 64] } }, DATA),
    says: /has too many elements/,
    tensor: UP,
  },
  {
    name: 'data_offsets missing',
    bytes: () => rawSafetensors({ ...goodHeader(), [NORM]: { dtype: 'F32', shape: [8] } }, DATA),
    says: /invalid data_offsets undefined/,
    tensor: NORM,
  },
  {
    name: 'data_offsets reversed',
    bytes: () => rawSafetensors({ ...goodHeader(), [NORM]: { dtype: 'F32', shape: [8], data_offsets: [96, 64] } }, DATA),
    says: /invalid data_offsets \[96,64\]/,
    tensor: NORM,
  },
  {
    name: 'data_offsets not integers',
    bytes: () => rawSafetensors({ ...goodHeader(), [NORM]: { dtype: 'F32', shape: [8], data_offsets: [64, 96.5] } }, DATA),
    says: /invalid data_offsets \[64,96\.5\]/,
    tensor: NORM,
  },
  {
    name: 'data_offsets beyond the file',
    bytes: () => rawSafetensors({ ...goodHeader(), [NORM]: { dtype: 'F32', shape: [258], data_offsets: [64, 1096] } }, DATA),
    says: /data_offsets \[64, 1096\] run past the end of the data section \(96 bytes\)/,
    tensor: NORM,
  },
  {
    name: 'overlapping tensors',
    bytes: () => rawSafetensors({ ...goodHeader(), [NORM]: { dtype: 'F32', shape: [8], data_offsets: [32, 64] } }, DATA.subarray(0, 64)),
    says: /data overlaps the previous tensor \(offset 32 < 64\)/,
    tensor: NORM,
  },
  {
    name: 'gap between tensors',
    bytes: () => rawSafetensors({ ...goodHeader(), [NORM]: { dtype: 'F32', shape: [8], data_offsets: [72, 104] } }, seededBytes(104, 1)),
    says: /gap of 8 unused bytes before this tensor's data/,
    tensor: NORM,
  },
  {
    name: 'trailing bytes no tensor covers',
    bytes: () => rawSafetensors(goodHeader(), seededBytes(104, 2)),
    says: /tensors cover 96 bytes of a 104-byte data section: 8 trailing bytes/,
    tensor: NORM,
  },
  {
    name: 'byte length differs from shape x dtype size',
    bytes: () => rawSafetensors({ ...goodHeader(), [UP]: { dtype: 'BF16', shape: [4, 4], data_offsets: [0, 64] } }, DATA),
    says: /data_offsets \[0, 64\] hold 64 bytes but BF16\[4,4\] needs 32/,
    tensor: UP,
  },
  {
    name: 'duplicate tensor name',
    bytes: () =>
      rawSafetensors(
        `{"${UP}":{"dtype":"BF16","shape":[4,8],"data_offsets":[0,64]},"${NORM}":{"dtype":"F32","shape":[8],"data_offsets":[64,96]},"${UP}":{"dtype":"BF16","shape":[4,8],"data_offsets":[0,64]}}`,
        DATA,
      ),
    says: /the header names this tensor more than once/,
    tensor: UP,
  },
  {
    name: 'duplicate tensor name spelled with a JSON escape',
    bytes: () =>
      rawSafetensors(
        `{"${UP}":{"dtype":"BF16","shape":[4,8],"data_offsets":[0,64]},"${NORM}":{"dtype":"F32","shape":[8],"data_offsets":[64,96]},"model.norm.weigh\\u0074":{"dtype":"F32","shape":[8],"data_offsets":[64,96]}}`,
        DATA,
      ),
    says: /the header names this tensor more than once/,
    tensor: NORM,
  },
  {
    name: 'tensor name with a line break stays one line',
    bytes: () => withEntry('evil\nname', { dtype: 'Q4', shape: [1], data_offsets: [96, 97] }),
    says: /tensor "evil\\nname": unknown dtype "Q4"/,
  },
];

describe('malformed safetensors files', () => {
  let tmp: TempDir;
  before(async () => {
    tmp = await makeTempDir('malformed-st');
  });
  after(async () => tmp.cleanup());

  test('the valid base file reads (so each case below fails for its own reason)', async () => {
    const path = join(tmp.path, 'good.safetensors');
    await writeFile(path, good());
    const r = await SafetensorsReader.open(path);
    try {
      assert.deepEqual(r.tensorNames(), [UP, NORM]);
      assert.deepEqual(await r.readTensor(NORM), DATA.subarray(64, 96));
    } finally {
      await r.close();
    }
  });

  CASES.forEach((c, i) => {
    test(c.name, async () => {
      const dir = join(tmp.path, `case-${i}`);
      await mkdir(dir);
      const file = join(dir, 'model.safetensors');
      await writeFile(file, c.bytes());
      await writeFile(join(dir, 'config.json'), JSON.stringify(CONFIG));

      // The reader: a typed error, one line, naming the file and the tensor at fault.
      const err = await SafetensorsReader.open(file).then(
        async (r) => {
          await r.close();
          return undefined;
        },
        (e: unknown) => e,
      );
      assert.ok(err instanceof SafetensorsParseError, `expected SafetensorsParseError, got ${String(err)}`);
      assert.equal(err.file, file);
      assert.ok(err.message.startsWith(`${file}: `), err.message);
      assert.ok(!err.message.includes('\n'), `message spans lines: ${err.message}`);
      assert.match(err.message, c.says);
      if (c.tensor !== undefined) {
        assert.equal(err.tensor, c.tensor);
        assert.ok(err.message.includes(`tensor ${JSON.stringify(c.tensor)}: `), err.message);
      }

      // The CLI: that line alone, a non-zero exit, and no output (or staging folder) left.
      const out = join(tmp.path, `out-${i}`);
      const result = await runCli(['convert', dir, '-o', out, '--quiet']);
      assert.equal(result.code, 1);
      assertOneLineFailure(result, file, c.says);
      assert.equal(result.stdout, '');
      await assertNoOutputLeft(out);
    });
  });

  test('an absurd header length is refused without reading (or allocating) it', async () => {
    // A 16-byte file claiming a 2^53-byte header: had the reader allocated it, this would throw
    // RangeError (Invalid typed array length) or exhaust memory, not SafetensorsParseError.
    const file = join(tmp.path, 'huge-length.safetensors');
    await writeFile(file, rawSafetensors('{}', new Uint8Array(6), 2n ** 53n));
    const before = process.memoryUsage().arrayBuffers;
    await assert.rejects(SafetensorsReader.open(file), (e: unknown) => e instanceof SafetensorsParseError && /exceeds the \d+-byte limit/.test(e.message));
    assert.ok(process.memoryUsage().arrayBuffers - before < 16 * 2 ** 20, 'the reader allocated for the claimed header');
  });

  test(`${CASES.length} distinct malformed files are covered`, () => {
    assert.ok(CASES.length >= 25, `only ${CASES.length} cases`);
    assert.equal(new Set(CASES.map((c) => c.name)).size, CASES.length);
  });
});
