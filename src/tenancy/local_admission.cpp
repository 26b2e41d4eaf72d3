// The single-replica admission: token-bucket rate limits, per-tenant queue caps and the
// ledger-fed quota tracker. The messages and codes are the HTTP API's (docs/api.md).
#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>

#include "llmux/admission.h"
#include "llmux/thread_annotations.h"

namespace llmux {
namespace {

class LocalAdmission final : public Admission {
 public:
  LocalAdmission(ClockFn clock, QuotaTracker* quota) : rate_limiter_(std::move(clock)), quota_(quota) {}

  AdmissionResult Admit(const std::string& tenant, const TenantConfig& config,
                        const AdmissionRequest& request) override {
    if (auto refusal = QuotaRefusal(tenant, config)) return *refusal;
    const RateDecision rate =
        rate_limiter_.Admit(tenant, config.rate_limit, request.charged_tokens);
    if (!rate.admitted) return AdmissionRateRefusal(rate, request.charged_tokens);
    MutexLock lock(mutex_);
    int64_t& queued = queued_[tenant];
    if (queued + request.num_choices > config.max_queued_requests) {
      return AdmissionQueueFullRefusal(config.max_queued_requests);
    }
    queued += request.num_choices;
    AdmissionTicket ticket{next_id_++, tenant, request};
    remaining_[ticket.id] = request.num_choices;
    return ticket;
  }

  std::optional<AdmissionRefusal> RefuseEarly(const std::string& tenant,
                                              const TenantConfig& config) override {
    if (auto refusal = QuotaRefusal(tenant, config)) return *refusal;
    MutexLock lock(mutex_);
    auto it = queued_.find(tenant);
    // Every call submits at least one choice.
    if (it != queued_.end() && it->second + 1 > config.max_queued_requests) {
      return AdmissionQueueFullRefusal(config.max_queued_requests);
    }
    return std::nullopt;
  }

  void LeaveQueue(const AdmissionTicket& ticket, int count) override {
    MutexLock lock(mutex_);
    auto it = remaining_.find(ticket.id);
    if (it == remaining_.end()) return;
    const int64_t n = std::min<int64_t>(count, it->second);
    it->second -= n;
    queued_[ticket.tenant] -= n;
  }

  void Finish(const AdmissionTicket& ticket, const AdmissionUsage&) override {
    // Usage reaches the quota tracker through the ledger (CallAccounting records it).
    MutexLock lock(mutex_);
    auto it = remaining_.find(ticket.id);
    if (it == remaining_.end()) return;
    queued_[ticket.tenant] -= it->second;
    remaining_.erase(it);
  }

  int64_t Queued(const std::string& tenant) override {
    MutexLock lock(mutex_);
    auto it = queued_.find(tenant);
    return it == queued_.end() ? 0 : it->second;
  }

  AdmissionStats Stats() override { return AdmissionStats{}; }

 private:
  std::optional<AdmissionRefusal> QuotaRefusal(const std::string& tenant, const TenantConfig& config) {
    if (quota_ == nullptr) return std::nullopt;
    const QuotaDecision q = quota_->Check(tenant, config.quota);
    if (q.allowed) return std::nullopt;
    return AdmissionRefusal{ResourceExhausted(q.message), "quota_exceeded", "",
                            std::min<int64_t>(q.retry_after_seconds, INT32_MAX)};
  }

  TenantRateLimiter rate_limiter_;
  QuotaTracker* const quota_;
  Mutex mutex_;
  uint64_t next_id_ GUARDED_BY(mutex_) = 1;
  std::map<std::string, int64_t> queued_ GUARDED_BY(mutex_);
  std::map<uint64_t, int64_t> remaining_ GUARDED_BY(mutex_);  // queue places per ticket
};

}  // namespace

AdmissionRefusal AdmissionRateRefusal(const RateDecision& rate, int64_t charged_tokens) {
  if (rate.retry_after_seconds == RateDecision::kNever) {
    return AdmissionRefusal{InvalidArgument("the request needs " + std::to_string(charged_tokens) +
                                            " tokens, more than this tenant's tokens_per_minute"),
                            "rate_limit_exceeded", "max_tokens", 0};
  }
  return AdmissionRefusal{ResourceExhausted("rate limit exceeded for this tenant"),
                          "rate_limit_exceeded", "", rate.retry_after_seconds};
}

AdmissionRefusal AdmissionQueueFullRefusal(int limit) {
  return AdmissionRefusal{
      ResourceExhausted("this tenant has " + std::to_string(limit) + " requests queued already"),
      "queue_full", "", 1};
}

std::unique_ptr<Admission> NewLocalAdmission(ClockFn clock, QuotaTracker* quota) {
  return std::make_unique<LocalAdmission>(std::move(clock), quota);
}

}  // namespace llmux
