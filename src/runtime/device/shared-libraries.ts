// Where the dynamic loader would find a shared library (LD_LIBRARY_PATH, the ldconfig cache, the
// default folders), and where CUDA libraries usually sit when it would not (a CUDA toolkit under
// /usr/local, a Python venv's nvidia/cu13/lib). Used to turn "the CUDA provider did not load" into
// "libcublasLt.so.13 is missing; it is in /usr/local/cuda-13.0/lib64: add that to LD_LIBRARY_PATH".

import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export interface LibrarySearch {
  /** Folders the loader searches, in order: LD_LIBRARY_PATH, then the default folders. */
  readonly dirs: readonly string[];
  /** name → path from `ldconfig -p` (empty where ldconfig is missing). */
  readonly cache: ReadonlyMap<string, string>;
  /** Folders that often hold CUDA libraries but that the loader does not search. */
  readonly candidates: readonly string[];
}

export interface LibraryLookup {
  readonly name: string;
  /** Where the loader would find it, or null. */
  readonly path: string | null;
  /** When the loader would not: a candidate folder that holds it, or null. */
  readonly candidate: string | null;
}

const DEFAULT_DIRS = ['/lib', '/usr/lib', '/lib64', '/usr/lib64', '/lib/x86_64-linux-gnu', '/usr/lib/x86_64-linux-gnu'];

/** The search the dynamic loader of this process would make (LD_LIBRARY_PATH as read at startup). */
export function systemLibrarySearch(env: NodeJS.ProcessEnv = process.env): LibrarySearch {
  const fromEnv = (env['LD_LIBRARY_PATH'] ?? '').split(':').filter((d) => d !== '');
  return {
    dirs: [...fromEnv, ...DEFAULT_DIRS],
    cache: ldconfigCache(),
    candidates: cudaCandidateDirs(env),
  };
}

export function findLibrary(name: string, search: LibrarySearch): LibraryLookup {
  for (const dir of search.dirs) {
    const path = join(dir, name);
    if (existsSync(path)) return { name, path, candidate: null };
  }
  const cached = search.cache.get(name);
  if (cached !== undefined) return { name, path: cached, candidate: null };
  const candidate = search.candidates.find((dir) => existsSync(join(dir, name))) ?? null;
  return { name, path: null, candidate };
}

/** Parses `ldconfig -p` lines such as "\tlibcudart.so.13 (libc6,x86-64) => /usr/lib/libcudart.so.13". */
export function parseLdconfigCache(text: string): Map<string, string> {
  const cache = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^\s*(\S+)\s+\(([^)]*)\)\s+=>\s+(\S+)\s*$/.exec(line);
    if (m === null) continue;
    // 32-bit entries would not load into a 64-bit process.
    if (!m[2]!.includes('x86-64') && !m[2]!.includes('64bit')) continue;
    if (!cache.has(m[1]!)) cache.set(m[1]!, m[3]!);
  }
  return cache;
}

function ldconfigCache(): Map<string, string> {
  for (const ldconfig of ['/sbin/ldconfig', '/usr/sbin/ldconfig', 'ldconfig']) {
    try {
      return parseLdconfigCache(execFileSync(ldconfig, ['-p'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 }));
    } catch {
      // Try the next one; no ldconfig at all means no cache to consult.
    }
  }
  return new Map();
}

/** CUDA toolkits under /usr/local and CUDA_HOME/CUDA_PATH, and pip's nvidia/cu13 in known venvs. */
export function cudaCandidateDirs(env: NodeJS.ProcessEnv = process.env): string[] {
  const dirs: string[] = [];
  for (const home of [env['CUDA_HOME'], env['CUDA_PATH']]) {
    if (home !== undefined && home !== '') dirs.push(join(home, 'lib64'), join(home, 'targets/x86_64-linux/lib'));
  }
  // Newest toolkit first: cuda-13.1 before cuda-13.0 before the unversioned link.
  for (const name of listDir('/usr/local')
    .filter((n) => /^cuda(-\d+(\.\d+)?)?$/.test(n))
    .sort()
    .reverse()) {
    dirs.push(join('/usr/local', name, 'lib64'), join('/usr/local', name, 'targets/x86_64-linux/lib'));
  }
  const venvs = [env['VIRTUAL_ENV'], ...listDir('/opt').flatMap((n) => [join('/opt', n, '.venv'), join('/opt', n, 'venv')])];
  const sitePackages: string[] = [];
  for (const venv of venvs) {
    if (venv === undefined || venv === '') continue;
    for (const py of listDir(join(venv, 'lib')).filter((n) => n.startsWith('python3'))) {
      sitePackages.push(join(venv, 'lib', py, 'site-packages'));
    }
  }
  for (const py of listDir(join(homedir(), '.local/lib')).filter((n) => n.startsWith('python3'))) {
    sitePackages.push(join(homedir(), '.local/lib', py, 'site-packages'));
  }
  for (const py of listDir('/usr/local/lib').filter((n) => n.startsWith('python3'))) {
    sitePackages.push(join('/usr/local/lib', py, 'dist-packages'), join('/usr/local/lib', py, 'site-packages'));
  }
  for (const site of sitePackages) dirs.push(join(site, 'nvidia/cu13/lib'));
  return dirs.filter((d) => existsSync(d));
}

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
