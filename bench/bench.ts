// `npm run bench`: is conversion disk-bound and memory-flat?
//
// Writes a synthetic Llama-8B-shaped BF16 checkpoint (≥ 4 GiB, sharded, two 1 GiB tensors) into a
// temp dir, then measures, from the same cache state each time, `cp -r` of the source folder (and
// the `sync` after it) and the built CLI's `fp8q convert`, started as users start it (`node
// bin/fp8q.js`, in a child; wall time, and the peak RSS its processes report) at each --threads
// setting. The cache state: everything synced,
// the page cache dropped, then a pause so the VM's free-page reporting has settled (on a VM whose
// balloon takes freed pages back, the first touch of a page costs a host fault, and a run that
// starts right after a drop pays for it differently than one that starts later). Where the cache
// cannot be dropped, the source is read once before each run instead (warm). Every measurement
// is repeated (--reps) in rotation; the table shows the best run of each, the JSON every run.
// Then `fp8q verify <source> <converted> --device cpu` once on the last convert's output (wall
// time, tokens/s, peak RSS next to one decoder layer's weights: verify holds about one layer).
// Also times the quantize kernels alone on in-memory data. Cleans up its temp dir, also on Ctrl-C.
//
// Flags: --json (one JSON document on stdout; use `npm run -s bench -- --json`), --layers <n>
// (default 5; fewer for a smoke run), --reps <n> (default 2), --threads <list> (default
// "1,default"; "default" passes no --threads), --settle <s> (default 5), --verify-tokens <n>
// (default 32), --no-verify, --no-build (use dist/ as is), --keep (leave the temp dir), --tmp <dir>
// (default os.tmpdir()).

import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { computeRates, gemmRate, type ComputeRates } from './compute-rates.js';
import { HEAD_CHUNK_BYTES } from '../src/runtime/models/runner.js';
import { DEEPSEEK_BENCH, DEEPSEEK_V3, writeSyntheticDeepseek } from './synthetic-deepseek.js';
import { LLAMA_8B_LIKE, writeSyntheticCheckpoint, type SyntheticCheckpoint, type SyntheticShape } from './synthetic-checkpoint.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const DIST_CLI = join(REPO, 'dist', 'cli', 'index.js');
/** The CLI as users start it: it runs the runtime commands in a child with malloc tunables (src/cli/malloc-relaunch.ts). */
const BIN = join(REPO, 'bin', 'fp8q.js');
/** Source shards of at most this size: several shards, as real checkpoints have. */
const SOURCE_SHARD_BYTES = 2e9;
/** A convert that takes longer than this has hung (e.g. a worker kept the process alive). */
const CHILD_TIMEOUT_MS = 15 * 60 * 1000;

type Threads = number | 'default';

interface Args {
  json: boolean;
  layers: number;
  reps: number;
  settleSeconds: number;
  build: boolean;
  keep: boolean;
  tmp: string;
  threads: Threads[];
  /** Tokens for the verify run; 0: no verify (--no-verify). */
  verifyTokens: number;
  /** Measure every conversion path (--no-paths: only the plain convert rows). */
  paths: boolean;
  /** Layers of the DeepSeek-V3-shaped checkpoints (0: none, --deepseek-layers). */
  deepseekLayers: number;
}

