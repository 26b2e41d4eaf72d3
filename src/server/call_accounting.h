// Accounting of one completion call: collects its choices' engine events (on the engine
// thread, even after the client left), and once every submitted choice has its final event
// and the call has its outcome, records it: metrics, quota totals, one ledger row, and the
// access-log usage. The call's final response event is delivered only after the row commits.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "llmux/engine.h"
#include "llmux/tenant_policy.h"
#include "llmux/thread_annotations.h"
#include "server/observed_channel.h"
#include "server/server_telemetry.h"

namespace llmux::server {

struct CallContext {
  std::string tenant;
  std::string lane;
  std::string pool;
  std::string model;
  Prices prices;
  int n = 1;  // choices per prompt: choice i belongs to prompt i / n
  std::chrono::steady_clock::time_point start;
};

class CallAccounting {
 public:
  // `on_recorded` runs once, after the row committed (or at once without a ledger).
  CallAccounting(CallContext context, size_t num_choices, ServerTelemetry telemetry,
                 std::shared_ptr<ObservedChannel> channel, std::function<void()> on_recorded);

  // Before any event: the response id.
  void set_request_id(std::string id) { request_id_ = std::move(id); }
  // Any engine event of choice `i`. Engine thread (the sink).
  void OnEngineEvent(size_t i, const EngineOutput& out);
  // Only `n` choices were submitted (Submit failed for the rest). Any thread.
  void SetSubmitted(size_t n);
  // The call's outcome ("ok" | "error" | "aborted") and how to deliver its final response
  // event (null when there is nothing to deliver). Strand.
  void OnCallDone(std::string outcome, std::function<void()> deliver);

 private:
  struct Choice {
    bool final = false;
    bool started = false;  // the engine scheduled it (prefill began)
    int32_t prompt_tokens = 0;
    int32_t cached_tokens = 0;
    int32_t completion_tokens = 0;
    int32_t preemptions = 0;
    double queue_seconds = 0;
    double engine_seconds = 0;  // the engine time attributed to this choice
    std::optional<double> first_token_seconds;
    std::optional<std::chrono::steady_clock::time_point> last_token;
    std::string finish_reason;  // "" for errors
  };

  // A complete call's figures, taken under mutex_ and recorded after it is released.
  struct Completed {
    std::vector<Choice> choices;  // the submitted ones
    std::string outcome;
    std::function<void()> deliver;
  };
  // When the call is complete (done, every submitted choice final) and not yet recorded: marks
  // it recorded and returns its figures; nullopt otherwise.
  std::optional<Completed> TakeCompleted() REQUIRES(mutex_);
  // Writes the usage row, metrics and quota of a completed call, then delivers its final event.
  void Record(Completed completed) EXCLUDES(mutex_);

  const CallContext context_;
  const ServerTelemetry telemetry_;
  const std::shared_ptr<ObservedChannel> channel_;
  const std::function<void()> on_recorded_;
  std::string request_id_;

  Mutex mutex_;
  std::vector<Choice> choices_ GUARDED_BY(mutex_);
  size_t submitted_ GUARDED_BY(mutex_);
  bool call_done_ GUARDED_BY(mutex_) = false;
  bool recorded_ GUARDED_BY(mutex_) = false;
  std::string outcome_ GUARDED_BY(mutex_);
  std::function<void()> deliver_ GUARDED_BY(mutex_);
};

}  // namespace llmux::server
