// `pools:` in llmux.yaml and the tenant -> pool checks.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "llmux/config.h"
#include "llmux/pool.h"
#include "llmux/tenant_policy.h"

namespace llmux {
namespace {

StatusOr<ServerConfig> Parse(const std::string& text) {
  return ParseServerConfig(text, "llmux.yaml", "/etc/llmux");
}

TEST(PoolsConfigTest, WithoutPoolsTheEngineIsTheSharedPool) {
  auto cfg = Parse("model: { path: m }\nengine: { kv_cache_tokens: 4096, threads: 3 }\n");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  ASSERT_EQ(cfg->pools.size(), 1u);
  const PoolSection& p = cfg->pools[0];
  EXPECT_EQ(p.name, "shared");
  EXPECT_EQ(p.isolation, PoolIsolation::kThread);
  EXPECT_EQ(p.engine.kv_cache_tokens, 4096);
  EXPECT_EQ(p.engine.threads, 3);
  EXPECT_EQ(p.model.path, "/etc/llmux/m");
  EXPECT_FALSE(p.own_model);
  EXPECT_EQ(p.health_timeout, Millis(5000));
}

TEST(PoolsConfigTest, PoolsInheritTheEngineAndOverrideKeys) {
  auto cfg = Parse(R"(model: { path: m, name: base }
engine: { kv_cache_tokens: 4096, max_seqs: 8, threads: 2 }
pools:
  acme:
    isolation: process
    engine: { kv_cache_tokens: 1024 }
    health_timeout: 2s
  big:
    model: { path: /models/big, name: big }
)");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  ASSERT_EQ(cfg->pools.size(), 3u);
  EXPECT_EQ(cfg->pools[0].name, "shared");  // implicit, first
  EXPECT_EQ(cfg->pools[1].name, "acme");
  EXPECT_EQ(cfg->pools[2].name, "big");
  const PoolSection& acme = *FindPool(*cfg, "acme");
  EXPECT_EQ(acme.isolation, PoolIsolation::kProcess);
  EXPECT_EQ(acme.engine.kv_cache_tokens, 1024);
  EXPECT_EQ(acme.engine.max_seqs, 8);  // inherited
  EXPECT_EQ(acme.health_timeout, Millis(2000));
  EXPECT_EQ(acme.model.name, "base");
  EXPECT_FALSE(acme.own_model);
  const PoolSection& big = *FindPool(*cfg, "big");
  EXPECT_EQ(big.isolation, PoolIsolation::kThread);
  EXPECT_TRUE(big.own_model);
  EXPECT_EQ(big.model.path, "/models/big");
  EXPECT_EQ(big.model.name, "big");
  EXPECT_EQ(FindPool(*cfg, "nope"), nullptr);
}

TEST(PoolsConfigTest, ANamedSharedPoolReplacesTheImplicitOne) {
  auto cfg = Parse("engine: { kv_cache_tokens: 4096 }\npools:\n  shared: { engine: { kv_cache_tokens: 2048 } }\n");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  ASSERT_EQ(cfg->pools.size(), 1u);
  EXPECT_EQ(cfg->pools[0].engine.kv_cache_tokens, 2048);
}

TEST(PoolsConfigTest, ErrorsNameTheKey) {
  auto bad = [](const std::string& text) {
    auto cfg = Parse(text);
    return cfg.ok() ? std::string() : cfg.status().message();
  };
  EXPECT_EQ(bad("pools:\n  a: { isolation: vm }\n"),
            "llmux.yaml:2:19: pools.a.isolation: expected \"thread\" or \"process\", got \"vm\"");
  EXPECT_EQ(bad("pools:\n  a: { engine: { max_seq: 3 } }\n"),
            "llmux.yaml:2:18: pools.a.engine.max_seq: unknown key (did you mean \"max_seqs\"?)");
  EXPECT_EQ(bad("pools:\n  a: { threads: 3 }\n"), "llmux.yaml:2:8: pools.a.threads: unknown key");
  EXPECT_EQ(bad("pools:\n  a: { health_timeout: 50ms }\n"),
            "llmux.yaml:2:24: pools.a.health_timeout: must be at least 100ms");
  EXPECT_EQ(bad("pools:\n  \"a b\": {}\n"),
            "llmux.yaml:2:10: pools.\"a b\": invalid pool name \"a b\" (1-64 of [A-Za-z0-9_-])");
  EXPECT_EQ(bad("pools:\n  a: { model: { name: x } }\n"),
            "llmux.yaml:2:15: pools.a.model: a pool's own model needs a path");
}

constexpr char kTenants[] = R"(lanes: [ { name: standard } ]
tenants:
  alice:
    api_keys: [ { sha256: "1111111111111111111111111111111111111111111111111111111111111111" } ]
    reserved: { kv_tokens: 512, seqs: 2 }
  bob:
    api_keys: [ { sha256: "2222222222222222222222222222222222222222222222222222222222222222" } ]
    pool: acme
    weight: 3
    prefix_cache: shared:g1
    zero_kv_on_free: true
    reserved: { kv_tokens: 1024, seqs: 1 }
)";

TEST(PoolsPolicyTest, UnknownPoolIsRejected) {
  auto policy = ParseTenantPolicy(kTenants, "tenants.yaml");
  ASSERT_TRUE(policy.ok()) << policy.status().ToString();
  auto only_shared = Parse("engine: { kv_cache_tokens: 4096 }\n");
  ASSERT_TRUE(only_shared.ok());
  Status s = CheckPolicyFitsPools(**policy, *only_shared);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.message(), ": tenant \"bob\" names unknown pool \"acme\" (pools: shared)");
  auto with_acme = Parse("engine: { kv_cache_tokens: 4096 }\npools: { acme: {} }\n");
  ASSERT_TRUE(with_acme.ok());
  EXPECT_TRUE(CheckPolicyFitsPools(**policy, *with_acme).ok());
}

