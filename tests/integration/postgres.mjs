// A throwaway PostgreSQL cluster for the integration tests: initdb in a temp dir, a postmaster
// on 127.0.0.1 and a free port, stop/start at will, removed at the end. PostgreSQL refuses to
// run as root, so as root initdb/pg_ctl run as `nobody`. Binaries from LLMUX_PG_BIN, else the
// newest /usr/lib/postgresql/*/bin. Under CI=true a missing PostgreSQL is a failure.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './harness.mjs';

export function findPgBin() {
  if (process.env.LLMUX_PG_BIN) {
    return fs.existsSync(path.join(process.env.LLMUX_PG_BIN, 'initdb')) ? process.env.LLMUX_PG_BIN : null;
  }
  const root = '/usr/lib/postgresql';
  if (!fs.existsSync(root)) return null;
  const versions = fs.readdirSync(root)
    .filter((v) => fs.existsSync(path.join(root, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return versions.length ? path.join(root, versions[0], 'bin') : null;
}

// Whether PostgreSQL exists; skips `t` without it, throws under CI=true.
export function requirePostgres(t) {
  if (findPgBin()) return true;
  if (process.env.CI === 'true') throw new Error('PostgreSQL server binaries missing under CI=true (apt-get install postgresql)');
  t.skip('SKIPPED: PostgreSQL server binaries missing (/usr/lib/postgresql/*/bin)');
  return false;
}

export async function startPostgres() {
  const bin = findPgBin();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmux-pg-'));
  const port = await freePort();
  const asRoot = process.getuid && process.getuid() === 0;
  if (asRoot) {
    const id = spawnSync('id', ['-u', 'nobody']).stdout.toString().trim();
    const gid = spawnSync('id', ['-g', 'nobody']).stdout.toString().trim();
    fs.chownSync(dir, Number(id), Number(gid));
  }
  const run = (tool, args) => {
    const cmd = asRoot ? 'runuser' : path.join(bin, tool);
    const argv = asRoot ? ['-u', 'nobody', '--', path.join(bin, tool), ...args] : args;
    const r = spawnSync(cmd, argv, { encoding: 'utf8', timeout: 60000 });
    if (r.status !== 0) throw new Error(`${tool} ${args.join(' ')} failed: ${r.stdout}${r.stderr}`);
  };
  const data = path.join(dir, 'data');
  run('initdb', ['-D', data, '-U', 'llmux', '--auth=trust', '-E', 'UTF8', '--locale=C', '-N']);
  const pg = {
    dir,
    port,
    url: `postgresql://llmux@127.0.0.1:${port}/postgres`,
    start() {
      run('pg_ctl', ['-D', data, '-l', path.join(dir, 'server.log'), '-w', '-t', '30', '-o',
        `-k ${dir} -p ${port} -c listen_addresses=127.0.0.1`, 'start']);
    },
    stop(mode = 'fast') { run('pg_ctl', ['-D', data, '-m', mode, '-w', '-t', '30', 'stop']); },
    destroy() {
      try { pg.stop('immediate'); } catch { /* already stopped */ }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  pg.start();
  return pg;
}
