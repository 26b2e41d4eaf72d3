// llmuxd end to end: the official openai client and raw HTTP against the real daemon on
// 127.0.0.1, serving stories260K-hf on the CPU backend.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import {
  BUILD_DIR, KEYS, STORIES, defaultTenants, expectedGreedy, http, requireData, serverYaml, sha256,
  startDaemon, waitFor,
} from './harness.mjs';

let d;
const client = (key) => new OpenAI({ apiKey: key, baseURL: `${d.url}/v1`, maxRetries: 0 });

before(async () => {
  if (!fs.existsSync(path.join(STORIES, 'config.json'))) return;
  d = await startDaemon();
});
after(async () => { if (d) await d.stop(); });

const PROMPT = 'Once upon a time';

test('chat completion at temperature 0 continues the reference greedy text', async (t) => {
  if (!requireData(t)) return;
  const r = await client(KEYS.premium).chat.completions.create({
    model: 'stories', messages: [{ role: 'user', content: PROMPT }], temperature: 0, max_tokens: 30,
  });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage.prompt_tokens, 5);  // <s>Once upon a time -> [1,403,407,261,378]
  assert.equal(r.usage.completion_tokens, 30);
  assert.equal(r.usage.total_tokens, 35);
  const content = r.choices[0].message.content;
  assert.ok(content.length > 20);
  assert.ok(expectedGreedy().text.startsWith(PROMPT + content), `got ${JSON.stringify(content)}`);
});

test('streamed text equals non-streamed text, with include_usage', async (t) => {
  if (!requireData(t)) return;
  const c = client(KEYS.premium);
  const params = { model: 'stories', prompt: PROMPT, temperature: 0, max_tokens: 40 };
  const whole = await c.completions.create(params);
  const stream = await c.completions.create({ ...params, stream: true, stream_options: { include_usage: true } });
  let text = '';
  let usage = null;
  let finish = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const ch of chunk.choices) {
      text += ch.text;
      if (ch.finish_reason) finish = ch.finish_reason;
    }
  }
  assert.equal(text, whole.choices[0].text);
  assert.equal(finish, 'length');
  assert.deepEqual(usage.completion_tokens, 40);
  assert.equal(usage.prompt_tokens, whole.usage.prompt_tokens);

  const chat = await c.chat.completions.create({
    model: 'stories', messages: [{ role: 'user', content: PROMPT }], temperature: 0, max_tokens: 25,
  });
  const chatStream = await c.chat.completions.create({
    model: 'stories', messages: [{ role: 'user', content: PROMPT }], temperature: 0, max_tokens: 25, stream: true,
  });
  let chatText = '';
  for await (const chunk of chatStream) for (const ch of chunk.choices) chatText += ch.delta.content ?? '';
  assert.equal(chatText, chat.choices[0].message.content);
});

test('n > 1 with a seed gives n choices, reproducibly', async (t) => {
  if (!requireData(t)) return;
  const c = client(KEYS.premium);
  const params = { model: 'stories', prompt: PROMPT, temperature: 1, n: 3, seed: 7, max_tokens: 12 };
  const a = await c.completions.create(params);
  const b = await c.completions.create(params);
  assert.equal(a.choices.length, 3);
  assert.deepEqual(a.choices.map((x) => x.index), [0, 1, 2]);
  assert.deepEqual(a.choices.map((x) => x.text), b.choices.map((x) => x.text));
  assert.equal(a.usage.completion_tokens, 36);
  assert.equal(a.usage.prompt_tokens, 5);
});

test('stop strings end the text before the stop string', async (t) => {
  if (!requireData(t)) return;
  const r = await client(KEYS.premium).completions.create({
    model: 'stories', prompt: PROMPT, temperature: 0, max_tokens: 60, stop: ['Lily'],
  });
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.equal(r.choices[0].text, ', there was a little girl named ');
});

test('401 without a valid key, on every tenant route', async (t) => {
  if (!requireData(t)) return;
  for (const [m, p] of [['POST', '/v1/chat/completions'], ['POST', '/v1/completions'], ['GET', '/v1/models'],
    ['POST', '/admin/reload'], ['GET', '/admin/stats']]) {
    for (const key of [undefined, 'sk-wrong']) {
      const r = await http(d, m, p, { key, body: m === 'POST' ? {} : undefined });
      assert.equal(r.status, 401, `${m} ${p} key=${key}`);
      assert.equal(r.json.error.type, 'authentication_error');
      assert.ok(!r.body.includes('sk-wrong'));
    }
  }
  // A tenant key is not an admin key.
  const r = await http(d, 'GET', '/admin/stats', { key: KEYS.premium });
  assert.equal(r.status, 403);
});

