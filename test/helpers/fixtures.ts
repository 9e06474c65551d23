// Paths of the committed fixtures and small helpers to read them in tests.

import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { SafetensorsReader } from '../../src/io/safetensors/safetensors-reader.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const FIXTURES = join(ROOT, 'fixtures');
export const MODELS = join(FIXTURES, 'models');
export const REFERENCE_VECTORS = join(FIXTURES, 'reference-vectors');
export const FIXTURE_MODELS = ['llama', 'mixtral', 'deepseek_v3'] as const;

export function modelDir(name: (typeof FIXTURE_MODELS)[number]): string {
  return join(MODELS, name);
}

/** All tensors of a small safetensors file, as raw bytes, plus its metadata. */
export async function readAll(path: string): Promise<{ tensors: Map<string, { dtype: string; shape: readonly number[]; bytes: Uint8Array }>; metadata: Record<string, string> }> {
  const r = await SafetensorsReader.open(path);
  try {
    const tensors = new Map<string, { dtype: string; shape: readonly number[]; bytes: Uint8Array }>();
    for (const name of r.tensorNames()) {
      const info = r.info(name);
      tensors.set(name, { dtype: info.dtype, shape: info.shape, bytes: await r.readTensor(name) });
    }
    return { tensors, metadata: { ...r.metadata } };
  } finally {
    await r.close();
  }
}

export function f32(bytes: Uint8Array): Float32Array {
  return new Float32Array(bytes.slice().buffer);
}
