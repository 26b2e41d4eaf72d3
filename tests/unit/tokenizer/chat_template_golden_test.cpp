// Golden tests: llmux's chat-template renderer against the reference renderer
// @huggingface/jinja (tests/oracle/jinja, pinned in its package.json), character for character.
//
// Each template renders a fixed set of conversations. The expected outputs are committed
// under chat_template_golden/<template>.json. When node and the installed oracle are
// available (`npm ci` in tests/oracle/jinja) the oracle is also rerun live and must agree
// with both llmux and the goldens. Regenerate goldens with:
//   LLMUX_UPDATE_GOLDENS=1 build/tests/unit_tokenizer --gtest_filter='ChatTemplateGolden*'
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "common/test_data.h"
#include "llmux/chat_template.h"
#include "tokenizer/chat_template_builtins.h"

namespace llmux {
namespace {

namespace fs = std::filesystem;
// NOTE: ordered, so that messages reach the oracle as {role, content}, as real requests do.
using json = nlohmann::ordered_json;

struct Conversation {
  std::string name;
  std::vector<ChatMessage> messages;
};

std::vector<Conversation> Conversations() {
  return {
      {"system_user", {{"system", "You are a helpful assistant."}, {"user", "Hello!"}}},
      {"user_only", {{"user", "What is 2+2?"}}},
      {"multi_turn",
       {{"user", "Hi"}, {"assistant", "Hello! How can I help?"}, {"user", "Tell me a joke."}}},
      {"system_multi_turn",
       {{"system", "Be terse."},
        {"user", "Capital of France?"},
        {"assistant", "Paris."},
        {"user", "And of Italy?"}}},
      {"quotes_newlines",
       {{"user",
         "He said \"hi\" and 'bye'.\nLine two\twith a tab\\backslash.\n\n{{ not a tag }} "
         "{% if %}"}}},
      {"unicode",
       {{"system", "Réponds en français."}, {"user", "Grüße, 世界! 🚀 naïve café — Привет"}}},
      {"padded_content", {{"user", "  padded content \n"}, {"assistant", "\n answer\t "}}},
      {"empty_content", {{"user", ""}}},
      {"assistant_first", {{"assistant", "I speak first."}, {"user", "OK."}}},
      {"tool_role", {{"user", "Weather?"}, {"tool", "{\"temp\": 21}"}}},
      {"no_messages", {}},
      {"think_tags",
       {{"user", "Q1"},
        {"assistant", "<think>\nreasoning\n</think>\n\nA1"},
        {"user", "Q2"},
        {"assistant", "<think>more</think>A2"}}},
  };
}

struct TemplateCase {
  std::string name;
  std::string source;  // empty: take the one recorded in the golden
  std::string bos_token;
  std::string eos_token;
  std::string data_note;  // why source is empty
};

fs::path GoldenDir() {
  return fs::path(LLMUX_SOURCE_DIR) / "tests/unit/tokenizer/chat_template_golden";
}
fs::path OracleDir() { return fs::path(LLMUX_SOURCE_DIR) / "tests/oracle/jinja"; }

std::string ReadText(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A template from a tokenizer_config.json, when the file is present.
TemplateCase FromConfig(const std::string& name, const fs::path& config_path) {
  TemplateCase c{name, "", "", "", ""};
  if (!fs::exists(config_path)) {
    c.data_note = config_path.string() + " missing; using the template recorded in the golden";
    return c;
  }
  const json config = json::parse(ReadText(config_path));
  c.source = config.at("chat_template").get<std::string>();
  auto token = [&](const char* key) -> std::string {
    if (!config.contains(key)) return "";
    const json& t = config[key];
    return t.is_string() ? t.get<std::string>() : t.value("content", "");
  };
  c.bos_token = token("bos_token");
  c.eos_token = token("eos_token");
  return c;
}

bool OracleAvailable() {
  if (!fs::exists(OracleDir() / "node_modules/@huggingface/jinja/package.json")) return false;
  return std::system("node --version > /dev/null 2>&1") == 0;
}

json ConversationsJson(const std::vector<Conversation>& conversations) {
  json out = json::array();
  for (const auto& conv : conversations) {
    for (bool agp : {false, true}) {
      json messages = json::array();
      for (const auto& m : conv.messages)
        messages.push_back({{"role", m.role}, {"content", m.content}});
      out.push_back({{"name", conv.name + (agp ? "/gen" : "/nogen")},
                     {"messages", messages},
                     {"add_generation_prompt", agp}});
    }
  }
  return out;
}

// Runs the oracle on `templates`; returns its results object (by template name), or null.
json RunOracle(const std::vector<TemplateCase>& templates, const json& conversations) {
  json list = json::array();
  for (const auto& t : templates) {
    list.push_back({{"name", t.name},
                    {"template", t.source},
                    {"bos_token", t.bos_token},
                    {"eos_token", t.eos_token}});
  }
  const json job = {{"templates", list}, {"conversations", conversations}};
  const fs::path job_path =
      fs::path(::testing::TempDir()) / ("oracle_job_" + templates[0].name + ".json");
  std::ofstream(job_path) << job.dump();
  const std::string cmd =
      "node '" + (OracleDir() / "render.mjs").string() + "' '" + job_path.string() + "'";
  FILE* pipe = popen(cmd.c_str(), "r");
  if (pipe == nullptr) return json();
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof(buf), pipe)) out.append(buf, n);
  if (pclose(pipe) != 0) return json();
  return json::parse(out).at("results");
}

// One rendering, as {output} or {error}.
json RenderOurs(const ChatTemplate& tmpl, const json& conversation) {
  std::vector<ChatMessage> messages;
  for (const auto& m : conversation.at("messages")) {
    messages.push_back({m.at("role").get<std::string>(), m.at("content").get<std::string>()});
  }
  auto out = tmpl.Render(messages, conversation.at("add_generation_prompt").get<bool>());
  if (!out.ok()) {
    EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument);
    return {{"error", out.status().message()}};
  }
  return {{"output", *out}};
}

