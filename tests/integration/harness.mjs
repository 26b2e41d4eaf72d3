// Starts the real llmuxd on 127.0.0.1 (ephemeral port) with a generated config, for the
// integration tests. Only loopback traffic.
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after } from 'node:test';

export const BUILD_DIR = process.env.LLMUX_BUILD_DIR;
export const SHARED = process.env.LLMUX_TEST_DATA;
export const STORIES = path.join(SHARED ?? '', 'models', 'stories260K-hf');

// Whether the data the tests need exists; under CI=true a missing folder is a failure.
export function requireData(t) {
  if (fs.existsSync(path.join(STORIES, 'config.json'))) return true;
  if (process.env.CI === 'true') throw new Error(`test data missing under CI=true: ${STORIES}`);
  t.skip(`SKIPPED: test data missing: ${STORIES} (set LLMUX_TEST_DATA)`);
  return false;
}

export const sha256 = (s) => createHash('sha256').update(s).digest('hex');

export const KEYS = {
  admin: 'sk-test-admin',
  premium: 'sk-test-premium',
  batch: 'sk-test-batch',
  limited: 'sk-test-limited',
};

// One tenants.yaml entry for defaultTenants' `extra`: tenant NAME in the standard lane with a
// large in-flight budget, authenticated by `key`; `more`: further keys of the tenant, each
// line indented four spaces and ending in a newline.
export function standardTenant(name, key, more = '') {
  return `  ${name}:
    api_keys: [ { sha256: "${sha256(key)}" } ]
    lane: standard
    max_inflight_tokens: 100000
${more}`;
}

export function defaultTenants(extra = '') {
  return `lanes: [ { name: premium }, { name: standard }, { name: batch } ]
tenants:
  premium:
    api_keys: [ { sha256: "${sha256(KEYS.premium)}" } ]
    lane: premium
    weight: 2
    max_inflight_tokens: 100000
    max_queued_requests: 64
  batch:
    api_keys: [ { sha256: "${sha256(KEYS.batch)}" } ]
    lane: batch
    max_inflight_tokens: 100000
    max_queued_requests: 64
  limited:
    api_keys: [ { sha256: "${sha256(KEYS.limited)}" } ]
    lane: standard
    rate_limit: { requests_per_minute: 1, tokens_per_minute: 100000 }
${extra}`;
}

// A TCP port free on 127.0.0.1 right now (for listeners that cannot take port 0).
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export function serverYaml({ model = STORIES, engine = '', server = '', extra = '', pools = '' } = {}) {
  return `server:
  listen: "127.0.0.1:0"
  io_threads: 2
  drain_timeout: 20s
  admin_api_keys: [ { sha256: "${sha256(KEYS.admin)}" } ]
${server}
model: { path: "${model}", name: stories, max_model_len: 512 }
engine:
  backend: cpu
  threads: 1
  kv_cache_tokens: 16384
  max_batched_tokens: 512
  max_seqs: 16
${engine}
tenants_file: tenants.yaml
${extra}${pools}`;
}

// Starts llmuxd and resolves when it exits (for start-up failures): { code, logs }.
export async function daemonStartFailure({ tenants, server }) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmuxd-test-'));
  fs.writeFileSync(path.join(dir, 'llmux.yaml'), server);
  fs.writeFileSync(path.join(dir, 'tenants.yaml'), tenants);
  const proc = spawn(path.join(BUILD_DIR, 'llmuxd'), ['--config', path.join(dir, 'llmux.yaml')], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let logs = '';
  proc.stderr.on('data', (d) => { logs += d.toString(); });
  proc.stdout.on('data', (d) => { logs += d.toString(); });
  const timer = setTimeout(() => proc.kill('SIGKILL'), 60000);
  const code = await new Promise((resolve) => proc.on('exit', (c) => resolve(c)));
  clearTimeout(timer);
  fs.rmSync(dir, { recursive: true, force: true });
  return { code, logs };
}

// `env`: extra environment variables for llmuxd. `binary`: 'llmuxd' (the production daemon) or
// 'llmuxd-test' (the same daemon plus fault injection from LLMUX_TEST_FAIL_TENANT).
export async function startDaemon({ tenants = defaultTenants(), server = serverYaml(), env = {},
                                    binary = 'llmuxd' } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmuxd-test-'));
  fs.writeFileSync(path.join(dir, 'llmux.yaml'), server);
  fs.writeFileSync(path.join(dir, 'tenants.yaml'), tenants);
  const proc = spawn(path.join(BUILD_DIR, binary), ['--config', path.join(dir, 'llmux.yaml')], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  let logs = '';
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`llmuxd did not start:\n${logs}`)), 60000);
    proc.stderr.on('data', (d) => {
      logs += d.toString();
      const m = logs.match(/serving \S+ on http:\/\/127\.0\.0\.1:(\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    proc.stdout.on('data', (d) => { logs += d.toString(); });
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`llmuxd exited ${code}:\n${logs}`)); });
  });
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  return {
    dir,
    port,
    url: `http://127.0.0.1:${port}`,
    proc,
    exited,
    logs: () => logs,
    async stop() {
      // SIGINT drains without server.drain_grace (SIGTERM would wait it out, 5 s by default).
      if (proc.exitCode === null) proc.kill('SIGINT');
      const r = await exited;
      fs.rmSync(dir, { recursive: true, force: true });
      return r;
    },
  };
}

