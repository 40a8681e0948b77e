// Shared helpers of the k6 scenarios: where the stack is (from the environment that
// load-tests/run.sh exports, see load-tests/stack.sh), keys, phases on the test timeline, and
// a compact summary (k6 prints no default summary once handleSummary is defined).
//
// Environment (defaults match `load-tests/stack.sh up`):
//   GW_URLS      comma-separated gateway base URLs
//   ADMIN_URLS   comma-separated admin API base URLs, same order
//   ADMIN_TOKEN  bearer token of the admin API
//   ECHO_URLS    comma-separated cell=url pairs of the echo-cell instances
//   SUMMARY_DIR  when set, the summary JSON is also written there as <scenario>.json
import http from 'k6/http';
import exec from 'k6/execution';

export const GATEWAYS = (__ENV.GW_URLS || 'http://127.0.0.1:28080,http://127.0.0.1:28081').split(',');
export const ADMINS = (__ENV.ADMIN_URLS || 'http://127.0.0.1:29901,http://127.0.0.1:29902').split(',');
export const TOKEN = __ENV.ADMIN_TOKEN || 'cellgate-dev-token';
export const CELLS = ['cell-1', 'cell-2', 'cell-3'];

const DEFAULT_ECHO = [
  'cell-1=http://127.0.0.1:27001', 'cell-1=http://127.0.0.1:27002',
  'cell-2=http://127.0.0.1:27003', 'cell-2=http://127.0.0.1:27004',
  'cell-3=http://127.0.0.1:27005', 'cell-3=http://127.0.0.1:27006',
].join(',');

/** Echo-cell instance URLs by cell: {"cell-1": ["http://..", ".."], ...}. */
export const ECHO = (__ENV.ECHO_URLS || DEFAULT_ECHO).split(',').reduce((acc, pair) => {
  const [cell, url] = pair.split('=');
  (acc[cell] = acc[cell] || []).push(url);
  return acc;
}, {});

/** Seconds of a k6-style duration string: "90s", "2m", "1m30s", "500ms". */
export function seconds(text) {
  let total = 0;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
  let m;
  let matched = '';
  while ((m = re.exec(text)) !== null) {
    const n = parseFloat(m[1]);
    total += m[2] === 'ms' ? n / 1000 : m[2] === 's' ? n : m[2] === 'm' ? n * 60 : n * 3600;
    matched += m[0];
  }
  if (matched !== text) throw new Error(`bad duration ${JSON.stringify(text)}`);
  return total;
}

export function env(name, fallback) {
  const v = __ENV[name];
  return v === undefined || v === '' ? fallback : v;
}

export function envNumber(name, fallback) {
  const v = Number(env(name, fallback));
  if (!Number.isFinite(v)) throw new Error(`${name} must be a number`);
  return v;
}

/** The i-th routing key of a population. */
export function userKey(i) {
  return `user-${i}`;
}

/** Gateway for the i-th request: spreads load over all gateways. */
export function gateway(i) {
  return GATEWAYS[i % GATEWAYS.length];
}

/** Seconds since the current scenario started (phases on the fault timeline). */
export function elapsed() {
  return (Date.now() - exec.scenario.startTime) / 1000;
}

export function adminParams(extra) {
  return Object.assign(
    {
      headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
      tags: { kind: 'admin' },
    },
    extra || {},
  );
}

/** POST to the admin API; throws (fails the iteration loudly) unless it answers 2xx. */
export function adminPost(path, body, admin) {
  const res = http.post(`${admin || ADMINS[0]}${path}`, JSON.stringify(body || {}), adminParams());
  if (res.status < 200 || res.status > 299) {
    throw new Error(`POST ${path}: ${res.status} ${res.body}`);
  }
  return res.json();
}

export function adminGet(path, admin) {
  const res = http.get(`${admin || ADMINS[0]}${path}`, adminParams());
  if (res.status !== 200) throw new Error(`GET ${path}: ${res.status} ${res.body}`);
  return res.json();
}

