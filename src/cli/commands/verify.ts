// `fp8q verify`: flags → VerifyOptions (values read by verify-flags.ts's table; which inputs
// go together checked here), progress, and the report — a table on the terminal or one
// JSON document with --json. A failed gate exits with EXIT_GATE_FAILED and names the layer or
// metric that failed.

import { cpuInstead, DeviceUnavailableError, selectDeviceEarly } from '../../runtime/device/device.js';
import type { Device } from '../../runtime/onnx/session.js';
import { readInputIds } from '../../runtime/models/token-ids.js';
import type { Gates } from '../../runtime/verify/gates.js';
import { GATE_ERROR_CODES } from '../common/error-codes.js';
import { VerifyArgumentsError } from '../../runtime/verify/checkpoint-pair.js';
import { verifyCheckpoints, type LinearReport, type VerifyOptions, type VerifyReport } from '../../runtime/verify/verify-checkpoints.js';
import { EXIT_GATE_FAILED, ExitError, UsageError } from '../common/errors.js';
import { readFlags, type FlagOptions } from '../common/flags.js';
import { capThreads } from '../common/options.js';
import { info, outputMode, printJson, warn } from '../common/output.js';
import { readModelInput, textInputFlagsGiven } from './logits.js';
import { VerifyReportWriter } from '../reports/verify-reports.js';
import { VERIFY_FLAGS, type VerifyFlags } from './verify-flags.js';

type VerifyValues = FlagOptions<typeof VERIFY_FLAGS>;

/** The gate limits given on the command line; the others keep their defaults. */
function gatesOf(o: VerifyValues): Partial<Gates> {
  const given = {
    maxKl: o.maxKl,
    minTop1: o.minTop1,
    maxLayerRelError: o.maxLayerRelError,
    maxLayerErrorRatio: o.maxLayerErrorRatio,
    maxPplIncrease: o.maxPplIncrease,
  } satisfies Record<keyof Gates, number | undefined>;
  return Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined));
}

/** verifyCheckpoints, its refusals (the two folders cannot be compared) as command-line errors. */
async function runVerify(options: VerifyOptions): Promise<VerifyReport> {
  try {
    return await verifyCheckpoints(options);
  } catch (e) {
    if (e instanceof VerifyArgumentsError) throw new UsageError(e.message);
    throw e;
  }
}

export async function verifyCommand(original: string, quantized: string, flags: VerifyFlags): Promise<VerifyReport> {
  const options = readFlags(VERIFY_FLAGS, flags);
  const sources = [
    flags.inputIds !== undefined && '--input-ids',
    flags.tokens !== undefined && '--tokens',
    flags.text !== undefined && '--text',
    flags.dataset !== undefined && '--dataset',
  ].filter((f): f is string => f !== false);
  if (sources.length > 1) throw new UsageError(`${sources.join(' and ')} exclude each other: give one input (token ids, random ids, text or a dataset)`);
  if ((flags.inputIds !== undefined || flags.tokens !== undefined) && textInputFlagsGiven(options)) {
    throw new UsageError('--seq-len, --max-samples and --max-tokens apply to text input (--text, --dataset or the bundled sample), not to token ids');
  }
  if (flags.seed !== undefined && (flags.text !== undefined || flags.dataset !== undefined || flags.inputIds !== undefined)) {
    throw new UsageError('--seed applies to random ids (--tokens), not to --text, --dataset or --input-ids');
  }
  if (flags.inputIds === undefined && flags.tokens === undefined) {
    // Perplexity predicts each token from the ones before it in its row: a row of one token predicts
    // nothing, and the perplexity gate would judge NaN.
    for (const [flag, value] of [
      ['--seq-len', options.seqLen],
      ['--max-tokens', options.maxTokens],
    ] as const) {
      if (value !== undefined && value < 2) {
        throw new UsageError(`invalid ${flag} "${value}": verify on text needs rows of at least 2 tokens (perplexity predicts each token from the ones before it)`);
      }
    }
  }
  const { tokens, seed } = options;
  const gates = gatesOf(options);
  const mode = outputMode(flags);
  const threads = options.threads === undefined ? undefined : capThreads(options.threads, mode);

  if (flags.maxPplIncrease !== undefined && (flags.inputIds !== undefined || flags.tokens !== undefined || flags.seed !== undefined)) {
    warn(
      mode,
      `--max-ppl-increase applies to text input; ${flags.inputIds !== undefined ? '--input-ids' : 'random ids'} have no perplexity to compare, so the gate is not applied`,
    );
  }
  const reports = await VerifyReportWriter.prepare(flags, { original, quantized });
  // The CUDA probe runs in a worker while verify opens the checkpoints and starts its floor checks.
  const early = selectDeviceEarly(options.device);
  let selection = early.selection;
  // Input: --input-ids, --tokens (random), --text/--dataset, or by default the bundled English
  // sample when the original has a tokenizer (random ids when it has none).
  let input: Pick<VerifyOptions, 'input' | 'inputSource'> = {};
  if (flags.inputIds !== undefined) input = { input: await readInputIds(flags.inputIds), inputSource: { kind: 'file', file: flags.inputIds } };
  else if (flags.tokens === undefined && flags.seed === undefined) {
    const text = await readModelInput(original, options, { fallbackToRandom: true });
    if (text !== undefined) input = { input: text.batch, inputSource: { kind: 'text', text: text.description } };
    else info(mode, `${original} has no tokenizer.json: verifying on random token ids (--text or --input-ids give real input)`);
  }
  const verifyOn = (device: Device, deviceReady?: Promise<void>): Promise<VerifyReport> =>
    runVerify({
      original,
      quantized,
      device,
      ...(deviceReady === undefined ? {} : { deviceReady }),
      gates,
      ...input,
      ...(options.allowUnverified ? { allowUnverified: true } : {}),
      ...(tokens === undefined ? {} : { tokens }),
      ...(seed === undefined ? {} : { seed }),
      ...(threads === undefined ? {} : { intraOpThreads: threads }),
      onEvent: (e) => {
        reports.observe(e);
        // Said once the two folders are known to be comparable: a refusal stays the only line.
        if (e.type === 'start') {
          info(mode, `verifying ${quantized} against ${original} on ${selection.device} (${selection.reason})\n  ${e.layers} layers, ${e.tokens} tokens`);
          if (e.requantizeOnDevice !== undefined) info(mode, `  ${requantizeLine(e.requantizeOnDevice)}`);
        } else if (e.type === 'layer') info(mode, `  layer ${e.index + 1}/${e.count}`);
      },
    });
  let report: VerifyReport;
  try {
    report = await verifyOn(selection.device, early.ready);
  } catch (e) {
    // `auto` whose CUDA probe failed: the CPU, as selectDevice would have chosen (nothing has run yet).
    if (!(e instanceof DeviceUnavailableError) || options.device !== 'auto') throw e;
    selection = cpuInstead(options.device, e.problem);
    report = await verifyOn('cpu');
  }
  const failure = report.passed ? undefined : gateFailureError(report);
  if (mode.json) {
    const failures = report.failures.map((f) => ({ ...f, code: GATE_ERROR_CODES[f.gate] }));
    const error = failure ? { error: { code: failure.errorCode, exitCode: failure.exitCode, message: failure.message } } : {};
    printJson({ ...report, failures, device: selection.device, deviceSelection: selection, ...error });
  } else process.stdout.write(renderReport(report));
  await reports.write({ ...report, deviceSelection: selection }, mode);
  if (failure) throw failure;
  return report;
}

