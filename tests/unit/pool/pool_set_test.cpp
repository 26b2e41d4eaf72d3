// PoolSet on real weights (stories260K-hf, CPU): tenants reach only their own pool's engine,
// and a process pool's worker serves the same tokens as a thread pool, fails its in-flight
// requests when killed, and is restarted.
#include "llmux/pool.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <condition_variable>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/forwarding_backend.h"
#include "common/test_data.h"
#include "pool/local_engine.h"

namespace llmux {
namespace {

using std::chrono::milliseconds;

// Collects one request's events; Wait() returns the final one.
struct Collector {
  std::mutex mutex;
  std::condition_variable cv;
  std::vector<int32_t> tokens;
  std::optional<EngineOutput> final_event;
  std::function<void()> on_first_token;

  OutputSink Sink() {
    return [this](EngineOutput&& out) {
      std::function<void()> first;
      {
        std::lock_guard<std::mutex> lock(mutex);
        if (tokens.empty() && !out.tokens.empty()) first = on_first_token;
        tokens.insert(tokens.end(), out.tokens.begin(), out.tokens.end());
        if (out.finished) final_event = std::move(out);
      }
      if (first) first();
      cv.notify_all();
    };
  }
  EngineOutput Wait() {
    std::unique_lock<std::mutex> lock(mutex);
    EXPECT_TRUE(cv.wait_for(lock, std::chrono::seconds(60), [&] { return final_event.has_value(); }));
    return final_event.value_or(EngineOutput{});
  }
};

EngineRequest Greedy(uint64_t id, const std::string& tenant, int32_t max_tokens) {
  EngineRequest r;
  r.id = id;
  r.tenant = tenant;
  r.prompt = {1, 403, 407, 261, 378};  // <s>Once upon a time
  r.sampling.temperature = 0;
  r.sampling.max_tokens = max_tokens;
  r.sampling.ignore_eos = true;
  return r;
}

std::shared_ptr<const TenantPolicy> Policy() {
  auto p = ParseTenantPolicy(R"(lanes: [ { name: standard } ]
tenants:
  alice:
    api_keys: [ { sha256: "1111111111111111111111111111111111111111111111111111111111111111" } ]
  bob:
    api_keys: [ { sha256: "2222222222222222222222222222222222222222222222222222222222222222" } ]
    pool: acme
)",
                             "tenants.yaml");
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return *p;
}

std::string ConfigText(const std::filesystem::path& model, const std::string& isolation) {
  return "model: { path: \"" + model.string() + "\", name: stories }\n" +
         "engine: { threads: 1, kv_cache_tokens: 4096, max_batched_tokens: 256, max_seqs: 8 }\n" +
         "pools:\n  acme: { isolation: " + isolation + ", health_timeout: 1s }\n";
}

TEST(PoolSetTest, ATenantIsKnownOnlyToItsOwnPool) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models" / "stories260K-hf");
  auto cfg = ParseServerConfig(ConfigText(dir, "thread"), "llmux.yaml");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  auto policy = Policy();
  auto set = PoolSet::Create(*cfg, policy->lanes, PoolSetOptions{});
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  ASSERT_TRUE((*set)->ApplyPolicy(*policy).ok());
  Pool* shared = (*set)->Find("shared");
  Pool* acme = (*set)->Find("acme");
  ASSERT_NE(shared, nullptr);
  ASSERT_NE(acme, nullptr);
  EXPECT_EQ((*set)->Find("other"), nullptr);
  EXPECT_EQ(acme->model_name(), "stories");
  EXPECT_EQ(acme->max_model_len(), 512);
  EXPECT_EQ(acme->Describe().pid, ::getpid());
  EXPECT_EQ(acme->Describe().state, PoolState::kReady);

  // bob (pool acme) submitted to the shared engine: the scheduler does not know him.
  Collector wrong;
  ASSERT_TRUE(shared->engine()->Submit(Greedy(1, "bob", 4), wrong.Sink()).ok());
  EngineOutput w = wrong.Wait();
  EXPECT_FALSE(w.error.ok());
  EXPECT_NE(w.error.message().find("bob"), std::string::npos) << w.error.message();
  // ... and alice is unknown to acme.
  Collector wrong2;
  ASSERT_TRUE(acme->engine()->Submit(Greedy(2, "alice", 4), wrong2.Sink()).ok());
  EXPECT_FALSE(wrong2.Wait().error.ok());

