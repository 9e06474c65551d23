// The safetensors writer and reader: round trips of every dtype, the header layout (8-byte
// padding, metadata, offsets), row-stripe reads, positional writes in any order, the committed
// fixture files, and malformed files built byte by byte.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DTYPES, dtypeSize, type Dtype } from '../src/fp8/dtypes.js';
import { SafetensorsParseError } from '../src/io/errors.js';
import { MAX_HEADER_BYTES, parseSafetensorsHeader, READ_PIECE_BYTES, SafetensorsReader } from '../src/io/safetensors/safetensors-reader.js';
import { layoutSafetensors, SafetensorsWriter, tensorByteLength, type PlannedTensor } from '../src/io/safetensors/safetensors-writer.js';
import { FIXTURE_MODELS, MODELS, REFERENCE_VECTORS, modelDir } from './helpers/fixtures.js';
import { makeTempDir, seededBytes, type TempDir } from './helpers/temp-dir.js';

let tmp: TempDir;
before(async () => {
  tmp = await makeTempDir('safetensors');
});
after(async () => {
  await tmp.cleanup();
});

interface TestTensor extends PlannedTensor {
  readonly bytes: Uint8Array;
}

function testTensor(name: string, dtype: Dtype, shape: number[], seed: number): TestTensor {
  const t = { name, dtype, shape };
  return { ...t, bytes: seededBytes(tensorByteLength(t), seed) };
}

async function writeAll(path: string, tensors: readonly TestTensor[], metadata?: Record<string, string>): Promise<void> {
  const w = await SafetensorsWriter.create(path, tensors, metadata);
  for (const t of tensors) await w.write(t.name, t.bytes, 0);
  await w.finish();
}

/** The parsed header JSON and the raw header bytes (after the 8-byte length). */
async function rawHeader(path: string): Promise<{ length: number; text: string; json: Record<string, unknown> }> {
  const file = await readFile(path);
  const length = Number(file.readBigUInt64LE(0));
  const text = file.subarray(8, 8 + length).toString('utf8');
  return { length, text, json: JSON.parse(text) as Record<string, unknown> };
}

describe('writer → reader round trip', () => {
  test('every dtype, at ranks 0 to 3, comes back with the same dtype, shape and bytes', async () => {
    assert.deepEqual([...DTYPES].sort(), ['BF16', 'BOOL', 'F16', 'F32', 'F64', 'F8_E4M3', 'F8_E5M2', 'I16', 'I32', 'I64', 'I8', 'U8']);
    const shapes = [[], [7], [3, 5], [2, 3, 4]];
    const tensors: TestTensor[] = [];
    let seed = 1;
    for (const dtype of DTYPES) {
      for (const shape of shapes) tensors.push(testTensor(`t.${dtype}.r${shape.length}`, dtype, shape, seed++));
    }
    const path = join(tmp.path, 'all-dtypes.safetensors');
    await writeAll(path, tensors);
    const r = await SafetensorsReader.open(path);
    try {
      assert.deepEqual(r.tensorNames().sort(), tensors.map((t) => t.name).sort());
      for (const t of tensors) {
        const info = r.info(t.name);
        assert.equal(info.dtype, t.dtype, t.name);
        assert.deepEqual(info.shape, t.shape, t.name);
        assert.equal(info.byteLength, t.bytes.byteLength, t.name);
        assert.deepEqual(await r.readTensor(t.name), t.bytes, t.name);
      }
    } finally {
      await r.close();
    }
  });

  test('empty tensors (a zero dimension) round-trip and take no data bytes', async () => {
    const tensors = [testTensor('empty', 'BF16', [0, 4], 1), testTensor('after', 'F32', [2], 2)];
    const path = join(tmp.path, 'empty.safetensors');
    await writeAll(path, tensors);
    const r = await SafetensorsReader.open(path);
    try {
      assert.equal(r.info('empty').byteLength, 0);
      assert.equal((await r.readTensor('empty')).byteLength, 0);
      assert.equal((await r.readRows('empty', 0, 0)).byteLength, 0);
      assert.deepEqual(await r.readTensor('after'), tensors[1]!.bytes);
      const { json } = await rawHeader(path);
      assert.deepEqual((json['empty'] as { data_offsets: number[] }).data_offsets, [0, 0]);
    } finally {
      await r.close();
    }
  });

  test('metadata round-trips; without metadata the header has no __metadata__ key', async () => {
    const t = [testTensor('x', 'F32', [2, 2], 3)];
    const withMeta = join(tmp.path, 'meta.safetensors');
    const noMeta = join(tmp.path, 'nometa.safetensors');
    await writeAll(withMeta, t, { format: 'pt', note: 'ünïcode ✓' });
    await writeAll(noMeta, t);
    const a = await SafetensorsReader.open(withMeta);
    const b = await SafetensorsReader.open(noMeta);
    try {
      assert.deepEqual({ ...a.metadata }, { format: 'pt', note: 'ünïcode ✓' });
      assert.deepEqual({ ...b.metadata }, {});
      assert.ok(!('__metadata__' in (await rawHeader(noMeta)).json));
      assert.deepEqual((await rawHeader(withMeta)).json['__metadata__'], { format: 'pt', note: 'ünïcode ✓' });
    } finally {
      await a.close();
      await b.close();
    }
  });
});

