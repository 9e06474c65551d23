// `fp8q --version`: what a bug report needs — fp8q's, Node's and onnxruntime-node's versions and
// the execution providers this onnxruntime-node has, with the CUDA provider build found beside it.
// Loads the native runtime, so only this flag pays for it.

import { arch, platform } from 'node:process';
import { cudaProviderBuild, onnxruntimeBinaryDir } from '../../runtime/device/device.js';
import { onnxruntimeNodeVersion } from '../../runtime/device/cuda-setup.js';

export interface VersionInfo {
  readonly fp8q: string;
  readonly node: string;
  readonly platform: string;
  readonly onnxruntimeNode: string;
  /** Each provider described as `--version` prints it; null when onnxruntime-node did not load. */
  readonly executionProviders: string[] | null;
  readonly loadError?: string;
}

export async function versionInfo(fp8qVersion: string): Promise<VersionInfo> {
  const base = { fp8q: fp8qVersion, node: process.version, platform: `${platform}-${arch}`, onnxruntimeNode: onnxruntimeNodeVersion() };
  let backends: { name: string; bundled: boolean }[] = [];
  try {
    const ort = await import('onnxruntime-node');
    backends = ort.listSupportedBackends();
  } catch (e) {
    return { ...base, executionProviders: null, loadError: (e as Error).message.split('\n')[0]! };
  }
  const cuda = platform === 'linux' && arch === 'x64' ? cudaProviderBuild(onnxruntimeBinaryDir()) : null;
  const described = backends.map((b) => {
    if (b.bundled) return b.name;
    if (b.name === 'cuda') {
      return cuda === null
        ? 'cuda (not installed: fp8q setup-cuda)'
        : `cuda (${cuda.origin}${cuda.cudaMajor !== null ? `, CUDA ${cuda.cudaMajor}` : ''}; fp8q setup-cuda --check tests it)`;
    }
    return `${b.name} (not installed)`;
  });
  return { ...base, executionProviders: described };
}

export async function versionLines(fp8qVersion: string): Promise<string[]> {
  const v = await versionInfo(fp8qVersion);
  const lines = [`fp8q ${v.fp8q}`, `node ${v.node} (${v.platform})`, `onnxruntime-node ${v.onnxruntimeNode}`];
  lines.push(v.executionProviders === null ? `execution providers: onnxruntime-node did not load (${v.loadError})` : `execution providers: ${v.executionProviders.join(', ')}`);
  return lines;
}
