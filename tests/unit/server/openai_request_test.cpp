// Request parsing for tools, service_tier, JSON errors and integer ranges; the Responses API
// translation and its event sequence; logprob token texts.
#include "server/openai_request.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "common/test_data.h"
#include "server/responses_api.h"
#include "server/token_text.h"
#include "server/tool_constraint.h"

namespace llmux::server {
namespace {

using json = nlohmann::ordered_json;

OpenAiRequest Ok(ApiKind kind, const std::string& body) {
  auto r = ParseOpenAiRequest(kind, body, RequestLimits{});
  if (auto* e = std::get_if<ApiError>(&r)) {
    ADD_FAILURE() << body << " -> " << e->ToJson();
    return {};
  }
  return std::get<OpenAiRequest>(r);
}

ApiError Err(ApiKind kind, const std::string& body) {
  auto r = ParseOpenAiRequest(kind, body, RequestLimits{});
  EXPECT_TRUE(std::holds_alternative<ApiError>(r)) << body;
  return std::holds_alternative<ApiError>(r) ? std::get<ApiError>(r) : ApiError{};
}

TEST(OpenAiRequestToolsTest, ToolsKeepTheSchemaKeyOrderForTheTemplate) {
  const OpenAiRequest r = Ok(ApiKind::kChat, R"({"messages": [{"role": "user", "content": "Hi"}],
    "tools": [{"type": "function", "function": {"parameters": {"type": "object", "properties":
    {"z": {"type": "string"}, "a": {"type": "integer"}}}, "name": "get_weather", "description": "d"}}],
    "parallel_tool_calls": false})");
  ASSERT_EQ(r.tools.size(), 1u);
  EXPECT_EQ(r.tools[0].name, "get_weather");
  EXPECT_EQ(r.tool_choice, ToolChoiceMode::kAuto);
  EXPECT_FALSE(r.parallel_tool_calls);
  EXPECT_EQ(r.tools_json,
            R"([{"type":"function","function":{"name":"get_weather","description":"d","parameters":{"type":"object","properties":{"z":{"type":"string"},"a":{"type":"integer"}}}}}])");
}

TEST(OpenAiRequestToolsTest, ToolMessagesAndAssistantToolCalls) {
  const OpenAiRequest r = Ok(ApiKind::kChat, R"({"messages": [
    {"role": "user", "content": "Weather?"},
    {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
      "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "21"}]})");
  ASSERT_EQ(r.messages.size(), 3u);
  EXPECT_EQ(r.messages[1].content, "");
  ASSERT_EQ(r.messages[1].tool_calls.size(), 1u);
  EXPECT_EQ(r.messages[1].tool_calls[0].id, "call_1");
  EXPECT_EQ(r.messages[1].tool_calls[0].name, "get_weather");
  EXPECT_EQ(r.messages[1].tool_calls[0].arguments, "{\"city\": \"Paris\"}");
  EXPECT_EQ(r.messages[2].role, "tool");
  EXPECT_EQ(r.messages[2].tool_call_id, "call_1");
  EXPECT_EQ(r.tool_choice, ToolChoiceMode::kNone);  // no tools
}

TEST(OpenAiRequestToolsTest, ToolChoiceForms) {
  const std::string base = R"({"messages": [{"role": "user", "content": "x"}], "tools": [
    {"type": "function", "function": {"name": "f"}}, {"type": "function", "function": {"name": "g",
    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}], "tool_choice": )";
  EXPECT_EQ(Ok(ApiKind::kChat, base + R"("none"})").tool_choice, ToolChoiceMode::kNone);
  EXPECT_EQ(Ok(ApiKind::kChat, base + R"("required"})").tool_choice, ToolChoiceMode::kRequired);
  const OpenAiRequest named =
      Ok(ApiKind::kChat, base + R"({"type": "function", "function": {"name": "g"}}})");
  EXPECT_EQ(named.tool_choice, ToolChoiceMode::kNamed);
  EXPECT_EQ(named.tool_choice_name, "g");
  // The constraint seam for structured outputs.
  auto c = ToolChoiceConstraint(named, ToolCallFormat::kHermes);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->prefix, "<tool_call>\n");
  EXPECT_EQ(c->suffix, "\n</tool_call>");
  EXPECT_EQ(c->json_schema,
            R"({"type":"object","properties":{"name":{"const":"g"},"arguments":{"type":"object","properties":{"q":{"type":"string"}}}},"required":["name","arguments"],"additionalProperties":false})");
  auto any = ToolChoiceConstraint(Ok(ApiKind::kChat, base + R"("required"})"), ToolCallFormat::kLlama3Json);
  ASSERT_TRUE(any.has_value());
  EXPECT_EQ(json::parse(any->json_schema)["anyOf"].size(), 2u);
  EXPECT_EQ(json::parse(any->json_schema)["anyOf"][0]["required"][1], "parameters");
  EXPECT_FALSE(ToolChoiceConstraint(Ok(ApiKind::kChat, base + R"("auto"})"), ToolCallFormat::kHermes));
  EXPECT_EQ(Err(ApiKind::kChat, base + R"("any"})").param, "tool_choice");
  EXPECT_EQ(Err(ApiKind::kChat, base + R"({"type": "function", "function": {"name": "h"}}})").param,
            "tool_choice");
}

