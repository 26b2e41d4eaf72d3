// llmuxd behind a load balancer (docs/deployment.md): two real replicas on 127.0.0.1 behind a
// real HAProxy whose config this test writes. HAProxy connects to the replicas from
// 127.0.0.2 (`source`), the only address in their server.trusted_proxies; clients connect from
// other loopback addresses, so "trusted peer" and "untrusted peer" are both real here.
//   - SIGTERM of one replica under load through the official openai client (no client
//     retries): 0 failed requests.
//   - 100 wrong keys from one client behind the proxy: that client is throttled; another
//     client's wrong key is not (attribution by X-Forwarded-For), valid keys are served.
//   - server.tenant_header: honoured from the proxy (with the tenant's own limits), 401 from an
//     untrusted peer.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import {
  KEYS, freePort, requireData, serverYaml, startDaemon, waitFor,
} from './harness.mjs';

const PROXY_SOURCE = '127.0.0.2';
const GRACE_MS = 1000;
const GATEWAY_TOKEN = 'gw-token-limited';

function haproxyPath() {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/usr/local/sbin'])) {
    const p = path.join(dir, 'haproxy');
    if (fs.existsSync(p)) return p;
  }
  return null;
}

function replicaYaml() {
  return serverYaml({
    server: [
      `  trusted_proxies: ["${PROXY_SOURCE}/32"]`,
      '  tenant_header: X-Tenant-ID',
      `  drain_grace: ${GRACE_MS}ms`,
      '  max_auth_failures_per_minute: 20',
    ].join('\n'),
  });
}

// The HAProxy recipe of docs/deployment.md, with test-sized timings.
function haproxyConfig(port, replicas) {
  return `global
  maxconn 512
defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  option forwardfor
  option http-buffer-request
  retries 3
  option redispatch 1
  retry-on conn-failure empty-response response-timeout 503
frontend fe
  bind 127.0.0.1:${port}
  # The gateway authenticates: a client never chooses its tenant header itself.
  http-request del-header X-Tenant-ID
  http-request set-header X-Tenant-ID limited if { req.hdr(x-gateway-token) -m str ${GATEWAY_TOKEN} }
  default_backend llmux
backend llmux
  balance roundrobin
  option httpchk GET /ready
  http-check expect status 200
  default-server inter 200ms fall 1 rise 2 source ${PROXY_SOURCE}
${replicas.map((r, i) => `  server r${i} 127.0.0.1:${r.port} check`).join('\n')}
`;
}