/** Sets fault knobs on every instance of `cell` (echo-cell POST /_fault). */
export function setFault(cell, fault) {
  for (const url of ECHO[cell] || []) {
    const res = http.post(`${url}/_fault`, JSON.stringify(fault), {
      headers: { 'Content-Type': 'application/json' },
      tags: { kind: 'fault' },
      timeout: '5s',
    });
    if (res.status !== 200) throw new Error(`fault ${cell} ${url}: ${res.status} ${res.body}`);
  }
}

/** Cell of each key, as the admin API's /admin/where says (hash rank or pin). */
export function placeKeys(count) {
  const cells = {};
  for (let i = 0; i < count; i++) {
    cells[userKey(i)] = adminGet(`/admin/where/${encodeURIComponent(userKey(i))}`).cell;
  }
  return cells;
}

const TREND_STATS = ['avg', 'min', 'med', 'p(95)', 'p(99)', 'max'];
export const summaryTrendStats = TREND_STATS;

function failedChecks(group) {
  if (!group) return [];
  const own = (group.checks || []).filter((c) => c.fails > 0);
  return own.concat(...(group.groups || []).map(failedChecks));
}

function ms(v) {
  return v === undefined ? '-' : `${v.toFixed(2)}ms`;
}

/**
 * One block of summary lines: rps, latency percentiles, error rate, then each threshold with
 * its result, plus any `extra` lines the scenario computed.
 */
export function summarize(name, data, extra) {
  const m = data.metrics;
  const lines = [];
  const reqs = m.http_reqs ? m.http_reqs.values : { count: 0, rate: 0 };
  const d = m.http_req_duration ? m.http_req_duration.values : {};
  const failed = m.http_req_failed ? m.http_req_failed.values : { rate: 0, passes: 0 };
  lines.push(`== ${name}: ${reqs.count} requests, ${reqs.rate.toFixed(1)} req/s`);
  lines.push(`   latency p50 ${ms(d.med)}  p95 ${ms(d['p(95)'])}  p99 ${ms(d['p(99)'])}  max ${ms(d.max)}`);
  lines.push(`   errors  ${(failed.rate * 100).toFixed(3)}% (${failed.passes} failed)`);
  for (const line of extra || []) lines.push(`   ${line}`);
  for (const c of failedChecks(data.root_group)) {
    lines.push(`   check failed ${c.fails}x (passed ${c.passes}x): ${c.name}`);
  }
  let allOk = true;
  for (const [metric, body] of Object.entries(m).sort()) {
    if (!body.thresholds) continue;
    const v = body.values;
    const shown = body.type === 'counter' ? `count=${v.count}`
      : body.type === 'rate' ? `rate=${(v.rate * 100).toFixed(3)}% (${v.passes}/${v.passes + v.fails})`
      : body.type === 'trend' ? `p99=${ms(v['p(99)'])} p95=${ms(v['p(95)'])}`
      : JSON.stringify(v);
    for (const [expr, res] of Object.entries(body.thresholds)) {
      allOk = allOk && res.ok;
      lines.push(`   ${res.ok ? 'PASS' : 'FAIL'} ${metric} ${expr}  [${shown}]`);
    }
  }
  lines.push(`   thresholds: ${allOk ? 'all passed' : 'SOME FAILED'}`);
  return lines.join('\n') + '\n';
}

/** handleSummary body shared by all scenarios. */
export function report(name, data, extra) {
  const out = { stdout: summarize(name, data, extra) };
  if (__ENV.SUMMARY_DIR) out[`${__ENV.SUMMARY_DIR}/${name}.json`] = JSON.stringify(data, null, 1);
  if (__ENV.SUMMARY_DIR) out[`${__ENV.SUMMARY_DIR}/${name}.txt`] = out.stdout;
  return out;
}
