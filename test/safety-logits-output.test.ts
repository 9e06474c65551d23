// `fp8q logits -o` follows the rules of every command that writes: an existing file is not
// overwritten without --force, the --input-ids file and the model folder are never written even
// with --force, missing parent folders are created, and --json reports the device in the shape
// verify uses (`device` a string, `deviceSelection` the choice).

import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { cp } from 'node:fs/promises';
import { modelDir, MODELS } from './helpers/fixtures.js';
import { sha256File } from './helpers/checkpoint-files.js';
import { assertJsonError } from './helpers/hostile.js';
import { runCli } from './helpers/safety.js';
import { makeTempDir, type TempDir } from './helpers/temp-dir.js';

let tmp: TempDir;
let ids: string;
let model: string;

before(async () => {
  tmp = await makeTempDir('logits-out');
  ids = join(tmp.path, 'ids.safetensors');
  await cp(join(MODELS, 'llama.logits.safetensors'), ids);
  model = join(tmp.path, 'llama');
  await cp(modelDir('llama'), model, { recursive: true });
});
after(async () => tmp.cleanup());

describe('logits -o', () => {
  test('refuses to overwrite without --force, never writes the input ids or into the model folder', async () => {
    const existing = join(tmp.path, 'existing.safetensors');
    await writeFile(existing, 'precious');
    assertJsonError(await runCli(['logits', model, '--input-ids', ids, '-o', existing, '--device', 'cpu', '--json']), 'E_OUTPUT_EXISTS', 1);
    assert.equal(await readFile(existing, 'utf8'), 'precious');
    const idsHash = await sha256File(ids);
    assertJsonError(await runCli(['logits', model, '--input-ids', ids, '-o', ids, '--force', '--device', 'cpu', '--json']), 'E_OUTPUT_UNSAFE', 1);
    assert.equal(await sha256File(ids), idsHash);
    const inside = join(model, 'logits.safetensors');
    const err = assertJsonError(await runCli(['logits', model, '--input-ids', ids, '-o', inside, '--force', '--device', 'cpu', '--json']), 'E_OUTPUT_UNSAFE', 1);
    assert.match(err.message, /inside the model folder/);
    assertJsonError(await runCli(['logits', model, '--input-ids', ids, '-o', tmp.path, '--force', '--device', 'cpu', '--json']), 'E_OUTPUT_UNSAFE', 1);
  });

  test('creates missing parent folders; --json has device as a string and deviceSelection', async () => {
    const out = join(tmp.path, 'new', 'deeper', 'logits.safetensors');
    const r = await runCli(['logits', model, '--input-ids', ids, '-o', out, '--device', 'cpu', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(r.stdout) as { device: unknown; deviceSelection: { requested: string; device: string } };
    assert.equal(summary.device, 'cpu');
    assert.equal(summary.deviceSelection.device, 'cpu');
    assert.equal(summary.deviceSelection.requested, 'cpu');
    assert.ok((await readFile(out)).byteLength > 0);
    // Again, now that it exists: refused, then replaced with --force.
    assertJsonError(await runCli(['logits', model, '--input-ids', ids, '-o', out, '--device', 'cpu', '--json']), 'E_OUTPUT_EXISTS', 1);
    assert.equal((await runCli(['logits', model, '--input-ids', ids, '-o', out, '--device', 'cpu', '--force', '-q'])).code, 0);
  });
});
