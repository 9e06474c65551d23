// Calibration input: text and JSONL tokenized with the model's own tokenizer.json (a tiny
// byte-level BPE written by the test), token ids from safetensors, the sample / chunk splits, the
// samples and seq-len limits, and the errors a user can meet (no tokenizer, a bad JSONL record,
// ids outside the vocabulary, an empty file).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CheckpointError } from '../src/io/errors.js';
import { readCalibrationSet } from '../src/runtime/text/calibration-input.js';
import { loadModelTokenizer } from '../src/runtime/text/model-tokenizer.js';
import { writeInputIds } from '../src/runtime/models/token-ids.js';
import { makeTempDir, type TempDir } from './helpers/temp-dir.js';
import { expectedTinyIds, TINY_BOS_ID, writeTinyTokenizer } from './helpers/tiny-tokenizer.js';

const LINES = ['the cat sat in the sun', '', 'hello world', 'a thin line'];

describe('calibration input', () => {
  let tmp: TempDir;
  let model: string;

  before(async () => {
    tmp = await makeTempDir('calib-input');
    model = join(tmp.path, 'model');
    const { mkdir } = await import('node:fs/promises');
    await mkdir(model);
    await writeTinyTokenizer(model);
  });
  after(() => tmp.cleanup());

  const ids = (a: Int32Array): number[] => Array.from(a);

  test('the tokenizer gives the ids the byte-level BPE defines, BOS first', async () => {
    const tok = await loadModelTokenizer(model);
    // "the" at the start has no leading space: t + "he" (257); " cat" is bytes.
    assert.deepEqual(tok.encode('the cat'), [TINY_BOS_ID, 116, 257, 32, 99, 97, 116]);
    assert.deepEqual(expectedTinyIds('the cat'), tok.encode('the cat'), 'the test helper agrees with the tokenizer');
    // " the" merges to one id (258), "in" to 259; bytes stand for themselves.
    assert.deepEqual(tok.encode('sat in the sun'), [TINY_BOS_ID, 115, 97, 116, 32, 259, 258, 32, 115, 117, 110]);
  });

  test('text: one sample per non-empty line; JSONL: one per record; the same ids either way', async () => {
    const txt = join(tmp.path, 'calib.txt');
    await writeFile(txt, `${LINES.join('\r\n')}\n`);
    const jsonl = join(tmp.path, 'calib.jsonl');
    await writeFile(
      jsonl,
      `${LINES.filter((l) => l !== '')
        .map((text) => JSON.stringify({ text, source: 'x' }))
        .join('\n')}\n\n`,
    );
    const fromText = await readCalibrationSet({ file: txt, modelDir: model, vocabSize: 1024 });
    const fromJsonl = await readCalibrationSet({ file: jsonl, modelDir: model, vocabSize: 1024 });
    assert.equal(fromText.kind, 'text');
    assert.equal(fromJsonl.kind, 'jsonl');
    const expected = LINES.filter((l) => l !== '').map(expectedTinyIds);
    assert.deepEqual(fromText.sequences.map(ids), expected);
    assert.deepEqual(fromJsonl.sequences.map(ids), expected);
    assert.equal(fromText.tokens, expected.flat().length);
  });

  test('--calibration-samples and --calibration-seq-len limit and cut, in file order', async () => {
    const txt = join(tmp.path, 'limit.txt');
    await writeFile(txt, LINES.join('\n'));
    const set = await readCalibrationSet({ file: txt, modelDir: model, samples: 2, seqLen: 5 });
    assert.deepEqual(set.sequences.map(ids), [expectedTinyIds(LINES[0]!).slice(0, 5), expectedTinyIds(LINES[2]!).slice(0, 5)]);
    assert.equal(set.truncated, 2);
    assert.equal(set.unused, 1, 'the last line was not needed');
  });

  test('chunk split: the whole stream cut in seq-len pieces, the short tail kept', async () => {
    const txt = join(tmp.path, 'doc.txt');
    await writeFile(txt, LINES.join('\n'));
    const stream = LINES.filter((l) => l !== '').flatMap(expectedTinyIds);
    const set = await readCalibrationSet({ file: txt, modelDir: model, seqLen: 8, split: 'chunk' });
    assert.deepEqual(
      set.sequences.map(ids),
      Array.from({ length: Math.ceil(stream.length / 8) }, (_, i) => stream.slice(i * 8, i * 8 + 8)),
    );
    const limited = await readCalibrationSet({ file: txt, modelDir: model, seqLen: 8, split: 'chunk', samples: 2 });
    assert.deepEqual(limited.sequences.map(ids), [stream.slice(0, 8), stream.slice(8, 16)]);
  });

  test('token ids: rows of input_ids, no tokenizer needed', async () => {
    const file = join(tmp.path, 'ids.safetensors');
    await writeInputIds(file, { ids: Int32Array.from({ length: 12 }, (_, i) => i * 7), batch: 3, seq: 4 });
    const set = await readCalibrationSet({ file, modelDir: join(tmp.path, 'no-such-model'), seqLen: 3, vocabSize: 1024 });
    assert.equal(set.kind, 'token-ids');
    assert.deepEqual(set.sequences.map(ids), [
      [0, 7, 14],
      [28, 35, 42],
      [56, 63, 70],
    ]);
  });

  test('errors name the file and say what to do', async () => {
    const txt = join(tmp.path, 'plain.txt');
    await writeFile(txt, 'some text\n');
    await assert.rejects(readCalibrationSet({ file: txt, modelDir: tmp.path }), (e: Error) => {
      assert.ok(e instanceof CheckpointError);
      assert.match(e.message, /has no tokenizer\.json.*input_ids/);
      return true;
    });
    const bad = join(tmp.path, 'bad.jsonl');
    await writeFile(bad, '{"text": "ok"}\n{"body": "no text"}\n');
    await assert.rejects(readCalibrationSet({ file: bad, modelDir: model }), /bad\.jsonl:2: the record has no string "text" field/);
    await writeFile(bad, '{"text": "ok"}\nnot json\n');
    await assert.rejects(readCalibrationSet({ file: bad, modelDir: model }), /bad\.jsonl:2: not a JSON record/);
    const empty = join(tmp.path, 'empty.txt');
    await writeFile(empty, '\n\n  \n');
    await assert.rejects(readCalibrationSet({ file: empty, modelDir: model }), /holds no calibration tokens/);
    await assert.rejects(readCalibrationSet({ file: txt, modelDir: model, vocabSize: 512 }), /token id 1000 at position 0, outside the model's vocabulary \(vocab_size 512\)/);
    await assert.rejects(readCalibrationSet({ file: txt, modelDir: model, seqLen: 0 }), /--calibration-seq-len must be an integer from 1/);
  });
});