  Collector right;
  ASSERT_TRUE(acme->engine()->Submit(Greedy(3, "bob", 4), right.Sink()).ok());
  EngineOutput r = right.Wait();
  EXPECT_TRUE(r.error.ok()) << r.error.ToString();
  EXPECT_EQ(r.completion_tokens, 4);
  (*set)->Stop();
  EXPECT_EQ(acme->Describe().state, PoolState::kStopped);
}

// Whether this build on this CPU runs BF16-weight MatMuls with bf16 activations (AVX-512 BF16
// in the build's target and in the CPU; docs/cpu_backend.md).
bool MachineRunsBf16Activations() {
#if defined(__AVX512BF16__)
  return __builtin_cpu_supports("avx512bf16");
#else
  return false;
#endif
}

// A CPU backend that answers as one on a CPU without AVX-512 BF16 does.
class WithoutAvx512Bf16 final : public testing::ForwardingBackend {
 public:
  using ForwardingBackend::ForwardingBackend;
  std::optional<CpuBf16Activations> CpuBf16ActivationsInUse() const override {
    return CpuBf16Activations::kF32;
  }
};

std::unique_ptr<Backend> WrapWithoutAvx512Bf16(std::unique_ptr<Backend> backend,
                                               const PoolSection& /*pool*/) {
  return std::make_unique<WithoutAvx512Bf16>(std::move(backend));
}

// The value a pool's engine published (its first stats come at its first idle tick).
std::optional<CpuBf16Activations> PublishedBf16Activations(const Pool& pool) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!pool.Describe().stats.cpu_bf16_activations &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  return pool.Describe().stats.cpu_bf16_activations;
}

// A pool describes the activations its backend runs, not the configured ones: `bf16` runs as
// `f32` without AVX-512 BF16, and GET /admin/pools then shows both (CpuBf16ActivationsJson).
TEST(PoolSetTest, APoolDescribesTheBf16ActivationsItsBackendRuns) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models" / "stories260K-hf");
  const std::string text =
      "model: { path: \"" + dir.string() + "\", name: stories }\n" +
      "engine: { threads: 1, kv_cache_tokens: 4096, max_batched_tokens: 256, max_seqs: 8 }\n" +
      "pools:\n  exact: { isolation: thread, engine: { cpu_bf16_activations: f32 } }\n";
  auto cfg = ParseServerConfig(text, "llmux.yaml");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  ASSERT_EQ(cfg->pools[0].name, "shared");
  ASSERT_EQ(cfg->pools[0].engine.cpu_bf16_activations, Bf16Activations::kBf16);  // the default
  const auto lanes = Policy()->lanes;
  {
    auto set = PoolSet::Create(*cfg, lanes, PoolSetOptions{});
    ASSERT_TRUE(set.ok()) << set.status().ToString();
    const CpuBf16Activations machine =
        MachineRunsBf16Activations() ? CpuBf16Activations::kBf16 : CpuBf16Activations::kF32;
    EXPECT_EQ(PublishedBf16Activations(*(*set)->Find("shared")), machine);
    EXPECT_EQ(PublishedBf16Activations(*(*set)->Find("exact")), CpuBf16Activations::kF32);
    (*set)->Stop();
  }
  // The same configuration where the backend runs f32 (whatever this machine has).
  pool::SetBackendCreatedHookForTesting(&WrapWithoutAvx512Bf16);
  auto set = PoolSet::Create(*cfg, lanes, PoolSetOptions{});
  pool::SetBackendCreatedHookForTesting(nullptr);
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  Pool* shared = (*set)->Find("shared");
  EXPECT_EQ(PublishedBf16Activations(*shared), CpuBf16Activations::kF32);
  EXPECT_EQ(CpuBf16ActivationsJson(shared->config().engine.cpu_bf16_activations,
                                   shared->Describe().stats),
            nlohmann::json({{"cpu_bf16_activations", "f32"},
                            {"cpu_bf16_activations_configured", "bf16"}}));
  Pool* exact = (*set)->Find("exact");
  EXPECT_EQ(PublishedBf16Activations(*exact), CpuBf16Activations::kF32);
  EXPECT_EQ(CpuBf16ActivationsJson(exact->config().engine.cpu_bf16_activations,
                                   exact->Describe().stats),
            nlohmann::json({{"cpu_bf16_activations", "f32"}}));
  (*set)->Stop();
}

std::filesystem::path Llmuxd() {
  std::error_code ec;
  std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  for (std::filesystem::path d = exe.parent_path(); !d.empty() && d != d.root_path(); d = d.parent_path()) {
    if (std::filesystem::exists(d / "llmuxd")) return d / "llmuxd";
  }
  return {};
}

