// Engine failure paths on real weights (stories260K-hf, CPU backend): a fault in one sequence
// fails that sequence alone, and a failed forward pass fails the requests in flight without
// breaking the engine (the next steps run normally).
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <string>
#include <nlohmann/json.hpp>

#include "common/forwarding_backend.h"
#include "common/test_data.h"
#include "llmux/engine.h"

namespace llmux {
namespace {

// Delegates to a real model; fails Forward while `fail` is set.
class FlakyModel final : public Model {
 public:
  explicit FlakyModel(std::unique_ptr<Model> inner) : inner_(std::move(inner)) {}
  const ModelConfig& config() const override { return inner_->config(); }
  StatusOr<std::span<const float>> Forward(const ForwardBatch& batch) override {
    if (fail) return Internal("simulated device fault");
    return inner_->Forward(batch);
  }
  StatusOr<Tensor> ForwardLogits(const ForwardBatch& batch) override {
    if (fail) return Internal("simulated device fault");
    return inner_->ForwardLogits(batch);
  }
  bool fail = false;

 private:
  std::unique_ptr<Model> inner_;
};

// Delegates every op to a real backend; its sync points (SampleTokens, the engine's, and
// CopyToHostF32) fail the step with
// Unavailable while `step_fault` is set, and `sticky_fault` also makes DeviceHealth fail from
// then on: what the CUDA backend does after a failed launch or a sticky device error.
class FaultyBackend final : public testing::ForwardingBackend {
 public:
  using ForwardingBackend::ForwardingBackend;
  Status BeginBatch(const ForwardBatch& batch) override {
    LLMUX_RETURN_IF_ERROR(DeviceHealth());
    return ForwardingBackend::BeginBatch(batch);
  }
  Status CopyToHostF32(const Tensor& src, float* dst) override {
    ++host_copies;
    if (!sticky_fault.empty()) return Unavailable("cuda device faulted: " + sticky_fault);
    if (!step_fault.empty()) return Unavailable("cuda step failed: " + step_fault);
    return ForwardingBackend::CopyToHostF32(src, dst);
  }
  Status SampleTokens(Tensor logits, const SampleBatch& batch,
                      std::vector<SampledToken>* out) override {
    ++sample_calls;
    max_rows = std::max(max_rows, batch.rows.size());
    if (!sticky_fault.empty()) return Unavailable("cuda device faulted: " + sticky_fault);
    if (!step_fault.empty()) return Unavailable("cuda step failed: " + step_fault);
    return ForwardingBackend::SampleTokens(logits, batch, out);
  }
  Status DeviceHealth() const override {
    if (sticky_fault.empty()) return Status::Ok();
    return Unavailable("cuda device faulted: " + sticky_fault);
  }

  std::string step_fault;
  std::string sticky_fault;
  int host_copies = 0;   // CopyToHostF32 calls
  int sample_calls = 0;  // SampleTokens calls
  size_t max_rows = 0;   // the most rows one SampleTokens call had
};

struct Result {
  std::vector<int32_t> tokens;
  bool finished = false;
  Status error;
};

class EngineFaultTest : public ::testing::Test {
 protected:
  void Make(const std::filesystem::path& dir, int max_seqs = 8) {
    CpuBackendOptions o;
    o.threads = 1;
    auto cpu = CreateCpuBackend(o);
    ASSERT_TRUE(cpu.ok());
    auto faulty = std::make_unique<FaultyBackend>(std::move(*cpu));
    backend_ = faulty.get();
    std::unique_ptr<Backend> backend = std::move(faulty);
    auto model = Model::Load(dir, backend.get(), 256);
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    auto flaky = std::make_unique<FlakyModel>(std::move(*model));
    model_ = flaky.get();
    EngineConfig c;
    c.scheduler.num_kv_blocks = 64;
    c.scheduler.block_size = 16;
    c.scheduler.max_seqs = max_seqs;
    c.scheduler.max_batched_tokens = 256;
    c.scheduler.max_model_len = 512;
    c.scheduler.lanes = {{"standard", 0}};
    auto engine = Engine::Create(c, std::move(backend), std::move(flaky));
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    engine_ = std::move(*engine);
    for (const char* t : {"a", "b"}) ASSERT_TRUE(engine_->UpsertTenant(t, TenantLimits{}).ok());
  }

