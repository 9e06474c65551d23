// Fuzzing the safetensors reader: a few thousand deterministic mutations of a valid file (bit
// flips, truncations, extensions, length-field edits, header text and JSON edits). For each, the
// reader must either read every tensor exactly as an independent parse of the header says, or
// throw SafetensorsParseError: never another exception, a hang, or an allocation beyond the file.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DTYPE_SIZES } from '../src/fp8/dtypes.js';
import { SafetensorsParseError } from '../src/io/errors.js';
import { SafetensorsReader } from '../src/io/safetensors/safetensors-reader.js';
import { rawSafetensors } from './helpers/safety.js';

const CASES = 3000;
const SEED = 0x5afe7e;

/** xorshift32: the same mutations on every run, so a failure names a reproducible case. */
class Rng {
  private x: number;
  constructor(seed: number) {
    this.x = seed >>> 0 || 1;
  }
  next(): number {
    this.x ^= this.x << 13;
    this.x >>>= 0;
    this.x ^= this.x >>> 17;
    this.x ^= this.x << 5;
    this.x >>>= 0;
    return this.x;
  }
  int(n: number): number {
    return this.next() % n;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
}

type Entry = { dtype: unknown; shape: unknown; data_offsets: unknown };

function baseHeader(): Record<string, Entry | Record<string, string>> {
  return {
    __metadata__: { format: 'pt' },
    'model.embed_tokens.weight': { dtype: 'BF16', shape: [6, 4], data_offsets: [0, 48] },
    'model.layers.0.mlp.up_proj.weight': { dtype: 'F16', shape: [4, 4], data_offsets: [48, 80] },
    'model.norm.weight': { dtype: 'F32', shape: [4], data_offsets: [80, 96] },
    'lm_head.bias': { dtype: 'F64', shape: [], data_offsets: [96, 104] },
    'empty.weight': { dtype: 'I8', shape: [0, 3], data_offsets: [104, 104] },
    'fp8.weight': { dtype: 'F8_E4M3', shape: [2, 4], data_offsets: [104, 112] },
  };
}

function baseFile(): Uint8Array {
  const data = new Uint8Array(112);
  for (let i = 0; i < data.length; i++) data[i] = (i * 37 + 11) & 0xff;
  return rawSafetensors(baseHeader(), data);
}

const WEIRD_NUMBERS: readonly unknown[] = [-1, 0, 1, 3, 7, 8, 48, 96, 112, 113, 1.5, -0.5, 2 ** 31, 2 ** 53, 2 ** 64, 1e308, '4', null, true, [], {}];
const DTYPES: readonly unknown[] = [...Object.keys(DTYPE_SIZES), 'F128', 'bf16', '', 7, null];

/** One mutation of the header as JSON: a field of an entry replaced, deleted, or an entry added. */
function mutateJson(rng: Rng, file: Uint8Array): Uint8Array {
  const headerLen = Number(new DataView(file.buffer, file.byteOffset).getBigUint64(0, true));
  const header = baseHeader();
  const names = Object.keys(header).filter((n) => n !== '__metadata__');
  const name = rng.pick(names);
  const entry = header[name] as Entry;
  switch (rng.int(7)) {
    case 0:
      entry.dtype = rng.pick(DTYPES);
      break;
    case 1: {
      const shape = [...(entry.shape as number[])];
      if (shape.length === 0 || rng.int(4) === 0) shape.push(rng.pick(WEIRD_NUMBERS) as number);
      else shape[rng.int(shape.length)] = rng.pick(WEIRD_NUMBERS) as number;
      entry.shape = shape;
      break;
    }
    case 2: {
      const offsets = [...(entry.data_offsets as number[])];
      offsets[rng.int(2)] = rng.pick(WEIRD_NUMBERS) as number;
      entry.data_offsets = offsets;
      break;
    }
    case 3:
      delete (entry as Partial<Entry>)[rng.pick(['dtype', 'shape', 'data_offsets'] as const)];
      break;
    case 4:
      header[`extra.${rng.int(3)}`] = { dtype: rng.pick(DTYPES), shape: [rng.pick(WEIRD_NUMBERS)], data_offsets: [rng.pick(WEIRD_NUMBERS), rng.pick(WEIRD_NUMBERS)] };
      break;
    case 5:
      header['__metadata__'] = rng.pick([{ format: 'pt' }, { n: 3 }, [], 'x', null] as never[]);
      break;
    default: {
      // Swap two tensors' offsets: same bytes, wrong owners (sizes may no longer match).
      const other = header[rng.pick(names)] as Entry;
      [entry.data_offsets, other.data_offsets] = [other.data_offsets, entry.data_offsets];
    }
  }
  return rawSafetensors(header, file.subarray(8 + headerLen));
}

/** One mutation of the header's text: a duplicated key, a character inserted, deleted or replaced. */
function mutateHeaderText(rng: Rng, file: Uint8Array): Uint8Array {
  const headerLen = Number(new DataView(file.buffer, file.byteOffset).getBigUint64(0, true));
  let text = new TextDecoder().decode(file.subarray(8, 8 + headerLen));
  const data = file.subarray(8 + headerLen);
  const at = rng.int(text.length + 1);
  switch (rng.int(4)) {
    case 0: {
      // Repeat the first tensor's entry (a duplicate name JSON.parse would silently accept).
      const m = /"model\.embed_tokens\.weight":\{[^}]*\}/.exec(text)!;
      text = `${text.slice(0, -1)},${m[0]}}`;
      break;
    }
    case 1:
      text = text.slice(0, at) + rng.pick(['{', '}', '[', ']', '"', ',', ':', '\\', ' ', '0', '-', 'e', '\u0000', '\u00e9']) + text.slice(at);
      break;
    case 2:
      text = text.slice(0, at) + text.slice(at + 1 + rng.int(4));
      break;
    default:
      text = text.slice(0, at) + String.fromCharCode(32 + rng.int(95)) + text.slice(at + 1);
  }
  return rawSafetensors(text, data);
}

