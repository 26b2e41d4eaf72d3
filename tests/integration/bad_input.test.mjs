// Bad input of every kind against the real daemon: each row sends one malformed request and
// expects a 4xx in OpenAI's error shape naming the field (`error.param`: the top-level field
// being read when the JSON itself is malformed; null for errors of the body as a whole), then a valid request must still succeed. Bodies are raw JSON text so
// that 1e999, -0 and 1e308 reach the server as written.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  KEYS, STORIES, http, rawHttp, requireData, serverYaml, startDaemon,
} from './harness.mjs';

let d;
const MAX_BODY = 65536;
const MAX_HEADER = 8192;

before(async () => {
  if (!fs.existsSync(path.join(STORIES, 'config.json'))) return;
  d = await startDaemon({
    // The auth table makes dozens of failed attempts from one address on purpose: the
    // throttle (tested in daemon.test.mjs) is off here so each one gets its own 401.
    server: serverYaml({ server: `  max_body_bytes: ${MAX_BODY}\n  max_header_bytes: ${MAX_HEADER}\n  max_n: 4\n  max_stop_strings: 4\n  max_auth_failures_per_minute: 0\n` }),
  });
});
after(async () => { if (d) await d.stop(); });

const C = '/v1/completions';
const CHAT = '/v1/chat/completions';
// Raw JSON text with `extra` spliced into a valid body.
const comp = (extra) => `{"prompt":"Once upon a time","max_tokens":2${extra ? ',' + extra : ''}}`;
const chat = (extra) => `{"messages":[{"role":"user","content":"hi"}],"max_tokens":2${extra ? ',' + extra : ''}}`;
const manyBias = (n) => `"logit_bias":{${Array.from({ length: n }, (_, i) => `"${i}":1`).join(',')}}`;
const stops = (n, len = 3) => `"stop":${JSON.stringify(Array.from({ length: n }, (_, i) => String(i).padEnd(len, 'x')))}`;