/** Says where the quantized model's codes come from on the device (docs/ARCHITECTURE.md, "Codes not sent"). */
function requantizeLine(passed: boolean): string {
  return passed
    ? "FP8 codes the floor check proves equal to the original's re-quantization are re-quantized on the device, not sent (its self-test passed)"
    : 'FP8 codes are sent to the device: it failed the re-quantization self-test (the report is the same, only slower)';
}

function gateFailureError(report: VerifyReport): ExitError {
  const [first] = report.failures;
  const more = report.failures.length > 1 ? ` (and ${report.failures.length - 1} more failed gate${report.failures.length > 2 ? 's' : ''})` : '';
  return new ExitError(`verify failed: ${first!.message}${more}`, EXIT_GATE_FAILED, GATE_ERROR_CODES[first!.gate], true);
}

function sci(v: number): string {
  return v === 0 ? '0' : Math.abs(v) < 1e-3 ? v.toExponential(2) : v.toFixed(4);
}

function percent(rate: number | undefined): string {
  if (rate === undefined) return '-';
  return rate === 0 ? '0%' : rate < 1e-4 ? `${(100 * rate).toExponential(1)}%` : `${(100 * rate).toFixed(2)}%`;
}

function db(v: number): string {
  return Number.isFinite(v) ? v.toFixed(1) : 'inf';
}

interface TableRow {
  readonly layer: number;
  readonly name: string;
  readonly rows: string;
  readonly worst: LinearReport;
  readonly minCosine: number;
  readonly minSqnr: number;
  readonly failed: boolean;
  /** Largest error / FP8 floor among the row's linears (undefined: none has a floor). */
  readonly maxRatio: number | undefined;
  /** Static activation scheme: the highest clipping rate among the row's linears. */
  readonly clipRate: number | undefined;
}

const EXPERT = /^(.*\.experts)\.(\d+)\.([^.]+)$/;

