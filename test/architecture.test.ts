// The shape docs/ARCHITECTURE.md describes, kept by a test: no cycle among the folders of src/
// (subfolder granularity: src/pipeline, src/passes, src/runtime/models …), src/fp8 free of I/O,
// and no source file citing anything outside the repository.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SRC = join(ROOT, 'src');

function files(dir: string, ext = /\.ts$/): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...files(path, ext));
    else if (ext.test(name)) out.push(path);
  }
  return out;
}

/** Folder of a file, at most `depth` levels below src (depth 2: src/io/formats/x.ts → io/formats). */
function folderOf(file: string, depth: number): string {
  return relative(SRC, dirname(file)).split('/').slice(0, depth).join('/') || '.';
}

function folderGraph(depth = 2): Map<string, Set<string>> {
  const graph = new Map<string, Set<string>>();
  for (const file of files(SRC)) {
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/(?:import|export)\s[^'"`;]*?from\s+['"](\.[^'"]+)['"]|import\(\s*['"](\.[^'"]+)['"]\s*\)/g)) {
      const spec = (m[1] ?? m[2])!;
      const from = folderOf(file, depth);
      const to = folderOf(resolve(dirname(file), spec), depth);
      if (from === to) continue;
      if (!graph.has(from)) graph.set(from, new Set());
      graph.get(from)!.add(to);
    }
  }
  return graph;
}

/** Folders that can reach themselves through imports (Tarjan's strongly connected components). */
function cycles(graph: Map<string, Set<string>>): string[][] {
  const nodes = new Set([...graph.keys(), ...[...graph.values()].flatMap((s) => [...s])]);
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  let next = 0;
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1) found.push(component);
    }
  };
  for (const n of nodes) if (!index.has(n)) visit(n);
  return found;
}

test('no folder of src imports, directly or through others, a folder that imports it', () => {
  const graph = folderGraph();
  assert.ok(graph.size > 10, 'the graph was read');
  assert.deepEqual(cycles(graph), []);
});

test('the top-level folders import one way: cli → pipeline → runtime → passes → io → fp8', () => {
  const graph = folderGraph(1);
  assert.deepEqual(cycles(graph), []);
  const order = ['cli', 'pipeline', 'runtime', 'passes', 'io', 'fp8'];
  for (const [from, tos] of graph) {
    for (const to of tos) {
      assert.ok(order.includes(from) && order.includes(to), `${from} → ${to}: a folder outside ${order.join(', ')} (place it in this order)`);
      assert.ok(order.indexOf(from) < order.indexOf(to), `${from} imports ${to}, against the order ${order.join(' → ')}`);
    }
  }
});

/** Imports between the files of one folder (no subfolders), by file name. */
function fileGraph(dir: string): Map<string, Set<string>> {
  const graph = new Map<string, Set<string>>();
  for (const name of readdirSync(dir).filter((n) => n.endsWith('.ts'))) {
    const text = readFileSync(join(dir, name), 'utf8');
    const deps = new Set<string>();
    for (const m of text.matchAll(/(?:import|export)\s[^'"`;]*?from\s+['"]\.\/([^'"/]+)\.js['"]/g)) deps.add(`${m[1]!}.ts`);
    graph.set(name, deps);
  }
  return graph;
}

test('no file of src/passes imports, directly or through others, a file that imports it', () => {
  const graph = fileGraph(join(SRC, 'passes'));
  assert.ok(graph.get('block-scale-quantize.ts')?.has('stack-experts.ts'), 'the graph was read');
  assert.deepEqual(cycles(graph), []);
});

test('sub-passes take and return plans: none imports the pass that calls them', () => {
  const graph = fileGraph(join(SRC, 'passes'));
  for (const sub of ['fused-experts.ts', 'mla-split.ts', 'stack-experts.ts', 'activation-scales.ts']) {
    assert.ok(graph.has(sub), sub);
    assert.equal(graph.get(sub)!.has('block-scale-quantize.ts'), false, `${sub} imports block-scale-quantize.ts`);
  }
});

test('the cycle check finds a cycle when there is one', () => {
  const graph = new Map([
    ['a', new Set(['b'])],
    ['b', new Set(['c'])],
    ['c', new Set(['a'])],
  ]);
  assert.deepEqual(
    cycles(graph).map((c) => c.sort()),
    [['a', 'b', 'c']],
  );
});

test('src/fp8 is pure numerics: no I/O, no other src folder', () => {
  for (const file of files(join(SRC, 'fp8'))) {
    if (file.endsWith('.generated.ts')) continue;
    const text = readFileSync(file, 'utf8');
    assert.doesNotMatch(text, /from ['"]node:(fs|fs\/promises|child_process|net|http|https)['"]/, relative(ROOT, file));
    assert.doesNotMatch(text, /from ['"]\.\.\/(io|passes|runtime|cli)\//, relative(ROOT, file));
  }
});

test('code, tests, scripts and docs cite only what the repository holds', () => {
  const checked = [
    ...files(SRC),
    ...files(join(ROOT, 'test')).filter((f) => !f.endsWith('architecture.test.ts')),
    ...files(join(ROOT, 'scripts'), /\.(ts|mjs|py|sh)$/),
    ...files(join(ROOT, 'bench'), /\.(ts|md|sh)$/),
    ...files(join(ROOT, 'docs'), /\.md$/),
    ...files(join(ROOT, 'fixtures'), /README\.md$/),
    ...files(join(ROOT, 'examples'), /\.(ya?ml|md)$/),
    join(ROOT, 'README.md'),
  ];
  const outside = /SPEC\.md|SPEC §|\bthe seed\b(?! matters)|seed's|\bissue #?\d+\b|\.\.\/shared\//i;
  const offenders = checked.filter((f) => outside.test(readFileSync(f, 'utf8'))).map((f) => relative(ROOT, f));
  assert.deepEqual(offenders, []);
});
