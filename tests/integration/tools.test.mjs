// Tool calling against the real daemon with the official openai client. The model is
// stories260K served with Qwen3's tools-aware chat template (pinned by scripts/test_data.sh),
// so prompts with tools render exactly as @huggingface/jinja renders them (checked through
// usage.prompt_tokens). A tiny story model never writes a tool call by itself: the tenant
// `caller` runs with the test-only engine hook LLMUX_TEST_FORCE_TOKENS (the test daemon
// llmuxd-test), which makes its requests generate the token ids of a Hermes tool call and
// then EOS, so the output parser, `message.tool_calls`, `finish_reason: "tool_calls"` and the
// streamed `delta.tool_calls` are exercised on real engine output.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import OpenAI from 'openai';
import { Template } from '@huggingface/jinja';
import { KEYS, http, serverYaml, startDaemon, tokenize } from './harness.mjs';
import { CALLER_KEY, CALL_TEXT, haveData, startToolCallerDaemon } from './tool_caller.mjs';

const TOOLS = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }];

let d;
let template;

// The prompt as the reference renderer writes it for OpenAI-shaped messages (null content ->
// "", JSON-object arguments -> the object), the way llmux hands them to the template.
function reference(messages, tools) {
  const msgs = messages.map((m) => {
    const t = { role: m.role, content: m.content ?? '' };
    if (m.tool_calls) {
      t.tool_calls = m.tool_calls.map((c) => {
        let args = c.function.arguments;
        try { const p = JSON.parse(args); if (p && typeof p === 'object' && !Array.isArray(p)) args = p; } catch { /* string */ }
        return { id: c.id, type: 'function', function: { name: c.function.name, arguments: args } };
      });
    }
    if (m.tool_call_id) t.tool_call_id = m.tool_call_id;
    return t;
  });
  return template.render({
    messages: msgs, add_generation_prompt: true, bos_token: '', eos_token: '<|im_end|>',
    ...(tools ? { tools } : {}),
  });
}

before(async () => {
  const started = await startToolCallerDaemon('tools');
  if (!started) return;
  d = started.d;
  template = new Template(started.chatTemplate);
});
after(async () => { if (d) await d.stop(); });

const client = (key) => new OpenAI({ apiKey: key, baseURL: `${d.url}/v1`, maxRetries: 0 });

test('a request with tools renders the tools block exactly (prompt_tokens)', async (t) => {
  if (!haveData(t)) return;
  const messages = [{ role: 'user', content: 'Hi' }];
  const r = await client(KEYS.premium).chat.completions.create({
    model: 'stories', messages, tools: TOOLS, max_tokens: 1, temperature: 0,
  });
  const expected = reference(messages, TOOLS);
  assert.ok(expected.includes('<tools>\n{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"'), expected);
  assert.equal(r.usage.prompt_tokens, tokenize(expected).length);
  // Without tools the same conversation is much shorter: the tools block really was rendered.
  const plain = await client(KEYS.premium).chat.completions.create({ model: 'stories', messages, max_tokens: 1 });
  assert.equal(plain.usage.prompt_tokens, tokenize(reference(messages)).length);
  assert.ok(plain.usage.prompt_tokens + 50 < r.usage.prompt_tokens);
});

