// drain.js — drain cell-2 under load: zero failed requests, cell-2 traffic goes to zero.
//
// Timeline (seconds from start): load at RATE/s over KEYS keys through both gateways for
// DURATION; at DRAIN_AT an operator step in k6 itself calls the admin API of gw-1,
// `POST /admin/cells/cell-2/drain {"over": OVER}` (what `cellctl drain cell-2 --over 10s`
// does); gw-2 learns it through Redis. Requests are tagged by phase: `before` the drain,
// `ramp` while cell-2's weight ramps to 0 (plus SETTLE seconds for the directory to reach
// gw-2), `after`. Thresholds: no failed request in any phase, cell-2 answered `before`, not
// once `after`, and the `after` phase carried traffic to the other cells. teardown undrains
// cell-2 so the stack is left as found.
//
//   load-tests/run.sh drain                       (DURATION=40s DRAIN_AT=5 OVER=10s)
//   DURATION=25s load-tests/run.sh drain          (the CI variant)
import http from 'k6/http';
import exec from 'k6/execution';
import { check, sleep } from 'k6';
import { Counter } from 'k6/metrics';
import {
  CELLS, adminGet, adminPost, elapsed, env, envNumber, gateway, report, seconds,
  summaryTrendStats, userKey,
} from './lib.js';

const RATE = envNumber('RATE', 200);
const DURATION = env('DURATION', '40s');
const KEYS = envNumber('KEYS', 3000);
const DRAIN_AT = envNumber('DRAIN_AT', 5);
const OVER = env('OVER', '10s');
const SETTLE = envNumber('SETTLE', 2);
const CELL = env('CELL', 'cell-2');
const AFTER = DRAIN_AT + seconds(OVER) + SETTLE;
if (AFTER + 5 > seconds(DURATION)) {
  throw new Error(`DURATION ${DURATION} leaves less than 5s after the ramp (ends at ${AFTER}s)`);
}

const cellHits = new Counter('cell_hits');
const drains = new Counter('drain_started');

const thresholds = {
  http_req_failed: ['rate==0'],
  checks: ['rate==1'],
  drain_started: ['count==1'],
  [`cell_hits{cell:${CELL},phase:before}`]: ['count>0'],
  [`cell_hits{cell:${CELL},phase:after}`]: ['count==0'],
  'cell_hits{phase:after}': ['count>0'],
};
for (const cell of CELLS) {
  if (cell !== CELL) thresholds[`cell_hits{cell:${cell},phase:after}`] = ['count>0'];
  // Always true: listed so that the summary shows every cell in every phase.
  for (const phase of ['before', 'ramp']) {
    const name = `cell_hits{cell:${cell},phase:${phase}}`;
    if (!thresholds[name]) thresholds[name] = ['count>=0'];
  }
}

export const options = {
  scenarios: {
    load: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: 50,
      maxVUs: 200,
      exec: 'load',
    },
    operator: {
      executor: 'per-vu-iterations',
      vus: 1,
      iterations: 1,
      startTime: `${DRAIN_AT}s`,
      exec: 'drain',
    },
  },
  thresholds,
  summaryTrendStats,
};

function cellState(name) {
  return adminGet('/admin/cells').cells.find((c) => c.name === name).state;
}

export function setup() {
  const state = cellState(CELL);
  if (state !== 'active') throw new Error(`${CELL} is ${state}, not active: undrain it first`);
}

export function load() {
  const i = exec.scenario.iterationInTest;
  const t = elapsed();
  const phase = t < DRAIN_AT ? 'before' : t < AFTER ? 'ramp' : 'after';
  const user = userKey(Math.floor(Math.random() * KEYS));
  const res = http.get(`${gateway(i)}/drain`, { headers: { 'x-user-id': user }, tags: { name: 'drain', phase } });
  const cell = res.headers['X-Cell'];
  check(res, { '200': (r) => r.status === 200, 'X-Cell': () => CELLS.includes(cell) });
  if (cell) cellHits.add(1, { cell, phase });
}

export function drain() {
  const answer = adminPost(`/admin/cells/${CELL}/drain`, { over: OVER, reason: 'k6 drain.js', actor: 'k6' });
  check(answer, { 'drain accepted': (a) => a.state === 'draining' || a.state === 'drained' });
  drains.add(1);
}

export function teardown() {
  adminPost(`/admin/cells/${CELL}/undrain`, { over: '1s', reason: 'k6 drain.js teardown', actor: 'k6' });
  for (let i = 0; i < 50 && cellState(CELL) !== 'active'; i++) sleep(0.2);
}

export function handleSummary(data) {
  const count = (cell, phase) => {
    const m = data.metrics[`cell_hits{cell:${cell},phase:${phase}}`];
    return m ? m.values.count : 0;
  };
  const row = (phase) => `${phase.padEnd(6)} ${CELLS.map((c) => `${c} ${count(c, phase)}`).join(', ')}`;
  return report('drain', data, [
    `drain ${CELL} over ${OVER} at ${DRAIN_AT}s; 'after' from ${AFTER}s to ${DURATION}; ${RATE}/s over ${KEYS} keys`,
    row('before'), row('ramp'), row('after'),
  ]);
}
