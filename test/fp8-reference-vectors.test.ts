// fp8q's numerics against vectors made by PyTorch 2.11's float8 dtypes (fixtures/reference-vectors):
// every BF16 pattern, a million float32 values, and block quantization cases — bit-exact.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readAll, REFERENCE_VECTORS, f32 } from './helpers/fixtures.js';
import { blockQuantize, decodeE4M3, decodeE5M2, saturateEncode, widenToFloat32, type Fp8Format, type FloatSourceDtype } from '../src/fp8/index.js';

/** PyTorch's NaN codes depend on the kernel (sign kept or not); any NaN code is accepted for NaN. */
function isNanCode(code: number, format: Fp8Format): boolean {
  return format === 'e4m3fn' ? (code & 0x7f) === 0x7f : (code & 0x7f) > 0x7c;
}

function compareCodes(input: Float32Array, expected: Uint8Array, format: Fp8Format, label: string): void {
  let mismatches = 0;
  let first = '';
  for (let i = 0; i < input.length; i++) {
    const x = input[i]!;
    const got = saturateEncode(x, format);
    const want = expected[i]!;
    if (got === want) continue;
    if (Number.isNaN(x) && isNanCode(got, format) && isNanCode(want, format)) continue;
    if (mismatches++ === 0) first = `index ${i}: input ${x} → got 0x${got.toString(16)}, torch 0x${want.toString(16)}`;
  }
  assert.equal(mismatches, 0, `${label}: ${mismatches} mismatches; first at ${first}`);
}

test('every BF16 bit pattern encodes to the same E4M3FN and E5M2 code as torch', async () => {
  const { tensors } = await readAll(join(REFERENCE_VECTORS, 'fp8_cast_bf16_all.safetensors'));
  const input = widenToFloat32(tensors.get('input')!.bytes, 'BF16');
  assert.equal(input.length, 65536);
  compareCodes(input, tensors.get('e4m3')!.bytes, 'e4m3fn', 'e4m3 (bf16)');
  compareCodes(input, tensors.get('e5m2')!.bytes, 'e5m2', 'e5m2 (bf16)');
});

test('every FP8 code decodes to the value torch gives', async () => {
  const { tensors } = await readAll(join(REFERENCE_VECTORS, 'fp8_cast_bf16_all.safetensors'));
  const e4 = f32(tensors.get('e4m3_decoded')!.bytes);
  const e5 = f32(tensors.get('e5m2_decoded')!.bytes);
  for (let c = 0; c < 256; c++) {
    assert.ok(Object.is(decodeE4M3(c), e4[c]) || (Number.isNaN(decodeE4M3(c)) && Number.isNaN(e4[c])), `e4m3 code ${c}`);
    assert.ok(Object.is(decodeE5M2(c), e5[c]) || (Number.isNaN(decodeE5M2(c)) && Number.isNaN(e5[c])), `e5m2 code ${c}`);
  }
});

test('a million float32 values (ties, subnormals, overflow, random bits) encode like torch', async () => {
  const { tensors } = await readAll(join(REFERENCE_VECTORS, 'fp8_cast_f32_random.safetensors'));
  const input = f32(tensors.get('input')!.bytes);
  assert.equal(input.length, 1048576);
  compareCodes(input, tensors.get('e4m3')!.bytes, 'e4m3fn', 'e4m3 (f32)');
  compareCodes(input, tensors.get('e5m2')!.bytes, 'e5m2', 'e5m2 (f32)');
});

test('block quantization matches torch on uneven shapes, zero blocks, subnormals and UE8M0 scales', async () => {
  const { tensors, metadata } = await readAll(join(REFERENCE_VECTORS, 'block_quant.safetensors'));
  const cases = [...new Set([...tensors.keys()].map((k) => k.split('.')[0]!))];
  assert.ok(cases.length >= 7, `cases: ${cases.join(',')}`);
  for (const c of cases) {
    const w = tensors.get(`${c}.w`)!;
    const [bn, bk] = metadata[`${c}.block`]!.split('x').map(Number) as [number, number];
    const [rows, cols] = w.shape as [number, number];
    const values = widenToFloat32(w.bytes, w.dtype as FloatSourceDtype);
    const variants = [
      { key: 'e4m3', format: 'e4m3fn', scaleFormat: 'float' },
      { key: 'e5m2', format: 'e5m2', scaleFormat: 'float' },
      { key: 'e4m3_ue8m0', format: 'e4m3fn', scaleFormat: 'ue8m0' },
    ] as const;
    for (const v of variants) {
      const got = blockQuantize(values, rows, cols, { format: v.format, block: { bn, bk }, scaleFormat: v.scaleFormat });
      const wantScale = f32(tensors.get(`${c}.${v.key}.scale_inv`)!.bytes);
      const wantCodes = tensors.get(`${c}.${v.key}.q`)!.bytes;
      assert.deepEqual(tensors.get(`${c}.${v.key}.scale_inv`)!.shape, [Math.ceil(rows / bn), Math.ceil(cols / bk)]);
      for (let i = 0; i < wantScale.length; i++) {
        assert.ok(Object.is(got.scaleInv[i], wantScale[i]), `case ${c} ${v.key}: scale_inv[${i}] ${got.scaleInv[i]} != torch ${wantScale[i]}`);
      }
      const bad = got.codes.findIndex((x, i) => x !== wantCodes[i]);
      assert.equal(bad, -1, `case ${c} ${v.key}: code at [${Math.floor(bad / cols)}, ${bad % cols}] got ${got.codes[bad]} torch ${wantCodes[bad]}`);
    }
  }
});