void CheckTemplate(TemplateCase t) {
  const fs::path golden_path = GoldenDir() / (t.name + ".json");
  json golden;
  if (fs::exists(golden_path)) golden = json::parse(ReadText(golden_path));
  if (t.source.empty()) {
    ASSERT_FALSE(golden.is_null()) << "no source and no golden for " << t.name;
    // Under CI the real file must be there: the recorded copy would hide a template that
    // changed upstream or data that was never fetched.
    const char* ci = std::getenv("CI");
    ASSERT_FALSE(ci != nullptr && std::string(ci) == "true")
        << t.name << ": " << t.data_note << " (a failure under CI=true)";
    std::cout << "NOTE: " << t.data_note << "\n";
    t.source = golden.at("template").get<std::string>();
    t.bos_token = golden.at("bos_token").get<std::string>();
    t.eos_token = golden.at("eos_token").get<std::string>();
  } else if (!golden.is_null()) {
    EXPECT_EQ(golden.at("template").get<std::string>(), t.source)
        << t.name << ": the template changed; regenerate the goldens";
  }
  auto tmpl = ChatTemplate::Create(t.source, {t.bos_token, t.eos_token, {}, {}});
  ASSERT_TRUE(tmpl.ok()) << tmpl.status().ToString();

  const json conversations = ConversationsJson(Conversations());
  json ours = json::object();
  for (const auto& c : conversations) ours[c.at("name").get<std::string>()] = RenderOurs(**tmpl, c);

  const bool update = std::getenv("LLMUX_UPDATE_GOLDENS") != nullptr;
  if (OracleAvailable()) {
    const json oracle = RunOracle({t}, conversations).at(t.name);
    ASSERT_TRUE(oracle.is_object()) << "the oracle failed to run";
    for (const auto& c : conversations) {
      const std::string name = c.at("name").get<std::string>();
      EXPECT_EQ(ours[name].dump(), oracle.at(name).dump()) << t.name << " " << name << " (live)";
    }
    if (update) {
      golden = {{"template", t.source},
                {"bos_token", t.bos_token},
                {"eos_token", t.eos_token},
                {"cases", oracle}};
      std::ofstream(golden_path) << golden.dump(1) << "\n";
      std::cout << "wrote " << golden_path << "\n";
    }
  } else {
    ASSERT_FALSE(update) << "LLMUX_UPDATE_GOLDENS needs node and `npm ci` in " << OracleDir();
    std::cout << "NOTE: oracle not installed (npm ci in " << OracleDir()
              << "); comparing with committed goldens only\n";
  }
  ASSERT_FALSE(golden.is_null()) << "missing golden " << golden_path;
  for (const auto& c : conversations) {
    const std::string name = c.at("name").get<std::string>();
    ASSERT_TRUE(golden.at("cases").contains(name)) << name << " missing; regenerate the goldens";
    EXPECT_EQ(ours[name].dump(), golden.at("cases").at(name).dump()) << t.name << " " << name;
  }
}

