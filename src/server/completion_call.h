// One /v1/completions or /v1/chat/completions call in flight: its choices (n per prompt), their
// engine requests, incremental detokenization and stop strings, and the response (SSE or JSON).
// Lives on its connection's strand: every method runs there (engine events are posted to it).
#pragma once

#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "llmux/engine.h"
#include "llmux/tokenizer.h"
#include "server/api_error.h"
#include "server/http_types.h"
#include "server/openai_request.h"
#include "server/stop_strings.h"
#include "server/tool_calls.h"

namespace llmux::server {

struct ChoicePlan {
  int prompt_index = 0;
  uint64_t engine_id = 0;
};

class ResponsesEvents;

// How the API layer wants the call presented.
struct CallOptions {
  // Chat: the format tool calls are parsed from (kNone: no parsing, all text is content).
  ToolCallFormat tool_format = ToolCallFormat::kNone;
  std::string system_fingerprint;  // "" = omitted
  std::string service_tier;        // echoed as `service_tier` ("" = omitted)
  bool responses_api = false;      // POST /v1/responses shape (chat request underneath)
};

// Usage of a finished call, for the ledger and the access log.
struct CallUsage {
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;
  int64_t completion_tokens = 0;
  double queue_seconds = 0;
  double first_token_seconds = 0;
  std::string outcome;  // "ok", "aborted", "error"
};

class CompletionCall : public std::enable_shared_from_this<CompletionCall> {
 public:
  // Runs once when the call ends, with its outcome ("ok" | "error" | "aborted") and the
  // closure that sends its final response event (null when the client is gone). The owner
  // runs `deliver` on the strand (via the channel's Post) once the usage row is durable.
  // Without an OnDone, the final event is sent at once.
  using OnDone = std::function<void(const std::string& outcome, std::function<void()> deliver)>;

  // `prompt_lengths[i]` is the token count of prompt i. Choices are indexed as OpenAI does:
  // prompt_index * n + k.
  CompletionCall(const OpenAiRequest& request, std::string model_name,
                 std::vector<int32_t> prompt_lengths, std::vector<ChoicePlan> choices,
                 const Tokenizer* tokenizer, Engine* engine,
                 std::shared_ptr<ResponseChannel> channel, HeaderList extra_headers, OnDone on_done,
                 CallOptions options = {});
  ~CompletionCall();

  // An engine event for choice `choice`. Strand only.
  void OnEngineOutput(size_t choice, const EngineOutput& out);
  // The client went away: abort every engine request not yet finished. Strand only.
  void OnClientGone();
  // The response id ("chatcmpl-..." / "cmpl-..."), also the usage ledger's request id.
  const std::string& id() const { return id_; }
  // Whether choice `i` has had its first engine event (it left the queue).
  bool started(size_t i) const { return choices_[i].started; }

 private:
  struct Choice {
    Choice(ChoicePlan p, std::unique_ptr<IncrementalDetokenizer> d, std::vector<std::string> stops)
        : plan(p), detok(std::move(d)), stop(std::move(stops)) {}
    ChoicePlan plan;
    std::unique_ptr<IncrementalDetokenizer> detok;
    StopStringMatcher stop;
    std::string text;                 // non-streaming: accumulated visible text
    std::vector<int32_t> lp_tokens;   // tokens with logprobs, in order
    std::vector<SampledToken> lp;     // their logprobs
    std::string finish_reason;        // "" until the text is complete
    std::unique_ptr<ToolCallStreamParser> tools;  // streaming with tool parsing only
    std::vector<std::string> call_ids;            // streamed tool calls' ids, by index
    bool started = false;
    bool engine_done = false;
    bool role_sent = false;
    int32_t completion_tokens = 0;
    int32_t cached_tokens = 0;
  };

  void EmitText(size_t i, const std::string& text, const std::vector<int32_t>& lp_tokens,
                const std::vector<SampledToken>& lp);
  // Streaming: writes the parsed pieces of choice i (content and tool-call deltas).
  void WriteDelta(size_t i, const ToolStreamDelta& delta, const std::vector<int32_t>& lp_tokens,
                  const std::vector<SampledToken>& lp);
  void WriteRoleChunk(size_t i);
  // Adds id/created/model/system_fingerprint/service_tier to a chunk or body.
  void Stamp(nlohmann::ordered_json& j) const;
  void FinishText(size_t i, const std::string& reason);
  void Fail(const Status& error);
  void MaybeComplete();
  // The final response event of a completed call / of a failed one. Strand.
  void SendFinal();
  void SendResponsesFinal();
  // Chat: the assistant message of a non-streamed choice (tool calls parsed when enabled).
  nlohmann::ordered_json MessageJson(const std::string& text) const;
  void SendError(const ApiError& error);
  void Done(const std::string& outcome, std::function<void()> deliver);
  void EnsureStreamStarted();
  std::string Chunk(size_t i, const std::string& text, const std::string* finish_reason,
                    const std::vector<int32_t>& lp_tokens,
                    const std::vector<SampledToken>& lp) const;
  bool parse_tools() const { return options_.tool_format != ToolCallFormat::kNone; }
  std::string LogprobsJson(const std::vector<int32_t>& tokens,
                           const std::vector<SampledToken>& lp) const;
  std::string UsageJson() const;

  const OpenAiRequest request_;
  const CallOptions options_;
  std::unique_ptr<ResponsesEvents> responses_;  // responses_api only
  const std::string id_;
  const int64_t created_;
  const std::string model_;
  const std::vector<int32_t> prompt_lengths_;
  const Tokenizer* tokenizer_;
  Engine* engine_;
  std::shared_ptr<ResponseChannel> channel_;
  HeaderList extra_headers_;
  OnDone on_done_;
  std::vector<Choice> choices_;
  bool stream_started_ = false;
  bool done_ = false;
  CallUsage usage_;
};

}  // namespace llmux::server
