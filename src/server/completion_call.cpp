#include "server/completion_call.h"

#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>
#include <random>

#include "server/api_error.h"
#include "server/responses_api.h"
#include "server/token_text.h"

namespace llmux::server {
namespace {

using json = nlohmann::ordered_json;

std::string RandomId(const char* prefix) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  char buf[33];
  std::snprintf(buf, sizeof(buf), "%016llx%016llx", static_cast<unsigned long long>(rng()),
                static_cast<unsigned long long>(rng()));
  return std::string(prefix) + buf;
}

std::string Dump(const json& j) {
  // NOTE: 'replace' keeps a response valid JSON even if a detokenized piece were not UTF-8.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

json Bytes(const std::string& s) {
  json a = json::array();
  for (unsigned char c : s) a.push_back(static_cast<int>(c));
  return a;
}

json Logprob(float v) { return std::isfinite(v) ? json(v) : json(-9999.0); }

}  // namespace

CompletionCall::CompletionCall(const OpenAiRequest& request, std::string model_name,
                               std::vector<int32_t> prompt_lengths, std::vector<ChoicePlan> plans,
                               const Tokenizer* tokenizer, Engine* engine,
                               std::shared_ptr<ResponseChannel> channel, HeaderList extra_headers,
                               OnDone on_done, CallOptions options)
    : request_(request),
      options_(std::move(options)),
      id_(RandomId(options_.responses_api            ? "resp_"
                   : request.kind == ApiKind::kChat ? "chatcmpl-"
                                                    : "cmpl-")),
      created_(std::chrono::duration_cast<std::chrono::seconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count()),
      model_(std::move(model_name)),
      prompt_lengths_(std::move(prompt_lengths)),
      tokenizer_(tokenizer),
      engine_(engine),
      channel_(std::move(channel)),
      extra_headers_(std::move(extra_headers)),
      on_done_(std::move(on_done)) {
  for (const ChoicePlan& p : plans) {
    choices_.emplace_back(
        p, std::make_unique<IncrementalDetokenizer>(*tokenizer_, /*skip_special_tokens=*/true),
        request_.stop);
  }
  for (int32_t n : prompt_lengths_) usage_.prompt_tokens += n;
  for (Choice& c : choices_) {
    if (parse_tools() && request_.stream) c.tools = std::make_unique<ToolCallStreamParser>(options_.tool_format);
  }
  if (options_.responses_api) {
    responses_ = std::make_unique<ResponsesEvents>(request_, id_, model_, created_,
                                                   options_.service_tier);
  }
}

CompletionCall::~CompletionCall() = default;

void CompletionCall::Stamp(json& j) const {
  j["id"] = id_;
  j["created"] = created_;
  j["model"] = model_;
  if (!options_.system_fingerprint.empty()) j["system_fingerprint"] = options_.system_fingerprint;
  if (!options_.service_tier.empty()) j["service_tier"] = options_.service_tier;
}

void CompletionCall::OnEngineOutput(size_t i, const EngineOutput& out) {
  if (done_) return;
  Choice& c = choices_[i];
  if (!c.started) {
    c.started = true;
    if (i == 0) {
      usage_.queue_seconds = out.queue_seconds;
    }
  }
  if (!out.error.ok()) {
    c.engine_done = true;
    c.completion_tokens = out.completion_tokens;  // tokens delivered before the failure count
    return Fail(out.error);
  }
  if (out.first_token_seconds > 0 && usage_.first_token_seconds == 0) {
    usage_.first_token_seconds = out.first_token_seconds;
  }
  if (c.finish_reason.empty()) {
    std::string text;
    std::vector<int32_t> lp_tokens;
    std::vector<SampledToken> lp;
    for (size_t k = 0; k < out.tokens.size(); ++k) {
      const int32_t t = out.tokens[k];
      // The token that stopped the sequence (EOS / stop_token_ids) is not part of the text.
      const bool is_stop = out.finished && out.stop_token && k + 1 == out.tokens.size();
      if (is_stop) break;
      std::string piece = c.stop.Push(c.detok->Push(t));
      text += piece;
      if (k < out.logprobs.size()) {
        lp_tokens.push_back(t);
        lp.push_back(out.logprobs[k]);
      }
      if (c.stop.stopped()) break;
    }
    if (c.stop.stopped()) {
      EmitText(i, text, lp_tokens, lp);
      FinishText(i, "stop");
      if (!out.finished) engine_->Abort(c.plan.engine_id);
    } else if (out.finished) {
      text += c.stop.Push(c.detok->Flush());
      if (!c.stop.stopped()) text += c.stop.Flush();
      EmitText(i, text, lp_tokens, lp);
      FinishText(i, c.stop.stopped() ? "stop" : std::string(FinishReasonName(out.finish_reason)));
    } else {
      EmitText(i, text, lp_tokens, lp);
    }
  }
  if (out.finished) {
    c.engine_done = true;
    c.completion_tokens = out.completion_tokens;
    c.cached_tokens = out.cached_tokens;
  }
  MaybeComplete();
}

void CompletionCall::OnClientGone() {
  if (done_) return;
  done_ = true;
  for (Choice& c : choices_) {
    if (!c.engine_done) engine_->Abort(c.plan.engine_id);
  }
  usage_.outcome = "aborted";
  for (const Choice& c : choices_) usage_.completion_tokens += c.completion_tokens;
  if (on_done_) on_done_(usage_.outcome, nullptr);
}

void CompletionCall::Done(const std::string& outcome, std::function<void()> deliver) {
  if (on_done_) {
    on_done_(outcome, std::move(deliver));
  } else {
    deliver();
  }
}

void CompletionCall::EnsureStreamStarted() {
  if (stream_started_) return;
  stream_started_ = true;
  channel_->BeginStream(extra_headers_);
  if (responses_) channel_->Write(responses_->Start());
}

void CompletionCall::EmitText(size_t i, const std::string& text,
                              const std::vector<int32_t>& lp_tokens,
                              const std::vector<SampledToken>& lp) {
  Choice& c = choices_[i];
  if (!request_.stream) {
    c.text += text;
    c.lp_tokens.insert(c.lp_tokens.end(), lp_tokens.begin(), lp_tokens.end());
    c.lp.insert(c.lp.end(), lp.begin(), lp.end());
    return;
  }
  EnsureStreamStarted();
  if (c.tools) {
    const ToolStreamDelta delta = c.tools->Push(text);
    WriteDelta(i, delta, lp_tokens, lp);
    return;
  }
  WriteDelta(i, ToolStreamDelta{text, {}}, lp_tokens, lp);
}

void CompletionCall::WriteRoleChunk(size_t i) {
  Choice& c = choices_[i];
  if (request_.kind != ApiKind::kChat || c.role_sent || responses_) return;
  c.role_sent = true;
  json delta = {{"role", "assistant"}, {"content", ""}};
  json chunk;
  Stamp(chunk);
  chunk["object"] = "chat.completion.chunk";
  chunk["choices"] = json::array({{{"index", i}, {"delta", delta}, {"logprobs", nullptr},
                                   {"finish_reason", nullptr}}});
  if (request_.include_usage) chunk["usage"] = nullptr;
  channel_->Write("data: " + Dump(chunk) + "\n\n");
}

void CompletionCall::WriteDelta(size_t i, const ToolStreamDelta& delta,
                                const std::vector<int32_t>& lp_tokens,
                                const std::vector<SampledToken>& lp) {
  Choice& c = choices_[i];
  ToolStreamDelta d = delta;
  if (!request_.parallel_tool_calls) {
    std::erase_if(d.calls, [](const ToolCallDelta& call) { return call.index > 0; });
  }
  for (const ToolCallDelta& call : d.calls) {
    if (call.first) c.call_ids.push_back(NewToolCallId());
  }
  if (responses_) {
    channel_->Write(responses_->Delta(d, c.call_ids));
    return;
  }
  WriteRoleChunk(i);
  if (!d.content.empty() || !lp_tokens.empty()) {
    channel_->Write("data: " + Chunk(i, d.content, nullptr, lp_tokens, lp) + "\n\n");
  }
  if (d.calls.empty()) return;
  json calls = json::array();
  for (const ToolCallDelta& call : d.calls) {
    json entry = {{"index", call.index}};
    if (call.first) {
      entry["id"] = c.call_ids[call.index];
      entry["type"] = "function";
      entry["function"] = {{"name", call.name}, {"arguments", call.arguments}};
    } else {
      entry["function"] = {{"arguments", call.arguments}};
    }
    calls.push_back(std::move(entry));
  }
  json chunk;
  Stamp(chunk);
  chunk["object"] = "chat.completion.chunk";
  chunk["choices"] = json::array({{{"index", i}, {"delta", {{"tool_calls", calls}}},
                                   {"logprobs", nullptr}, {"finish_reason", nullptr}}});
  if (request_.include_usage) chunk["usage"] = nullptr;
  channel_->Write("data: " + Dump(chunk) + "\n\n");
}

void CompletionCall::FinishText(size_t i, const std::string& reason) {
  Choice& c = choices_[i];
  c.finish_reason = reason;
  if (c.tools) {
    EnsureStreamStarted();
    WriteDelta(i, c.tools->Finish(), {}, {});
    if (c.tools->num_calls() > 0 && reason == "stop") c.finish_reason = "tool_calls";
  } else if (parse_tools() && !request_.stream) {
    // Non-streaming: the whole text is parsed in SendFinal; the reason follows the parse.
    if (reason == "stop" && !ParseToolCalls(options_.tool_format, c.text).calls.empty()) {
      c.finish_reason = "tool_calls";
    }
  }
  if (request_.stream) {
    EmitText(i, "", {}, {});  // makes sure the stream (and the chat role chunk) exist
    if (responses_) return;   // the item done events go out with response.completed
    channel_->Write("data: " + Chunk(i, "", &c.finish_reason, {}, {}) + "\n\n");
  }
}

std::string CompletionCall::LogprobsJson(const std::vector<int32_t>& tokens,
                                         const std::vector<SampledToken>& lp) const {
  auto bytes = [this](int32_t t) { return TokenBytes(*tokenizer_, t); };
  if (request_.kind == ApiKind::kChat) {
    json content = json::array();
    for (size_t k = 0; k < tokens.size(); ++k) {
      const std::string b = bytes(tokens[k]);
      json top = json::array();
      for (const TokenLogprob& alt : lp[k].top) {
        const std::string a = bytes(alt.token);
        top.push_back({{"token", TokenDisplayString(a)}, {"logprob", Logprob(alt.logprob)}, {"bytes", Bytes(a)}});
      }
      content.push_back({{"token", TokenDisplayString(b)},
                         {"logprob", Logprob(lp[k].logprob)},
                         {"bytes", Bytes(b)},
                         {"top_logprobs", top}});
    }
    return Dump(json{{"content", content}});
  }
  json toks = json::array(), lps = json::array(), tops = json::array(), offsets = json::array();
  size_t offset = 0;
  for (size_t k = 0; k < tokens.size(); ++k) {
    const std::string b = bytes(tokens[k]);
    toks.push_back(TokenDisplayString(b));
    lps.push_back(Logprob(lp[k].logprob));
    json top = json::object();
    for (const TokenLogprob& alt : lp[k].top) {
      top[TokenDisplayString(bytes(alt.token))] = Logprob(alt.logprob);
    }
    tops.push_back(top);
    offsets.push_back(offset);
    offset += b.size();
  }
  return Dump(json{{"tokens", toks}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offsets}});
}