function parseArgs(argv: readonly string[]): Args {
  const args: Args = {
    json: false,
    layers: LLAMA_8B_LIKE.layers,
    reps: 2,
    settleSeconds: 5,
    build: true,
    keep: false,
    tmp: tmpdir(),
    threads: [1, 'default'],
    verifyTokens: 32,
    paths: true,
    deepseekLayers: DEEPSEEK_BENCH.layers,
  };
  const positive = (flag: string, v: string | undefined): number => {
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`bench: ${flag} needs a non-negative integer, got "${v}"`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--json') args.json = true;
    else if (a === '--no-build') args.build = false;
    else if (a === '--keep') args.keep = true;
    else if (a === '--layers') args.layers = Math.max(1, positive(a, argv[++i]));
    else if (a === '--reps') args.reps = Math.max(1, positive(a, argv[++i]));
    else if (a === '--settle') args.settleSeconds = positive(a, argv[++i]);
    else if (a === '--verify-tokens') args.verifyTokens = Math.max(1, positive(a, argv[++i]));
    else if (a === '--no-verify') args.verifyTokens = 0;
    else if (a === '--no-paths') args.paths = false;
    else if (a === '--deepseek-layers') args.deepseekLayers = positive(a, argv[++i]);
    else if (a === '--tmp') args.tmp = argv[++i] ?? '';
    else if (a === '--threads') args.threads = (argv[++i] ?? '').split(',').map((t) => (t === 'default' ? t : Math.max(1, positive(a, t))));
    else
      throw new Error(
        `bench: unknown argument "${a}" (expected --json, --layers <n>, --reps <n>, --threads <list>, --settle <s>, --verify-tokens <n>, --no-verify, --no-paths, --deepseek-layers <n>, --no-build, --keep, --tmp <dir>)`,
      );
  }
  return args;
}

type CacheState = 'cold: synced, page cache dropped, settled' | 'warm: synced, source read once before';

/** Same starting point for every measurement: nothing dirty, and the source cold (or all warm). */
async function resetCache(source: string, settleSeconds: number): Promise<CacheState> {
  spawnSync('sync');
  try {
    await writeFile('/proc/sys/vm/drop_caches', '3');
    await sleep(settleSeconds * 1000);
    return 'cold: synced, page cache dropped, settled';
  } catch {
    for (const f of await readdir(source)) spawnSync('cat', [join(source, f)], { stdio: ['ignore', 'ignore', 'ignore'] });
    return 'warm: synced, source read once before';
  }
}

function timeCommand(cmd: string, args: readonly string[]): number {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  if (r.status !== 0) throw new Error(`bench: ${cmd} ${args.join(' ')} failed (${r.status ?? r.signal})`);
  return (performance.now() - t0) / 1000;
}

interface CpRun {
  readonly seconds: number;
  readonly syncSeconds: number;
}

interface ConvertRun {
  readonly threads: Threads;
  readonly seconds: number;
  readonly maxRssMiB: number;
  readonly bytesOut: number;
  readonly shards: number;
}

interface CliRun {
  readonly code: number | null;
  readonly seconds: number;
  readonly maxRssMiB: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Reports each node process's peak RSS (ru_maxrss, all its threads) on exit; loaded into every
 * process of a run through NODE_OPTIONS, since `bin/fp8q.js` runs some commands in a child.
 */
const MAXRSS_HOOK = `--import=data:text/javascript,${encodeURIComponent("process.on('exit',()=>process.stderr.write('\\nFP8Q_BENCH_MAXRSS_KB='+process.resourceUsage().maxRSS+'\\n'))")}`;

/** Runs the built CLI as a user does (`node bin/fp8q.js …`), in a child; peak RSS is the largest any of its processes reports. */
async function runCli(cli: readonly string[]): Promise<CliRun> {
  const t0 = performance.now();
  const env = { ...process.env, NODE_OPTIONS: [process.env['NODE_OPTIONS'], MAXRSS_HOOK].filter(Boolean).join(' ') };
  const child = spawn(process.execPath, [BIN, ...cli.slice(1)], { stdio: ['ignore', 'pipe', 'pipe'], env });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), CHILD_TIMEOUT_MS);
  const code = await new Promise<number | null>((res) => child.on('close', (c) => res(c)));
  clearTimeout(timer);
  const seconds = (performance.now() - t0) / 1000;
  const peaks = [...stderr.matchAll(/FP8Q_BENCH_MAXRSS_KB=(\d+)/g)].map((m) => Number(m[1]));
  return { code, seconds, maxRssMiB: peaks.length > 0 ? Math.max(...peaks) / 1024 : NaN, stdout, stderr };
}

