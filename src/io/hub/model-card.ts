// The README.md pushed with a converted model: YAML front matter the Hub indexes (base_model with
// `base_model_relation: quantized` links the repo under its source's "Quantizations"; tags make
// it findable) and a body that states the source, the quantization config as config.json holds
// it, fp8q's version, and the figures of `fp8q verify` when it ran.
//
// YAML values are written as JSON strings (a JSON string is a valid YAML double-quoted scalar),
// so no id, license or tag can break the front matter.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { HubError } from './errors.js';
import { isValidRepoId } from './repo-id.js';
import { fp8qVersion } from './version.js';

/** Figures of a verification run, e.g. `{ "min SQNR (dB)": 31.2, "max |Δlogit|": 0.04 }`. */
export type VerifyFigures = Readonly<Record<string, number | string | boolean | null>>;

/** What the caller knows about the conversion; the rest is read from the output folder. */
export interface ModelCardInput {
  /** The `<source>` given to convert: a Hub id (becomes `base_model`) or a local folder. */
  source: string;
  /** The source commit, when it came from the Hub. */
  sourceRevision?: string;
  verify?: VerifyFigures;
  /** SPDX-like license id; default: the `license` of the folder's README.md front matter. */
  license?: string;
  /** Tags added to fp8q's own. */
  tags?: string[];
  /** Default: package.json's version. */
  fp8qVersion?: string;
}

export interface ModelCardData {
  /** The repo the card is for. */
  repoId: string;
  source: string;
  sourceRevision?: string;
  /** `quantization_config` from the output's config.json. */
  quantizationConfig: Readonly<Record<string, unknown>>;
  fp8qVersion: string;
  architectures?: string[];
  license?: string;
  licenseName?: string;
  licenseLink?: string;
  pipelineTag?: string;
  tags?: string[];
  verify?: VerifyFigures;
  /** For links; default https://huggingface.co. */
  hubUrl?: string;
}

export const FP8Q_TAGS = ['fp8', 'fp8q', 'quantized', 'block-scale'] as const;

/** modules_to_not_convert entries shown in the table; the full list is in the JSON block. */
const MAX_LISTED_MODULES = 12;

function yamlString(value: string): string {
  return JSON.stringify(value);
}

function formatValue(v: number | string | boolean | null): string {
  if (v === null) return '—';
  if (typeof v === 'number') {
    if (Number.isInteger(v) || !Number.isFinite(v)) return String(v);
    return String(Number(v.toPrecision(6)));
  }
  return String(v);
}

function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');
}

export function renderModelCard(d: ModelCardData): string {
  const hub = (d.hubUrl ?? 'https://huggingface.co').replace(/\/+$/, '');
  const fromHub = isValidRepoId(d.source);
  const q = d.quantizationConfig;
  const tags = [...new Set([...FP8Q_TAGS, ...(d.tags ?? [])])];

  const front: string[] = ['---'];
  if (fromHub) {
    front.push(`base_model: ${yamlString(d.source)}`, 'base_model_relation: quantized');
  }
  front.push('library_name: transformers');
  if (d.license !== undefined) front.push(`license: ${yamlString(d.license)}`);
  if (d.licenseName !== undefined) front.push(`license_name: ${yamlString(d.licenseName)}`);
  if (d.licenseLink !== undefined) front.push(`license_link: ${yamlString(d.licenseLink)}`);
  if (d.pipelineTag !== undefined) front.push(`pipeline_tag: ${yamlString(d.pipelineTag)}`);
  front.push('tags:', ...tags.map((t) => `  - ${yamlString(t)}`), '---');

  const fmt = typeof q['fmt'] === 'string' ? q['fmt'].toUpperCase() : 'E4M3';
  const block = Array.isArray(q['weight_block_size']) ? (q['weight_block_size'] as unknown[]).map(String).join(' × ') : undefined;
  const sourceText = fromHub
    ? `[${d.source}](${hub}/${d.source})${d.sourceRevision !== undefined ? ` at commit \`${d.sourceRevision}\`` : ''}`
    : `a local checkpoint (\`${d.source}\`)`;

  const body: string[] = [
    '',
    `# ${d.repoId}`,
    '',
    `Block-scale FP8 (${fmt}${block !== undefined ? `, ${block} blocks` : ''}) version of ${sourceText}, ` + `converted with fp8q ${d.fp8qVersion}.`,
    '',
    'Each quantized linear layer stores its `weight` in FP8 and a float32 `weight_scale_inv` per block, the ' +
      'dequantization multiplier (`W ≈ weight × weight_scale_inv`, block by block). Embeddings, norms, ' +
      'routers and the output head keep their original dtype. The format is the one of DeepSeek-V3 and ' +
      "transformers' fine-grained FP8, loaded by vLLM, SGLang and MLC LLM.",
    '',
    '## Quantization',
    '',
    '| setting | value |',
    '| --- | --- |',
  ];
  if (d.architectures !== undefined && d.architectures.length > 0) {
    body.push(`| architecture | ${cell(d.architectures.join(', '))} |`);
  }
  const rows: Array<[string, unknown]> = [
    ['method', q['quant_method']],
    ['format', q['fmt']],
    ['weight block size', block],
    ['activation scheme', q['activation_scheme']],
  ];
  for (const [k, v] of rows) if (v !== undefined) body.push(`| ${k} | ${cell(String(v))} |`);
  const notConverted = Array.isArray(q['modules_to_not_convert']) ? (q['modules_to_not_convert'] as unknown[]).map(String) : [];
  if (notConverted.length > 0) {
    const shown = notConverted
      .slice(0, MAX_LISTED_MODULES)
      .map((m) => `\`${m}\``)
      .join(', ');
    const more = notConverted.length > MAX_LISTED_MODULES ? ` and ${notConverted.length - MAX_LISTED_MODULES} more` : '';
    body.push(`| not converted | ${cell(shown + more)} |`);
  }
  body.push(`| converter | fp8q ${cell(d.fp8qVersion)} |`);
  body.push('', '`quantization_config` in `config.json`:', '', '```json', JSON.stringify(q, null, 2), '```', '');

  body.push('## Verification', '');
  const figures = d.verify !== undefined ? Object.entries(d.verify) : [];
  if (figures.length > 0) {
    body.push(
      'Figures from `fp8q verify`, comparing this checkpoint with its source:',
      '',
      '| metric | value |',
      '| --- | --- |',
      ...figures.map(([k, v]) => `| ${cell(k)} | ${cell(formatValue(v))} |`),
      '',
    );
  } else {
    body.push('This checkpoint was not checked with `fp8q verify` before upload.', '');
  }
  return [...front, ...body].join('\n');
}

