// Starting a worker thread on a module beside its caller (convert's quantize-worker and
// hash-worker, verify's floor-check-worker) the same way from dist/ and from the TypeScript
// sources: in dist/ it is the .js file beside the caller; under tsx (tests, bench) the .ts file, loaded by a bootstrap that registers tsx first, because
// Node 20 does not apply an `--import tsx` in the worker's execArgv to the worker's entry module.

import { Worker } from 'node:worker_threads';

/**
 * The parent's node options minus those that only make sense for the main script (an inline
 * `-e` program, its --input-type, the test runner, a debugger port): by default a worker inherits
 * them all, and `--input-type` alone makes it fail to start.
 */
export function workerExecArgv(execArgv: readonly string[]): string[] {
  const withValue = new Set(['-e', '--eval', '-p', '--print', '--input-type']);
  const dropped = /^(--input-type=|--eval=|--print=|--test|--watch|--inspect|--debug-port)/;
  const out: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const a = execArgv[i]!;
    if (withValue.has(a)) i++;
    else if (!dropped.test(a)) out.push(a);
  }
  return out;
}

/** A worker running module `name` that sits beside the module whose import.meta.url is `callerUrl`. */
export function startModuleWorker(callerUrl: string, name: string): Worker {
  const execArgv = workerExecArgv(process.execArgv);
  if (!callerUrl.endsWith('.ts')) return new Worker(new URL(`./${name}.js`, callerUrl), { execArgv });
  const tsx = import.meta.resolve('tsx/esm/api');
  const entry = new URL(`./${name}.ts`, callerUrl).href;
  const bootstrap = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(entry)}); });`;
  return new Worker(bootstrap, { eval: true, execArgv });
}