function childFailed(what: string, r: CliRun): Error {
  return new Error(`bench: ${what} exited with ${r.code} (null: killed after ${CHILD_TIMEOUT_MS / 1000} s):\n${r.stderr.slice(-4000)}`);
}

async function runConvert(source: string, output: string, threads: Threads): Promise<ConvertRun> {
  const r = await runCli(['fp8q', 'convert', source, '-o', output, '--json', ...(threads === 'default' ? [] : ['--threads', String(threads)])]);
  if (r.code !== 0) throw childFailed('fp8q convert', r);
  const summary = JSON.parse(r.stdout) as { bytesOut: number; shards: unknown[] };
  return { threads, seconds: r.seconds, maxRssMiB: r.maxRssMiB, bytesOut: summary.bytesOut, shards: summary.shards.length };
}

/** Exit status of a verify whose gates failed: the report is complete (random weights may fail them). */
const EXIT_GATE_FAILED = 3;

interface VerifyRun {
  readonly tokens: number;
  /** Wall time of the child (process start, both checkpoints opened, every layer, lm_head). */
  readonly seconds: number;
  /** The report's own time (verifyCheckpoints, without process start-up). */
  readonly reportSeconds: number;
  readonly tokensPerSecond: number;
  readonly maxRssMiB: number;
  /** Largest weight bytes held at once, as stored (both checkpoints), from the report. */
  readonly peakWeightBytes: number;
  /** One decoder layer's weights of the source, BF16 as stored and widened to float32 (the CPU forward's form). */
  readonly layerBf16Bytes: number;
  readonly layerFloat32Bytes: number;
  /** The largest float32 weight one graph takes at once: an lm_head row chunk or the largest layer matrix. */
  readonly largestFloat32TensorBytes: number;
  readonly rssOverLayerFloat32: number;
  readonly passed: boolean;
  /** The bound verify is held to: both checkpoints' bytes at the measured cold read rate, its FLOPs at onnxruntime's measured GEMM rate. */
  readonly bound?: VerifyBound;
}

interface VerifyBound {
  readonly readSeconds: number;
  readonly flops: number;
  readonly gemmFlopsPerSecond: number;
  readonly computeSeconds: number;
  /** max(read, compute): what a verify overlapping its reads with its compute would take. */
  readonly boundSeconds: number;
  readonly ratio: number;
  /** One decoder layer's weights as float32 + 256 MiB. */
  readonly rssBoundMiB: number;
}

async function runVerify(source: string, converted: string, tokens: number, shape: SyntheticShape): Promise<VerifyRun> {
  const r = await runCli(['fp8q', 'verify', source, converted, '--tokens', String(tokens), '--json', '--device', 'cpu']);
  if (r.code !== 0 && r.code !== EXIT_GATE_FAILED) throw childFailed('fp8q verify', r);
  const report = JSON.parse(r.stdout) as { seconds: number; peakWeightBytes: number; passed: boolean };
  const layerFloat32Bytes = layerParameters(shape) * 4;
  return {
    tokens,
    seconds: r.seconds,
    reportSeconds: report.seconds,
    tokensPerSecond: tokens / r.seconds,
    maxRssMiB: r.maxRssMiB,
    peakWeightBytes: report.peakWeightBytes,
    layerBf16Bytes: layerParameters(shape) * 2,
    layerFloat32Bytes,
    largestFloat32TensorBytes: largestFloat32Tensor(shape),
    rssOverLayerFloat32: (r.maxRssMiB * 2 ** 20) / layerFloat32Bytes,
    passed: report.passed,
  };
}

/** Parameters of one decoder layer: q, k, v, o, gate, up, down and the two norms. */
function layerParameters(s: SyntheticShape): number {
  return 2 * s.hidden * s.hidden + 2 * s.kvHidden * s.hidden + 3 * s.hidden * s.intermediate + 2 * s.hidden;
}