/** Top-level `key: value` scalars of a README's YAML front matter (enough for license fields). */
export function frontMatterScalars(readme: string): Record<string, string> {
  const out: Record<string, string> = {};
  const m = /^---\r?\n([\s\S]*?)\r?\n---\r?\n?/.exec(readme);
  if (m === null) return out;
  for (const line of m[1]!.split(/\r?\n/)) {
    const kv = /^([A-Za-z_][\w-]*):[ \t]*(.*?)[ \t]*$/.exec(line);
    if (kv === null || kv[2] === '' || kv[2]!.startsWith('#')) continue;
    let value = kv[2]!;
    if (/^".*"$/.test(value)) {
      try {
        value = JSON.parse(value) as string;
      } catch {
        value = value.slice(1, -1);
      }
    } else if (/^'.*'$/.test(value)) {
      value = value.slice(1, -1).replace(/''/g, "'");
    }
    out[kv[1]!] = value;
  }
  return out;
}

/**
 * Card data for the converted folder `dir`: `quantization_config` and `architectures` from its
 * config.json; license and pipeline tag from the README.md convert copied from the source.
 */
export async function readModelCardData(dir: string, repoId: string, input: ModelCardInput, hubUrl?: string): Promise<ModelCardData> {
  let config: unknown;
  try {
    config = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'));
  } catch (e) {
    throw new HubError('HUB_PUSH', `cannot read ${join(dir, 'config.json')} (${(e as Error).message}): push a folder written by fp8q convert`);
  }
  const qc = typeof config === 'object' && config !== null ? (config as Record<string, unknown>)['quantization_config'] : undefined;
  if (typeof qc !== 'object' || qc === null || Array.isArray(qc)) {
    throw new HubError('HUB_PUSH', `${join(dir, 'config.json')} has no quantization_config: push a folder written by fp8q convert`);
  }
  const arch = (config as Record<string, unknown>)['architectures'];
  let meta: Record<string, string> = {};
  try {
    meta = frontMatterScalars(await readFile(join(dir, 'README.md'), 'utf8'));
  } catch {
    // no README: no license to carry over
  }
  const license = input.license ?? meta['license'];
  return {
    repoId,
    source: input.source,
    quantizationConfig: qc as Record<string, unknown>,
    fp8qVersion: input.fp8qVersion ?? fp8qVersion(),
    ...(input.sourceRevision !== undefined ? { sourceRevision: input.sourceRevision } : {}),
    ...(Array.isArray(arch) ? { architectures: arch.map(String) } : {}),
    ...(license !== undefined ? { license } : {}),
    ...(meta['license_name'] !== undefined ? { licenseName: meta['license_name'] } : {}),
    ...(meta['license_link'] !== undefined ? { licenseLink: meta['license_link'] } : {}),
    ...(meta['pipeline_tag'] !== undefined ? { pipelineTag: meta['pipeline_tag'] } : {}),
    ...(input.tags !== undefined ? { tags: input.tags } : {}),
    ...(input.verify !== undefined ? { verify: input.verify } : {}),
    ...(hubUrl !== undefined ? { hubUrl } : {}),
  };
}