std::string CompletionCall::Chunk(size_t i, const std::string& text, const std::string* finish_reason,
                                  const std::vector<int32_t>& lp_tokens,
                                  const std::vector<SampledToken>& lp) const {
  json choice = {{"index", i}};
  choice["logprobs"] = request_.want_logprobs && !lp_tokens.empty()
                           ? json::parse(LogprobsJson(lp_tokens, lp))
                           : json(nullptr);
  choice["finish_reason"] = finish_reason ? json(*finish_reason) : json(nullptr);
  json chunk;
  Stamp(chunk);
  if (request_.kind == ApiKind::kChat) {
    chunk["object"] = "chat.completion.chunk";
    choice["delta"] = finish_reason ? json::object() : json{{"content", text}};
  } else {
    chunk["object"] = "text_completion";
    choice["text"] = text;
  }
  chunk["choices"] = json::array({choice});
  if (request_.include_usage) chunk["usage"] = nullptr;
  return Dump(chunk);
}

std::string CompletionCall::UsageJson() const {
  json u = {{"prompt_tokens", usage_.prompt_tokens},
            {"completion_tokens", usage_.completion_tokens},
            {"total_tokens", usage_.prompt_tokens + usage_.completion_tokens},
            {"prompt_tokens_details", {{"cached_tokens", usage_.cached_tokens}}}};
  return Dump(u);
}

