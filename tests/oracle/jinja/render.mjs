// Reference renderer for llmux's chat-template golden tests.
//
// Usage: node render.mjs JOB.json > RESULT.json   (or the job on stdin)
// JOB: {templates: [{name, template, bos_token, eos_token, extra_variables?: {k: v}}],
//       conversations: [{name, messages: [{role, content, tool_calls?, tool_call_id?}],
//                        add_generation_prompt, tools?}]}
// RESULT: {oracle: "@huggingface/jinja@X", results: {template: {conversation: {output} |
//          {error}}}}; a template that does not parse gets {parse_error} instead.
// Renders exactly as transformers.js applies chat templates: new Template(src).render({...}).
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Template } from "@huggingface/jinja";

const here = dirname(fileURLToPath(import.meta.url));
const version = JSON.parse(
  readFileSync(join(here, "node_modules/@huggingface/jinja/package.json"), "utf8"),
).version;
const job = JSON.parse(readFileSync(process.argv[2] ?? 0, "utf8"));

const results = {};
for (const t of job.templates) {
  let template;
  try {
    template = new Template(t.template);
  } catch (e) {
    results[t.name] = { parse_error: String(e.message) };
    continue;
  }
  const perConversation = {};
  for (const c of job.conversations) {
    try {
      perConversation[c.name] = {
        output: template.render({
          messages: c.messages,
          add_generation_prompt: c.add_generation_prompt,
          bos_token: t.bos_token,
          eos_token: t.eos_token,
          ...(c.tools !== undefined ? { tools: c.tools } : {}),
          ...(t.extra_variables ?? {}),
        }),
      };
    } catch (e) {
      perConversation[c.name] = { error: String(e.message) };
    }
  }
  results[t.name] = perConversation;
}
process.stdout.write(JSON.stringify({ oracle: `@huggingface/jinja@${version}`, results }, null, 1));
process.stdout.write("\n");