TEST(ChatTemplateGoldenTest, Llama3FromNpmPackage) {
  CheckTemplate(FromConfig("llama3", testing::FetchedDataDir() / "llama3/tokenizer_config.json"));
}

TEST(ChatTemplateGoldenTest, Stories260K) {
  CheckTemplate(FromConfig(
      "stories260K", testing::SharedDataDir() / "models/stories260K-hf/tokenizer_config.json"));
}

TEST(ChatTemplateGoldenTest, BuiltinChatml) {
  CheckTemplate({"chatml", *BuiltinChatTemplateSource("chatml"), "", "", ""});
}

TEST(ChatTemplateGoldenTest, BuiltinLlama3) {
  CheckTemplate({"builtin_llama3", *BuiltinChatTemplateSource("llama3"), "<|begin_of_text|>",
                 "<|end_of_text|>", ""});
}

TEST(ChatTemplateGoldenTest, BuiltinLlama2) {
  CheckTemplate({"llama2", *BuiltinChatTemplateSource("llama2"), "<s>", "</s>", ""});
}

TEST(ChatTemplateGoldenTest, BuiltinPlain) {
  CheckTemplate({"plain", *BuiltinChatTemplateSource("plain"), "", "</s>", ""});
}

// Multi-line templates written in the style of real model templates (Llama 3.1, Mistral,
// Qwen3, Gemma): {%- -%} everywhere, namespaces, slicing, branches never taken.
constexpr const char* kLlama31Style = R"TPL({{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message + builtin tools #}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\n\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
)TPL";

constexpr const char* kMistralStyle = R"TPL({%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {%- if loop.first and system_message is defined %}
            {{- ' [INST] ' + system_message + '\n\n' + message['content'] + ' [/INST]' }}
        {%- else %}
            {{- ' [INST] ' + message['content'] + ' [/INST]' }}
        {%- endif %}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + message['content'] + eos_token}}
    {%- else %}
        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}
    {%- endif %}
{%- endfor %}
)TPL";

constexpr const char* kQwen3Style = R"TPL({%- if messages[0].role == 'system' %}
    {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and message.content is string and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if message.content is string %}
        {%- set content = message.content %}
    {%- else %}
        {%- set content = '' %}
    {%- endif %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {%- set reasoning_content = '' %}
        {%- if '</think>' in content %}
            {%- set reasoning_content = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
            {%- set content = content.split('</think>')[-1].lstrip('\n') %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index %}
            {{- '<|im_start|>' + message.role + '\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\n' + content }}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\n\n</think>\n\n' }}
    {%- endif %}
{%- endif %}
)TPL";

constexpr const char* kGemmaStyle = R"TPL({{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
)TPL";

TEST(ChatTemplateGoldenTest, RealisticLlama31Style) {
  CheckTemplate({"llama31_style", kLlama31Style, "<|begin_of_text|>", "<|eot_id|>", ""});
}

TEST(ChatTemplateGoldenTest, RealisticMistralStyle) {
  CheckTemplate({"mistral_style", kMistralStyle, "<s>", "</s>", ""});
}

TEST(ChatTemplateGoldenTest, RealisticQwen3Style) {
  CheckTemplate({"qwen3_style", kQwen3Style, "", "<|im_end|>", ""});
}

