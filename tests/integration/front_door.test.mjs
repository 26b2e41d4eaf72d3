// The front door's planning pool through the real daemon: every completion is parsed and
// tokenized on the lane-ordered pool (its access line carries the plan_queue phase), a lane
// whose planning queue is full is refused with a 503 naming the overload while another lane's
// requests are still served, and /metrics counts both exactly. The planning lane is the
// tenant's, or the tier's that the X-Llmux-Service-Tier header names; never the body's.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  KEYS, STORIES, defaultTenants, http, requireData, serverYaml, standardTenant, startDaemon,
  waitFor,
} from './harness.mjs';

const TIERED_KEY = 'sk-test-front-door-tiered';

const haveData = fs.existsSync(path.join(STORIES, 'config.json'));
let d;

before(async () => {
  if (!haveData) return;
  d = await startDaemon({
    tenants: defaultTenants(standardTenant('tiered', TIERED_KEY, `    max_queued_requests: 64
    service_tiers: { priority: premium, flex: batch }
`)),
    server: serverYaml({
      server: '  planning_threads: 1\n  planning_queue: 2',
      extra: 'telemetry: { log_file: llmux.log }\n',
    }),
  });
});
after(async () => { if (d) await d.stop(); });

const metric = (text, name, lane) => {
  const m = text.match(new RegExp(`^${name}\\{lane="${lane}"\\} (\\d+)$`, 'm'));
  return m ? Number(m[1]) : undefined;
};

test('a flooded lane is refused at its planning queue while the premium lane is served', async (t) => {
  if (!requireData(t)) return;
  // Each flood request costs its planner a long tokenization (a prompt far over the context,
  // so planning ends in a 400 and no engine work follows); 32 of them at once overflow the
  // batch lane's queue of 2 behind the single planning worker.
  const bigPrompt = 'Once upon a time there was a little dog. '.repeat(12000);
  const flood = Array.from({ length: 32 }, () =>
    http(d, 'POST', '/v1/completions', {
      key: KEYS.batch, body: { model: 'stories', prompt: bigPrompt, max_tokens: 1 },
    }));
  const premium = [];
  for (let i = 0; i < 4; ++i) {
    premium.push(await http(d, 'POST', '/v1/completions', {
      key: KEYS.premium,
      body: { model: 'stories', prompt: 'Once upon a time', max_tokens: 2, temperature: 0 },
    }));
  }
  const floodReplies = await Promise.all(flood);

  for (const r of premium) {
    assert.equal(r.status, 200, r.body);
    assert.equal(r.json.usage.completion_tokens, 2);
  }
  let overloaded = 0;
  for (const r of floodReplies) {
    if (r.status === 503) {
      ++overloaded;
      assert.equal(r.json.error.code, 'server_overloaded', r.body);
      assert.match(r.json.error.message, /2 requests of this lane are waiting to be planned/);
      assert.equal(r.headers.get('retry-after'), '1');
    } else {
      assert.equal(r.status, 400, r.body);
      assert.equal(r.json.error.code, 'context_length_exceeded');
    }
  }
  assert.ok(overloaded >= 1, 'no flood request found the batch lane\'s planning queue full');

  const m = await http(d, 'GET', '/metrics', { key: KEYS.admin });
  assert.equal(m.status, 200);
  assert.equal(metric(m.body, 'llmux_planning_refused_total', 'batch'), overloaded);
  assert.equal(metric(m.body, 'llmux_planning_refused_total', 'premium'), 0);
  assert.equal(metric(m.body, 'llmux_planning_started_total', 'batch'), 32 - overloaded);
  assert.equal(metric(m.body, 'llmux_planning_started_total', 'premium'), 4);
  for (const lane of ['premium', 'standard', 'batch']) {
    assert.equal(metric(m.body, 'llmux_planning_queue_depth', lane), 0, lane);
    // Nothing else in flight: the I/O threads' lane queue is empty (the scrape itself runs).
    assert.equal(metric(m.body, 'llmux_io_queue_depth', lane), 0, lane);
  }
});

