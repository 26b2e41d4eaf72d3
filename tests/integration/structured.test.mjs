// Structured outputs end to end: response_format through the real daemon (stories260K-hf, CPU
// backend) with the official openai client — chat.completions.parse with a zod schema
// (openai/helpers/zod), json_object, streaming, /v1/completions, and refused schemas.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import OpenAI from 'openai';
import { zodResponseFormat, zodTextFormat } from 'openai/helpers/zod';
import { generateObject } from 'ai';
import { createOpenAI } from '@ai-sdk/openai';
import { ChatOpenAI } from '@langchain/openai';
import { z } from 'zod';
import {
  KEYS, STORIES, defaultTenants, http, requireData, serverYaml, standardTenant, startDaemon,
} from './harness.mjs';

let d;
const client = (key) => new OpenAI({ apiKey: key, baseURL: `${d.url}/v1`, maxRetries: 0 });

before(async () => {
  if (!fs.existsSync(path.join(STORIES, 'config.json'))) return;
  d = await startDaemon();
});
after(async () => { if (d) await d.stop(); });

const Person = z.object({
  name: z.string().max(8),
  age: z.number().int().min(0).max(120),
  mood: z.enum(['happy', 'sad']),
  friends: z.array(z.string().max(5)).max(2),
});

const messages = [{ role: 'user', content: 'Once upon a time' }];

test('chat.completions.parse with a zod schema returns a parsed object', async (t) => {
  if (!requireData(t)) return;
  const r = await client(KEYS.premium).chat.completions.parse({
    model: 'stories', messages, temperature: 0, max_tokens: 200,
    response_format: zodResponseFormat(Person, 'person'),
  });
  const choice = r.choices[0];
  assert.equal(choice.finish_reason, 'stop');
  const p = choice.message.parsed;
  assert.ok(p, `no parsed object: ${choice.message.content}`);
  assert.deepEqual(Object.keys(p), ['name', 'age', 'mood', 'friends']);  // schema order
  assert.ok(Person.safeParse(p).success, choice.message.content);
  assert.deepEqual(JSON.parse(choice.message.content), p);
});

test('sampled (temperature 1, seeded) outputs validate too', async (t) => {
  if (!requireData(t)) return;
  for (const seed of [1, 2, 3]) {
    const r = await client(KEYS.premium).chat.completions.create({
      model: 'stories', messages, temperature: 1, seed, max_tokens: 300,
      response_format: zodResponseFormat(Person, 'person'),
    });
    const c = r.choices[0];
    if (c.finish_reason === 'length') continue;  // cut by max_tokens: nothing to validate
    assert.equal(c.finish_reason, 'stop');
    assert.ok(Person.safeParse(JSON.parse(c.message.content)).success, c.message.content);
  }
});

test('json_object gives a JSON object', async (t) => {
  if (!requireData(t)) return;
  // NOTE: stories260K writes stories into the key strings of a free-form object and never
  // closes it within a few hundred tokens; a logit_bias on '}' (<0x7D>, id 128) makes it close
  // as soon as the grammar allows. The bias cannot break the grammar: the mask comes first.
  const r = await client(KEYS.premium).chat.completions.create({
    model: 'stories', messages, temperature: 0, max_tokens: 50,
    response_format: { type: 'json_object' }, logit_bias: { 128: 100 },
  });
  const c = r.choices[0];
  assert.equal(c.finish_reason, 'stop', c.message.content);
  assert.deepEqual(JSON.parse(c.message.content), {});
  // Without the bias: a cut by max_tokens is 'length' and still starts the object.
  const cut = await client(KEYS.premium).chat.completions.create({
    model: 'stories', messages, temperature: 0, max_tokens: 20, response_format: { type: 'json_object' },
  });
  assert.equal(cut.choices[0].finish_reason, 'length');
  assert.ok(cut.choices[0].message.content.startsWith('{"'), cut.choices[0].message.content);
});

test('streaming with response_format equals the non-streamed text', async (t) => {
  if (!requireData(t)) return;
  const params = {
    model: 'stories', messages, temperature: 0, max_tokens: 200,
    response_format: {
      type: 'json_schema',
      json_schema: {
        name: 'pick', strict: true,
        schema: {
          type: 'object',
          properties: { color: { enum: ['red', 'green', 'blue'] }, n: { type: 'integer', minimum: 1, maximum: 9 } },
          required: ['color', 'n'], additionalProperties: false,
        },
      },
    },
  };
  const c = client(KEYS.premium);
  const whole = await c.chat.completions.create(params);
  const stream = await c.chat.completions.create({ ...params, stream: true });
  let text = '';
  let finish = null;
  for await (const chunk of stream) {
    for (const ch of chunk.choices) {
      text += ch.delta.content ?? '';
      if (ch.finish_reason) finish = ch.finish_reason;
    }
  }
  assert.equal(text, whole.choices[0].message.content);
  assert.equal(finish, 'stop');
  const v = JSON.parse(text);
  assert.ok(['red', 'green', 'blue'].includes(v.color));
  assert.ok(Number.isInteger(v.n) && v.n >= 1 && v.n <= 9);
});

test('/v1/completions honours response_format; max_tokens cuts give length', async (t) => {
  if (!requireData(t)) return;
  const format = {
    type: 'json_schema',
    json_schema: { name: 'arr', schema: { type: 'array', items: { type: 'boolean' }, minItems: 2, maxItems: 3 } },
  };
  const c = client(KEYS.premium);
  const r = await c.completions.create({
    model: 'stories', prompt: 'Once upon a time', temperature: 0, max_tokens: 100, response_format: format,
  });
  assert.equal(r.choices[0].finish_reason, 'stop');
  const v = JSON.parse(r.choices[0].text);
  assert.ok(Array.isArray(v) && v.length >= 2 && v.length <= 3 && v.every((x) => typeof x === 'boolean'));
  const cut = await c.completions.create({
    model: 'stories', prompt: 'Once upon a time', temperature: 0, max_tokens: 2, response_format: format,
  });
  assert.equal(cut.choices[0].finish_reason, 'length');
  assert.equal(cut.usage.completion_tokens, 2);
});

