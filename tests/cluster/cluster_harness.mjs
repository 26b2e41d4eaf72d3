// A small fleet on loopback for the cluster tests: redis-server, llmuxd replicas in cluster
// mode, and HAProxy in front (round robin, health-checked on GET /ready). Everything is started
// by the test in temp dirs and killed at the end. Reuses ../integration/harness.mjs.
import { spawn, execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort, serverYaml, startDaemon, waitFor } from '../integration/harness.mjs';

const execFileP = promisify(execFile);

function findBinary(name, dirs) {
  for (const d of dirs) {
    const p = path.join(d, name);
    if (fs.existsSync(p)) return p;
  }
  return null;
}
export const REDIS_SERVER = findBinary('redis-server', ['/usr/bin', '/usr/local/bin']);
export const REDIS_CLI = findBinary('redis-cli', ['/usr/bin', '/usr/local/bin']);
export const HAPROXY = findBinary('haproxy', ['/usr/sbin', '/usr/bin', '/usr/local/sbin']);

// Whether redis-server, redis-cli and haproxy exist; under CI=true a missing one fails.
export function requireRuntime(t) {
  const missing = [['redis-server', REDIS_SERVER], ['redis-cli', REDIS_CLI], ['haproxy', HAPROXY]]
    .filter(([, p]) => !p).map(([n]) => n);
  if (missing.length === 0) return true;
  if (process.env.CI === 'true') throw new Error(`missing under CI=true: ${missing.join(', ')}`);
  t.skip(`SKIPPED: not installed: ${missing.join(', ')} (scripts/install_deps.sh)`);
  return false;
}

// redis-server on a free loopback port, no persistence. stop()/start() keep the port.
export async function startRedis() {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmux-redis-'));
  const r = {
    port,
    proc: null,
    async start() {
      this.proc = spawn(REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--save', '',
        '--appendonly', 'no', '--dir', dir, '--loglevel', 'warning'], { stdio: 'ignore' });
      await waitFor(async () => (await this.cmd('PING').catch(() => '')) === 'PONG', 10000, 'redis');
    },
    async stop() {
      if (!this.proc || this.proc.exitCode !== null) return;
      const exited = new Promise((res) => this.proc.on('exit', res));
      this.proc.kill('SIGKILL');
      await exited;
    },
    // One redis-cli command; its raw output trimmed.
    async cmd(...args) {
      const { stdout } = await execFileP(REDIS_CLI, ['-p', String(port), '--raw', ...args], { timeout: 5000 });
      return stdout.trim();
    },
    async cleanup() {
      await this.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  await r.start();
  return r;
}

// The `cluster:` section for a replica.
export function clusterYaml(redis, replica, { leaseTtl = '2s', mode = 'local_share' } = {}) {
  return `cluster:
  redis: { url: "redis://127.0.0.1:${redis.port}", key_prefix: "t:", timeout: 50ms }
  replica_id: ${replica}
  lease_ttl: ${leaseTtl}
  on_store_failure: ${mode}
`;
}

export async function startReplica(redis, replica, tenants, opts = {}) {
  return startDaemon({ tenants, server: serverYaml({ extra: clusterYaml(redis, replica, opts) }) });
}

// HAProxy on a free port in front of `replicas` (round robin, GET /ready checks every 200 ms).
export async function startHaproxy(replicas) {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmux-haproxy-'));
  const servers = replicas.map((d, i) =>
    `  server r${i + 1} 127.0.0.1:${d.port} check inter 200ms fall 2 rise 1`).join('\n');
  const cfg = `global
  maxconn 512
defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 60s
frontend fe
  bind 127.0.0.1:${port}
  default_backend llmux
backend llmux
  balance roundrobin
  option httpchk GET /ready
${servers}
`;
  fs.writeFileSync(path.join(dir, 'haproxy.cfg'), cfg);
  const proc = spawn(HAPROXY, ['-db', '-f', path.join(dir, 'haproxy.cfg')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let logs = '';
  proc.stderr.on('data', (d) => { logs += d.toString(); });
  proc.stdout.on('data', (d) => { logs += d.toString(); });
  const url = `http://127.0.0.1:${port}`;
  await waitFor(async () => {
    if (proc.exitCode !== null) throw new Error(`haproxy exited:\n${logs}`);
    const r = await fetch(`${url}/ready`).catch(() => null);
    return r && r.status === 200;
  }, 10000, 'haproxy');
  return {
    url,
    logs: () => logs,
    async stop() {
      if (proc.exitCode === null) {
        const exited = new Promise((res) => proc.on('exit', res));
        proc.kill('SIGKILL');
        await exited;
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

// Sum of a hash's per-replica figures (fields without '|').
export const SUM_FIELDS = `local t = 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if not string.find(all[i], '|', 1, true) then t = t + tonumber(all[i + 1]) end
end
return t`;
// Sum of a hold hash's in-flight tokens (fields ending in |tok).
export const SUM_HELD = `local t = 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if string.sub(all[i], -4) == '|tok' then t = t + tonumber(all[i + 1]) end
end
return t`;

export function todayUtc() {
  return new Date().toISOString().slice(0, 10);
}