test('a completion\'s access line has its wait for a planner as the plan_queue phase', async (t) => {
  if (!requireData(t)) return;
  const r = await http(d, 'POST', '/v1/completions', {
    key: KEYS.premium,
    headers: { 'x-request-id': 'front-door-phases' },
    body: { model: 'stories', prompt: 'The little dog', max_tokens: 1 },
  });
  assert.equal(r.status, 200, r.body);
  const line = await waitFor(() => fs.readFileSync(path.join(d.dir, 'llmux.log'), 'utf8')
    .split('\n').filter((l) => l !== '').map((l) => JSON.parse(l))
    .find((l) => l.event === 'access' && l.x_request_id === 'front-door-phases'), 10000, 'access line');
  assert.deepEqual(Object.keys(line.phases_us).slice(0, 4), ['auth', 'plan_queue', 'parse', 'tokenize']);
});

test('X-Llmux-Service-Tier plans a call in its tier\'s lane; a body\'s service_tier cannot raise it', async (t) => {
  if (!requireData(t)) return;
  const started = async () => {
    const m = await http(d, 'GET', '/metrics', { key: KEYS.admin });
    assert.equal(m.status, 200);
    return Object.fromEntries(['premium', 'standard', 'batch'].map(
      (lane) => [lane, metric(m.body, 'llmux_planning_started_total', lane)]));
  };
  const complete = (headers, body) => http(d, 'POST', '/v1/completions', {
    key: TIERED_KEY, headers, body: { model: 'stories', prompt: 'Once', max_tokens: 1, ...body },
  });
  const delta = (a, b) => Object.fromEntries(Object.keys(a).map((k) => [k, b[k] - a[k]]));

  // The header's tier: planned in premium (the tier's lane), served in it.
  let before = await started();
  let r = await complete({ 'x-llmux-service-tier': 'priority' }, {});
  assert.equal(r.status, 200, r.body);
  assert.equal(r.json.service_tier, 'priority');
  assert.deepEqual(delta(before, await started()), { premium: 1, standard: 0, batch: 0 });

  // The body's tier alone: served in premium, but planned in the tenant's own lane (standard).
  before = await started();
  r = await complete({}, { service_tier: 'priority' });
  assert.equal(r.status, 200, r.body);
  assert.equal(r.json.service_tier, 'priority');
  assert.deepEqual(delta(before, await started()), { premium: 0, standard: 1, batch: 0 });

  // A flex header plans in batch; the same tier in the body agrees.
  before = await started();
  r = await complete({ 'x-llmux-service-tier': 'flex' }, { service_tier: 'flex' });
  assert.equal(r.status, 200, r.body);
  assert.equal(r.json.service_tier, 'flex');
  assert.deepEqual(delta(before, await started()), { premium: 0, standard: 0, batch: 1 });

  // Header and body naming different tiers: 400 after planning started (in the header's lane).
  r = await complete({ 'x-llmux-service-tier': 'flex' }, { service_tier: 'priority' });
  assert.equal(r.status, 400, r.body);
  assert.equal(r.json.error.param, 'service_tier');
  assert.match(r.json.error.message, /differs from the X-Llmux-Service-Tier header 'flex'/);

  // A tier the tenant may not use, or no tier at all, is refused before planning.
  before = await started();
  r = await http(d, 'POST', '/v1/completions', {
    key: KEYS.batch, headers: { 'x-llmux-service-tier': 'priority' },
    body: { model: 'stories', prompt: 'Once', max_tokens: 1 },
  });
  assert.equal(r.status, 403, r.body);
  assert.equal(r.json.error.code, 'service_tier_not_allowed');
  assert.equal(r.json.error.param, 'X-Llmux-Service-Tier');
  r = await complete({ 'x-llmux-service-tier': 'gold' }, {});
  assert.equal(r.status, 400, r.body);
  assert.equal(r.json.error.param, 'X-Llmux-Service-Tier');
  assert.deepEqual(delta(before, await started()), { premium: 0, standard: 0, batch: 0 });
});