describe('header layout', () => {
  test('the header is padded with spaces so data starts on an 8-byte boundary, for every name length', async () => {
    for (let nameLength = 1; nameLength <= 9; nameLength++) {
      const path = join(tmp.path, `pad-${nameLength}.safetensors`);
      const tensors = [testTensor('n'.repeat(nameLength), 'U8', [3], nameLength)];
      await writeAll(path, tensors);
      const { length, text, json } = await rawHeader(path);
      assert.equal(length % 8, 0, `name length ${nameLength}: header length ${length}`);
      const trimmed = text.trimEnd();
      assert.match(text.slice(trimmed.length), /^ {0,7}$/, 'padding is at most 7 spaces');
      assert.deepEqual(json, { [tensors[0]!.name]: { dtype: 'U8', shape: [3], data_offsets: [0, 3] } });
      assert.equal((await stat(path)).size, 8 + length + 3);
    }
  });

  test('layoutSafetensors offsets are contiguous in plan order and match what the reader sees', async () => {
    const tensors = [testTensor('b', 'BF16', [3, 3], 1), testTensor('a', 'F64', [5], 2), testTensor('c', 'BOOL', [7], 3), testTensor('d', 'I64', [1, 2], 4)];
    const layout = layoutSafetensors(tensors, { format: 'pt' });
    const dataStart = layout.headerBytes.byteLength;
    assert.equal(dataStart % 8, 0);
    let cursor = dataStart;
    for (const t of tensors) {
      const slot = layout.offsets.get(t.name)!;
      assert.deepEqual(slot, { fileOffset: cursor, byteLength: t.bytes.byteLength }, t.name);
      cursor += t.bytes.byteLength;
    }
    assert.equal(layout.fileSize, cursor);
    const path = join(tmp.path, 'layout.safetensors');
    await writeAll(path, tensors, { format: 'pt' });
    assert.equal((await stat(path)).size, layout.fileSize);
    assert.deepEqual(new Uint8Array((await readFile(path)).subarray(0, dataStart)), layout.headerBytes);
    const r = await SafetensorsReader.open(path);
    try {
      assert.equal(r.header.dataStart, dataStart);
      for (const t of tensors) assert.equal(r.info(t.name).fileOffset, layout.offsets.get(t.name)!.fileOffset, t.name);
    } finally {
      await r.close();
    }
  });

  test('a duplicate tensor name is refused when planning', () => {
    assert.throws(() => layoutSafetensors([testTensor('w', 'F32', [1], 1), testTensor('w', 'F32', [2], 2)]), /duplicate tensor name "w"/);
  });
});

