// The device the op and graph tests run their sessions on: CPU unless FP8Q_TEST_DEVICE=cuda, so
// the same tests (same references, same tolerances) check the CUDA execution provider on a GPU
// machine: `FP8Q_TEST_DEVICE=cuda node --import tsx --test test/ops-*.test.ts`.

import type { Device } from '../../src/runtime/onnx/session.js';

export function testDevice(): Device {
  const value = process.env['FP8Q_TEST_DEVICE'] ?? 'cpu';
  if (value !== 'cpu' && value !== 'cuda') throw new Error(`FP8Q_TEST_DEVICE must be cpu or cuda, got ${JSON.stringify(value)}`);
  return value;
}
