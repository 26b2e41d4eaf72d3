// A ResponseChannel decorator that observes one request: echoes a valid W3C traceparent on
// every response (errors included), counts refusals by reason, and writes the request's
// access-log line when the response completes. For a call that reached the engine, that line
// (and the phase histogram) waits until the answer's first byte is written, so it carries the
// whole path's phases (request_timeline.h). Thread-safe like the channel it wraps; always owned
// by a shared_ptr.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "llmux/metrics.h"
#include "llmux/thread_annotations.h"
#include "server/http_types.h"

namespace llmux::server {

// What the access-log line reports about a completion call's usage.
struct AccessUsage {
  std::string request_id;
  std::string outcome;
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t queue_ms = 0;
  int64_t ttft_ms = 0;
  int64_t cost_nano = 0;
  int64_t preemptions = 0;  // times the call's sequences were preempted (recomputed)
};

class ObservedChannel final : public ResponseChannel,
                              public std::enable_shared_from_this<ObservedChannel> {
 public:
  // `metrics` may be null. The traceparent header of `request` is kept only when valid.
  ObservedChannel(std::shared_ptr<ResponseChannel> inner, const HttpRequest& request,
                  Metrics* metrics);

  // The authenticated tenant ("" = unauthenticated) for labels and logs.
  void SetTenant(const std::string& tenant);
  // The call's lane, once known: from then on the request's phases are exported
  // (llmux_request_phase_seconds) when its access line is written.
  void SetLane(const std::string& lane);
  // Records a milestone of the request (no-op for requests without a timeline). Any thread.
  void Mark(Milestone m) {
    if (timeline_) timeline_->Mark(m);
  }
  // Null for requests without a timeline.
  const std::shared_ptr<RequestTimeline>& timeline() const { return timeline_; }
  // Whether error responses count in llmux_rejections_total (off for /health and /ready).
  void CountRejections(bool on) { count_rejections_ = on; }
  void SetUsage(const AccessUsage& usage);
  // Only for tenants with log_prompts: the prompt text to include in the access line.
  void SetPromptForLog(std::string prompt);
  // Writes the access line now with `status` (e.g. 499 for a client that went away) unless
  // it was written already.
  void Finish(int status);

  const std::string& traceparent() const { return traceparent_; }
  // The x-request-id sent on every response: the client's X-Request-Id when sane (1-128
  // printable ASCII, no space, quote or backslash), else a generated "req-..." id.
  const std::string& request_id() const { return request_id_; }

  void Respond(int status, std::string content_type, std::string body,
               HeaderList headers = {}) override;
  void BeginStream(HeaderList headers = {}) override;
  void Write(std::string data) override { inner_->Write(std::move(data)); }
  void End() override;
  void OnClose(std::function<void()> fn) override { inner_->OnClose(std::move(fn)); }
  bool closed() const override { return inner_->closed(); }
  void Post(std::function<void()> fn) override { inner_->Post(std::move(fn)); }

 private:
  void CountRefusal(int status, const std::string& body);
  // The access line and, with a lane, the phase histogram. `duration_ms` as of Finish().
  void WriteAccessLine(int status, int64_t duration_ms);

  const std::shared_ptr<ResponseChannel> inner_;
  Metrics* const metrics_;
  const std::string method_;
  const std::string path_;
  const std::string remote_;
  const std::string traceparent_;  // "" when absent or invalid
  const std::string request_id_;
  const std::shared_ptr<RequestTimeline> timeline_;
  const std::chrono::steady_clock::time_point start_;
  std::atomic<bool> count_rejections_{true};
  std::atomic<bool> finished_{false};
  std::atomic<int> stream_status_{200};

  Mutex mutex_;
  std::string tenant_ GUARDED_BY(mutex_);
  std::string lane_ GUARDED_BY(mutex_);
  std::optional<AccessUsage> usage_ GUARDED_BY(mutex_);
  std::optional<std::string> prompt_ GUARDED_BY(mutex_);
};

}  // namespace llmux::server
