// API-key authentication: Bearer key -> SHA-256 -> constant-time match against every hash.
#include <openssl/crypto.h>

#include "llmux/tenant_policy.h"

namespace llmux {
namespace {

Status Unauthenticated(std::string message) {
  return Status(StatusCode::kUnauthenticated, std::move(message));
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

bool HashEquals(const KeyHash& a, const KeyHash& b) {
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    // Spend the same time as an equal-length comparison of `a`, then fail.
    volatile int sink = CRYPTO_memcmp(a.data(), a.data(), a.size());
    (void)sink;
    return false;
  }
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

StatusOr<Principal> Authenticator::Authenticate(std::string_view authorization,
                                                const TenantPolicy& policy) const {
  const std::string_view header = Trim(authorization);
  if (header.empty()) {
    return Unauthenticated("missing API key (send \"Authorization: Bearer KEY\")");
  }
  const size_t space = header.find_first_of(" \t");
  const std::string_view scheme = header.substr(0, space);
  if (!EqualsIgnoreCase(scheme, "Bearer")) {
    return Unauthenticated("unsupported authorization scheme (send \"Authorization: Bearer KEY\")");
  }
  const std::string_view key =
      space == std::string_view::npos ? std::string_view() : Trim(header.substr(space));
  if (key.empty()) return Unauthenticated("missing API key after \"Bearer\"");
  return AuthenticateKey(key, policy);
}

StatusOr<Principal> Authenticator::AuthenticateKey(std::string_view key,
                                                   const TenantPolicy& policy) const {
  const KeyHash presented = HashApiKey(key);
  // NOTE: every candidate is compared and the loop never exits early, so the time taken does
  // not depend on which (or whether any) key matched, only on how many keys exist.
  bool admin = false;
  const TenantConfig* tenant = nullptr;
  for (const AdminKey& a : admin_keys_) admin |= HashEquals(presented, a.sha256);
  for (const auto& [name, t] : policy.tenants) {
    for (const KeyHash& k : t.api_keys) {
      const bool match = HashEquals(presented, k);
      tenant = match ? &t : tenant;
    }
  }
  if (admin) return Principal{Principal::Kind::kAdmin, ""};
  if (tenant != nullptr) return Principal{Principal::Kind::kTenant, tenant->name};
  return Unauthenticated("invalid API key");
}

}  // namespace llmux
