// The runtime commands (verify, logits, generate) start again as a child process with glibc's
// malloc tunable `glibc.malloc.hugetlb=1`, which makes malloc ask for transparent huge pages.
//
// Also `convert --activation-scheme static`, whose calibration forward runs the model the same way.
//
// Why: these commands allocate and free large blocks run after run — onnxruntime's work memory,
// the graph outputs onnxruntime-node allocates fresh for each run (on CUDA a new ArrayBuffer per
// output, at 512 tokens ~0.25 GB a decoder layer), widened weights — and glibc returns each freed
// block to the kernel, so every run first-touches fresh 4 KiB pages again. That page faulting,
// not the arithmetic or the copy, is what bounds them: on an H200 host a 256 MB output came back
// from the GPU at 1.3 GB/s, 2.4 GB/s with huge pages; on this project's 2-core VM a CPU verify of
// one Llama-8B-shaped checkpoint took 18.7–20.3 s with ~790,000 page faults and 7.8–8.2 s with
// ~46,000, the same report (docs/ARCHITECTURE.md, "Host memory"). glibc reads its tunables only
// when a process starts, hence the child.
//
// Not relaunched: other commands, non-Linux systems, a process under the inspector, and any run
// where GLIBC_TUNABLES is already set (also to the empty string: the way to opt out).
//
// The child stops with its parent: signals the parent can catch it passes on, and when the parent
// is gone without (SIGKILL) the child's end of a pipe only the parent holds reads end-of-file.

import { spawn } from 'node:child_process';
import { Socket } from 'node:net';

export const MALLOC_TUNABLES = 'glibc.malloc.hugetlb=1';

const RUNTIME_COMMANDS: ReadonlySet<string> = new Set(['verify', 'logits', 'generate']);

/** The GLIBC_TUNABLES value to relaunch with, or undefined to run in this process. `args`: argv without node and the script. */
export function relaunchTunables(
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  platform: NodeJS.Platform,
  /** A debugger is attached or listening (node:inspector's url()): it would debug the waiting parent. */
  inspecting = false,
): string | undefined {
  if (platform !== 'linux' || env['GLIBC_TUNABLES'] !== undefined || inspecting) return undefined;
  // The command is the first word that is not an option, as the CLI's signal handler finds it.
  const command = args.find((a) => !a.startsWith('-'));
  if (command === undefined) return undefined;
  if (RUNTIME_COMMANDS.has(command)) return MALLOC_TUNABLES;
  return command === 'convert' && lastOptionValue(args, '--activation-scheme') === 'static' ? MALLOC_TUNABLES : undefined;
}

/** The value of the last `--name value` or `--name=value` in `args` (the one commander keeps). */
function lastOptionValue(args: readonly string[], name: string): string | undefined {
  let value: string | undefined;
  args.forEach((a, i) => {
    if (a === name) value = args[i + 1];
    else if (a.startsWith(`${name}=`)) value = a.slice(name.length + 1);
  });
  return value;
}

/**
 * The parent's node flags for the child (--cpu-prof profiles the child too), but not the
 * inspector's: the parent already holds its port. To debug a runtime command, run it in-process
 * (GLIBC_TUNABLES=).
 */
export function childNodeFlags(execArgv: readonly string[]): string[] {
  const flags: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const flag = execArgv[i]!;
    if (!/^--(inspect(-brk|-port|-wait)?|debug-port)(=|$)/.test(flag)) flags.push(flag);
    // node also takes the port as the next word; left behind, the child would run it as its script.
    else if (flag === '--inspect-port' || flag === '--debug-port') i++;
  }
  return flags;
}

/** In the child's environment: the descriptor of its end of that pipe. */
const PARENT_PIPE_FD = 'FP8Q_RELAUNCH_PARENT_FD';

const FORWARDED: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/**
 * Runs `script args` in a child node (same node flags) with GLIBC_TUNABLES set, stdio shared
 * (`--text -` reads the same stdin).
 * Signals sent to this process go on to the child, whose own handler cleans up and sets the exit
 * code; resolves to the child's exit code, or to the signal that ended it.
 */
export function runRelaunched(script: string, args: readonly string[], tunables: string): Promise<number | NodeJS.Signals> {
  const child = spawn(process.execPath, [...childNodeFlags(process.execArgv), script, ...args], {
    stdio: ['inherit', 'inherit', 'inherit', 'pipe'],
    env: { ...process.env, GLIBC_TUNABLES: tunables, [PARENT_PIPE_FD]: '3' },
  });
  // This end only has to exist; it must not keep this process up after the child has exited (a
  // tool the child started may still hold the child's end).
  (child.stdio[3] as Socket | null | undefined)?.unref();
  const forward = (signal: NodeJS.Signals): void => {
    child.kill(signal);
  };
  for (const s of FORWARDED) process.on(s, forward);
  // Also when the child could not start: bin/fp8q.js then runs the command in this process, where
  // a forwarder left installed would swallow a SIGHUP.
  const stopForwarding = (): void => {
    for (const s of FORWARDED) process.off(s, forward);
  };
  return new Promise((resolve, reject) => {
    child.once('error', (e) => {
      stopForwarding();
      reject(e);
    });
    child.once('exit', (code, signal) => {
      stopForwarding();
      resolve(signal ?? code ?? 1);
    });
  });
}

/**
 * In a relaunched child (a no-op elsewhere): once the parent is gone, stop as on a SIGTERM, whose
 * handler removes partial output. A parent killed by SIGKILL (`kill -9`, a harness's timeout)
 * passes nothing on, and the child would otherwise run to its end, on the GPU, with no one waiting.
 */
export function stopWithParent(): void {
  const fd = process.env[PARENT_PIPE_FD];
  if (fd === undefined) return;
  // The processes this one starts are not relaunched children.
  delete process.env[PARENT_PIPE_FD];
  const pipe = new Socket({ fd: Number(fd), readable: true, writable: false });
  // 'close' follows both end-of-file and a reset.
  pipe.once('close', () => process.kill(process.pid, 'SIGTERM'));
  pipe.on('error', () => undefined);
  pipe.resume();
  pipe.unref();
}
