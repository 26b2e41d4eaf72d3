#include "llmux/tenant_policy.h"

#include <gtest/gtest.h>

namespace llmux {
namespace {

std::string Hash(const std::string& key) { return KeyHashHex(HashApiKey(key)); }

std::string Error(const std::string& text) {
  auto p = ParseTenantPolicy(text, "tenants.yaml");
  return p.ok() ? "" : p.status().message();
}

std::shared_ptr<const TenantPolicy> Parse(const std::string& text) {
  auto p = ParseTenantPolicy(text, "tenants.yaml");
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return p.ok() ? *p : nullptr;
}

TEST(TenantPolicyTest, DefaultsForEveryOptionalKey) {
  auto p = Parse("tenants:\n  acme: {}\n");
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(p->lanes.size(), 1u);
  EXPECT_EQ(p->lanes[0].name, "standard");
  EXPECT_EQ(p->lanes[0].max_wait, Millis(0));
  const TenantConfig* t = p->Find("acme");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->name, "acme");
  EXPECT_TRUE(t->api_keys.empty());
  EXPECT_EQ(t->lane, "standard");
  EXPECT_EQ(t->lane_index, 0);
  EXPECT_EQ(t->weight, 1);
  EXPECT_EQ(t->max_inflight_tokens, 32768);
  EXPECT_EQ(t->max_queued_requests, 64);
  EXPECT_EQ(t->max_queue_wait, Millis(30000));
  EXPECT_EQ(t->max_tokens_per_request, std::nullopt);
  EXPECT_EQ(t->max_prompt_tokens, std::nullopt);
  EXPECT_EQ(t->rate_limit.requests_per_minute, 0);
  EXPECT_EQ(t->rate_limit.tokens_per_minute, 0);
  EXPECT_EQ(t->reserved.kv_tokens, 0);
  EXPECT_EQ(t->reserved.seqs, 0);
  EXPECT_EQ(t->prefix_cache.mode, PrefixCachePolicy::Mode::kPrivate);
  EXPECT_FALSE(t->zero_kv_on_free);
  EXPECT_EQ(t->models, std::vector<std::string>{"*"});
  EXPECT_FALSE(t->log_prompts);
  EXPECT_EQ(t->pool, "shared");
  EXPECT_EQ(t->prices.input_nano_per_mtok, 0);
  EXPECT_EQ(t->prices.output_nano_per_mtok, 0);
  EXPECT_EQ(t->prices.cached_nano_per_mtok, 0);
  EXPECT_FALSE(t->quota.has_value());
  EXPECT_EQ(p->Find("nobody"), nullptr);
}

TEST(TenantPolicyTest, ReadsEveryKey) {
  const std::string text = R"(
lanes: [ { name: premium }, { name: standard }, { name: batch, max_wait: 60s } ]
tenants:
  acme:
    api_keys: [ { sha256: )" +
                           Hash("k1") + R"( }, { sha256: )" + Hash("k2") + R"( } ]
    lane: premium
    weight: 2
    max_inflight_tokens: 32768
    max_queued_requests: 0
    max_queue_wait: 250ms
    max_tokens_per_request: 4096
    max_prompt_tokens: 1024
    rate_limit: { requests_per_minute: 600, tokens_per_minute: 200000 }
    reserved: { kv_tokens: 8192, seqs: 4 }
    prefix_cache: shared:team-a
    zero_kv_on_free: true
    models: ["llama-*", "qwen"]
    log_prompts: true
    pool: dedicated-1
    prices: { input_per_mtok: 0.20, output_per_mtok: 0.60, cached_per_mtok: 0.05 }
    quota: { tokens_per_day: 1000000, spend_per_month: 50.00 }
  bulk: { lane: batch, prefix_cache: "off", prices: { input_per_mtok: 1.5 } }
)";
  auto p = Parse(text);
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(p->lanes.size(), 3u);
  EXPECT_EQ(p->lanes[2].name, "batch");
  EXPECT_EQ(p->lanes[2].max_wait, Millis(60000));
  const TenantConfig& t = *p->Find("acme");
  ASSERT_EQ(t.api_keys.size(), 2u);
  EXPECT_EQ(t.api_keys[1], HashApiKey("k2"));
  EXPECT_EQ(t.lane, "premium");
  EXPECT_EQ(t.lane_index, 0);
  EXPECT_EQ(t.weight, 2);
  EXPECT_EQ(t.max_inflight_tokens, 32768);
  EXPECT_EQ(t.max_queued_requests, 0);
  EXPECT_EQ(t.max_queue_wait, Millis(250));
  EXPECT_EQ(t.max_tokens_per_request, 4096);
  EXPECT_EQ(t.max_prompt_tokens, 1024);
  EXPECT_EQ(t.rate_limit.requests_per_minute, 600);
  EXPECT_EQ(t.rate_limit.tokens_per_minute, 200000);
  EXPECT_EQ(t.reserved.kv_tokens, 8192);
  EXPECT_EQ(t.reserved.seqs, 4);
  EXPECT_EQ(t.prefix_cache.mode, PrefixCachePolicy::Mode::kShared);
  EXPECT_EQ(t.prefix_cache.group, "team-a");
  EXPECT_TRUE(t.zero_kv_on_free);
  EXPECT_EQ(t.models, (std::vector<std::string>{"llama-*", "qwen"}));
  EXPECT_TRUE(t.log_prompts);
  EXPECT_EQ(t.pool, "dedicated-1");
  EXPECT_EQ(t.prices.input_nano_per_mtok, 200000000);  // 200 nano per token
  EXPECT_EQ(t.prices.output_nano_per_mtok, 600000000);
  EXPECT_EQ(t.prices.cached_nano_per_mtok, 50000000);
  ASSERT_TRUE(t.quota.has_value());
  EXPECT_EQ(t.quota->tokens_per_day, 1000000);
  EXPECT_EQ(t.quota->spend_per_month_nano, 50000000000);
  const TenantConfig& bulk = *p->Find("bulk");
  EXPECT_EQ(bulk.lane_index, 2);
  EXPECT_EQ(bulk.prefix_cache.mode, PrefixCachePolicy::Mode::kOff);
  EXPECT_EQ(bulk.prices.input_nano_per_mtok, 1500000000);
  EXPECT_EQ(bulk.prices.cached_nano_per_mtok, 1500000000);  // defaults to the input price
}

TEST(TenantPolicyTest, DefaultLaneIsTheLowest) {
  auto p = Parse("lanes: [{name: a}, {name: b}]\ntenants: {x: {}}\n");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->Find("x")->lane, "b");
  EXPECT_EQ(p->Find("x")->lane_index, 1);
}