// [name, route, raw body, expected status, expected param (null = body-level)]
const ROWS = [
  // n (max_n 4)
  ['n = 0', C, comp('"n":0'), 400, 'n'],
  ['n above max_n', C, comp('"n":5'), 400, 'n'],
  ['n as string', C, comp('"n":"2"'), 400, 'n'],
  ['n fractional', C, comp('"n":1.5'), 400, 'n'],
  ['n = 1e308', C, comp('"n":1e308'), 400, 'n'],
  // max_tokens (context 512)
  ['max_tokens = 0', C, comp('"max_tokens":0'), 400, 'max_tokens'],
  ['max_tokens = -0', C, comp('"max_tokens":-0'), 400, 'max_tokens'],
  ['max_tokens negative', C, comp('"max_tokens":-1'), 400, 'max_tokens'],
  ['max_tokens above int32', C, comp('"max_tokens":2147483648'), 400, 'max_tokens'],
  ['max_tokens = 1e999', C, comp('"max_tokens":1e999'), 400, 'max_tokens'],
  ['max_tokens as string', C, comp('"max_tokens":"2"'), 400, 'max_tokens'],
  ['max_tokens beyond the context', C, comp('"max_tokens":600'), 400, 'prompt'],
  ['max_completion_tokens = 0', CHAT, chat('"max_completion_tokens":0'), 400, 'max_completion_tokens'],
  // stop strings (max 4, 256 bytes each)
  ['too many stop strings', C, comp(stops(5)), 400, 'stop'],
  ['stop string too long', C, comp(stops(1, 257)), 400, 'stop'],
  ['empty stop string', C, comp('"stop":""'), 400, 'stop'],
  ['stop not a string', C, comp('"stop":[1]'), 400, 'stop'],
  ['stop as number', C, comp('"stop":5'), 400, 'stop'],
  // logprobs
  ['top_logprobs above 20', CHAT, chat('"logprobs":true,"top_logprobs":21'), 400, 'top_logprobs'],
  ['top_logprobs negative', CHAT, chat('"logprobs":true,"top_logprobs":-1'), 400, 'top_logprobs'],
  ['top_logprobs without logprobs', CHAT, chat('"top_logprobs":2'), 400, 'top_logprobs'],
  ['completions logprobs above 20', C, comp('"logprobs":21'), 400, 'logprobs'],
  ['chat logprobs not a bool', CHAT, chat('"logprobs":1'), 400, 'logprobs'],
  // logit_bias (300 entries, values in [-100, 100], ids in the vocabulary of 512)
  ['logit_bias with 301 entries', C, comp(manyBias(301)), 400, 'logit_bias'],
  ['logit_bias value 101', C, comp('"logit_bias":{"5":101}'), 400, 'logit_bias'],
  ['logit_bias value -100.5', C, comp('"logit_bias":{"5":-100.5}'), 400, 'logit_bias'],
  ['logit_bias value 1e999', C, comp('"logit_bias":{"5":1e999}'), 400, 'logit_bias'],
  ['logit_bias key not a token id', C, comp('"logit_bias":{"abc":1}'), 400, 'logit_bias'],
  ['logit_bias key outside the vocabulary', C, comp('"logit_bias":{"512":1}'), 400, 'logit_bias'],
  ['logit_bias negative key', C, comp('"logit_bias":{"-1":1}'), 400, 'logit_bias'],
  ['logit_bias as array', C, comp('"logit_bias":[1]'), 400, 'logit_bias'],
  // sampling ranges
  ['temperature negative', C, comp('"temperature":-0.1'), 400, 'temperature'],
  ['temperature above 100', C, comp('"temperature":100.5'), 400, 'temperature'],
  ['temperature = 1e999', C, comp('"temperature":1e999'), 400, 'temperature'],
  ['temperature = -1e999', C, comp('"temperature":-1e999'), 400, 'temperature'],
  ['temperature = 1e308', C, comp('"temperature":1e308'), 400, 'temperature'],
  ['temperature as string', C, comp('"temperature":"1"'), 400, 'temperature'],
  ['top_p = 0', C, comp('"top_p":0'), 400, 'top_p'],
  ['top_p above 1', C, comp('"top_p":1.01'), 400, 'top_p'],
  ['top_p = -0', C, comp('"top_p":-0'), 400, 'top_p'],
  ['top_k = -2', C, comp('"top_k":-2'), 400, 'top_k'],
  ['top_k fractional', C, comp('"top_k":1.5'), 400, 'top_k'],
  ['top_k above int32', C, comp('"top_k":2147483648'), 400, 'top_k'],
  ['min_p above 1', C, comp('"min_p":2'), 400, 'min_p'],
  ['presence_penalty above 2', C, comp('"presence_penalty":2.5'), 400, 'presence_penalty'],
  ['frequency_penalty below -2', C, comp('"frequency_penalty":-3'), 400, 'frequency_penalty'],
  ['repetition_penalty = 0', C, comp('"repetition_penalty":0'), 400, 'repetition_penalty'],
  ['seed fractional', C, comp('"seed":1.5'), 400, 'seed'],
  ['seed above int64', C, comp('"seed":18446744073709551616'), 400, 'seed'],
  ['min_tokens negative', C, comp('"min_tokens":-1'), 400, 'min_tokens'],
  ['min_tokens above max_tokens', C, comp('"min_tokens":5'), 400, 'min_tokens'],
  ['stop_token_ids outside the vocabulary', C, comp('"stop_token_ids":[512]'), 400, 'stop_token_ids'],
  ['stop_token_ids negative', C, comp('"stop_token_ids":[-1]'), 400, 'stop_token_ids'],
  ['stop_token_ids with 65 entries', C, comp(`"stop_token_ids":[${Array(65).fill(3).join(',')}]`), 400, 'stop_token_ids'],
  // wrong types and unsupported features
  ['prompt as number', C, '{"prompt":5}', 400, 'prompt'],
  ['prompt empty array', C, '{"prompt":[]}', 400, 'prompt'],
  ['prompt missing', C, '{"max_tokens":2}', 400, 'prompt'],
  ['prompt token outside the vocabulary', C, '{"prompt":[1,512],"max_tokens":2}', 400, 'prompt'],
  ['prompt token negative', C, '{"prompt":[1,-1],"max_tokens":2}', 400, 'prompt'],
  ['prompt with 65 prompts', C, `{"prompt":${JSON.stringify(Array(65).fill('a'))},"max_tokens":1}`, 400, 'prompt'],
  ['messages as string', CHAT, '{"messages":"hi"}', 400, 'messages'],
  ['messages empty', CHAT, '{"messages":[]}', 400, 'messages'],
  ['message without role', CHAT, '{"messages":[{"content":"hi"}]}', 400, 'messages[0].role'],
  ['message content as number', CHAT, '{"messages":[{"role":"user","content":5}]}', 400, 'messages[0].content'],
  ['tool message without tool_call_id', CHAT, '{"messages":[{"role":"tool","content":"x"}]}', 400, 'messages[0].tool_call_id'],
  ['message role function', CHAT, '{"messages":[{"role":"function","content":"x"}]}', 400, 'messages[0].role'],
  ['image content part', CHAT, '{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}', 400, 'messages[0].content'],
  ['stream as string', C, comp('"stream":"yes"'), 400, 'stream'],
  ['stream_options as number', C, comp('"stream_options":5'), 400, 'stream_options'],
  ['include_usage as string', C, comp('"stream":true,"stream_options":{"include_usage":"y"}'), 400, 'stream_options.include_usage'],
  ['model as number', C, comp('"model":5'), 400, 'model'],
  ['unknown model', C, comp('"model":"gpt-9"'), 404, 'model'],
  ['user as object', C, comp('"user":{}'), 400, 'user'],
  ['echo', C, comp('"echo":true'), 400, 'echo'],
  ['suffix', C, comp('"suffix":"x"'), 400, 'suffix'],
  ['tools as object', CHAT, chat('"tools":{}'), 400, 'tools'],
  ['tool of type retrieval', CHAT, chat('"tools":[{"type":"retrieval"}]'), 400, 'tools[0].type'],
  ['tool without a name', CHAT, chat('"tools":[{"type":"function","function":{}}]'), 400, 'tools[0].function.name'],
  ['tool name with spaces', CHAT, chat('"tools":[{"type":"function","function":{"name":"a b"}}]'), 400, 'tools[0].function.name'],
  ['tool parameters not an object', CHAT, chat('"tools":[{"type":"function","function":{"name":"f","parameters":"x"}}]'), 400, 'tools[0].function.parameters'],
  ['tool_choice unknown', CHAT, chat('"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"any"'), 400, 'tool_choice'],
  ['tool_choice names an absent tool', CHAT, chat('"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"g"}}'), 400, 'tool_choice'],
  ['tool_choice without tools', CHAT, chat('"tool_choice":"required"'), 400, 'tool_choice'],
  ['tools on completions', C, comp('"tools":[]'), 400, 'tools'],
  ['assistant tool_calls not an array', CHAT, '{"messages":[{"role":"assistant","content":null,"tool_calls":5}]}', 400, 'messages[0].tool_calls'],
  ['tool call without function name', CHAT, '{"messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"arguments":"{}"}}]}]}', 400, 'messages[0].tool_calls[0].function.name'],
  ['service_tier unknown', C, comp('"service_tier":"gold"'), 400, 'service_tier'],
  ['response_format type xml', CHAT, chat('"response_format":{"type":"xml"}'), 400, 'response_format.type'],
  ['response_format json_schema without a name', CHAT, chat('"response_format":{"type":"json_schema","json_schema":{"schema":{}}}'), 400, 'response_format.json_schema.name'],
  ['response_format unsupported schema keyword', CHAT, chat('"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object","patternProperties":{}}}}'), 400, 'response_format.json_schema.schema'],
  ['best_of 2', C, comp('"best_of":2'), 400, 'best_of'],
  ['add_generation_prompt as string', CHAT, chat('"add_generation_prompt":"no"'), 400, 'add_generation_prompt'],
  // the body as a whole
  ['body not JSON', C, 'not json', 400, null],
  ['body truncated', C, '{"prompt":"x"', 400, null],
  ['body truncated inside a field', C, '{"prompt":"x', 400, 'prompt'],
  ['missing comma after a complete field', C, '{"prompt":"x" "max_tokens":2}', 400, null],
  ['trailing comma', C, '{"prompt":"x","max_tokens":2,}', 400, null],
  ['syntax error after a nested field', CHAT, '{"messages":[{"role":"user","content":"hi"}] "max_tokens":2}', 400, null],
  ['max_tokens = 2^64', C, comp('"max_tokens":18446744073709551616'), 400, 'max_tokens'],
  ['body an array', C, '[1,2]', 400, null],
  ['body empty', C, '', 400, null],
  ['NaN literal', C, comp('"temperature":NaN'), 400, 'temperature'],
  ['Infinity literal', C, comp('"top_p":Infinity'), 400, 'top_p'],
  ['body with a syntax error after a field', C, '{"prompt":"x","n" 2}', 400, 'n'],
  ['nested 65 deep', C, comp(`"x":${'['.repeat(65)}${']'.repeat(65)}`), 400, null],
  ['nested 30000 deep', C, comp(`"x":${'['.repeat(30000)}${']'.repeat(30000)}`), 400, null],
  ['prompt of 200 KB text', C, `{"prompt":${JSON.stringify('a b '.repeat(15000))},"max_tokens":1}`, 400, 'prompt'],
];

