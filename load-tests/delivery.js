// delivery.js — async deliveries under load: every accepted request is delivered.
//
// Checks SPEC §4 "Async delivery" on a running stack, in three phases on one timeline:
//
//  1. `enqueue` (0 .. DURATION): RATE/s `POST /orders` with `Prefer: respond-async`, each with
//     its own `Idempotency-Key`, from KEYS users through both gateways (open model). A share
//     DELIVER_TO_SHARE of them names another user's cell with `X-Deliver-To`. Each answer must
//     be 202 with `Location: /_cellgate/deliveries/<id>` and `{"id","state":"pending"}`. Every
//     DUP_EVERY-th request is sent again with the same key through the *other* gateway: it must
//     get 202 with the same id (idempotency is shared through Redis, not per gateway). Every
//     SAMPLE_EVERY-th accepted delivery is remembered by its VU for phase 2.
//  2. `verify` (after the enqueue phase and its graceful stop): the same VUs (k6 reuses a VU
//     across scenarios that do not overlap, with its JS state) poll their sampled Locations
//     until `delivered` (or `dead`: a failure), for at most DELIVER_WITHIN seconds, and check
//     the record: one attempt at least, delivered to the cell `/admin/where` gives for the
//     target key. The server-side time from acceptance to delivery is the `delivery_latency`
//     trend.
//  3. `teardown`: polls every gateway's `/metrics` until the queue depth
//     (`cellgate_delivery_queue_depth`, all partitions) is 0 and the deliveries counted since
//     `setup` (`cellgate_delivery_deliveries_total{outcome="delivered"}`, summed over the
//     gateways) reach the acceptances counted since `setup`
//     (`cellgate_delivery_enqueued_total{outcome="accepted"}`), for at most DRAIN_WITHIN
//     seconds. No dead letters may appear meanwhile (refusals, `full` or `unavailable`, are
//     the enqueue phase's business: they count against its 202 rate).
//
// Thresholds: 202 for at least MIN_ACCEPTED (default 99.9%) of the enqueue requests that were
// not rate limited (a 429 is the limiter's answer, not the queue's: it is counted, not failed;
// with the default KEYS no user nears the per-user limit), enqueue p99 < P99_MS (client side,
// default 50 ms, the stack's p99 bound on a shared 2-core machine: see docs/stack.md), the
// same id for every repeated key, every sampled delivery `delivered` (none dead, none late),
// the queue drained, dropped iterations ≤ 0.1%, all checks pass.
//
//   load-tests/run.sh delivery                      (RATE=200 DURATION=30s KEYS=10000)
//   DURATION=25s load-tests/run.sh delivery
//   RATE=1000 DURATION=60s VUS=200 load-tests/run.sh delivery
//
// Knobs: RATE, DURATION, KEYS, VUS (VUs of the enqueue phase, also the verify phase),
// P99_MS, MIN_ACCEPTED, SAMPLE_EVERY (10), DUP_EVERY (50), DELIVER_TO_SHARE (0.25),
// DELIVER_WITHIN (30 s, per sampled delivery after the verify phase starts), DRAIN_WITHIN
// (60 s), DELIVERY_P99_MS (5000: acceptance to delivery, server clocks, sampled deliveries).
import http from 'k6/http';
import exec from 'k6/execution';
import { check, sleep } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';
import {
  ADMINS, CELLS, GATEWAYS, adminGet, env, envNumber, report, seconds, summaryTrendStats,
  userKey,
} from './lib.js';

const RATE = envNumber('RATE', 200);
const DURATION = env('DURATION', '30s');
const KEYS = envNumber('KEYS', 10000);
const VUS = envNumber('VUS', Math.max(50, Math.ceil(RATE / 4)));
const P99_MS = envNumber('P99_MS', 50);
const MIN_ACCEPTED = envNumber('MIN_ACCEPTED', 0.999);
const SAMPLE_EVERY = envNumber('SAMPLE_EVERY', 10);
const DUP_EVERY = envNumber('DUP_EVERY', 50);
const DELIVER_TO_SHARE = envNumber('DELIVER_TO_SHARE', 0.25);
const DELIVER_WITHIN = envNumber('DELIVER_WITHIN', 30);
const DRAIN_WITHIN = envNumber('DRAIN_WITHIN', 60);
const DELIVERY_P99_MS = envNumber('DELIVERY_P99_MS', 5000);
// The enqueue phase's graceful stop; the verify phase starts after it so that k6 runs it on
// the same VUs (a VU keeps its JS state, the sampled Locations, across scenarios).
const GRACE = 5;
const VERIFY_AT = seconds(DURATION) + GRACE;
// A run id keeps idempotency keys of two runs on one stack (KEEP_STACK=1) apart.
const RUN = env('RUN_ID', `${Date.now().toString(36)}`);

