#!/usr/bin/env node
// Turns on fp8q's CUDA device: places ONNX Runtime's CUDA execution provider next to
// onnxruntime-node's core, where onnxruntime loads providers from. The plain install stays
// CPU-only and offline; this is the one step that adds CUDA:
//
//   npm run setup:cuda                      fetch the pinned provider package from the npm registry
//   npm run setup:cuda -- <file.tgz|folder> use a copy already on disk (offline machines)
//   npm run setup:cuda -- --check           only report whether CUDA would be used, and why not
//
// The provider comes from the npm package com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9: ONNX
// Runtime 1.29.0 built against CUDA 13. Providers must match the core's version exactly, so the
// installed onnxruntime-node must be 1.29.0. Every input is checked against pinned hashes. A later
// `npm ci` reinstalls onnxruntime-node without the provider: run this again after it.
//
// At run time the provider needs the CUDA 13 libraries (libcudart.so.13, libcublas.so.13,
// libcublasLt.so.13, libcurand.so.10) on LD_LIBRARY_PATH or in the ldconfig cache, and a GPU;
// `fp8q ... --device cuda` names whatever is missing.

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, copyFileSync, chmodSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const PACKAGE_SPEC = 'com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9';
/** npm's dist.integrity for PACKAGE_SPEC. */
const PACKAGE_INTEGRITY = 'sha512-FopIhNE/Ng+v2X65wVc9clPCBCvhvA53Hxo2U0Kf5fGdVsC7iCA+mZ0KLWggcQAj7TIZ6pNidR4AC10g74Xo6w==';
const ORT_VERSION = '1.29.0';
const PLUGIN_DIR = 'package/Plugins/Linux/x64';
/** sha256 of each file as shipped in PACKAGE_SPEC, so a folder given offline is checked too. */
const FILES = {
  'libonnxruntime_providers_shared.so': 'c6a12593396095f5670160e284c35d1700b7708cf3037b7042e2a5200ccae772',
  'libonnxruntime_providers_cuda.so': '56cf3254b118ad837ccc4ed8f6d1b23504bbf7ef91b34cbc0b289cb7f10b3037',
};

const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

class SetupError extends Error {}

