// Secrets: a Hugging Face token (HF_TOKEN, HUGGING_FACE_HUB_TOKEN or the token file) never appears
// in what the CLI prints (errors, warnings, progress, --json, internal-error stacks) nor in the
// checkpoint it writes.

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, mock, test } from 'node:test';
import { cp, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { knownSecrets, REDACTED, redactSecrets } from '../src/cli/common/redact.js';
import { Checkpoint } from '../src/io/checkpoint/checkpoint.js';
import { listFiles } from './helpers/checkpoint-files.js';
import { modelDir } from './helpers/fixtures.js';
import { runCli } from './helpers/safety.js';
import { makeTempDir, type TempDir } from './helpers/temp-dir.js';

const TOKEN = 'hf_AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEfGh'; // hf_ + 34 letters, the real shape
const ENV_KEYS = ['HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN', 'HF_TOKEN_PATH', 'HF_HOME'] as const;

let tmp: TempDir;
const savedEnv = new Map<string, string | undefined>();
before(async () => {
  tmp = await makeTempDir('secrets');
  for (const k of ENV_KEYS) savedEnv.set(k, process.env[k]);
});
afterEach(() => {
  for (const [k, v] of savedEnv) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
});
after(async () => tmp.cleanup());

/** A clean environment: no token anywhere except what the test sets (HF_HOME points at tmp). */
function isolate(): void {
  for (const k of ENV_KEYS) delete process.env[k];
  process.env['HF_HOME'] = join(tmp.path, 'hf-home-empty');
}

describe('redactSecrets', () => {
  test('removes the given secrets and anything token-shaped; leaves ordinary hf_ names', () => {
    const text = `GET /api?token=${TOKEN} Authorization: Bearer my-file-token-0123 hf_hub_download hf_cache hf_${'x'.repeat(29)}`;
    const out = redactSecrets(text, ['my-file-token-0123']);
    assert.equal(out, `GET /api?token=${REDACTED} Authorization: Bearer ${REDACTED} hf_hub_download hf_cache hf_${'x'.repeat(29)}`);
  });

  test('knows HF_TOKEN, HUGGING_FACE_HUB_TOKEN and the token file, ignoring values too short to redact', async () => {
    const tokenFile = join(tmp.path, 'token');
    await writeFile(tokenFile, 'file-token-value-42\n');
    const secrets = knownSecrets({ HF_TOKEN: ' env-token-value-1 ', HUGGING_FACE_HUB_TOKEN: 'legacy-token-value', HF_TOKEN_PATH: tokenFile });
    assert.deepEqual(secrets.sort(), ['env-token-value-1', 'file-token-value-42', 'legacy-token-value']);
    assert.deepEqual(knownSecrets({ HF_TOKEN: 'abc', HF_HOME: join(tmp.path, 'none') }), []);
  });
});

describe('the CLI never prints the token', () => {
  test('an error quoting HF_TOKEN (here, in a path) is redacted', async () => {
    isolate();
    process.env['HF_TOKEN'] = TOKEN;
    const source = join(tmp.path, 'missing', TOKEN);
    const result = await runCli(['convert', source, '-o', join(tmp.path, 'o1')]);
    assert.equal(result.code, 1);
    assert.ok(!result.stderr.includes(TOKEN), result.stderr);
    assert.ok(result.stderr.includes(`cannot read model folder ${join(tmp.path, 'missing', REDACTED)}`), result.stderr);
  });

  test('a token from the token file, whatever its shape, is redacted', async () => {
    isolate();
    const secret = 'company-proxy-token-7f3a9c';
    const tokenFile = join(tmp.path, 'token-file');
    await writeFile(tokenFile, `${secret}\n`);
    process.env['HF_TOKEN_PATH'] = tokenFile;
    const result = await runCli(['inspect', join(tmp.path, secret)]);
    assert.equal(result.code, 1);
    assert.ok(!result.stderr.includes(secret), result.stderr);
    assert.ok(result.stderr.includes(REDACTED), result.stderr);
  });

  test('an internal error (with its stack) is redacted', async () => {
    isolate();
    process.env['HF_TOKEN'] = TOKEN;
    const open = mock.method(Checkpoint, 'open', async () => {
      throw new Error(`request to https://hub/api failed with header Bearer ${TOKEN}`);
    });
    try {
      const result = await runCli(['convert', modelDir('llama'), '-o', join(tmp.path, 'o2')]);
      assert.equal(result.code, 1);
      assert.match(result.stderr, /internal error/);
      assert.ok(!result.stderr.includes(TOKEN), result.stderr);
      assert.ok(result.stderr.includes(`Bearer ${REDACTED}`), result.stderr);
    } finally {
      open.mock.restore();
    }
  });

  test('warnings, --json and the written checkpoint hold no token', async () => {
    isolate();
    process.env['HF_TOKEN'] = TOKEN;
    // A folder named after the token and without config.json: the warning quotes the folder.
    const input = join(tmp.path, TOKEN);
    await mkdir(input);
    await cp(join(modelDir('llama'), 'model.safetensors'), join(input, 'model.safetensors'));
    const out = join(tmp.path, 'o3');
    for (const flags of [['--json'], []]) {
      const result = await runCli(['convert', input, '-o', out, '--force', ...flags]);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stderr, /warning: no config\.json in /);
      for (const text of [result.stdout, result.stderr]) assert.ok(!text.includes(TOKEN), text);
    }
    const summary = JSON.parse((await runCli(['convert', input, '-o', out, '--force', '--json'])).stdout) as { input: string };
    assert.equal(summary.input, join(tmp.path, REDACTED));
    for (const f of await listFiles(out)) {
      assert.ok(!(await readFile(join(out, f))).includes(TOKEN), `${f} holds the token`);
    }
  });
});