TEST(TenantPolicyTest, LaneOrderIsFairShareUnlessArrival) {
  auto p = Parse("lanes: [{name: a, order: arrival}, {name: b, order: fair_share}, {name: c}]\n"
                 "tenants: {x: {}}\n");
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(p->lanes.size(), 3u);
  EXPECT_TRUE(p->lanes[0].arrival_order);
  EXPECT_FALSE(p->lanes[1].arrival_order);
  EXPECT_FALSE(p->lanes[2].arrival_order);
  EXPECT_EQ(Error("lanes: [{name: a, order: lifo}]\n"),
            "tenants.yaml:1:26: lanes[0].order: expected \"fair_share\" or \"arrival\", got \"lifo\"");
}

TEST(TenantPolicyTest, UnknownLane) {
  EXPECT_EQ(Error("lanes: [{name: premium}, {name: batch}]\ntenants:\n  acme:\n    lane: gold\n"),
            "tenants.yaml:4:11: tenants.acme.lane: unknown lane \"gold\" (lanes: premium, batch)");
}

TEST(TenantPolicyTest, ServiceTiersMapToLanesWithOptionalPrices) {
  auto p = Parse(R"(
lanes: [ { name: premium }, { name: standard }, { name: batch } ]
tenants:
  acme:
    lane: standard
    prices: { input_per_mtok: 2, output_per_mtok: 4 }
    service_tiers:
      priority: premium
      flex: { lane: batch, prices: { input_per_mtok: 0.5, output_per_mtok: 1 } }
  plain: {}
)");
  ASSERT_NE(p, nullptr);
  const TenantConfig* t = p->Find("acme");
  ASSERT_EQ(t->service_tiers.size(), 2u);
  const ServiceTier& prio = t->service_tiers.at("priority");
  EXPECT_EQ(prio.lane, "premium");
  EXPECT_EQ(prio.lane_index, 0);
  EXPECT_FALSE(prio.prices.has_value());
  const ServiceTier& flex = t->service_tiers.at("flex");
  EXPECT_EQ(flex.lane, "batch");
  EXPECT_EQ(flex.lane_index, 2);
  ASSERT_TRUE(flex.prices.has_value());
  EXPECT_EQ(flex.prices->input_nano_per_mtok, 500000000);
  EXPECT_EQ(flex.prices->output_nano_per_mtok, 1000000000);
  EXPECT_EQ(flex.prices->cached_nano_per_mtok, 500000000);
  EXPECT_TRUE(p->Find("plain")->service_tiers.empty());
}

