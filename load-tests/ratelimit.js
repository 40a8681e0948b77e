// ratelimit.js — one hot key through both gateways: admitted rate within ±5% of the policy.
//
// The stack's policy (deploy/cellgate.toml) is `per-user`: LIMIT=100 per 1s, burst = limit.
// One key is offered OFFERED requests/s (default 300, three times the limit) for DURATION
// (default 20s), split unevenly over the two gateways (SKEW=0.7 through gw-1): each gateway
// alone sees more than the limit, so only the Redis-synced global count keeps the sum at 100/s.
//
// Admitted rate = 200s sent after the first WARMUP second (when the initial burst is spent)
// divided by the length of that window; thresholds fail the run unless it is within ±TOLERANCE
// (5%) of LIMIT. Every 429 must carry Retry-After and the RateLimit headers; anything other
// than 200 or 429 fails the run.
//
//   load-tests/run.sh ratelimit
import http from 'k6/http';
import { check } from 'k6';
import { Counter } from 'k6/metrics';
import { GATEWAYS, elapsed, env, envNumber, report, seconds, summaryTrendStats } from './lib.js';

const LIMIT = envNumber('LIMIT', 100);
const OFFERED = envNumber('OFFERED', 300);
const DURATION = env('DURATION', '20s');
const WARMUP = envNumber('WARMUP', 1);
const TOLERANCE = envNumber('TOLERANCE', 0.05);
const SKEW = envNumber('SKEW', 0.7);
const HOT_KEY = env('HOT_KEY', 'hot-user');

const WINDOW = seconds(DURATION) - WARMUP;
const EXPECTED = LIMIT * WINDOW;
const LOW = Math.floor(EXPECTED * (1 - TOLERANCE));
const HIGH = Math.ceil(EXPECTED * (1 + TOLERANCE));

const admitted = new Counter('admitted');
const limited = new Counter('limited');
const unexpected = new Counter('unexpected_status');

export const options = {
  scenarios: {
    hot: {
      executor: 'constant-arrival-rate',
      rate: OFFERED,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: 50,
      maxVUs: 200,
    },
  },
  thresholds: {
    [`admitted{phase:measure}`]: [`count>=${LOW}`, `count<=${HIGH}`],
    'admitted{gateway:gw-1}': ['count>0'],
    'admitted{gateway:gw-2}': ['count>0'],
    unexpected_status: ['count==0'],
    http_req_failed: ['rate==0'],
    checks: ['rate==1'],
  },
  summaryTrendStats,
};

const params = (gw) => ({
  headers: { 'x-user-id': HOT_KEY },
  tags: { name: 'hot', gateway: gw },
  responseCallback: http.expectedStatuses(200, 429),
});

export default function () {
  const g = Math.random() < SKEW ? 0 : 1;
  const gw = `gw-${g + 1}`;
  const phase = elapsed() < WARMUP ? 'warmup' : 'measure';
  const res = http.get(`${GATEWAYS[g % GATEWAYS.length]}/hot`, params(gw));
  if (res.status === 200) {
    admitted.add(1, { phase, gateway: gw });
  } else if (res.status === 429) {
    limited.add(1, { phase, gateway: gw });
    check(res, {
      '429 has Retry-After': (r) => !!r.headers['Retry-After'],
      '429 has RateLimit-Policy': (r) => /"per-user";q=\d+;w=\d+/.test(r.headers['Ratelimit-Policy'] || ''),
      '429 has RateLimit': (r) => !!r.headers.Ratelimit,
      '429 error code rate_limited': (r) => r.json('error') === 'rate_limited',
    });
  } else {
    unexpected.add(1, { status: String(res.status) });
  }
}

export function handleSummary(data) {
  const m = data.metrics['admitted{phase:measure}'];
  const count = m ? m.values.count : 0;
  const rate = count / WINDOW;
  const by = (g) => {
    const x = data.metrics[`admitted{gateway:${g}}`];
    return x ? x.values.count : 0;
  };
  return report('ratelimit', data, [
    `policy ${LIMIT}/s; offered ${OFFERED}/s on one key (${Math.round(SKEW * 100)}% via gw-1) for ${DURATION}`,
    `admitted after ${WARMUP}s: ${count} in ${WINDOW}s = ${rate.toFixed(2)}/s `
      + `(${((rate / LIMIT - 1) * 100).toFixed(2)}% vs policy; allowed ${LOW}..${HIGH})`,
    `admitted by gateway over the whole run: gw-1 ${by('gw-1')}, gw-2 ${by('gw-2')}`,
  ]);
}
