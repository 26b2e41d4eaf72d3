// engine.cpu_bf16_activations on real (trained) weights: stories260K rounded to BF16, run with
// bf16 activations (AVX-512 BF16 vdpbf16ps) and with exact F32 activations. The perplexity of
// its reference story and the next-token argmax must agree closely; the logits must differ
// (the bf16 path is really taken).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <fstream>

#include <unistd.h>

#include "backend/cpu/matmul_bf16.h"
#include "common/batch_builder.h"
#include "common/test_data.h"
#include "llmux/backend.h"
#include "llmux/dtype.h"
#include "llmux/model.h"
#include "llmux/safetensors.h"

namespace llmux {
namespace {

using testing::BatchBuilder;

constexpr int kBlockSize = 16;

// Writes dir/model.safetensors with every tensor of `src` rounded to BF16 (nearest even) and
// dir/config.json with torch_dtype bfloat16.
void WriteBf16Copy(const std::filesystem::path& src, const std::filesystem::path& dir) {
  auto file = SafetensorsFile::Open(src / "model.safetensors");
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  nlohmann::json header = nlohmann::json::object();
  std::vector<uint16_t> data;
  for (const HostTensor& t : (*file)->tensors()) {
    ASSERT_EQ(t.dtype, DType::kF32) << t.name;
    const size_t n = t.nbytes / 4, begin = data.size();
    for (size_t i = 0; i < n; ++i) {
      float v;
      std::memcpy(&v, t.data + 4 * i, 4);
      data.push_back(FloatToBf16(v));
    }
    header[t.name] = {{"dtype", "BF16"},
                      {"shape", t.shape},
                      {"data_offsets", {2 * begin, 2 * data.size()}}};
  }
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');
  std::ofstream out(dir / "model.safetensors", std::ios::binary);
  const uint64_t len = h.size();
  out.write(reinterpret_cast<const char*>(&len), 8);
  out.write(h.data(), static_cast<std::streamsize>(h.size()));
  out.write(reinterpret_cast<const char*>(data.data()),
            static_cast<std::streamsize>(2 * data.size()));
  std::ifstream cin(src / "config.json");
  nlohmann::json config = nlohmann::json::parse(cin);
  config["torch_dtype"] = "bfloat16";
  std::ofstream(dir / "config.json") << config.dump(2);
}

struct Scored {
  double perplexity = 0;
  std::vector<int32_t> argmax;
  std::vector<float> logits;
};

// Teacher-forced over `ids` in one prefill step.
Scored Score(const std::filesystem::path& dir, CpuBf16Activations act,
             const std::vector<int32_t>& ids) {
  Scored s;
  CpuBackendOptions o;
  o.threads = 2;
  o.bf16_activations = act;
  auto backend = CreateCpuBackend(o);
  EXPECT_TRUE(backend.ok());
  if (!backend.ok()) return s;
  auto model = Model::Load(dir, backend->get(), 1024, {});
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  if (!model.ok()) return s;
  const ModelConfig& c = (*model)->config();
  EXPECT_TRUE((*backend)
                  ->InitKvCache({c.num_layers, 32, kBlockSize, c.num_heads, c.num_kv_heads,
                                 c.head_dim, DType::kF32})
                  .ok());
  BatchBuilder bb(1, static_cast<int>(ids.size()) + 1, kBlockSize);
  bb.Append(0, ids);
  ForwardBatch b = bb.Build({{0, static_cast<int>(ids.size())}});
  b.logits_indices.clear();
  for (int i = 0; i + 1 < static_cast<int>(ids.size()); ++i) b.logits_indices.push_back(i);
  auto logits = (*model)->Forward(b);
  EXPECT_TRUE(logits.ok()) << logits.status().ToString();
  if (!logits.ok()) return s;
  const int vocab = c.vocab_size;
  double nll = 0;
  for (size_t i = 0; i + 1 < ids.size(); ++i) {
    std::span<const float> row = logits->subspan(i * vocab, vocab);
    const float mx = *std::max_element(row.begin(), row.end());
    double z = 0;
    for (float v : row) z += std::exp(static_cast<double>(v) - mx);
    nll -= static_cast<double>(row[ids[i + 1]]) - mx - std::log(z);
    s.argmax.push_back(
        static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin()));
  }
  s.perplexity = std::exp(nll / static_cast<double>(ids.size() - 1));
  s.logits.assign(logits->begin(), logits->end());
  return s;
}

TEST(Bf16ActivationsTest, Stories260KBf16PerplexityAndAgreement) {
  LLMUX_REQUIRE_DATA(src, testing::SharedDataDir() / "models" / "stories260K-hf");
  const auto dir = std::filesystem::temp_directory_path() /
                   ("llmux-bf16-act-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  WriteBf16Copy(src, dir);
  std::ifstream in(src / "expected_greedy.json");
  nlohmann::json j = nlohmann::json::parse(in);
  std::vector<int32_t> text = j["prompt_ids"].get<std::vector<int32_t>>();
  for (int32_t t : j["greedy_ids"].get<std::vector<int32_t>>()) text.push_back(t);
  ASSERT_EQ(text.size(), 201u);

  const Scored a = Score(dir, CpuBf16Activations::kF32, text);
  const Scored b = Score(dir, CpuBf16Activations::kBf16, text);
  std::filesystem::remove_all(dir);
  ASSERT_EQ(a.argmax.size(), 200u);
  ASSERT_EQ(b.argmax.size(), 200u);
  size_t same = 0;
  for (size_t i = 0; i < a.argmax.size(); ++i) same += a.argmax[i] == b.argmax[i];
  std::printf(
      "stories260K bf16 weights: perplexity f32 activations %.4f, bf16 activations %.4f "
      "(%+.3f%%), next-token agreement %zu of 200\n",
      a.perplexity, b.perplexity, 100.0 * (b.perplexity / a.perplexity - 1.0), same);
  EXPECT_GT(a.perplexity, 1.0);
  EXPECT_LT(a.perplexity, 3.0) << "the model's own greedy text is highly likely under it";
  EXPECT_NEAR(b.perplexity / a.perplexity, 1.0, 0.01);
  EXPECT_GE(same, 190u);
  // Without AVX-512 BF16 both run the F32 path (CI=true requires the instruction set).
  const char* ci = std::getenv("CI");
  if (cpu::Bf16DotAvailable() || (ci != nullptr && std::string(ci) == "true")) {
    EXPECT_NE(0, std::memcmp(a.logits.data(), b.logits.data(), 4 * a.logits.size()))
        << "bf16 activations changed nothing";
  }
}

}  // namespace
}  // namespace llmux
