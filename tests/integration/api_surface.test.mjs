// The OpenAI surface applications use, against the real daemon with the official openai
// client: the Responses API (responses.create / responses.stream), service tiers mapped to
// lanes (and billed at the tier's prices in the ledger), models.retrieve, system_fingerprint,
// x-request-id, logprob token texts, and the max_tokens cap. The tenant `forced` runs with the
// test-only hook LLMUX_TEST_FORCE_TOKENS (a fixed reply, then EOS) so that a reply that ends
// by itself is deterministic.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import OpenAI from 'openai';
import {
  KEYS, STORIES, adminStats, defaultTenants, http, requireData, serverYaml, standardTenant,
  startDaemon, tokenize, waitFor,
} from './harness.mjs';

const TIERED_KEY = 'sk-test-tiered';
const FORCED_KEY = 'sk-test-forced';
const FORCED_TEXT = 'Tom had a red ball.';
const EOS = 2;

let d;

// Rows of the usage ledger (SQLite), via the Python standard library.
function ledgerRows() {
  const db = path.join(d.dir, 'usage.db');
  const py = `import json, sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.row_factory = sqlite3.Row
print(json.dumps([dict(r) for r in c.execute("SELECT * FROM usage ORDER BY id")]))`;
  return JSON.parse(execFileSync('python3', ['-c', py, db]).toString());
}

before(async () => {
  if (!fs.existsSync(path.join(STORIES, 'config.json'))) return;
  d = await startDaemon({
    server: serverYaml({ engine: '  max_seqs: 1\n', extra: 'telemetry: { usage_db: usage.db }\n' }).replace('  max_seqs: 16\n', ''),
    tenants: defaultTenants(standardTenant('tiered', TIERED_KEY, `    max_queued_requests: 64
    max_tokens_per_request: 300
    prices: { input_per_mtok: 2, output_per_mtok: 4 }
    service_tiers:
      priority: premium
      flex: { lane: batch, prices: { input_per_mtok: 0.5, output_per_mtok: 1 } }
`) + standardTenant('forced', FORCED_KEY)),
    binary: 'llmuxd-test',
    env: { LLMUX_TEST_FORCE_TOKENS: `forced:${[...tokenize(FORCED_TEXT), EOS].join(',')}` },
  });
});
after(async () => { if (d) await d.stop(); });

const client = (key, opts = {}) => new OpenAI({ apiKey: key, baseURL: `${d.url}/v1`, maxRetries: 0, ...opts });

test('responses.create: string input, instructions, usage, incomplete at max_output_tokens', async (t) => {
  if (!requireData(t)) return;
  const r = await client(KEYS.premium).responses.create({
    model: 'stories', input: 'Once upon a time', instructions: 'Tell a story.', max_output_tokens: 8,
    temperature: 0, store: false,
  });
  assert.match(r.id, /^resp_[0-9a-f]{32}$/);
  assert.equal(r.object, 'response');
  assert.equal(r.status, 'incomplete');
  assert.deepEqual(r.incomplete_details, { reason: 'max_output_tokens' });
  assert.equal(r.instructions, 'Tell a story.');
  assert.equal(r.max_output_tokens, 8);
  assert.equal(r.store, false);
  assert.equal(r.output.length, 1);
  assert.equal(r.output[0].type, 'message');
  assert.equal(r.output[0].role, 'assistant');
  assert.equal(r.output[0].content[0].type, 'output_text');
  assert.equal(r.output_text, r.output[0].content[0].text);
  assert.ok(r.output_text.length > 0);
  assert.equal(r.usage.output_tokens, 8);
  assert.equal(r.usage.total_tokens, r.usage.input_tokens + 8);
  // Same engine path as chat: the equivalent chat request gives the same text and tokens.
  const chat = await client(KEYS.premium).chat.completions.create({
    model: 'stories', messages: [{ role: 'system', content: 'Tell a story.' }, { role: 'user', content: 'Once upon a time' }],
    max_tokens: 8, temperature: 0,
  });
  assert.equal(r.output_text, chat.choices[0].message.content);
  assert.equal(r.usage.input_tokens, chat.usage.prompt_tokens);
});

