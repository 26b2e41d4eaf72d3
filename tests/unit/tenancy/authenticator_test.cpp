#include <gtest/gtest.h>

#include "llmux/tenant_policy.h"

namespace llmux {
namespace {

TEST(ConstantTimeEqualsTest, EqualUnequalAndDifferentLengths) {
  EXPECT_TRUE(ConstantTimeEquals("secret", "secret"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secreT"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "Secret"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secret1"));
  EXPECT_FALSE(ConstantTimeEquals("secret1", "secret"));
  EXPECT_FALSE(ConstantTimeEquals("", "x"));
  EXPECT_FALSE(ConstantTimeEquals("x", ""));
  const std::string a("a\0b", 3), b("a\0c", 3);
  EXPECT_FALSE(ConstantTimeEquals(a, b));  // embedded NUL does not end the comparison
  EXPECT_TRUE(ConstantTimeEquals(a, std::string("a\0b", 3)));
}

class AuthenticatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto p = ParseTenantPolicy(
        "tenants:\n"
        "  acme:\n"
        "    api_keys: [{sha256: " +
            KeyHashHex(HashApiKey("sk-acme-1")) +
            "}, {sha256: " + KeyHashHex(HashApiKey("sk-acme-2")) +
            "}]\n"
            "  beta:\n"
            "    api_keys: [{sha256: " +
            KeyHashHex(HashApiKey("sk-beta")) +
            "}]\n"
            "  nokeys: {}\n",
        "tenants.yaml");
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    policy_ = *p;
  }
  std::shared_ptr<const TenantPolicy> policy_;
  Authenticator auth_{{AdminKey{HashApiKey("sk-admin")}}};
};

TEST_F(AuthenticatorTest, MapsKeysToTenantsAndAdmin) {
  auto a1 = auth_.Authenticate("Bearer sk-acme-1", *policy_);
  ASSERT_TRUE(a1.ok());
  EXPECT_EQ(a1->kind, Principal::Kind::kTenant);
  EXPECT_EQ(a1->tenant, "acme");
  EXPECT_EQ(auth_.Authenticate("Bearer sk-acme-2", *policy_)->tenant, "acme");
  EXPECT_EQ(auth_.Authenticate("Bearer sk-beta", *policy_)->tenant, "beta");
  auto admin = auth_.Authenticate("Bearer sk-admin", *policy_);
  ASSERT_TRUE(admin.ok());
  EXPECT_EQ(admin->kind, Principal::Kind::kAdmin);
  EXPECT_EQ(admin->tenant, "");
  EXPECT_EQ(auth_.AuthenticateKey("sk-beta", *policy_)->tenant, "beta");
}

TEST_F(AuthenticatorTest, SchemeIsCaseInsensitiveAndSpacesAreTrimmed) {
  EXPECT_EQ(auth_.Authenticate("bearer sk-beta", *policy_)->tenant, "beta");
  EXPECT_EQ(auth_.Authenticate("BEARER   sk-beta  ", *policy_)->tenant, "beta");
  EXPECT_EQ(auth_.Authenticate("  Bearer\tsk-beta", *policy_)->tenant, "beta");
}

TEST_F(AuthenticatorTest, RejectsWithoutRevealingTheKey) {
  auto wrong = auth_.Authenticate("Bearer sk-acme-3", *policy_);
  EXPECT_EQ(wrong.status().code(), StatusCode::kUnauthenticated);
  EXPECT_EQ(wrong.status().message(), "invalid API key");
  // The key must match exactly: no prefix, case or whitespace-inside variations.
  EXPECT_FALSE(auth_.Authenticate("Bearer sk-acme", *policy_).ok());
  EXPECT_FALSE(auth_.Authenticate("Bearer SK-ACME-1", *policy_).ok());
  EXPECT_FALSE(auth_.Authenticate("Bearer sk-acme-1x", *policy_).ok());
  // The stored hash itself is not a key.
  EXPECT_FALSE(auth_.Authenticate("Bearer " + KeyHashHex(HashApiKey("sk-acme-1")), *policy_).ok());
  EXPECT_EQ(auth_.Authenticate("", *policy_).status().message(),
            "missing API key (send \"Authorization: Bearer KEY\")");
  EXPECT_EQ(auth_.Authenticate("Bearer", *policy_).status().message(),
            "missing API key after \"Bearer\"");
  EXPECT_EQ(auth_.Authenticate("Bearer   ", *policy_).status().message(),
            "missing API key after \"Bearer\"");
  EXPECT_EQ(auth_.Authenticate("Basic c2stYmV0YQ==", *policy_).status().message(),
            "unsupported authorization scheme (send \"Authorization: Bearer KEY\")");
  EXPECT_EQ(auth_.Authenticate("sk-beta", *policy_).status().code(), StatusCode::kUnauthenticated);
}

TEST_F(AuthenticatorTest, ANewPolicyChangesWhoIsWho) {
  auto p2 = ParseTenantPolicy(
      "tenants:\n  gamma: {api_keys: [{sha256: " + KeyHashHex(HashApiKey("sk-acme-1")) + "}]}\n",
      "tenants.yaml");
  ASSERT_TRUE(p2.ok());
  EXPECT_EQ(auth_.Authenticate("Bearer sk-acme-1", **p2)->tenant, "gamma");
  EXPECT_FALSE(auth_.Authenticate("Bearer sk-beta", **p2).ok());
  EXPECT_EQ(auth_.Authenticate("Bearer sk-acme-1", *policy_)->tenant, "acme");
}

}  // namespace
}  // namespace llmux
