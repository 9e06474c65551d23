// The files that travel beside a checkpoint's weights (tokenizer, generation config, chat template,
// README …): which ones an output gets, and copying them. A companion file is copied only when it
// is a regular file inside the model folder; a symbolic link that leads out of it (to /etc/passwd,
// to a token file) is skipped with a warning and never followed, so no command that writes (and
// no --push-to after it) can carry a file from elsewhere on the machine into a checkpoint.

import { copyFile, lstat, mkdir, realpath } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative } from 'node:path';

export interface CompanionSelection {
  /** Paths relative to the model folder, with `/`. */
  readonly files: readonly string[];
  readonly warnings: readonly string[];
}

function inside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

/**
 * The folder links may point into: the model folder itself, or for a Hugging Face cache snapshot
 * (`models--org--name/snapshots/<commit>`, whose files are links to `../../blobs/<hash>`) the
 * repo's cache folder.
 */
function containmentRoot(realDir: string): string {
  const parent = dirname(realDir);
  const repo = dirname(parent);
  return basename(parent) === 'snapshots' && basename(repo).startsWith('models--') ? repo : realDir;
}

/** Files that hold weights in other formats: never shipped beside the written safetensors. */
const FOREIGN_WEIGHT_FILE = /\.(bin|pt|pth|ckpt|h5|msgpack|gguf|onnx|onnx_data)$/i;

/**
 * The one rule, for every command that writes a checkpoint, of which other files of the input
 * travel: not config.json (each command writes its own), not weights in another format, not a
 * safetensors file that is not one of the checkpoint's shards, not a hidden file.
 */
export function isCompanionCandidate(file: string): boolean {
  return file !== 'config.json' && !FOREIGN_WEIGHT_FILE.test(file) && !file.endsWith('.safetensors') && !file.split('/').some((p) => p.startsWith('.'));
}

/**
 * `candidates` (files of `dir` other than its shards, relative paths) reduced to those a writer
 * copies: the companion rule above, and each must resolve to a regular file inside the model folder.
 */
export async function selectCompanionFiles(dir: string, candidates: readonly string[]): Promise<CompanionSelection> {
  const realDir = await realpath(dir);
  const root = containmentRoot(realDir);
  const files: string[] = [];
  const warnings: string[] = [];
  for (const file of candidates) {
    if (!isCompanionCandidate(file)) continue;
    const path = join(dir, file);
    let target: string;
    try {
      target = await realpath(path);
    } catch {
      warnings.push(`${path} is a broken symbolic link: not copied`);
      continue;
    }
    if (!inside(root, target)) {
      warnings.push(`${path} leads outside the model folder (to ${target}): not copied (fp8q never copies files from elsewhere into a checkpoint)`);
      continue;
    }
    const s = await lstat(target);
    if (!s.isFile()) {
      warnings.push(`${path} is not a regular file: not copied`);
      continue;
    }
    files.push(file);
  }
  return { files, warnings };
}

/** Copies the selected files from `dir` into `dest`, creating subfolders. */
export async function copyCompanionFiles(dir: string, dest: string, files: readonly string[]): Promise<void> {
  for (const f of files) {
    await mkdir(dirname(join(dest, f)), { recursive: true });
    await copyFile(join(dir, f), join(dest, f));
  }
}