// A start function for files whose tests each start their own daemons: every daemon it starts
// is stopped after the file's tests (node:test `after`).
export function daemonsStoppedAfterFile() {
  const daemons = [];
  after(async () => { for (const d of daemons) await d.stop(); });
  return async (opts) => {
    const d = await startDaemon(opts);
    daemons.push(d);
    return d;
  };
}

// The token ids of `text` in the test model's tokenizer (`llmux tokenize`).
export function tokenize(text) {
  const out = execFileSync(path.join(BUILD_DIR, 'llmux'), ['tokenize', '--model', STORIES], { input: text });
  return out.toString().trim().split(/\s+/).filter((s) => s.length > 0).map(Number);
}

// Raw HTTP helper: returns { status, headers, body, json }.
export async function http(d, method, p, { key, body, headers = {} } = {}) {
  const h = { ...headers };
  if (key) h.authorization = `Bearer ${key}`;
  if (body !== undefined) h['content-type'] = 'application/json';
  const res = await fetch(d.url + p, {
    method,
    headers: h,
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, headers: res.headers, body: text, json };
}

// Reads an SSE body: `onEvent` gets each event's JSON (null for `[DONE]`), `onChunk` (if given)
// runs after each chunk of the body has been split into events.
export async function readSse(res, onEvent, onChunk = null) {
  let buf = '';
  const decoder = new TextDecoder();
  for await (const chunk of res.body) {
    buf += decoder.decode(chunk, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const data = buf.slice(0, i).replace(/^data: /, '');
      buf = buf.slice(i + 2);
      onEvent(data === '[DONE]' ? null : JSON.parse(data));
    }
    if (onChunk) onChunk();
  }
}

export async function waitFor(fn, ms = 10000, what = 'condition') {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export const expectedGreedy = () =>
  JSON.parse(fs.readFileSync(path.join(STORIES, 'expected_greedy.json'), 'utf8'));

// Sends raw bytes on a fresh TCP connection to the daemon and collects what comes back until
// the server closes or `ms` passes.
// Returns { status, head, body, closed, error } (status 0 when no status line came).
export async function rawHttp(d, bytes, { ms = 5000 } = {}) {
  const net = await import('node:net');
  return new Promise((resolve) => {
    const chunks = [];
    let closed = false;
    let error = null;
    const sock = net.connect(d.port, '127.0.0.1', () => {
      sock.write(bytes, () => {});
    });
    const done = () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('latin1');
      const sep = text.indexOf('\r\n\r\n');
      const head = sep < 0 ? text : text.slice(0, sep);
      const m = head.match(/^HTTP\/1\.1 (\d{3})/);
      sock.destroy();
      resolve({ status: m ? Number(m[1]) : 0, head, body: sep < 0 ? '' : text.slice(sep + 4), closed, error });
    };
    const timer = setTimeout(done, ms);
    sock.on('data', (c) => chunks.push(c));
    sock.on('error', (e) => { error = e.code; });
    sock.on('close', () => { closed = true; done(); });
  });
}

// GET /admin/stats with the admin key (JSON).
export async function adminStats(d) {
  const r = await http(d, 'GET', '/admin/stats', { key: KEYS.admin });
  if (r.status !== 200) throw new Error(`/admin/stats: ${r.status} ${r.body}`);
  return r.json;
}

// Whether the engine and the HTTP layer hold nothing for any tenant: no running or waiting
// sequence, no KV block, no in-flight token, nothing queued, no call in flight.
export function statsIdle(s) {
  if (s.running !== 0 || s.waiting !== 0 || s.calls_in_flight !== 0) return false;
  for (const t of Object.values(s.tenants)) {
    if ((t.blocks_in_use ?? 0) !== 0 || (t.inflight_tokens ?? 0) !== 0 || t.queued_http !== 0) return false;
    if ((t.running ?? 0) !== 0 || (t.waiting ?? 0) !== 0) return false;
  }
  return true;
}

// Deterministic PRNG (mulberry32) for reproducible fault schedules.
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