TEST(TenantPolicyTest, ServiceTierErrors) {
  const std::string lanes = "lanes: [ { name: premium }, { name: batch } ]\ntenants:\n  acme:\n";
  EXPECT_NE(Error(lanes + "    service_tiers: { gold: premium }\n").find("unknown service tier \"gold\""),
            std::string::npos)
      << Error(lanes + "    service_tiers: { gold: premium }\n");
  EXPECT_NE(Error(lanes + "    service_tiers: { priority: fast }\n").find("unknown lane \"fast\""),
            std::string::npos);
  EXPECT_NE(Error(lanes + "    service_tiers: { flex: { prices: {} } }\n").find("missing required key \"lane\""),
            std::string::npos);
  EXPECT_NE(Error(lanes + "    service_tiers: { flex: { lane: batch, speed: 2 } }\n").find("speed"),
            std::string::npos);
}

TEST(TenantPolicyTest, DuplicateKeyHashAcrossTenants) {
  const std::string h = Hash("shared-key");
  EXPECT_EQ(Error("tenants:\n  a:\n    api_keys: [{sha256: " + h + "}]\n  b:\n    api_keys:\n" +
                  "      - sha256: " + h + "\n"),
            "tenants.yaml:6:17: tenants.b.api_keys[0].sha256: key hash already used by tenant "
            "\"a\"");
  EXPECT_EQ(Error("tenants:\n  a:\n    api_keys: [{sha256: " + h + "}, {sha256: " + h + "}]\n"),
            "tenants.yaml:3:101: tenants.a.api_keys[1].sha256: duplicate key hash");
}

TEST(TenantPolicyTest, MalformedSha256) {
  EXPECT_EQ(Error("tenants:\n  a:\n    api_keys: [{sha256: " + Hash("k").substr(1) + "}]\n"),
            "tenants.yaml:3:25: tenants.a.api_keys[0].sha256: expected a SHA-256 as 64 hex "
            "digits, got 63 characters");
  EXPECT_EQ(Error("tenants:\n  a:\n    api_keys: [{sha256: " + std::string(64, 'z') + "}]\n"),
            "tenants.yaml:3:25: tenants.a.api_keys[0].sha256: expected a SHA-256 as 64 hex "
            "digits, found a non-hex character");
  EXPECT_EQ(Error("tenants:\n  a:\n    api_keys: [sk-plaintext]\n"),
            "tenants.yaml:3:16: tenants.a.api_keys[0]: expected a map, got a scalar\n"
            "tenants.yaml:3:16: tenants.a.api_keys[0]: missing required key \"sha256\"");
}

