// cluster-scale.js: load of load-tests/bench/cluster-scale.sh. HOT_KEYS routing keys
// (`hot-0` .. `hot-<HOT_KEYS-1>` in x-user-id), each offered OFFERED requests/s, for DURATION,
// at a constant arrival rate (HOT_KEYS x OFFERED requests/s overall). Request i goes to key
// i % HOT_KEYS through gateway floor(i / HOT_KEYS) % N: every key's requests rotate over all N
// gateways (GW_URLS), so every gateway sees every key at OFFERED / N per second.
//
// Counts 200 (admitted) and 429 (limited) by phase: `warmup` for requests sent in the first
// WARMUP seconds (each key's initial burst), `measure` after. Writes those counts, with k6's
// request and dropped-iteration totals, to SUMMARY_OUT as JSON; the shell script computes
// the figures. Anything other than 200 or 429 is counted as unexpected.
import http from 'k6/http';
import exec from 'k6/execution';
import { Counter } from 'k6/metrics';

const GATEWAYS = (__ENV.GW_URLS || 'http://127.0.0.1:28080').split(',');
const HOT_KEYS = Number(__ENV.HOT_KEYS || 100);
const OFFERED = Number(__ENV.OFFERED || 20);
const DURATION = __ENV.DURATION || '20s';
const WARMUP = Number(__ENV.WARMUP || 1);
const RATE = HOT_KEYS * OFFERED;

const admittedWarmup = new Counter('admitted_warmup');
const admittedMeasure = new Counter('admitted_measure');
const limitedWarmup = new Counter('limited_warmup');
const limitedMeasure = new Counter('limited_measure');
const unexpected = new Counter('unexpected_status');

export const options = {
  discardResponseBodies: true,
  summaryTrendStats: ['med', 'p(99)', 'max'],
  scenarios: {
    hot: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: Math.min(200, Math.max(20, Math.ceil(RATE / 20))),
      maxVUs: 1000,
    },
  },
};

const KEYS = Array.from({ length: HOT_KEYS }, (_, k) => `hot-${k}`);

export default function () {
  const i = exec.scenario.iterationInTest;
  const key = KEYS[i % HOT_KEYS];
  const g = Math.floor(i / HOT_KEYS) % GATEWAYS.length;
  const measure = (Date.now() - exec.scenario.startTime) / 1000 >= WARMUP;
  const res = http.get(`${GATEWAYS[g]}/hot`, {
    headers: { 'x-user-id': key },
    tags: { name: 'hot' },
    responseCallback: http.expectedStatuses(200, 429),
  });
  if (res.status === 200) {
    (measure ? admittedMeasure : admittedWarmup).add(1);
  } else if (res.status === 429) {
    (measure ? limitedMeasure : limitedWarmup).add(1);
  } else {
    unexpected.add(1);
  }
}

function count(data, name) {
  const m = data.metrics[name];
  return m ? m.values.count : 0;
}

export function handleSummary(data) {
  const d = data.metrics.http_req_duration ? data.metrics.http_req_duration.values : {};
  const out = {
    rate: RATE,
    requests: count(data, 'http_reqs'),
    dropped: count(data, 'dropped_iterations'),
    admitted_warmup: count(data, 'admitted_warmup'),
    admitted_measure: count(data, 'admitted_measure'),
    limited_warmup: count(data, 'limited_warmup'),
    limited_measure: count(data, 'limited_measure'),
    unexpected: count(data, 'unexpected_status'),
    p50_ms: d.med,
    p99_ms: d['p(99)'],
  };
  const text = JSON.stringify(out);
  return __ENV.SUMMARY_OUT ? { [__ENV.SUMMARY_OUT]: text, stdout: `${text}\n` } : { stdout: `${text}\n` };
}
