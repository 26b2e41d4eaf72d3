// Tool-call output parsing: both formats, several calls, fallbacks, and streamed fragments
// that reassemble to the whole-reply parse at every split point.
#include "server/tool_calls.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace llmux::server {
namespace {

// Streams `text` in pieces of `piece` bytes and reassembles content and calls.
ParsedToolOutput Streamed(ToolCallFormat format, const std::string& text, size_t piece) {
  ToolCallStreamParser parser(format);
  ParsedToolOutput r;
  std::string content;
  auto take = [&](const ToolStreamDelta& d) {
    content += d.content;
    for (const ToolCallDelta& c : d.calls) {
      if (c.first) {
        EXPECT_EQ(c.index, static_cast<int>(r.calls.size()));
        r.calls.push_back({c.name, ""});
      } else {
        EXPECT_FALSE(c.arguments.empty()) << "empty non-first delta";
      }
      ASSERT_LT(c.index, static_cast<int>(r.calls.size()));
      r.calls[c.index].arguments += c.arguments;
    }
  };
  for (size_t p = 0; p < text.size(); p += piece) take(parser.Push(text.substr(p, piece)));
  take(parser.Finish());
  if (!content.empty() || r.calls.empty()) r.content = content;
  return r;
}

void ExpectSame(const ParsedToolOutput& a, const ParsedToolOutput& b, const std::string& where) {
  EXPECT_EQ(a.content.has_value(), b.content.has_value()) << where;
  if (a.content && b.content) {
    EXPECT_EQ(*a.content, *b.content) << where;
  }
  ASSERT_EQ(a.calls.size(), b.calls.size()) << where;
  for (size_t i = 0; i < a.calls.size(); ++i) {
    EXPECT_EQ(a.calls[i].name, b.calls[i].name) << where;
    EXPECT_EQ(a.calls[i].arguments, b.calls[i].arguments) << where;
  }
}

// Every piece size from 1 byte to the whole text gives the whole-reply result.
void ExpectStreamingMatches(ToolCallFormat format, const std::string& text) {
  const ParsedToolOutput whole = ParseToolCalls(format, text);
  for (size_t piece = 1; piece <= text.size(); ++piece) {
    ExpectSame(Streamed(format, text, piece), whole, "piece " + std::to_string(piece));
  }
}

TEST(ToolCallFormatTest, ChosenFromTemplate) {
  EXPECT_EQ(ToolCallFormatForTemplate("... <tool_call>\n{\"name\": ...} </tool_call>"),
            ToolCallFormat::kHermes);
  EXPECT_EQ(ToolCallFormatForTemplate(
                "<|start_header_id|>user<|end_header_id|> Respond in the format "
                "{\"name\": function name, \"parameters\": dictionary of argument name and its value}"),
            ToolCallFormat::kLlama3Json);
  EXPECT_EQ(ToolCallFormatForTemplate("{{ bos_token }}{% for m in messages %}{% endfor %}"),
            ToolCallFormat::kNone);
}

TEST(ToolCallIdTest, OpenAiShape) {
  const std::string id = NewToolCallId();
  ASSERT_EQ(id.size(), 29u);
  EXPECT_EQ(id.substr(0, 5), "call_");
  for (char c : id.substr(5)) EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c))) << id;
  EXPECT_NE(NewToolCallId(), id);
}

TEST(HermesToolCallsTest, OneCall) {
  const std::string text =
      "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": "
      "\"c\"}}\n</tool_call>";
  const ParsedToolOutput r = ParseToolCalls(ToolCallFormat::kHermes, text);
  EXPECT_FALSE(r.content.has_value());
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(r.calls[0].name, "get_weather");
  EXPECT_EQ(r.calls[0].arguments, "{\"city\": \"Paris\", \"unit\": \"c\"}");
  ExpectStreamingMatches(ToolCallFormat::kHermes, text);
}