function mutateBytes(rng: Rng, base: Uint8Array): Uint8Array {
  const file = base.slice();
  const view = new DataView(file.buffer);
  const headerLen = Number(view.getBigUint64(0, true));
  switch (rng.int(8)) {
    case 0: // flip 1-4 bits anywhere
    case 1:
      for (let n = 1 + rng.int(4); n > 0; n--) {
        const i = rng.int(file.length);
        file[i] = file[i]! ^ (1 << rng.int(8));
      }
      return file;
    case 2: // flip bits inside the header only
      for (let n = 1 + rng.int(3); n > 0; n--) {
        const i = 8 + rng.int(headerLen);
        file[i] = file[i]! ^ (1 << rng.int(8));
      }
      return file;
    case 3: // truncate
      return file.subarray(0, rng.int(file.length));
    case 4: {
      // extend with junk
      const longer = new Uint8Array(file.length + 1 + rng.int(64));
      longer.set(file);
      return longer;
    }
    case 5: {
      // edit the length field: small deltas, random 32-bit, random 64-bit
      const choice = rng.int(3);
      const len = choice === 0 ? BigInt(Math.max(0, headerLen + rng.int(33) - 16)) : choice === 1 ? BigInt(rng.next()) : (BigInt(rng.next()) << 32n) | BigInt(rng.next());
      view.setBigUint64(0, len, true);
      return file;
    }
    case 6:
      return mutateJson(rng, base);
    default:
      return mutateHeaderText(rng, base);
  }
}

/** What a correct reader must report for `file`, by an independent parse of its header. */
function expectedTensors(file: Uint8Array): Map<string, { dtype: string; shape: number[]; bytes: Uint8Array }> {
  const headerLen = Number(new DataView(file.buffer, file.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(file.subarray(8, 8 + headerLen))) as Record<string, Entry>;
  const out = new Map<string, { dtype: string; shape: number[]; bytes: Uint8Array }>();
  for (const [name, e] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const [b, end] = e.data_offsets as [number, number];
    out.set(name, { dtype: e.dtype as string, shape: e.shape as number[], bytes: file.subarray(8 + headerLen + b, 8 + headerLen + end) });
  }
  return out;
}

// Thousands of small rewrites of one file: on a memory filesystem where there is one (Linux's
// /dev/shm), so disk contention from other jobs does not set the test's pace.
let dir: string;
before(async () => {
  dir = await mkdtemp(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'fp8q-fuzz-'));
});
after(async () => rm(dir, { recursive: true, force: true }));

test(`${CASES} mutated files: read correctly or SafetensorsParseError, nothing else`, { timeout: 60_000 }, async () => {
  const rng = new Rng(SEED);
  const base = baseFile();
  const path = join(dir, 'fuzz.safetensors');
  const counts = { read: 0, refused: 0 };
  const rssBefore = process.memoryUsage().rss;
  for (let i = 0; i < CASES; i++) {
    const file = mutateBytes(rng, base);
    await writeFile(path, file);
    let reader: SafetensorsReader | undefined;
    try {
      reader = await SafetensorsReader.open(path);
    } catch (e) {
      if (!(e instanceof SafetensorsParseError)) {
        assert.fail(`case ${i} (seed ${SEED}): ${e instanceof Error ? e.stack : String(e)}`);
      }
      assert.ok(!e.message.includes('\n'), `case ${i}: multi-line message ${e.message}`);
      counts.refused++;
      continue;
    }
    try {
      // Accepted: it must agree with the header exactly, and every byte must be readable.
      const want = expectedTensors(file);
      assert.deepEqual(reader.tensorNames().sort(), [...want.keys()].sort(), `case ${i}`);
      for (const [name, w] of want) {
        const info = reader.info(name);
        assert.equal(info.dtype, w.dtype, `case ${i} ${name}`);
        assert.deepEqual(info.shape, w.shape, `case ${i} ${name}`);
        assert.ok(info.fileOffset + info.byteLength <= file.byteLength, `case ${i} ${name}: past the end`);
        assert.deepEqual(await reader.readTensor(name), w.bytes, `case ${i} ${name}`);
      }
      counts.read++;
    } finally {
      await reader.close();
    }
  }
  // Both outcomes occur, so neither branch is dead; and memory stayed flat.
  assert.ok(counts.read > CASES / 20 && counts.refused > CASES / 20, JSON.stringify(counts));
  assert.ok(process.memoryUsage().rss - rssBefore < 256 * 2 ** 20, 'reader memory grew by over 256 MiB');
});
