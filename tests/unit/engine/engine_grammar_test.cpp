// Structured outputs in the engine on real weights (stories260K-hf, CPU backend): constrained
// generation yields JSON that parses and that the schema's own grammar accepts in full;
// max_tokens cuts give "length"; the sampler honours the mask, greedy included.
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>

#include "common/test_data.h"
#include "sampling/sampler.h"
#include "llmux/engine.h"
#include "llmux/grammar.h"
#include "llmux/tokenizer.h"

namespace llmux {
namespace {

struct GenRun {
  std::vector<int32_t> tokens;
  EngineOutput final_event;
  bool finished = false;
};

class EngineGrammarTest : public ::testing::Test {
 protected:
  void Make(const std::filesystem::path& dir, int32_t kv_blocks = 256) {
    CpuBackendOptions o;
    o.threads = 1;
    auto backend = CreateCpuBackend(o);
    ASSERT_TRUE(backend.ok());
    auto model = Model::Load(dir, backend->get(), 256);
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    EngineConfig c;
    c.scheduler.num_kv_blocks = kv_blocks;
    c.scheduler.block_size = 16;
    c.scheduler.max_seqs = 16;
    c.scheduler.max_batched_tokens = 256;
    c.scheduler.max_model_len = 512;
    c.scheduler.lanes = {{"standard", 0}};
    auto engine = Engine::Create(c, std::move(*backend), std::move(*model));
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    engine_ = std::move(*engine);
    TenantLimits l;
    l.lane = 0;
    ASSERT_TRUE(engine_->UpsertTenant("t", l).ok());
    auto tok = Tokenizer::FromModelDir(dir);
    ASSERT_TRUE(tok.ok());
    tokenizer_ = std::move(*tok);
    vocab_ = TokenVocabulary::FromTokenizer(*tokenizer_, engine_->model_config().vocab_size,
                                            engine_->model_config().eos_token_ids);
  }

  std::shared_ptr<const CompiledGrammar> Compile(const std::string& schema) {
    GrammarSpec spec;
    spec.schema = schema;
    auto g = CompileGrammar(spec, vocab_);
    EXPECT_TRUE(g.ok()) << g.status().ToString();
    return g.ok() ? *g : nullptr;
  }

  void Submit(uint64_t id, std::shared_ptr<const CompiledGrammar> g, int max_tokens,
              float temperature = 0.0f, uint64_t seed = 7) {
    EngineRequest r;
    r.id = id;
    r.tenant = "t";
    r.prompt = tokenizer_->Encode("Once upon a time", /*add_special_tokens=*/true);
    r.sampling.temperature = temperature;
    r.sampling.seed = seed;
    r.sampling.max_tokens = max_tokens;
    r.grammar = std::move(g);
    ASSERT_TRUE(engine_->Submit(std::move(r), [this, id](EngineOutput&& out) {
      GenRun& run = runs_[id];
      run.tokens.insert(run.tokens.end(), out.tokens.begin(), out.tokens.end());
      if (out.finished) {
        run.finished = true;
        run.final_event = out;
      }
    }).ok());
  }

  std::string Bytes(const std::vector<int32_t>& ids) {
    std::string s;
    for (int32_t id : ids) s += vocab_->bytes(id);
    return s;
  }

  std::unique_ptr<Engine> engine_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::shared_ptr<const TokenVocabulary> vocab_;
  std::map<uint64_t, GenRun> runs_;
};

const char* kSchemas[] = {
    // nested object
    R"({"type":"object","properties":{"name":{"type":"string","maxLength":8},
        "info":{"type":"object","properties":{"age":{"type":"integer","minimum":1,"maximum":99},
        "ok":{"type":"boolean"}},"required":["age","ok"]}},"required":["name","info"]})",
    // enum
    R"({"type":"object","properties":{"color":{"enum":["red","green","blue"]}},"required":["color"]})",
    // array min/max
    R"({"type":"array","items":{"type":"integer","minimum":0,"maximum":9},"minItems":2,"maxItems":4})",
    // anyOf
    R"({"anyOf":[{"type":"object","properties":{"n":{"type":"null"}},"required":["n"]},{"type":"boolean"}]})",
    // $ref recursion, bounded by maxItems so greedy decoding terminates
    R"({"$defs":{"t":{"type":"object","properties":{"v":{"type":"integer","minimum":0,"maximum":9},
        "k":{"type":"array","items":{"$ref":"#/$defs/t"},"maxItems":1}},"required":["v","k"]}},
        "$ref":"#/$defs/t"})",
};

TEST_F(EngineGrammarTest, ConstrainedGreedyOutputIsValidJson) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models" / "stories260K-hf");
  Make(dir);
  for (size_t i = 0; i < std::size(kSchemas); ++i) {
    Submit(100 + i, Compile(kSchemas[i]), 200);
  }
  // An unconstrained neighbour in the same batch.
  Submit(99, nullptr, 20);
  ASSERT_TRUE(engine_->RunUntilIdle().ok());
  for (size_t i = 0; i < std::size(kSchemas); ++i) {
    const GenRun& run = runs_[100 + i];
    ASSERT_TRUE(run.finished) << "schema " << i;
    ASSERT_TRUE(run.final_event.error.ok()) << run.final_event.error.ToString();
    EXPECT_EQ(run.final_event.finish_reason, FinishReason::kStop) << "schema " << i;
    const std::string text = Bytes(run.tokens);
    SCOPED_TRACE("schema " + std::to_string(i) + " output: " + text);
    EXPECT_EQ(tokenizer_->Decode(run.tokens, true), text);
    EXPECT_TRUE(nlohmann::json::accept(text));
    GrammarMatcher check(Compile(kSchemas[i]));
    EXPECT_TRUE(check.AcceptBytes(text));
    EXPECT_TRUE(check.IsComplete());
  }
  EXPECT_EQ(runs_[99].tokens.size(), 20u);
}

