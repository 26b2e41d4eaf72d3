// KV-cache events in vLLM's ZeroMQ format (docs/kv_events.md) from the real llmuxd, read by a
// Python subscriber written with Debian's python3-zmq and python3-msgpack, the way a
// prefix-aware router reads them. Loopback only; stories260K-hf on the CPU backend.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  KEYS, adminStats, defaultTenants, freePort, http, requireData, rng, serverYaml, standardTenant,
  startDaemon, waitFor,
} from './harness.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PYTHON = '/usr/bin/python3';  // Debian's, with python3-zmq and python3-msgpack
const BLOCK = 16;
const GROUP_KEY = 'sk-test-kv-g1';

// A prompt of 4 full blocks of token ids (vocabulary 512), fixed seed.
const next = rng(13);
const PROMPT = Array.from({ length: 4 * BLOCK }, () => 1 + Math.floor(next() * 500));

let d;
let pubEndpoint;
let replayEndpoint;

// Starts llmuxd publishing KV events in `format` ("array" or "map") on free loopback ports.
async function startPublishingDaemon(format) {
  pubEndpoint = `tcp://127.0.0.1:${await freePort()}`;
  replayEndpoint = `tcp://127.0.0.1:${await freePort()}`;
  const tenants = defaultTenants(standardTenant('grouped', GROUP_KEY, `    prefix_cache: shared:g1
`));
  d = await startDaemon({
    tenants,
    server: serverYaml({
      engine: `  kv_events: { endpoint: "${pubEndpoint}", replay_endpoint: "${replayEndpoint}", ` +
              `topic: "kv@stories", buffer_batches: 10000, format: ${format} }\n`,
    }),
  });
}

after(async () => { if (d) await d.stop(); });

