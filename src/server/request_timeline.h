// Where one request's time goes on its way to the first byte of its answer: a timestamp per
// milestone, set by whichever thread reaches it (the connection's strand, the I/O thread that
// handles the request, the engine's sink). Exported as llmux_request_phase_seconds{phase} and
// llmux_full_path_time_to_first_token_seconds, and written in the access-log line
// (docs/metrics.md, "Where the time goes").
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "llmux/thread_annotations.h"

namespace llmux::server {

// The milestones of a completion call, in the order a call reaches them.
enum class Milestone {
  kRead,            // the whole HTTP request was read from the socket (the timeline's origin)
  kAuthenticated,   // the key (or trusted tenant header) mapped to a tenant
  kPlanningStarted,  // a planning-pool worker took the call from its lane's queue
  kParsed,          // the JSON body parsed and validated
  kTokenized,       // template rendered, prompt tokenized, context and sampling checked
  kAdmitted,        // rate limits, queue caps, quotas and budgets passed
  kSubmitted,       // every choice handed to the engine's inbox
  kEngineArrival,   // the engine thread took the (first-token) choice from its inbox
  kFirstScheduled,  // that choice's prefill was first scheduled
  kFirstToken,      // its first token was sampled (the sink received it)
  kFirstByte,       // the connection wrote the first bytes of the answer after that token
};
inline constexpr int kNumMilestones = static_cast<int>(Milestone::kFirstByte) + 1;

// The name of the phase that ends at `m` (the `phase` label): "auth", "plan_queue", "parse",
// "tokenize", "admit", "submit", "inbox", "queue", "prefill", "write"; "" for kRead (no phase
// ends there).
std::string_view PhaseEndingAt(Milestone m);

class RequestTimeline {
 public:
  using Clock = std::chrono::steady_clock;

  explicit RequestTimeline(Clock::time_point read) : read_(read) {}
  RequestTimeline(const RequestTimeline&) = delete;
  RequestTimeline& operator=(const RequestTimeline&) = delete;

  // Records `m` at `t` unless it was recorded already (the first record wins; a time before
  // the origin counts as the origin). Any thread.
  void Mark(Milestone m, Clock::time_point t);
  void Mark(Milestone m) { Mark(m, Clock::now()); }
  bool Has(Milestone m) const { return ns_[Index(m)].load(std::memory_order_acquire) != 0; }
  // Seconds from kRead to `m`; nullopt when `m` was not reached.
  std::optional<double> SecondsSinceRead(Milestone m) const;

  // The phases reached so far, in order: for every recorded milestone after kRead, its name
  // and the seconds since the previous recorded milestone. Any thread.
  std::vector<std::pair<std::string_view, double>> Phases() const;
  // The full-path time to first token: request read -> first byte of the answer written;
  // nullopt before that byte.
  std::optional<double> FullPathTtft() const { return SecondsSinceRead(Milestone::kFirstByte); }

  // ---- between the observer of the call and the connection ----
  // Runs `fn` once the answer's first byte is written (kFirstByte) or the connection is done
  // with the request (Release), whichever comes first; at once when either happened already.
  // One `fn` per timeline. `fn` runs on the calling thread or the connection's strand.
  void WhenWritten(std::function<void()> fn);
  // The connection handed bytes of this request's response to the socket (strand). Once the
  // call's first token exists, this is its first byte: marks kFirstByte and runs the waiting fn.
  void OnBytesWritten(Clock::time_point t);
  // The connection is done with this request (response written or connection closed): runs the
  // waiting fn. Strand; idempotent.
  void Release();

 private:
  static constexpr size_t Index(Milestone m) { return static_cast<size_t>(m); }
  // The waiting fn, taken, once `done_` is set; an empty function otherwise. The caller runs it
  // after releasing mutex_.
  std::function<void()> TakeWaiting() REQUIRES(mutex_);

  const Clock::time_point read_;
  // Nanoseconds since read_, plus one; 0 = not reached.
  std::array<std::atomic<int64_t>, kNumMilestones> ns_{};

  Mutex mutex_;
  bool done_ GUARDED_BY(mutex_) = false;  // first byte written or released
  std::function<void()> waiting_ GUARDED_BY(mutex_);
};

}  // namespace llmux::server