TEST(ChatTemplateGoldenTest, RealisticGemmaStyle) {
  CheckTemplate({"gemma_style", kGemmaStyle, "<bos>", "<eos>", ""});
}

// Small templates exercising one feature each, rendered over one rich conversation. A name
// starting "raise_" expects raise_exception (its message must match); "fail_" expects both
// engines to refuse (llmux at load time where it can).
std::vector<std::pair<std::string, std::string>> Snippets() {
  return {
      {"ws_control", "a  {%- if true -%}  b  {%- endif -%}  c"},
      {"trim_lstrip_blocks", "line1\n  {% if true %}\n  x\n  {% endif %}\nline2\n"},
      {"comments", "a {# c #} b {#- c -#} d\n  {# own line #}\ne"},
      {"lstrip_not_for_output", "  {{ 'x' }}\n  y"},
      {"output_ws_control", "text   {{- ' x ' -}}   more {{ 'y' -}}\n\n z"},
      {"multiline_hf_style",
       "{%- for message in messages %}\n    {%- if message.role == 'system' %}\n        {{- "
       "message.content }}\n    {%- else %}\n<{{ message.role }}>\n{{ message.content }}\n    "
       "{%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n<assistant>\n{%- endif "
       "%}\n"},
      {"loop_vars",
       "{% for m in messages %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}"
       "{{ loop.length }}{{ loop.revindex }}{{ loop.revindex0 }}|{% endfor %}"},
      {"loop_prev_next",
       "{% for x in [1,2,3] %}{{ loop.previtem }}-{{ loop.nextitem }};{% endfor %}"},
      {"for_else", "{% for x in [] %}x{% else %}empty{% endfor %}"},
      {"for_filter", "{% for m in messages if m.role != 'system' %}{{ m.role }},{% endfor %}"},
      {"for_items", "{% for k, v in {'a': 1, 'b': [1, 2]}.items() %}{{ k }}={{ v }};{% endfor %}"},
      {"for_dict_keys", "{% for k in {'x': 1, 'y': 2} %}{{ k }}{% endfor %}"},
      {"nested_loops",
       "{% for a in [1, 2] %}{% for b in ['x', 'y'] %}{{ loop.index }}{{ a }}{{ b }} {% endfor %}"
       "{{ loop.index }}|{% endfor %}"},
      {"break_continue",
       "{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}"
       "{% break %}{% endif %}{{ i }}{% endfor %}"},
      {"break_drops_iteration",
       "{% for i in range(3) %}a{{ i }}{% if i == 1 %}{% break %}{% endif %}b{% endfor %}"},
      {"namespace",
       "{% set ns = namespace(found=false, n=0) %}{% for m in messages %}{% if m.role == 'user' "
       "%}{% set ns.found = true %}{% endif %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.found }} "
       "{{ ns.n }} {{ ns }}"},
      {"set_scoping",
       "{% set x = 1 %}{% for i in [1, 2] %}{% set x = x + i %}{{ x }}{% endfor %}{{ x }}"},
      {"set_in_if_leaks", "{% if true %}{% set y = 'in' %}{% endif %}{{ y }}"},
      {"set_block", "{% set b %}hello {{ 'world' }}{% endset %}[{{ b }}]"},
      {"set_tuple", "{% set a, b = [1, 2] %}{{ a + b }}"},
      {"print_values",
       "{{ none }}|{{ true }}|{{ 1.0 }}|{{ 2.5 }}|{{ [1, 'a', none, true] }}|{{ {'k': 'v', 'n': "
       "1.5} }}|{{ messages[0] }}|{{ (1, 2) }}"},
      {"arithmetic",
       "{{ 10 / 4 }}|{{ 7 // 2 }}|{{ -7 % 3 }}|{{ 2 ** 10 }}|{{ 3 / 2 }}|{{ 4 / 2 }}|{{ 2 * 2.5 }}"
       "|{{ 7 % 2.5 }}|{{ 2 ** -1 }}|{{ 10 // 4.0 }}|{{ 1 + 2 * 3 - 4 }}"},
      {"float_format",
       "{{ 0.1 + 0.2 }}|{{ 1 / 3 }}|{{ 100000000000000000000.0 }}|{{ 0.000001 }}|{{ 0.0000001 }}|"
       "{{ 123456789.125 }}|{{ [0.5, 1.0]|tojson }}"},
      {"concat", "{{ 'a' ~ 1 ~ 2.0 ~ true }}|{{ 'n' + 1 }}|{{ 'x' + 'y' }}|{{ [1] + [2, 3] }}"},
      {"comparisons",
       "{{ 1 < 2 }}{{ 2 <= 2 }}{{ 'a' == 'a' }}{{ 1 == 1.0 }}{{ 1 == true }}{{ none == none }}"
       "{{ undefined_var == none }}{{ 'a' != 'b' }}{{ 3 > 4 }}{{ '1' == 1 }}{{ messages == "
       "messages }}"},
      {"membership",
       "{{ 'a' in 'cat' }}{{ 'x' in ['x', 'y'] }}{{ 'k' in {'k': 1} }}{{ 3 not in [1, 2] }}"
       "{{ 'z' in undefined_var }}{{ 1 in [1.0] }}"},
      {"logic_values",
       "{{ 0 or 'x' }}|{{ 'a' and 'b' }}|{{ [] or 'empty' }}|{{ not none }}|{{ not 'a' }}"},
      {"tests",
       "{{ x is defined }}{{ messages is defined }}{{ none is none }}{{ 'a' is string }}"
       "{{ 1 is number }}{{ 1.5 is integer }}{{ {} is mapping }}{{ [] is iterable }}{{ 3 is odd }}"
       "{{ 4 is even }}{{ 'ABC' is upper }}{{ 'abc' is lower }}{{ true is boolean }}"
       "{{ x is undefined }}{{ 1 is not none }}{{ messages is sequence }}{{ range is callable }}"
       "{{ true is true }}{{ 0 is false }}"},
      {"ternary_select",
       "{{ 'yes' if messages else 'no' }}|{{ 'hidden' if false }}|{{ 'a' if false else 'b' if true "
       "else 'c' }}"},
      {"slicing",
       "{{ messages[1:]|length }}|{{ 'hello'[::-1] }}|{{ 'hello'[1:3] }}|{{ [1,2,3,4,5][::2] }}|"
       "{{ [1,2,3][-2:] }}|{{ 'abc'[-1] }}|{{ [1,2,3][-1] }}|{{ 'héllo'[1] }}|{{ [1,2,3][5:] }}|"
       "{{ [1,2,3,4][3:0:-1] }}|{{ 'abc'[:] }}"},
      {"members",
       "{{ messages[0].role }}|{{ messages[0]['content'] }}|{{ messages[-1].role }}|"
       "{{ messages[9] }}|{{ messages[0].missing }}|{{ messages.length }}|{{ missing.attr }}|"
       "{{ 'abc'.length }}"},
      {"string_filters",
       "{{ '  x  '|trim }}|{{ 'Hello World'|lower }}|{{ 'hello world-foo bar_baz 2x'|title }}|"
       "{{ 'hELLO'|capitalize }}|{{ 'abc'|upper }}|{{ 'héllo🚀'|length }}|{{ 'a,b'|replace(',', "
       "';') }}"
       "|{{ '12abc'|int }}|{{ 'x'|int }}|{{ '3.5'|float }}|{{ 'abc'|string }}|{{ 'x'|int(7) }}"},
      {"unicode_case",
       "{{ 'Grüße'|upper }}|{{ 'ΑΒΓ Σ'|lower }}|{{ 'straße'|upper }}|{{ 'Привет'|upper }}"},
      {"list_filters",
       "{{ [3, 1, 2]|sort }}|{{ [3, 1, 2]|reverse|list }}|{{ [1, 2]|first }}{{ [1, 2]|last }}|"
       "{{ ['a', 'b']|join(', ') }}|{{ ['a', 'b']|join }}|{{ [1, 1, 2]|unique|list }}|"
       "{{ [1, 'a']|string }}|{{ [1, 2, 3]|length }}|{{ ['b', 'A', 'c']|sort }}|"
       "{{ [3, 1]|sort(reverse=true) }}|{{ 'abc'|join('-') }}"},
      {"tojson",
       "{{ messages|tojson }}|{{ {'a': [1, 2.5, none, true], 'b': 'q\"\\n\\\\'}|tojson }}|"
       "{{ 'é\t'|tojson }}|{{ undefined_var|tojson }}"},
      {"tojson_indent", "{{ {'a': [1, {'b': 2}], 'c': {}, 'd': []}|tojson(indent=2) }}"},
      {"tojson_options",
       "{{ {'b': 1, 'a': 'é🚀'}|tojson(sort_keys=true, ensure_ascii=true) }}|"
       "{{ [1, 2]|tojson(separators=(',', ':')) }}|{{ {'x': 1}|tojson(indent=1) }}"},
      {"default_filter",
       "{{ missing|default('dflt') }}|{{ ''|default('empty', true) }}|{{ 'set'|default('x') }}|"
       "{{ none|default('n') }}|{{ ''|default('e') }}"},
      {"dict_methods",
       "{% set d = {'a': 1, 'b': 2} %}{{ d.keys()|list }}{{ d.values()|list }}{{ d.items()|list }}"
       "{{ d.get('a') }}{{ d.get('z', 'dz') }}[{{ d.get('z') }}]|{{ d|length }}{{ d|items|list }}"
       "{{ {'b': 1, 'a': 2}|dictsort }}"},
      {"string_methods",
       "{{ '  ab  '.strip() }}|{{ '  ab  '.lstrip() }}|{{ '  ab  '.rstrip() }}|{{ ' a b  c "
       "'.split() }}"
       "|{{ 'a,b,c'.split(',') }}|{{ 'a,b,c'.split(',', 1) }}|{{ 'abc'.startswith('ab') }}"
       "{{ 'abc'.endswith(('x', 'c')) }}|{{ 'aaa'.replace('a', 'b', 2) }}|{{ 'MiXed'.upper() }}"
       "{{ 'MiXed'.lower() }}|{{ 'the cat'.title() }}|{{ 'x y'.capitalize() }}|{{ 'ab'.replace('', "
       "'-') }}"},
      {"selectattr_map",
       "{{ messages|selectattr('role', 'equalto', 'user')|list|length }}|"
       "{{ messages|rejectattr('role', 'equalto', 'user')|map(attribute='role')|list }}|"
       "{{ messages|map(attribute='content')|join('/') }}|{{ messages|selectattr('missing')|list "
       "}}|"
       "{{ messages|selectattr('content', 'string')|list|length }}"},
      {"macros",
       "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('A') }} "
       "{{ greet('B', '?') }} {{ greet(name='C', punct='.') }}"},
      {"macro_sees_caller_scope",
       "{% macro show() %}{{ who }}{% endmacro %}{% for who in ['x', 'y'] %}{{ show() }}{% endfor "
       "%}"},
      {"string_escapes",
       "{{ 'tab\\there' }}|{{ \"dq 'single'\" }}|{{ 'a' 'b' }}|{{ '\\u00e9\\x41' }}"},
      {"unary",
       "{{ -1 }}|{{ - 2 + 3 }}|{{ -(1 + 2) }}|{{ +5 }}|{{ not true }}|{{ [1, -2] }}|{{ 5 - -1 }}"},
      {"nested_dict_braces", "{{ {'a': {'b': 1}} }}|{{ {'a': {'b': {'c': 'd'}}}['a']['b'] }}"},
      {"filter_block", "{% filter upper %}hello {{ 'world' }}{% endfilter %}"},
      {"indent_filter", "{{ 'a\nb\n\nc'|indent }}|{{ 'a\nb'|indent(2, true) }}"},
      {"generation_tags",
       "{% for m in messages %}{% generation %}{{ m.content }}{% endgeneration %}|{% endfor %}"
       " x  {%- generation -%}  y  {%- endgeneration %}  z"},
      {"range", "{{ range(3) }}|{{ range(1, 7, 2) }}|{{ range(5, 0, -2) }}"},
      {"undefined_output", "[{{ undefined_thing }}][{{ undefined_thing.attr }}][{{ none.x }}]"},
      {"if_elif_else",
       "{% for m in messages %}{% if m.role == 'system' %}S{% elif m.role == 'user' %}U{% elif "
       "m.role == 'assistant' %}A{% else %}?{% endif %}{% endfor %}"},
      {"content_escaping", "{% for m in messages %}{{ m.content }}\n{% endfor %}"},
      {"raise_system",
       "{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% "
       "endif %}ok"},
      {"raise_concat", "{{ raise_exception('bad role: ' + messages[0].role) }}"},
      {"fail_include", "{% include 'other.jinja' %}"},
      {"fail_extends", "{% extends 'base' %}"},
      {"fail_unclosed_if", "{% if true %}x"},
      {"fail_unterminated_expr", "{{ x"},
      {"fail_unknown_filter", "{{ messages|batch(2) }}"},
      {"fail_undefined_math", "{{ nope + 1 }}"},
      {"fail_loop_over_undefined", "{% for x in nope %}{% endfor %}"},
      {"fail_bad_char", "{{ 1 $ 2 }}"},
  };
}