function assertOpenAiError(r, status, param, what) {
  assert.equal(r.status, status, `${what}: status ${r.status} ${r.body}`);
  assert.ok(r.json && r.json.error, `${what}: not an OpenAI error: ${r.body}`);
  const e = r.json.error;
  assert.equal(typeof e.message, 'string', what);
  assert.ok(e.message.length > 0, what);
  assert.equal(typeof e.type, 'string', what);
  assert.ok('param' in e && 'code' in e, `${what}: error lacks param/code: ${r.body}`);
  if (param !== undefined) assert.equal(e.param, param, `${what}: param: ${r.body}`);
}

async function assertServes(what) {
  const r = await http(d, 'POST', C, { key: KEYS.premium, body: { prompt: 'Once', max_tokens: 2, temperature: 0 } });
  assert.equal(r.status, 200, `valid request after '${what}': ${r.status} ${r.body}`);
  assert.equal(r.json.usage.completion_tokens, 2);
}

test('every bad field gets a 4xx naming it, and the next valid request succeeds', async (t) => {
  if (!requireData(t)) return;
  for (const [name, route, body, status, param] of ROWS) {
    const r = await http(d, 'POST', route, { key: KEYS.premium, body });
    assertOpenAiError(r, status, param, name);
    await assertServes(name);
  }
});

