// tenants.yaml `capacity_prices`: exact decimals, unknown keys and a pool price on the shared
// pool refused with file:line:column.
#include <gtest/gtest.h>

#include "llmux/tenant_policy.h"

namespace llmux {
namespace {

TEST(CapacityPricesTest, ParsedExactlyAndAPoolPriceNeedsADedicatedPool) {
  auto p = ParseTenantPolicy(
      "lanes: [{name: standard}]\ntenants:\n"
      "  a:\n    pool: a-pool\n"
      "    capacity_prices: {reserved_kv_per_1k_tokens_hour: 0.004, reserved_seq_per_hour: 0.01,"
      " dedicated_pool_per_hour: 1.2}\n",
      "tenants.yaml");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ((*p)->Find("a")->capacity_prices, (CapacityPrices{4'000'000, 10'000'000, 1'200'000'000}));
  auto bad = ParseTenantPolicy(
      "lanes: [{name: standard}]\ntenants:\n"
      "  a:\n    capacity_prices: {dedicated_pool_per_hour: 1.2}\n",
      "tenants.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find(
                "tenants.yaml:4:48: tenants.a.capacity_prices.dedicated_pool_per_hour: the tenant "
                "runs on the shared pool"),
            std::string::npos)
      << bad.status().message();
  auto typo = ParseTenantPolicy(
      "lanes: [{name: standard}]\ntenants:\n"
      "  a:\n    capacity_prices: {reserved_seqs_per_hour: 1}\n",
      "tenants.yaml");
  ASSERT_FALSE(typo.ok());
  EXPECT_NE(typo.status().message().find("reserved_seqs_per_hour"), std::string::npos);
}

}  // namespace
}  // namespace llmux
