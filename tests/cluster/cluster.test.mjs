// Cluster mode end to end: redis-server, three llmuxd replicas sharing tenant state in it, and
// HAProxy in front, driven through the official openai client. Tenants' fleet-wide contracts:
// exact request rates, quotas never exceeded beyond what was admitted, in-flight budgets across
// replicas, a SIGKILLed replica's leases coming back, and a Redis outage (5 s here: the
// behaviour is the same at 20 s, and the suite must stay short on a 2-core machine).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from '../integration/node_modules/openai/index.mjs';
import { KEYS, adminStats, http, requireData, sha256, waitFor } from '../integration/harness.mjs';
import {
  SUM_FIELDS, SUM_HELD, requireRuntime, startHaproxy, startRedis, startReplica, todayUtc,
} from './cluster_harness.mjs';

const K = {
  rpm: 'sk-cluster-rpm',
  quota: 'sk-cluster-quota',
  budget: 'sk-cluster-budget',
  lease: 'sk-cluster-lease',
  share: 'sk-cluster-share',
  load: 'sk-cluster-load',
};

const TENANTS = `lanes: [ { name: standard } ]
tenants:
  rpm:
    api_keys: [ { sha256: "${sha256(K.rpm)}" } ]
    lane: standard
    rate_limit: { requests_per_minute: 2 }
  quota:
    api_keys: [ { sha256: "${sha256(K.quota)}" } ]
    lane: standard
    quota: { tokens_per_day: 300 }
  budget:
    api_keys: [ { sha256: "${sha256(K.budget)}" } ]
    lane: standard
    max_inflight_tokens: 700
  lease:
    api_keys: [ { sha256: "${sha256(K.lease)}" } ]
    lane: standard
    max_inflight_tokens: 3500
  share:
    api_keys: [ { sha256: "${sha256(K.share)}" } ]
    lane: standard
    rate_limit: { requests_per_minute: 6 }
  load:
    api_keys: [ { sha256: "${sha256(K.load)}" } ]
    lane: standard
`;

let redis;
let replicas = [];
let lb;
let ready = false;

const client = (key, baseURL = lb.url) => new OpenAI({ apiKey: key, baseURL: `${baseURL}/v1`, maxRetries: 0, timeout: 60000 });

// One completion; { ok, status, code, usage, error }.
async function complete(key, { baseURL, maxTokens = 8, n = 1, prompt = 'Once upon a time' } = {}) {
  try {
    const r = await client(key, baseURL).completions.create({
      model: 'stories', prompt, max_tokens: maxTokens, n, temperature: 0, ignore_eos: true,
    });
    return { ok: true, status: 200, usage: r.usage };
  } catch (e) {
    return { ok: false, status: e.status, code: e.code ?? e.error?.code, error: e.message, headers: e.headers };
  }
}

async function redisInt(script, key) {
  return Number(await redis.cmd('EVAL', script, '1', key));
}

before(async (t) => {
  if (!requireData(t) || !requireRuntime(t)) return;
  redis = await startRedis();
  replicas = await Promise.all(['r1', 'r2', 'r3'].map((id) => startReplica(redis, id, TENANTS)));
  lb = await startHaproxy(replicas);
  // Every replica sees the three heartbeats.
  await waitFor(async () => Number(await redis.cmd('ZCARD', 't:replicas')) === 3, 10000, 'three replicas');
  ready = true;
});

after(async () => {
  await lb?.stop();
  await Promise.all(replicas.map((d) => d.stop()));
  await redis?.cleanup();
});

test('a 2 rpm tenant gets exactly 2 requests per window across three replicas', async (t) => {
  if (!ready) return t.skip('fleet not started');
  const results = [];
  for (let i = 0; i < 6; i++) results.push(await complete(K.rpm));
  assert.equal(results.filter((r) => r.ok).length, 2, JSON.stringify(results));
  for (const r of results.filter((x) => !x.ok)) {
    assert.equal(r.status, 429);
    assert.equal(r.code, 'rate_limit_exceeded');
    const retry = Number(r.headers.get('retry-after'));
    assert.ok(retry >= 1 && retry <= 30, `Retry-After ${retry}`);
  }
});

