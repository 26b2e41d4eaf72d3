// The shared PostgreSQL usage ledger end to end: two llmuxd replicas write one ledger in a real
// throwaway PostgreSQL cluster; /v1/usage, /admin/usage and `llmux usage export` through either
// show the sum. PostgreSQL stopped: calls still complete (rows spooled locally), reads answer
// 503, the metrics say so; restarted: the spool is replayed, every call has exactly one row.
// kill -9 of a replica while PostgreSQL is down: its spool survives and is replayed by the
// replica restarted on it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  BUILD_DIR, KEYS, STORIES, http, serverYaml, sha256, startDaemon, waitFor,
} from './harness.mjs';
import { findPgBin, requirePostgres, startPostgres } from './postgres.mjs';

const KEY = 'sk-ledger-acme-4f2a';
const tenantsYaml = `lanes: [ { name: standard } ]
tenants:
  acme:
    api_keys: [ { sha256: "${sha256(KEY)}" } ]
    lane: standard
    prices: { input_per_mtok: 0.5, output_per_mtok: 1 }
`;

const ready = fs.existsSync(path.join(STORIES, 'config.json')) && findPgBin() !== null;
let pg;
let a;
let b;

before(async () => {
  if (!ready) return;
  pg = await startPostgres();
  const yaml = serverYaml({
    extra: `telemetry: { usage_db: "${pg.url}", usage_spool: spool.db }\n`,
  });
  a = await startDaemon({ tenants: tenantsYaml, server: yaml });
  b = await startDaemon({ tenants: tenantsYaml, server: yaml });
});
after(async () => {
  if (a) await a.stop();
  if (b) await b.stop();
  if (pg) pg.destroy();
});

function skip(t) {
  if (!fs.existsSync(path.join(STORIES, 'config.json'))) {
    if (process.env.CI === 'true') throw new Error(`test data missing under CI=true: ${STORIES}`);
    t.skip(`SKIPPED: test data missing: ${STORIES}`);
    return true;
  }
  return !requirePostgres(t);
}

const complete = (d, i) => http(d, 'POST', '/v1/completions', {
  key: KEY, body: { model: 'stories', prompt: `Once upon a time ${i}`, max_tokens: 3, temperature: 0 },
});

const ids = [];
let prompt = 0;

const usage = (d) => http(d, 'GET', '/v1/usage?start=2020-01-01&end=2100-01-01', { key: KEY });

async function metric(d, name) {
  const text = (await http(d, 'GET', '/metrics', { key: KEYS.admin })).body;
  const m = text.match(new RegExp(`^${name} (\\S+)$`, 'm'));
  return m ? Number(m[1]) : undefined;
}

test('two replicas, one ledger: /v1/usage through either shows the sum', async (t) => {
  if (skip(t)) return;
  for (let i = 0; i < 3; ++i) {
    const r = await complete(a, i);
    assert.equal(r.status, 200, r.body);
    ids.push(r.json.id);
    prompt += r.json.usage.prompt_tokens;
  }
  for (let i = 3; i < 5; ++i) {
    const r = await complete(b, i);
    assert.equal(r.status, 200, r.body);
    ids.push(r.json.id);
    prompt += r.json.usage.prompt_tokens;
  }
  for (const d of [a, b]) {
    const u = await usage(d);
    assert.equal(u.status, 200, u.body);
    assert.equal(u.json.tenant, 'acme');
    assert.equal(u.json.totals.requests, 5);
    assert.equal(u.json.totals.prompt_tokens, prompt);
    assert.equal(u.json.totals.completion_tokens, 15);
    const admin = await http(d, 'GET', '/admin/usage?start=2020-01-01', { key: KEYS.admin });
    assert.deepEqual(admin.json.tenants.map((x) => [x.tenant, x.totals.requests]), [['acme', 5]]);
  }
  assert.equal(await metric(a, 'llmux_ledger_store_up'), 1);
  assert.equal(await metric(a, 'llmux_ledger_spooled_rows'), 0);
  const out = execFileSync(path.join(BUILD_DIR, 'llmux'),
    ['usage', 'export', '--db', pg.url, '--format', 'json', '--tenant', 'acme']);
  assert.deepEqual(JSON.parse(out.toString()).map((r) => r.request_id).sort(), [...ids].sort());
});