async function startHaproxy(replicas) {
  const bin = haproxyPath();
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmux-haproxy-'));
  const cfg = path.join(dir, 'haproxy.cfg');
  fs.writeFileSync(cfg, haproxyConfig(port, replicas));
  execFileSync(bin, ['-c', '-q', '-f', cfg]);
  const proc = spawn(bin, ['-db', '-f', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
  let logs = '';
  proc.stdout.on('data', (d) => { logs += d; });
  proc.stderr.on('data', (d) => { logs += d; });
  const exited = new Promise((r) => proc.on('exit', r));
  const url = `http://127.0.0.1:${port}`;
  return {
    port, url, proc, logs: () => logs,
    async stop() {
      if (proc.exitCode === null) proc.kill('SIGTERM');
      await exited;
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

// One HTTP request from a chosen local address (the "client" the proxy forwards).
function request(url, { method = 'GET', path: p, headers = {}, body, from = '127.0.0.1' }) {
  return new Promise((resolve, reject) => {
    const u = new URL(p, url);
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request({
      host: u.hostname, port: u.port, path: u.pathname + u.search, method, localAddress: from,
      agent: false,
      headers: { ...headers, ...(data ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } : {}) },
    }, (res) => {
      let text = '';
      res.on('data', (c) => { text += c; });
      res.on('end', () => {
        let json;
        try { json = JSON.parse(text); } catch { json = undefined; }
        resolve({ status: res.statusCode, headers: res.headers, body: text, json });
      });
    });
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}

let replicas = [];
let proxy = null;
let ready = false;

before(async () => {
  if (!fs.existsSync(path.join(process.env.LLMUX_TEST_DATA ?? '', 'models', 'stories260K-hf', 'config.json'))) return;
  if (!haproxyPath()) {
    if (process.env.CI === 'true') throw new Error('haproxy not found under CI=true (scripts/install_deps.sh installs it)');
    return;
  }
  replicas = [await startDaemon({ server: replicaYaml() }), await startDaemon({ server: replicaYaml() })];
  proxy = await startHaproxy(replicas);
  // Both replicas up in HAProxy (rise 2 x inter 200ms).
  await waitFor(async () => {
    const seen = new Set();
    for (let i = 0; i < 6; ++i) {
      const r = await request(proxy.url, { path: '/v1/models', headers: { authorization: `Bearer ${KEYS.premium}` } }).catch(() => null);
      if (r?.status === 200) seen.add(r.headers['x-llmux-replica'] ?? i % 2);
    }
    return seen.size > 0;
  }, 10000, 'HAProxy to route');
  await new Promise((r) => setTimeout(r, 600));
  ready = true;
});

after(async () => {
  if (proxy) await proxy.stop();
  for (const r of replicas) await r.stop();
});

function need(t) {
  if (!requireData(t)) return false;
  if (!ready) {
    if (process.env.CI === 'true') throw new Error('gateway fixture did not start');
    t.skip('SKIPPED: haproxy not installed');
    return false;
  }
  return true;
}

test('wrong keys from one client behind the proxy throttle that client only; valid keys are always served', async (t) => {
  if (!need(t)) return;
  const bad = '127.0.0.3';
  const other = '127.0.0.4';
  const statuses = new Map();
  for (let i = 0; i < 100; ++i) {
    // The client also writes its own X-Forwarded-For: the replicas must not believe it.
    const r = await request(proxy.url, {
      path: '/v1/models', from: bad,
      headers: { authorization: `Bearer sk-wrong-${i}`, 'x-forwarded-for': '6.6.6.6' },
    });
    statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
  }
  // 20 failures per replica per minute, round robin over 2 replicas: 40 x 401, then 429.
  assert.deepEqual(Object.fromEntries(statuses), { 401: 40, 429: 60 });
  const throttled = await request(proxy.url, { path: '/v1/models', from: bad, headers: { authorization: 'Bearer sk-wrong-x' } });
  assert.equal(throttled.status, 429);
  assert.equal(throttled.json.error.code, 'auth_throttled');
  assert.ok(Number(throttled.headers['retry-after']) > 0);
  // Another client behind the same proxy: its wrong key is a plain 401, its valid key 200.
  const otherWrong = await request(proxy.url, { path: '/v1/models', from: other, headers: { authorization: 'Bearer sk-wrong-y' } });
  assert.equal(otherWrong.status, 401);
  for (let i = 0; i < 4; ++i) {
    const ok = await request(proxy.url, { path: '/v1/models', from: other, headers: { authorization: `Bearer ${KEYS.batch}` } });
    assert.equal(ok.status, 200, ok.body);
  }
  // A valid key from the throttled client itself is served too (only failures are throttled).
  for (let i = 0; i < 2; ++i) {
    const own = await request(proxy.url, { path: '/v1/models', from: bad, headers: { authorization: `Bearer ${KEYS.premium}` } });
    assert.equal(own.status, 200, own.body);
  }
  // The spoofed 6.6.6.6 was never blamed: a client really at 6.6.6.6 does not exist here, but the
  // direct (untrusted) peer 127.0.0.1 still has a clean record.
  const direct = await request(replicas[0].url, { path: '/v1/models', headers: { authorization: 'Bearer sk-wrong-z' } });
  assert.equal(direct.status, 401);
});

test('tenant header: honoured from the trusted proxy with the tenant\'s own limits; 401 from an untrusted peer', async (t) => {
  if (!need(t)) return;
  // Through the proxy, which sets X-Tenant-ID from its own authentication: no API key at all.
  const usage = await request(proxy.url, { path: '/v1/usage', headers: { 'x-gateway-token': GATEWAY_TOKEN } });
  assert.equal(usage.status, 200, usage.body);
  assert.equal(usage.json.tenant, 'limited');
  // `limited` allows 1 request per minute per replica: the third completion through the
  // proxy (round robin over 2 replicas) is refused by the tenant's own rate limit.
  const body = { model: 'stories', prompt: 'Once upon a time', max_tokens: 2 };
  const codes = [];
  for (let i = 0; i < 3; ++i) {
    const r = await request(proxy.url, { method: 'POST', path: '/v1/completions', body, headers: { 'x-gateway-token': GATEWAY_TOKEN } });
    codes.push(r.status);
    if (r.status === 429) {
      assert.equal(r.json.error.code, 'rate_limit_exceeded');
      assert.ok(Number(r.headers['retry-after']) > 0);
    }
  }
  assert.deepEqual(codes, [200, 200, 429]);
  // A client that reaches a replica directly cannot claim a tenant, with or without a key.
  for (const headers of [{ 'x-tenant-id': 'premium' }, { 'x-tenant-id': 'premium', authorization: `Bearer ${KEYS.batch}` }]) {
    const r = await request(replicas[1].url, { path: '/v1/models', headers, from: '127.0.0.5' });
    assert.equal(r.status, 401, r.body);
    assert.match(r.json.error.message, /x-tenant-id header is accepted only from a trusted proxy/);
  }
  // An unknown tenant in the header, from the proxy: 401 (a client's own X-Tenant-ID is
  // removed by the proxy, so this goes straight to a replica from the proxy's address).
  const unknown = await request(replicas[0].url, { path: '/v1/models', headers: { 'x-tenant-id': 'nobody' }, from: PROXY_SOURCE });
  assert.equal(unknown.status, 401);
  assert.match(unknown.json.error.message, /names no known tenant/);
  const trusted = await request(replicas[0].url, { path: '/v1/usage', headers: { 'x-tenant-id': 'batch' }, from: PROXY_SOURCE });
  assert.equal(trusted.status, 200);
  assert.equal(trusted.json.tenant, 'batch');
});

test('router metrics: /metrics?scope=engine has the vLLM engine series and no tenant series; operator-only', async (t) => {
  if (!need(t)) return;
  const r = replicas[1];
  const engine = await request(r.url, { path: '/metrics?scope=engine', headers: { authorization: `Bearer ${KEYS.admin}` } });
  assert.equal(engine.status, 200);
  assert.match(engine.headers['content-type'], /^text\/plain; version=0\.0\.4/);
  for (const [name, type] of [['vllm:num_requests_waiting', 'gauge'], ['vllm:num_requests_running', 'gauge'],
    ['vllm:kv_cache_usage_perc', 'gauge'], ['vllm:num_preemptions_total', 'counter'], ['vllm:cache_config_info', 'gauge']]) {
    assert.ok(engine.body.includes(`# TYPE ${name} ${type}\n`), `${name} ${type}`);
  }
  // kv_cache_tokens 16384 / block_size 16 (harness serverYaml).
  assert.ok(engine.body.includes('vllm:cache_config_info{block_size="16",enable_prefix_caching="True",num_gpu_blocks="1024"} 1\n'), engine.body);
  assert.ok(!engine.body.includes('tenant='));
  assert.ok(!engine.body.includes('_bucket'));
  // The full page carries the same cache_config_info line and the tenant series.
  const full = await request(r.url, { path: '/metrics', headers: { authorization: `Bearer ${KEYS.admin}` } });
  assert.equal(full.status, 200);
  assert.ok(full.body.includes('vllm:cache_config_info{block_size="16",enable_prefix_caching="True",num_gpu_blocks="1024"} 1'));
  assert.ok(full.body.includes('tenant="premium"'));
  const tenant = await request(r.url, { path: '/metrics?scope=engine', headers: { authorization: `Bearer ${KEYS.premium}` } });
  assert.equal(tenant.status, 403);
  const bad = await request(r.url, { path: '/metrics?scope=tenants', headers: { authorization: `Bearer ${KEYS.admin}` } });
  assert.equal(bad.status, 400);
  assert.equal(bad.json.error.param, 'scope');
});

test('SIGTERM of one replica under load through HAProxy: zero failed client requests', { timeout: 120000 }, async (t) => {
  if (!need(t)) return;
  const client = new OpenAI({ apiKey: KEYS.premium, baseURL: `${proxy.url}/v1`, maxRetries: 0, timeout: 30000 });
  const failures = [];
  let ok = 0;
  let stop = false;
  const worker = async (w) => {
    for (let i = 0; !stop; ++i) {
      try {
        if ((w + i) % 2 === 0) {
          const r = await client.completions.create({ model: 'stories', prompt: 'Once upon a time', max_tokens: 24, seed: i });
          assert.equal(r.choices.length, 1);
        } else {
          const stream = await client.chat.completions.create({
            model: 'stories', messages: [{ role: 'user', content: 'Tell me a story' }], max_tokens: 24, stream: true, seed: i,
          });
          let finish = null;
          for await (const chunk of stream) finish = chunk.choices[0]?.finish_reason ?? finish;
          assert.ok(finish === 'length' || finish === 'stop', `finish ${finish}`);
        }
        ++ok;
      } catch (e) {
        failures.push(`${e.status ?? ''} ${e.message}`);
      }
    }
  };
  const workers = [0, 1, 2, 3, 4, 5].map(worker);
  await new Promise((r) => setTimeout(r, 1500));
  const before = ok;
  const victim = replicas[0];
  victim.proc.kill('SIGTERM');
  const exit = await victim.exited;
  // Keep the load on the survivor a while after the victim is gone.
  await new Promise((r) => setTimeout(r, 1500));
  stop = true;
  await Promise.all(workers);
  t.diagnostic(`requests ok=${ok} (before SIGTERM ${before}), failed=${failures.length}`);
  assert.deepEqual(exit, { code: 0, signal: null });
  assert.deepEqual(failures, []);
  assert.ok(before > 10 && ok > before + 10, `load ran: ${before} then ${ok}`);
  assert.ok(victim.logs().includes('"drain_grace_over"'), 'the victim logged the end of its grace');
});