TEST(HermesToolCallsTest, ContentThenSeveralCalls) {
  const std::string text =
      "Let me check both.\n\n<tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": [1, {\"y\": "
      "\"}]\"}]}}\n</tool_call>\n<tool_call>\n{\"arguments\": {}, \"name\": \"b\"}\n</tool_call>\n";
  const ParsedToolOutput r = ParseToolCalls(ToolCallFormat::kHermes, text);
  ASSERT_TRUE(r.content.has_value());
  EXPECT_EQ(*r.content, "Let me check both.");
  ASSERT_EQ(r.calls.size(), 2u);
  EXPECT_EQ(r.calls[0].name, "a");
  EXPECT_EQ(r.calls[0].arguments, "{\"x\": [1, {\"y\": \"}]\"}]}");
  EXPECT_EQ(r.calls[1].name, "b");
  EXPECT_EQ(r.calls[1].arguments, "{}");
  ExpectStreamingMatches(ToolCallFormat::kHermes, text);
}

TEST(HermesToolCallsTest, UnclosedCompleteCallAtEndCounts) {
  const std::string text = "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"q\": 1}}";
  const ParsedToolOutput r = ParseToolCalls(ToolCallFormat::kHermes, text);
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(r.calls[0].arguments, "{\"q\": 1}");
  ExpectStreamingMatches(ToolCallFormat::kHermes, text);
}

TEST(HermesToolCallsTest, ClosingTagCutByTheTokenLimitIsStillTheTag) {
  const std::string text = "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_ca";
  const ParsedToolOutput r = ParseToolCalls(ToolCallFormat::kHermes, text);
  EXPECT_FALSE(r.content.has_value());
  ASSERT_EQ(r.calls.size(), 1u);
  ExpectStreamingMatches(ToolCallFormat::kHermes, text);
}

TEST(HermesToolCallsTest, MalformedFallsBackToContent) {
  for (const std::string& text : {
           std::string("<tool_call>\nnot json at all\n</tool_call>"),
           std::string("<tool_call>\n{\"arguments\": {\"a\": 1}}\n</tool_call>"),  // no name
           std::string("Sure <tool_call>\n{\"name\": \"f\", \"argu"),               // truncated
           std::string("<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": }}\n</tool_call>"),
           std::string("a < b and <tool_ca"),
       }) {
    const ParsedToolOutput r = ParseToolCalls(ToolCallFormat::kHermes, text);
    EXPECT_TRUE(r.calls.empty()) << text;
    ASSERT_TRUE(r.content.has_value()) << text;
    EXPECT_EQ(*r.content, text);
  }
  // Streamed, the same texts come back as content when nothing of a call was sent.
  for (const std::string& text : {std::string("<tool_call>\nnot json at all\n</tool_call>"),
                                 std::string("a < b and <tool_ca"),
                                 std::string("<tool_call>\n{\"arguments\": {\"a\": 1}}\n</tool_call>")}) {
    ExpectStreamingMatches(ToolCallFormat::kHermes, text);
  }
}

TEST(HermesToolCallsTest, PlainTextIsUntouched) {
  const std::string text = "Once upon a time,\n there was a <b>cat</b>.  \n\n";
  const ParsedToolOutput r = ParseToolCalls(ToolCallFormat::kHermes, text);
  EXPECT_TRUE(r.calls.empty());
  EXPECT_EQ(*r.content, text);
  ExpectStreamingMatches(ToolCallFormat::kHermes, text);
}

TEST(HermesToolCallsTest, StreamingSendsNameFirstThenArgumentFragments) {
  ToolCallStreamParser parser(ToolCallFormat::kHermes);
  EXPECT_TRUE(parser.Push("<tool_").empty());
  EXPECT_TRUE(parser.Push("call>\n{\"name\": \"get_").empty());
  ToolStreamDelta d = parser.Push("weather\", \"arguments\": {\"ci");
  ASSERT_EQ(d.calls.size(), 1u);
  EXPECT_TRUE(d.calls[0].first);
  EXPECT_EQ(d.calls[0].name, "get_weather");
  EXPECT_EQ(d.calls[0].arguments, "{\"ci");
  d = parser.Push("ty\": \"Paris\"}  ");
  ASSERT_EQ(d.calls.size(), 1u);
  EXPECT_FALSE(d.calls[0].first);
  EXPECT_EQ(d.calls[0].arguments, "ty\": \"Paris\"}");
  EXPECT_TRUE(parser.Push("}\n</tool_call>").empty());
  EXPECT_TRUE(parser.Finish().empty());
  EXPECT_EQ(parser.num_calls(), 1);
}

// Meta's documented Llama 3.1 JSON tool-calling reply: {"name": ..., "parameters": {...}}.
TEST(Llama3JsonToolCallsTest, DocumentedFormat) {
  const std::string text =
      "{\"name\": \"get_current_conditions\", \"parameters\": {\"location\": \"San Francisco, CA\", "
      "\"unit\": \"Fahrenheit\"}}";
  const ParsedToolOutput r = ParseToolCalls(ToolCallFormat::kLlama3Json, text);
  EXPECT_FALSE(r.content.has_value());
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(r.calls[0].name, "get_current_conditions");
  EXPECT_EQ(r.calls[0].arguments, "{\"location\": \"San Francisco, CA\", \"unit\": \"Fahrenheit\"}");
  ExpectStreamingMatches(ToolCallFormat::kLlama3Json, text);
}

TEST(Llama3JsonToolCallsTest, PythonTagAndSeveralCalls) {
  const std::string text =
      "<|python_tag|>{\"name\": \"a\", \"parameters\": {\"n\": 1}}; {\"name\": \"b\", "
      "\"parameters\": {\"s\": \"x;y\"}}";
  const ParsedToolOutput r = ParseToolCalls(ToolCallFormat::kLlama3Json, text);
  ASSERT_EQ(r.calls.size(), 2u);
  EXPECT_EQ(r.calls[0].name, "a");
  EXPECT_EQ(r.calls[0].arguments, "{\"n\": 1}");
  EXPECT_EQ(r.calls[1].name, "b");
  EXPECT_EQ(r.calls[1].arguments, "{\"s\": \"x;y\"}");
  ExpectStreamingMatches(ToolCallFormat::kLlama3Json, text);
}

TEST(Llama3JsonToolCallsTest, TextAndOtherJsonAreContent) {
  for (const std::string& text : {std::string("The weather is nice."),
                                 std::string("{\"answer\": 42}"), std::string("{\"name\": 5}"),
                                 std::string("  {\"name\": \"f\", \"parameters\": {\"a\": tru")}) {
    const ParsedToolOutput r = ParseToolCalls(ToolCallFormat::kLlama3Json, text);
    EXPECT_TRUE(r.calls.empty()) << text;
    EXPECT_EQ(*r.content, text);
  }
  ExpectStreamingMatches(ToolCallFormat::kLlama3Json, "{\"answer\": 42}");
  ExpectStreamingMatches(ToolCallFormat::kLlama3Json, "The weather is nice.");
}

TEST(NoFormatToolCallsTest, EverythingIsContent) {
  const std::string text = "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>";
  const ParsedToolOutput r = ParseToolCalls(ToolCallFormat::kNone, text);
  EXPECT_TRUE(r.calls.empty());
  EXPECT_EQ(*r.content, text);
}

}  // namespace
}  // namespace llmux::server
