// Golden tests: llmux's chat-template renderer against the reference renderer
// @huggingface/jinja (tests/oracle/jinja, pinned in its package.json), character for character.
//
// Each template renders a fixed set of conversations. The expected outputs are committed
// under chat_template_golden/<template>.json. When node and the installed oracle are
// available (`npm ci` in tests/oracle/jinja) the oracle is also rerun live and must agree
// with both llmux and the goldens. Regenerate goldens with:
//   LLMUX_UPDATE_GOLDENS=1 build/tests/unit_tokenizer --gtest_filter='ChatTemplateGolden*'
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
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
using nlohmann::json;

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
       {{"system", "Réponds en français."},
        {"user", "Grüße, 世界! 🚀 naïve café — Привет"}}},
      {"padded_content", {{"user", "  padded content \n"}, {"assistant", "\n answer\t "}}},
      {"empty_content", {{"user", ""}}},
      {"assistant_first", {{"assistant", "I speak first."}, {"user", "OK."}}},
      {"tool_role", {{"user", "Weather?"}, {"tool", "{\"temp\": 21}"}}},
      {"no_messages", {}},
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
      for (const auto& m : conv.messages) messages.push_back({{"role", m.role}, {"content", m.content}});
      out.push_back({{"name", conv.name + (agp ? "/gen" : "/nogen")},
                     {"messages", messages},
                     {"add_generation_prompt", agp}});
    }
  }
  return out;
}

// Runs the oracle on one template; returns its results object for that template.
json RunOracle(const TemplateCase& t, const json& conversations) {
  const json job = {{"templates", json::array({{{"name", t.name},
                                                 {"template", t.source},
                                                 {"bos_token", t.bos_token},
                                                 {"eos_token", t.eos_token}}})},
                    {"conversations", conversations}};
  const fs::path job_path = fs::path(::testing::TempDir()) / ("oracle_job_" + t.name + ".json");
  std::ofstream(job_path) << job.dump();
  const std::string cmd =
      "node '" + (OracleDir() / "render.mjs").string() + "' '" + job_path.string() + "'";
  FILE* pipe = popen(cmd.c_str(), "r");
  if (pipe == nullptr) return json();
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof(buf), pipe)) out.append(buf, n);
  if (pclose(pipe) != 0) return json();
  return json::parse(out).at("results").at(t.name);
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
    const json oracle = RunOracle(t, conversations);
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
  CheckTemplate(FromConfig("stories260K",
                           testing::SharedDataDir() / "models/stories260K-hf/tokenizer_config.json"));
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

}  // namespace
}  // namespace llmux
