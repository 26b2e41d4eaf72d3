#include "server/service_tier.h"

#include <gtest/gtest.h>

namespace llmux::server {
namespace {

// A standard-lane tenant (lane 1) with priority -> lane 0 and flex -> lane 2 at its own prices.
TenantConfig Tiered() {
  TenantConfig t;
  t.name = "tiered";
  t.lane = "standard";
  t.lane_index = 1;
  t.prices.input_nano_per_mtok = 2'000'000'000;
  t.service_tiers["priority"] = ServiceTier{"premium", 0, std::nullopt};
  Prices flex;
  flex.input_nano_per_mtok = 500'000'000;
  t.service_tiers["flex"] = ServiceTier{"batch", 2, flex};
  return t;
}

ServiceTierChoice Chosen(const std::variant<ServiceTierChoice, ApiError>& v) {
  if (const auto* e = std::get_if<ApiError>(&v)) ADD_FAILURE() << e->message;
  return std::holds_alternative<ServiceTierChoice>(v) ? std::get<ServiceTierChoice>(v)
                                                      : ServiceTierChoice{};
}

ApiError Refused(const std::variant<ServiceTierChoice, ApiError>& v) {
  EXPECT_TRUE(std::holds_alternative<ApiError>(v));
  return std::holds_alternative<ApiError>(v) ? std::get<ApiError>(v) : ApiError{};
}

TEST(ServiceTierTest, NoTierAutoAndDefaultAreTheTenantsLane) {
  const TenantConfig t = Tiered();
  for (const char* tier : {"", "auto", "default"}) {
    const ServiceTierChoice c = Chosen(ChooseServiceTier(tier, t, "service_tier"));
    EXPECT_EQ(c.tier, "default") << tier;
    EXPECT_EQ(c.lane, "standard") << tier;
    EXPECT_EQ(c.lane_index, 1) << tier;
    EXPECT_EQ(c.request_lane, -1) << tier;
    EXPECT_EQ(c.prices.input_nano_per_mtok, 2'000'000'000) << tier;
  }
}

TEST(ServiceTierTest, AMappedTierIsItsLaneAndPrices) {
  const TenantConfig t = Tiered();
  const ServiceTierChoice p = Chosen(ChooseServiceTier("priority", t, "service_tier"));
  EXPECT_EQ(p.tier, "priority");
  EXPECT_EQ(p.lane, "premium");
  EXPECT_EQ(p.lane_index, 0);
  EXPECT_EQ(p.request_lane, 0);
  EXPECT_EQ(p.prices.input_nano_per_mtok, 2'000'000'000);  // the tenant's: none given
  const ServiceTierChoice f = Chosen(ChooseServiceTier("flex", t, "service_tier"));
  EXPECT_EQ(f.lane, "batch");
  EXPECT_EQ(f.lane_index, 2);
  EXPECT_EQ(f.prices.input_nano_per_mtok, 500'000'000);
}

TEST(ServiceTierTest, AnUnmappedTierIs403AndAnUnknownOne400NamingTheParam) {
  TenantConfig t = Tiered();
  t.service_tiers.erase("priority");
  const ApiError denied = Refused(ChooseServiceTier("priority", t, "X-Llmux-Service-Tier"));
  EXPECT_EQ(denied.http_status, 403);
  EXPECT_EQ(denied.code, "service_tier_not_allowed");
  EXPECT_EQ(denied.param, "X-Llmux-Service-Tier");
  EXPECT_EQ(denied.message,
            "service_tier 'priority' is not available to this tenant (allowed: auto, default, "
            "flex)");
  const ApiError unknown = Refused(ChooseServiceTier("gold", t, "X-Llmux-Service-Tier"));
  EXPECT_EQ(unknown.http_status, 400);
  EXPECT_EQ(unknown.param, "X-Llmux-Service-Tier");
  EXPECT_EQ(unknown.message,
            "'X-Llmux-Service-Tier' must be 'auto', 'default', 'flex' or 'priority'");
}

TEST(ServiceTierTest, TheHeaderDecidesWhenTheBodyNamesNoTier) {
  const TenantConfig t = Tiered();
  EXPECT_EQ(Chosen(ChooseCallServiceTier("flex", "", t)).lane_index, 2);
  EXPECT_EQ(Chosen(ChooseCallServiceTier("", "priority", t)).lane_index, 0);
  EXPECT_EQ(Chosen(ChooseCallServiceTier("priority", "priority", t)).tier, "priority");
  // auto and default are one tier.
  EXPECT_EQ(Chosen(ChooseCallServiceTier("auto", "default", t)).lane_index, 1);
  EXPECT_EQ(Chosen(ChooseCallServiceTier("", "", t)).tier, "default");
}

TEST(ServiceTierTest, AHeaderAndABodyNamingDifferentTiersAre400) {
  const TenantConfig t = Tiered();
  const ApiError e = Refused(ChooseCallServiceTier("flex", "priority", t));
  EXPECT_EQ(e.http_status, 400);
  EXPECT_EQ(e.param, "service_tier");
  EXPECT_EQ(e.message,
            "service_tier 'priority' differs from the X-Llmux-Service-Tier header 'flex' (send one "
            "tier, or the same in both)");
  EXPECT_EQ(Refused(ChooseCallServiceTier("default", "flex", t)).param, "service_tier");
}

}  // namespace
}  // namespace llmux::server
