// Admission: the tenant limits a request must pass before it reaches an engine (rate limits
// requests_per_minute / tokens_per_minute, the queue cap max_queued_requests, the quotas
// tokens_per_day / spend_per_month and, in cluster mode, the fleet-wide in-flight token budget
// max_inflight_tokens), behind one interface with two implementations:
//   - local (NewLocalAdmission, src/tenancy/): every figure is this replica's own;
//   - cluster (src/cluster/, include/llmux/cluster.h): the figures are the whole fleet's,
//     kept in Redis and updated atomically.
// The HTTP layer calls Admit once per completion call, LeaveQueue as each choice starts, and
// Finish once when the call's usage is known.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "llmux/quota.h"
#include "llmux/status.h"
#include "llmux/tenant_policy.h"

namespace llmux {

// What one completion call asks for.
struct AdmissionRequest {
  // prompt + max new tokens, summed over every choice (what rate limits, quotas and the
  // in-flight budget charge until the call settles).
  std::int64_t charged_tokens = 0;
  // The cost of `charged_tokens` at the tenant's prices (prompt at the input price, max new
  // tokens at the output price): what spend_per_month reserves until the call settles.
  std::int64_t charged_cost_nano = 0;
  int num_choices = 1;  // engine requests the call submits (prompts x n)
};

// An admitted call. Hand it back to LeaveQueue / Finish; it owns nothing.
struct AdmissionTicket {
  std::uint64_t id = 0;
  std::string tenant;
  AdmissionRequest request;
};

// Why a call was refused, ready for the HTTP layer: `status` decides the HTTP status
// (InvalidArgument 400, ResourceExhausted 429, Unavailable 503), `code` is the OpenAI error
// code ("rate_limit_exceeded", "queue_full", "quota_exceeded", "inflight_budget_exceeded",
// "store_unavailable"), `param` the request field at fault ("" when none) and
// `retry_after_seconds` the truthful Retry-After (0 = send none).
struct AdmissionRefusal {
  Status status;
  std::string code;
  std::string param;
  std::int64_t retry_after_seconds = 0;
};

using AdmissionResult = std::variant<AdmissionTicket, AdmissionRefusal>;

// The usage a finished call is settled with.
struct AdmissionUsage {
  std::int64_t tokens = 0;  // prompt + completion over every choice, as billed
  std::int64_t cost_nano = 0;
};

// Figures for /metrics (cluster mode only; the local implementation reports shared_store false).
struct AdmissionStats {
  bool shared_store = false;   // cluster mode
  bool store_up = false;       // the last call to the store succeeded
  std::int64_t live_replicas = 1;       // replicas with a live heartbeat, last seen
  std::int64_t local_decisions = 0;     // calls decided without the store (local_share)
  std::int64_t store_unavailable_refusals = 0;  // calls refused because the store was down
  std::int64_t store_errors = 0;        // store calls that failed or timed out
};

// Thread-safe. Admit runs on I/O threads and returns within the store timeout (cluster) or at
// once (local); LeaveQueue and Finish never block (engine thread, ledger thread).
class Admission {
 public:
  virtual ~Admission() = default;

  // Decides one call of `tenant` under its current `config`. On admission the call holds its
  // rate-limit units, `num_choices` queue places, and (cluster) its charge against the quota
  // counters and the in-flight budget until Finish.
  virtual AdmissionResult Admit(const std::string& tenant, const TenantConfig& config,
                                const AdmissionRequest& request) = 0;
  // The front door's cheap refusal: a refusal Admit would give whatever the call asks for
  // (a quota already spent, a queue already full), decided from the tenant alone, before the
  // body is parsed and the prompt tokenized, so a tenant over its limits costs the I/O threads
  // almost nothing. nullopt: the call must go through Admit (which decides; this takes and
  // holds nothing). The default refuses nothing early.
  virtual std::optional<AdmissionRefusal> RefuseEarly(const std::string& tenant,
                                                      const TenantConfig& config) {
    (void)tenant;
    (void)config;
    return std::nullopt;
  }
  // `count` of the ticket's choices left the queue (the engine started them, or they ended
  // before starting). The sum over calls must not exceed num_choices.
  virtual void LeaveQueue(const AdmissionTicket& ticket, int count) = 0;
  // The call ended with `usage`: releases what it still holds (queue places not yet left, the
  // in-flight lease) and settles the quota reservation to the real usage. Once per ticket.
  virtual void Finish(const AdmissionTicket& ticket, const AdmissionUsage& usage) = 0;
  // A charge outside any call (capacity held for `tenant`: reserved KV or sequences, a
  // dedicated pool) for the hour starting `at_unix_ms`, already written to this replica's
  // ledger: it counts toward the tenant's spend quota like a call's cost. The local
  // implementation leaves this to the QuotaTracker, which the ledger feeds; cluster mode adds it
  // to this replica's monthly spend in the shared store. Never blocks.
  virtual void RecordCharge(const std::string& tenant, std::int64_t at_unix_ms,
                            std::int64_t cost_nano) {
    (void)tenant;
    (void)at_unix_ms;
    (void)cost_nano;
  }

  // Calls of `tenant` queued on this replica (choices admitted, not yet started).
  virtual std::int64_t Queued(const std::string& tenant) = 0;
  virtual AdmissionStats Stats() = 0;
};

// One admitted call's hold on its tenant's admission, from Admit to Finish: the ticket, which
// of its choices have left the tenant's queue, and the settlement. The HTTP layer marks each
// choice as it starts (its first engine event) and finishes the call once its usage is known;
// the queue counts stay right whatever order those come in. Thread-safe (the engine's sinks,
// the strand, the ledger's writer); `admission` must outlive it.
class AdmittedCall {
 public:
  AdmittedCall(Admission* admission, AdmissionTicket ticket);
  AdmittedCall(const AdmittedCall&) = delete;
  AdmittedCall& operator=(const AdmittedCall&) = delete;

  // Choice `i` (< num_choices) left the queue: the engine started it, or it ended before
  // starting. Only the first call per choice counts.
  void ChoiceLeftQueue(size_t i);
  // Choices `first`..num_choices-1 never reach the engine (its Submit failed): they leave the
  // queue now.
  void NeverSubmitted(size_t first);
  // Settles the call with `usage` and releases what it still holds. Only the first call counts.
  void Finish(const AdmissionUsage& usage);

  const AdmissionTicket& ticket() const { return ticket_; }

 private:
  Admission* const admission_;
  const AdmissionTicket ticket_;
  std::vector<std::atomic<bool>> left_;  // [choice]
  std::atomic<bool> finished_{false};
};

// The refusals both implementations give (same messages and codes): a rate limit (`rate` not
// admitted; kNever -> 400 on max_tokens) and a full queue.
AdmissionRefusal AdmissionRateRefusal(const RateDecision& rate, std::int64_t charged_tokens);
AdmissionRefusal AdmissionQueueFullRefusal(int limit);

// This replica's limits only: a token-bucket TenantRateLimiter on `clock`, queue counts, and
// `quota` (may be null = no quotas; must outlive the admission; fed by the usage ledger).
std::unique_ptr<Admission> NewLocalAdmission(ClockFn clock, QuotaTracker* quota);

}  // namespace llmux
