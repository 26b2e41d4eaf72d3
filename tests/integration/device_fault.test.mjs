// Device faults end to end without a GPU (ctest label `fault`): the test daemon `llmuxd-test`
// wraps every pool's backend (tests/support/fault_injecting_backend.h) so that the first step
// sampling a request with a chosen `seed` fails the way the CUDA backend fails after a CUDA
// error — a step fault (that step's requests get 503, the pool stays healthy) or a sticky one
// (the backend is faulted for good: /health fails naming it, /admin/pools shows device_fault,
// every later request gets 503; a process pool's worker exits with status 3 and is restarted).
// LLMUX_TEST_DEVICE_FAULT=step:SEED[:AFTER] | sticky:SEED[:AFTER] (AFTER: the request's tokens
// so far when its step fails). stories260K-hf on the CPU backend, loopback.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  KEYS, STORIES, daemonsStoppedAfterFile, defaultTenants, http, readSse, requireData, serverYaml,
  standardTenant, waitFor,
} from './harness.mjs';

const start = daemonsStoppedAfterFile();

const ACME = 'sk-test-acme';
const TENANTS = defaultTenants(standardTenant('acme', ACME, `    pool: dedicated
    models: [ "stories-dedicated" ]
`));
// restart_backoff 300ms: the worker is back within a second of its exit.
const POOLS = `pools:
  dedicated:
    isolation: process
    health_timeout: 2s
    restart_backoff: 300ms
    max_down: 30s
    engine: { threads: 1, kv_cache_tokens: 8192, max_seqs: 8 }
    model: { path: "${STORIES}", name: stories-dedicated, max_model_len: 512 }
`;

const STEP_ERROR = 'MatMul: too many resources requested for launch (injected)';
const STICKY_ERROR = 'Attention: an illegal memory access was encountered (injected)';
const FAULTED = `cuda device faulted: ${STICKY_ERROR}`;

const complete = (d, key, body) => http(d, 'POST', '/v1/completions', { key, body });
const greedy = (seed, maxTokens = 8) =>
  ({ prompt: 'Once upon a time', max_tokens: maxTokens, temperature: 0, seed });
const pools = async (d) => {
  const r = await http(d, 'GET', '/admin/pools', { key: KEYS.admin });
  assert.equal(r.status, 200, r.body);
  return Object.fromEntries(r.json.data.map((p) => [p.name, p]));
};
const metricsText = async (d) => {
  const r = await http(d, 'GET', '/metrics', { key: KEYS.admin });
  assert.equal(r.status, 200, r.body);
  return r.body;
};
// The value of a pool-labelled series (llmux_pool_up, llmux_pool_worker_restarts_total).
function poolSeries(text, name, pool) {
  const m = text.match(new RegExp(`^${name}\\{[^}]*pool="${pool}"[^}]*\\} (\\S+)$`, 'm'));
  assert.ok(m, `${name} for pool ${pool} on /metrics`);
  return Number(m[1]);
}