TEST(TenantPolicyTest, UnknownKeysAtEveryLevel) {
  EXPECT_EQ(Error("tenants:\n  a:\n    rate_limit: {requests_per_min: 5}\n"),
            "tenants.yaml:3:18: tenants.a.rate_limit.requests_per_min: unknown key (did you mean \"requests_per_minute\"?)");
  EXPECT_EQ(Error("tenants:\n  a:\n    max_inflight: 5\n"),
            "tenants.yaml:3:5: tenants.a.max_inflight: unknown key");
  EXPECT_EQ(Error("lanes: [{name: a, max_age: 5s}]\n"),
            "tenants.yaml:1:19: lanes[0].max_age: unknown key");
  EXPECT_EQ(Error("tenant:\n  a: {}\n"), "tenants.yaml:1:1: tenant: unknown key (did you mean \"tenants\"?)");
  EXPECT_EQ(Error("tenants: {a: {prices: {input: 1}}}\n"),
            "tenants.yaml:1:24: tenants.a.prices.input: unknown key");
  EXPECT_EQ(Error("tenants: {a: {quota: {tokens: 1}}}\n"),
            "tenants.yaml:1:23: tenants.a.quota.tokens: unknown key");
}

TEST(TenantPolicyTest, WrongTypesAndNegativeNumbers) {
  EXPECT_EQ(Error("tenants:\n  a:\n    weight: 1.5\n"),
            "tenants.yaml:3:13: tenants.a.weight: expected an integer, got \"1.5\"");
  EXPECT_EQ(Error("tenants:\n  a:\n    max_inflight_tokens: -5\n"),
            "tenants.yaml:3:26: tenants.a.max_inflight_tokens: must be >= 1, got -5");
  EXPECT_EQ(Error("tenants:\n  a:\n    reserved: {kv_tokens: -1}\n"),
            "tenants.yaml:3:27: tenants.a.reserved.kv_tokens: must be >= 0, got -1");
  EXPECT_EQ(Error("tenants:\n  a:\n    zero_kv_on_free: yes\n"),
            "tenants.yaml:3:22: tenants.a.zero_kv_on_free: expected true or false, got \"yes\"");
  EXPECT_EQ(Error("tenants:\n  a:\n    log_prompts: \"true\"\n"),
            "tenants.yaml:3:18: tenants.a.log_prompts: expected true or false, got a quoted "
            "string \"true\"");
  EXPECT_EQ(Error("tenants:\n  a:\n    models: \"*\"\n"),
            "tenants.yaml:3:13: tenants.a.models: expected a sequence, got a scalar");
  EXPECT_EQ(Error("tenants:\n  a:\n    models: []\n"),
            "tenants.yaml:3:13: tenants.a.models: must list at least one model (\"*\" allows "
            "any)");
  EXPECT_EQ(Error("tenants: [a, b]\n"),
            "tenants.yaml:1:10: tenants: expected a map, got a sequence");
  EXPECT_EQ(Error("tenants:\n  a:\n    max_queue_wait: 30\n"),
            "tenants.yaml:3:21: tenants.a.max_queue_wait: invalid duration \"30\": needs a unit "
            "(ms, s, m, h), e.g. \"30s\"");
}

