// Trust domains against the real daemon: a shared thread pool and a dedicated process pool
// (its own worker process and model name), the isolation guarantees of docs/isolation.md, and
// worker death and restart. stories260K-hf on the CPU backend; loopback only.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  KEYS, STORIES, daemonStartFailure, defaultTenants, http, readSse, requireData, serverYaml,
  standardTenant, startDaemon, waitFor,
} from './harness.mjs';

const K = {
  ...KEYS,
  acme: 'sk-test-acme', alice: 'sk-test-alice', bob: 'sk-test-bob',
  g1a: 'sk-test-g1a', g1b: 'sk-test-g1b', g2: 'sk-test-g2', mover: 'sk-test-mover',
};

const tenant = (name, body) => standardTenant(name, K[name], body);

const TENANTS = (moverPool = 'shared') => defaultTenants(
  tenant('acme', '    pool: dedicated\n    models: [ "stories-dedicated" ]\n') +
  tenant('alice', '    zero_kv_on_free: true\n') +
  tenant('bob', '') +
  tenant('g1a', '    prefix_cache: shared:g1\n') +
  tenant('g1b', '    prefix_cache: shared:g1\n') +
  tenant('g2', '    prefix_cache: shared:g2\n') +
  tenant('mover', `    pool: ${moverPool}\n    models: [ "stories*" ]\n`));

const POOLS = `pools:
  dedicated:
    isolation: process
    health_timeout: 2s
    restart_backoff: 5s
    max_down: 2s
    engine: { threads: 1, kv_cache_tokens: 8192, max_seqs: 8, kv_dtype: f16, cpu_bf16_activations: f32 }
    model: { path: "${STORIES}", name: stories-dedicated, max_model_len: 512 }
`;

let d;
before(async () => {
  if (!fs.existsSync(path.join(STORIES, 'config.json'))) return;
  d = await startDaemon({ tenants: TENANTS(), server: serverYaml({ pools: POOLS }) });
});
after(async () => { if (d) await d.stop(); });

const complete = (key, body) => http(d, 'POST', '/v1/completions', { key, body });
const pools = async () => {
  const r = await http(d, 'GET', '/admin/pools', { key: K.admin });
  assert.equal(r.status, 200, r.body);
  return Object.fromEntries(r.json.data.map((p) => [p.name, p]));
};

// A prompt of well over 2 KV blocks (16 tokens each), distinct per tag.
const longPrompt = (tag) =>
  `${tag}: once upon a time there was a little girl who liked to play in the park with her dog ` +
  'and her friends every day after school when the sun was shining and the birds were singing';

test('GET /admin/pools lists each pool with state, pid, tenants and load', async (t) => {
  if (!requireData(t)) return;
  const p = await pools();
  assert.deepEqual(Object.keys(p).sort(), ['dedicated', 'shared']);
  assert.equal(p.shared.isolation, 'thread');
  assert.equal(p.shared.state, 'ready');
  assert.equal(p.shared.pid, d.proc.pid);
  assert.equal(p.shared.model, 'stories');
  assert.equal(p.shared.batch_invariant, true);
  assert.equal(p.dedicated.batch_invariant, true);
  assert.equal(p.shared.kv_dtype, 'f32');  // the CPU backend's default
  assert.equal(p.dedicated.kv_dtype, 'f16');
  assert.equal(p.dedicated.kv_cache_tokens, 8192);
  // What each pool's backend runs (a process pool's reported by its worker): the default `bf16`
  // runs as `f32` on a CPU without AVX-512 BF16, and the configured value is then shown beside
  // it (pool_set_test covers that case on any machine).
  const bf16Cpu = /\bavx512_bf16\b/.test(fs.readFileSync('/proc/cpuinfo', 'utf8'));
  assert.equal(p.shared.cpu_bf16_activations, bf16Cpu ? 'bf16' : 'f32');
  assert.equal(p.shared.cpu_bf16_activations_configured, bf16Cpu ? undefined : 'bf16');
  assert.equal(p.dedicated.cpu_bf16_activations, 'f32');
  assert.equal(p.dedicated.cpu_bf16_activations_configured, undefined);
  // The GEMM mode per pool; the CPU backend plans no per-shape kernels (docs/pools.md), and
  // a process pool's list crosses the worker wire.
  assert.deepEqual(p.shared.gemm, { mode: 'invariant', shapes: [] });
  assert.deepEqual(p.dedicated.gemm, { mode: 'invariant', shapes: [] });
  assert.equal(p.dedicated.isolation, 'process');
  assert.equal(p.dedicated.state, 'ready');
  assert.ok(p.dedicated.pid > 0 && p.dedicated.pid !== d.proc.pid);
  assert.equal(p.dedicated.model, 'stories-dedicated');
  assert.deepEqual(p.dedicated.tenants, ['acme']);
  assert.ok(p.shared.tenants.includes('premium') && !p.shared.tenants.includes('acme'));
  for (const x of Object.values(p)) {
    assert.equal(typeof x.running, 'number');
    assert.equal(typeof x.waiting, 'number');
    assert.equal(x.device_fault, '');  // healthy backends (a sticky device fault names itself)
  }
});

