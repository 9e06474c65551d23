// The example CI pipelines run locally: examples/github-actions/fp8q.yml and
// examples/gitlab-ci/.gitlab-ci.yml are parsed (yaml), and their shell steps run in order with bash
// as the runners would (GitHub: `bash -eo pipefail`, GitLab: one shell, stop at the first failing
// line) in a scratch workspace, on a fixture model. What is not run: `uses:` actions (checkout,
// cache, artifact upload: the runner's own) and `npm ci` — the workspace's `npx fp8q` is a shim that
// runs this checkout's CLI from source. The GitHub variables the steps write to
// ($GITHUB_STEP_SUMMARY, $GITHUB_OUTPUT) are files the test reads back.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, test } from 'node:test';
import { parse as parseJunit, type TestSuite } from 'junit2json';
import { parse as parseYaml } from 'yaml';

import { buildProgram } from '../src/cli/index.js';
import { MODELS, modelDir, ROOT } from './helpers/fixtures.js';

interface GithubStep {
  readonly name?: string;
  readonly id?: string;
  readonly run?: string;
  readonly uses?: string;
  readonly if?: string;
  readonly with?: Record<string, string>;
}

interface GithubWorkflow {
  readonly env: Record<string, string>;
  readonly jobs: Record<string, { readonly env?: Record<string, string>; readonly steps: readonly GithubStep[] }>;
}

interface GitlabJob {
  readonly variables: Record<string, string>;
  readonly script: readonly string[];
  readonly artifacts: { readonly when: string; readonly reports: { readonly junit: string }; readonly paths: readonly string[] };
}

const STORY =
  'Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her dog. ' +
  'One day, she saw a big red ball under a tree. She ran to the ball and picked it up. Her dog was happy and wagged its tail.\n' +
  'Tom had a small boat. He liked to sail it on the pond near his house. One sunny day, the wind blew hard and the boat went far away. ' +
  'Tom was sad, but his mom helped him get it back. They smiled and went home for lunch.\n';

/** `verify --text` is the workflow's input; a CLI without it verifies the llama fixture on its token ids instead. */
function cliHasTextInput(): boolean {
  const verify = buildProgram().commands.find((c) => c.name() === 'verify')!;
  return verify.options.some((o) => o.long === '--text');
}

let work: string;
let workflow: GithubWorkflow;
let gitlab: GitlabJob;
const textInput = cliHasTextInput();

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'ci-workflow-'));
  workflow = parseYaml(await readFile(join(ROOT, 'examples/github-actions/fp8q.yml'), 'utf8')) as GithubWorkflow;
  gitlab = (parseYaml(await readFile(join(ROOT, 'examples/gitlab-ci/.gitlab-ci.yml'), 'utf8')) as { fp8q: GitlabJob }).fp8q;
});

after(async () => {
  await rm(work, { recursive: true, force: true });
});

/** A project folder as a user's repository would be after `npm ci`: `npx fp8q` finds node_modules/.bin/fp8q. */
async function workspace(name: string): Promise<string> {
  const dir = join(work, name);
  await mkdir(join(dir, 'node_modules/.bin'), { recursive: true });
  await mkdir(join(dir, 'eval'));
  await writeFile(join(dir, 'package.json'), '{ "name": "fp8q-ci-example", "private": true }\n');
  await writeFile(join(dir, 'eval/sample.txt'), STORY);
  const loader = pathToFileURL(join(ROOT, 'node_modules/tsx/dist/loader.mjs')).href;
  const shim = join(dir, 'node_modules/.bin/fp8q');
  await writeFile(shim, `#!/bin/sh\nexec "${process.execPath}" --import "${loader}" "${join(ROOT, 'test/helpers/run-cli.ts')}" "$@"\n`);
  await chmod(shim, 0o755);
  return dir;
}

/** The model and text the pipeline runs on, and the rewrite of its verify line when the CLI has no --text yet. */
function fixtureInput(): { env: Record<string, string>; rewrite: (script: string) => string } {
  if (textInput) return { env: { MODEL: join(MODELS, 'stories260K') }, rewrite: (s) => s };
  return {
    env: { MODEL: modelDir('llama'), VERIFY_IDS: join(MODELS, 'llama.logits.safetensors') },
    rewrite: (s) => s.replace('--text "$VERIFY_TEXT"', '--input-ids "$VERIFY_IDS"'),
  };
}

interface StepRun {
  readonly name: string;
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function bash(script: string, cwd: string, env: NodeJS.ProcessEnv, flags: readonly string[]): StepRun {
  const r = spawnSync('bash', ['--noprofile', '--norc', ...flags, '-c', script], { cwd, env, encoding: 'utf8', timeout: 120_000 });
  return { name: '', code: r.status ?? 1, stdout: r.stdout, stderr: r.stderr };
}

/** Runs the job's `run:` steps in order until one fails, as the runner does for steps without an `if:`. */
async function runGithubJob(name: string, overrides: Record<string, string>): Promise<{ dir: string; steps: StepRun[]; summary: string; output: string }> {
  const dir = await workspace(name);
  const job = workflow.jobs['fp8']!;
  const input = fixtureInput();
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    ...workflow.env,
    HF_TOKEN: '',
    ...input.env,
    ...overrides,
    GITHUB_STEP_SUMMARY: join(dir, 'step-summary.md'),
    GITHUB_OUTPUT: join(dir, 'github-output'),
    CI: 'true',
    GITHUB_ACTIONS: 'true',
  };
  await writeFile(env['GITHUB_STEP_SUMMARY']!, '');
  await writeFile(env['GITHUB_OUTPUT']!, '');
  const steps: StepRun[] = [];
  for (const step of job.steps) {
    if (step.run === undefined) continue;
    if (step.run.trim() === 'npm ci') continue; // the shim stands for the installed package
    const r = bash(input.rewrite(step.run), dir, env, ['-eo', 'pipefail']);
    steps.push({ ...r, name: step.name ?? step.run });
    if (r.code !== 0) break;
  }
  return { dir, steps, summary: await readFile(env['GITHUB_STEP_SUMMARY']!, 'utf8'), output: await readFile(env['GITHUB_OUTPUT']!, 'utf8') };
}

