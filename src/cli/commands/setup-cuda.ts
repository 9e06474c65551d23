// `fp8q setup-cuda [<file.tgz|folder>] [--check]`: installs the CUDA execution provider (or, with
// --check, only looks), then says what `--device auto` picks now and, when that is the CPU, what
// to do. Works from an installed package as from a clone.

import { cudaProviderBuild, onnxruntimeBinaryDir, selectDevice, DeviceUnavailableError, type DeviceSelection } from '../../runtime/device/device.js';
import { CudaSetupError, installCudaProvider, type InstalledFile } from '../../runtime/device/cuda-setup.js';
import { ExitError } from '../common/errors.js';
import { info, outputMode, printJson } from '../common/output.js';
import type { SetupCudaFlags } from './setup-cuda-flags.js';

export interface SetupCudaReport {
  readonly installed: readonly InstalledFile[];
  readonly providerDir: string;
  /** The provider build now next to onnxruntime's core, or null. */
  readonly provider: { readonly cudaMajor: number | null; readonly origin: string } | null;
  readonly auto: DeviceSelection;
  /** When auto picks the CPU: what --device cuda would say to do. */
  readonly remedy: string | null;
}

export async function setupCudaCommand(source: string | undefined, flags: SetupCudaFlags): Promise<SetupCudaReport> {
  const mode = outputMode(flags);
  let installed: InstalledFile[] = [];
  if (!flags.check) {
    try {
      installed = await installCudaProvider(source, (line) => info(mode, line));
    } catch (e) {
      if (e instanceof CudaSetupError) throw new ExitError(`setup-cuda: ${e.message}`, 1, e.errorCode);
      throw e;
    }
    for (const f of installed) info(mode, `installed ${f.path} (${(f.bytes / 1e6).toFixed(1)} MB)`);
  } else if (source !== undefined) {
    throw new ExitError('setup-cuda --check installs nothing: give either a provider source or --check', 2, 'E_USAGE');
  }
  const auto = await selectDevice('auto');
  let remedy: string | null = null;
  if (auto.device !== 'cuda') {
    try {
      await selectDevice('cuda');
    } catch (e) {
      remedy = e instanceof DeviceUnavailableError ? e.problem.remedy : (e as Error).message;
    }
  }
  const providerDir = onnxruntimeBinaryDir();
  const report: SetupCudaReport = { installed, providerDir, provider: cudaProviderBuild(providerDir), auto, remedy };
  if (flags.json) {
    printJson(report);
    return report;
  }
  const p = report.provider;
  process.stdout.write(`CUDA provider: ${p ? `${p.origin}${p.cudaMajor !== null ? ` (CUDA ${p.cudaMajor})` : ''}` : 'none'} in ${providerDir}\n`);
  process.stdout.write(`--device auto: ${auto.device} (${auto.reason})\n`);
  if (remedy !== null) process.stdout.write(`to use the GPU: ${remedy}\n`);
  return report;
}