/** runner.ts: a BF16 lm_head runs in chunks of HEAD_CHUNK_BYTES as float32; a layer's largest is gate/up/down. */
function largestFloat32Tensor(s: SyntheticShape): number {
  const headRows = Math.min(s.vocab, Math.max(1, Math.floor(HEAD_CHUNK_BYTES / (s.hidden * 4))));
  return Math.max(headRows * s.hidden * 4, s.hidden * s.intermediate * 4);
}

/** One conversion path: a command over an input folder. */
interface PathSpec {
  readonly name: string;
  readonly input: string;
  readonly cli: (output: string) => string[];
}

interface PathRun {
  readonly name: string;
  readonly command: string;
  readonly seconds: number;
  readonly maxRssMiB: number;
  readonly inBytes: number;
  readonly outBytes: number;
  readonly largerSide: 'input' | 'output';
  /** `cp -r` of the larger side, measured right after this run from the same cache state. */
  readonly cpSeconds: number;
  readonly ratioToCp: number;
}

/** Runs `spec` once, then `cp -r` of the larger of its input and output folders; removes the output unless `keep`. */
async function measurePath(spec: PathSpec, work: string, settleSeconds: number, keep = false): Promise<PathRun & { output: string }> {
  const output = join(work, `path-${spec.name.replace(/[^a-z0-9]+/gi, '-')}`);
  await rm(output, { recursive: true, force: true });
  await resetCache(spec.input, settleSeconds);
  const cli = spec.cli(output);
  const r = await runCli([...cli, '--json']);
  if (r.code !== 0) throw childFailed(cli.slice(0, 2).join(' '), r);
  const inBytes = await dirBytes(spec.input);
  const outBytes = await dirBytes(output);
  const larger = outBytes > inBytes ? output : spec.input;
  await resetCache(larger, settleSeconds);
  const cpDir = join(work, 'cp-copy');
  const cpSeconds = timeCommand('cp', ['-r', larger, cpDir]);
  await rm(cpDir, { recursive: true, force: true });
  if (!keep) await rm(output, { recursive: true, force: true });
  const command = cli.map((a) => (a === spec.input ? '<in>' : a === output ? '<out>' : a)).join(' ');
  return {
    name: spec.name,
    command,
    seconds: r.seconds,
    maxRssMiB: r.maxRssMiB,
    inBytes,
    outBytes,
    largerSide: larger === output ? 'output' : 'input',
    cpSeconds,
    ratioToCp: r.seconds / cpSeconds,
    output,
  };
}

/** The best (lowest ratio to its cp -r) of `reps` runs of each path. */
async function measurePaths(specs: readonly PathSpec[], work: string, args: Args, log: (m: string) => void): Promise<{ best: PathRun[]; all: PathRun[] }> {
  const all: PathRun[] = [];
  for (let rep = 1; rep <= args.reps; rep++) {
    for (const spec of specs) {
      log(`[${rep}/${args.reps}] path ${spec.name}, then cp -r of its larger side`);
      const { output: _output, ...run } = await measurePath(spec, work, args.settleSeconds);
      all.push(run);
    }
  }
  const best = specs.map((spec) => all.filter((r) => r.name === spec.name).reduce((a, b) => (b.ratioToCp < a.ratioToCp ? b : a)));
  return { best, all };
}

interface DeepseekResult {
  readonly layers: number;
  readonly routedExperts: number;
  readonly sourceBytes: number;
  /** BF16 bytes of the full 671 B model, and the time a convert would take at the per-expert path's measured input rate. */
  readonly fullModelBytes: number;
  readonly extrapolatedSeconds: number;
  readonly extrapolatedCpSeconds: number;
}

interface ConvertBest extends ConvertRun {
  readonly ratioToCp: number;
  readonly ratioToCpSync: number;
  readonly inputGBps: number;
}