void CompletionCall::Fail(const Status& error) {
  if (done_) return;
  done_ = true;
  for (Choice& c : choices_) {
    if (!c.engine_done) engine_->Abort(c.plan.engine_id);
  }
  usage_.outcome = "error";
  for (const Choice& c : choices_) usage_.completion_tokens += c.completion_tokens;
  ApiError e = ApiErrorFromStatus(
      error, "", error.code() == StatusCode::kDeadlineExceeded ? "queue_timeout" : "");
  if (e.http_status == 429 || e.http_status == 503) e.retry_after_seconds = 1;
  Done(usage_.outcome, [self = shared_from_this(), e] { self->SendError(e); });
}

void CompletionCall::SendError(const ApiError& e) {
  if (stream_started_ && responses_) {
    channel_->Write("event: error\ndata: " + e.ToJson() + "\n\n");
    channel_->End();
  } else if (stream_started_) {
    channel_->Write("data: " + e.ToJson() + "\n\n");
    channel_->End();
  } else {
    SendApiError(*channel_, e);
  }
}

void CompletionCall::MaybeComplete() {
  if (done_) return;
  for (const Choice& c : choices_) {
    if (!c.engine_done || c.finish_reason.empty()) return;
  }
  done_ = true;
  usage_.outcome = "ok";
  for (size_t i = 0; i < choices_.size(); ++i) {
    const Choice& c = choices_[i];
    usage_.completion_tokens += c.completion_tokens;
    // Prompt tokens are charged once per prompt; its first choice reports the cache hit.
    if (i % static_cast<size_t>(request_.n) == 0) usage_.cached_tokens += c.cached_tokens;
  }
  Done(usage_.outcome, [self = shared_from_this()] { self->SendFinal(); });
}