test('limits at the boundary are accepted', async (t) => {
  if (!requireData(t)) return;
  const ok = [
    [C, comp('"n":4,"seed":1')],
    [C, comp(stops(4, 256))],
    [CHAT, chat('"logprobs":true,"top_logprobs":20')],
    [C, comp('"logprobs":20')],
    [C, comp(manyBias(300).replace(/:1/g, ':-100'))],
    [C, comp('"logit_bias":{"511":100}')],
    [C, comp('"temperature":0,"top_p":1,"top_k":-1,"min_p":1,"presence_penalty":-2,"frequency_penalty":2')],
    [C, comp('"temperature":100,"top_k":2147483647')],
    [C, comp('"seed":-9223372036854775808')],
    [C, comp('"seed":9223372036854775807')],
    [C, comp('"min_tokens":2,"stop_token_ids":[511]')],
    [C, '{"prompt":"","max_tokens":1}'],
    [C, '{"prompt":[1],"max_tokens":511}'],
    [CHAT, '{"messages":[{"role":"user","content":""}],"max_tokens":1}'],
    [C, comp('"max_tokens":2.0')],
  ];
  for (const [route, body] of ok) {
    const r = await http(d, 'POST', route, { key: KEYS.premium, body });
    assert.equal(r.status, 200, `${body.slice(0, 120)}: ${r.status} ${r.body.slice(0, 300)}`);
  }
});

test('invalid UTF-8 in the body is a 400, not a crash', async (t) => {
  if (!requireData(t)) return;
  for (const bytes of [Buffer.from([0xff, 0xfe]), Buffer.from([0xc3, 0x28]), Buffer.from([0xed, 0xa0, 0x80])]) {
    const body = Buffer.concat([Buffer.from('{"prompt":"a'), bytes, Buffer.from('","max_tokens":1}')]);
    const res = await fetch(d.url + C, {
      method: 'POST', headers: { authorization: `Bearer ${KEYS.premium}`, 'content-type': 'application/json' }, body,
    });
    const text = await res.text();
    assertOpenAiError({ status: res.status, body: text, json: JSON.parse(text) }, 400, 'prompt', `utf8 ${bytes.toString('hex')}`);
  }
  await assertServes('invalid UTF-8');
});