TEST_F(EngineGrammarTest, SampledOutputIsValidAndDeterministic) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models" / "stories260K-hf");
  Make(dir);
  auto g = Compile(kSchemas[0]);
  Submit(1, g, 300, /*temperature=*/1.0f, /*seed=*/1234);
  Submit(2, g, 300, /*temperature=*/1.0f, /*seed=*/1234);
  ASSERT_TRUE(engine_->RunUntilIdle().ok());
  ASSERT_TRUE(runs_[1].finished && runs_[2].finished);
  EXPECT_EQ(runs_[1].tokens, runs_[2].tokens);
  const std::string text = Bytes(runs_[1].tokens);
  if (runs_[1].final_event.finish_reason == FinishReason::kStop) {
    GrammarMatcher check(g);
    EXPECT_TRUE(check.AcceptBytes(text) && check.IsComplete()) << text;
  } else {
    GrammarMatcher check(g);
    EXPECT_TRUE(check.AcceptBytes(text)) << text;  // cut by max_tokens: still a valid prefix
  }
}

TEST_F(EngineGrammarTest, MaxTokensCutIsLength) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models" / "stories260K-hf");
  Make(dir);
  auto g = Compile(kSchemas[0]);
  Submit(1, g, 5);
  ASSERT_TRUE(engine_->RunUntilIdle().ok());
  ASSERT_TRUE(runs_[1].finished);
  EXPECT_EQ(runs_[1].final_event.finish_reason, FinishReason::kLength);
  EXPECT_EQ(runs_[1].tokens.size(), 5u);
  GrammarMatcher check(g);
  EXPECT_TRUE(check.AcceptBytes(Bytes(runs_[1].tokens)));
  EXPECT_FALSE(check.IsComplete());
}

TEST_F(EngineGrammarTest, PreemptedRequestKeepsItsGrammarState) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models" / "stories260K-hf");
  Make(dir, /*kv_blocks=*/6);  // 96 tokens of KV for several sequences: preemption happens
  for (uint64_t id = 1; id <= 4; ++id) Submit(id, Compile(kSchemas[0]), 60);
  ASSERT_TRUE(engine_->RunUntilIdle().ok());
  int32_t preemptions = 0;
  for (uint64_t id = 1; id <= 4; ++id) {
    const GenRun& run = runs_[id];
    ASSERT_TRUE(run.finished);
    ASSERT_TRUE(run.final_event.error.ok()) << run.final_event.error.ToString();
    preemptions += run.final_event.preemptions;
    GrammarMatcher check(Compile(kSchemas[0]));
    EXPECT_TRUE(check.AcceptBytes(Bytes(run.tokens))) << Bytes(run.tokens);
  }
  EXPECT_GT(preemptions, 0);
}

TEST_F(EngineGrammarTest, RefusesGrammarOfAnotherVocabulary) {
  LLMUX_REQUIRE_DATA(dir, testing::SharedDataDir() / "models" / "stories260K-hf");
  Make(dir);
  GrammarSpec spec;
  spec.kind = GrammarSpec::Kind::kJsonObject;
  auto g = CompileGrammar(spec, TokenVocabulary::FromBytes({"a", "b"}, {}));
  ASSERT_TRUE(g.ok());
  EngineRequest r;
  r.id = 1;
  r.tenant = "t";
  r.prompt = {1, 2, 3};
  r.grammar = *g;
  EXPECT_EQ(engine_->Submit(std::move(r), [](EngineOutput&&) {}).code(), StatusCode::kInvalidArgument);
}

TEST(SamplerMaskTest, MaskAppliesToGreedyAndSampling) {
  Sampler sampler(64, {63});
  std::vector<float> logits(64);
  for (int i = 0; i < 64; ++i) logits[i] = static_cast<float>(i);  // 63 would win unmasked
  std::vector<uint32_t> mask(2, 0u);
  mask[0] = (1u << 3) | (1u << 17);
  SamplingParams greedy;
  greedy.temperature = 0;
  SequenceView view;
  EXPECT_EQ(sampler.Sample(logits, greedy, view, mask).token, 17);
  SamplingParams hot;
  hot.temperature = 5.0f;
  for (uint64_t seed = 0; seed < 200; ++seed) {
    view.seed = seed;
    const int32_t t = sampler.Sample(logits, hot, view, mask).token;
    EXPECT_TRUE(t == 3 || t == 17) << t;
  }
  // min_tokens suppresses EOS, the only allowed token: the mask still holds.
  std::vector<uint32_t> eos_only(2, 0u);
  eos_only[1] = 1u << 31;
  SamplingParams min_tokens;
  min_tokens.temperature = 0;
  min_tokens.max_tokens = 8;
  min_tokens.min_tokens = 4;
  EXPECT_EQ(sampler.Sample(logits, min_tokens, SequenceView{}, eos_only).token, 63);
}

}  // namespace
}  // namespace llmux