test('a tokens_per_day quota is never exceeded beyond what was admitted', async (t) => {
  if (!ready) return t.skip('fleet not started');
  // Each call charges its prompt + 40 at admission and settles to what it used.
  const results = await Promise.all(Array.from({ length: 12 }, () => complete(K.quota, { maxTokens: 40 })));
  const ok = results.filter((r) => r.ok);
  const billed = ok.reduce((s, r) => s + r.usage.total_tokens, 0);
  const maxCharge = Math.max(...ok.map((r) => r.usage.prompt_tokens + 40));
  assert.ok(ok.length >= 1, JSON.stringify(results));
  for (const r of results.filter((x) => !x.ok)) {
    assert.equal(r.status, 429, JSON.stringify(r));
    assert.equal(r.code, 'quota_exceeded');
  }
  // Overshoot: only calls admitted while used + reserved was under the limit ran, so the
  // total can pass 300 by less than one call's charge.
  // With ignore_eos every call uses exactly its charge, so the fleet stops admitting only once
  // 300 is reached: some calls are refused and the total reaches the limit.
  assert.ok(results.some((r) => !r.ok), 'expected quota refusals');
  assert.ok(billed >= 300 && billed < 300 + maxCharge, `billed ${billed}`);
  // The fleet's counter (Redis) is the sum of what the replicas billed.
  await waitFor(async () => (await redisInt(SUM_FIELDS, `t:used:quota:${todayUtc()}`)) === billed,
    5000, 'the fleet counter to settle');
  const more = await complete(K.quota);
  assert.equal(more.status, 429);
  assert.match(more.error, new RegExp(`used ${billed} of its 300 tokens per day \\(UTC\\) across all replicas`));
});

test("a tenant's in-flight tokens across replicas never exceed its budget", async (t) => {
  if (!ready) return t.skip('fleet not started');
  let maxHeld = 0;
  let maxEngines = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      maxHeld = Math.max(maxHeld, await redisInt(SUM_HELD, 't:hold:budget'));
      const stats = await Promise.all(replicas.map((d) => adminStats(d)));
      maxEngines = Math.max(maxEngines, stats.reduce((s, x) => s + (x.tenants.budget?.inflight_tokens ?? 0), 0));
    }
  })();
  // Each call charges its prompt + 200: three never fit in 700.
  const results = await Promise.all(Array.from({ length: 12 }, () => complete(K.budget, { maxTokens: 200 })));
  sampling = false;
  await sampler;
  const refused = results.filter((r) => !r.ok);
  assert.ok(results.some((r) => r.ok));
  assert.ok(refused.length > 0, 'expected some calls over the fleet budget');
  for (const r of refused) {
    assert.equal(r.status, 429, JSON.stringify(r));
    assert.equal(r.code, 'inflight_budget_exceeded');
  }
  assert.ok(maxHeld <= 700, `fleet holds reached ${maxHeld}`);
  assert.ok(maxEngines <= 700, `engines' in-flight tokens reached ${maxEngines}`);
  await waitFor(async () => (await redisInt(SUM_HELD, 't:hold:budget')) === 0, 5000, 'budget released');
});