test('responses.create: message items and function_call / function_call_output items', async (t) => {
  if (!requireData(t)) return;
  const r = await client(FORCED_KEY).responses.create({
    model: 'stories',
    input: [
      { role: 'user', content: [{ type: 'input_text', text: 'Weather?' }] },
      { type: 'function_call', call_id: 'call_1', name: 'get_weather', arguments: '{"city": "Paris"}' },
      { type: 'function_call_output', call_id: 'call_1', output: '{"temp": 21}' },
    ],
    max_output_tokens: 40,
  });
  assert.equal(r.status, 'completed');
  assert.equal(r.incomplete_details, null);
  assert.equal(r.output_text, FORCED_TEXT);
  assert.equal(r.usage.output_tokens, tokenize(FORCED_TEXT).length + 1);  // + EOS
});

test('responses.stream: the typed event sequence, deltas that add up, response.completed', async (t) => {
  if (!requireData(t)) return;
  const stream = client(FORCED_KEY).responses.stream({ model: 'stories', input: 'Hi', max_output_tokens: 40 });
  const types = [];
  let deltas = '';
  const seqs = [];
  for await (const e of stream) {
    types.push(e.type);
    seqs.push(e.sequence_number);
    if (e.type === 'response.output_text.delta') deltas += e.delta;
  }
  const final = await stream.finalResponse();
  const collapsed = types.filter((x, i) => x !== types[i - 1]);
  assert.deepEqual(collapsed, [
    'response.created', 'response.in_progress', 'response.output_item.added',
    'response.content_part.added', 'response.output_text.delta', 'response.output_text.done',
    'response.content_part.done', 'response.output_item.done', 'response.completed',
  ]);
  assert.deepEqual(seqs, seqs.map((_, i) => i));
  assert.equal(deltas, FORCED_TEXT);
  assert.equal(final.output[0].content[0].text, FORCED_TEXT);
  assert.equal(final.status, 'completed');
  assert.equal(final.usage.total_tokens, final.usage.input_tokens + final.usage.output_tokens);
});

test('responses: store, previous_response_id and bad fields are 400s naming the field', async (t) => {
  if (!requireData(t)) return;
  const rows = [
    [{ input: 'x', store: true }, 'store'],
    [{ input: 'x', previous_response_id: 'resp_1' }, 'previous_response_id'],
    [{}, 'input'],
    [{ input: 5 }, 'input'],
    [{ input: [{ type: 'image', url: 'x' }] }, 'input[0].type'],
    [{ input: 'x', max_output_tokens: 0 }, 'max_output_tokens'],
    [{ input: 'x', temperature: 'hot' }, 'temperature'],
    [{ input: 'x', tools: [{ type: 'web_search' }] }, 'tools[0].type'],
    [{ input: 'x', text: { format: { type: 'yaml' } } }, 'text.format.type'],
  ];
  for (const [body, param] of rows) {
    const r = await http(d, 'POST', '/v1/responses', { key: KEYS.premium, body });
    assert.equal(r.status, 400, `${JSON.stringify(body)}: ${r.body}`);
    assert.equal(r.json.error.param, param, `${JSON.stringify(body)}: ${r.body}`);
  }
});

test('service_tier: a priority request of a tenant is admitted ahead of its flex ones', async (t) => {
  if (!requireData(t)) return;
  // max_seqs 1: requests run one at a time, so completion order is admission order. A premium
  // request holds the only slot while the tenant queues flex work and then one priority call.
  // n = 8 choices of 500 tokens each, one at a time: a few seconds of engine work.
  const blocker = client(KEYS.premium).completions.create({ model: 'stories', prompt: 'Once', max_tokens: 500, n: 8, temperature: 0, ignore_eos: true });
  await waitFor(async () => (await adminStats(d)).running === 1, 10000, 'blocker running');
  const done = [];
  const c = client(TIERED_KEY);
  const flex = [1, 2, 3].map((i) => c.completions.create({ model: 'stories', prompt: 'Once', max_tokens: 4, service_tier: 'flex' })
    .then((r) => { done.push(`flex${i}`); return r; }));
  await waitFor(async () => (await adminStats(d)).tenants.tiered.waiting === 3, 10000, 'flex queued');
  const prio = c.completions.create({ model: 'stories', prompt: 'Once', max_tokens: 4, service_tier: 'priority' })
    .then((r) => { done.push('priority'); return r; });
  const [p, ...f] = await Promise.all([prio, ...flex, blocker]);
  assert.equal(done[0], 'priority', done.join(','));
  assert.equal(p.service_tier, 'priority');
  assert.equal(f[0].service_tier, 'flex');
  // The ledger bills each at its tier's lane and prices.
  const rows = ledgerRows().filter((r) => r.tenant === 'tiered');
  const byId = Object.fromEntries(rows.map((r) => [r.request_id, r]));
  assert.equal(byId[p.id].lane, 'premium');
  assert.equal(byId[p.id].cost_nano, Math.round((byId[p.id].prompt_tokens * 2e9 + byId[p.id].completion_tokens * 4e9) / 1e6));
  assert.equal(byId[f[0].id].lane, 'batch');
  assert.equal(byId[f[0].id].cost_nano, Math.round((byId[f[0].id].prompt_tokens * 0.5e9 + byId[f[0].id].completion_tokens * 1e9) / 1e6));
});

