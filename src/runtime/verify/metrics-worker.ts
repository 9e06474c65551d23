// Worker-thread entry of verify's metrics pool (metrics-pool.ts): one linear's metrics per message.

import { parentPort } from 'node:worker_threads';
import { linearMetrics } from './metrics.js';
import type { MetricsReply, MetricsRequest } from './metrics-pool.js';

parentPort!.on('message', (m: MetricsRequest) => {
  let reply: MetricsReply;
  try {
    reply = { id: m.id, metrics: linearMetrics(m.reference, m.actual, m.floorIsActual ? m.actual : m.floor, m.rows, m.bn) };
  } catch (e) {
    reply = { id: m.id, error: e instanceof Error ? e.message : String(e) };
  }
  parentPort!.postMessage(reply);
});
