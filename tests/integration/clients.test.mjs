// Tool calling through the client libraries applications use, against the real daemon:
// LangChain (@langchain/openai) `bindTools` (invoke and stream) and the Vercel AI SDK
// (`ai` + @ai-sdk/openai) `streamText` with tools, all pinned in package.json. As in
// tools.test.mjs the model is stories260K with Qwen3's template, and the tenant `caller`
// generates a fixed Hermes tool call (test-only LLMUX_TEST_FORCE_TOKENS hook of llmuxd-test).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ChatOpenAI } from '@langchain/openai';
import { streamText, tool, jsonSchema } from 'ai';
import { createOpenAI } from '@ai-sdk/openai';
import {
  BUILD_DIR, STORIES, defaultTenants, requireData, serverYaml, sha256, startDaemon,
} from './harness.mjs';

const QWEN3 = path.resolve(process.cwd(), '../../.testdata/qwen3/tokenizer_config.json');
const CALLER_KEY = 'sk-test-caller';
const CALL_TEXT = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>';
const EOS = 2;
const WEATHER = {
  type: 'function',
  function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } },
};

let d;

function tokenize(text) {
  const out = execFileSync(path.join(BUILD_DIR, 'llmux'), ['tokenize', '--model', STORIES], { input: text });
  return out.toString().trim().split(/\s+/).filter((s) => s.length > 0).map(Number);
}

function haveData(t) {
  if (!requireData(t)) return false;
  if (fs.existsSync(QWEN3)) return true;
  if (process.env.CI === 'true') throw new Error(`test data missing under CI=true: ${QWEN3} (run scripts/test_data.sh)`);
  t.skip(`SKIPPED: ${QWEN3} missing (run scripts/test_data.sh)`);
  return false;
}

before(async () => {
  if (!fs.existsSync(path.join(STORIES, 'config.json')) || !fs.existsSync(QWEN3)) return;
  const config = JSON.parse(fs.readFileSync(QWEN3, 'utf8'));
  const dir = fs.mkdtempSync(path.join(process.env.TMPDIR ?? '/tmp', 'llmux-clients-'));
  const tplPath = path.join(dir, 'qwen3.jinja');
  fs.writeFileSync(tplPath, config.chat_template);
  d = await startDaemon({
    server: serverYaml().replace('max_model_len: 512 }', `max_model_len: 512, chat_template: "file:${tplPath}" }`),
    tenants: defaultTenants(`  caller:
    api_keys: [ { sha256: "${sha256(CALLER_KEY)}" } ]
    lane: standard
    max_inflight_tokens: 100000
`),
    binary: 'llmuxd-test',
    env: { LLMUX_TEST_FORCE_TOKENS: `caller:${[...tokenize(CALL_TEXT), EOS].join(',')}` },
  });
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