test("a SIGKILLed replica's leases come back within lease_ttl", async (t) => {
  if (!ready) return t.skip('fleet not started');
  const victim = await startReplica(redis, 'r4', TENANTS);
  try {
    // A long call (8 choices x ~405 tokens) streaming from the victim; kill it once admitted.
    let held = 0;
    for (let attempt = 0; attempt < 5 && held === 0; attempt++) {
      const stream = await client(K.lease, victim.url).completions.create({
        model: 'stories', prompt: 'Once upon a time', max_tokens: 400, n: 8, ignore_eos: true, stream: true,
      });
      const it = stream[Symbol.asyncIterator]();
      await it.next();
      victim.proc.kill('SIGSTOP');
      held = Number(await redis.cmd('HGET', 't:hold:lease', 'r4|tok') || 0);
      if (held === 0) {
        victim.proc.kill('SIGCONT');
        stream.controller.abort();
      }
    }
    assert.ok(held > 3200, `r4 holds ${held}`);
    victim.proc.kill('SIGKILL');
    const killedAt = Date.now();
    // The budget (3500) cannot take another ~405 while r4's lease lives.
    const blocked = await complete(K.lease, { baseURL: replicas[0].url, maxTokens: 400 });
    assert.equal(blocked.code, 'inflight_budget_exceeded', JSON.stringify(blocked));
    await waitFor(async () => {
      const r = await complete(K.lease, { baseURL: replicas[0].url, maxTokens: 400 });
      return r.ok;
    }, 6000, 'the dead replica lease to expire');
    const elapsed = Date.now() - killedAt;
    assert.ok(elapsed <= 2000 + 1000, `budget whole again after ${elapsed} ms (lease_ttl 2 s)`);
  } finally {
    await victim.exited.catch(() => {});
    await victim.stop();
  }
});

test('Redis down under load: local_share holds, nothing hangs, counters reconcile', async (t) => {
  if (!ready) return t.skip('fleet not started');
  // Every replica's N is the three live replicas (a killed one has expired).
  for (const d of replicas) {
    await waitFor(async () => {
      const m = await http(d, 'GET', '/metrics', { key: KEYS.admin });
      return /llmux_cluster_live_replicas 3\b/.test(m.body);
    }, 5000, 'three live replicas');
  }
  // Background load through HAProxy for the whole outage.
  let loading = true;
  const loadResults = [];
  const load = (async () => {
    while (loading) loadResults.push(await complete(K.load, { maxTokens: 4 }));
  })();
  try {
    await redis.stop();
    const downAt = Date.now();
    // Every replica notices (next heartbeat or call) and reports it.
    for (const d of replicas) {
      await waitFor(async () => {
        const m = await http(d, 'GET', '/metrics', { key: KEYS.admin });
        return /llmux_cluster_store_up 0/.test(m.body);
      }, 4000, 'store_up 0');
    }
    // 6 rpm over 3 live replicas: each admits 2 on its own.
    const shared = [];
    for (const d of replicas) {
      const here = [];
      for (let i = 0; i < 4; i++) here.push(await complete(K.share, { baseURL: d.url }));
      assert.equal(here.filter((r) => r.ok).length, 2, JSON.stringify(here));
      for (const r of here.filter((x) => !x.ok)) assert.equal(r.code, 'rate_limit_exceeded');
      shared.push(...here);
    }
    const billed = shared.filter((r) => r.ok).reduce((s, r) => s + r.usage.total_tokens, 0);
    await new Promise((r) => setTimeout(r, Math.max(0, 5000 - (Date.now() - downAt))));
    await redis.start();
    for (const d of replicas) {
      await waitFor(async () => {
        const m = await http(d, 'GET', '/metrics', { key: KEYS.admin });
        return /llmux_cluster_store_up 1/.test(m.body) && /llmux_cluster_store_fallbacks_total [1-9]/.test(m.body);
      }, 5000, 'store_up 1');
    }
    loading = false;
    await load;
    assert.ok(loadResults.length > 0);
    assert.deepEqual(loadResults.filter((r) => !r.ok), [], 'load calls failed during the outage');
    // The outage's usage reached the new Redis: the fleet counter equals what was billed.
    await waitFor(async () => (await redisInt(SUM_FIELDS, `t:used:share:${todayUtc()}`)) === billed,
      5000, `share usage ${billed} in redis`);
    for (const d of replicas) {
      const h = await http(d, 'GET', '/health');
      assert.equal(h.status, 200);
    }
  } finally {
    loading = false;
    await load;
    if (redis.proc?.exitCode !== null) await redis.start().catch(() => {});
  }
});