TEST(PoolSetTest, ProcessPoolServesFailsOnWorkerDeathAndRestarts) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models" / "stories260K-hf");
  const std::filesystem::path llmuxd = Llmuxd();
  ASSERT_FALSE(llmuxd.empty()) << "llmuxd is not built next to the tests";
  const std::filesystem::path tmp = std::filesystem::temp_directory_path() /
                                    ("llmux-pool-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(tmp);
  const std::filesystem::path config_path = tmp / "llmux.yaml";
  std::ofstream(config_path) << ConfigText(dir, "process");
  auto cfg = LoadServerConfig(config_path);
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  auto policy = Policy();
  PoolSetOptions options;
  options.worker_executable = llmuxd.string();
  options.config_path = config_path.string();
  auto set = PoolSet::Create(*cfg, policy->lanes, options);
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  ASSERT_TRUE((*set)->ApplyPolicy(*policy).ok());
  Pool* shared = (*set)->Find("shared");
  Pool* acme = (*set)->Find("acme");
  const PoolStatus first = acme->Describe();
  EXPECT_EQ(first.state, PoolState::kReady);
  EXPECT_EQ(first.isolation, PoolIsolation::kProcess);
  EXPECT_GT(first.pid, 0);
  EXPECT_NE(first.pid, ::getpid());

  // The worker's tokens equal the in-process engine's (same model, greedy).
  Collector local, remote;
  ASSERT_TRUE(shared->engine()->Submit(Greedy(1, "alice", 20), local.Sink()).ok());
  ASSERT_TRUE(acme->engine()->Submit(Greedy(2, "bob", 20), remote.Sink()).ok());
  EXPECT_TRUE(local.Wait().error.ok());
  EngineOutput r = remote.Wait();
  EXPECT_TRUE(r.error.ok()) << r.error.ToString();
  EXPECT_EQ(r.completion_tokens, 20);
  EXPECT_EQ(remote.tokens, local.tokens);

  // SIGKILL during a request: it ends with Unavailable and the usage delivered so far.
  Collector victim;
  victim.on_first_token = [pid = first.pid] { ::kill(static_cast<pid_t>(pid), SIGKILL); };
  ASSERT_TRUE(acme->engine()->Submit(Greedy(3, "bob", 400), victim.Sink()).ok());
  EngineOutput v = victim.Wait();
  EXPECT_EQ(v.error.code(), StatusCode::kUnavailable);
  EXPECT_NE(v.error.message().find("pool acme worker died"), std::string::npos) << v.error.message();
  EXPECT_EQ(v.prompt_tokens, 5);
  EXPECT_GE(v.completion_tokens, 1);
  EXPECT_LT(v.completion_tokens, 400);
  EXPECT_EQ(v.completion_tokens, static_cast<int32_t>(victim.tokens.size()));
  // Refused (Unavailable) until the new worker is ready, then served again by a new pid.
  PoolStatus now = acme->Describe();
  if (now.state != PoolState::kReady) {
    Collector refused;
    EXPECT_EQ(acme->engine()->Submit(Greedy(4, "bob", 2), refused.Sink()).code(),
              StatusCode::kUnavailable);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (acme->Describe().state != PoolState::kReady && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(20));
  }
  now = acme->Describe();
  EXPECT_EQ(now.state, PoolState::kReady);
  EXPECT_NE(now.pid, first.pid);
  EXPECT_EQ(now.restarts, 1);
  EXPECT_EQ(now.worker_deaths, 1);
  EXPECT_EQ(now.last_error, "killed by signal 9");
  Collector again;
  ASSERT_TRUE(acme->engine()->Submit(Greedy(5, "bob", 20), again.Sink()).ok());
  EXPECT_TRUE(again.Wait().error.ok());
  EXPECT_EQ(again.tokens, local.tokens);  // the tenant was re-registered in the new worker

  // A stopped (hung) worker misses its health pings and is killed.
  const int64_t hung = now.pid;
  ::kill(static_cast<pid_t>(hung), SIGSTOP);
  const auto deadline2 = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (acme->Describe().worker_deaths < 2 && std::chrono::steady_clock::now() < deadline2) {
    std::this_thread::sleep_for(milliseconds(20));
  }
  EXPECT_EQ(acme->Describe().worker_deaths, 2);
  EXPECT_NE(acme->Describe().last_error.find("did not answer health pings for 1000 ms"),
            std::string::npos);
  (*set)->Stop();
  EXPECT_EQ(acme->Describe().state, PoolState::kStopped);
  std::filesystem::remove_all(tmp);
}

}  // namespace
}  // namespace llmux
