// smoke.js — every route answers, every cell is reached, all 2xx, X-Cell present.
//
// Two scenarios:
//  - `routes` (1 VU, once): through each gateway, the data plane with each method, each
//    routing-key source (header, cookie, query), the documented 400s, and the admin API
//    (/healthz, /readyz, /metrics, /admin/cells with and without the token, /admin/where,
//    /admin/ratelimit). Answers must match the echo: same cell in X-Cell and body, same user,
//    same method and path.
//  - `spread` (KEYS keys): each key through both gateways; both must place it in the same cell
//    (they share the directory), and every one of the three cells must be reached.
//
//   load-tests/run.sh smoke             (KEYS=300 by default)
import http from 'k6/http';
import exec from 'k6/execution';
import { check, fail } from 'k6';
import { Counter } from 'k6/metrics';
import {
  ADMINS, CELLS, GATEWAYS, TOKEN, adminParams, envNumber, report, summaryTrendStats, userKey,
} from './lib.js';

const KEYS = envNumber('KEYS', 300);
const cellHits = new Counter('cell_hits');

const thresholds = {
  checks: ['rate==1'],
  http_req_failed: ['rate==0'],
  // Declared expected statuses (400s, 401) are not failures; anything else non-2xx is.
};
for (const cell of CELLS) thresholds[`cell_hits{cell:${cell}}`] = ['count>0'];

export const options = {
  scenarios: {
    routes: { executor: 'per-vu-iterations', vus: 1, iterations: 1, exec: 'routes' },
    spread: {
      executor: 'shared-iterations', vus: 10, iterations: KEYS, exec: 'spread', maxDuration: '60s',
    },
  },
  thresholds,
  summaryTrendStats,
};

const expect400 = { responseCallback: http.expectedStatuses(400) };
const expect401 = { responseCallback: http.expectedStatuses(401) };

function echoed(res, { user, method, path }) {
  const xcell = res.headers['X-Cell'];
  let body = {};
  try { body = res.json(); } catch (_) { /* checked below */ }
  const ok = check(res, {
    [`${method} ${path}: 2xx`]: (r) => r.status >= 200 && r.status < 300,
    [`${method} ${path}: X-Cell is a known cell`]: () => CELLS.includes(xcell),
    [`${method} ${path}: X-Request-Id present`]: (r) => !!r.headers['X-Request-Id'],
    [`${method} ${path}: RateLimit header present`]: (r) => !!r.headers['Ratelimit'],
    [`${method} ${path}: body cell == X-Cell`]: () => method === 'HEAD' || body.cell === xcell,
    // The echo reports the x-user-id header as `user`; other key sources are checked by cell.
    [`${method} ${path}: body user`]: () => method === 'HEAD' || user === null || body.user === user,
    [`${method} ${path}: body method`]: () => method === 'HEAD' || body.method === method,
    [`${method} ${path}: body path`]: () => method === 'HEAD' || body.path === path,
  });
  if (CELLS.includes(xcell)) cellHits.add(1, { cell: xcell });
  return ok;
}

function gatewayError(res, code) {
  let body = {};
  try { body = res.json(); } catch (_) { /* checked below */ }
  check(res, {
    [`${code}: 400`]: (r) => r.status === 400,
    [`${code}: JSON error code`]: () => body.error === code,
    [`${code}: request_id`]: () => typeof body.request_id === 'string' && body.request_id.length > 0,
  });
}

export function routes() {
  GATEWAYS.forEach((gw, g) => {
    const user = `smoke-user-${g}`;
    const hdr = { 'x-user-id': user, 'Content-Type': 'application/json' };
    const payload = JSON.stringify({ hello: 'cellgate', n: g });
    for (const [method, path, body] of [
      ['GET', '/hello', null],
      ['GET', '/api/v1/items/42', null],
      ['POST', '/api/v1/items', payload],
      ['PUT', '/api/v1/items/42', payload],
      ['PATCH', '/api/v1/items/42', payload],
      ['DELETE', '/api/v1/items/42', null],
      ['OPTIONS', '/api/v1/items', null],
      ['HEAD', '/hello', null],
    ]) {
      echoed(http.request(method, `${gw}${path}`, body, { headers: hdr }), { user, method, path });
    }
    // Routing key from the cookie and from the query string ([routing].key order): the same
    // key must land in the same cell as through the header.
    const home = http.get(`${gw}/from-header`, { headers: hdr }).headers['X-Cell'];
    const byCookie = http.get(`${gw}/from-cookie`, { cookies: { uid: user } });
    echoed(byCookie, { user: null, method: 'GET', path: '/from-cookie' });
    const byQuery = http.get(`${gw}/from-query?user=${user}`);
    echoed(byQuery, { user: null, method: 'GET', path: '/from-query' });
    check(null, {
      'cookie key routes like the header key': () => byCookie.headers['X-Cell'] === home,
      'query key routes like the header key': () => byQuery.headers['X-Cell'] === home,
    });

    gatewayError(http.get(`${gw}/no-key`, expect400), 'missing_routing_key');
    gatewayError(http.get(`${gw}/long-key`, Object.assign({ headers: { 'x-user-id': 'k'.repeat(300) } }, expect400)),
      'invalid_routing_key');
  });

  ADMINS.forEach((admin) => {
    check(http.get(`${admin}/healthz`), { 'admin /healthz 200': (r) => r.status === 200 });
    check(http.get(`${admin}/readyz`), { 'admin /readyz 200': (r) => r.status === 200 });
    check(http.get(`${admin}/metrics`), {
      'admin /metrics 200': (r) => r.status === 200,
      'admin /metrics has cellgate_requests_total': (r) => r.body.includes('cellgate_requests_total'),
    });
    check(http.get(`${admin}/admin/cells`, expect401), { 'admin /admin/cells without token 401': (r) => r.status === 401 });
    const cells = http.get(`${admin}/admin/cells`, adminParams());
    check(cells, {
      'admin /admin/cells 200': (r) => r.status === 200,
      'admin /admin/cells lists 3 cells': (r) => r.status === 200 && r.json('cells').length === 3,
      'admin /admin/cells all active': (r) => r.status === 200 && r.json('cells').every((c) => c.state === 'active'),
    });
    check(http.get(`${admin}/admin/where/alice`, adminParams()), {
      'admin /admin/where/alice names a cell': (r) => r.status === 200 && CELLS.includes(r.json('cell')),
    });
    check(http.get(`${admin}/admin/ratelimit`, adminParams()), { 'admin /admin/ratelimit 200': (r) => r.status === 200 });
  });
  if (!TOKEN) fail('ADMIN_TOKEN is empty');
}

export function spread() {
  const i = exec.scenario.iterationInTest;
  const user = userKey(i);
  const cells = GATEWAYS.map((gw) => {
    const res = http.get(`${gw}/spread/${i}`, { headers: { 'x-user-id': user }, tags: { name: 'spread' } });
    echoed(res, { user, method: 'GET', path: `/spread/${i}` });
    return res.headers['X-Cell'];
  });
  check(cells, { 'both gateways place a key in the same cell': (c) => c.every((x) => x === c[0]) });
}

export function handleSummary(data) {
  const extra = CELLS.map((cell) => {
    const m = data.metrics[`cell_hits{cell:${cell}}`];
    return `${cell}: ${m ? m.values.count : 0} answers`;
  });
  return report('smoke', data, extra);
}
