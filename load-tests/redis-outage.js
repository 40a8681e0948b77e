// redis-outage.js — Redis frozen mid-test: no request fails because of the limiter, p99 holds.
//
// Needs a runner that freezes Redis: `load-tests/run.sh redis-outage` starts this script,
// sends SIGSTOP to the stack's redis-server at FAULT_AT seconds and SIGCONT FAULT_FOR seconds
// later (defaults 10 and 5). A stopped Redis keeps its connections open and answers nothing,
// the worst case for a client: every limiter sync tick and control-plane call must time out
// rather than wait.
//
// Load: RATE/s for DURATION over KEYS keys (each far below the per-user limit) through both
// gateways, plus WARM_KEYS keys at WARM_RATE/s each (default 5 × 60/s: 60% of the 100/s
// limit, split evenly so each gateway sees 30/s, under its degraded share of 100/2). Phases: `before`, `outage`,
// `recovery` (FAULT_FOR + RECOVERY seconds after the resume; a reconciliation burst of false
// 429s would show here), `after`. Thresholds: zero 429s and zero failed requests in every
// phase, p99 under P99_MS overall and during the outage and recovery. A witness step reads
// gw-1's /metrics near the end of the outage: the limiter must report `degraded` (or the
// control plane disconnected) — proof that the fault really happened.
//
//   load-tests/run.sh redis-outage                (DURATION=30s RATE=300 KEYS=2000)
import http from 'k6/http';
import exec from 'k6/execution';
import { check } from 'k6';
import { Counter } from 'k6/metrics';
import {
  ADMINS, elapsed, env, envNumber, gateway, report, seconds, summaryTrendStats, userKey,
} from './lib.js';

const RATE = envNumber('RATE', 300);
const DURATION = env('DURATION', '30s');
const KEYS = envNumber('KEYS', 2000);
const FAULT_AT = envNumber('FAULT_AT', 10);
const FAULT_FOR = envNumber('FAULT_FOR', 5);
const RECOVERY = envNumber('RECOVERY', 5);
const P99_MS = envNumber('P99_MS', 50);
const WARM_KEYS = envNumber('WARM_KEYS', 5);
const WARM_RATE = envNumber('WARM_RATE', 60);
if (FAULT_AT + FAULT_FOR + RECOVERY > seconds(DURATION)) {
  throw new Error(`DURATION ${DURATION} ends before the outage and recovery do`);
}

const limited = new Counter('limiter_rejections');
const witnessed = new Counter('outage_witnessed');

export const options = {
  scenarios: {
    load: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: 30,
      maxVUs: 300,
      exec: 'load',
    },
    warm: {
      executor: 'constant-arrival-rate',
      rate: WARM_KEYS * WARM_RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: 30,
      maxVUs: 300,
      exec: 'warm',
    },
    witness: {
      executor: 'per-vu-iterations',
      vus: 1,
      iterations: 1,
      startTime: `${Math.max(FAULT_AT + FAULT_FOR - 1.5, FAULT_AT + 0.5)}s`,
      exec: 'witness',
    },
  },
  thresholds: {
    limiter_rejections: ['count==0'],
    http_req_failed: ['rate==0'],
    'http_req_failed{phase:outage}': ['rate==0'],
    'http_req_failed{phase:recovery}': ['rate==0'],
    'http_req_duration{kind:data}': [`p(99)<${P99_MS}`],
    'http_req_duration{phase:outage}': [`p(99)<${P99_MS}`],
    'http_req_duration{phase:recovery}': [`p(99)<${P99_MS}`],
    outage_witnessed: ['count==1'],
    checks: ['rate==1'],
  },
  summaryTrendStats,
};

function phaseAt(t) {
  if (t < FAULT_AT) return 'before';
  if (t < FAULT_AT + FAULT_FOR) return 'outage';
  if (t < FAULT_AT + FAULT_FOR + RECOVERY) return 'recovery';
  return 'after';
}

export function load() {
  const i = exec.scenario.iterationInTest;
  const phase = phaseAt(elapsed());
  const user = userKey(Math.floor(Math.random() * KEYS));
  const res = http.get(`${gateway(i)}/limited`, {
    headers: { 'x-user-id': user },
    tags: { name: 'limited', phase, kind: 'data' },
  });
  if (res.status === 429) limited.add(1, { phase });
  check(res, { '200': (r) => r.status === 200 });
}

export function warm() {
  const i = exec.scenario.iterationInTest;
  const phase = phaseAt(elapsed());
  // Key i % WARM_KEYS, gateways alternating per round: every warm key evenly on both.
  const user = `warm-${i % WARM_KEYS}`;
  const res = http.get(`${gateway(Math.floor(i / WARM_KEYS))}/warm`, {
    headers: { 'x-user-id': user },
    tags: { name: 'warm', phase, kind: 'data' },
  });
  if (res.status === 429) limited.add(1, { phase, key: 'warm' });
  check(res, { '200': (r) => r.status === 200 });
}

// Reads gw-1's metrics during the outage: the limiter in degraded mode or the control plane
// disconnected shows the gateway noticed Redis was gone.
export function witness() {
  const res = http.get(`${ADMINS[0]}/metrics`, { tags: { kind: 'admin' } });
  const body = res.body || '';
  const degraded = /cellgate_ratelimit_mode\{mode="degraded"\} 1/.test(body);
  const disconnected = /cellgate_control_plane_connected 0/.test(body);
  const at = exec.instance.currentTestRunDuration / 1000;
  console.log(`witness at ${at.toFixed(1)}s: limiter degraded=${degraded}, control plane disconnected=${disconnected}`);
  if (degraded || disconnected) witnessed.add(1);
}

export function handleSummary(data) {
  const p = (phase) => {
    const d = data.metrics[`http_req_duration{phase:${phase}}`];
    const f = data.metrics[`http_req_failed{phase:${phase}}`];
    return `${phase}: p99 ${d ? d.values['p(99)'].toFixed(2) : '-'}ms, `
      + `${f ? f.values.passes : '-'} failed of ${f ? f.values.passes + f.values.fails : '-'}`;
  };
  return report('redis-outage', data, [
    `Redis frozen at ${FAULT_AT}s for ${FAULT_FOR}s of ${DURATION}; ${RATE}/s over ${KEYS} keys`
      + ` + ${WARM_KEYS} warm keys at ${WARM_RATE}/s each`,
    p('outage'), p('recovery'),
  ]);
}