test('a refused schema is a 400 naming the keyword', async (t) => {
  if (!requireData(t)) return;
  const bad = async (schema) => http(d, 'POST', '/v1/chat/completions', {
    key: KEYS.premium,
    body: { messages, max_tokens: 5, response_format: { type: 'json_schema', json_schema: { name: 'x', schema } } },
  });
  for (const [schema, keyword] of [
    [{ type: 'object', properties: { a: { type: 'string', contentMediaType: 'text/html' } } }, 'contentMediaType'],
    [{ type: 'array', uniqueItems: true }, 'uniqueItems'],
    [{ type: 'string', format: 'hostname' }, 'hostname'],
  ]) {
    const r = await bad(schema);
    assert.equal(r.status, 400, r.body);
    assert.equal(r.json.error.param, 'response_format.json_schema.schema');
    assert.equal(r.json.error.type, 'invalid_request_error');
    assert.ok(r.json.error.message.includes(keyword), r.json.error.message);
  }
  // And the openai client surfaces it as a BadRequestError.
  await assert.rejects(
    client(KEYS.premium).chat.completions.create({
      model: 'stories', messages, max_tokens: 5,
      response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { not: {} } } },
    }),
    (e) => e.status === 400 && e.message.includes("'not'"),
  );
});

test('a process pool compiles the schema in its worker and gives the same output', async (t) => {
  if (!requireData(t)) return;
  const key = 'sk-test-acme';
  const tenants = defaultTenants(standardTenant('acme', key, `    pool: dedicated
    models: [ "stories-dedicated" ]
`));
  const pools = `pools:
  dedicated:
    isolation: process
    engine: { threads: 1, kv_cache_tokens: 8192, max_seqs: 8 }
    model: { path: "${STORIES}", name: stories-dedicated, max_model_len: 512 }
`;
  const p = await startDaemon({ tenants, server: serverYaml({ pools }) });
  try {
    const body = (model) => ({
      model, messages, temperature: 0, max_tokens: 200,
      response_format: zodResponseFormat(Person, 'person'),
    });
    const viaWorker = await new OpenAI({ apiKey: key, baseURL: `${p.url}/v1`, maxRetries: 0 })
      .chat.completions.parse(body('stories-dedicated'));
    const inProcess = await client(KEYS.premium).chat.completions.parse(body('stories'));
    assert.equal(viaWorker.choices[0].finish_reason, 'stop');
    assert.ok(Person.safeParse(viaWorker.choices[0].message.parsed).success);
    assert.equal(viaWorker.choices[0].message.content, inProcess.choices[0].message.content);
    const bad = await http(p, 'POST', '/v1/chat/completions', {
      key,
      body: { model: 'stories-dedicated', messages, max_tokens: 5,
        response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'string', format: 'ipv6' } } } },
    });
    assert.equal(bad.status, 400, bad.body);
    assert.equal(bad.json.error.param, 'response_format.json_schema.schema');
  } finally {
    await p.stop();
  }
});

test('the AI SDK generateObject (chat model) returns a schema-valid object', async (t) => {
  if (!requireData(t)) return;
  const provider = createOpenAI({ apiKey: KEYS.premium, baseURL: `${d.url}/v1` });
  const { object, finishReason } = await generateObject({
    model: provider.chat('stories'),
    schema: Person,
    schemaName: 'person',
    prompt: 'Once upon a time',
    temperature: 0,
    maxOutputTokens: 200,
    maxRetries: 0,
  });
  assert.equal(finishReason, 'stop');
  assert.ok(Person.safeParse(object).success, JSON.stringify(object));
});

test('LangChain withStructuredOutput (jsonSchema method) returns a schema-valid object', async (t) => {
  if (!requireData(t)) return;
  const llm = new ChatOpenAI({
    model: 'stories', temperature: 0, maxTokens: 200, maxRetries: 0,
    apiKey: KEYS.premium, configuration: { baseURL: `${d.url}/v1` },
  });
  const structured = llm.withStructuredOutput(Person, { name: 'person', method: 'jsonSchema' });
  const object = await structured.invoke('Once upon a time');
  assert.ok(Person.safeParse(object).success, JSON.stringify(object));
});

test('Responses API: text.format json_schema gives a schema-valid output (responses.parse)', async (t) => {
  if (!requireData(t)) return;
  const r = await client(KEYS.premium).responses.parse({
    model: 'stories', input: 'Once upon a time', temperature: 0, max_output_tokens: 200,
    text: { format: zodTextFormat(Person, 'person') },
  });
  assert.equal(r.status, 'completed', JSON.stringify(r.output));
  assert.ok(r.output_parsed, `no parsed object: ${r.output_text}`);
  assert.deepEqual(Object.keys(r.output_parsed), ['name', 'age', 'mood', 'friends']);
  assert.ok(Person.safeParse(r.output_parsed).success, r.output_text);
  // The same schema through chat gives the same greedy text.
  const chat = await client(KEYS.premium).chat.completions.create({
    model: 'stories', messages: [{ role: 'user', content: 'Once upon a time' }], temperature: 0,
    max_tokens: 200, response_format: zodResponseFormat(Person, 'person'),
  });
  assert.equal(r.output_text, chat.choices[0].message.content);
});
