// ChatTemplate API: creation from sources, tokenizer_config.json, built-ins and the
// model.chat_template key; errors; concurrent rendering.
#include "llmux/chat_template.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "common/test_data.h"

namespace llmux {
namespace {

namespace fs = std::filesystem;

const std::vector<ChatMessage> kSystemUser = {{"system", "Be brief."}, {"user", "Hi"}};

fs::path WriteFile(const std::string& name, const std::string& text) {
  const fs::path p = fs::path(::testing::TempDir()) / name;
  std::ofstream(p, std::ios::binary) << text;
  return p;
}

std::string MustRender(const ChatTemplate& t, const std::vector<ChatMessage>& m, bool gen) {
  auto r = t.Render(m, gen);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : "";
}

TEST(ChatTemplateTest, BuiltinChatmlBothWays) {
  auto t = ChatTemplate::Builtin("chatml");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(MustRender(**t, kSystemUser, false),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
  EXPECT_EQ(MustRender(**t, kSystemUser, true),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\n");
}

TEST(ChatTemplateTest, BuiltinLlama3UsesBosAndTrims) {
  auto t = ChatTemplate::Builtin("llama3", {"<|begin_of_text|>", "<|end_of_text|>", {}, {}});
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(MustRender(**t, {{"user", "  Hi \n"}}, true),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(MustRender(**t, {{"user", "Hi"}}, false),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
}

TEST(ChatTemplateTest, BuiltinLlama2FoldsSystemAndRejectsBadOrder) {
  auto t = ChatTemplate::Builtin("llama2", {"<s>", "</s>", {}, {}});
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(MustRender(**t, {{"system", "S"}, {"user", "U"}, {"assistant", "A"}}, false),
            "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nU [/INST] A </s>");
  auto bad = (*t)->Render(std::vector<ChatMessage>{{"assistant", "A"}}, true);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(),
            "Conversation roles must alternate user/assistant/user/assistant/...");
}

TEST(ChatTemplateTest, BuiltinNames) {
  EXPECT_EQ(ChatTemplate::BuiltinNames(),
            (std::vector<std::string>{"chatml", "llama3", "llama2", "plain"}));
  auto plain = ChatTemplate::Builtin("plain");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(MustRender(**plain, kSystemUser, true), "Be brief.\n\nUser: Hi\nAssistant:");
  auto unknown = ChatTemplate::Builtin("vicuna");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(unknown.status().message(),
            "unknown built-in chat template 'vicuna' (known: chatml, llama3, llama2, plain)");
}

TEST(ChatTemplateTest, TemplateForbiddingSystemRaises) {
  auto t = ChatTemplate::Create(
      "{% if messages[0]['role'] == 'system' %}"
      "{{ raise_exception('System role not supported') }}{% endif %}"
      "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}",
      {});
  ASSERT_TRUE(t.ok());
  auto r = (*t)->Render(kSystemUser, true);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(), "System role not supported");
  EXPECT_EQ(MustRender(**t, {{"user", "Hi"}}, true), "<user>Hi");
}

TEST(ChatTemplateTest, UnsupportedConstructFailsAtCreate) {
  auto t = ChatTemplate::Create(
      "{{ bos_token }}\n{% for m in messages %}\n  {% include 'turn' %}"
      "\n{% endfor %}",
      {});
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(t.status().message(),
            "chat template uses an unsupported construct at line 3, column 6: {% include %} is "
            "not supported by llmux's Jinja subset");
}

TEST(ChatTemplateTest, ContextVariablesAndClock) {
  ChatTemplateContext ctx{"<s>", "</s>", {{"pad_token", "<pad>"}}, [] {
                            std::tm t{};
                            t.tm_year = 125;
                            t.tm_mon = 0;
                            t.tm_mday = 31;
                            return t;
                          }};
  auto t = ChatTemplate::Create(
      "{{ bos_token }}{{ eos_token }}{{ pad_token }} "
      "{{ strftime_now('%d %B %Y') }}",
      ctx);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(MustRender(**t, {}, false), "<s></s><pad> 31 January 2025");
}

TEST(ChatTemplateTest, FromTokenizerConfigStringAndAddedTokens) {
  const fs::path p = WriteFile("tc_string.json", R"({
    "bos_token": {"content": "<B>", "lstrip": false},
    "eos_token": "<E>",
    "chat_template": "{{ bos_token }}{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}"
  })");
  auto t = ChatTemplate::FromTokenizerConfig(p);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(MustRender(**t, kSystemUser, true), "<B>Be brief.<E>Hi<E>");
}

TEST(ChatTemplateTest, FromTokenizerConfigListPicksDefault) {
  const fs::path p = WriteFile("tc_list.json", R"({
    "chat_template": [{"name": "tool_use", "template": "TOOLS"},
                      {"name": "default", "template": "DEFAULT{{ messages|length }}"}]
  })");
  auto t = ChatTemplate::FromTokenizerConfig(p);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(MustRender(**t, kSystemUser, false), "DEFAULT2");

  const fs::path no_default =
      WriteFile("tc_nodefault.json", R"({"chat_template": [{"name": "rag", "template": "x"}]})");
  auto missing = ChatTemplate::FromTokenizerConfig(no_default);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("no \"default\" template (has: rag)"),
            std::string::npos);
}

TEST(ChatTemplateTest, FromTokenizerConfigErrors) {
  auto none = ChatTemplate::FromTokenizerConfig(WriteFile("tc_none.json", R"({"eos_token": "x"})"));
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), StatusCode::kNotFound);
  auto bad_json = ChatTemplate::FromTokenizerConfig(WriteFile("tc_bad.json", "{not json"));
  ASSERT_FALSE(bad_json.ok());
  EXPECT_EQ(bad_json.status().code(), StatusCode::kDataLoss);
  auto absent = ChatTemplate::FromTokenizerConfig("/nonexistent/tokenizer_config.json");
  ASSERT_FALSE(absent.ok());
  EXPECT_EQ(absent.status().code(), StatusCode::kNotFound);
  const fs::path bad_tmpl =
      WriteFile("tc_badtmpl.json", R"({"chat_template": "{% for m in messages %}x"})");
  auto bad = ChatTemplate::FromTokenizerConfig(bad_tmpl);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(),
            bad_tmpl.string() +
                ": chat template syntax error at line 1, column 1: {% for %} is never closed "
                "(missing {% endfor %})");
}