// A streaming completion; `onChunk` runs after each chunk of the body.
async function stream(d, key, body, onChunk) {
  const res = await fetch(`${d.url}/v1/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ ...body, stream: true }),
  });
  const out = { status: res.status, text: '', error: null, done: false };
  await readSse(res, (j) => {
    if (j === null) out.done = true;
    else if (j.error) out.error = j.error;
    else for (const c of j.choices) out.text += c.text;
  }, onChunk);
  return out;
}

// The engine names the step whose sync point failed: "sampling step N: " + the backend's
// status (the step that faulted), "forward step N: " (a later step that a faulted backend
// refused at BeginBatch).
const stepError = (message) =>
  new RegExp(`^(sampling|forward) step \\d+: ${message.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`);

function assertUnavailable(r, message) {
  assert.equal(r.status, 503, r.body);
  assert.equal(r.json.error.type, 'server_error', r.body);
  assert.match(r.json.error.message, stepError(message));
  assert.equal(r.headers.get('retry-after'), '1');
}

test('a step fault fails the requests of that step with 503; the pool stays healthy', async (t) => {
  if (!requireData(t)) return;
  // The step that samples the 201st token of the request with seed 7001 fails.
  const d = await start({ env: { LLMUX_TEST_DEVICE_FAULT: 'step:7001:200' },
                          binary: 'llmuxd-test' });
  const reference = await complete(d, KEYS.premium, greedy(1));
  assert.equal(reference.status, 200, reference.body);

  // Two requests sent together: a stream of 480 tokens and the faulting request. The stream
  // is decoding (so in every step) when the other reaches its 201st token, 280 steps before
  // the stream's end: that step holds both, and both fail.
  const inflight = stream(d, KEYS.batch, { ...greedy(2, 480), ignore_eos: true });
  const faulting = complete(d, KEYS.premium, { ...greedy(7001, 300), ignore_eos: true });
  const s = await inflight;
  const f = await faulting;
  assertUnavailable(f, `cuda step failed: ${STEP_ERROR}`);
  assert.equal(s.status, 200);
  assert.ok(s.error, 'the in-flight stream got no error');
  assert.equal(s.error.type, 'server_error');
  assert.equal(s.error.message, f.json.error.message);  // the same failed step
  assert.equal(s.done, false);

  // The device is fine: the next requests succeed with the same tokens as before.
  const later = await complete(d, KEYS.premium, greedy(1));
  assert.equal(later.status, 200, later.body);
  assert.equal(later.json.choices[0].text, reference.json.choices[0].text);
  const health = await http(d, 'GET', '/health');
  assert.equal(health.status, 200, health.body);
  assert.equal((await pools(d)).shared.device_fault, '');
});

test('a sticky fault marks the thread pool unhealthy: /health, /admin/pools, 503 after', async (t) => {
  if (!requireData(t)) return;
  const d = await start({ env: { LLMUX_TEST_DEVICE_FAULT: 'sticky:7002' },
                          binary: 'llmuxd-test' });
  assert.equal((await complete(d, KEYS.premium, greedy(1))).status, 200);
  assert.equal((await http(d, 'GET', '/health')).status, 200);

  assertUnavailable(await complete(d, KEYS.premium, greedy(7002)), FAULTED);
  const health = await waitFor(async () => {
    const h = await http(d, 'GET', '/health');
    return h.status === 503 ? h : null;
  }, 5000, '/health 503 after the sticky fault');
  assert.equal(health.json.status, 'unhealthy');
  assert.equal(health.json.problem, `pool shared device fault: ${FAULTED}`);
  assert.equal(health.json.pools.shared.problem, `device fault: ${FAULTED}`);
  assert.equal((await http(d, 'GET', '/ready')).status, 503);
  assert.equal((await pools(d)).shared.device_fault, FAULTED);
  assert.equal(poolSeries(await metricsText(d), 'llmux_pool_up', 'shared'), 0);

  // Every later request, of any tenant and seed, gets the same clear 503.
  assertUnavailable(await complete(d, KEYS.premium, greedy(1)), FAULTED);
  assertUnavailable(await complete(d, KEYS.batch, greedy(3)), FAULTED);
  assert.equal((await http(d, 'GET', '/health')).status, 503);
});

test('a sticky fault in a process pool: the worker exits with status 3 and is restarted', async (t) => {
  if (!requireData(t)) return;
  const d = await start({ tenants: TENANTS, server: serverYaml({ pools: POOLS }),
                          env: { LLMUX_TEST_DEVICE_FAULT: 'sticky:7003' }, binary: 'llmuxd-test' });
  const before = await pools(d);
  assert.equal(before.dedicated.state, 'ready');
  assert.equal(before.dedicated.restarts, 0);
  const oldPid = before.dedicated.pid;
  const reference = await complete(d, ACME, greedy(1));
  assert.equal(reference.status, 200, reference.body);

  assertUnavailable(await complete(d, ACME, greedy(7003)), FAULTED);
  // The worker's next pong reports the fault, and it exits; the supervisor restarts it.
  // NOTE: `restarts` counts a new worker only once it is spawned; until it is ready the pool
  // reads 'restarting'.
  const back = await waitFor(async () => {
    const p = (await pools(d)).dedicated;
    return p.state === 'ready' && p.restarts >= 1 ? p : null;
  }, 30000, 'worker restarted');
  assert.equal(back.restarts, 1);
  assert.ok(back.pid > 0 && back.pid !== oldPid, `pid ${back.pid} (was ${oldPid})`);
  assert.equal(back.worker_deaths, 1);
  assert.equal(back.last_error, `device fault: ${FAULTED} (worker exited with status 3)`);
  assert.equal(back.device_fault, '');
  assert.match(d.logs(), /pool_worker_device_fault/);

  // The new worker has a fresh device: the pool serves again, the same tokens as before.
  const again = await complete(d, ACME, greedy(1));
  assert.equal(again.status, 200, again.body);
  assert.equal(again.json.choices[0].text, reference.json.choices[0].text);
  assert.equal(Number(again.headers.get('x-llmux-pid')), back.pid);
  const health = await http(d, 'GET', '/health');
  assert.equal(health.status, 200, health.body);
  const metrics = await metricsText(d);
  assert.equal(poolSeries(metrics, 'llmux_pool_worker_restarts_total', 'dedicated'), 1);
  assert.equal(poolSeries(metrics, 'llmux_pool_worker_restarts_total', 'shared'), 0);
  assert.equal(poolSeries(metrics, 'llmux_pool_up', 'dedicated'), 1);
  // The shared thread pool never faulted.
  assert.equal((await pools(d)).shared.device_fault, '');
  assert.equal((await complete(d, KEYS.premium, greedy(1))).status, 200);
});

test('the production llmuxd ignores LLMUX_TEST_DEVICE_FAULT', async (t) => {
  if (!requireData(t)) return;
  const d = await start({ env: { LLMUX_TEST_DEVICE_FAULT: 'sticky:7004' } });
  const r = await complete(d, KEYS.premium, greedy(7004));
  assert.equal(r.status, 200, r.body);
  assert.equal((await http(d, 'GET', '/health')).status, 200);
  assert.equal((await pools(d)).shared.device_fault, '');
});

test('llmuxd-test refuses a malformed LLMUX_TEST_DEVICE_FAULT', async (t) => {
  if (!requireData(t)) return;
  await assert.rejects(
    start({ env: { LLMUX_TEST_DEVICE_FAULT: 'sticky:x' }, binary: 'llmuxd-test' }),
    /llmuxd exited 2:[\s\S]*expected step:SEED\[:AFTER\] or sticky:SEED\[:AFTER\]/);
});