TEST(OpenAiRequestErrorsTest, SyntaxErrorsNameOnlyTheFieldTheyAreIn) {
  EXPECT_EQ(Err(ApiKind::kCompletion, R"({"prompt": "x" "max_tokens": 2})").param, "");
  EXPECT_EQ(Err(ApiKind::kCompletion, R"({"prompt": "x", "max_tokens": 2,})").param, "");
  EXPECT_EQ(Err(ApiKind::kCompletion, R"({"prompt": "x")").param, "");
  EXPECT_EQ(Err(ApiKind::kCompletion, R"({"prompt": "x)").param, "prompt");
  EXPECT_EQ(Err(ApiKind::kCompletion, R"({"prompt": "x", "n" 2})").param, "n");
  EXPECT_EQ(Err(ApiKind::kCompletion, R"({"prompt": "x", "temperature": NaN})").param, "temperature");
  EXPECT_EQ(Err(ApiKind::kCompletion, R"({"prompt": "x", "max_tokens": 1e999})").param, "max_tokens");
  EXPECT_EQ(Err(ApiKind::kChat, R"({"messages": [{"role": "user", "content": "x"}] "n": 1})").param, "");
}

TEST(OpenAiRequestErrorsTest, HugeIntegersAreOutOfRangeNotNonIntegers) {
  const ApiError e = Err(ApiKind::kCompletion, R"({"prompt": "x", "max_tokens": 18446744073709551616})");
  EXPECT_EQ(e.param, "max_tokens");
  EXPECT_NE(e.message.find("out of range"), std::string::npos) << e.message;
  EXPECT_NE(Err(ApiKind::kCompletion, R"({"prompt": "x", "max_tokens": 1.5})").message.find("must be an integer"),
            std::string::npos);
}

TEST(OpenAiRequestServiceTierTest, KnownTiersOnly) {
  EXPECT_EQ(Ok(ApiKind::kCompletion, R"({"prompt": "x", "service_tier": "flex"})").service_tier, "flex");
  EXPECT_EQ(Ok(ApiKind::kCompletion, R"({"prompt": "x"})").service_tier, "");
  EXPECT_EQ(Err(ApiKind::kCompletion, R"({"prompt": "x", "service_tier": "gold"})").param, "service_tier");
}

TEST(ResponsesRequestTest, TranslatesInputItemsToChat) {
  auto parsed = ParseResponsesRequest(R"({"model": "m", "instructions": "Be brief.",
    "input": [{"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
      {"type": "function_call", "call_id": "c1", "name": "w", "arguments": "{}"},
      {"type": "function_call", "call_id": "c2", "name": "w", "arguments": "{\"a\":1}"},
      {"type": "function_call_output", "call_id": "c1", "output": "sunny"}],
    "max_output_tokens": 7, "temperature": 0.5, "store": false,
    "tools": [{"type": "function", "name": "w", "parameters": {"type": "object"}}]})",
                                      RequestLimits{});
  ASSERT_TRUE(std::holds_alternative<OpenAiRequest>(parsed)) << std::get<ApiError>(parsed).ToJson();
  const OpenAiRequest& r = std::get<OpenAiRequest>(parsed);
  EXPECT_TRUE(r.responses_api);
  EXPECT_EQ(r.kind, ApiKind::kChat);
  ASSERT_EQ(r.messages.size(), 4u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[0].content, "Be brief.");
  EXPECT_EQ(r.messages[1].content, "Weather?");
  EXPECT_EQ(r.messages[2].role, "assistant");
  ASSERT_EQ(r.messages[2].tool_calls.size(), 2u);  // consecutive calls: one turn
  EXPECT_EQ(r.messages[2].tool_calls[1].arguments, "{\"a\":1}");
  EXPECT_EQ(r.messages[3].role, "tool");
  EXPECT_EQ(r.messages[3].tool_call_id, "c1");
  EXPECT_EQ(r.max_tokens, 7);
  EXPECT_FLOAT_EQ(r.sampling.temperature, 0.5f);
  EXPECT_EQ(r.tools_json, R"([{"type":"function","function":{"name":"w","parameters":{"type":"object"}}}])");
}