TEST(ChatTemplateTest, FromSpecSelectsSource) {
  const fs::path config = WriteFile("tc_spec.json", R"({"bos_token": "<B>", "eos_token": "<E>",
      "chat_template": "OWN{{ bos_token }}"})");
  const fs::path file = WriteFile("custom.jinja", "FILE{{ eos_token }}\n");
  auto own = ChatTemplate::FromSpec("", config);
  ASSERT_TRUE(own.ok());
  EXPECT_EQ(MustRender(**own, {}, false), "OWN<B>");
  auto builtin = ChatTemplate::FromSpec("builtin:llama3", config);
  ASSERT_TRUE(builtin.ok());
  EXPECT_EQ(MustRender(**builtin, {{"user", "x"}}, false),
            "<B><|start_header_id|>user<|end_header_id|>\n\nx<|eot_id|>");
  auto from_file = ChatTemplate::FromSpec("file:" + file.string(), config);
  ASSERT_TRUE(from_file.ok());
  EXPECT_EQ(MustRender(**from_file, {}, false), "FILE<E>");
  auto no_config = ChatTemplate::FromSpec("builtin:chatml", "/nonexistent/tokenizer_config.json");
  ASSERT_TRUE(no_config.ok());
  auto bad = ChatTemplate::FromSpec("url:http://x", config);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
}

TEST(ChatTemplateTest, Llama3TokenizerConfigFromNpm) {
  LLMUX_REQUIRE_DATA(path, testing::FetchedDataDir() / "llama3/tokenizer_config.json");
  auto t = ChatTemplate::FromTokenizerConfig(path);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  // NOTE: this (base-model) template always appends the assistant header.
  const std::string expected =
      "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
      "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
      "<|start_header_id|>assistant<|end_header_id|>\n\n";
  EXPECT_EQ(MustRender(**t, kSystemUser, true), expected);
  EXPECT_EQ(MustRender(**t, kSystemUser, false), expected);
}

TEST(ChatTemplateTest, Stories260KTokenizerConfig) {
  LLMUX_REQUIRE_DATA(path,
                     testing::SharedDataDir() / "models/stories260K-hf/tokenizer_config.json");
  auto t = ChatTemplate::FromTokenizerConfig(path);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(MustRender(**t, kSystemUser, true), "<s>Be brief.Hi");
}

TEST(ChatTemplateTest, RenderIsThreadSafe) {
  auto t = ChatTemplate::Create(
      "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + m.content|length "
      "%}{{ loop.index }}:{{ m.role|upper }}{% endfor %}={{ ns.n }}",
      {});
  ASSERT_TRUE(t.ok());
  std::vector<std::vector<ChatMessage>> inputs;
  std::vector<std::string> expected;
  for (int k = 0; k < 8; ++k) {
    std::vector<ChatMessage> conv;
    for (int j = 0; j <= k; ++j)
      conv.push_back({j % 2 ? "assistant" : "user", std::string(j, 'x')});
    inputs.push_back(conv);
    expected.push_back(MustRender(**t, conv, false));
  }
  EXPECT_EQ(expected[2], "1:USER2:ASSISTANT3:USER=3");
  std::vector<int> mismatches(inputs.size(), 0);
  std::vector<std::thread> threads;
  for (size_t k = 0; k < inputs.size(); ++k) {
    threads.emplace_back([&, k] {
      for (int rep = 0; rep < 300; ++rep) {
        auto r = (*t)->Render(inputs[k], false);
        if (!r.ok() || *r != expected[k]) ++mismatches[k];
      }
    });
  }
  for (auto& th : threads) th.join();
  for (size_t k = 0; k < inputs.size(); ++k) EXPECT_EQ(mismatches[k], 0) << k;
}

}  // namespace
}  // namespace llmux