test('service_tier: default/auto use the tenant lane; a tier the tenant lacks is 403 listing the allowed ones', async (t) => {
  if (!requireData(t)) return;
  const r = await client(TIERED_KEY).chat.completions.create({
    model: 'stories', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2, service_tier: 'auto',
  });
  assert.equal(r.service_tier, 'default');
  const res = await http(d, 'POST', '/v1/chat/completions', {
    key: KEYS.batch, body: { messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2, service_tier: 'priority' },
  });
  assert.equal(res.status, 403, res.body);
  assert.equal(res.json.error.param, 'service_tier');
  assert.match(res.json.error.message, /allowed: auto, default\)/);
  const ok = await http(d, 'POST', '/v1/chat/completions', {
    key: TIERED_KEY, body: { messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2, service_tier: 'gold' },
  });
  assert.equal(ok.status, 400);
});

test('models.retrieve, created, system_fingerprint', async (t) => {
  if (!requireData(t)) return;
  const m = await client(KEYS.premium).models.retrieve('stories');
  assert.equal(m.id, 'stories');
  assert.equal(m.object, 'model');
  const now = Math.floor(Date.now() / 1000);
  assert.ok(m.created > now - 3600 && m.created <= now, `created ${m.created}`);
  const list = await client(KEYS.premium).models.list();
  assert.equal(list.data[0].created, m.created);
  await assert.rejects(client(KEYS.premium).models.retrieve('gpt-9'), (e) => e.status === 404 && e.code === 'model_not_found');
  const c = await client(KEYS.premium).completions.create({ model: 'stories', prompt: 'Once', max_tokens: 2 });
  const chat = await client(KEYS.premium).chat.completions.create({ model: 'stories', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2 });
  assert.match(c.system_fingerprint, /^fp_[0-9a-f]{12}$/);
  assert.equal(chat.system_fingerprint, c.system_fingerprint);
});

test('x-request-id: a sane client id is echoed and stored in the ledger; otherwise one is generated', async (t) => {
  if (!requireData(t)) return;
  const body = { prompt: 'Once', max_tokens: 2 };
  const echoed = await http(d, 'POST', '/v1/completions', { key: KEYS.premium, body, headers: { 'x-request-id': 'client-id-42' } });
  assert.equal(echoed.status, 200);
  assert.equal(echoed.headers.get('x-request-id'), 'client-id-42');
  const generated = await http(d, 'POST', '/v1/completions', { key: KEYS.premium, body, headers: { 'x-request-id': 'bad id with spaces' } });
  assert.match(generated.headers.get('x-request-id'), /^req-[0-9a-f]{16}$/);
  const long = await http(d, 'POST', '/v1/completions', { key: KEYS.premium, body, headers: { 'x-request-id': 'a'.repeat(129) } });
  assert.match(long.headers.get('x-request-id'), /^req-/);
  const err = await http(d, 'POST', '/v1/completions', { key: KEYS.premium, body: '{', headers: { 'x-request-id': 'err-1' } });
  assert.equal(err.headers.get('x-request-id'), 'err-1');
  const streamed = await fetch(`${d.url}/v1/completions`, {
    method: 'POST', headers: { authorization: `Bearer ${KEYS.premium}`, 'content-type': 'application/json', 'x-request-id': 'stream-7' },
    body: JSON.stringify({ ...body, stream: true }),
  });
  assert.equal(streamed.headers.get('x-request-id'), 'stream-7');
  await streamed.text();
  await waitFor(() => ledgerRows().some((r) => r.x_request_id === 'stream-7'), 10000, 'ledger row');
  const rows = ledgerRows();
  const row = rows.find((r) => r.x_request_id === 'client-id-42');
  assert.ok(row, JSON.stringify(rows.slice(-3)));
  assert.equal(row.request_id, echoed.json.id);
  assert.equal(rows.find((r) => r.request_id === generated.json.id).x_request_id, generated.headers.get('x-request-id'));
});

