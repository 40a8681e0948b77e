// steady.js — constant arrival rate across many keys: error rate < 0.1%, p99 under a bound.
//
// RATE requests/s (open model: arrivals do not wait for answers, so a slow gateway shows up
// as latency and dropped iterations, not as a politely slower client) for DURATION, spread
// over KEYS routing keys (each far below the per-user limit) and over both gateways.
//
// The p99 bound P99_MS (default 50 ms) is for the process stack on one machine, where k6,
// two gateways, six echo cells and Redis share the CPUs; see docs/stack.md for measured
// values.
//
//   load-tests/run.sh steady                      (RATE=500 DURATION=60s KEYS=10000)
//   RATE=2000 DURATION=5m load-tests/run.sh steady
import http from 'k6/http';
import exec from 'k6/execution';
import { check } from 'k6';
import { Counter } from 'k6/metrics';
import {
  CELLS, env, envNumber, gateway, report, seconds, summaryTrendStats, userKey,
} from './lib.js';

const RATE = envNumber('RATE', 500);
const DURATION = env('DURATION', '60s');
const KEYS = envNumber('KEYS', 10000);
const P99_MS = envNumber('P99_MS', 50);
const cellHits = new Counter('cell_hits');

export const options = {
  scenarios: {
    steady: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: Math.max(50, Math.ceil(RATE / 5)),
      maxVUs: Math.max(100, RATE),
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.001'],
    http_req_duration: [`p(99)<${P99_MS}`],
    checks: ['rate>0.999'],
    // An open model that cannot keep up drops iterations instead of sending them late.
    dropped_iterations: [`count<=${Math.ceil(RATE * seconds(DURATION) * 0.001)}`],
    // Every cell takes its share.
    'cell_hits{cell:cell-1}': ['count>0'],
    'cell_hits{cell:cell-2}': ['count>0'],
    'cell_hits{cell:cell-3}': ['count>0'],
  },
  summaryTrendStats,
};

export default function () {
  const i = exec.scenario.iterationInTest;
  const user = userKey(Math.floor(Math.random() * KEYS));
  const res = http.get(`${gateway(i)}/steady`, { headers: { 'x-user-id': user }, tags: { name: 'steady' } });
  const cell = res.headers['X-Cell'];
  check(res, { '200': (r) => r.status === 200, 'X-Cell': () => CELLS.includes(cell) });
  if (cell) cellHits.add(1, { cell });
}

export function handleSummary(data) {
  const count = (cell) => {
    const m = data.metrics[`cell_hits{cell:${cell}}`];
    return m ? m.values.count : 0;
  };
  const dropped = data.metrics.dropped_iterations ? data.metrics.dropped_iterations.values.count : 0;
  return report('steady', data, [
    `offered ${RATE}/s for ${DURATION} over ${KEYS} keys; dropped iterations ${dropped}; p99 bound ${P99_MS}ms`,
    `per cell: ${CELLS.map((c) => `${c} ${count(c)}`).join(', ')}`,
  ]);
}
