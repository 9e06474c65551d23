// Worker-thread entry of verify's metrics pool (metrics-pool.ts): one linear's metrics, a run of
// tokens' comparison (KL, top-1 agreement, comparison sums), or a piece of shared memory to touch,
// per message.

import { parentPort } from 'node:worker_threads';
import { compareTokens, linearMetrics } from './metrics.js';
import type { MetricsReply, MetricsRequest } from './metrics-pool.js';

parentPort!.on('message', (m: MetricsRequest) => {
  let reply: MetricsReply;
  try {
    if (m.kind === 'touch') {
      m.memory.fill(0);
      parentPort!.postMessage({ id: m.id, touched: true } satisfies MetricsReply);
      return;
    }
    if (m.kind === 'tokens') {
      const tokens = compareTokens(m.original, m.quantized, m.vocab);
      parentPort!.postMessage({ id: m.id, tokens } satisfies MetricsReply, [
        tokens.kl.buffer as ArrayBuffer,
        tokens.agree.buffer as ArrayBuffer,
        tokens.terms.buffer as ArrayBuffer,
      ]);
      return;
    }
    reply = { id: m.id, metrics: linearMetrics(m.reference, m.actual, m.floorIsActual ? m.actual : m.floor, m.rows, m.bn) };
  } catch (e) {
    reply = { id: m.id, error: e instanceof Error ? e.message : String(e) };
  }
  parentPort!.postMessage(reply);
});