TEST(PoolsPolicyTest, ReservationsCountPerPool) {
  auto policy = ParseTenantPolicy(kTenants, "tenants.yaml");
  ASSERT_TRUE(policy.ok());
  // bob's 1024 reserved tokens count against acme only: the shared pool holds alice's 512.
  auto cfg = Parse("engine: { kv_cache_tokens: 600 }\npools: { acme: { engine: { kv_cache_tokens: 1000 } } }\n");
  ASSERT_TRUE(cfg.ok());
  EXPECT_EQ(CheckPolicyFitsPools(**policy, *cfg).message(),
            ": reserved.kv_tokens of pool \"acme\" total 1024 exceeds its kv_cache_tokens 1000");
  auto seqs = Parse("engine: { kv_cache_tokens: 4096, max_seqs: 1 }\npools: { acme: { engine: { max_seqs: 4 } } }\n");
  ASSERT_TRUE(seqs.ok());
  EXPECT_EQ(CheckPolicyFitsPools(**policy, *seqs).message(),
            ": reserved.seqs of pool \"shared\" total 2 exceeds its max_seqs 1");
}

TEST(PoolsPolicyTest, TenantLimitsCarryThePolicy) {
  auto policy = ParseTenantPolicy(kTenants, "tenants.yaml");
  ASSERT_TRUE(policy.ok());
  const TenantLimits l = TenantLimitsOf(*(*policy)->Find("bob"));
  EXPECT_EQ(l.weight, 3.0);
  EXPECT_EQ(l.prefix_cache, PrefixCacheMode::kShared);
  EXPECT_EQ(l.prefix_cache_group, "g1");
  EXPECT_TRUE(l.zero_kv_on_free);
  EXPECT_EQ(l.reserved_kv_tokens, 1024);
  EXPECT_EQ(l.reserved_seqs, 1);
}

}  // namespace
}  // namespace llmux

namespace llmux {
namespace {

TEST(PoolsConfigTest, RestartBackoffAndMaxDown) {
  auto cfg = Parse(R"(model: { path: m }
pools:
  acme: { isolation: process, restart_backoff: 3s, max_down: 20s }
)");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  const PoolSection* acme = FindPool(*cfg, "acme");
  ASSERT_NE(acme, nullptr);
  EXPECT_EQ(acme->restart_backoff, Millis(3000));
  EXPECT_EQ(acme->max_down, Millis(20000));
  EXPECT_EQ(FindPool(*cfg, "shared")->restart_backoff, Millis(500));
  EXPECT_EQ(FindPool(*cfg, "shared")->max_down, Millis(60000));
  auto bad = Parse("model: { path: m }\npools:\n  acme: { restart_backoff: 1ms, max_down: 10ms }\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(),
            "llmux.yaml:3:28: pools.acme.restart_backoff: must be between 10ms and 10m\n"
            "llmux.yaml:3:43: pools.acme.max_down: must be at least 1s");
}

// A wrong model.path says what is wrong and where the path was set, before anything tries to
// read a tokenizer.json from it.
TEST(PoolsConfigTest, ModelFolderErrorsNameTheKeyAndItsOrigin) {
  const std::filesystem::path dir =
      std::filesystem::path(::testing::TempDir()) / "llmux_model_folder_test";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir / "empty");
  std::ofstream(dir / "file.txt") << "x";
  std::ofstream(dir / "model.yaml")
      << "tenants_file: t.yaml\nmodel:\n  path: " << (dir / "missing").string() << "\n";
  auto cfg = LoadServerConfig(dir / "model.yaml");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  const ModelSection& m = cfg->model;
  EXPECT_EQ(m.path_origin, (dir / "model.yaml").string() + ":3:9");
  Status missing = CheckModelFolder(m);
  EXPECT_EQ(missing.code(), StatusCode::kNotFound);
  EXPECT_EQ(missing.message(), "model.path (" + m.path_origin + "): the model folder " +
                                   (dir / "missing").string() + " does not exist");
  ModelSection file;
  file.path = dir / "file.txt";
  file.path_origin = "--model";
  EXPECT_EQ(CheckModelFolder(file).message(),
            "model.path (--model): " + (dir / "file.txt").string() +
                " is not a folder; model.path names a Hugging Face model folder");
  ModelSection empty;
  empty.path = dir / "empty";
  EXPECT_EQ(CheckModelFolder(empty).message(),
            "model.path: " + (dir / "empty").string() +
                " is not a model folder: it has no config.json (a Hugging Face model folder "
                "holds config.json, model.safetensors and tokenizer.json)");
  std::ofstream(dir / "empty" / "config.json") << "{}";
  EXPECT_TRUE(CheckModelFolder(empty).ok());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace llmux