// Starts the subscriber; resolves with { ready, finish() } once it printed READY.
async function startSubscriber() {
  const proc = spawn(PYTHON, [path.join(HERE, 'kv_events_subscriber.py'), '--endpoint', pubEndpoint,
    '--replay', replayEndpoint, '--replay-from', '0'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout.on('data', (c) => { out += c.toString(); });
  proc.stderr.on('data', (c) => { err += c.toString(); });
  const exited = new Promise((resolve) => proc.on('exit', (code) => resolve(code)));
  await waitFor(() => out.includes('READY') || out.includes('MISSING') || proc.exitCode !== null,
    20000, 'subscriber start');
  return {
    missing: out.includes('MISSING') ? out.trim() : null,
    async finish() {
      proc.stdin.write('stop\n');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 60000);
      const code = await exited;
      clearTimeout(timer);
      assert.equal(code, 0, `subscriber failed (${code}):\n${err}\n${out}`);
      return JSON.parse(out.slice(out.indexOf('\n') + 1));
    },
  };
}

const complete = (key, prompt) => http(d, 'POST', '/v1/completions', {
  key, body: { model: 'stories', prompt, max_tokens: 1, temperature: 0 },
});

for (const format of ['array', 'map']) {
test(`${format}: BlockStored events carry each tenant's scope and hashes; replay returns missed batches`,
  async (t) => {
    if (!requireData(t)) return;
    await startPublishingDaemon(format);
    const sub = await startSubscriber();
    if (sub.missing) {
      if (process.env.CI === 'true') assert.fail(`python3-zmq/msgpack missing under CI=true: ${sub.missing}`);
      t.skip(`SKIPPED: ${sub.missing} (apt-get install python3-zmq python3-msgpack)`);
      return;
    }
    // Two tenants (each with its own private cache) and a shared-group tenant send the same
    // 4-block prompt at the same time; then tenant premium repeats it (a hit: nothing new).
    const rs = await Promise.all([KEYS.premium, KEYS.batch, GROUP_KEY].map((k) => complete(k, PROMPT)));
    for (const r of rs) assert.equal(r.status, 200, r.body);
    const again = await complete(KEYS.premium, PROMPT);
    assert.equal(again.status, 200, again.body);
    const stats = await waitFor(async () => {
      const s = await adminStats(d);
      return s.running === 0 && s.waiting === 0 ? s : null;
    }, 20000, 'idle engine');
    const got = await sub.finish();

    // Live: topic, consecutive sequence numbers, vLLM batch shape.
    assert.ok(got.live.length > 0, 'received batches');
    for (let i = 0; i < got.live.length; i++) {
      assert.equal(got.live[i].topic, 'kv@stories');
      if (i > 0) assert.equal(got.live[i].seq, got.live[i - 1].seq + 1, 'sequence numbers increase by 1');
      assert.equal(got.live[i].rank, 0);
      assert.equal(typeof got.live[i].ts, 'number');
      if (got.live[i].events.length) assert.deepEqual(got.live[i].shapes, [format]);
    }
    // Everything since start-up (replay from 0, checked against the live stream below).
    const stored = got.replay.flatMap((b) => b.events).filter((e) => e[0] === 'BlockStored');
    const byScope = {};
    for (const e of stored) {
      assert.equal(e.length, 9, `BlockStored fields: ${JSON.stringify(e)}`);
      const [, hashes, parent, tokens, blockSize, loraId, medium, loraName, extraKeys] = e;
      assert.equal(blockSize, BLOCK);
      assert.equal(hashes.length, 1);
      assert.equal(tokens.length, BLOCK);
      assert.equal(loraId, null);
      assert.equal(loraName, null);
      assert.equal(medium, 'CPU');
      assert.equal(extraKeys.length, 1);
      const scope = extraKeys[0][0];
      (byScope[scope] ??= []).push({ hash: hashes[0], parent, tokens });
    }
    assert.deepEqual(Object.keys(byScope).sort(), ['group:g1', 'tenant:batch', 'tenant:premium']);
    for (const [scope, blocks] of Object.entries(byScope)) {
      // Exactly the prompt's 4 full blocks, in chain order, each with the prompt's tokens.
      assert.equal(blocks.length, PROMPT.length / BLOCK, `${scope}: stored blocks`);
      blocks.forEach((b, i) => {
        assert.deepEqual(b.tokens, PROMPT.slice(i * BLOCK, (i + 1) * BLOCK), `${scope} block ${i}`);
        assert.equal(b.parent, i === 0 ? null : blocks[i - 1].hash, `${scope} block ${i} parent`);
      });
    }
    // Identical prompts, different scopes: no hash in common.
    const hashSets = Object.values(byScope).map((bs) => new Set(bs.map((b) => b.hash)));
    for (let i = 0; i < hashSets.length; i++) {
      for (let j = i + 1; j < hashSets.length; j++) {
        assert.equal([...hashSets[i]].filter((h) => hashSets[j].has(h)).length, 0);
      }
    }

    // Replay from 0: the AllBlocksCleared the daemon sent at start (before the subscriber
    // connected) and every batch seen live, byte-identical after decoding.
    assert.equal(got.replay_end, -1);
    assert.equal(got.replay[0].seq, 0);
    assert.deepEqual(got.replay[0].events, [['AllBlocksCleared']]);
    got.replay.forEach((b, i) => assert.equal(b.seq, i));
    const firstLive = got.live[0].seq;
    assert.ok(firstLive > 0, 'the start-up batch was missed live');
    for (const b of got.live) {
      assert.deepEqual(got.replay[b.seq].events, b.events, `replayed batch ${b.seq}`);
      assert.equal(got.replay[b.seq].ts, b.ts);
    }
    assert.equal(got.replay.length, got.live[got.live.length - 1].seq + 1);

    // The daemon's own counters agree.
    const published = got.replay.reduce((n, b) => n + b.events.length, 0);
    const s = await adminStats(d);
    assert.equal(s.kv_events_published, published);
    assert.equal(s.kv_events_dropped, 0);
    assert.ok(stats.prefix_hit_tokens > 0);
    const metrics = await http(d, 'GET', '/metrics', { key: KEYS.admin });
    assert.match(metrics.body, new RegExp(`llmux_kv_events_published_total\\{[^}]*\\} ${published}\\b`));
    assert.match(metrics.body, /llmux_kv_events_dropped_total\{[^}]*\} 0\b/);
    await d.stop();
    d = undefined;
  });
}

test('a bad kv_events endpoint is a config error naming the key', async (t) => {
  if (!requireData(t)) return;
  const { daemonStartFailure } = await import('./harness.mjs');
  const r = await daemonStartFailure({
    tenants: defaultTenants(),
    server: serverYaml({ engine: '  kv_events: { endpoint: "127.0.0.1:5557" }\n' }),
  });
  assert.notEqual(r.code, 0);
  assert.match(r.logs, /endpoint/);
  assert.match(r.logs, /expected a ZeroMQ endpoint/);
});