/** One row per linear; a layer's experts are folded into one row per projection (worst shown). */
function tableRows(report: VerifyReport): TableRow[] {
  const failedModules = new Set(report.failures.filter((f) => f.gate === 'max-layer-rel-error' || f.gate === 'max-layer-error-ratio').map((f) => f.subject));
  const groups = new Map<string, { layer: number; name: string; experts: boolean; members: LinearReport[] }>();
  for (const l of report.linears) {
    const local = l.module.replace(/^model\.layers\.\d+\./, '');
    const m = EXPERT.exec(local);
    const name = m ? `${m[1]}.*.${m[3]}` : local;
    const key = `${l.layer}|${name}`;
    let g = groups.get(key);
    if (!g) {
      g = { layer: l.layer, name, experts: m !== null, members: [] };
      groups.set(key, g);
    }
    g.members.push(l);
  }
  return [...groups.values()].map((g) => {
    let worst = g.members[0]!;
    for (const l of g.members) if (!(l.relativeError <= worst.relativeError)) worst = l;
    return {
      layer: g.layer,
      name: g.experts ? `${g.name} (worst: ${EXPERT.exec(worst.module)![2]})` : g.name,
      rows: g.experts ? `${g.members.length} exp` : String(worst.rows),
      worst,
      minCosine: Math.min(...g.members.map((l) => l.cosine)),
      minSqnr: Math.min(...g.members.map((l) => l.sqnrDb)),
      failed: g.members.some((l) => failedModules.has(l.module)),
      maxRatio: g.members.some((l) => l.errorRatio !== undefined) ? Math.max(...g.members.map((l) => l.errorRatio ?? 0)) : undefined,
      clipRate: g.members.some((l) => l.clipping) ? Math.max(...g.members.map((l) => l.clipping?.rate ?? 0)) : undefined,
    };
  });
}

export function renderReport(report: VerifyReport): string {
  const m = report.model;
  const g = report.gates;
  const out: string[] = [];
  out.push(`${report.quantized} vs ${report.original}`);
  out.push(
    `  ${report.architecture}, input: ${report.input.description}, ${report.device}, ` +
      `${report.seconds.toFixed(1)} s, peak weights held ${(report.peakWeightBytes / 2 ** 20).toFixed(1)} MiB`,
  );
  out.push('');
  out.push(
    `model   mean KL ${sci(m.meanKl)}   max KL ${sci(m.maxKl)} (token ${m.maxKlToken})   top-1 agreement ${(100 * m.top1Agreement).toFixed(1)}%   ` +
      `logits rel. error ${sci(m.relativeError)}`,
  );
  const p = report.perplexity;
  if (p)
    out.push(
      `        perplexity ${p.original.toFixed(4)} → ${p.quantized.toFixed(4)} (${p.increasePercent >= 0 ? '+' : ''}${p.increasePercent.toFixed(2)}%) over ${p.predictions} next-token predictions`,
    );
  out.push('');
  const rows = tableRows(report);
  const nameWidth = Math.max(6, ...rows.map((r) => r.name.length));
  const clip = report.clipping !== undefined;
  out.push(`layer  ${'linear'.padEnd(nameWidth)}  ${'rows'.padStart(6)}  rel. error   × floor    cosine   SQNR dB${clip ? '   clipped' : ''}`);
  for (const r of rows) {
    out.push(
      `${String(r.layer).padStart(5)}  ${r.name.padEnd(nameWidth)}  ${r.rows.padStart(6)}  ${sci(r.worst.relativeError).padStart(10)}  ` +
        `${(r.maxRatio === undefined ? '-' : r.maxRatio.toFixed(2)).padStart(8)}  ` +
        `${r.minCosine.toFixed(5).padStart(8)}  ${db(r.minSqnr).padStart(8)}${clip ? `  ${percent(r.clipRate).padStart(8)}` : ''}${r.failed ? '  FAIL' : ''}`,
    );
  }
  if (report.clipping) {
    const c = report.clipping;
    out.push(
      `  static activation scales: ${c.clipped} of ${c.elements} input values (${percent(c.rate)}) beyond the calibrated range over ${c.linears} linear(s)` +
        `${c.worst && c.worst.rate > 0 ? `; most: ${c.worst.module} (${percent(c.worst.rate)})` : ''}`,
    );
  }
  if (report.notReached.length > 0) {
    out.push(`  ${report.notReached.length} quantized linear(s) got no tokens (experts not routed to) and were not compared`);
  }
  if (report.unverified.length > 0) {
    out.push(`  not run, so not verified (${report.unverified.length}):`);
    for (const t of report.unverified) out.push(`    ${t}`);
  }
  out.push('');
  const failed = new Set(report.failures.map((f) => f.gate));
  const mark = (gate: string): string => (failed.has(gate as never) ? 'FAIL' : 'pass');
  out.push(
    `gates   max-kl ${g.maxKl}: ${mark('max-kl')}   min-top1 ${g.minTop1}: ${mark('min-top1')}   ` +
      `${p ? `max-ppl-increase ${g.maxPplIncrease}%: ${mark('max-ppl-increase')}   ` : ''}` +
      `max-layer-error-ratio ${g.maxLayerErrorRatio}: ${mark('max-layer-error-ratio')}   ` +
      `max-layer-rel-error ${g.maxLayerRelError}: ${mark('max-layer-rel-error')} (worst ${sci(report.summary.maxRelativeError)}` +
      `${report.summary.worstLinear ? `, ${report.summary.worstLinear}` : ''})`,
  );
  for (const f of report.failures) out.push(`  FAIL ${f.message}`);
  out.push(
    report.passed
      ? `PASS: ${report.summary.linearsCompared} quantized linears compared, min cosine ${report.summary.minCosine.toFixed(5)}, min SQNR ${db(report.summary.minSqnrDb)} dB`
      : `FAILED: ${report.failures.length} gate failure(s)`,
  );
  return `${out.join('\n')}\n`;
}