test('PostgreSQL down: calls complete into the spool, reads say 503; back up: replayed once', async (t) => {
  if (skip(t)) return;
  pg.stop();
  const during = [];
  for (let i = 0; i < 4; ++i) {
    const r = await complete(i % 2 ? a : b, 100 + i);
    assert.equal(r.status, 200, r.body);
    during.push(r.json.id);
  }
  const down = await usage(a);
  assert.equal(down.status, 503, down.body);
  assert.equal(down.json.error.type, 'server_error');
  assert.match(down.json.error.message, /usage store \(PostgreSQL\)/);
  assert.equal(await metric(a, 'llmux_ledger_store_up'), 0);
  assert.equal(await metric(a, 'llmux_ledger_spooled_rows'), 2);
  assert.equal(await metric(b, 'llmux_ledger_spooled_rows'), 2);
  assert.match(a.logs(), /usage_store_down/);

  pg.start();
  for (const d of [a, b]) {
    await waitFor(async () => (await metric(d, 'llmux_ledger_spooled_rows')) === 0, 30000, 'spool replayed');
    assert.equal(await metric(d, 'llmux_ledger_store_up'), 1);
    assert.equal(await metric(d, 'llmux_ledger_replayed_rows_total'), 2);
  }
  const u = await usage(b);
  assert.equal(u.status, 200, u.body);
  assert.equal(u.json.totals.requests, 9);
  const rows = JSON.parse(execFileSync(path.join(BUILD_DIR, 'llmux'),
    ['usage', 'export', '--db', pg.url, '--format', 'json']).toString());
  const got = rows.map((r) => r.request_id).sort();
  assert.deepEqual(got, [...ids, ...during].sort());
  assert.equal(new Set(got).size, got.length);
  assert.equal((a.logs().match(/usage_store_down/g) ?? []).length, 1, 'one log line per transition');
});

test('kill -9 while PostgreSQL is down: the spool keeps every released call; a restart replays it', async (t) => {
  if (skip(t)) return;
  const spoolDir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmux-spool-'));
  t.after(() => fs.rmSync(spoolDir, { recursive: true, force: true }));
  const yaml = serverYaml({
    extra: `telemetry: { usage_db: "${pg.url}", usage_spool: "${path.join(spoolDir, 'spool.db')}" }\n`,
  });
  const k = await startDaemon({ tenants: tenantsYaml, server: yaml });
  pg.stop();
  const done = [];
  let stop = false;
  const worker = async (w) => {
    for (let i = 0; !stop; ++i) {
      try {
        const r = await complete(k, 1000 + w * 1000 + i);
        if (r.status === 200 && r.json?.id) done.push(r.json.id);
      } catch { /* the daemon died mid-request */ }
    }
  };
  const workers = Array.from({ length: 4 }, (_, w) => worker(w));
  await waitFor(() => done.length >= 20, 60000, '20 completed calls');
  k.proc.kill('SIGKILL');
  await k.exited;
  stop = true;
  await Promise.all(workers);
  fs.rmSync(k.dir, { recursive: true, force: true });

  pg.start();
  const k2 = await startDaemon({ tenants: tenantsYaml, server: yaml });
  t.after(() => k2.stop());
  await waitFor(async () => (await metric(k2, 'llmux_ledger_spooled_rows')) === 0, 30000, 'spool replayed');
  assert.ok(await metric(k2, 'llmux_ledger_replayed_rows_total') >= done.length);
  assert.match(k2.logs(), /usage_spool_pending/);
  const rows = JSON.parse(execFileSync(path.join(BUILD_DIR, 'llmux'),
    ['usage', 'export', '--db', pg.url, '--format', 'json']).toString());
  const got = new Set(rows.map((r) => r.request_id));
  assert.equal(got.size, rows.length, 'no duplicate rows');
  assert.deepEqual(done.filter((id) => !got.has(id)), []);
});
