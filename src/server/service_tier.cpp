#include "server/service_tier.h"

namespace llmux::server {
namespace {

// auto and default are one tier (the tenant's own lane).
std::string_view Canonical(std::string_view tier) {
  return tier.empty() || tier == "auto" ? std::string_view("default") : tier;
}

}  // namespace

std::variant<ServiceTierChoice, ApiError> ChooseServiceTier(std::string_view requested,
                                                            const TenantConfig& tenant,
                                                            const std::string& param) {
  ServiceTierChoice choice;
  choice.lane = tenant.lane;
  choice.lane_index = tenant.lane_index;
  choice.prices = tenant.prices;
  const std::string_view tier = Canonical(requested);
  if (tier == "default") return choice;
  if (tier != "priority" && tier != "flex") {
    return InvalidRequest("'" + param + "' must be 'auto', 'default', 'flex' or 'priority'", param);
  }
  auto found = tenant.service_tiers.find(std::string(tier));
  if (found == tenant.service_tiers.end()) {
    std::string allowed = "auto, default";
    for (const auto& [name, t] : tenant.service_tiers) allowed += ", " + name;
    return ApiErrorFromStatus(Status(StatusCode::kPermissionDenied,
                                     "service_tier '" + std::string(tier) +
                                         "' is not available to this tenant (allowed: " +
                                         allowed + ")"),
                              param, "service_tier_not_allowed");
  }
  choice.tier = std::string(tier);
  choice.lane = found->second.lane;
  choice.lane_index = found->second.lane_index;
  choice.request_lane = found->second.lane_index;
  if (found->second.prices) choice.prices = *found->second.prices;
  return choice;
}

std::variant<ServiceTierChoice, ApiError> ChooseCallServiceTier(std::string_view header_tier,
                                                                std::string_view body_tier,
                                                                const TenantConfig& tenant) {
  if (!header_tier.empty() && !body_tier.empty() &&
      Canonical(header_tier) != Canonical(body_tier)) {
    return InvalidRequest("service_tier '" + std::string(body_tier) +
                              "' differs from the X-Llmux-Service-Tier header '" +
                              std::string(header_tier) + "' (send one tier, or the same in both)",
                          "service_tier");
  }
  if (!body_tier.empty()) return ChooseServiceTier(body_tier, tenant, "service_tier");
  return ChooseServiceTier(header_tier, tenant, "X-Llmux-Service-Tier");
}

}  // namespace llmux::server
