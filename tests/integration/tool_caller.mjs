// The daemon of the tool-calling suites (tools.test.mjs, clients.test.mjs): stories260K served
// with Qwen3's tools-aware chat template (pinned by scripts/test_data.sh). A tiny story model
// never writes a tool call by itself, so the tenant `caller` runs with the test-only engine hook
// LLMUX_TEST_FORCE_TOKENS of the test daemon llmuxd-test: its requests generate the token ids
// of CALL_TEXT (a Hermes tool call), then EOS.
import fs from 'node:fs';
import path from 'node:path';
import {
  STORIES, defaultTenants, requireData, serverYaml, standardTenant, startDaemon, tokenize,
} from './harness.mjs';

export const QWEN3 = path.resolve(process.cwd(), '../../.testdata/qwen3/tokenizer_config.json');
export const CALLER_KEY = 'sk-test-caller';
export const CALL_TEXT =
  '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>';
const EOS = 2;

// Whether the model and Qwen3's template exist; under CI=true a missing one is a failure.
export function haveData(t) {
  if (!requireData(t)) return false;
  if (fs.existsSync(QWEN3)) return true;
  if (process.env.CI === 'true') throw new Error(`test data missing under CI=true: ${QWEN3} (run scripts/test_data.sh)`);
  t.skip(`SKIPPED: ${QWEN3} missing (run scripts/test_data.sh)`);
  return false;
}

// Starts the daemon: { d, chatTemplate } (Qwen3's template text), or null when the data is
// missing (each test then skips, or fails under CI, through haveData). `tag` names the
// template's temporary folder.
export async function startToolCallerDaemon(tag) {
  if (!fs.existsSync(path.join(STORIES, 'config.json')) || !fs.existsSync(QWEN3)) return null;
  const chatTemplate = JSON.parse(fs.readFileSync(QWEN3, 'utf8')).chat_template;
  const dir = fs.mkdtempSync(path.join(process.env.TMPDIR ?? '/tmp', `llmux-${tag}-`));
  const tplPath = path.join(dir, 'qwen3.jinja');
  fs.writeFileSync(tplPath, chatTemplate);
  const d = await startDaemon({
    server: serverYaml().replace('max_model_len: 512 }', `max_model_len: 512, chat_template: "file:${tplPath}" }`),
    tenants: defaultTenants(standardTenant('caller', CALLER_KEY)),
    binary: 'llmuxd-test',
    env: { LLMUX_TEST_FORCE_TOKENS: `caller:${[...tokenize(CALL_TEXT), EOS].join(',')}` },
  });
  return { d, chatTemplate };
}
