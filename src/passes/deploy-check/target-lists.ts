// The engine / tensor-parallel lists a user writes (`--tp 1,2,4,8`, `--target vllm:tp8,mlc`), read
// into values. Apart from the rules so the CLI's flag tables, loaded before any command runs, can
// name these parsers without loading the deployment check itself.

import { ENGINES, type EngineId } from './engines.js';

export interface DeployTarget {
  readonly engine: EngineId;
  readonly tp: number;
}

export function parseTpSizes(text: string): number[] {
  const out: number[] = [];
  for (const raw of text.split(',')) {
    const t = raw.trim();
    if (t === '') continue;
    const n = Number(t);
    if (!Number.isSafeInteger(n) || n < 1 || n > 1024) throw new Error(`invalid tensor-parallel size "${t}": expected positive integers such as 1,2,4,8`);
    if (!out.includes(n)) out.push(n);
  }
  if (out.length === 0) throw new Error('no tensor-parallel size given: expected e.g. 1,2,4,8');
  return out;
}

/**
 * `vllm:tp8,mlc,sglang:tp2` → targets. An engine without `:tpN` means tensor-parallel size 1.
 * Throws an Error with a message for the user on anything else.
 */
export function parseTargets(text: string): DeployTarget[] {
  const out: DeployTarget[] = [];
  for (const raw of text.split(',')) {
    const t = raw.trim().toLowerCase();
    if (t === '') continue;
    const m = /^([a-z]+)(?::tp(\d+))?$/.exec(t);
    const engine = m ? ENGINES.find((e) => e === m[1]) : undefined;
    if (!m || !engine) throw new Error(`invalid --target "${raw.trim()}": expected <engine>[:tpN] with engine one of ${ENGINES.join(', ')}, e.g. vllm:tp8,mlc`);
    const tp = m[2] === undefined ? 1 : Number(m[2]);
    if (!Number.isSafeInteger(tp) || tp < 1) throw new Error(`invalid tensor-parallel size in --target "${raw.trim()}"`);
    if (!out.some((x) => x.engine === engine && x.tp === tp)) out.push({ engine, tp });
  }
  if (out.length === 0) throw new Error('--target needs at least one engine, e.g. vllm:tp8,mlc');
  return out;
}
