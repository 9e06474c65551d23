// `fp8q convert <org/name> … --push-to` end to end against the mock Hub: the source is downloaded
// into an HF_HOME cache, converted, and the result pushed with a model card.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { convertCommand } from '../src/cli/commands/convert.js';
import { tinyModelFiles, withMockHub } from './helpers/mock-hub.js';

const TOKEN = 'hf_cliSecretToken0123456789ab';

test('convert from a Hub repo id and push the result to another repo', { timeout: 60_000 }, async () => {
  await withMockHub({ tokens: [TOKEN], repos: [{ id: 'acme/tiny', files: tinyModelFiles() }] }, async (hub, tmp) => {
    const saved = { HF_HOME: process.env['HF_HOME'], HF_TOKEN: process.env['HF_TOKEN'], HF_HUB_CACHE: process.env['HF_HUB_CACHE'] };
    process.env['HF_HOME'] = join(tmp, 'hf');
    process.env['HF_TOKEN'] = TOKEN;
    delete process.env['HF_HUB_CACHE'];
    try {
      const out = join(tmp, 'out');
      const summary = await convertCommand('acme/tiny', {
        output: out,
        block: '128x128',
        weightDtype: 'float8_e4m3fn',
        maxShardSize: '5GB',
        hubUrl: hub.url,
        pushTo: 'me/tiny-fp8',
        // The mock's weights are random bytes, NaN patterns included.
        allowNonfinite: true,
        quiet: true,
      });
      assert.equal(summary.input, 'acme/tiny');
      assert.equal(summary.tensorsQuantized, 1);
      assert.ok(existsSync(join(process.env['HF_HOME'], 'hub', 'models--acme--tiny', 'snapshots')), 'downloaded into the HF cache layout');
      assert.ok(!existsSync(join(out, 'pytorch_model.bin')), 'foreign weight files are never shipped');
      const pushed = hub.filesAt('me/tiny-fp8');
      assert.ok(pushed.has('model.safetensors') && pushed.has('config.json') && pushed.has('tokenizer.json'));
      const config = JSON.parse(new TextDecoder().decode(pushed.get('config.json'))) as { quantization_config: { quant_method: string } };
      assert.equal(config.quantization_config.quant_method, 'fp8');
      const card = new TextDecoder().decode(pushed.get('README.md'));
      assert.match(card, /acme\/tiny/);
      assert.ok(!card.includes(TOKEN));
    } finally {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });
});

test('a missing Hub repo is a clear error naming the id', { timeout: 30_000 }, async () => {
  await withMockHub({ tokens: [TOKEN] }, async (hub, tmp) => {
    const saved = process.env['HF_HOME'];
    process.env['HF_HOME'] = join(tmp, 'hf');
    try {
      await assert.rejects(
        convertCommand('acme/missing', { output: join(tmp, 'out'), block: '128x128', weightDtype: 'float8_e4m3fn', maxShardSize: '5GB', hubUrl: hub.url, quiet: true }),
        (e: Error) => /acme\/missing/.test(e.message) && e.name === 'HubError',
      );
      assert.ok(!existsSync(join(tmp, 'out')));
    } finally {
      if (saved === undefined) delete process.env['HF_HOME'];
      else process.env['HF_HOME'] = saved;
    }
  });
});