TEST(TenantPolicyTest, PricesParseExactly) {
  auto p = Parse(
      "tenants:\n  a:\n    prices: {input_per_mtok: 0.000001, output_per_mtok: 123.456789012,"
      " cached_per_mtok: \"0.1\"}\n    quota: {spend_per_month: 0.000000001}\n");
  ASSERT_NE(p, nullptr);
  const TenantConfig& t = *p->Find("a");
  EXPECT_EQ(t.prices.input_nano_per_mtok, 1000);
  EXPECT_EQ(t.prices.output_nano_per_mtok, 123456789012);
  EXPECT_EQ(t.prices.cached_nano_per_mtok, 100000000);
  EXPECT_EQ(t.quota->spend_per_month_nano, 1);
  EXPECT_EQ(t.quota->tokens_per_day, std::nullopt);
  EXPECT_EQ(Error("tenants:\n  a:\n    prices: {input_per_mtok: 0.0000000001}\n"),
            "tenants.yaml:3:30: tenants.a.prices.input_per_mtok: at most 9 decimal places, got "
            "\"0.0000000001\"");
  EXPECT_EQ(Error("tenants:\n  a:\n    prices: {input_per_mtok: -0.2}\n"),
            "tenants.yaml:3:30: tenants.a.prices.input_per_mtok: must not be negative, got "
            "\"-0.2\"");
  EXPECT_EQ(Error("tenants:\n  a:\n    prices: {input_per_mtok: 2e-7}\n"),
            "tenants.yaml:3:30: tenants.a.prices.input_per_mtok: expected a decimal number such "
            "as \"0.20\", got \"2e-7\"");
}

TEST(TenantPolicyTest, NamesAndPrefixCache) {
  EXPECT_EQ(Error("tenants:\n  bad/name: {}\n"),
            "tenants.yaml:2:13: tenants.\"bad/name\": invalid tenant name \"bad/name\" (1-64 of "
            "[A-Za-z0-9_-], starting with a letter or digit)");
  EXPECT_EQ(Error("tenants:\n  _unauthenticated: {}\n"),
            "tenants.yaml:2:21: tenants._unauthenticated: invalid tenant name "
            "\"_unauthenticated\" (1-64 of [A-Za-z0-9_-], starting with a letter or digit)");
  // Odd characters are escaped so that one error stays on one line.
  EXPECT_EQ(Error("tenants:\n  \"a\\nb\": {}\n"),
            "tenants.yaml:2:11: tenants.\"a\\x0ab\": invalid tenant name \"a\\x0ab\" (1-64 of "
            "[A-Za-z0-9_-], starting with a letter or digit)");
  EXPECT_EQ(Error("tenants:\n  a: {lane: \"x\\ty\\\"\"}\n"),
            "tenants.yaml:2:13: tenants.a.lane: unknown lane \"x\\x09y\\\"\" (lanes: standard)");
  EXPECT_EQ(Error("tenants:\n  a: {prefix_cache: shared}\n"),
            "tenants.yaml:2:21: tenants.a.prefix_cache: expected \"private\", \"off\" or "
            "\"shared:GROUP\", got \"shared\"");
  EXPECT_EQ(Error("tenants:\n  a: {pool: \"../x\"}\n"),
            "tenants.yaml:2:13: tenants.a.pool: invalid pool name \"../x\" (1-64 of "
            "[A-Za-z0-9_-], starting with a letter or digit)");
}

TEST(TenantPolicyTest, LaneErrors) {
  EXPECT_EQ(Error("lanes: []\n"), "tenants.yaml:1:8: lanes: must define at least one lane");
  EXPECT_EQ(Error("lanes: [{name: a}, {name: a}]\n"),
            "tenants.yaml:1:27: lanes[1].name: duplicate lane \"a\"");
  EXPECT_EQ(Error("lanes: [{max_wait: 5s}]\n"),
            "tenants.yaml:1:9: lanes[0]: missing required key \"name\"");
  EXPECT_EQ(Error("lanes: [{name: a, max_wait: soon}]\n"),
            "tenants.yaml:1:29: lanes[0].max_wait: invalid duration \"soon\": expected a whole "
            "number and a unit (ms, s, m, h), e.g. \"30s\"");
}

TEST(TenantPolicyTest, EmptyFileAndSyntaxErrors) {
  EXPECT_EQ(Error(""), "tenants.yaml:1:1: (document): the file is empty");
  EXPECT_EQ(Error("# only a comment\n"), "tenants.yaml:1:1: (document): the file is empty");
  EXPECT_EQ(Error("tenants:\n  a: {lane: [}\n"), "tenants.yaml:2:14: (syntax): illegal flow end");
  EXPECT_NE(Error(std::string(50, '{')), "");
}

