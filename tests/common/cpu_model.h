// A model on a fresh CPU backend for forward-pass tests on real or generated weights: loading
// it with its KV cache, greedy picks, the reference text of a model folder, and batched greedy
// decoding that mixes chunked prefill with decode steps; and the engine on such a model, with
// the requests and the event collection its tests share.
#pragma once

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "common/batch_builder.h"
#include "llmux/backend.h"
#include "llmux/engine.h"
#include "llmux/model.h"

namespace llmux::testing {

struct CpuModel {
  std::unique_ptr<Backend> backend;
  std::unique_ptr<Model> model;  // null when the load failed (the test has failed already)
};

// Loads `dir` on a CPU backend with `threads` threads and gives it an F32 KV cache of
// `num_blocks` blocks of `block_size` tokens. A failed step fails the calling test.
inline CpuModel LoadCpuModel(const std::filesystem::path& dir, int num_blocks, int block_size,
                             int threads = 2, ModelLoadOptions load_options = {}) {
  CpuModel l;
  CpuBackendOptions opts;
  opts.threads = threads;
  auto backend = CreateCpuBackend(opts);
  EXPECT_TRUE(backend.ok()) << backend.status().ToString();
  if (!backend.ok()) return l;
  l.backend = std::move(backend).value();
  auto model = Model::Load(dir, l.backend.get(), 1024, load_options);
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  if (!model.ok()) return l;
  l.model = std::move(model).value();
  const ModelConfig& c = l.model->config();
  KvCacheSpec spec{c.num_layers, num_blocks, block_size, c.num_heads, c.num_kv_heads, c.head_dim,
                   DType::kF32};
  EXPECT_TRUE(l.backend->InitKvCache(spec).ok());
  return l;
}

// The greedy pick of one logits row (the lowest id among equal maxima).
inline int32_t Argmax(std::span<const float> row) {
  return static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
}

// prompt_ids followed by greedy_ids of a model folder's expected_greedy.json (the reference
// implementation's greedy continuation).
inline std::vector<int32_t> ReferenceSequence(const std::filesystem::path& model_dir) {
  std::ifstream in(model_dir / "expected_greedy.json");
  nlohmann::json j = nlohmann::json::parse(in);
  std::vector<int32_t> seq = j["prompt_ids"].get<std::vector<int32_t>>();
  for (int32_t t : j["greedy_ids"].get<std::vector<int32_t>>()) seq.push_back(t);
  return seq;
}

// Per sequence, the logits rows it produced, in order: [seq][token][vocab].
using LogitsLog = std::vector<std::vector<std::vector<float>>>;

// Greedy-decodes sequences 0..num_seqs-1 of `bb` (their prompts already appended) to
// `new_tokens` tokens each and records every logits row. Sequence s joins at step
// s % `stagger` and computes at most `chunk` tokens a step, so steps mix prefill chunks with
// decodes. A failed forward, or a run that does not finish in 10000 steps, fails the calling
// test.
inline LogitsLog RunGreedyBatch(Model& model, BatchBuilder& bb, int num_seqs, int new_tokens,
                                int chunk, int stagger) {
  LogitsLog log(num_seqs);
  std::vector<int> generated(num_seqs, 0);
  const int vocab = model.config().vocab_size;
  for (int step = 0; step < 10000; ++step) {
    std::vector<std::pair<int, int>> work;
    for (int s = 0; s < num_seqs; ++s) {
      if (generated[s] >= new_tokens || step < s % stagger) continue;
      const int remaining = static_cast<int>(bb.tokens(s).size()) - bb.computed(s);
      work.push_back({s, std::min(remaining, chunk)});
    }
    if (work.empty()) break;
    ForwardBatch b = bb.Build(work);
    auto logits = model.Forward(b);
    EXPECT_TRUE(logits.ok()) << logits.status().ToString() << " at step " << step;
    if (!logits.ok()) return log;
    bb.Commit();
    for (size_t i = 0; i < bb.logit_seqs().size(); ++i) {
      const int s = bb.logit_seqs()[i];
      std::span<const float> row = logits->subspan(i * vocab, vocab);
      log[s].emplace_back(row.begin(), row.end());
      bb.Append(s, {Argmax(row)});
      ++generated[s];
    }
  }
  for (int s = 0; s < num_seqs; ++s) EXPECT_EQ(generated[s], new_tokens) << "sequence " << s;
  return log;
}

// ---- the engine on a CPU model ----

// An engine over the model folder `dir` on a one-thread CPU backend, the model loaded for
// steps of up to config.scheduler.max_batched_tokens tokens. Null after a failure (the calling
// test has failed then).
inline std::unique_ptr<Engine> MakeCpuEngine(const std::filesystem::path& dir,
                                             const EngineConfig& config) {
  CpuBackendOptions o;
  o.threads = 1;
  auto backend = CreateCpuBackend(o);
  EXPECT_TRUE(backend.ok()) << backend.status().ToString();
  if (!backend.ok()) return nullptr;
  auto model = Model::Load(dir, backend->get(), config.scheduler.max_batched_tokens);
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  if (!model.ok()) return nullptr;
  auto engine = Engine::Create(config, std::move(*backend), std::move(*model));
  EXPECT_TRUE(engine.ok()) << engine.status().ToString();
  if (!engine.ok()) return nullptr;
  return std::move(engine).value();
}

// A greedy request (temperature 0) of `max_tokens` tokens.
inline EngineRequest GreedyRequest(uint64_t id, const std::string& tenant,
                                   std::vector<int32_t> prompt, int max_tokens,
                                   bool ignore_eos = true,
                                   std::optional<int32_t> logprobs = std::nullopt) {
  EngineRequest r;
  r.id = id;
  r.tenant = tenant;
  r.prompt = std::move(prompt);
  r.sampling.temperature = 0;
  r.sampling.max_tokens = max_tokens;
  r.sampling.ignore_eos = ignore_eos;
  r.sampling.logprobs = logprobs;
  return r;
}

// What the events of one request said.
struct EngineResult {
  std::vector<int32_t> tokens;
  std::vector<SampledToken> logprobs;
  int64_t first_token_step = -1;  // EngineOutput::step of its first token event
  bool finished = false;
  EngineOutput final_event;
};

// A sink that adds request `id`'s events to (*results)[id]. `results` must outlive the
// request; the engine calls the sink on its stepping thread.
inline OutputSink CollectInto(std::map<uint64_t, EngineResult>* results, uint64_t id) {
  return [results, id](EngineOutput&& out) {
    EngineResult& res = (*results)[id];
    if (!out.tokens.empty() && res.first_token_step < 0) res.first_token_step = out.step;
    res.tokens.insert(res.tokens.end(), out.tokens.begin(), out.tokens.end());
    res.logprobs.insert(res.logprobs.end(), out.logprobs.begin(), out.logprobs.end());
    if (out.finished) {
      res.finished = true;
      res.final_event = out;
    }
  };
}

}  // namespace llmux::testing