json Normalize(const std::string& name, const json& result) {
  if (name.rfind("raise_", 0) == 0) return result;
  if (result.contains("error") || result.contains("parse_error")) return {{"fails", true}};
  return result;
}

TEST(ChatTemplateGoldenTest, EngineSnippets) {
  const std::vector<Conversation> rich = {{"rich",
                                           {{"system", "You are \"helpful\".\nBe brief."},
                                            {"user", "Héllo 🚀 {{ x }}"},
                                            {"assistant", "Hi!"},
                                            {"user", "  bye  "}}}};
  json conversations = ConversationsJson(rich);
  conversations.erase(conversations.begin());  // only add_generation_prompt = true
  const std::string conv = "rich/gen";
  std::vector<TemplateCase> cases;
  for (const auto& [name, source] : Snippets()) cases.push_back({name, source, "<s>", "</s>", ""});

  json ours = json::object();
  for (const auto& t : cases) {
    auto tmpl = ChatTemplate::Create(t.source, {t.bos_token, t.eos_token, {}, {}});
    json r = tmpl.ok() ? RenderOurs(**tmpl, conversations[0])
                       : json{{"parse_error", tmpl.status().message()}};
    if (t.name.rfind("fail_", 0) == 0) {
      EXPECT_TRUE(r.contains("error") || r.contains("parse_error")) << t.name << ": " << r.dump();
    }
    ours[t.name] = Normalize(t.name, r);
  }
  const fs::path golden_path = GoldenDir() / "snippets.json";
  json golden;
  if (fs::exists(golden_path)) golden = json::parse(ReadText(golden_path));
  if (OracleAvailable()) {
    const json oracle = RunOracle(cases, conversations);
    ASSERT_TRUE(oracle.is_object()) << "the oracle failed to run";
    json expected = json::object();
    for (const auto& t : cases) {
      const json& r = oracle.at(t.name);
      expected[t.name] = {
          {"template", t.source},
          {"result", Normalize(t.name, r.contains("parse_error") ? r : r.at(conv))}};
      EXPECT_EQ(ours[t.name].dump(), expected[t.name]["result"].dump()) << t.name << " (live)";
    }
    if (std::getenv("LLMUX_UPDATE_GOLDENS") != nullptr) {
      golden = expected;
      std::ofstream(golden_path) << golden.dump(1) << "\n";
    }
  }
  ASSERT_FALSE(golden.is_null()) << "missing golden " << golden_path;
  for (const auto& t : cases) {
    ASSERT_TRUE(golden.contains(t.name)) << t.name << " missing; regenerate the goldens";
    EXPECT_EQ(golden[t.name]["template"].get<std::string>(), t.source) << t.name;
    EXPECT_EQ(ours[t.name].dump(), golden[t.name]["result"].dump()) << t.name;
  }
}

}  // namespace
}  // namespace llmux