test('a dedicated tenant is served by its worker process, a shared one by the daemon', async (t) => {
  if (!requireData(t)) return;
  const p = await pools();
  const a = await complete(K.acme, { prompt: 'Once upon a time', max_tokens: 8, temperature: 0 });
  assert.equal(a.status, 200, a.body);
  assert.equal(a.headers.get('x-llmux-pool'), 'dedicated');
  assert.equal(a.headers.get('x-llmux-batch-invariant'), 'true');
  assert.equal(Number(a.headers.get('x-llmux-pid')), p.dedicated.pid);
  assert.equal(a.json.model, 'stories-dedicated');
  const s = await complete(K.premium, { prompt: 'Once upon a time', max_tokens: 8, temperature: 0 });
  assert.equal(s.status, 200, s.body);
  assert.equal(s.headers.get('x-llmux-pool'), 'shared');
  assert.equal(Number(s.headers.get('x-llmux-pid')), d.proc.pid);
  // Same weights, greedy: the worker (F16 KV cache) computes the daemon's (F32 KV) text.
  assert.equal(a.json.choices[0].text, s.json.choices[0].text);
  // The dedicated tenant's figures come from its worker (reported with each health ping).
  const stats = await waitFor(async () => {
    const r = await http(d, 'GET', '/admin/stats', { key: K.admin });
    return r.json.tenants.acme.inflight_high_water > 0 ? r.json : null;
  }, 5000, 'acme figures from the worker');
  assert.equal(stats.tenants.acme.pool, 'dedicated');
  // Its high-water is one request's prompt + max_tokens, counted in its own pool only.
  assert.equal(stats.tenants.acme.inflight_high_water, a.json.usage.prompt_tokens + 8);
  assert.equal(stats.tenants.acme.inflight_tokens, 0);
  assert.ok(stats.pools.dedicated.steps > 0);
  assert.equal(stats.tenants.premium.pool, 'shared');
});

// One pool's value of an engine series on a /metrics page (labels as the daemon writes them).
const poolSeries = (body, name, pool, model) => {
  const m = body.match(new RegExp(`^${name}\\{model_name="${model}",pool="${pool}"\\} (\\S+)$`, 'm'));
  return m ? Number(m[1]) : undefined;
};
const scrape = async (scope = '') => {
  const r = await http(d, 'GET', `/metrics${scope}`, { key: K.admin });
  assert.equal(r.status, 200, r.body);
  return r.body;
};

