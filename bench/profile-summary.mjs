// Summary of a V8 CPU profile (`node --cpu-prof --cpu-prof-dir=<dir>`): the functions with the
// most time, inclusive (counted once per stack) and self, in seconds. Used on the GPU machine by
// bench/gpu-verify-8b.sh, where no other profile viewer is at hand.
// A run writes one profile per thread and per process (worker threads; bin/fp8q.js's relaunching
// parent): the one summarised is the busiest, the profile with the most non-idle sample time.
// Usage: node bench/profile-summary.mjs <dir holding .cpuprofile files>

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.argv[2];
const busy = (p) => {
  const idle = new Set(p.nodes.filter((n) => n.callFrame.functionName === '(idle)').map((n) => n.id));
  return p.samples.reduce((t, id, i) => (idle.has(id) ? t : t + (p.timeDeltas[i] ?? 0)), 0);
};
const profiles = readdirSync(dir)
  .filter((f) => f.endsWith('.cpuprofile'))
  .map((f) => ({ file: f, profile: JSON.parse(readFileSync(join(dir, f), 'utf8')) }));
if (profiles.length === 0) throw new Error(`no .cpuprofile in ${dir}`);
const { file, profile } = profiles.reduce((a, b) => (busy(b.profile) > busy(a.profile) ? b : a));
console.log(`${file} (the busiest of ${profiles.length} profiles)`);
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
// When the main thread idles: seconds of idle samples in each tenth of the profile (a wait for reads
// or workers at the start, between layers or in the head shows as a tenth of its own).
const total = profile.timeDeltas.reduce((a, b) => a + b, 0);
const tenths = new Array(10).fill(0);
let at = 0;
profile.samples.forEach((id, i) => {
  at += profile.timeDeltas[i] ?? 0;
  if (byId.get(id).callFrame.functionName === '(idle)') tenths[Math.min(9, Math.floor((at / total) * 10))] += profile.timeDeltas[i] ?? 0;
});
console.log(`IDLE by tenth of ${(total / 1e6).toFixed(2)} s:`, tenths.map((t) => (t / 1e6).toFixed(2)).join(' '));