test('logprob tokens keep their leading space and bytes; completions top_logprobs has 20 distinct entries', async (t) => {
  if (!requireData(t)) return;
  const chat = await client(KEYS.premium).chat.completions.create({
    model: 'stories', messages: [{ role: 'user', content: 'Once upon a time' }], max_tokens: 12, temperature: 0,
    logprobs: true, top_logprobs: 5,
  });
  const content = chat.choices[0].logprobs.content;
  const joined = content.map((c) => c.token).join('');
  assert.ok([chat.choices[0].message.content, ' ' + chat.choices[0].message.content].includes(joined), joined);
  assert.ok(content.slice(1).some((c) => c.token.startsWith(' ')), JSON.stringify(content.map((c) => c.token)));
  for (const c of content) assert.deepEqual(c.bytes, [...Buffer.from(c.token, 'utf8')]);
  const comp = await client(KEYS.premium).completions.create({
    model: 'stories', prompt: 'Once upon a time', max_tokens: 6, temperature: 0, logprobs: 20,
  });
  const lp = comp.choices[0].logprobs;
  // The text of a reply drops the space of its first "▁" token; the token keeps it.
  assert.ok([comp.choices[0].text, ' ' + comp.choices[0].text].includes(lp.tokens.join('')), JSON.stringify(lp.tokens));
  for (const top of lp.top_logprobs) assert.equal(Object.keys(top).length, 20, JSON.stringify(top));
});

test('max_tokens above the tenant cap is a 400 naming the cap; 2^64 is out of range', async (t) => {
  if (!requireData(t)) return;
  const r = await http(d, 'POST', '/v1/completions', { key: TIERED_KEY, body: { prompt: 'Once', max_tokens: 301 } });
  assert.equal(r.status, 400, r.body);
  assert.equal(r.json.error.param, 'max_tokens');
  assert.match(r.json.error.message, /at most 300/);
  const ok = await http(d, 'POST', '/v1/completions', { key: TIERED_KEY, body: { prompt: 'Once', max_tokens: 300, ignore_eos: true } });
  assert.equal(ok.status, 200, ok.body);
  assert.equal(ok.json.usage.completion_tokens, 300);
  const big = await http(d, 'POST', '/v1/completions', { key: KEYS.premium, body: '{"prompt":"x","max_tokens":18446744073709551616}' });
  assert.equal(big.status, 400);
  assert.equal(big.json.error.param, 'max_tokens');
  assert.match(big.json.error.message, /out of range/);
  const syntax = await http(d, 'POST', '/v1/completions', { key: KEYS.premium, body: '{"prompt":"x" "max_tokens":2}' });
  assert.equal(syntax.status, 400);
  assert.equal(syntax.json.error.param, null);
});

test('tools on a model whose template has no tool-call format are refused naming tools', async (t) => {
  if (!requireData(t)) return;
  const tools = [{ type: 'function', function: { name: 'f' } }];
  const r = await http(d, 'POST', '/v1/chat/completions', { key: KEYS.premium, body: { messages: [{ role: 'user', content: 'Hi' }], tools, max_tokens: 1 } });
  assert.equal(r.status, 400, r.body);
  assert.equal(r.json.error.param, 'tools');
  const none = await http(d, 'POST', '/v1/chat/completions', { key: KEYS.premium, body: { messages: [{ role: 'user', content: 'Hi' }], tools, tool_choice: 'none', max_tokens: 1 } });
  assert.equal(none.status, 200, none.body);
});
