// Engine failure paths on real weights (stories260K-hf, CPU backend): a fault in one sequence
// fails that sequence alone, and a failed forward pass fails the requests in flight without
// breaking the engine (the next steps run normally).
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

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
  bool fail = false;

 private:
  std::unique_ptr<Model> inner_;
};

struct Result {
  std::vector<int32_t> tokens;
  bool finished = false;
  Status error;
};

class EngineFaultTest : public ::testing::Test {
 protected:
  void Make(const std::filesystem::path& dir) {
    CpuBackendOptions o;
    o.threads = 1;
    auto backend = CreateCpuBackend(o);
    ASSERT_TRUE(backend.ok());
    auto model = Model::Load(dir, backend->get(), 256);
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    auto flaky = std::make_unique<FlakyModel>(std::move(*model));
    model_ = flaky.get();
    EngineConfig c;
    c.scheduler.num_kv_blocks = 64;
    c.scheduler.block_size = 16;
    c.scheduler.max_seqs = 8;
    c.scheduler.max_batched_tokens = 256;
    c.scheduler.max_model_len = 512;
    c.scheduler.lanes = {{"standard", 0}};
    auto engine = Engine::Create(c, std::move(*backend), std::move(flaky));
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

}  // namespace
}  // namespace llmux