test('oversized body -> 413, oversized headers -> 431, malformed HTTP -> 400', async (t) => {
  if (!requireData(t)) return;
  const auth = `Authorization: Bearer ${KEYS.premium}\r\n`;
  // Declared too large: answered from the headers alone.
  let r = await rawHttp(d, `POST ${C} HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: ${MAX_BODY + 1}\r\n\r\n`);
  assert.equal(r.status, 413, r.head);
  assertOpenAiError({ status: r.status, body: r.body, json: JSON.parse(r.body) }, 413, null, '413');
  // Chunked body growing past the limit.
  const chunk = 'a'.repeat(4096);
  let body = '';
  for (let i = 0; i < MAX_BODY / 4096 + 2; ++i) body += `${(4096).toString(16)}\r\n${chunk}\r\n`;
  r = await rawHttp(d, `POST ${C} HTTP/1.1\r\nHost: x\r\n${auth}Transfer-Encoding: chunked\r\n\r\n${body}0\r\n\r\n`);
  assert.equal(r.status, 413, r.head);
  // Exactly at the limit is read (then rejected as JSON, a 400).
  const atLimit = `{"prompt":"${'a'.repeat(MAX_BODY - 13)}"}`;
  assert.equal(atLimit.length, MAX_BODY);
  r = await rawHttp(d, `POST ${C} HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: ${MAX_BODY}\r\nConnection: close\r\n\r\n${atLimit}`, { ms: 20000 });
  assert.ok(r.status === 200 || r.status === 400, `body at the limit: ${r.head}`);
  r = await rawHttp(d, `GET /v1/models HTTP/1.1\r\nHost: x\r\n${auth}X-Big: ${'b'.repeat(MAX_HEADER)}\r\n\r\n`);
  assert.equal(r.status, 431, r.head);
  assertOpenAiError({ status: r.status, body: r.body, json: JSON.parse(r.body) }, 431, null, '431');
  r = await rawHttp(d, `GET /v1/models HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 1200 }, (_, i) => `X-${i}: v`).join('\r\n')}\r\n\r\n`);
  assert.equal(r.status, 431, r.head);
  for (const garbage of ['GARBAGE\r\n\r\n', 'GET / HTTP/9.9\r\n\r\n', `POST ${C} HTTP/1.1\r\nContent-Length: -5\r\n\r\n`,
    `POST ${C} HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello`, 'GET / HTTP/1.1\r\nBad Header\r\n\r\n']) {
    r = await rawHttp(d, garbage);
    assert.equal(r.status, 400, `${JSON.stringify(garbage)}: ${r.head}`);
    assert.ok(r.closed, 'the connection is closed after a malformed request');
  }
  await assertServes('size limits');
});

test('unknown routes -> 404, wrong methods -> 405, both in the OpenAI error shape', async (t) => {
  if (!requireData(t)) return;
  for (const [method, p, status] of [
    ['GET', '/v1/nope', 404], ['POST', '/', 404], ['GET', '/v1/completions/extra', 404], ['GET', '/admin', 404],
    ['GET', '/v1/completions', 405], ['PUT', '/v1/chat/completions', 405], ['DELETE', '/v1/models', 405],
    ['POST', '/v1/models', 405], ['PATCH', '/v1/completions', 405],
  ]) {
    const r = await http(d, method, p, { key: KEYS.premium });
    assertOpenAiError(r, status, undefined, `${method} ${p}`);
  }
  // An unknown method token on the wire.
  const r = await rawHttp(d, `FOO /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEYS.premium}\r\nConnection: close\r\n\r\n`);
  assert.equal(r.status, 405, r.head);
  await assertServes('routes');
});

test('every route with no key, a wrong key and another principal\'s key', async (t) => {
  if (!requireData(t)) return;
  const tenantRoutes = [['POST', C, comp('')], ['POST', CHAT, chat('')], ['GET', '/v1/models', undefined]];
  const adminRoutes = [['GET', '/admin/stats', undefined], ['POST', '/admin/reload', undefined]];
  for (const [method, p, body] of [...tenantRoutes, ...adminRoutes]) {
    for (const [key, why] of [[undefined, 'no key'], ['sk-wrong', 'wrong key'], [KEYS.premium.slice(0, -1), 'truncated key'],
      [KEYS.premium + 'x', 'extended key']]) {
      const r = await http(d, method, p, { key, body });
      assertOpenAiError(r, 401, undefined, `${method} ${p} with ${why}`);
      assert.equal(r.json.error.type, 'authentication_error');
    }
    // A malformed Authorization header.
    const r = await http(d, method, p, { body, headers: { authorization: `Basic ${KEYS.premium}` } });
    assertOpenAiError(r, 401, undefined, `${method} ${p} with Basic auth`);
  }
  // A tenant key on admin routes, the admin key on tenant routes.
  for (const [method, p] of adminRoutes) {
    const r = await http(d, method, p, { key: KEYS.premium });
    assertOpenAiError(r, 403, undefined, `${method} ${p} with a tenant key`);
  }
  for (const [method, p, body] of tenantRoutes) {
    const r = await http(d, method, p, { key: KEYS.admin, body });
    assertOpenAiError(r, 403, undefined, `${method} ${p} with the admin key`);
  }
  await assertServes('auth');
});