test('assistant tool_calls and tool messages round-trip into the prompt', async (t) => {
  if (!haveData(t)) return;
  const messages = [
    { role: 'user', content: 'Weather?' },
    { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city": "Paris"}' } }] },
    { role: 'tool', tool_call_id: 'call_1', content: '{"temp": 21}' },
  ];
  const r = await client(KEYS.premium).chat.completions.create({ model: 'stories', messages, max_tokens: 1 });
  const expected = reference(messages);
  assert.ok(expected.includes('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'), expected);
  assert.ok(expected.includes('<|im_start|>user\n<tool_response>\n{"temp": 21}\n</tool_response><|im_end|>'), expected);
  assert.equal(r.usage.prompt_tokens, tokenize(expected).length);
});

test('a generated Hermes tool call becomes message.tool_calls', async (t) => {
  if (!haveData(t)) return;
  const r = await client(CALLER_KEY).chat.completions.create({
    model: 'stories', messages: [{ role: 'user', content: 'Hi' }], tools: TOOLS, max_tokens: 80,
  });
  const c = r.choices[0];
  assert.equal(c.finish_reason, 'tool_calls', JSON.stringify(r));
  assert.equal(c.message.content, null);
  assert.equal(c.message.tool_calls.length, 1);
  const call = c.message.tool_calls[0];
  assert.match(call.id, /^call_[A-Za-z0-9]{24}$/);
  assert.equal(call.type, 'function');
  assert.equal(call.function.name, 'get_weather');
  assert.deepEqual(JSON.parse(call.function.arguments), { city: 'Paris' });
  assert.equal(call.function.arguments, '{"city": "Paris"}');
  assert.match(r.system_fingerprint, /^fp_[0-9a-f]{12}$/);
});

test('streamed tool calls arrive as delta.tool_calls and reassemble exactly', async (t) => {
  if (!haveData(t)) return;
  const stream = await client(CALLER_KEY).chat.completions.create({
    model: 'stories', messages: [{ role: 'user', content: 'Hi' }], tools: TOOLS, max_tokens: 80, stream: true,
  });
  const deltas = [];
  let finish = null;
  let content = '';
  for await (const chunk of stream) {
    for (const ch of chunk.choices) {
      if (ch.delta.tool_calls) deltas.push(...ch.delta.tool_calls);
      if (ch.delta.content) content += ch.delta.content;
      if (ch.finish_reason) finish = ch.finish_reason;
    }
  }
  assert.equal(finish, 'tool_calls');
  assert.equal(content, '');
  assert.ok(deltas.length >= 2, `expected name then argument fragments, got ${JSON.stringify(deltas)}`);
  const [first, ...rest] = deltas;
  assert.equal(first.index, 0);
  assert.match(first.id, /^call_[A-Za-z0-9]{24}$/);
  assert.equal(first.type, 'function');
  assert.equal(first.function.name, 'get_weather');
  for (const r of rest) {
    assert.equal(r.index, 0);
    assert.equal(r.id, undefined);
    assert.equal(r.function.name, undefined);
  }
  assert.equal(deltas.map((x) => x.function.arguments ?? '').join(''), '{"city": "Paris"}');

  // The SDK's own stream helper reassembles the same call.
  const runner = client(CALLER_KEY).chat.completions.stream({
    model: 'stories', messages: [{ role: 'user', content: 'Hi' }], tools: TOOLS, max_tokens: 80,
  });
  const final = await runner.finalChatCompletion();
  assert.equal(final.choices[0].message.tool_calls[0].function.arguments, '{"city": "Paris"}');
  assert.equal(final.choices[0].finish_reason, 'tool_calls');
});

test('tool_choice none leaves the text alone; required and named force a call through the grammar', async (t) => {
  if (!haveData(t)) return;
  const r = await client(CALLER_KEY).chat.completions.create({
    model: 'stories', messages: [{ role: 'user', content: 'Hi' }], tools: TOOLS, tool_choice: 'none', max_tokens: 80,
  });
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.equal(r.choices[0].message.tool_calls, undefined);
  assert.ok(r.choices[0].message.content.includes('"name": "get_weather"'), r.choices[0].message.content);
  // The story model left alone never writes a call; under tool_choice required / named its
  // reply is generated under the grammar of a Hermes call of an allowed tool, so it must parse
  // into exactly one call whose arguments validate. Qwen3's tools preamble fills most of
  // stories260K's 512-token context, so this part runs on a second daemon with a compact
  // Hermes-style template (the format is picked from the template's `<tool_call>`).
  const PICK = {
    type: 'function',
    function: {
      name: 'pick',
      parameters: { type: 'object', properties: { c: { type: 'string', enum: ['r', 'b'] } }, required: ['c'] },
    },
  };
  const compact = path.join(d.dir, 'compact_tools.jinja');
  fs.writeFileSync(compact, '{% if tools %}<tools>{{ tools | tojson }}</tools>\n{% endif %}' +
    '{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}' +
    '{% if add_generation_prompt %}assistant (calls as <tool_call>JSON</tool_call>): {% endif %}');
  const d2 = await startDaemon({
    server: serverYaml().replace('max_model_len: 512 }', `max_model_len: 512, chat_template: "file:${compact}" }`),
  });
  try {
    for (const [tool_choice, tools] of [['required', [PICK]],
      [{ type: 'function', function: { name: 'pick' } }, [TOOLS[0], PICK]]]) {
      // max_tokens: what the context leaves after this prompt (same tools, no constraint).
      const probe = await http(d2, 'POST', '/v1/chat/completions', {
        key: KEYS.premium,
        body: { messages: [{ role: 'user', content: 'Hi' }], tools, tool_choice: 'none', max_tokens: 1 },
      });
      assert.equal(probe.status, 200, probe.body);
      const room = 512 - probe.json.usage.prompt_tokens;
      assert.ok(room >= 80, `only ${room} tokens left for the call`);
      const res = await http(d2, 'POST', '/v1/chat/completions', {
        key: KEYS.premium,
        body: { messages: [{ role: 'user', content: 'Hi' }], tools, tool_choice, max_tokens: room, temperature: 0 },
      });
      assert.equal(res.status, 200, res.body);
      const choice = res.json.choices[0];
      assert.equal(choice.finish_reason, 'tool_calls', res.body);
      assert.equal(choice.message.tool_calls.length, 1, res.body);
      assert.equal(choice.message.tool_calls[0].function.name, 'pick');
      const args = JSON.parse(choice.message.tool_calls[0].function.arguments);
      assert.deepEqual(Object.keys(args), ['c']);
      assert.ok(['r', 'b'].includes(args.c), res.body);
    }
  } finally {
    await d2.stop();
  }
  // A forced call and a response_format cannot both constrain one reply.
  const both = await http(d, 'POST', '/v1/chat/completions', {
    key: KEYS.premium,
    body: { messages: [{ role: 'user', content: 'Hi' }], tools: [PICK], tool_choice: 'required',
      response_format: { type: 'json_object' }, max_tokens: 8 },
  });
  assert.equal(both.status, 400, both.body);
  assert.equal(both.json.error.param, 'tool_choice');
});

test('Responses API: a generated call becomes a function_call item, streamed as typed events', async (t) => {
  if (!haveData(t)) return;
  const tools = [{ type: 'function', name: 'get_weather', parameters: TOOLS[0].function.parameters }];
  const r = await client(CALLER_KEY).responses.create({ model: 'stories', input: 'Hi', tools, max_output_tokens: 80 });
  assert.equal(r.status, 'completed');
  assert.equal(r.output.length, 1, JSON.stringify(r.output));
  const item = r.output[0];
  assert.equal(item.type, 'function_call');
  assert.equal(item.name, 'get_weather');
  assert.equal(item.arguments, '{"city": "Paris"}');
  assert.match(item.call_id, /^call_[A-Za-z0-9]{24}$/);
  assert.match(item.id, /^fc_/);
  assert.deepEqual(r.tools, tools);

  const stream = client(CALLER_KEY).responses.stream({ model: 'stories', input: 'Hi', tools, max_output_tokens: 80 });
  const types = [];
  let args = '';
  for await (const e of stream) {
    types.push(e.type);
    if (e.type === 'response.function_call_arguments.delta') args += e.delta;
  }
  const collapsed = types.filter((x, i) => x !== types[i - 1]);
  assert.deepEqual(collapsed, [
    'response.created', 'response.in_progress', 'response.output_item.added',
    'response.function_call_arguments.delta', 'response.function_call_arguments.done',
    'response.output_item.done', 'response.completed',
  ]);
  assert.equal(args, '{"city": "Paris"}');
  const final = await stream.finalResponse();
  assert.equal(final.output[0].arguments, '{"city": "Paris"}');
});
