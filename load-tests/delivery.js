// delivery.js — async deliveries under load: every accepted delivery is delivered.
//
// EXPECTED TO FAIL until the async delivery queue (issue 6) exists: today the gateway
// forwards `Prefer: respond-async` requests synchronously (200 from the cell), so the
// `deliveries_not_accepted` threshold fails on the first request. The scenario checks the
// contract of SPEC §4 as written, nothing weaker:
//
//   POST with `Prefer: respond-async`  -> 202, `Location: /_cellgate/deliveries/<id>`,
//                                         body {"id", "state": "pending"}
//   GET /_cellgate/deliveries/<id>     -> state pending | delivering | retrying | delivered | dead
//
// Load: RATE/s for DURATION over KEYS keys through both gateways; each iteration enqueues one
// delivery (unique Idempotency-Key) and polls its status until `delivered` or `dead`, for at
// most DELIVER_WITHIN seconds. Thresholds: every request accepted with 202, none dead, none
// still pending at the deadline, at least one delivered, all checks pass.
//
//   load-tests/run.sh delivery                    (RATE=50 DURATION=20s)
import http from 'k6/http';
import exec from 'k6/execution';
import { check, sleep } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import { env, envNumber, gateway, report, summaryTrendStats, userKey } from './lib.js';

const RATE = envNumber('RATE', 50);
const DURATION = env('DURATION', '20s');
const KEYS = envNumber('KEYS', 1000);
const DELIVER_WITHIN = envNumber('DELIVER_WITHIN', 30);

const accepted = new Counter('deliveries_accepted');
const notAccepted = new Counter('deliveries_not_accepted');
const delivered = new Counter('deliveries_delivered');
const dead = new Counter('deliveries_dead');
const lost = new Counter('deliveries_lost');
const toDelivered = new Trend('delivery_time', true);

export const options = {
  scenarios: {
    enqueue: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: 50,
      maxVUs: 500,
    },
  },
  thresholds: {
    deliveries_not_accepted: ['count==0'],
    deliveries_accepted: ['count>0'],
    deliveries_delivered: ['count>0'],
    deliveries_dead: ['count==0'],
    deliveries_lost: ['count==0'],
    checks: ['rate==1'],
  },
  summaryTrendStats,
};

export default function () {
  const i = exec.scenario.iterationInTest;
  const gw = gateway(i);
  const user = userKey(Math.floor(Math.random() * KEYS));
  const idem = `k6-delivery-${exec.vu.idInTest}-${i}-${Date.now()}`;
  const started = Date.now();
  const res = http.post(`${gw}/orders`, JSON.stringify({ order: idem }), {
    headers: {
      'x-user-id': user,
      'Content-Type': 'application/json',
      Prefer: 'respond-async',
      'Idempotency-Key': idem,
    },
    tags: { name: 'enqueue' },
    responseCallback: http.expectedStatuses(202),
  });
  const location = res.headers.Location || '';
  let body = {};
  try { body = res.json(); } catch (_) { /* checked below */ }
  const ok = check(res, {
    'enqueue: 202': (r) => r.status === 202,
    'enqueue: Location /_cellgate/deliveries/<id>': () => /^\/_cellgate\/deliveries\/[^/]+$/.test(location),
    'enqueue: body state pending': () => body.state === 'pending' && typeof body.id === 'string',
  });
  if (!ok) {
    notAccepted.add(1, { status: String(res.status) });
    return;
  }
  accepted.add(1);
  const deadline = started + DELIVER_WITHIN * 1000;
  while (Date.now() < deadline) {
    const st = http.get(`${gw}${location}`, { headers: { 'x-user-id': user }, tags: { name: 'status' } });
    const state = st.status === 200 ? st.json('state') : undefined;
    if (state === 'delivered') {
      delivered.add(1);
      toDelivered.add(Date.now() - started);
      return;
    }
    if (state === 'dead') {
      dead.add(1);
      check(st, { 'delivery not dead': () => false });
      return;
    }
    sleep(0.2);
  }
  lost.add(1);
  check(null, { 'delivered within deadline': () => false });
}

export function handleSummary(data) {
  const c = (name) => (data.metrics[name] ? data.metrics[name].values.count : 0);
  return report('delivery', data, [
    `accepted ${c('deliveries_accepted')}, not accepted ${c('deliveries_not_accepted')}, `
      + `delivered ${c('deliveries_delivered')}, dead ${c('deliveries_dead')}, lost ${c('deliveries_lost')}`,
  ]);
}