async function main(argv) {
  const checkOnly = argv.includes('--check');
  const sources = argv.filter((a) => a !== '--check');
  if (sources.length > 1 || sources.some((a) => a.startsWith('-'))) {
    throw new SetupError('usage: npm run setup:cuda [-- <package.tgz | folder>] [-- --check]');
  }
  if (!checkOnly) {
    if (process.platform !== 'linux' || process.arch !== 'x64') {
      throw new SetupError(`the CUDA provider is built for linux-x64; this is ${process.platform}-${process.arch} (fp8q runs on the CPU here)`);
    }
    const dest = onnxruntimeBinaryDir();
    const work = mkdtempSync(join(tmpdir(), 'fp8q-setup-cuda-'));
    try {
      const folder = await providerFolder(sources[0], work);
      for (const [name, sha256] of Object.entries(FILES)) {
        const from = join(folder, name);
        if (!existsSync(from)) throw new SetupError(`${from} is missing: give the ${PACKAGE_SPEC} tarball or a folder holding ${Object.keys(FILES).join(' and ')}`);
        const got = await hashFile(from, 'sha256', 'hex');
        if (got !== sha256) throw new SetupError(`${from}: sha256 ${got}, expected ${sha256} (the file from ${PACKAGE_SPEC})`);
        // Copy then rename: an interrupted copy never leaves a half library where onnxruntime looks.
        const partial = join(dest, `.${name}.partial`);
        copyFileSync(from, partial);
        chmodSync(partial, 0o755);
        renameSync(partial, join(dest, name));
        log(`installed ${join(dest, name)} (${(statSync(from).size / 1e6).toFixed(1)} MB)`);
      }
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }
  await reportReadiness();
}

/** onnxruntime-node's binary folder, after checking it is the version the provider was built for. */
function onnxruntimeBinaryDir() {
  const require = createRequire(join(projectRoot, 'package.json'));
  let packageJson;
  try {
    packageJson = require.resolve('onnxruntime-node/package.json');
  } catch {
    throw new SetupError(`onnxruntime-node is not installed under ${projectRoot}: run npm ci first`);
  }
  const { version } = JSON.parse(readFileSync(packageJson, 'utf8'));
  if (version !== ORT_VERSION) {
    throw new SetupError(`onnxruntime-node ${version} is installed; the CUDA provider of ${PACKAGE_SPEC} matches ${ORT_VERSION} only (run npm ci to restore the pinned version)`);
  }
  const dir = join(dirname(packageJson), 'bin', 'napi-v6', 'linux', 'x64');
  if (!existsSync(join(dir, 'libonnxruntime.so.1'))) throw new SetupError(`${dir}/libonnxruntime.so.1 is missing: reinstall with npm ci`);
  return dir;
}

/** A folder holding the two provider files: from the registry, a tarball, or a folder given. */
async function providerFolder(source, work) {
  if (source !== undefined && existsSync(source) && statSync(source).isDirectory()) {
    const plugins = join(source, PLUGIN_DIR.replace(/^package\//, ''));
    const nested = join(source, PLUGIN_DIR);
    return [nested, plugins, source].find((d) => existsSync(join(d, 'libonnxruntime_providers_cuda.so'))) ?? source;
  }
  let tarball = source;
  if (tarball === undefined) {
    log(`fetching ${PACKAGE_SPEC} from the npm registry (about 180 MB)…`);
    const name = execFileSync('npm', ['pack', PACKAGE_SPEC, '--pack-destination', work, '--silent'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    }).trim().split('\n').pop();
    tarball = join(work, name);
  } else if (!existsSync(tarball)) {
    throw new SetupError(`${tarball}: no such file or folder`);
  }
  const integrity = `sha512-${await hashFile(tarball, 'sha512', 'base64')}`;
  if (integrity !== PACKAGE_INTEGRITY) throw new SetupError(`${tarball}: integrity ${integrity} is not ${PACKAGE_SPEC}'s ${PACKAGE_INTEGRITY}`);
  execFileSync('tar', ['-xzf', tarball, '-C', work, ...Object.keys(FILES).map((f) => `${PLUGIN_DIR}/${f}`)], { stdio: 'inherit' });
  return join(work, PLUGIN_DIR);
}

function hashFile(path, algorithm, encoding) {
  return new Promise((done, fail) => {
    const hash = createHash(algorithm);
    createReadStream(path)
      .on('data', (chunk) => hash.update(chunk))
      .on('error', fail)
      .on('end', () => done(hash.digest(encoding)));
  });
}

/** Runs fp8q's own device check (from the build) so the user learns now what `--device cuda` will say. */
async function reportReadiness() {
  const built = join(projectRoot, 'dist', 'runtime', 'device.js');
  if (!existsSync(built)) {
    log('run `npm run build`, then `npm run setup:cuda -- --check` to test the GPU');
    return;
  }
  const { selectDevice } = await import(pathToFileURL(built).href);
  const selection = await selectDevice('auto');
  log(selection.device === 'cuda' ? `CUDA ready: ${selection.reason}` : `CUDA not usable yet: ${selection.reason.replace(/^CUDA not used: /, '')}`);
  if (selection.device !== 'cuda') {
    try {
      await selectDevice('cuda');
    } catch (error) {
      log(`what to do: ${error.problem?.remedy ?? error.message}`);
    }
  }
}

function log(line) {
  process.stdout.write(`setup:cuda: ${line}\n`);
}

main(process.argv.slice(2)).catch((error) => {
  process.stderr.write(`setup:cuda: ${error instanceof SetupError ? error.message : (error?.stack ?? String(error))}\n`);
  process.exit(1);
});
