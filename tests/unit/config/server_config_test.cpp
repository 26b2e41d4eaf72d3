#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "llmux/config.h"

namespace llmux {
namespace {

// Parses `text` as "llmux.yaml" and returns the error message ("" when it parsed).
std::string Error(const std::string& text) {
  auto cfg = ParseServerConfig(text, "llmux.yaml", "/etc/llmux");
  return cfg.ok() ? "" : cfg.status().message();
}

TEST(ServerConfigTest, EmptyFileGivesDocumentedDefaults) {
  auto cfg = ParseServerConfig("", "llmux.yaml", "/etc/llmux");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_EQ(cfg->server.listen, "127.0.0.1:8080");
  EXPECT_EQ(cfg->server.io_threads, 2);
  EXPECT_EQ(cfg->server.planning_threads, 1);
  EXPECT_EQ(cfg->server.planning_queue, 256);
  EXPECT_EQ(cfg->server.planning_oldest_every, 8);
  EXPECT_EQ(cfg->server.max_body_bytes, 4194304);
  EXPECT_EQ(cfg->server.max_header_bytes, 16384);
  EXPECT_EQ(cfg->server.read_timeout, Millis(30000));
  EXPECT_EQ(cfg->server.idle_timeout, Millis(60000));
  EXPECT_EQ(cfg->server.drain_timeout, Millis(30000));
  EXPECT_EQ(cfg->server.max_connections, 1024);
  EXPECT_EQ(cfg->server.max_n, 8);
  EXPECT_EQ(cfg->server.max_stop_strings, 8);
  EXPECT_EQ(cfg->server.metrics_listen, "");
  EXPECT_EQ(cfg->server.health_stall_timeout, Millis(30000));
  EXPECT_TRUE(cfg->server.admin_api_keys.empty());
  EXPECT_EQ(cfg->model.path, "");
  EXPECT_EQ(cfg->model.name, "");
  EXPECT_EQ(cfg->model.max_model_len, 0);
  EXPECT_FALSE(cfg->model.quantize_q8_0);
  EXPECT_EQ(cfg->model.chat_template.kind, ChatTemplateSource::Kind::kModel);
  EXPECT_EQ(cfg->engine.backend, BackendKind::kCpu);
  EXPECT_EQ(cfg->engine.threads, 2);
  EXPECT_EQ(cfg->engine.devices, std::vector<int>{0});
  EXPECT_EQ(cfg->engine.kv_cache_tokens, 65536);
  EXPECT_EQ(cfg->engine.block_size, 16);
  EXPECT_EQ(cfg->engine.max_batched_tokens, 2048);
  EXPECT_EQ(cfg->engine.max_seqs, 64);
  EXPECT_EQ(cfg->engine.max_step_ms, 0);
  EXPECT_TRUE(cfg->engine.yield_to_higher_lane);
  EXPECT_TRUE(cfg->engine.lane_exclusive_prefill);
  EXPECT_TRUE(cfg->engine.yield_to_underserved);
  EXPECT_EQ(cfg->engine.batching, EngineBatching::kContinuous);
  EXPECT_EQ(cfg->engine.max_queue_wait, Millis(30000));
  EXPECT_EQ(cfg->engine.prefill_weight, 1);
  EXPECT_EQ(cfg->engine.decode_weight, 2);
  EXPECT_EQ(cfg->telemetry.log_file, "");
  EXPECT_EQ(cfg->telemetry.log_max_bytes, 104857600);
  EXPECT_EQ(cfg->telemetry.log_max_files, 5);
  EXPECT_EQ(cfg->telemetry.per_tenant_log_dir, "");
  EXPECT_EQ(cfg->telemetry.usage_db, "/etc/llmux/llmux-usage.db");
  EXPECT_EQ(cfg->telemetry.usage_spool, "/etc/llmux/llmux-usage-spool.db");
  EXPECT_EQ(cfg->telemetry.ledger_sync, LedgerSync::kFull);
  EXPECT_EQ(cfg->tenants_file, "/etc/llmux/tenants.yaml");
}

TEST(ServerConfigTest, SharedPostgresLedgerSpoolAndSync) {
  auto cfg = ParseServerConfig(
      "telemetry: {usage_db: \"postgresql://llmux@db:5432/usage?sslmode=require\", "
      "usage_spool: spool/u.db, ledger_sync: normal}",
      "x", "/etc/llmux");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_EQ(cfg->telemetry.usage_db.string(), "postgresql://llmux@db:5432/usage?sslmode=require");
  EXPECT_EQ(cfg->telemetry.usage_spool, "/etc/llmux/spool/u.db");
  EXPECT_EQ(cfg->telemetry.ledger_sync, LedgerSync::kNormal);
  EXPECT_EQ(Error("telemetry: {ledger_sync: always}"),
            "llmux.yaml:1:26: telemetry.ledger_sync: expected \"full\" or \"normal\", got "
            "\"always\"");
  EXPECT_EQ(Error("telemetry: {usage_db: \"mysql://db/usage\"}"),
            "llmux.yaml:1:23: telemetry.usage_db: expected a SQLite file or a postgresql:// URI, "
            "got \"mysql://db/usage\"");
}

TEST(ServerConfigTest, ReadsEveryKey) {
  const std::string text = R"(
server:
  listen: "[::1]:9000"
  io_threads: 4
  planning_threads: 3
  planning_queue: 17
  planning_oldest_every: 0
  max_body_bytes: 1000
  max_header_bytes: 2000
  read_timeout: 250ms
  idle_timeout: 5m
  drain_timeout: 1h
  max_connections: 10
  max_n: 2
  max_stop_strings: 0
  metrics_listen: "0.0.0.0:9090"
  health_stall_timeout: 10s
  admin_api_keys: [ { sha256: ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad } ]
model: { path: models/llama/, name: "", max_model_len: 2048, chat_template: "file:t.jinja",
         quantize: q8_0 }
engine: { backend: cuda, threads: 8, devices: [1, 0], kv_cache_tokens: 1024, block_size: 32,
          max_batched_tokens: 512, max_seqs: 8, batching: static, max_queue_wait: 2s,
          prefill_weight: 0, decode_weight: 3 }
telemetry: { log_file: /var/log/llmux.log, log_max_bytes: 4096, log_max_files: 1,
             per_tenant_log_dir: logs, usage_db: ../usage.db }
tenants_file: /srv/tenants.yaml
)";
  auto cfg = ParseServerConfig(text, "llmux.yaml", "/etc/llmux");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_EQ(cfg->server.listen, "[::1]:9000");
  EXPECT_EQ(cfg->server.io_threads, 4);
  EXPECT_EQ(cfg->server.planning_threads, 3);
  EXPECT_EQ(cfg->server.planning_queue, 17);
  EXPECT_EQ(cfg->server.planning_oldest_every, 0);
  EXPECT_EQ(cfg->server.max_body_bytes, 1000);
  EXPECT_EQ(cfg->server.max_header_bytes, 2000);
  EXPECT_EQ(cfg->server.read_timeout, Millis(250));
  EXPECT_EQ(cfg->server.idle_timeout, Millis(300000));
  EXPECT_EQ(cfg->server.drain_timeout, Millis(3600000));
  EXPECT_EQ(cfg->server.max_connections, 10);
  EXPECT_EQ(cfg->server.max_n, 2);
  EXPECT_EQ(cfg->server.max_stop_strings, 0);
  EXPECT_EQ(cfg->server.metrics_listen, "0.0.0.0:9090");
  EXPECT_EQ(cfg->server.health_stall_timeout, Millis(10000));
  ASSERT_EQ(cfg->server.admin_api_keys.size(), 1u);
  EXPECT_EQ(cfg->server.admin_api_keys[0].sha256, HashApiKey("abc"));
  EXPECT_EQ(cfg->model.path, "/etc/llmux/models/llama/");
  EXPECT_EQ(cfg->model.name, "llama");
  EXPECT_EQ(cfg->model.max_model_len, 2048);
  EXPECT_TRUE(cfg->model.quantize_q8_0);
  EXPECT_EQ(cfg->model.chat_template.kind, ChatTemplateSource::Kind::kFile);
  EXPECT_EQ(cfg->model.chat_template.value, "/etc/llmux/t.jinja");
  EXPECT_EQ(cfg->engine.backend, BackendKind::kCuda);
  EXPECT_EQ(cfg->engine.threads, 8);
  EXPECT_EQ(cfg->engine.devices, (std::vector<int>{1, 0}));
  EXPECT_EQ(cfg->engine.kv_cache_tokens, 1024);
  EXPECT_EQ(cfg->engine.block_size, 32);
  EXPECT_EQ(cfg->engine.max_batched_tokens, 512);
  EXPECT_EQ(cfg->engine.max_seqs, 8);
  EXPECT_EQ(cfg->engine.batching, EngineBatching::kStatic);
  EXPECT_EQ(cfg->engine.max_queue_wait, Millis(2000));
  EXPECT_EQ(cfg->engine.prefill_weight, 0);
  EXPECT_EQ(cfg->engine.decode_weight, 3);
  EXPECT_EQ(cfg->telemetry.log_file, "/var/log/llmux.log");
  EXPECT_EQ(cfg->telemetry.log_max_bytes, 4096);
  EXPECT_EQ(cfg->telemetry.log_max_files, 1);
  EXPECT_EQ(cfg->telemetry.per_tenant_log_dir, "/etc/llmux/logs");
  EXPECT_EQ(cfg->telemetry.usage_db, "/etc/usage.db");
  EXPECT_EQ(cfg->tenants_file, "/srv/tenants.yaml");
}

TEST(ServerConfigTest, ChatTemplateForms) {
  auto builtin = ParseServerConfig("model: {chat_template: \"builtin:chatml\"}", "x", "/");
  ASSERT_TRUE(builtin.ok());
  EXPECT_EQ(builtin->model.chat_template.kind, ChatTemplateSource::Kind::kBuiltin);
  EXPECT_EQ(builtin->model.chat_template.value, "chatml");
  EXPECT_EQ(Error("model:\n  chat_template: chatml\n"),
            "llmux.yaml:2:18: model.chat_template: expected \"\" (the model's own), "
            "\"builtin:NAME\" or \"file:PATH\", got \"chatml\"");
  EXPECT_NE(Error("model: {chat_template: \"builtin:\"}"), "");
  EXPECT_EQ(Error("model: {quantize: q4_0}"),
            "llmux.yaml:1:19: model.quantize: expected \"none\" or \"q8_0\", got \"q4_0\"");
  EXPECT_NE(Error("model: {chat_template: \"file:\"}"), "");
}

TEST(ServerConfigTest, LaneIsolationKeys) {
  auto cfg = ParseServerConfig("engine: {yield_to_higher_lane: false, lane_exclusive_prefill: false}\n",
                               "llmux.yaml", "/etc/llmux");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_FALSE(cfg->engine.yield_to_higher_lane);
  EXPECT_FALSE(cfg->engine.lane_exclusive_prefill);
  cfg = ParseServerConfig("engine: {yield_to_higher_lane: true}\n", "llmux.yaml", "/etc/llmux");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_TRUE(cfg->engine.yield_to_higher_lane);
  EXPECT_TRUE(cfg->engine.lane_exclusive_prefill);
  EXPECT_EQ(Error("engine:\n  yield_to_higher_lane: sometimes\n"),
            "llmux.yaml:2:25: engine.yield_to_higher_lane: expected true or false, got "
            "\"sometimes\"");
  EXPECT_EQ(Error("engine:\n  lane_exclusive_prefill: 1\n"),
            "llmux.yaml:2:27: engine.lane_exclusive_prefill: expected true or false, got \"1\"");
  // Fair share within a lane drives the same two mechanisms (one key for both).
  cfg = ParseServerConfig("engine: {yield_to_underserved: false}\n", "llmux.yaml", "/etc/llmux");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_FALSE(cfg->engine.yield_to_underserved);
  EXPECT_TRUE(cfg->engine.yield_to_higher_lane);
  EXPECT_TRUE(cfg->engine.lane_exclusive_prefill);
  EXPECT_EQ(Error("engine:\n  yield_to_underserved: maybe\n"),
            "llmux.yaml:2:25: engine.yield_to_underserved: expected true or false, got \"maybe\"");
}

TEST(ServerConfigTest, UnknownKeyIsAnError) {
  EXPECT_EQ(Error("server:\n  listen: \"127.0.0.1:80\"\n  io_thread: 4\n"),
            "llmux.yaml:3:3: server.io_thread: unknown key (did you mean \"io_threads\"?)");
  EXPECT_EQ(Error("servr: {}\n"), "llmux.yaml:1:1: servr: unknown key (did you mean \"server\"?)");
  EXPECT_EQ(Error("engine: {backend: cpu, thread: 2}\n"),
            "llmux.yaml:1:24: engine.thread: unknown key (did you mean \"threads\"?)");
}

TEST(ServerConfigTest, WrongTypes) {
  EXPECT_EQ(Error("engine:\n  max_seqs: many\n"),
            "llmux.yaml:2:13: engine.max_seqs: expected an integer, got \"many\"");
  EXPECT_EQ(Error("engine:\n  max_seqs: \"64\"\n"),
            "llmux.yaml:2:13: engine.max_seqs: expected an integer, got a quoted string \"64\"");
  EXPECT_EQ(Error("engine:\n  max_seqs: 1.5\n"),
            "llmux.yaml:2:13: engine.max_seqs: expected an integer, got \"1.5\"");
  EXPECT_EQ(Error("server:\n  listen: [a]\n"),
            "llmux.yaml:2:11: server.listen: expected a string, got a sequence");
  EXPECT_EQ(Error("server: 5\n"), "llmux.yaml:1:9: server: expected a map, got a scalar");
  EXPECT_EQ(Error("engine: {devices: 0}\n"),
            "llmux.yaml:1:19: engine.devices: expected a sequence, got a scalar");
  EXPECT_EQ(Error("server:\n  io_threads:\n"), "llmux.yaml:2:3: server.io_threads: has no value");
  EXPECT_EQ(Error("[1, 2]\n"), "llmux.yaml:1:1: (document): expected a map, got a sequence");
}

TEST(ServerConfigTest, RangesAndNegativeNumbers) {
  EXPECT_EQ(Error("server:\n  max_body_bytes: -1\n"),
            "llmux.yaml:2:19: server.max_body_bytes: must be >= 1, got -1");
  EXPECT_EQ(Error("server: {io_threads: 0}"),
            "llmux.yaml:1:22: server.io_threads: must be >= 1, got 0");
  EXPECT_EQ(Error("server: {io_threads: 99999999999999999999}"),
            "llmux.yaml:1:22: server.io_threads: integer \"99999999999999999999\" is out of "
            "range");
  EXPECT_EQ(Error("engine: {devices: [0, -1]}"),
            "llmux.yaml:1:23: engine.devices[1]: must be >= 0, got -1");
  EXPECT_EQ(Error("engine: {devices: [0, 0]}"),
            "llmux.yaml:1:23: engine.devices[1]: duplicate device");
  EXPECT_EQ(Error("engine: {block_size: 16, kv_cache_tokens: 8}"),
            "llmux.yaml:1:43: engine.kv_cache_tokens: must hold at least one block "
            "(block_size 16)");
  EXPECT_EQ(Error("engine: {prefill_weight: 0, decode_weight: 0}"),
            "llmux.yaml:1:44: engine.decode_weight: prefill_weight and decode_weight cannot "
            "both be 0");
}

TEST(ServerConfigTest, KvDtypeAndItsBackend) {
  auto def = ParseServerConfig("", "llmux.yaml", "/etc/llmux");
  ASSERT_TRUE(def.ok());
  EXPECT_EQ(def->engine.kv_dtype, KvDType::kBackendDefault);
  EXPECT_EQ(def->engine.ResolvedKvDType(), KvDType::kF32);
  auto f16 = ParseServerConfig("engine: {kv_dtype: f16}", "llmux.yaml", "/etc/llmux");
  ASSERT_TRUE(f16.ok()) << f16.status().ToString();
  EXPECT_EQ(f16->engine.kv_dtype, KvDType::kF16);
  EXPECT_EQ(KvDTypeName(f16->engine.ResolvedKvDType()), "f16");
  auto cuda = ParseServerConfig("engine: {backend: cuda, kv_dtype: bf16}", "llmux.yaml", "/e");
  ASSERT_TRUE(cuda.ok()) << cuda.status().ToString();
  EXPECT_EQ(cuda->engine.kv_dtype, KvDType::kBF16);
  auto cuda_default = ParseServerConfig("engine: {backend: cuda}", "llmux.yaml", "/e");
  ASSERT_TRUE(cuda_default.ok());
  EXPECT_EQ(cuda_default->engine.ResolvedKvDType(), KvDType::kBF16);

  EXPECT_EQ(Error("engine: {kv_dtype: q8_0}"),
            "llmux.yaml:1:20: engine.kv_dtype: expected \"f32\", \"f16\" or \"bf16\", got "
            "\"q8_0\"");
  EXPECT_EQ(Error("engine: {kv_dtype: bf16}"),
            "llmux.yaml:1:20: engine.kv_dtype: kv_dtype bf16 is not supported by the cpu backend "
            "(f32 or f16)");
  EXPECT_EQ(Error("engine: {backend: cuda, kv_dtype: f16}"),
            "llmux.yaml:1:35: engine.kv_dtype: kv_dtype f16 is not supported by the cuda backend "
            "(its KV cache is bf16)");
  // A pool that switches to cuda under an inherited f16: the error names the pool's backend.
  EXPECT_EQ(Error("engine: {kv_dtype: f16}\npools:\n  g:\n    engine: {backend: cuda}\n"
                  "    model: {path: /m}\n"),
            "llmux.yaml:4:23: pools.g.engine.backend: kv_dtype f16 is not supported by the cuda "
            "backend (its KV cache is bf16)");
}

TEST(ServerConfigTest, CpuBf16Activations) {
  auto def = ParseServerConfig("", "llmux.yaml", "/etc/llmux");
  ASSERT_TRUE(def.ok());
  EXPECT_EQ(def->engine.cpu_bf16_activations, Bf16Activations::kBf16);
  auto f32 = ParseServerConfig("engine: {cpu_bf16_activations: f32}", "llmux.yaml", "/e");
  ASSERT_TRUE(f32.ok()) << f32.status().ToString();
  EXPECT_EQ(f32->engine.cpu_bf16_activations, Bf16Activations::kF32);
  EXPECT_EQ(Bf16ActivationsName(f32->engine.cpu_bf16_activations), "f32");
  // A pool inherits the key and may set its own.
  auto pools = ParseServerConfig(
      "engine: {cpu_bf16_activations: f32}\npools:\n  a:\n    model: {path: /m}\n  b:\n"
      "    engine: {cpu_bf16_activations: bf16}\n    model: {path: /m}\n",
      "llmux.yaml", "/e");
  ASSERT_TRUE(pools.ok()) << pools.status().ToString();
  int seen = 0;
  for (const auto& p : pools->pools) {  // "shared" and "a" inherit f32, "b" sets bf16
    EXPECT_EQ(p.engine.cpu_bf16_activations,
              p.name == "b" ? Bf16Activations::kBf16 : Bf16Activations::kF32)
        << p.name;
    seen += p.name == "a" || p.name == "b";
  }
  EXPECT_EQ(seen, 2);
  EXPECT_EQ(Error("engine: {cpu_bf16_activations: fp32}"),
            "llmux.yaml:1:32: engine.cpu_bf16_activations: expected \"bf16\" or \"f32\", got "
            "\"fp32\"");
}

TEST(ServerConfigTest, EnumsAndAddresses) {
  EXPECT_EQ(Error("engine: {backend: gpu}"),
            "llmux.yaml:1:19: engine.backend: expected \"cpu\" or \"cuda\", got \"gpu\"");
  EXPECT_EQ(Error("engine: {batching: dynamic}"),
            "llmux.yaml:1:20: engine.batching: expected \"continuous\" or \"static\", got "
            "\"dynamic\"");
  EXPECT_EQ(Error("server: {listen: \"localhost\"}"),
            "llmux.yaml:1:18: server.listen: expected \"HOST:PORT\" (e.g. \"127.0.0.1:8080\"), "
            "got \"localhost\"");
  EXPECT_EQ(Error("server: {listen: \"127.0.0.1:65536\"}"),
            "llmux.yaml:1:18: server.listen: port must be 0..65535, got \"65536\"");
  EXPECT_EQ(Error("server: {listen: \"::1:80\"}"),
            "llmux.yaml:1:18: server.listen: an IPv6 host must be in brackets (\"[::1]:8080\"), "
            "got \"::1:80\"");
  EXPECT_EQ(Error("server: {metrics_listen: \"127.0.0.1:8080\"}"),
            "llmux.yaml:1:26: server.metrics_listen: must differ from server.listen (\"\" "
            "serves /metrics there, admin key only)");
  EXPECT_EQ(Error("server: {listen: \"localhost:8080\"}"), "");
}

TEST(ServerConfigTest, DurationsMustCarryAUnit) {
  EXPECT_EQ(Error("server:\n  read_timeout: 30\n"),
            "llmux.yaml:2:17: server.read_timeout: invalid duration \"30\": needs a unit (ms, s, "
            "m, h), e.g. \"30s\"");
  EXPECT_EQ(Error("engine: {max_queue_wait: 2 days}"),
            "llmux.yaml:1:26: engine.max_queue_wait: invalid duration \"2 days\": expected a "
            "whole number and a unit (ms, s, m, h), e.g. \"30s\"");
}

TEST(ServerConfigTest, AdminKeys) {
  EXPECT_EQ(Error("server:\n  admin_api_keys: [ { sha256: abc } ]\n"),
            "llmux.yaml:2:31: server.admin_api_keys[0].sha256: expected a SHA-256 as 64 hex "
            "digits, got 3 characters");
  EXPECT_EQ(Error("server:\n  admin_api_keys: [ { sha: x } ]\n"),
            "llmux.yaml:2:21: server.admin_api_keys[0]: missing required key \"sha256\"\n"
            "llmux.yaml:2:23: server.admin_api_keys[0].sha: unknown key");
  const std::string h = KeyHashHex(HashApiKey("k"));
  EXPECT_EQ(Error("server:\n  admin_api_keys:\n    - sha256: " + h + "\n    - sha256: " + h + "\n"),
            "llmux.yaml:4:15: server.admin_api_keys[1].sha256: duplicate key hash");
}

TEST(ServerConfigTest, DuplicateKeysAndSyntaxErrors) {
  EXPECT_EQ(Error("server:\n  io_threads: 1\n  io_threads: 2\n"),
            "llmux.yaml:3:3: server.io_threads: duplicate key");
  EXPECT_EQ(Error("server: {listen: \"a:1\"\n"),
            "llmux.yaml:2:1: (syntax): end of map flow not found");
  EXPECT_EQ(Error("server:\n  listen: \"a\" b\n"),
            "llmux.yaml:2:15: (syntax): end of map not found");
  EXPECT_EQ(Error("a: 1\n---\nb: 2\n"),
            "llmux.yaml:2:1: (document): more than one YAML document in the file");
}

TEST(ServerConfigTest, ReportsEveryErrorInFileOrder) {
  EXPECT_EQ(Error("engine:\n  threads: 0\n  bogus: 1\nserver:\n  max_n: x\n"),
            "llmux.yaml:2:12: engine.threads: must be >= 1, got 0\n"
            "llmux.yaml:3:3: engine.bogus: unknown key\n"
            "llmux.yaml:5:10: server.max_n: expected an integer, got \"x\"");
}

TEST(ServerConfigTest, RejectsDeepNesting) {
  const std::string flow = "model: " + std::string(100, '[') + std::string(100, ']') + "\n";
  EXPECT_EQ(Error(flow), "llmux.yaml:1:71: (document): nested deeper than 64 levels");
  std::string block;
  for (int i = 0; i < 80; ++i) block += std::string(i, ' ') + "k:\n";
  EXPECT_EQ(Error(block), "llmux.yaml:65:65: (document): nested deeper than 64 levels");
  // yaml-cpp's own recursion would overflow long before a file this deep became a problem for
  // us; the depth check must stop it first.
  EXPECT_NE(Error("a: " + std::string(100000, '[')), "");
}

class ServerConfigFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           ("llmux_server_cfg_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
};

TEST_F(ServerConfigFileTest, RelativePathsResolveAgainstTheFilesFolder) {
  std::ofstream(dir_ / "llmux.yaml") << "tenants_file: t/tenants.yaml\nmodel: {path: m}\n";
  auto cfg = LoadServerConfig(dir_ / "llmux.yaml");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_EQ(cfg->source, dir_ / "llmux.yaml");
  EXPECT_EQ(cfg->tenants_file, dir_ / "t" / "tenants.yaml");
  EXPECT_EQ(cfg->model.path, dir_ / "m");
  EXPECT_EQ(cfg->model.name, "m");
}

TEST_F(ServerConfigFileTest, ErrorsNameThePath) {
  const std::filesystem::path path = dir_ / "llmux.yaml";
  std::ofstream(path) << "server:\n  max_n: 0\n";
  EXPECT_EQ(LoadServerConfig(path).status().message(),
            path.string() + ":2:10: server.max_n: must be >= 1, got 0");
  EXPECT_EQ(LoadServerConfig(dir_ / "missing.yaml").status().code(), StatusCode::kNotFound);
}

TEST_F(ServerConfigFileTest, RejectsHugeFile) {
  const std::filesystem::path path = dir_ / "llmux.yaml";
  {
    std::ofstream out(path);
    out << "# padding\n";
    out << std::string(kMaxConfigFileBytes, '#') << "\n";
  }
  EXPECT_EQ(LoadServerConfig(path).status().message(),
            path.string() + ": file larger than the 4194304-byte limit");
}

}  // namespace
}  // namespace llmux

