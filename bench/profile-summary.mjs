// Summary of a V8 CPU profile (`node --cpu-prof --cpu-prof-dir=<dir>`): the functions with the
// most time, inclusive (counted once per stack) and self, in seconds. Used on the GPU machine by
// bench/gpu-verify-8b.sh, where no other profile viewer is at hand.
// Usage: node bench/profile-summary.mjs <dir holding the run's .cpuprofile files>
// A run through bin/fp8q.js leaves two (src/cli/malloc-relaunch.ts): the relaunching parent's,
// which only waits, and the child's, which runs the command; the largest is summarised.

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.argv[2];
const file = readdirSync(dir)
  .filter((f) => f.endsWith('.cpuprofile'))
  .sort((a, b) => statSync(join(dir, b)).size - statSync(join(dir, a)).size)[0];
if (file === undefined) throw new Error(`no .cpuprofile in ${dir}`);
const profile = JSON.parse(readFileSync(join(dir, file), 'utf8'));
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const label = (n) => `${n.callFrame.functionName} ${n.callFrame.url.split('/').slice(-2).join('/')}`;

const selfById = new Map();
profile.samples.forEach((id, i) => selfById.set(id, (selfById.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
const inclusive = new Map();
const self = new Map();
for (const [id, t] of selfById) {
  self.set(label(byId.get(id)), (self.get(label(byId.get(id))) ?? 0) + t);
  const seen = new Set();
  for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
    const k = label(byId.get(cur));
    if (seen.has(k)) continue;
    seen.add(k);
    inclusive.set(k, (inclusive.get(k) ?? 0) + t);
  }
}
const top = (m, n) => [...m].sort((a, b) => b[1] - a[1]).slice(0, n);
console.log('INCLUSIVE');
for (const [k, t] of top(inclusive, 40)) console.log((t / 1e6).toFixed(2), k);
console.log('SELF');
for (const [k, t] of top(self, 15)) console.log((t / 1e6).toFixed(2), k);
