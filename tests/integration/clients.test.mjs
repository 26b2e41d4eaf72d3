// Tool calling through the client libraries applications use, against the real daemon:
// LangChain (@langchain/openai) `bindTools` (invoke and stream) and the Vercel AI SDK
// (`ai` + @ai-sdk/openai) `streamText` with tools, all pinned in package.json. As in
// tools.test.mjs the model is stories260K with Qwen3's template, and the tenant `caller`
// generates a fixed Hermes tool call (test-only LLMUX_TEST_FORCE_TOKENS hook of llmuxd-test).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ChatOpenAI } from '@langchain/openai';
import { streamText, tool, jsonSchema } from 'ai';
import { createOpenAI } from '@ai-sdk/openai';
import { CALLER_KEY, haveData, startToolCallerDaemon } from './tool_caller.mjs';

const WEATHER = {
  type: 'function',
  function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } },
};

let d;

before(async () => {
  d = (await startToolCallerDaemon('clients'))?.d;
});
after(async () => { if (d) await d.stop(); });

const langchain = () => new ChatOpenAI({
  model: 'stories', apiKey: CALLER_KEY, maxTokens: 64, maxRetries: 0, configuration: { baseURL: `${d.url}/v1` },
});

test('LangChain bindTools: invoke returns the tool call with parsed args', async (t) => {
  if (!haveData(t)) return;
  const msg = await langchain().bindTools([WEATHER]).invoke('Hi');
  assert.equal(msg.tool_calls.length, 1, JSON.stringify(msg));
  assert.equal(msg.tool_calls[0].name, 'get_weather');
  assert.deepEqual(msg.tool_calls[0].args, { city: 'Paris' });
  assert.match(msg.tool_calls[0].id, /^call_/);
  assert.equal(msg.response_metadata.finish_reason, 'tool_calls');
});

test('LangChain bindTools: streamed chunks concatenate to the same tool call', async (t) => {
  if (!haveData(t)) return;
  let full;
  for await (const chunk of await langchain().bindTools([WEATHER]).stream('Hi')) {
    full = full === undefined ? chunk : full.concat(chunk);
  }
  assert.equal(full.tool_calls.length, 1, JSON.stringify(full.tool_call_chunks));
  assert.equal(full.tool_calls[0].name, 'get_weather');
  assert.deepEqual(full.tool_calls[0].args, { city: 'Paris' });
});

test('AI SDK streamText with tools: a tool-call part and finishReason tool-calls', async (t) => {
  if (!haveData(t)) return;
  const provider = createOpenAI({ apiKey: CALLER_KEY, baseURL: `${d.url}/v1` });
  const result = streamText({
    model: provider.chat('stories'),
    prompt: 'Hi',
    maxOutputTokens: 64,
    maxRetries: 0,
    tools: {
      get_weather: tool({ inputSchema: jsonSchema({ type: 'object', properties: { city: { type: 'string' } } }) }),
    },
  });
  const parts = [];
  for await (const part of result.fullStream) parts.push(part);
  const errors = parts.filter((p) => p.type === 'error');
  assert.deepEqual(errors, []);
  const calls = await result.toolCalls;
  assert.equal(calls.length, 1, JSON.stringify(parts));
  assert.equal(calls[0].toolName, 'get_weather');
  assert.deepEqual(calls[0].input, { city: 'Paris' });
  assert.equal(await result.finishReason, 'tool-calls');
  assert.equal(await result.text, '');
});