const accepted = new Rate('enqueue_accepted'); // of the requests that were not rate limited
const rateLimited = new Counter('enqueue_rate_limited');
const refused = new Counter('enqueue_refused'); // tagged by status
const sameId = new Rate('duplicate_same_id');
const sampled = new Counter('deliveries_sampled');
const delivered = new Counter('deliveries_delivered');
const dead = new Counter('deliveries_dead');
const late = new Counter('deliveries_late');
const latency = new Trend('delivery_latency', true);
const drained = new Counter('queue_drained');
const drainTime = new Trend('queue_drain_time', true);

export const options = {
  scenarios: {
    enqueue: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: VUS,
      maxVUs: VUS,
      gracefulStop: `${GRACE}s`,
      exec: 'enqueue',
    },
    verify: {
      executor: 'per-vu-iterations',
      vus: VUS,
      iterations: 1,
      startTime: `${VERIFY_AT}s`,
      maxDuration: `${DELIVER_WITHIN + 30}s`,
      exec: 'verify',
    },
  },
  setupTimeout: '30s',
  teardownTimeout: `${DRAIN_WITHIN + 30}s`,
  thresholds: {
    enqueue_accepted: [`rate>=${MIN_ACCEPTED}`],
    'http_req_duration{name:enqueue}': [`p(99)<${P99_MS}`],
    duplicate_same_id: ['rate==1'],
    deliveries_sampled: ['count>0'],
    deliveries_dead: ['count==0'],
    deliveries_late: ['count==0'],
    delivery_latency: [`p(99)<${DELIVERY_P99_MS}`],
    queue_drained: ['count==1'],
    dropped_iterations: [`count<=${Math.ceil(RATE * seconds(DURATION) * 0.001)}`],
    checks: ['rate==1'],
  },
  summaryTrendStats,
};

// ---- gateway metrics ------------------------------------------------------------------------