TEST(TenantPolicyTest, RejectsDeepNesting) {
  std::string text = "tenants:\n  a:\n    models: ";
  for (int i = 0; i < 70; ++i) text += "[";
  for (int i = 0; i < 70; ++i) text += "]";
  EXPECT_EQ(Error(text + "\n"), "tenants.yaml:3:74: (document): nested deeper than 64 levels");
}

TEST(TenantPolicyTest, AnchorsAndAliasesWork) {
  const std::string text = "tenants:\n  a: &base {weight: 3, lane: standard}\n  b: *base\n";
  auto p = Parse(text);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->Find("b")->weight, 3);
}

TEST(TenantPolicyTest, ModelAllowedGlobs) {
  TenantConfig t;
  t.models = {"llama-*", "qwen2-7b", "*-instruct"};
  EXPECT_TRUE(ModelAllowed(t, "llama-3.2-1b"));
  EXPECT_TRUE(ModelAllowed(t, "llama-"));
  EXPECT_TRUE(ModelAllowed(t, "qwen2-7b"));
  EXPECT_TRUE(ModelAllowed(t, "mistral-instruct"));
  EXPECT_FALSE(ModelAllowed(t, "qwen2-7b-chat"));
  EXPECT_FALSE(ModelAllowed(t, "tinyllama"));
  t.models = {"*"};
  EXPECT_TRUE(ModelAllowed(t, ""));
  EXPECT_TRUE(ModelAllowed(t, "anything"));
  t.models = {"a*b*c"};
  EXPECT_TRUE(ModelAllowed(t, "aXbYc"));
  EXPECT_TRUE(ModelAllowed(t, "abbbc"));
  EXPECT_FALSE(ModelAllowed(t, "acb"));
}

TEST(TenantPolicyTest, ReservationsAgainstEngineCapacity) {
  auto p = Parse(
      "tenants:\n"
      "  a: {reserved: {kv_tokens: 40000, seqs: 30}}\n"
      "  b: {reserved: {kv_tokens: 30000, seqs: 30}}\n"
      "  c: {reserved: {kv_tokens: 50000, seqs: 50}, pool: own}\n");
  ASSERT_NE(p, nullptr);
  const Reservation shared = TotalReserved(*p);
  EXPECT_EQ(shared.kv_tokens, 70000);
  EXPECT_EQ(shared.seqs, 60);
  EXPECT_EQ(TotalReserved(*p, "own").kv_tokens, 50000);
  EngineSection engine;
  engine.kv_cache_tokens = 65536;
  engine.max_seqs = 64;
  EXPECT_EQ(CheckPolicyFitsEngine(*p, engine).message(),
            ": reserved.kv_tokens of the shared pool total 70000 (a 40000, b 30000) exceeds "
            "engine.kv_cache_tokens 65536");
  engine.kv_cache_tokens = 70000;
  EXPECT_TRUE(CheckPolicyFitsEngine(*p, engine).ok());
  engine.max_seqs = 59;
  EXPECT_EQ(CheckPolicyFitsEngine(*p, engine).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(CheckPolicyFitsEngine(*p, engine).message(),
            ": reserved.seqs of the shared pool total 60 (a 30, b 30) exceeds engine.max_seqs "
            "59");
}

TEST(TenantPolicyTest, AdminKeyReuse) {
  auto p = Parse("tenants:\n  a: {api_keys: [{sha256: " + Hash("k") + "}]}\n");
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(CheckNoAdminKeyReuse(*p, {AdminKey{HashApiKey("admin")}}).ok());
  EXPECT_EQ(CheckNoAdminKeyReuse(*p, {AdminKey{HashApiKey("k")}}).message(),
            ": tenant \"a\" uses an admin key (server.admin_api_keys)");
}

}  // namespace
}  // namespace llmux
