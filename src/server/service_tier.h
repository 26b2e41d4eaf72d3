// A call's OpenAI service tier -> the lane it runs in and the prices it is billed at. The tier
// comes from the body's `service_tier` and, before the body is read, from the
// `X-Llmux-Service-Tier` header: the one way a client can have its call planned (and its I/O
// ordered) in a tier's lane, since the front door orders work before it parses bodies
// (docs/isolation.md, "The front door"). Without the header a call is planned in its tenant's
// own lane whatever its body says.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "llmux/tenant_policy.h"
#include "server/api_error.h"

namespace llmux::server {

// The header's name, lower-case as HttpRequest::headers holds it.
inline constexpr char kServiceTierHeader[] = "x-llmux-service-tier";

struct ServiceTierChoice {
  std::string tier = "default";  // "default" (also for auto / not sent), "priority" or "flex"
  std::string lane;              // the lane's name
  int lane_index = 0;            // TenantPolicy::lanes index; 0 = highest
  int32_t request_lane = -1;     // the scheduler's per-request lane; -1 = the tenant's
  Prices prices;
};

// The choice for tier `requested` ("" = not sent; "auto", "default", "flex", "priority") of
// `tenant`. 400 naming `param` for any other value; 403 `service_tier_not_allowed` (listing
// the allowed ones) for a tier the tenant's policy does not map.
std::variant<ServiceTierChoice, ApiError> ChooseServiceTier(std::string_view requested,
                                                            const TenantConfig& tenant,
                                                            const std::string& param);

// The tier of a call whose header said `header_tier` ("" = none) and whose body says
// `body_tier` ("" = none): the body's, the header's when the body names none, and a 400 on
// `service_tier` when both name different tiers (auto and default are the same tier).
std::variant<ServiceTierChoice, ApiError> ChooseCallServiceTier(std::string_view header_tier,
                                                                std::string_view body_tier,
                                                                const TenantConfig& tenant);

}  // namespace llmux::server