test('400s name the offending field', async (t) => {
  if (!requireData(t)) return;
  const cases = [
    [{ model: 'stories', prompt: PROMPT, temperature: -1 }, 'temperature'],
    [{ model: 'stories', prompt: PROMPT, temperature: 'hot' }, 'temperature'],
    [{ model: 'stories', prompt: PROMPT, top_p: 1.5 }, 'top_p'],
    [{ model: 'stories', prompt: PROMPT, n: 100 }, 'n'],
    [{ model: 'stories', prompt: PROMPT, max_tokens: 0 }, 'max_tokens'],
    [{ model: 'stories', prompt: PROMPT, max_tokens: 600 }, 'prompt'],
    [{ model: 'stories', prompt: PROMPT, stop: ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'] }, 'stop'],
    [{ model: 'stories', prompt: PROMPT, logit_bias: { 99999: 1 } }, 'logit_bias'],
    [{ model: 'stories', prompt: PROMPT, tools: [{ type: 'function' }] }, 'tools'],
    [{ model: 'stories', prompt: PROMPT, best_of: 2 }, 'best_of'],
    [{ model: 'stories' }, 'prompt'],
  ];
  for (const [body, param] of cases) {
    const r = await http(d, 'POST', '/v1/completions', { key: KEYS.premium, body });
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.equal(r.json.error.param, param, JSON.stringify(body) + ' -> ' + r.body);
    assert.ok(r.json.error.message.length > 0);
  }
  const ctx = await http(d, 'POST', '/v1/completions', { key: KEYS.premium, body: { model: 'stories', prompt: PROMPT, max_tokens: 600 } });
  assert.equal(ctx.json.error.code, 'context_length_exceeded');
  assert.match(ctx.json.error.message, /maximum context length is 512 tokens.*605 tokens/);
  const bad = await http(d, 'POST', '/v1/chat/completions', { key: KEYS.premium, body: '{"messages": [' });
  assert.equal(bad.status, 400);
  const unknownModel = await http(d, 'POST', '/v1/completions', { key: KEYS.premium, body: { model: 'gpt-9', prompt: 'x' } });
  assert.equal(unknownModel.status, 404);
  assert.equal(unknownModel.json.error.code, 'model_not_found');
  // The next valid request still succeeds.
  const ok = await http(d, 'POST', '/v1/completions', { key: KEYS.premium, body: { model: 'stories', prompt: PROMPT, max_tokens: 2 } });
  assert.equal(ok.status, 200);
});

test('429 with a truthful Retry-After when the tenant rate limit is hit', async (t) => {
  if (!requireData(t)) return;
  const body = { model: 'stories', prompt: PROMPT, max_tokens: 2 };
  const first = await http(d, 'POST', '/v1/completions', { key: KEYS.limited, body });
  assert.equal(first.status, 200);
  const second = await http(d, 'POST', '/v1/completions', { key: KEYS.limited, body });
  assert.equal(second.status, 429);
  assert.equal(second.json.error.code, 'rate_limit_exceeded');
  const retry = Number(second.headers.get('retry-after'));
  assert.ok(retry >= 59 && retry <= 60, `retry-after ${retry}`);
});

test('/v1/models lists the served model', async (t) => {
  if (!requireData(t)) return;
  const models = await client(KEYS.batch).models.list();
  assert.deepEqual(models.data.map((m) => m.id), ['stories']);
});

test('a client disconnecting mid-stream frees its blocks and budget', async (t) => {
  if (!requireData(t)) return;
  const controller = new AbortController();
  const res = await fetch(`${d.url}/v1/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${KEYS.batch}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'stories', prompt: PROMPT, max_tokens: 400, ignore_eos: true, stream: true }),
    signal: controller.signal,
  });
  const reader = res.body.getReader();
  await reader.read();  // at least one chunk: the request is decoding
  const stats = async () => (await http(d, 'GET', '/admin/stats', { key: KEYS.admin })).json;
  const during = await stats();
  assert.ok(during.tenants.batch.blocks_in_use > 0);
  controller.abort();
  await waitFor(async () => {
    const s = await stats();
    return s.tenants.batch.blocks_in_use === 0 && s.tenants.batch.inflight_tokens === 0 && s.running === 0;
  }, 5000, 'blocks to be freed');
});

test('hot reload: a good file takes effect, a bad file is rejected and the old policy stays', async (t) => {
  if (!requireData(t)) return;
  const file = path.join(d.dir, 'tenants.yaml');
  const newKey = 'sk-test-newcomer';
  fs.writeFileSync(file, defaultTenants(`  newcomer:
    api_keys: [ { sha256: "${sha256(newKey)}" } ]
    lane: standard
`));
  const reload = await http(d, 'POST', '/admin/reload', { key: KEYS.admin });
  assert.equal(reload.status, 200, reload.body);
  const ok = await http(d, 'POST', '/v1/completions', { key: newKey, body: { model: 'stories', prompt: PROMPT, max_tokens: 2 } });
  assert.equal(ok.status, 200);
  fs.writeFileSync(file, 'lanes: [ { name: premium }\ntenants: {');
  const bad = await http(d, 'POST', '/admin/reload', { key: KEYS.admin });
  assert.equal(bad.status, 400);
  assert.match(bad.json.error.message, /tenants\.yaml:\d+:\d+/);
  // The signal path rejects it too: wait for the SIGHUP reload's own log line (the file watcher
  // logs trigger "file"), so an ignored SIGHUP fails here.
  const signalReloads = () => (d.logs().match(/"event":"policy_reload"[^\n]*"trigger":"signal"[^\n]*/g) ?? []);
  const before = signalReloads().length;
  d.proc.kill('SIGHUP');
  await waitFor(async () => signalReloads().length > before, 5000, 'the SIGHUP reload');
  assert.match(signalReloads().at(-1), /"result":"rejected"/);
  const still = await http(d, 'POST', '/v1/completions', { key: newKey, body: { model: 'stories', prompt: PROMPT, max_tokens: 2 } });
  assert.equal(still.status, 200);
  fs.writeFileSync(file, defaultTenants());
  assert.equal((await http(d, 'POST', '/admin/reload', { key: KEYS.admin })).status, 200);
});

test('SIGTERM drains: in-flight streams finish, readiness and new requests get 503, exit 0', async (t) => {
  if (!requireData(t)) return;
  // A model big enough (stories15M shape, random weights) that a 400-token stream outlasts
  // the checks below on any machine this runs on; stories260K would finish in milliseconds.
  const modelDir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmux-drain-model-'));
  execFileSync(path.join(BUILD_DIR, 'llmux'), ['make-model', '--shape', 'stories15m', '--dtype', 'f32',
    '--seed', '1', '--out', modelDir], { stdio: 'ignore' });
  t.after(() => fs.rmSync(modelDir, { recursive: true, force: true }));
  const own = await startDaemon({ server: serverYaml({ model: modelDir }) });
  try {
    const res = await fetch(`${own.url}/v1/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEYS.premium}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'stories', prompt: PROMPT, max_tokens: 400, ignore_eos: true, stream: true }),
    });
    const reader = res.body.getReader();
    const first = await reader.read();
    assert.ok(!first.done);
    own.proc.kill('SIGTERM');
    await waitFor(async () => (await http(own, 'GET', '/ready')).status === 503, 5000, 'readiness 503');
    const refused = await http(own, 'POST', '/v1/completions', { key: KEYS.batch, body: { model: 'stories', prompt: PROMPT, max_tokens: 2 } });
    assert.equal(refused.status, 503);
    assert.ok(Number(refused.headers.get('retry-after')) > 0);
    let text = new TextDecoder().decode(first.value);
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    assert.ok(text.trimEnd().endsWith('data: [DONE]'), text.slice(-200));
    const { code } = await own.exited;
    assert.equal(code, 0);
  } finally {
    await own.stop();
  }
});

test('repeated failed authentication from one address is throttled with Retry-After', async (t) => {
  if (!requireData(t)) return;
  const own = await startDaemon({ server: serverYaml({ server: '  max_auth_failures_per_minute: 3' }) });
  try {
    for (let i = 0; i < 3; ++i) {
      assert.equal((await http(own, 'GET', '/v1/models', { key: 'sk-guess-' + i })).status, 401);
    }
    const blocked = await http(own, 'GET', '/v1/models', { key: 'sk-guess-4' });
    assert.equal(blocked.status, 429);
    assert.equal(blocked.json.error.code, 'auth_throttled');
    const retry = Number(blocked.headers.get('retry-after'));
    assert.ok(retry >= 59 && retry <= 60, `retry-after ${retry}`);
    // The address is throttled, whatever key it now presents.
    assert.equal((await http(own, 'GET', '/v1/models', { key: KEYS.premium })).status, 429);
  } finally {
    await own.stop();
  }
});