interface BenchResult {
  readonly machine: { cpus: number; cpuModel: string; node: string; loadBefore: number[]; loadAfter: number[] };
  readonly checkpoint: SyntheticCheckpoint & { generateSeconds: number };
  readonly cacheState: CacheState;
  readonly reps: number;
  /** Best (fastest) run of each: the table. */
  readonly cp: CpRun;
  readonly converts: readonly ConvertBest[];
  /** Every run, in the order made. */
  readonly runs: { readonly cp: readonly CpRun[]; readonly converts: readonly ConvertRun[] };
  readonly compute: ComputeRates;
  /** Absent with --no-verify. */
  readonly verify?: VerifyRun;
  /** Every conversion path against cp -r of its larger side (absent with --no-paths). */
  readonly paths?: { readonly best: readonly PathRun[]; readonly all: readonly PathRun[] };
  readonly deepseek?: DeepseekResult;
}

async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  for (const f of await readdir(dir, { recursive: true })) {
    const s = await stat(join(dir, f));
    if (s.isFile()) total += s.size;
  }
  return total;
}

async function bench(args: Args, work: string): Promise<BenchResult> {
  const log = (m: string): void => void process.stderr.write(`bench: ${m}\n`);
  const loadBefore = loadavg();
  if (args.build) {
    log('building dist/ (tsc -p tsconfig.build.json)');
    const r = spawnSync(process.execPath, [join(REPO, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(REPO, 'tsconfig.build.json')], { stdio: 'inherit' });
    if (r.status !== 0) log('tsc reported errors; measuring the dist/ it emitted');
  }
  if (!existsSync(DIST_CLI)) throw new Error(`bench: ${DIST_CLI} is missing; run npm run build`);

  log('compute-only kernel rates (in-memory, one core)');
  const compute = computeRates();

  const source = join(work, 'source');
  log(`writing a synthetic ${args.layers}-layer Llama-8B-shaped BF16 checkpoint into ${source}`);
  const g0 = performance.now();
  const shape: SyntheticShape = { ...LLAMA_8B_LIKE, layers: args.layers };
  const ckpt = await writeSyntheticCheckpoint(source, shape, SOURCE_SHARD_BYTES);
  const generateSeconds = (performance.now() - g0) / 1000;
  const sourceBytes = await dirBytes(source);

  let cacheState: CacheState = 'warm: synced, source read once before';
  const cpRuns: CpRun[] = [];
  const convertRuns: ConvertRun[] = [];
  const converted = join(work, 'fp8');
  for (let rep = 1; rep <= args.reps; rep++) {
    cacheState = await resetCache(source, args.settleSeconds);
    log(`[${rep}/${args.reps}] cp -r, then sync (${cacheState})`);
    const cpDir = join(work, 'cp-copy');
    const seconds = timeCommand('cp', ['-r', source, cpDir]);
    cpRuns.push({ seconds, syncSeconds: timeCommand('sync', []) });
    await rm(cpDir, { recursive: true, force: true });
    for (const threads of args.threads) {
      cacheState = await resetCache(source, args.settleSeconds);
      log(`[${rep}/${args.reps}] fp8q convert --threads ${threads} (${cacheState})`);
      await rm(converted, { recursive: true, force: true });
      convertRuns.push(await runConvert(source, converted, threads));
    }
  }
  let verify: VerifyRun | undefined;
  if (args.verifyTokens > 0) {
    await resetCache(source, args.settleSeconds);
    log(`fp8q verify --tokens ${args.verifyTokens} --device cpu on the last convert's output`);
    verify = await runVerify(source, converted, args.verifyTokens, shape);
    log('verify bound: cat > /dev/null of both checkpoints (same cache state), onnxruntime GEMM rate');
    await resetCache(source, args.settleSeconds);
    const readSeconds = timeCommand('sh', ['-c', `cat ${JSON.stringify(source)}/* ${JSON.stringify(converted)}/* > /dev/null`]);
    const gemm = await gemmRate();
    const flops = verifyFlops(shape, args.verifyTokens);
    const computeSeconds = flops / gemm.flopsPerSecond;
    const boundSeconds = Math.max(readSeconds, computeSeconds);
    verify = {
      ...verify,
      bound: {
        readSeconds,
        flops,
        gemmFlopsPerSecond: gemm.flopsPerSecond,
        computeSeconds,
        boundSeconds,
        ratio: verify.seconds / boundSeconds,
        rssBoundMiB: verify.layerFloat32Bytes / 2 ** 20 + 256,
      },
    };
  }
  let paths: BenchResult['paths'];
  let deepseek: DeepseekResult | undefined;
  if (args.paths) {
    const llama: PathSpec[] = [
      { name: 'plain BF16 → FP8', input: source, cli: (o) => ['fp8q', 'convert', source, '-o', o] },
      { name: 'compressed-tensors', input: source, cli: (o) => ['fp8q', 'convert', source, '-o', o, '--format', 'compressed-tensors'] },
      { name: 'requantize 64x64 of the FP8', input: converted, cli: (o) => ['fp8q', 'convert', converted, '-o', o, '--requantize', '--block', '64x64'] },
      { name: 'dequant of the FP8', input: converted, cli: (o) => ['fp8q', 'dequant', converted, '-o', o] },
    ];
    const measured = await measurePaths(llama, work, args, log);
    await rm(converted, { recursive: true, force: true });
    const best = [...measured.best];
    const all = [...measured.all];
    if (args.deepseekLayers > 0) {
      await rm(source, { recursive: true, force: true });
      const ds = join(work, 'deepseek');
      const dsShape = { ...DEEPSEEK_BENCH, layers: args.deepseekLayers };
      log(`writing a ${dsShape.layers}-layer DeepSeek-V3-shaped checkpoint (${dsShape.routedExperts} routed experts per layer, per expert) into ${ds}`);
      await writeSyntheticDeepseek(ds, dsShape, SOURCE_SHARD_BYTES);
      const dsBytes = await dirBytes(ds);
      const perExpert = await measurePaths(
        [
          { name: 'DeepSeek-V3 per-expert', input: ds, cli: (o) => ['fp8q', 'convert', ds, '-o', o] },
          { name: 'DeepSeek-V3 --stack-experts', input: ds, cli: (o) => ['fp8q', 'convert', ds, '-o', o, '--stack-experts'] },
          { name: 'DeepSeek-V3 --mla-split', input: ds, cli: (o) => ['fp8q', 'convert', ds, '-o', o, '--mla-split'] },
        ],
        work,
        args,
        log,
      );
      await rm(ds, { recursive: true, force: true });
      const dsf = join(work, 'deepseek-fused');
      log(`writing the same with fused experts (experts.gate_up_proj [E, 4096, 7168]) into ${dsf}`);
      await writeSyntheticDeepseek(dsf, { ...dsShape, fusedExperts: true }, SOURCE_SHARD_BYTES);
      const fused = await measurePaths([{ name: 'DeepSeek-V3 fused experts', input: dsf, cli: (o) => ['fp8q', 'convert', dsf, '-o', o] }], work, args, log);
      await rm(dsf, { recursive: true, force: true });
      best.push(...perExpert.best, ...fused.best);
      all.push(...perExpert.all, ...fused.all);
      const plainDs = perExpert.best[0]!;
      const fullModelBytes = DEEPSEEK_V3.fullParameters * 2;
      deepseek = {
        layers: dsShape.layers,
        routedExperts: dsShape.routedExperts,
        sourceBytes: dsBytes,
        fullModelBytes,
        extrapolatedSeconds: (fullModelBytes / plainDs.inBytes) * plainDs.seconds,
        extrapolatedCpSeconds: (fullModelBytes / plainDs.inBytes) * plainDs.cpSeconds,
      };
    }
    paths = { best, all };
  }
  await rm(converted, { recursive: true, force: true });
  const cp = cpRuns.reduce((a, b) => (b.seconds < a.seconds ? b : a));
  const cpSync = Math.min(...cpRuns.map((r) => r.seconds + r.syncSeconds));
  const converts = args.threads.map((threads) => {
    const best = convertRuns.filter((r) => r.threads === threads).reduce((a, b) => (b.seconds < a.seconds ? b : a));
    return { ...best, ratioToCp: best.seconds / cp.seconds, ratioToCpSync: best.seconds / cpSync, inputGBps: sourceBytes / best.seconds / 1e9 };
  });
  return {
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', node: process.version, loadBefore, loadAfter: loadavg() },
    checkpoint: { ...ckpt, bytes: sourceBytes, generateSeconds },
    cacheState,
    reps: args.reps,
    cp: { seconds: cp.seconds, syncSeconds: cpSync - cp.seconds },
    converts,
    runs: { cp: cpRuns, converts: convertRuns },
    compute,
    ...(verify === undefined ? {} : { verify }),
    ...(paths === undefined ? {} : { paths }),
    ...(deepseek === undefined ? {} : { deepseek }),
  };
}

/** FLOPs of a verify over `tokens` tokens: the original forward, the quantized linears on its inputs, the quantized forward; each with its lm_head. */
function verifyFlops(s: SyntheticShape, tokens: number): number {
  const linear = s.layers * (layerParameters(s) - 2 * s.hidden);
  const head = s.vocab * s.hidden;
  return 2 * tokens * (3 * linear + 2 * head);
}

function printTable(r: BenchResult): void {
  const gb = (b: number): string => `${(b / 1e9).toFixed(2)} GB`;
  const s = (x: number): string => x.toFixed(2).padStart(7);
  const lines = [
    `machine: ${r.machine.cpus} cores (${r.machine.cpuModel}), node ${r.machine.node}, load ${r.machine.loadBefore.map((l) => l.toFixed(2)).join(' ')} → ${r.machine.loadAfter.map((l) => l.toFixed(2)).join(' ')}`,
    `checkpoint: ${gb(r.checkpoint.bytes)} BF16 in ${r.checkpoint.shards} shards, ${r.checkpoint.tensors} tensors, largest ${(r.checkpoint.largestTensorBytes / 2 ** 30).toFixed(2)} GiB; written in ${r.checkpoint.generateSeconds.toFixed(1)} s`,
    `before each run: ${r.cacheState}; best of ${r.reps} runs each`,
    '',
    'run                              seconds   vs cp -r   vs cp -r+sync   input GB/s   peak RSS',
    `cp -r                            ${s(r.cp.seconds)}      1.00x`,
    `cp -r + sync                     ${s(r.cp.seconds + r.cp.syncSeconds)}                      1.00x`,
  ];
  for (const c of r.converts) {
    const label = `fp8q convert --threads ${c.threads}`.padEnd(32);
    lines.push(
      `${label} ${s(c.seconds)}   ${c.ratioToCp.toFixed(2).padStart(7)}x   ${c.ratioToCpSync.toFixed(2).padStart(12)}x   ${c.inputGBps.toFixed(2).padStart(10)}   ${c.maxRssMiB.toFixed(0).padStart(4)} MiB`,
    );
  }
  lines.push(
    `all runs (s): cp -r ${r.runs.cp.map((c) => c.seconds.toFixed(2)).join(', ')}; ` +
      r.converts
        .map(
          (c) =>
            `--threads ${c.threads} ${r.runs.converts
              .filter((x) => x.threads === c.threads)
              .map((x) => x.seconds.toFixed(2))
              .join(', ')}`,
        )
        .join('; '),
  );
  lines.push('', `compute only (in-memory [${r.compute.stripe.join(', ')}] BF16 stripe, one thread)   elements/s per core`);
  for (const k of r.compute.kernels) lines.push(`  ${k.name.padEnd(58)} ${(k.elementsPerSecond / 1e6).toFixed(0).padStart(6)} M`);
  const v = r.verify;
  if (v !== undefined) {
    const mib = (b: number): string => `${(b / 2 ** 20).toFixed(0)} MiB`;
    lines.push(
      '',
      `fp8q verify --tokens ${v.tokens} --device cpu (source vs converted, ${v.passed ? 'gates passed' : 'gates failed: random weights'})`,
      `  ${v.seconds.toFixed(2)} s (${v.reportSeconds.toFixed(2)} s in verify), ${v.tokensPerSecond.toFixed(2)} tokens/s, peak RSS ${v.maxRssMiB.toFixed(0)} MiB`,
      `  one decoder layer: ${mib(v.layerBf16Bytes)} BF16, ${mib(v.layerFloat32Bytes)} as float32; largest float32 tensor at once ${mib(v.largestFloat32TensorBytes)}; ` +
        `peak weights held (stored form, both checkpoints) ${mib(v.peakWeightBytes)}`,
      `  peak RSS / one layer's float32 weights: ${v.rssOverLayerFloat32.toFixed(2)}`,
    );
    const b = v.bound;
    if (b !== undefined) {
      lines.push(
        `  bound: read both checkpoints ${b.readSeconds.toFixed(2)} s (cat, same cache state); ${(b.flops / 1e9).toFixed(0)} GFLOP at onnxruntime's ${(b.gemmFlopsPerSecond / 1e9).toFixed(1)} GFLOP/s = ${b.computeSeconds.toFixed(2)} s;` +
          ` bound ${b.boundSeconds.toFixed(2)} s, verify ${b.ratio.toFixed(2)}x it (target ≤ 2x); RSS bound ${b.rssBoundMiB.toFixed(0)} MiB (one layer float32 + 256 MiB), measured ${v.maxRssMiB.toFixed(0)} MiB`,
      );
    }
  }
  const p = r.paths;
  if (p !== undefined) {
    lines.push('', 'path (best of the runs; each against cp -r of its larger side, measured right after it)   seconds   cp -r s   ratio   peak RSS   in → out');
    for (const x of p.best) {
      lines.push(
        `  ${x.name.padEnd(40)} ${x.seconds.toFixed(2).padStart(7)}   ${x.cpSeconds.toFixed(2).padStart(7)}   ${x.ratioToCp.toFixed(2).padStart(5)}x   ${x.maxRssMiB.toFixed(0).padStart(4)} MiB   ` +
          `${(x.inBytes / 1e9).toFixed(2)} → ${(x.outBytes / 1e9).toFixed(2)} GB (cp of the ${x.largerSide})`,
      );
    }
    lines.push(`  all runs: ${p.all.map((x) => `${x.name} ${x.seconds.toFixed(2)}/${x.cpSeconds.toFixed(2)}`).join('; ')}`);
  }
  const d = r.deepseek;
  if (d !== undefined) {
    lines.push(
      '',
      `DeepSeek-V3-shaped: ${d.layers} MoE layers of real dimensions, ${d.routedExperts} routed + 1 shared experts, ${(d.sourceBytes / 1e9).toFixed(2)} GB BF16.`,
      `  extrapolated to the full 671 B model (${(d.fullModelBytes / 1e12).toFixed(2)} TB BF16) at the per-expert path's rate: ${(d.extrapolatedSeconds / 60).toFixed(1)} min (cp -r at the same rate: ${(d.extrapolatedCpSeconds / 60).toFixed(1)} min)`,
    );
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

async function runBench(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const work = await mkdtemp(join(args.tmp, 'fp8q-bench-'));
  const cleanup = async (): Promise<void> => {
    if (!args.keep) await rm(work, { recursive: true, force: true });
  };
  const onSignal = (): void => {
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const result = await bench(args, work);
    if (args.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    else printTable(result);
  } finally {
    await cleanup();
  }
}

await runBench();
