// Installs ONNX Runtime's CUDA execution provider next to onnxruntime-node's core, where onnxruntime
// loads providers from: the one step that turns on fp8q's CUDA device (`fp8q setup-cuda`). The
// provider comes from the npm package com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9, ONNX
// Runtime 1.29.0 built against CUDA 13, fetched with `npm pack` (so it works wherever the npm
// registry does) or given as its tarball or an unpacked folder (offline machines). Providers must
// match the core's version exactly, and every input is checked against pinned hashes. It works the
// same from a clone and from an installed package: the destination is the onnxruntime-node that
// fp8q itself resolves. The provider files replace any there (onnxruntime-node's own CUDA 12 build).

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { chmod, copyFile, rename } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { CUDA_PROVIDER_FILES, onnxruntimeBinaryDir } from './device.js';

export const CUDA_PROVIDER_PACKAGE = 'com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9';
/** npm's dist.integrity for CUDA_PROVIDER_PACKAGE. */
const PACKAGE_INTEGRITY = 'sha512-FopIhNE/Ng+v2X65wVc9clPCBCvhvA53Hxo2U0Kf5fGdVsC7iCA+mZ0KLWggcQAj7TIZ6pNidR4AC10g74Xo6w==';
/** The onnxruntime-node version the provider was built for. */
export const PROVIDER_ORT_VERSION = '1.29.0';
const PLUGIN_DIR = 'package/Plugins/Linux/x64';
/** sha256 of each file as shipped in the package, so a folder given offline is checked too. */
const FILE_SHA256: Readonly<Record<(typeof CUDA_PROVIDER_FILES)[number], string>> = {
  'libonnxruntime_providers_shared.so': 'c6a12593396095f5670160e284c35d1700b7708cf3037b7042e2a5200ccae772',
  'libonnxruntime_providers_cuda.so': '56cf3254b118ad837ccc4ed8f6d1b23504bbf7ef91b34cbc0b289cb7f10b3037',
};

/** Something the user can fix: wrong platform, wrong onnxruntime-node, a file that is not the pinned one. */
export class CudaSetupError extends Error {
  override name = 'CudaSetupError';
  constructor(
    message: string,
    /** The `--json` error code (src/cli/common/error-codes.ts): what the user has to fix. */
    readonly errorCode: 'E_INPUT_MISSING' | 'E_INPUT_MALFORMED' | 'E_INPUT_UNSUPPORTED' | 'E_IO' = 'E_INPUT_UNSUPPORTED',
  ) {
    super(message);
  }
}

export interface InstalledFile {
  readonly path: string;
  readonly bytes: number;
}

/** The installed onnxruntime-node's version (fp8q's own dependency, wherever fp8q is installed). */
export function onnxruntimeNodeVersion(): string {
  const require = createRequire(import.meta.url);
  return (JSON.parse(readFileSync(require.resolve('onnxruntime-node/package.json'), 'utf8')) as { version: string }).version;
}

/**
 * Installs the provider from `source` (tarball or folder; undefined: fetched from the npm registry)
 * and returns the files written. `onProgress` gets one line per step.
 */