void CompletionCall::SendFinal() {
  if (responses_) return SendResponsesFinal();
  if (request_.stream) {
    EnsureStreamStarted();
    if (request_.include_usage) {
      json chunk;
      Stamp(chunk);
      chunk["object"] = request_.kind == ApiKind::kChat ? "chat.completion.chunk" : "text_completion";
      chunk["choices"] = json::array();
      chunk["usage"] = json::parse(UsageJson());
      channel_->Write("data: " + Dump(chunk) + "\n\n");
    }
    channel_->Write("data: [DONE]\n\n");
    channel_->End();
  } else {
    json choices = json::array();
    for (size_t i = 0; i < choices_.size(); ++i) {
      const Choice& c = choices_[i];
      json choice = {{"index", i}, {"finish_reason", c.finish_reason}};
      choice["logprobs"] = request_.want_logprobs ? json::parse(LogprobsJson(c.lp_tokens, c.lp))
                                                  : json(nullptr);
      if (request_.kind == ApiKind::kChat) {
        choice["message"] = MessageJson(c.text);
      } else {
        choice["text"] = c.text;
      }
      choices.push_back(std::move(choice));
    }
    json body;
    Stamp(body);
    body["object"] = request_.kind == ApiKind::kChat ? "chat.completion" : "text_completion";
    body["choices"] = choices;
    body["usage"] = json::parse(UsageJson());
    channel_->Respond(200, "application/json", Dump(body), extra_headers_);
  }
}

json CompletionCall::MessageJson(const std::string& text) const {
  json message = {{"role", "assistant"}, {"content", text}};
  if (!parse_tools()) return message;
  ParsedToolOutput parsed = ParseToolCalls(options_.tool_format, text);
  if (parsed.calls.empty()) return message;
  if (!request_.parallel_tool_calls) parsed.calls.resize(1);
  message["content"] = parsed.content ? json(*parsed.content) : json(nullptr);
  json calls = json::array();
  for (const ParsedToolCall& call : parsed.calls) {
    calls.push_back({{"id", NewToolCallId()},
                     {"type", "function"},
                     {"function", {{"name", call.name}, {"arguments", call.arguments}}}});
  }
  message["tool_calls"] = calls;
  return message;
}

void CompletionCall::SendResponsesFinal() {
  const Choice& c = choices_[0];
  ResponsesUsage usage{usage_.prompt_tokens, usage_.cached_tokens, usage_.completion_tokens};
  if (request_.stream) {
    EnsureStreamStarted();
    channel_->Write(responses_->Completed(usage, c.finish_reason));
    channel_->End();
    return;
  }
  ParsedToolOutput parsed = parse_tools() ? ParseToolCalls(options_.tool_format, c.text)
                                          : ParsedToolOutput{c.text, {}};
  if (!request_.parallel_tool_calls && parsed.calls.size() > 1) parsed.calls.resize(1);
  std::vector<std::string> ids;
  for (size_t k = 0; k < parsed.calls.size(); ++k) ids.push_back(NewToolCallId());
  channel_->Respond(200, "application/json", responses_->Body(parsed, ids, usage, c.finish_reason),
                    extra_headers_);
}

}  // namespace llmux::server