TEST(ResponsesRequestTest, RefusalsNameTheResponsesField) {
  auto param = [](const std::string& body) {
    auto r = ParseResponsesRequest(body, RequestLimits{});
    return std::holds_alternative<ApiError>(r) ? std::get<ApiError>(r).param : std::string("<ok>");
  };
  EXPECT_EQ(param(R"({"input": "x", "store": true})"), "store");
  EXPECT_EQ(param(R"({"input": "x", "previous_response_id": "resp_1"})"), "previous_response_id");
  EXPECT_EQ(param(R"({"input": "x", "max_output_tokens": 0})"), "max_output_tokens");
  EXPECT_EQ(param(R"({"input": "x", "tools": [{"type": "function", "name": "a b"}]})"), "tools[0].name");
  EXPECT_EQ(param(R"({"input": []})"), "input");
  EXPECT_EQ(param(R"({"input": [{"type": "function_call", "name": "w"}]})"), "input[0].call_id");
  EXPECT_EQ(param(R"({"input": "x", "store": false})"), "<ok>");
}

// Extracts the `type` of every SSE event in `frames`.
std::vector<std::string> Types(const std::string& frames) {
  std::vector<std::string> types;
  size_t p = 0;
  while ((p = frames.find("data: ", p)) != std::string::npos) {
    const size_t end = frames.find("\n\n", p);
    types.push_back(json::parse(frames.substr(p + 6, end - p - 6))["type"].get<std::string>());
    p = end;
  }
  return types;
}

TEST(ResponsesEventsTest, TextAndFunctionCallEventSequence) {
  OpenAiRequest req;
  ResponsesEvents ev(req, "resp_1", "m", 100, "default");
  std::string out = ev.Start();
  out += ev.Delta(ToolStreamDelta{"Hel", {}}, {});
  out += ev.Delta(ToolStreamDelta{"lo", {ToolCallDelta{0, true, "w", "{\"a\""}}}, {"call_x"});
  out += ev.Delta(ToolStreamDelta{"", {ToolCallDelta{0, false, "", ": 1}"}}}, {"call_x"});
  out += ev.Completed(ResponsesUsage{5, 0, 3}, "tool_calls");
  EXPECT_EQ(Types(out), (std::vector<std::string>{
                            "response.created", "response.in_progress", "response.output_item.added",
                            "response.content_part.added", "response.output_text.delta",
                            "response.output_text.delta", "response.output_item.added",
                            "response.function_call_arguments.delta",
                            "response.function_call_arguments.delta", "response.output_text.done",
                            "response.content_part.done", "response.output_item.done",
                            "response.function_call_arguments.done", "response.output_item.done",
                            "response.completed"}));
  const size_t last = out.rfind("data: ");
  const json done = json::parse(out.substr(last + 6, out.find("\n\n", last) - last - 6));
  EXPECT_EQ(done["sequence_number"], 14);
  const json& resp = done["response"];
  EXPECT_EQ(resp["status"], "completed");
  EXPECT_EQ(resp["output"][0]["content"][0]["text"], "Hello");
  EXPECT_EQ(resp["output"][1]["type"], "function_call");
  EXPECT_EQ(resp["output"][1]["call_id"], "call_x");
  EXPECT_EQ(resp["output"][1]["arguments"], "{\"a\": 1}");
  EXPECT_EQ(resp["usage"]["total_tokens"], 8);
}

TEST(TokenTextTest, SentencePieceLeadingSpaceAndByteFallback) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models/stories260K-hf");
  auto tok = Tokenizer::FromModelDir(dir);
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  const std::vector<int32_t> ids = (*tok)->Encode(", there was a", false);
  std::string joined;
  bool spaced = false;
  for (int32_t id : ids) {
    const std::string b = TokenBytes(**tok, id);
    joined += b;
    spaced |= b.size() > 1 && b[0] == ' ';
  }
  EXPECT_EQ(joined, " , there was a");  // SentencePiece's dummy prefix is a real "▁"
  EXPECT_TRUE(spaced);
  // Byte-fallback pieces: their byte, shown as bytes:\xNN when not UTF-8 alone.
  const auto e2 = (*tok)->TokenToId("<0xE2>");
  ASSERT_TRUE(e2.has_value());
  EXPECT_EQ(TokenBytes(**tok, *e2), "\xe2");
  EXPECT_EQ(TokenDisplayString("\xe2"), "bytes:\\xe2");
  EXPECT_EQ(TokenDisplayString(" there"), " there");
  EXPECT_EQ(TokenDisplayString("\xc3\xa9"), "\xc3\xa9");
}

}  // namespace
}  // namespace llmux::server