export async function installCudaProvider(source: string | undefined, onProgress: (line: string) => void = () => undefined): Promise<InstalledFile[]> {
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new CudaSetupError(`the CUDA provider is built for linux-x64; this is ${process.platform}-${process.arch} (fp8q runs on the CPU here)`);
  }
  const version = onnxruntimeNodeVersion();
  if (version !== PROVIDER_ORT_VERSION) {
    throw new CudaSetupError(
      `onnxruntime-node ${version} is installed; the CUDA provider of ${CUDA_PROVIDER_PACKAGE} matches ${PROVIDER_ORT_VERSION} only (reinstall fp8q to restore the pinned version)`,
    );
  }
  const dest = onnxruntimeBinaryDir();
  if (!existsSync(join(dest, 'libonnxruntime.so.1'))) throw new CudaSetupError(`${dest}/libonnxruntime.so.1 is missing: reinstall fp8q (or npm ci in a clone)`, 'E_INPUT_MISSING');
  const work = mkdtempSync(join(tmpdir(), 'fp8q-setup-cuda-'));
  try {
    const folder = await providerFolder(source, work, onProgress);
    const installed: InstalledFile[] = [];
    for (const name of CUDA_PROVIDER_FILES) {
      const from = join(folder, name);
      if (!existsSync(from))
        throw new CudaSetupError(`${from} is missing: give the ${CUDA_PROVIDER_PACKAGE} tarball or a folder holding ${CUDA_PROVIDER_FILES.join(' and ')}`, 'E_INPUT_MISSING');
      const got = await hashFile(from, 'sha256', 'hex');
      if (got !== FILE_SHA256[name])
        throw new CudaSetupError(`${from}: sha256 ${got}, expected ${FILE_SHA256[name]} (the file from ${CUDA_PROVIDER_PACKAGE})`, 'E_INPUT_MALFORMED');
      // Copy then rename: an interrupted copy never leaves a half library where onnxruntime looks.
      const partial = join(dest, `.${name}.partial`);
      await copyFile(from, partial);
      await chmod(partial, 0o755);
      await rename(partial, join(dest, name));
      installed.push({ path: join(dest, name), bytes: statSync(from).size });
    }
    return installed;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** A folder holding the two provider files: from the registry, a tarball, or a folder given. */
async function providerFolder(source: string | undefined, work: string, onProgress: (line: string) => void): Promise<string> {
  if (source !== undefined && existsSync(source) && statSync(source).isDirectory()) {
    const candidates = [join(source, PLUGIN_DIR), join(source, PLUGIN_DIR.replace(/^package\//, '')), source];
    return candidates.find((d) => existsSync(join(d, 'libonnxruntime_providers_cuda.so'))) ?? source;
  }
  let tarball = source;
  if (tarball === undefined) {
    onProgress(`fetching ${CUDA_PROVIDER_PACKAGE} from the npm registry (about 180 MB)…`);
    let packed: string;
    try {
      packed = execFileSync('npm', ['pack', CUDA_PROVIDER_PACKAGE, '--pack-destination', work, '--silent'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      const stderr = String((e as { stderr?: unknown }).stderr ?? (e as Error).message)
        .trim()
        .split('\n')
        .slice(-3)
        .join(' ');
      throw new CudaSetupError(
        `npm pack ${CUDA_PROVIDER_PACKAGE} failed (${stderr}): on a machine without the registry, give the package's tarball or folder: fp8q setup-cuda <file.tgz|folder>`,
        'E_IO',
      );
    }
    tarball = join(work, packed.trim().split('\n').pop()!);
  } else if (!existsSync(tarball)) {
    throw new CudaSetupError(`${tarball}: no such file or folder`, 'E_INPUT_MISSING');
  }
  const integrity = `sha512-${await hashFile(tarball, 'sha512', 'base64')}`;
  if (integrity !== PACKAGE_INTEGRITY) throw new CudaSetupError(`${tarball}: integrity ${integrity} is not ${CUDA_PROVIDER_PACKAGE}'s ${PACKAGE_INTEGRITY}`, 'E_INPUT_MALFORMED');
  execFileSync('tar', ['-xzf', tarball, '-C', work, ...CUDA_PROVIDER_FILES.map((f) => `${PLUGIN_DIR}/${f}`)], { stdio: ['ignore', 'ignore', 'pipe'] });
  return join(work, PLUGIN_DIR);
}

function hashFile(path: string, algorithm: 'sha256' | 'sha512', encoding: 'hex' | 'base64'): Promise<string> {
  return new Promise((done, fail) => {
    const hash = createHash(algorithm);
    createReadStream(path)
      .on('data', (chunk) => hash.update(chunk))
      .on('error', fail)
      .on('end', () => done(hash.digest(encoding)));
  });
}
