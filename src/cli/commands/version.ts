// `fp8q --version`: what a bug report needs — fp8q's, Node's and onnxruntime-node's versions and
// the execution providers this onnxruntime-node has, with the CUDA provider build found beside it.
// Loads the native runtime, so only this flag pays for it.

import { arch, platform } from 'node:process';
import { cudaProviderBuild, onnxruntimeBinaryDir } from '../../runtime/device/device.js';
import { onnxruntimeNodeVersion } from '../../runtime/device/cuda-setup.js';

export async function versionLines(fp8qVersion: string): Promise<string[]> {
  const lines = [`fp8q ${fp8qVersion}`, `node ${process.version} (${platform}-${arch})`, `onnxruntime-node ${onnxruntimeNodeVersion()}`];
  let backends: { name: string; bundled: boolean }[] = [];
  try {
    const ort = await import('onnxruntime-node');
    backends = ort.listSupportedBackends();
  } catch (e) {
    lines.push(`execution providers: onnxruntime-node did not load (${(e as Error).message.split('\n')[0]})`);
    return lines;
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
  lines.push(`execution providers: ${described.join(', ')}`);
  return lines;
}
