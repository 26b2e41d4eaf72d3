// Capacity billing end to end: a tenant's reservation charged by the millisecond whether it
// sends calls or not, prorated across a hot reload, continued (not charged twice) across a
// restart on the same ledger, shown beside token charges in /v1/usage, /admin/usage and
// `llmux usage export`, and counted by the spend quota; the engine time of a call in its row
// and the tenants' engine seconds summing to the pool's busy time on /metrics.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BUILD_DIR, KEYS, http, requireData, serverYaml, sha256, startDaemon } from './harness.mjs';

const K = { held: 'sk-bill-held-3b7e', capped: 'sk-bill-capped-91c2' };

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
