// Capacity billing end to end: a tenant's reservation charged by the millisecond whether it
// sends calls or not, prorated across a hot reload, continued (not charged twice) across a
// restart on the same ledger, shown beside token charges in /v1/usage, /admin/usage and
// `llmux usage export`, and counted by the spend quota; the engine time of a call in its row
// and the tenants' engine seconds summing to the pool's busy time on /metrics, for a thread
// pool and for a process pool (whose steps run in its worker).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  BUILD_DIR, KEYS, STORIES, http, requireData, serverYaml, sha256, startDaemon, waitFor,
} from './harness.mjs';

const K = { held: 'sk-bill-held-3b7e', capped: 'sk-bill-capped-91c2', ded: 'sk-bill-ded-5d0a', own: 'sk-bill-own-77f1' };

// reserved_seq_per_hour 3.6 = 3600000000 nano-units an hour = exactly 1000 a millisecond per seq.
const tenants = (seqs) => `lanes: [ { name: standard } ]
tenants:
  held:
    api_keys: [ { sha256: "${sha256(K.held)}" } ]
    reserved: { kv_tokens: 64, seqs: ${seqs} }
    prices: { input_per_mtok: 0.20, output_per_mtok: 0.60 }
    capacity_prices: { reserved_seq_per_hour: 3.6 }
  capped:
    api_keys: [ { sha256: "${sha256(K.capped)}" } ]
    reserved: { seqs: 1 }
    capacity_prices: { reserved_seq_per_hour: 3.6 }
    quota: { spend_per_month: 0.000001 }
`;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function capacityRows(d, tenant) {
  const r = await http(d, 'GET', `/admin/usage?start=2020-01-01&tenant=${tenant}&rows=capacity&format=json`,
    { key: KEYS.admin });
  assert.equal(r.status, 200, r.body);
  return r.json;
}
const sum = (rows, key) => rows.reduce((a, r) => a + r[key], 0);

