// Pricing of held capacity: exact integer arithmetic in milli-nano-units (see docs/billing.md,
// "Capacity charges").
#include <algorithm>
#include <cstdint>
#include <limits>

#include "llmux/usage_ledger.h"

namespace llmux {
namespace {

constexpr __int128 kMax = std::numeric_limits<int64_t>::max();

int64_t Saturate(__int128 v) { return static_cast<int64_t>(v > kMax ? kMax : v); }

}  // namespace

int64_t UsageTotals::total_cost_nano() const {
  return Saturate(static_cast<__int128>(cost_nano) + capacity_cost_nano);
}

int64_t CapacityHold::MilliNanoPerHour() const {
  // Each product of two non-negative int64 fits in __int128 (< 2^126); saturating each one at
  // int64 max before scaling keeps the sum (< 2^126 + 1000 * 2^64) inside it too.
  const auto product = [](int64_t a, int64_t b) {
    return std::min<__int128>(
        kMax, static_cast<__int128>(std::max<int64_t>(a, 0)) * std::max<int64_t>(b, 0));
  };
  const __int128 kv = product(reserved_kv_tokens, prices.reserved_kv_nano_per_1k_tokens_hour);
  const __int128 seqs = product(reserved_seqs, prices.reserved_seq_nano_per_hour);
  const __int128 pool = dedicated ? std::max<int64_t>(prices.dedicated_pool_nano_per_hour, 0) : 0;
  return Saturate(kv + 1000 * (seqs + pool));
}

CapacityHold HoldOf(const TenantConfig& tenant) {
  CapacityHold hold;
  hold.pool = tenant.pool;
  hold.reserved_kv_tokens = tenant.reserved.kv_tokens;
  hold.reserved_seqs = tenant.reserved.seqs;
  hold.dedicated = tenant.pool != "shared";
  hold.prices = tenant.capacity_prices;
  return hold;
}

void CapacityAmount::Add(int64_t milli_nano_per_hour, int64_t ms) {
  const __int128 total = static_cast<__int128>(quot) * kCapacityDivisor + rem +
                         static_cast<__int128>(std::max<int64_t>(milli_nano_per_hour, 0)) *
                             std::max<int64_t>(ms, 0);
  const __int128 q = total / kCapacityDivisor;
  if (q >= kMax) {
    quot = std::numeric_limits<int64_t>::max();
    rem = 0;
    return;
  }
  quot = static_cast<int64_t>(q);
  rem = static_cast<int64_t>(total % kCapacityDivisor);
}

int64_t CapacityAmount::CostNano() const {
  // Round half up: a remainder of at least half the divisor adds one nano-unit.
  return Saturate(static_cast<__int128>(quot) + (2 * static_cast<__int128>(rem) >= kCapacityDivisor));
}

}  // namespace llmux