/** Sum of the samples of `name` whose labels contain `match` (e.g. `outcome="delivered"`). */
function metricSum(text, name, match) {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (match && !line.includes(match)) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

/** Queue figures summed over every gateway (counters) and over every partition (depth). */
function queueFigures() {
  const f = {
    accepted: 0, duplicate: 0, full: 0, unavailable: 0, delivered: 0, dead: 0, depth: 0,
    depthByGateway: [],
  };
  for (const admin of ADMINS) {
    const res = http.get(`${admin}/metrics`, { tags: { kind: 'admin', name: 'metrics' } });
    if (res.status !== 200) throw new Error(`GET ${admin}/metrics: ${res.status}`);
    const t = res.body;
    if (!t.includes('cellgate_delivery_queue_depth')) {
      throw new Error(`${admin}/metrics has no delivery metrics: is [delivery] configured?`);
    }
    for (const o of ['accepted', 'duplicate', 'full', 'unavailable']) {
      f[o] += metricSum(t, 'cellgate_delivery_enqueued_total', `outcome="${o}"`);
    }
    f.delivered += metricSum(t, 'cellgate_delivery_deliveries_total', 'outcome="delivered"');
    f.dead += metricSum(t, 'cellgate_delivery_deliveries_total', 'outcome="dead"');
    const depth = metricSum(t, 'cellgate_delivery_queue_depth');
    f.depthByGateway.push(depth);
    // Every gateway samples the same Redis partitions: take the largest view.
    f.depth = Math.max(f.depth, depth);
  }
  return f;
}

export function setup() {
  // The stack must answer 202 at all before the load starts (a clear message, not 5000 fails).
  const probe = http.post(`${GATEWAYS[0]}/orders`, '{"probe":true}', {
    headers: {
      'x-user-id': 'delivery-probe', Prefer: 'respond-async', 'Idempotency-Key': `${RUN}-probe`,
    },
    tags: { name: 'probe' },
    responseCallback: http.expectedStatuses(202),
  });
  if (probe.status !== 202) {
    throw new Error(`async request answered ${probe.status} ${probe.body}: is [delivery] configured?`);
  }
  return { run: RUN, before: queueFigures() };
}

// ---- phase 1: enqueue ---------------------------------------------------------------------

const samples = []; // this VU's sampled deliveries, verified in phase 2
let acceptedHere = 0;

function post(gw, user, target, idem, name) {
  const headers = {
    'x-user-id': user,
    'Content-Type': 'application/json',
    Prefer: 'respond-async',
    'Idempotency-Key': idem,
  };
  if (target !== user) headers['X-Deliver-To'] = target;
  return http.post(`${gw}/orders`, JSON.stringify({ order: idem, user, target }), {
    headers,
    tags: { name },
    // 202 is the answer; a 429 is the limiter's (counted apart), anything else a failure.
    responseCallback: http.expectedStatuses(202, 429),
  });
}

/** The id of a well-formed 202 (Location, body), or null; checks the contract on 202s. */
function acceptedId(res, what) {
  const location = res.headers.Location || '';
  let body = {};
  try { body = res.json(); } catch (_) { /* checked below */ }
  const id = typeof body.id === 'string' ? body.id : null;
  const ok = check(res, {
    [`${what}: Location /_cellgate/deliveries/<id>`]: () => location === `/_cellgate/deliveries/${id}`,
    [`${what}: body {"id","state"}`]: () => id !== null
      && ['pending', 'delivering', 'retrying', 'delivered'].includes(body.state),
    [`${what}: Preference-Applied: respond-async`]: (r) => r.headers['Preference-Applied'] === 'respond-async',
  });
  if (what === 'enqueue') check(body, { 'enqueue: state pending': (b) => b.state === 'pending' });
  return ok ? id : null;
}

export function enqueue(data) {
  const i = exec.scenario.iterationInTest;
  const g = i % GATEWAYS.length;
  const user = userKey(Math.floor(Math.random() * KEYS));
  const target = Math.random() < DELIVER_TO_SHARE ? userKey(Math.floor(Math.random() * KEYS)) : user;
  const idem = `${data.run}-${exec.vu.idInTest}-${i}`;
  const res = post(GATEWAYS[g], user, target, idem, 'enqueue');
  if (res.status === 429) {
    rateLimited.add(1);
    return;
  }
  if (res.status !== 202) {
    accepted.add(false);
    let code = '';
    try { code = res.json('error'); } catch (_) { /* not JSON */ }
    refused.add(1, { status: String(res.status), code: String(code || '') });
    return;
  }
  const id = acceptedId(res, 'enqueue');
  accepted.add(id !== null);
  if (id === null) return;
  acceptedHere += 1;
  if (acceptedHere % SAMPLE_EVERY === 0) samples.push({ id, target, gw: g });
  if (i % DUP_EVERY === 0) {
    const again = post(GATEWAYS[(g + 1) % GATEWAYS.length], user, target, idem, 'duplicate');
    if (again.status === 429) return; // the limiter's answer: says nothing about the queue
    const same = again.status === 202 && acceptedId(again, 'duplicate') === id;
    sameId.add(same);
    if (!same) console.warn(`repeat of ${idem}: ${again.status} ${again.body}, first id ${id}`);
  }
}

// ---- phase 2: verify a sample ---------------------------------------------------------------

const cellOf = {};
function homeCell(key) {
  if (!(key in cellOf)) cellOf[key] = adminGet(`/admin/where/${encodeURIComponent(key)}`).cell;
  return cellOf[key];
}

export function verify() {
  const deadline = Date.now() + DELIVER_WITHIN * 1000;
  let pending = samples.splice(0);
  sampled.add(pending.length);
  while (pending.length > 0) {
    const next = [];
    for (const s of pending) {
      const res = http.get(`${GATEWAYS[s.gw]}/_cellgate/deliveries/${s.id}`, { tags: { name: 'status' } });
      let r = {};
      try { r = res.json(); } catch (_) { /* checked below */ }
      check(res, {
        'status: 200 with a known state': () => res.status === 200
          && ['pending', 'delivering', 'retrying', 'delivered', 'dead'].includes(r.state),
      });
      if (r.state === 'delivered') {
        delivered.add(1);
        latency.add(r.delivered_ms - r.created_ms);
        check(r, {
          'delivered: id matches': () => r.id === s.id,
          'delivered: attempts >= 1': () => r.attempts >= 1,
          'delivered: to the target key\'s cell': () => CELLS.includes(r.delivered_to)
            && r.delivered_to === homeCell(s.target),
        });
      } else if (r.state === 'dead') {
        dead.add(1);
        console.warn(`delivery ${s.id} dead: ${res.body}`);
      } else {
        next.push(s);
      }
    }
    pending = next;
    if (pending.length === 0) break;
    if (Date.now() >= deadline) {
      late.add(pending.length);
      console.warn(`${pending.length} sampled deliveries not delivered after ${DELIVER_WITHIN}s, e.g. ${pending[0].id}`);
      break;
    }
    sleep(0.25);
  }
}

// ---- phase 3: the whole queue drains --------------------------------------------------------

export function teardown(data) {
  const started = Date.now();
  const deadline = started + DRAIN_WITHIN * 1000;
  const b = data.before;
  let f = queueFigures();
  // Depth gauges are sampled once a second: wait for a zero seen after the counters caught up.
  while (Date.now() < deadline) {
    if (f.delivered - b.delivered >= f.accepted - b.accepted && f.depth === 0) break;
    sleep(0.5);
    f = queueFigures();
  }
  const d = (k) => f[k] - b[k];
  const ok = check(f, {
    'drain: queue depth 0 on every gateway': () => f.depthByGateway.every((x) => x === 0),
    'drain: delivered >= accepted since setup': () => d('delivered') >= d('accepted'),
    'drain: no dead letters': () => d('dead') === 0,
  });
  if (ok) {
    drained.add(1);
    drainTime.add(Date.now() - started);
  }
  console.log(`queue since setup: accepted ${d('accepted')}, duplicate ${d('duplicate')}, `
    + `delivered ${d('delivered')}, dead ${d('dead')}, full ${d('full')}, `
    + `unavailable ${d('unavailable')}; depth now ${f.depthByGateway.join('/')}`);
}

export function handleSummary(data) {
  const m = data.metrics;
  const c = (name) => (m[name] ? m[name].values.count : 0);
  const rate = (name) => (m[name] ? m[name].values : { rate: 0, passes: 0, fails: 0 });
  const trend = (name, stat) => (m[name] && m[name].values[stat] !== undefined
    ? `${m[name].values[stat].toFixed(1)}ms` : '-');
  const a = rate('enqueue_accepted');
  const enq = m['http_req_duration{name:enqueue}'];
  const enqP = (s) => (enq && enq.values[s] !== undefined ? `${enq.values[s].toFixed(2)}ms` : '-');
  return report('delivery', data, [
    `offered ${RATE}/s for ${DURATION} over ${KEYS} keys (${VUS} VUs); X-Deliver-To share ${DELIVER_TO_SHARE}`,
    `enqueue: ${a.passes} accepted of ${a.passes + a.fails} not rate limited, `
      + `${c('enqueue_rate_limited')} rate limited, ${c('enqueue_refused')} refused; `
      + `p50 ${enqP('med')} p99 ${enqP('p(99)')} (bound ${P99_MS}ms)`,
    `sampled 1/${SAMPLE_EVERY}: ${c('deliveries_sampled')}, delivered ${c('deliveries_delivered')}, `
      + `dead ${c('deliveries_dead')}, late ${c('deliveries_late')}; `
      + `accept->delivered p50 ${trend('delivery_latency', 'med')} p99 ${trend('delivery_latency', 'p(99)')}`,
    `queue drained: ${c('queue_drained') === 1 ? `yes, ${trend('queue_drain_time', 'max')} after teardown began` : 'NO'}`,
  ]);
}
