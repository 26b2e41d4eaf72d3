// A model on a fresh CPU backend for forward-pass tests on real or generated weights: loading
// it with its KV cache, greedy picks, the reference text of a model folder, and batched greedy
// decoding that mixes chunked prefill with decode steps.
#pragma once

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "common/batch_builder.h"
#include "llmux/backend.h"
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

}  // namespace llmux::testing