test('a reservation is billed per millisecond held, prorated across a reload and a restart', async (t) => {
  if (!requireData(t)) return;
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'llmux-billing-'));
  const db = path.join(home, 'usage.db');
  const server = serverYaml({ extra: `telemetry: { usage_db: "${db}" }\n` });
  t.after(() => fs.rmSync(home, { recursive: true, force: true }));

  const before1 = Date.now();
  let d = await startDaemon({ tenants: tenants(1), server });
  const started1 = Date.now();
  const call = await http(d, 'POST', '/v1/completions', {
    key: K.held, body: { model: 'stories', prompt: 'Once upon a time', max_tokens: 5, temperature: 0 },
  });
  assert.equal(call.status, 200, call.body);
  await sleep(400);

  // /v1/usage: token and capacity charges separately and summed; capacity up to the read.
  const mine = await http(d, 'GET', '/v1/usage?start=2020-01-01', { key: K.held });
  assert.equal(mine.status, 200, mine.body);
  const tot = mine.json.totals;
  const tokenCost = Math.floor((call.json.usage.prompt_tokens * 200000000 +
    call.json.usage.completion_tokens * 600000000 + 500000) / 1000000);
  assert.equal(tot.cost_nano, tokenCost);
  assert.equal(tot.total_cost_nano, tot.cost_nano + tot.capacity_cost_nano);
  assert.equal(tot.capacity_cost, (tot.capacity_cost_nano / 1e9).toFixed(9));
  let rows = await capacityRows(d, 'held');
  let held = sum(rows, 'held_ms');
  // Held from before the listener was up until the read: at least the 400 ms slept, at most
  // the time since the process was spawned. One seq: exactly 1000 nano-units a millisecond.
  assert.ok(held >= Date.now() - started1 - 1000 && held <= Date.now() - before1, `held ${held}`);
  assert.equal(sum(rows, 'cost_nano'), held * 1000);
  assert.ok(tot.capacity_cost_nano >= 400 * 1000 && tot.capacity_cost_nano <= sum(rows, 'cost_nano'));
  assert.deepEqual(Object.keys(rows[0]),
    ['tenant', 'hour_start', 'pool', 'reserved_kv_tokens', 'reserved_seqs', 'dedicated', 'held_ms', 'cost_nano']);
  assert.equal(rows[0].hour_start.slice(13), ':00:00.000Z');
  assert.equal(rows.at(-1).reserved_seqs, 1);

  // Reload to 2 seqs: from then on 2000 a millisecond.
  fs.writeFileSync(path.join(d.dir, 'tenants.yaml'), tenants(2));
  const reload = await http(d, 'POST', '/admin/reload', { key: KEYS.admin });
  assert.equal(reload.status, 200, reload.body);
  const reloaded = Date.now();
  await sleep(500);
  rows = await capacityRows(d, 'held');
  const held2 = sum(rows, 'held_ms');
  const extra = sum(rows, 'cost_nano') - held2 * 1000;  // the second seq's share, since the reload
  assert.ok(extra >= 500 * 1000 && extra <= (Date.now() - reloaded + 1000) * 1000, `extra ${extra}`);
  assert.equal(rows.at(-1).reserved_seqs, 2);
  assert.equal((await http(d, 'GET', '/admin/usage?rows=tokens&format=json', { key: KEYS.admin })).status, 400);

  // The spend quota counts capacity: 1000 nano-units a month are gone after one millisecond
  // held, with no call at all.
  assert.equal((await http(d, 'GET', '/v1/usage', { key: K.capped })).status, 200);
  const refused = await http(d, 'POST', '/v1/completions', {
    key: K.capped, body: { model: 'stories', prompt: 'Hi', max_tokens: 1 },
  });
  assert.equal(refused.status, 429, refused.body);
  assert.equal(refused.json.error.code, 'quota_exceeded');

  // Engine time: a 200-token call records its attributed engine time (all of its steps), and
  // on /metrics the tenants' shares add up to the pool's busy time.
  const long = await http(d, 'POST', '/v1/completions', {
    key: K.held, body: { model: 'stories', prompt: 'Once upon a time', max_tokens: 200, temperature: 0, ignore_eos: true },
  });
  assert.equal(long.status, 200, long.body);
  const calls = await http(d, 'GET', '/admin/usage?start=2020-01-01&tenant=held&format=json', { key: KEYS.admin });
  const row = calls.json.find((r) => r.request_id === long.json.id);
  assert.ok(row.engine_ms >= 1 && row.engine_ms <= row.duration_ms, JSON.stringify(row));
  const metrics = (await http(d, 'GET', '/metrics', { key: KEYS.admin })).body;
  const value = (re) => [...metrics.matchAll(re)].reduce((a, m) => a + Number(m[1]), 0);
  const busy = value(/^llmux_pool_busy_seconds_total\{pool="shared"\} (\S+)$/gm);
  const tenantsBusy = value(/^llmux_tenant_engine_seconds_total\{[^}]*pool="shared"[^}]*\} (\S+)$/gm);
  assert.ok(busy > 0 && Math.abs(tenantsBusy - busy) <= 0.01 * busy, `${tenantsBusy} vs ${busy}`);
  assert.ok(value(/^llmux_tenant_engine_seconds_total\{[^}]*tenant="held"[^}]*\} (\S+)$/gm) >= row.engine_ms / 1000 - 0.001);

  await d.stop();  // the drain writes the capacity held until the exit
  const stopped1 = Date.now();
  const exportSummary = () => JSON.parse(execFileSync(path.join(BUILD_DIR, 'llmux'),
    ['usage', 'export', '--db', db, '--format', 'json', '--rows', 'summary', '--tenant', 'held']).toString());
  const afterStop = exportSummary()[0];
  assert.equal(afterStop.token_cost_nano, tokenCost + Math.floor((long.json.usage.prompt_tokens * 200000000 +
    long.json.usage.completion_tokens * 600000000 + 500000) / 1000000));
  assert.equal(afterStop.total_cost_nano, afterStop.token_cost_nano + afterStop.capacity_cost_nano);
  const exported = JSON.parse(execFileSync(path.join(BUILD_DIR, 'llmux'),
    ['usage', 'export', '--db', db, '--format', 'json', '--rows', 'capacity', '--tenant', 'held']).toString());
  const heldAtStop = sum(exported, 'held_ms');
  assert.ok(heldAtStop >= held2 && heldAtStop <= stopped1 - before1, `held ${heldAtStop}`);

  // A restart on the same ledger: charging resumes from the new start; the time it was down
  // is not billed and nothing already billed is billed again.
  await sleep(300);
  const before2 = Date.now();
  d = await startDaemon({ tenants: tenants(2), server });
  await sleep(300);
  rows = await capacityRows(d, 'held');
  const held3 = sum(rows, 'held_ms');
  const after2 = Date.now();
  assert.ok(held3 >= heldAtStop + 300 && held3 <= heldAtStop + (after2 - before2), `held ${held3}`);
  assert.equal(sum(rows, 'cost_nano') - exported.reduce((a, r) => a + r.cost_nano, 0),
    (held3 - heldAtStop) * 2000);
  await d.stop();
});