describe('positional writes', () => {
  test('pieces written in any order (reverse, interleaved across tensors) give the same file', async () => {
    const tensors = [testTensor('w1', 'BF16', [8, 6], 11), testTensor('w2', 'F32', [5, 3], 12), testTensor('w3', 'U8', [9], 13)];
    const inOrder = join(tmp.path, 'order-a.safetensors');
    const shuffled = join(tmp.path, 'order-b.safetensors');
    await writeAll(inOrder, tensors);
    // Every tensor cut into 4-byte pieces; all pieces of all tensors written last-first.
    const pieces: { name: string; offset: number; bytes: Uint8Array }[] = [];
    for (const t of tensors) {
      for (let o = 0; o < t.bytes.byteLength; o += 4) pieces.push({ name: t.name, offset: o, bytes: t.bytes.subarray(o, o + 4) });
    }
    pieces.reverse();
    const w = await SafetensorsWriter.create(shuffled, tensors);
    for (const p of pieces) await w.write(p.name, p.bytes, p.offset);
    await w.finish();
    assert.deepEqual(await readFile(shuffled), await readFile(inOrder));
  });

  test('finish() refuses a file with a tensor not fully written, naming it', async () => {
    const tensors = [testTensor('full', 'U8', [4], 1), testTensor('partial', 'U8', [4], 2)];
    const w = await SafetensorsWriter.create(join(tmp.path, 'partial.safetensors'), tensors);
    await w.write('full', tensors[0]!.bytes);
    await w.write('partial', tensors[1]!.bytes.subarray(0, 3));
    await assert.rejects(w.finish(), /tensor "partial" got 3 of 4 bytes/);
  });

  test("writes past a tensor's end or to a tensor not in the plan are refused", async () => {
    const w = await SafetensorsWriter.create(join(tmp.path, 'bounds.safetensors'), [testTensor('t', 'F32', [2], 1)]);
    try {
      await assert.rejects(w.write('t', new Uint8Array(4), 5), /tensor "t": write of 4 bytes at 5 exceeds its 8 bytes/);
      await assert.rejects(w.write('nope', new Uint8Array(1)), /tensor "nope" is not in this file's plan/);
    } finally {
      await w.abort();
    }
  });
});

describe('readRows', () => {
  test('every row stripe of a [7, 5] tensor equals the matching slice, with and without a buffer', async () => {
    const t = testTensor('m', 'F32', [7, 5], 21);
    const path = join(tmp.path, 'rows.safetensors');
    await writeAll(path, [testTensor('before', 'BF16', [3], 20), t]);
    const rowBytes = 5 * dtypeSize('F32');
    const r = await SafetensorsReader.open(path);
    try {
      const buf = new Uint8Array(7 * rowBytes);
      for (let start = 0; start <= 7; start++) {
        for (let count = 0; start + count <= 7; count++) {
          const want = t.bytes.subarray(start * rowBytes, (start + count) * rowBytes);
          assert.deepEqual(await r.readRows('m', start, count), want, `rows [${start}, ${start + count})`);
          const got = await r.readRows('m', start, count, buf);
          assert.equal(got.buffer, buf.buffer, "reads into the caller's buffer");
          assert.deepEqual(got, want);
        }
      }
      await assert.rejects(r.readRows('m', 5, 3), RangeError);
      await assert.rejects(r.readRows('m', -1, 1), RangeError);
      await assert.rejects(r.readRows('absent', 0, 1), (e: unknown) => e instanceof SafetensorsParseError && /tensor "absent": no such tensor/.test(e.message));
    } finally {
      await r.close();
    }
  });

  test('rows of a 3-D tensor are slices along the first axis', async () => {
    const t = testTensor('e', 'BF16', [3, 4, 2], 22);
    const path = join(tmp.path, 'rows3.safetensors');
    await writeAll(path, [t]);
    const r = await SafetensorsReader.open(path);
    try {
      const per = 4 * 2 * 2;
      assert.deepEqual(await r.readRows('e', 1, 2), t.bytes.subarray(per, 3 * per));
    } finally {
      await r.close();
    }
  });
});

describe('large reads in pieces', () => {
  test('a tensor above two pieces reads in pieces at once: the same bytes, whole and by rows; a file cut short after opening names the first missing byte', async () => {
    // 2.5 pieces plus an odd tail: three full pieces in flight and a short last one.
    const rows = Math.floor((READ_PIECE_BYTES * 5) / 2 / 1024) + 3;
    const big = testTensor('big', 'U8', [rows, 1024], 11);
    const path = join(tmp.path, 'pieces.safetensors');
    await writeAll(path, [testTensor('small', 'F32', [3], 1), big]);
    const reader = await SafetensorsReader.open(path);
    try {
      assert.ok(big.bytes.byteLength > 2 * READ_PIECE_BYTES);
      assert.ok(Buffer.from(await reader.readTensor('big')).equals(Buffer.from(big.bytes)), 'whole tensor');
      const [r0, count] = [5, rows - 9];
      assert.ok(Buffer.from(await reader.readRows('big', r0, count)).equals(Buffer.from(big.bytes.subarray(r0 * 1024, (r0 + count) * 1024))), 'rows');
      const offset = reader.info('big').fileOffset;
      // Cut inside the second piece: every later piece fails too, at its own first byte.
      const cut = offset + READ_PIECE_BYTES + 12345;
      await truncate(path, cut);
      const says = new RegExp(`tensor "big": unexpected end of file at byte ${cut}: the file is truncated`);
      await assert.rejects(reader.readTensor('big'), (e: unknown) => e instanceof SafetensorsParseError && says.test(e.message));
    } finally {
      await reader.close();
    }
  });
});

describe('the committed fixtures', () => {
  test('each model.safetensors opens: BF16 tensors, "pt" metadata, a 2-D lm_head and embed_tokens', async () => {
    for (const name of FIXTURE_MODELS) {
      const r = await SafetensorsReader.open(join(modelDir(name), 'model.safetensors'));
      try {
        assert.equal(r.metadata['format'], 'pt', name);
        assert.equal(r.header.dataStart % 8, 0, name);
        const infos = r.tensorNames().map((n) => r.info(n));
        assert.ok(infos.length > 20, `${name}: ${infos.length} tensors`);
        assert.ok(
          infos.every((i) => i.dtype === 'BF16'),
          name,
        );
        assert.deepEqual(r.info('lm_head.weight').shape, [1024, 256], name);
        assert.deepEqual(r.info('model.embed_tokens.weight').shape, [1024, 256], name);
        const total = infos.reduce((s, i) => s + i.byteLength, 0);
        assert.equal(r.header.dataStart + total, r.fileSize, `${name}: tensors cover the data section exactly`);
        // A stripe read and the whole-tensor read agree on real data.
        const whole = await r.readTensor('lm_head.weight');
        assert.deepEqual(await r.readRows('lm_head.weight', 1000, 24), whole.subarray(1000 * 512, 1024 * 512));
      } finally {
        await r.close();
      }
    }
  });

  test('the logits files and the reference vectors open with the dtypes their READMEs state', async () => {
    for (const name of FIXTURE_MODELS) {
      const r = await SafetensorsReader.open(join(MODELS, `${name}.logits.safetensors`));
      try {
        assert.deepEqual({ dtype: r.info('input_ids').dtype, shape: r.info('input_ids').shape }, { dtype: 'I64', shape: [2, 24] });
        for (const k of ['logits_bf16', 'logits_f32']) {
          assert.deepEqual({ dtype: r.info(k).dtype, shape: r.info(k).shape }, { dtype: 'F32', shape: [2, 24, 1024] }, `${name} ${k}`);
        }
      } finally {
        await r.close();
      }
    }
    const v = await SafetensorsReader.open(join(REFERENCE_VECTORS, 'fp8_cast_bf16_all.safetensors'));
    try {
      assert.equal(v.info('input').dtype, 'BF16');
      // Codes are stored as U8 (torch's .view(torch.uint8)), per that folder's README.
      assert.deepEqual({ dtype: v.info('e4m3').dtype, shape: v.info('e4m3').shape }, { dtype: 'U8', shape: [65536] });
      assert.deepEqual({ dtype: v.info('e5m2').dtype, shape: v.info('e5m2').shape }, { dtype: 'U8', shape: [65536] });
    } finally {
      await v.close();
    }
  });
});

describe('malformed files', () => {
  const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
  const isParseError = (re: RegExp) => (e: unknown) => {
    assert.ok(e instanceof SafetensorsParseError, `expected SafetensorsParseError, got ${String(e)}`);
    assert.match(e.message, re);
    return true;
  };
  /** A whole file: 8-byte length, header text, `dataLength` zero bytes. */
  function fileBytes(header: string, dataLength: number, lengthField?: bigint): Uint8Array {
    const h = enc(header);
    const out = new Uint8Array(8 + h.byteLength + dataLength);
    new DataView(out.buffer).setBigUint64(0, lengthField ?? BigInt(h.byteLength), true);
    out.set(h, 8);
    return out;
  }
  async function openBytes(label: string, bytes: Uint8Array): Promise<SafetensorsReader> {
    const path = join(tmp.path, `bad-${label}.safetensors`);
    await writeFile(path, bytes);
    return SafetensorsReader.open(path);
  }

  test('header checks: JSON, dtype, shape, offsets, byte length, overlap, gap, trailing bytes', () => {
    const entry = (dtype: string, shape: unknown, offsets: unknown) => ({ dtype, shape, data_offsets: offsets });
    const cases: [string, unknown, number, RegExp][] = [
      ['unknown dtype', { w: entry('F4', [2], [0, 2]) }, 2, /tensor "w": unknown dtype "F4" \(supported: F64, F32/],
      ['negative dim', { w: entry('U8', [-1], [0, 0]) }, 0, /tensor "w": invalid shape \[-1\]/],
      ['fractional dim', { w: entry('U8', [1.5], [0, 1]) }, 1, /tensor "w": invalid shape \[1.5\]/],
      ['rank 9', { w: entry('U8', [1, 1, 1, 1, 1, 1, 1, 1, 1], [0, 1]) }, 1, /invalid shape/],
      ['reversed offsets', { w: entry('U8', [2], [2, 0]) }, 2, /tensor "w": invalid data_offsets \[2,0\]/],
      ['byte length disagrees with shape', { w: entry('F32', [2], [0, 4]) }, 4, /tensor "w": data_offsets \[0, 4\] hold 4 bytes but F32\[2\] needs 8/],
      ['past the end', { w: entry('U8', [8], [0, 8]) }, 4, /tensor "w": data_offsets \[0, 8\] run past the end of the data section \(4 bytes\)/],
      ['overlap', { a: entry('U8', [4], [0, 4]), b: entry('U8', [4], [2, 6]) }, 6, /tensor "b": data overlaps the previous tensor/],
      ['gap', { a: entry('U8', [2], [0, 2]), b: entry('U8', [2], [4, 6]) }, 6, /tensor "b": gap of 2 unused bytes/],
      ['trailing bytes', { a: entry('U8', [2], [0, 2]) }, 5, /tensors cover 2 bytes of a 5-byte data section/],
      ['metadata value not a string', { __metadata__: { n: 1 } }, 0, /__metadata__\["n"\] is not a string/],
      ['header is an array', [], 0, /header is not a JSON object/],
    ];
    for (const [label, header, dataLength, re] of cases) {
      const h = enc(JSON.stringify(header));
      assert.throws(() => parseSafetensorsHeader('bad.safetensors', h, 8 + h.byteLength + dataLength), isParseError(re), label);
    }
    assert.throws(() => parseSafetensorsHeader('bad.safetensors', enc('{"w": '), 100), isParseError(/^bad.safetensors: header is not valid UTF-8 JSON/));
    assert.throws(() => parseSafetensorsHeader('bad.safetensors', new Uint8Array([0x7b, 0xff, 0x7d]), 100), isParseError(/not valid UTF-8 JSON/));
  });

  test('length field and file size checks happen before any large allocation', async () => {
    await assert.rejects(openBytes('short', new Uint8Array(5)), isParseError(/file is 5 bytes, too short for a safetensors header/));
    await assert.rejects(
      openBytes('huge-length', fileBytes('{}', 0, BigInt(MAX_HEADER_BYTES) + 1n)),
      isParseError(new RegExp(`header length ${MAX_HEADER_BYTES + 1} exceeds the ${MAX_HEADER_BYTES}-byte limit`)),
    );
    await assert.rejects(openBytes('long-length', fileBytes('{}', 0, 1000n)), isParseError(/header length 1000 is larger than the file \(10 bytes\): the file is truncated/));
    await assert.rejects(openBytes('missing', new Uint8Array(0)), isParseError(/too short/));
    await assert.rejects(SafetensorsReader.open(join(tmp.path, 'does-not-exist.safetensors')), isParseError(/cannot open \(ENOENT\)/));
  });

  test('a file cut short inside the data is reported as truncated, naming the file', async () => {
    const good = [testTensor('w', 'F32', [4, 4], 5)];
    const path = join(tmp.path, 'truncate-src.safetensors');
    await writeAll(path, good);
    const bytes = new Uint8Array(await readFile(path));
    await assert.rejects(
      openBytes('truncated', bytes.subarray(0, bytes.byteLength - 3)),
      isParseError(/bad-truncated.safetensors: tensor "w": data_offsets \[0, 64\] run past the end/),
    );
  });
});
