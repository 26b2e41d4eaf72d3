// Token buckets with exact integer refill, and the per-tenant request/token limiter.
#include <algorithm>

#include "llmux/tenant_policy.h"

namespace llmux {
namespace {

constexpr __int128 kNanosPerMinute = 60'000'000'000;
constexpr std::int64_t kNanosPerSecond = 1'000'000'000;

}  // namespace

TokenBucket::TokenBucket(std::int64_t per_minute, SteadyTime now)
    : per_minute_(per_minute), level_(per_minute * kNanosPerMinute), last_(now) {
  LLMUX_CHECK(per_minute >= 0) << "per_minute " << per_minute;
}

void TokenBucket::Refill(SteadyTime now) {
  if (now <= last_) return;
  const std::int64_t elapsed_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(now - last_).count();
  // A full minute refills everything; capping first keeps the product far from overflow.
  const __int128 elapsed = std::min<__int128>(elapsed_ns, kNanosPerMinute);
  level_ = std::min<__int128>(level_ + elapsed * per_minute_, per_minute_ * kNanosPerMinute);
  last_ = now;
}

RateDecision TokenBucket::Check(std::int64_t cost, SteadyTime now) {
  if (per_minute_ == 0 || cost <= 0) return RateDecision{true, 0};
  Refill(now);
  if (cost > per_minute_) return RateDecision{false, RateDecision::kNever};
  const __int128 need = cost * kNanosPerMinute;
  if (level_ >= need) return RateDecision{true, 0};
  // The bucket gains per_minute_ scaled units per nanosecond.
  const __int128 wait_ns = (need - level_ + per_minute_ - 1) / per_minute_;
  const __int128 wait_s = (wait_ns + kNanosPerSecond - 1) / kNanosPerSecond;
  return RateDecision{false, static_cast<std::int64_t>(std::max<__int128>(wait_s, 1))};
}

RateDecision TokenBucket::TryTake(std::int64_t cost, SteadyTime now) {
  const RateDecision d = Check(cost, now);
  if (d.admitted && per_minute_ > 0 && cost > 0) level_ -= cost * kNanosPerMinute;
  return d;
}

std::int64_t TokenBucket::Available(SteadyTime now) {
  Refill(now);
  return static_cast<std::int64_t>(level_ / kNanosPerMinute);
}

void TokenBucket::ClampTo(std::int64_t units) {
  level_ = std::min<__int128>(level_, std::max<std::int64_t>(units, 0) * kNanosPerMinute);
}

TenantRateLimiter::TenantRateLimiter(ClockFn clock) : clock_(std::move(clock)) {}

RateDecision TenantRateLimiter::Admit(std::string_view tenant, const RateLimit& limit,
                                      std::int64_t tokens) {
  const SteadyTime now = clock_();
  MutexLock lock(mutex_);
  auto it = buckets_.find(tenant);
  if (it == buckets_.end()) {
    it = buckets_
             .emplace(std::string(tenant),
                      Buckets{limit, TokenBucket(limit.requests_per_minute, now),
                              TokenBucket(limit.tokens_per_minute, now)})
             .first;
  } else if (!(it->second.limit == limit)) {
    // A reload changed the limits: start from the new capacity minus what the last minute's
    // window has consumed, so raising a limit gives headroom at once and lowering it cannot
    // be dodged.
    Buckets& old = it->second;
    auto rebuilt = [&](TokenBucket& previous, std::int64_t per_minute) {
      TokenBucket bucket(per_minute, now);
      if (previous.per_minute() > 0) {
        bucket.ClampTo(per_minute - (previous.per_minute() - previous.Available(now)));
      }
      return bucket;
    };
    it->second = Buckets{limit, rebuilt(old.requests, limit.requests_per_minute),
                         rebuilt(old.tokens, limit.tokens_per_minute)};
  }
  Buckets& b = it->second;
  const RateDecision r = b.requests.Check(1, now);
  const RateDecision t = b.tokens.Check(tokens, now);
  if (r.admitted && t.admitted) {
    b.requests.TryTake(1, now);
    b.tokens.TryTake(tokens, now);
    return RateDecision{true, 0};
  }
  if (r.retry_after_seconds == RateDecision::kNever ||
      t.retry_after_seconds == RateDecision::kNever) {
    return RateDecision{false, RateDecision::kNever};
  }
  return RateDecision{false, std::max(r.retry_after_seconds, t.retry_after_seconds)};
}

}  // namespace llmux
