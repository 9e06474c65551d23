// Per-phase wall time of a verify run, taken from its progress events (setup until the first layer,
// each decoder layer, the head), so the reports can show where the time went without the runtime
// measuring anything for them.

import { performance } from 'node:perf_hooks';
import type { VerifyEvent } from '../../runtime/verify/verify-checkpoints.js';
import type { VerifyTimings } from './verify-report-view.js';

export class VerifyTimer {
  private readonly t0: number;
  private readonly layerStarts: number[] = [];
  private headStart: number | undefined;

  constructor(private readonly now: () => number = () => performance.now()) {
    this.t0 = now();
  }

  observe(event: VerifyEvent): void {
    if (event.type === 'layer') this.layerStarts[event.index] = this.now();
    else if (event.type === 'head') this.headStart = this.now();
  }

  /** Timings up to now (call when the run has returned). */
  finish(): VerifyTimings {
    const end = this.now();
    const head = this.headStart ?? end;
    const starts = this.layerStarts;
    const layers = starts.map((s, i) => ((i + 1 < starts.length ? starts[i + 1] : undefined) ?? head) - s);
    const first = starts[0] ?? head;
    return { setup: (first - this.t0) / 1000, layers: layers.map((ms) => ms / 1000), head: (end - head) / 1000 };
  }
}