// A process pool's steps run in its worker: its busy time, its tenants' engine seconds and its
// cost model's constants reach the daemon's /metrics and /admin/stats through the health pings.
test('a process pool reports its busy time and its tenants\' engine seconds on the daemon\'s /metrics', async (t) => {
  if (!requireData(t)) return;
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'llmux-billing-pool-'));
  t.after(() => fs.rmSync(home, { recursive: true, force: true }));
  const db = path.join(home, 'usage.db');
  const tenantsYaml = `lanes: [ { name: standard } ]
tenants:
  ded:
    api_keys: [ { sha256: "${sha256(K.ded)}" } ]
    pool: dedicated
    models: [ "stories-dedicated" ]
    capacity_prices: { dedicated_pool_per_hour: 1.20 }
  own:
    api_keys: [ { sha256: "${sha256(K.own)}" } ]
    pool: dedicated
    models: [ "stories-dedicated" ]
  held:
    api_keys: [ { sha256: "${sha256(K.held)}" } ]
`;
  const pools = `pools:
  dedicated:
    isolation: process
    health_timeout: 1s
    engine: { threads: 1, kv_cache_tokens: 8192, max_seqs: 8 }
    model: { path: "${STORIES}", name: stories-dedicated, max_model_len: 512 }
`;
  const d = await startDaemon({
    tenants: tenantsYaml, server: serverYaml({ extra: `telemetry: { usage_db: "${db}" }\n`, pools }),
  });
  t.after(() => d.stop());
  const scrape = async () => (await http(d, 'GET', '/metrics', { key: KEYS.admin })).body;
  const value = (body, re) => [...body.matchAll(re)].reduce((a, m) => a + Number(m[1]), 0);
  const busyOf = (body, pool) => value(body, new RegExp(`^llmux_pool_busy_seconds_total\\{pool="${pool}"\\} (\\S+)$`, 'gm'));
  const tenantOf = (body, tenant, pool) => value(body,
    new RegExp(`^llmux_tenant_engine_seconds_total\\{pool="${pool}",tenant="${tenant}"\\} (\\S+)$`, 'gm'));

  // Every tenant's series exists (at 0) under its own pool from the first scrape.
  const first = await scrape();
  assert.match(first, /^llmux_tenant_engine_seconds_total\{pool="dedicated",tenant="ded"\} 0$/m);
  assert.match(first, /^llmux_tenant_engine_seconds_total\{pool="shared",tenant="held"\} 0$/m);
  assert.doesNotMatch(first, /^llmux_tenant_engine_seconds_total\{pool="shared",tenant="ded"\}/m);
  const sharedBusy0 = busyOf(first, 'shared');

  // Two tenants of the dedicated pool at once: a long prompt and a short one.
  const [a, b] = await Promise.all([
    http(d, 'POST', '/v1/completions', { key: K.ded, body: {
      model: 'stories-dedicated', prompt: 'Once upon a time there was a little girl who liked to play in the park with her dog and her friends', max_tokens: 40, temperature: 0, ignore_eos: true } }),
    http(d, 'POST', '/v1/completions', { key: K.own, body: {
      model: 'stories-dedicated', prompt: 'Hi', max_tokens: 40, temperature: 0, ignore_eos: true } }),
  ]);
  assert.equal(a.status, 200, a.body);
  assert.equal(b.status, 200, b.body);
  assert.equal(a.headers.get('x-llmux-pool'), 'dedicated');

  // The ledger rows carry the calls' engine time, from the worker's final events.
  const rows = (await http(d, 'GET', '/admin/usage?start=2020-01-01&format=json', { key: KEYS.admin })).json;
  const rowA = rows.find((r) => r.request_id === a.json.id);
  const rowB = rows.find((r) => r.request_id === b.json.id);
  assert.equal(rowA.pool, 'dedicated');
  assert.ok(rowA.engine_ms >= 1 && rowA.engine_ms <= rowA.duration_ms, JSON.stringify(rowA));
  assert.ok(rowB.engine_ms >= 0 && rowB.engine_ms <= rowB.duration_ms, JSON.stringify(rowB));

  // /metrics: the pool's busy time and both tenants' shares, from the worker's pings.
  const body = await waitFor(async () => {
    const m = await scrape();
    const ms = (tenantOf(m, 'ded', 'dedicated') + tenantOf(m, 'own', 'dedicated')) * 1000;
    // NOTE: busy > 0 too: calls of ~1 ms each make the sum condition true before the worker's
    // first ping has reported anything.
    return busyOf(m, 'dedicated') > 0 && ms >= rowA.engine_ms + rowB.engine_ms - 2 ? m : null;
  }, 5000, 'the worker\'s engine seconds on /metrics');
  const busy = busyOf(body, 'dedicated');
  const ded = tenantOf(body, 'ded', 'dedicated');
  const own = tenantOf(body, 'own', 'dedicated');
  assert.ok(busy > 0, body);
  assert.ok(Math.abs(ded + own - busy) <= 0.01 * busy, `${ded} + ${own} vs ${busy}`);
  assert.ok(ded * 1000 >= rowA.engine_ms - 1 && own * 1000 >= rowB.engine_ms - 1, `${ded} ${own}`);
  // Nothing of it was counted in the shared pool.
  assert.equal(busyOf(body, 'shared'), sharedBusy0);
  assert.equal(tenantOf(body, 'held', 'shared'), 0);

  // The pool's fitted cost constants, from its worker, on /admin/stats.
  const stats = (await http(d, 'GET', '/admin/stats', { key: KEYS.admin })).json;
  const ps = stats.pools.dedicated;
  assert.ok(ps.cost_fit_steps > 0 && ps.cost_fit_steps <= ps.steps, JSON.stringify(ps));
  // /metrics sums the increments of the worker's figure, so it may round a hair above it.
  assert.ok(ps.busy_seconds > 0 && ps.busy_seconds >= busy * (1 - 1e-9), `${JSON.stringify(ps)} vs ${busy}`);
  assert.ok(ps.cost_prefill_token_us + ps.cost_decode_token_us > 0, JSON.stringify(ps));
  assert.equal(stats.pools.shared.cost_fit_steps, stats.pools.shared.steps);

  // Its step histograms too (the worker's bucket counts), the shared pool's untouched.
  const after = await scrape();
  const one = (re) => value(after, re);
  const steps = one(/^llmux_engine_step_seconds_count\{pool="dedicated"\} (\S+)$/gm);
  assert.equal(steps, ps.steps, after);
  assert.ok(ps.steps >= 40, JSON.stringify(ps));
  const seqSteps = one(/^llmux_engine_batch_size_sum\{pool="dedicated"\} (\S+)$/gm);
  assert.ok(seqSteps >= steps && seqSteps <= 2 * steps, `${seqSteps} sequence-steps in ${steps} steps`);
  assert.equal(one(/^llmux_engine_batch_tokens_count\{pool="dedicated"\} (\S+)$/gm), steps);
  assert.match(after, /^llmux_engine_step_seconds_count\{pool="shared"\} 0$/m);
});