  void Submit(uint64_t id, const std::string& tenant, int max_tokens) {
    EngineRequest r;
    r.id = id;
    r.tenant = tenant;
    r.prompt = prompt_;
    r.sampling.temperature = 0;
    r.sampling.max_tokens = max_tokens;
    r.sampling.ignore_eos = true;
    ASSERT_TRUE(engine_->Submit(std::move(r), [this, id](EngineOutput&& out) {
      Result& res = results_[id];
      res.tokens.insert(res.tokens.end(), out.tokens.begin(), out.tokens.end());
      if (out.finished) {
        res.finished = true;
        res.error = out.error;
      }
    }).ok());
  }

  void ExpectIdle() {
    const EngineStats s = engine_->Stats();
    EXPECT_EQ(s.running, 0);
    EXPECT_EQ(s.waiting, 0);
    for (const char* t : {"a", "b"}) {
      auto ts = engine_->GetTenantStats(t);
      ASSERT_TRUE(ts.has_value());
      EXPECT_EQ(ts->blocks_in_use, 0) << t;
      EXPECT_EQ(ts->inflight_tokens, 0) << t;
    }
  }

  std::vector<int32_t> Reference(const std::filesystem::path& dir, size_t n) {
    std::ifstream in(dir / "expected_greedy.json");
    nlohmann::json j = nlohmann::json::parse(in);
    auto prompt = j["prompt_ids"].get<std::vector<int32_t>>();
    auto greedy = j["greedy_ids"].get<std::vector<int32_t>>();
    prompt_ = prompt;
    return std::vector<int32_t>(greedy.begin(), greedy.begin() + static_cast<std::ptrdiff_t>(n));
  }

  FlakyModel* model_ = nullptr;
  FaultyBackend* backend_ = nullptr;
  std::unique_ptr<Engine> engine_;
  std::vector<int32_t> prompt_;
  std::map<uint64_t, Result> results_;
};

TEST_F(EngineFaultTest, SequenceFaultFailsOnlyThatSequence) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models" / "stories260K-hf");
  Make(dir);
  const std::vector<int32_t> want = Reference(dir, 40);
  engine_->SetSequenceFaultHookForTesting([](const EngineRequest& r, int32_t num_output) {
    return r.id == 3 && num_output == 5 ? Internal("injected") : Status::Ok();
  });
  for (uint64_t id = 1; id <= 4; ++id) Submit(id, id % 2 ? "a" : "b", 40);
  ASSERT_TRUE(engine_->RunUntilIdle().ok());
  for (uint64_t id = 1; id <= 4; ++id) {
    const Result& r = results_[id];
    ASSERT_TRUE(r.finished) << id;
    if (id == 3) {
      EXPECT_EQ(r.error.code(), StatusCode::kInternal);
      EXPECT_NE(r.error.message().find("injected"), std::string::npos) << r.error.message();
      EXPECT_EQ(r.tokens, std::vector<int32_t>(want.begin(), want.begin() + 5));
    } else {
      EXPECT_TRUE(r.error.ok()) << id << ": " << r.error.ToString();
      EXPECT_EQ(r.tokens, want) << id;
    }
  }
  ExpectIdle();
}

// One engine path for every backend: a step samples all its sequences with one
// Backend::SampleTokens call on the logits where the forward pass left them; nothing copies the
// logits to the host (on CUDA only token ids come back). The tokens are the CPU sampler's.
TEST_F(EngineFaultTest, StepsSampleThroughTheBackendWithoutCopyingLogits) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models" / "stories260K-hf");
  Make(dir);
  const std::vector<int32_t> want = Reference(dir, 12);
  for (uint64_t id = 1; id <= 3; ++id) Submit(id, "a", 12);
  int steps = 0;
  for (;; ++steps) {
    auto progressed = engine_->StepOnce();
    ASSERT_TRUE(progressed.ok()) << progressed.status().ToString();
    if (!*progressed) break;
  }
  for (uint64_t id = 1; id <= 3; ++id) {
    ASSERT_TRUE(results_[id].finished) << id;
    EXPECT_EQ(results_[id].tokens, want) << id;
  }
  EXPECT_EQ(backend_->host_copies, 0);
  EXPECT_EQ(backend_->sample_calls, steps);  // one call per step, every step samples here
  EXPECT_EQ(backend_->max_rows, 3u);         // the three decodes in one call
  ExpectIdle();
}

