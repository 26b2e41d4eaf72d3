// The engine's yield through the daemon: a premium call that arrives while a batch-only step
// is in flight stops that step (engine.yield_to_higher_lane), and so does a call of an idle
// tenant of the batch lane itself, the lane's most underserved (engine.yield_to_underserved);
// the daemon counts the stops on /admin/stats and /metrics, and every output is the same as
// without stopping. The test daemon makes batch-only steps slow (LLMUX_TEST_SLOW_LANES,
// tests/support/llmuxd_test_hooks.cpp) so that each call surely arrives during one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  KEYS, adminStats, daemonsStoppedAfterFile, defaultTenants, http, requireData, serverYaml, sha256,
  statsIdle, waitFor,
} from './harness.mjs';

const start = daemonsStoppedAfterFile();

const BYSTANDER_KEY = 'sk-test-bystander';
// A second tenant of the batch lane (idle until its calls).
const BYSTANDER = `  bystander:
    api_keys: [ { sha256: "${sha256(BYSTANDER_KEY)}" } ]
    lane: batch
    max_inflight_tokens: 100000
`;

// `engine`: llmux.yaml engine keys; `callerKey`: the key of the three sequential calls that
// arrive while the batch tenant's two calls decode.
async function run(engine, callerKey = KEYS.premium) {
  const d = await start({
    server: serverYaml({ engine }),
    tenants: defaultTenants(BYSTANDER),
    env: { LLMUX_TEST_SLOW_LANES: '1:100' },  // steps of lanes >= 1 only: 100 ms
    binary: 'llmuxd-test',
  });
  const body = (prompt, maxTokens) => ({
    model: 'stories', prompt, max_tokens: maxTokens, temperature: 0, ignore_eos: true, logprobs: 2,
  });
  const batch = ['Once upon a time', 'The little dog'].map((p) =>
    http(d, 'POST', '/v1/completions', { key: KEYS.batch, body: body(p, 24) }));
  await waitFor(async () => (await adminStats(d)).running === 2, 10000, 'both batch calls running');
  const premium = [];
  for (const p of ['One day', 'Lily and Tom went to the park', 'A big red ball']) {
    const r = await http(d, 'POST', '/v1/completions', { key: callerKey, body: body(p, 3) });
    assert.equal(r.status, 200, r.body);
    premium.push(r.json.choices[0]);
  }
  const batchOut = (await Promise.all(batch)).map((r) => {
    assert.equal(r.status, 200, r.body);
    return r.json.choices[0];
  });
  await waitFor(async () => statsIdle(await adminStats(d)), 10000, 'idle');
  const stats = await adminStats(d);
  const metrics = (await http(d, 'GET', '/metrics', { key: KEYS.admin })).body;
  const series = metrics.match(/^llmux_engine_steps_yielded_total\{model_name="stories",pool="shared"\} (\S+)$/m);
  assert.ok(series, 'llmux_engine_steps_yielded_total missing from /metrics');
  assert.equal(Number(series[1]), stats.pools.shared.steps_yielded);
  const underserved = metrics.match(
    /^llmux_engine_steps_yielded_underserved_total\{model_name="stories",pool="shared"\} (\S+)$/m);
  assert.ok(underserved, 'llmux_engine_steps_yielded_underserved_total missing from /metrics');
  assert.equal(Number(underserved[1]), stats.pools.shared.steps_yielded_underserved);
  assert.match(metrics, /^llmux_engine_yielded_seconds_total\{pool="shared"\} \S+$/m);
  return {
    yielded: stats.pools.shared.steps_yielded,
    underserved: stats.pools.shared.steps_yielded_underserved,
    premium,
    batchOut,
  };
}

test('a premium call stops the batch step in flight; outputs equal a daemon that never stops', { timeout: 120000 }, async (t) => {
  if (!requireData(t)) return;
  const on = await run('  yield_to_higher_lane: true\n  yield_to_underserved: false\n');
  const off = await run('  yield_to_higher_lane: false\n  yield_to_underserved: false\n');
  // One premium call can stop at most one step; each arrived during a slow batch-only step.
  assert.ok(on.yielded >= 1 && on.yielded <= 3, `steps yielded: ${on.yielded}`);
  assert.equal(on.underserved, 0, 'higher-lane stops counted as underserved ones');
  assert.equal(off.yielded, 0);
  assert.deepEqual(on.premium, off.premium);
  assert.deepEqual(on.batchOut, off.batchOut);
});

test('an idle tenant of the batch lane stops its own lane\'s step in flight; outputs equal a daemon that never stops', { timeout: 120000 }, async (t) => {
  if (!requireData(t)) return;
  const on = await run('  yield_to_higher_lane: false\n  yield_to_underserved: true\n', BYSTANDER_KEY);
  const off = await run('  yield_to_higher_lane: true\n  yield_to_underserved: false\n', BYSTANDER_KEY);
  // The first call surely stops a step (the bystander has never been served); a later one
  // only while its fair-share counter is still at most the batch tenant's. At most one each.
  assert.ok(on.yielded >= 1 && on.yielded <= 3, `steps yielded: ${on.yielded}`);
  assert.equal(on.underserved, on.yielded, 'every stop here is for the underserved bystander');
  assert.equal(off.yielded, 0, 'a higher-lane yield acted inside one lane');
  assert.deepEqual(on.premium, off.premium);
  assert.deepEqual(on.batchOut, off.batchOut);
});