async function junitSuite(path: string): Promise<TestSuite> {
  const parsed = (await parseJunit(await readFile(path, 'utf8'))) as { testsuite: TestSuite[] };
  return parsed.testsuite[0]!;
}

const exists = (p: string): Promise<boolean> =>
  stat(p).then(
    () => true,
    () => false,
  );

test('the GitHub workflow installs with npm ci, runs fp8q through npx, and uploads reports and checkpoint', () => {
  const steps = workflow.jobs['fp8']!.steps;
  assert.ok(steps.some((s) => s.run?.trim() === 'npm ci'));
  const runs = steps.filter((s) => s.run !== undefined).map((s) => s.run!);
  assert.ok(runs.some((r) => r.includes('npx fp8q convert')) && runs.some((r) => r.includes('npx fp8q verify')));
  assert.ok(
    runs.some((r) => /npx fp8q verify [^\n]*--text "\$VERIFY_TEXT"/.test(r)),
    'verifies on text',
  );
  const uploads = steps.filter((s) => s.uses?.startsWith('actions/upload-artifact@'));
  const expand = (text: string | undefined): string | undefined => text?.replace(/\$\{\{ env\.(\w+) \}\}/g, (_m, name: string) => workflow.env[name]!);
  assert.deepEqual(
    uploads.map((s) => expand(s.with?.['path'])),
    [`${workflow.env['REPORT_DIR']}/`, `${workflow.env['OUT_DIR']}/`],
  );
  assert.equal(uploads[0]!.if, '${{ !cancelled() }}', 'reports are uploaded when a gate failed too');
  assert.equal(uploads[1]!.if, undefined, 'the checkpoint only when every step passed');
});

test('GitHub workflow on a sound conversion: every step passes, JUnit without failure, both reports in the job summary', async () => {
  const { dir, steps, summary, output } = await runGithubJob('github-sound', {});
  for (const s of steps) assert.equal(s.code, 0, `${s.name}: ${s.stderr}`);
  assert.deepEqual(
    steps.map((s) => s.name),
    ['Convert', 'Verify'],
  );
  assert.match(output, /^exit-code=0$/m);
  assert.match(steps[1]!.stdout, /fp8q verify: every gate passed/);
  const suite = await junitSuite(join(dir, 'reports/verify.xml'));
  assert.equal(suite.failures, 0);
  assert.ok((suite.tests ?? 0) > 3);
  assert.match(summary, /^## Block-scale FP8 conversion of /m);
  assert.match(summary, /^## fp8q verify: ✅ passed/m);
  assert.equal((JSON.parse(await readFile(join(dir, 'reports/verify.json'), 'utf8')) as { passed: boolean }).passed, true);
  assert.ok(await exists(join(dir, 'model-fp8/config.json')));
  assert.ok(await exists(join(dir, 'reports/verify.md')));
});

test('GitHub workflow when a gate fails: the Verify step exits 3 with an annotation, the reports are written', async () => {
  const { dir, steps, output, summary } = await runGithubJob('github-gate', { VERIFY_FLAGS: '--max-layer-rel-error 0.001' });
  const verify = steps.find((s) => s.name === 'Verify')!;
  assert.equal(verify.code, 3, verify.stderr);
  assert.match(output, /^exit-code=3$/m);
  assert.match(verify.stdout, /^::error title=fp8q verify::an accuracy gate failed/m);
  const suite = await junitSuite(join(dir, 'reports/verify.xml'));
  assert.ok((suite.failures ?? 0) > 1, `${suite.failures} failures`);
  assert.match(summary, /^## fp8q verify: ❌ failed/m);
});

test('the GitLab job runs the same commands and keeps the JUnit report whatever the outcome', async () => {
  assert.equal(gitlab.artifacts.when, 'always');
  assert.equal(gitlab.artifacts.reports.junit, 'reports/verify.xml');
  assert.ok(gitlab.artifacts.paths.includes('model-fp8/'));
  const dir = await workspace('gitlab');
  const input = fixtureInput();
  const script = gitlab.script
    .filter((line) => line.trim() !== 'npm ci')
    .map(input.rewrite)
    .join('\n');
  const env = { ...process.env, ...gitlab.variables, ...input.env, CI_PROJECT_DIR: dir, GITHUB_STEP_SUMMARY: '' };
  const r = bash(script, dir, env, ['-e']);
  assert.equal(r.code, 0, r.stderr);
  const suite = await junitSuite(join(dir, 'reports/verify.xml'));
  assert.equal(suite.failures, 0);
  assert.ok(await exists(join(dir, 'reports/convert.md')));
});

test('README\'s "In CI" section shows both example pipelines as they are in examples/', async () => {
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
  const section = readme.split('\n## In CI\n')[1]?.split('\n## ')[0];
  assert.ok(section !== undefined, 'README has an "In CI" section');
  for (const file of ['examples/github-actions/fp8q.yml', 'examples/gitlab-ci/.gitlab-ci.yml']) {
    const text = (await readFile(join(ROOT, file), 'utf8')).trimEnd();
    assert.ok(section.includes(`\`\`\`yaml\n${text}\n\`\`\``), `${file} is shown verbatim`);
  }
  for (const code of ['0', '1', '2', '3', '130, 143']) assert.match(section, new RegExp(`^\\| ${code} \\|`, 'm'), `exit code ${code} is explained`);
});