namespace llmux {
namespace {

TEST(ServerConfigGatewayTest, TrustedProxiesTenantHeaderAndDrainGrace) {
  auto cfg = ParseServerConfig(
      "server:\n"
      "  trusted_proxies: [\"10.0.0.0/8\", \"2001:db8::/32\", \"127.0.0.1\"]\n"
      "  tenant_header: X-Tenant-ID\n"
      "  forwarded_header: Forwarded\n"
      "  drain_grace: 2s\n"
      "  drain_timeout: 20s\n",
      "llmux.yaml", "/etc/llmux");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  ASSERT_EQ(cfg->server.trusted_proxies.size(), 3u);
  EXPECT_EQ(cfg->server.trusted_proxies[0].ToString(), "10.0.0.0/8");
  EXPECT_EQ(cfg->server.trusted_proxies[1].ToString(), "2001:db8::/32");
  EXPECT_EQ(cfg->server.trusted_proxies[2].ToString(), "127.0.0.1/32");
  EXPECT_EQ(cfg->server.tenant_header, "X-Tenant-ID");
  EXPECT_EQ(cfg->server.forwarded_header, ServerSection::ForwardedHeader::kForwarded);
  EXPECT_EQ(cfg->server.drain_grace, Millis(2000));
  EXPECT_EQ(cfg->server.drain_timeout, Millis(20000));

  auto defaults = ParseServerConfig("", "llmux.yaml", "/etc/llmux");
  ASSERT_TRUE(defaults.ok());
  EXPECT_TRUE(defaults->server.trusted_proxies.empty());
  EXPECT_EQ(defaults->server.tenant_header, "");
  EXPECT_EQ(defaults->server.forwarded_header, ServerSection::ForwardedHeader::kXForwardedFor);
  EXPECT_EQ(defaults->server.drain_grace, Millis(5000));
  // A drain_timeout below the default grace shortens the grace rather than failing.
  auto short_drain = ParseServerConfig("server: {drain_timeout: 1s}", "llmux.yaml", "/etc/llmux");
  ASSERT_TRUE(short_drain.ok());
  EXPECT_EQ(short_drain->server.drain_grace, Millis(1000));
}

TEST(ServerConfigGatewayTest, ErrorsNameFileLineAndValue) {
  auto error = [](const std::string& text) {
    auto cfg = ParseServerConfig(text, "llmux.yaml", "/etc/llmux");
    return cfg.ok() ? std::string() : cfg.status().message();
  };
  EXPECT_EQ(error("server:\n  trusted_proxies:\n    - 10.0.0.0/8\n    - 10.0.0.1/8\n"),
            "llmux.yaml:4:7: server.trusted_proxies[1]: \"10.0.0.1/8\" has host bits set; write "
            "\"10.0.0.0/8\" (or a /32 for one host)");
  EXPECT_EQ(error("server:\n  trusted_proxies: [\"lb.internal\"]\n"),
            "llmux.yaml:2:21: server.trusted_proxies[0]: \"lb.internal\" is not an IP address or "
            "CIDR range");
  EXPECT_EQ(error("server:\n  trusted_proxies: [\"::/200\"]\n"),
            "llmux.yaml:2:21: server.trusted_proxies[0]: \"::/200\": prefix length must be 0..128");
  EXPECT_EQ(error("server:\n  tenant_header: X-Tenant-ID\n"),
            "llmux.yaml:2:18: server.tenant_header: needs server.trusted_proxies: the header is "
            "believed only from those peers");
  EXPECT_EQ(error("server:\n  trusted_proxies: [\"10.0.0.0/8\"]\n  tenant_header: \"X Tenant\"\n"),
            "llmux.yaml:3:18: server.tenant_header: expected an HTTP header name (e.g. "
            "\"X-Tenant-ID\"), got \"X Tenant\"");
  EXPECT_EQ(error("server:\n  trusted_proxies: [\"10.0.0.0/8\"]\n  tenant_header: Authorization\n"),
            "llmux.yaml:3:18: server.tenant_header: cannot be \"Authorization\" (llmux reads it "
            "itself)");
  EXPECT_EQ(error("server:\n  forwarded_header: X-Real-IP\n"),
            "llmux.yaml:2:21: server.forwarded_header: expected \"X-Forwarded-For\" or "
            "\"Forwarded\", got \"X-Real-IP\"");
  EXPECT_EQ(error("server:\n  drain_timeout: 10s\n  drain_grace: 11s\n"),
            "llmux.yaml:3:16: server.drain_grace: must not exceed server.drain_timeout (10000ms)");
}

}  // namespace
}  // namespace llmux
