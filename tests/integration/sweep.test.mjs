// `llmux-bench sweep` on a small real run (stories260K on the CPU backend, a fresh llmuxd per
// level): the curve's monotonic properties (throughput rises with concurrency until it
// saturates; latency never falls), the engine-second figures from /metrics, the knee and the
// files it writes (JSON and, with gnuplot, PNG).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BUILD_DIR, STORIES, requireData, sha256 } from './harness.mjs';

const scenario = `name: small
seed: 1
api: completions
prompt: ids
token_ids: [16, 200]
admin_key: sk-sweep-admin
drain: 30s
server:
  llmux_yaml: |
    server:
      io_threads: 1
      admin_api_keys: [ { sha256: ${sha256('sk-sweep-admin')} } ]
    engine:
      backend: cpu
      threads: 1
      kv_cache_tokens: 16384
      max_batched_tokens: 1024
      max_seqs: 32
    tenants_file: tenants.yaml
  tenants_yaml: |
    lanes: [ { name: standard } ]
    tenants:
      a:
        api_keys: [ { sha256: ${sha256('sk-sweep-a')} } ]
        max_inflight_tokens: 1000000
        max_queued_requests: 1000
tenants:
  a: { key: sk-sweep-a, concurrency: 1, prompt_len: 16, output_len: 32, slo: { ttft_ms: 5000, tpot_ms: 1000 } }
runs:
  - name: main
    tenants: [a]
    duration: 3s
`;

const haveGnuplot = spawnSync('sh', ['-c', 'command -v gnuplot']).status === 0;

test('sweep: throughput rises then saturates, latency never falls, the knee and its settings', async (t) => {
  if (!requireData(t)) return;
  if (!haveGnuplot && process.env.CI === 'true') throw new Error('gnuplot missing under CI=true');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmux-sweep-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'small.yaml'), scenario);
  const r = spawnSync(path.join(BUILD_DIR, 'llmux-bench'), ['sweep', '--scenario', path.join(dir, 'small.yaml'),
    '--llmuxd', path.join(BUILD_DIR, 'llmuxd'), '--model-dir', STORIES, '--concurrency', '1,4,16',
    '--slo-ttft-ms', '5000', '--out', path.join(dir, 'out'), '--work', path.join(dir, 'work')],
  { encoding: 'utf8', timeout: 240000 });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const j = JSON.parse(fs.readFileSync(path.join(dir, 'out', 'small_shared.json'), 'utf8'));
  assert.equal(j.pool, 'shared');
  assert.equal(j.tenant, 'a');
  assert.deepEqual(j.points.map((p) => p.concurrency), [1, 4, 16]);
  for (const p of j.points) {
    assert.equal(p.failed, 0);
    assert.ok(p.completed > 0);
    // The engine is busy at most the wall time: tokens per engine-second >= tokens per second.
    assert.ok(p.engine_seconds > 0, JSON.stringify(p));
    assert.ok(p.tokens_per_engine_second >= 0.99 * p.total_tokens_per_s, JSON.stringify(p));
    assert.ok(p.batch_seqs_p99 >= 1 && p.batch_seqs_p99 <= 32, JSON.stringify(p));
  }
  const [c1, c4, c16] = j.points;
  // Events are timed as they arrive: one request alone gets its first of 32 tokens after one
  // prefill step, long before its last (a client that timed the whole stream at its end would
  // report TTFT = time per request).
  assert.ok(c1.ttft.median_ms < 0.5 * c1.time_per_request.median_ms, JSON.stringify(c1));
  // Throughput rises with concurrency until saturation (then it may flatten, not fall).
  assert.ok(c4.total_tokens_per_s > 1.2 * c1.total_tokens_per_s, `${c1.total_tokens_per_s} -> ${c4.total_tokens_per_s}`);
  assert.ok(c16.total_tokens_per_s >= 0.9 * c4.total_tokens_per_s, `${c4.total_tokens_per_s} -> ${c16.total_tokens_per_s}`);
  // Latency never falls as concurrency grows: medians, with 10% slack for timer noise (a p99
  // of a few seconds' run is one request, too noisy on a shared machine to order).
  for (const [a, b] of [[c1, c4], [c4, c16]]) {
    assert.ok(b.time_per_request.median_ms >= 0.9 * a.time_per_request.median_ms, JSON.stringify([a, b]));
    assert.ok(b.ttft.median_ms >= 0.9 * a.ttft.median_ms, JSON.stringify([a, b]));
  }
  // The knee: the highest throughput within the SLOs (all three are, with 5 s TTFT), and the
  // batch the engine ran there.
  const best = j.points.reduce((x, p) => (p.total_tokens_per_s > x.total_tokens_per_s ? p : x));
  assert.equal(j.knee.concurrency, best.concurrency);
  assert.equal(j.knee.max_seqs, best.batch_seqs_p99);
  assert.equal(j.knee.max_batched_tokens, best.batch_tokens_p99);
  assert.match(r.stdout, /shared: knee at concurrency \d+: /);
  if (haveGnuplot) {
    const png = fs.readFileSync(path.join(dir, 'out', 'small_shared.png'));
    assert.deepEqual([...png.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47]);  // a PNG
  }
});
