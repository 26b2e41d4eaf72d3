// The demo files in config/ (used by `make run`) must always load.
#include <gtest/gtest.h>

#include <filesystem>

#include "llmux/config.h"
#include "llmux/tenant_policy.h"

namespace llmux {
namespace {

const std::filesystem::path kConfigDir = std::filesystem::path(LLMUX_SOURCE_DIR) / "config";

TEST(ExampleConfigTest, ServerFileLoads) {
  auto cfg = LoadServerConfig(kConfigDir / "llmux.yaml");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_EQ(cfg->server.listen, "127.0.0.1:8080");
  EXPECT_EQ(cfg->model.path, "");  // the daemon falls back to the tiny model
  EXPECT_EQ(cfg->tenants_file, (kConfigDir / "tenants.yaml").lexically_normal());
  ASSERT_EQ(cfg->server.admin_api_keys.size(), 1u);
  EXPECT_EQ(cfg->server.admin_api_keys[0].sha256, HashApiKey("sk-llmux-demo-admin"));
}

TEST(ExampleConfigTest, TenantsFileLoadsAndMatchesTheDemoKeys) {
  auto cfg = LoadServerConfig(kConfigDir / "llmux.yaml");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  auto policy = LoadTenantPolicy(cfg->tenants_file);
  ASSERT_TRUE(policy.ok()) << policy.status().ToString();
  const TenantPolicy& p = **policy;
  EXPECT_TRUE(CheckPolicyFitsEngine(p, cfg->engine).ok());
  EXPECT_TRUE(CheckNoAdminKeyReuse(p, cfg->server.admin_api_keys).ok());
  const TenantConfig* premium = p.Find("demo-premium");
  const TenantConfig* batch = p.Find("demo-batch");
  ASSERT_NE(premium, nullptr);
  ASSERT_NE(batch, nullptr);
  EXPECT_EQ(premium->lane, "premium");
  EXPECT_EQ(batch->lane, "batch");
  EXPECT_LT(premium->lane_index, batch->lane_index);

  Authenticator auth(cfg->server.admin_api_keys);
  EXPECT_EQ(auth.Authenticate("Bearer sk-llmux-demo-premium", p)->tenant, "demo-premium");
  EXPECT_EQ(auth.Authenticate("Bearer sk-llmux-demo-batch", p)->tenant, "demo-batch");
  EXPECT_EQ(auth.Authenticate("Bearer sk-llmux-demo-admin", p)->kind, Principal::Kind::kAdmin);
}

}  // namespace
}  // namespace llmux