test('/metrics: every pool\'s engine series under its pool label, a dedicated tenant\'s gauges from its worker', async (t) => {
  if (!requireData(t)) return;
  const gen = (body, pool, model) => poolSeries(body, 'vllm:generation_tokens_total', pool, model);
  const prompt = (body, pool, model) => poolSeries(body, 'vllm:prompt_tokens_total', pool, model);
  const before = await scrape();
  const dedGen0 = gen(before, 'dedicated', 'stories-dedicated');
  const dedPrompt0 = prompt(before, 'dedicated', 'stories-dedicated');
  const sharedGen0 = gen(before, 'shared', 'stories');
  assert.notEqual(dedGen0, undefined, 'the dedicated pool has its own series');
  assert.notEqual(sharedGen0, undefined, 'the shared pool has its own series');
  const a = await complete(K.acme, { prompt: 'Once upon a time', max_tokens: 8, temperature: 0 });
  assert.equal(a.status, 200, a.body);
  assert.equal(a.headers.get('x-llmux-pool'), 'dedicated');
  // The worker reports its figures with each health ping.
  const after = await waitFor(async () => {
    const body = await scrape();
    return gen(body, 'dedicated', 'stories-dedicated') === dedGen0 + a.json.usage.completion_tokens ? body : null;
  }, 5000, 'the dedicated pool\'s counters');
  assert.equal(prompt(after, 'dedicated', 'stories-dedicated'), dedPrompt0 + a.json.usage.prompt_tokens);
  // The shared pool counted nothing of it.
  assert.equal(gen(after, 'shared', 'stories'), sharedGen0);
  assert.equal(poolSeries(after, 'vllm:num_requests_running', 'dedicated', 'stories-dedicated'), 0);
  assert.equal(poolSeries(after, 'vllm:kv_cache_usage_perc', 'dedicated', 'stories-dedicated'), 0);
  // The dedicated tenant's gauges come from its own pool's engine, not the shared one.
  assert.match(after, new RegExp(`^llmux_tenant_inflight_tokens_high_water\\{tenant="acme"\\} ${a.json.usage.prompt_tokens + 8}$`, 'm'));
  assert.match(after, /^llmux_tenant_inflight_tokens\{tenant="acme"\} 0$/m);
  // The router scope has the same per-pool lines.
  const engine = await scrape('?scope=engine');
  assert.equal(gen(engine, 'dedicated', 'stories-dedicated'), dedGen0 + a.json.usage.completion_tokens);
  assert.equal(gen(engine, 'shared', 'stories'), sharedGen0);
  assert.equal(engine.match(/^# TYPE vllm:generation_tokens_total counter$/gm).length, 1);
});

test('/v1/models lists what the tenant may use; other models are model_not_found', async (t) => {
  if (!requireData(t)) return;
  const ids = async (key) => (await http(d, 'GET', '/v1/models', { key })).json.data.map((m) => m.id);
  assert.deepEqual(await ids(K.acme), ['stories-dedicated']);
  assert.deepEqual(await ids(K.premium), ['stories']);
  for (const [key, model] of [[K.acme, 'stories'], [K.premium, 'stories-dedicated']]) {
    const r = await complete(key, { model, prompt: 'Once', max_tokens: 2 });
    assert.equal(r.status, 404, r.body);
    assert.equal(r.json.error.code, 'model_not_found');
  }
  const ok = await complete(K.acme, { model: 'stories-dedicated', prompt: 'Once', max_tokens: 2 });
  assert.equal(ok.status, 200, ok.body);
});

test('prefix cache: private per tenant, cache_salt changes nothing, shared within a group only', async (t) => {
  if (!requireData(t)) return;
  const cached = async (key, prompt, extra = {}) => {
    const r = await complete(key, { prompt, max_tokens: 1, temperature: 0, ...extra });
    assert.equal(r.status, 200, r.body);
    return r.json.usage.prompt_tokens_details.cached_tokens;
  };
  const P = longPrompt('private');
  const first = await complete(K.alice, { prompt: P, max_tokens: 1 });
  assert.ok(first.json.usage.prompt_tokens > 32, `prompt has ${first.json.usage.prompt_tokens} tokens`);
  assert.equal(first.json.usage.prompt_tokens_details.cached_tokens, 0);
  assert.ok(await cached(K.alice, P) >= 32);  // A's repeat hits its own blocks
  assert.equal(await cached(K.bob, P), 0);  // B never sees A's blocks
  assert.equal(await cached(K.bob, longPrompt('salted'), { cache_salt: 'x' }), 0);
  assert.equal(await cached(K.alice, longPrompt('salted'), { cache_salt: 'x' }), 0);
  assert.equal(await cached(K.alice, P, { cache_salt: 'another' }) >= 32, true);
  // A salt chosen by the client cannot open another tenant's cache either.
  const Q = longPrompt('salt-probe');
  assert.equal(await cached(K.alice, Q, { cache_salt: 's' }), 0);
  assert.equal(await cached(K.bob, Q, { cache_salt: 's' }), 0);

  const G = longPrompt('group');
  assert.equal(await cached(K.g1a, G), 0);
  assert.ok(await cached(K.g1b, G) >= 32);  // same group: shared
  assert.equal(await cached(K.g2, G), 0);  // other group
  assert.equal(await cached(K.alice, G), 0);  // private tenant
  assert.equal(await cached(K.acme, G), 0);  // another pool altogether
});

test('prefix cache: a short prompt\'s repeat reuses all but its last token, same logprobs', async (t) => {
  if (!requireData(t)) return;
  // Shorter than one 16-token block: only the partial tail the first request leaves can serve it.
  const body = { prompt: 'the cat sat', max_tokens: 3, temperature: 0, logprobs: 3 };
  for (const key of [K.bob, K.acme]) {  // a thread pool, and a process pool's worker
    const first = await complete(key, body);
    assert.equal(first.status, 200, first.body);
    const n = first.json.usage.prompt_tokens;
    assert.ok(n > 2 && n < 16, `prompt has ${n} tokens`);
    assert.equal(first.json.usage.prompt_tokens_details.cached_tokens, 0);
    const again = await complete(key, body);
    assert.equal(again.status, 200, again.body);
    assert.equal(again.json.usage.prompt_tokens_details.cached_tokens, n - 1);
    assert.equal(again.json.choices[0].text, first.json.choices[0].text);
    assert.deepEqual(again.json.choices[0].logprobs, first.json.choices[0].logprobs);
  }
  // The tails are scoped like full blocks: another tenant's identical prompt reuses nothing.
  const other = await complete(K.g2, body);
  assert.equal(other.status, 200, other.body);
  assert.equal(other.json.usage.prompt_tokens_details.cached_tokens, 0);
});

test('batch invariance: seeded sampling gives the same tokens alone and among 15 others', async (t) => {
  if (!requireData(t)) return;
  const target = {
    prompt: 'Once upon a time', max_tokens: 24, temperature: 0.9, seed: 1234, logprobs: 2,
  };
  const alone = await complete(K.premium, target);
  assert.equal(alone.status, 200, alone.body);
  // 15 long streams, all decoding (each has sent a chunk) before the target is sent, and all
  // still running when it completes: with max_seqs 16 the target shares every step with them.
  const others = [];
  const finishedAt = [];
  const keys = [K.batch, K.alice, K.bob, K.g1a, K.g1b, K.g2];
  let started = 0;
  let allStarted;
  const decoding = new Promise((resolve) => { allStarted = resolve; });
  for (let i = 0; i < 15; ++i) {
    let seen = false;
    others.push(stream(keys[i % keys.length], {
      prompt: `${i} the dog ran to the park and`, max_tokens: 480, ignore_eos: true, temperature: 1, seed: i,
      onChunk: () => { if (!seen) { seen = true; if (++started === 15) allStarted(); } },
    }).then((r) => { finishedAt.push(Date.now()); return r; }));
  }
  await decoding;
  assert.equal(finishedAt.length, 0, 'a crowding stream ended before the target was sent');
  const crowded = await complete(K.premium, target);
  const crowdedDone = Date.now();
  const rest = await Promise.all(others);
  for (const r of rest) {
    assert.equal(r.status, 200);
    assert.equal(r.error, null);
  }
  assert.equal(finishedAt.length, 15);
  for (const f of finishedAt) assert.ok(f >= crowdedDone, 'a crowding stream ended before the target did');
  assert.equal(crowded.status, 200, crowded.body);
  assert.equal(crowded.json.choices[0].text, alone.json.choices[0].text);
  assert.deepEqual(crowded.json.choices[0].logprobs.tokens, alone.json.choices[0].logprobs.tokens);
  assert.deepEqual(crowded.json.choices[0].logprobs.token_logprobs,
    alone.json.choices[0].logprobs.token_logprobs);
});

test('data access: no tenant key reaches admin routes or another tenant\'s data', async (t) => {
  if (!requireData(t)) return;
  const routes = [['GET', '/admin/stats'], ['GET', '/admin/pools'], ['POST', '/admin/reload']];
  for (const name of Object.keys(K).filter((n) => n !== 'admin')) {
    for (const [m, p] of routes) {
      const r = await http(d, m, p, { key: K[name], body: m === 'POST' ? {} : undefined });
      assert.equal(r.status, 403, `${name} ${m} ${p}`);
      assert.equal(r.json.error.type, 'permission_error', r.body);
    }
    // /v1/models names only models: never another tenant or pool.
    const models = await http(d, 'GET', '/v1/models', { key: K[name] });
    for (const other of Object.keys(K)) {
      if (other !== 'admin') assert.ok(!models.body.includes(`"${other}"`), `${name} sees ${other}`);
    }
  }
  // The admin key is not a tenant: it cannot run or list tenant work.
  for (const [m, p] of [['POST', '/v1/completions'], ['POST', '/v1/chat/completions'], ['GET', '/v1/models']]) {
    const r = await http(d, m, p, { key: K.admin, body: m === 'POST' ? {} : undefined });
    assert.equal(r.status, 403, `admin ${m} ${p}`);
  }
});

// Reads a streamed completion: { status, text, error, headers }.
async function stream(key, body) {
  const res = await fetch(`${d.url}/v1/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ ...body, stream: true }),
  });
  const out = { status: res.status, headers: res.headers, text: '', error: null, first: null };
  if (res.status !== 200) {
    out.error = JSON.parse(await res.text()).error;
    return out;
  }
  await readSse(res, (j) => {
    if (j === null) return;
    if (j.error) out.error = j.error;
    else for (const c of j.choices) out.text += c.text;
  }, body.onChunk);
  return out;
}

test('SIGKILL of a worker fails only its pool, which restarts and serves again', async (t) => {
  if (!requireData(t)) return;
  const before = await pools();
  const oldPid = before.dedicated.pid;
  let killed = false;
  const kill = () => {
    if (!killed) { killed = true; process.kill(oldPid, 'SIGKILL'); }
  };
  const params = { prompt: 'Once upon a time', max_tokens: 400, temperature: 0, ignore_eos: true };
  const dedicated = [];
  for (let i = 0; i < 3; ++i) {
    dedicated.push(stream(K.acme, { ...params, onChunk: kill }));
  }
  const shared = [];
  for (let i = 0; i < 4; ++i) shared.push(stream([K.premium, K.batch, K.bob, K.alice][i], params));
  const dres = await Promise.all(dedicated);
  assert.ok(killed);
  for (const r of dres) {
    assert.ok(r.error, `a dedicated request finished despite the kill: ${r.text.length} chars`);
    assert.match(r.error.message, /pool dedicated (worker died|is restarting)/);
    assert.equal(r.error.type, 'server_error', JSON.stringify(r.error));
  }

  // restart_backoff 5s: the pool stays 'restarting' for at least 5 s after the death, so these
  // checks run inside that window. New requests get 503 with Retry-After.
  const restarting = await waitFor(async () => {
    const p = (await pools()).dedicated;
    return p.state === 'restarting' ? p : null;
  }, 5000, 'state restarting');
  assert.equal(restarting.worker_deaths, 1);
  assert.equal(restarting.last_error, 'killed by signal 9');
  const refused = await complete(K.acme, { prompt: 'Once', max_tokens: 2 });
  assert.equal(refused.status, 503, refused.body);
  assert.ok(Number(refused.headers.get('retry-after')) >= 1);
  // max_down 2s < restart_backoff: liveness and readiness fail, naming the pool, once it has
  // been down 2 s, and recover when the worker is back (below).
  const unhealthy = await waitFor(async () => {
    const h = await http(d, 'GET', '/health');
    return h.status === 503 ? h : null;
  }, 4000, '/health 503 past max_down');
  assert.match(unhealthy.json.problem, /^pool dedicated not ready for \d+ ms \(max_down 2000 ms\): killed by signal 9$/);
  assert.equal(unhealthy.json.pools.dedicated.state, 'restarting');
  assert.equal(unhealthy.json.pools.shared.state, 'ready');
  assert.equal((await http(d, 'GET', '/ready')).status, 503);
  // The shared pool never noticed.
  const sres = await Promise.all(shared);
  for (const r of sres) {
    assert.equal(r.status, 200);
    assert.equal(r.error, null);
    assert.ok(r.text.length > 100);
  }
  assert.equal((await complete(K.premium, { prompt: 'Once', max_tokens: 2 })).status, 200);

  const back = await waitFor(async () => {
    const p = (await pools()).dedicated;
    return p.state === 'ready' ? p : null;
  }, 30000, 'worker back');
  assert.notEqual(back.pid, oldPid);
  assert.equal(back.restarts, 1);
  const healthy = await http(d, 'GET', '/health');
  assert.equal(healthy.status, 200, healthy.body);
  assert.equal(healthy.json.pools.dedicated.down_ms, 0);
  assert.equal((await http(d, 'GET', '/ready')).status, 200);
  const again = await complete(K.acme, { prompt: 'Once upon a time', max_tokens: 8, temperature: 0 });
  assert.equal(again.status, 200, again.body);
  assert.equal(Number(again.headers.get('x-llmux-pid')), back.pid);
});

test('reload moves a tenant between pools for new requests; unknown pools are rejected', async (t) => {
  if (!requireData(t)) return;
  const before = await complete(K.mover, { prompt: 'Once', max_tokens: 2 });
  assert.equal(before.headers.get('x-llmux-pool'), 'shared');
  fs.writeFileSync(path.join(d.dir, 'tenants.yaml'), TENANTS('nowhere'));
  const bad = await http(d, 'POST', '/admin/reload', { key: K.admin });
  assert.equal(bad.status, 400, bad.body);
  assert.match(bad.json.error.message, /tenant "mover" names unknown pool "nowhere"/);
  assert.equal((await complete(K.mover, { prompt: 'Once', max_tokens: 2 })).headers.get('x-llmux-pool'), 'shared');

  fs.writeFileSync(path.join(d.dir, 'tenants.yaml'), TENANTS('dedicated'));
  const ok = await http(d, 'POST', '/admin/reload', { key: K.admin });
  assert.equal(ok.status, 200, ok.body);
  const moved = await complete(K.mover, { prompt: 'Once', max_tokens: 2, model: 'stories-dedicated' });
  assert.equal(moved.status, 200, moved.body);
  assert.equal(moved.headers.get('x-llmux-pool'), 'dedicated');
  assert.deepEqual((await pools()).dedicated.tenants, ['acme', 'mover']);
  fs.writeFileSync(path.join(d.dir, 'tenants.yaml'), TENANTS());
  assert.equal((await http(d, 'POST', '/admin/reload', { key: K.admin })).status, 200);
});

test('a tenant naming an unknown pool stops the daemon at start', async (t) => {
  if (!requireData(t)) return;
  const r = await daemonStartFailure({ tenants: TENANTS('nowhere'), server: serverYaml({ pools: POOLS }) });
  assert.equal(r.code, 1);
  assert.match(r.logs, /llmuxd: tenants: .*tenant "mover" names unknown pool "nowhere" \(pools: shared, dedicated\)/);
});