TEST_F(EngineFaultTest, ForwardFailureFailsInFlightRequestsAndTheEngineGoesOn) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models" / "stories260K-hf");
  Make(dir);
  const std::vector<int32_t> want = Reference(dir, 20);
  Submit(1, "a", 20);
  Submit(2, "b", 20);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(engine_->StepOnce().ok());
  model_->fail = true;
  auto step = engine_->StepOnce();
  ASSERT_FALSE(step.ok());
  EXPECT_NE(step.status().message().find("simulated device fault"), std::string::npos);
  for (uint64_t id : {1, 2}) {
    ASSERT_TRUE(results_[id].finished);
    EXPECT_EQ(results_[id].error.code(), StatusCode::kInternal);
  }
  ExpectIdle();
  // Schedule and Update still alternate: the next request is served normally.
  model_->fail = false;
  Submit(3, "a", 20);
  ASSERT_TRUE(engine_->RunUntilIdle().ok());
  ASSERT_TRUE(results_[3].finished);
  EXPECT_TRUE(results_[3].error.ok());
  EXPECT_EQ(results_[3].tokens, want);
  ExpectIdle();
}

// A failed device step fails the step's requests with Unavailable (HTTP 503), leaves the
// requests that were not in it queued, and the engine goes on.
TEST_F(EngineFaultTest, DeviceStepFaultFailsOnlyThatStepWithUnavailable) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models" / "stories260K-hf");
  Make(dir, /*max_seqs=*/1);
  const std::vector<int32_t> want = Reference(dir, 12);
  Submit(1, "a", 12);
  Submit(2, "b", 12);
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(engine_->StepOnce().ok());
  backend_->step_fault = "Attention: too many resources requested for launch";
  auto step = engine_->StepOnce();
  ASSERT_FALSE(step.ok());
  EXPECT_EQ(step.status().code(), StatusCode::kUnavailable);
  ASSERT_TRUE(results_[1].finished);
  EXPECT_EQ(results_[1].error.code(), StatusCode::kUnavailable);
  EXPECT_NE(results_[1].error.message().find("cuda step failed: Attention"), std::string::npos)
      << results_[1].error.message();
  EXPECT_FALSE(results_[2].finished);  // not in the failed step: still queued
  EXPECT_EQ(engine_->Stats().device_fault, "");
  backend_->step_fault.clear();
  ASSERT_TRUE(engine_->RunUntilIdle().ok());
  ASSERT_TRUE(results_[2].finished);
  EXPECT_TRUE(results_[2].error.ok()) << results_[2].error.ToString();
  EXPECT_EQ(results_[2].tokens, want);
  EXPECT_EQ(engine_->Stats().device_fault, "");
  ExpectIdle();
}

// A sticky device fault fails the step with Unavailable, is reported in EngineStats (the
// pool's /health and /admin/pools read it), and fails every later step the same way.
TEST_F(EngineFaultTest, StickyDeviceFaultIsReportedAndFailsEveryLaterStep) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models" / "stories260K-hf");
  Make(dir);
  Reference(dir, 1);
  Submit(1, "a", 12);
  ASSERT_TRUE(engine_->StepOnce().ok());
  EXPECT_EQ(engine_->Stats().device_fault, "");
  backend_->sticky_fault = "copy to host: an illegal memory access was encountered";
  ASSERT_FALSE(engine_->StepOnce().ok());
  ASSERT_TRUE(results_[1].finished);
  EXPECT_EQ(results_[1].error.code(), StatusCode::kUnavailable);
  EXPECT_EQ(engine_->Stats().device_fault,
            "cuda device faulted: copy to host: an illegal memory access was encountered");
  Submit(2, "b", 12);
  auto step = engine_->StepOnce();
  ASSERT_FALSE(step.ok());
  EXPECT_EQ(step.status().code(), StatusCode::kUnavailable);
  ASSERT_TRUE(results_[2].finished);
  EXPECT_EQ(results_[2].error.code(), StatusCode::kUnavailable);
  EXPECT_TRUE(results_[2].tokens.empty());
  EXPECT_NE(engine_->Stats().device_fault, "");
  ExpectIdle();
}

}  // namespace
}  // namespace llmux
