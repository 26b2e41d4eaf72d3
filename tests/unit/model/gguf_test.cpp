// GGUF reader: parsing, hardening against malformed files, and the Llama view (a model
// converted to GGUF as llama.cpp's converter does gives the same logits as its safetensors).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include <unistd.h>

#include "common/batch_builder.h"
#include "llmux/backend.h"
#include "llmux/make_model.h"
#include "llmux/model.h"
#include "llmux/safetensors.h"
#include "model/gguf_llama.h"

namespace llmux {
namespace {

// ---- A GGUF writer (the layout of gguf_file.h) ----
struct Kv {
  std::string key;
  uint32_t type;
  std::vector<std::byte> value;
};
struct TensorSpec {
  std::string name;
  std::vector<uint64_t> ne;  // innermost first
  uint32_t type;             // GGML type
  std::vector<std::byte> data;
  int64_t offset_override = -1;
};

template <class T>
void Put(std::vector<std::byte>& out, T v) {
  const auto* p = reinterpret_cast<const std::byte*>(&v);
  out.insert(out.end(), p, p + sizeof(T));
}
void PutStr(std::vector<std::byte>& out, const std::string& s) {
  Put<uint64_t>(out, s.size());
  for (char c : s) out.push_back(static_cast<std::byte>(c));
}
template <class T>
Kv Scalar(const std::string& key, uint32_t type, T v) {
  Kv kv{key, type, {}};
  Put<T>(kv.value, v);
  return kv;
}
Kv Str(const std::string& key, const std::string& s) {
  Kv kv{key, 8, {}};
  PutStr(kv.value, s);
  return kv;
}

std::vector<std::byte> WriteGguf(const std::vector<Kv>& kvs, const std::vector<TensorSpec>& ts,
                                 uint64_t alignment = 32, uint32_t version = 3) {
  std::vector<std::byte> out;
  Put<uint32_t>(out, 0x46554747);
  Put<uint32_t>(out, version);
  Put<uint64_t>(out, ts.size());
  Put<uint64_t>(out, kvs.size());
  for (const Kv& kv : kvs) {
    PutStr(out, kv.key);
    Put<uint32_t>(out, kv.type);
    out.insert(out.end(), kv.value.begin(), kv.value.end());
  }
  std::vector<uint64_t> offsets;
  uint64_t off = 0;
  for (const TensorSpec& t : ts) {
    offsets.push_back(t.offset_override >= 0 ? static_cast<uint64_t>(t.offset_override) : off);
    off = (off + t.data.size() + alignment - 1) / alignment * alignment;
  }
  for (size_t i = 0; i < ts.size(); ++i) {
    PutStr(out, ts[i].name);
    Put<uint32_t>(out, static_cast<uint32_t>(ts[i].ne.size()));
    for (uint64_t n : ts[i].ne) Put<uint64_t>(out, n);
    Put<uint32_t>(out, ts[i].type);
    Put<uint64_t>(out, offsets[i]);
  }
  out.resize((out.size() + alignment - 1) / alignment * alignment);
  const size_t data_start = out.size();
  for (size_t i = 0; i < ts.size(); ++i) {
    if (ts[i].offset_override >= 0) continue;
    out.resize(std::max(out.size(), data_start + offsets[i] + ts[i].data.size()));
    if (ts[i].data.empty()) continue;  // memcpy from an empty vector's null data() is UB
    std::memcpy(out.data() + data_start + offsets[i], ts[i].data.data(), ts[i].data.size());
  }
  return out;
}

std::vector<std::byte> Bytes(size_t n, uint8_t first) {
  std::vector<std::byte> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>(first + i);
  return v;
}

StatusOr<std::unique_ptr<GgufFile>> Parse(const std::vector<std::byte>& img) {
  return GgufFile::FromBytes(img, "t.gguf");
}

TEST(GgufTest, ParsesMetadataAndTensors) {
  const std::vector<Kv> kvs = {Str("general.architecture", "llama"),
                               Scalar<uint32_t>("llama.block_count", 4, 3),
                               Scalar<int32_t>("neg", 5, -7), Scalar<float>("f", 6, 0.5f),
                               Scalar<uint8_t>("b", 7, 1)};
  const std::vector<TensorSpec> ts = {{"a", {4, 3}, 0, Bytes(48, 1)},
                                      {"h", {5}, 1, Bytes(10, 2)},
                                      {"bf", {2, 2}, 30, Bytes(8, 3)},
                                      {"q", {64, 2}, 8, Bytes(136, 4)}};
  const auto img = WriteGguf(kvs, ts);
  auto f = Parse(img);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ((*f)->version(), 3u);
  EXPECT_EQ(std::get<std::string>(*(*f)->Get("general.architecture")), "llama");
  EXPECT_EQ(std::get<uint64_t>(*(*f)->Get("llama.block_count")), 3u);
  EXPECT_EQ(std::get<int64_t>(*(*f)->Get("neg")), -7);
  EXPECT_EQ(std::get<double>(*(*f)->Get("f")), 0.5);
  EXPECT_EQ(std::get<bool>(*(*f)->Get("b")), true);
  EXPECT_EQ((*f)->Get("missing"), nullptr);
  ASSERT_EQ((*f)->tensors().size(), 4u);
  const HostTensor* a = (*f)->Find("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->dtype, DType::kF32);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(a->nbytes, 48u);
  EXPECT_EQ(0, std::memcmp(a->data, ts[0].data.data(), 48));
  const HostTensor* q = (*f)->Find("q");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->dtype, DType::kQ8_0);
  EXPECT_EQ(q->shape, (std::vector<int64_t>{2, 64}));
  EXPECT_EQ(q->nbytes, 136u);
  EXPECT_EQ(0, std::memcmp(q->data, ts[3].data.data(), 136));
  EXPECT_EQ((*f)->Find("bf")->dtype, DType::kBF16);
  EXPECT_EQ((*f)->Find("h")->shape, (std::vector<int64_t>{5}));
}

// Every strict prefix of a valid file is rejected (no crash, no read past the end).
TEST(GgufTest, RejectsEveryTruncation) {
  const auto img = WriteGguf({Str("general.architecture", "llama")},
                             {{"a", {4, 3}, 0, Bytes(48, 1)}, {"q", {32}, 8, Bytes(34, 2)}});
  ASSERT_TRUE(Parse(img).ok());
  for (size_t n = 0; n < img.size(); ++n) {
    std::vector<std::byte> cut(img.begin(), img.begin() + static_cast<std::ptrdiff_t>(n));
    auto f = Parse(cut);
    ASSERT_FALSE(f.ok()) << "prefix of " << n << " bytes accepted";
  }
}

std::string Error(const std::vector<std::byte>& img) {
  auto f = Parse(img);
  return f.ok() ? "" : f.status().ToString();
}

TEST(GgufTest, RejectsMalformedFilesNamingTheProblem) {
  auto img = WriteGguf({}, {{"a", {4}, 0, Bytes(16, 0)}});
  img[0] = std::byte{'X'};
  EXPECT_NE(Error(img).find("not a GGUF file"), std::string::npos);
  EXPECT_NE(Error(WriteGguf({}, {}, 32, 1)).find("GGUF version 1"), std::string::npos);
  EXPECT_NE(Error(WriteGguf({}, {{"w", {32, 2}, 2, Bytes(36, 0)}})).find("GGML type 2"),
            std::string::npos);
  EXPECT_NE(Error(WriteGguf({}, {{"w", {48}, 8, Bytes(51, 0)}})).find("whole 32-element"),
            std::string::npos);
  EXPECT_NE(Error(WriteGguf({}, {{"a", {4}, 0, Bytes(16, 0)}, {"a", {4}, 0, Bytes(16, 0)}}))
                .find("appears twice"),
            std::string::npos);
  EXPECT_NE(Error(WriteGguf({Str("k", "a"), Str("k", "b")}, {})).find("appears twice"),
            std::string::npos);
  EXPECT_NE(Error(WriteGguf({}, {{"a", {8}, 0, Bytes(32, 0)}, {"b", {8}, 0, {}, 0}}))
                .find("overlaps"),
            std::string::npos);
  EXPECT_NE(Error(WriteGguf({}, {{"a", {8}, 0, {}, 4}})).find("not aligned"), std::string::npos);
  EXPECT_NE(Error(WriteGguf({}, {{"a", {8}, 0, {}, 64}})).find("extends past"), std::string::npos);
  EXPECT_NE(Error(WriteGguf({}, {{"a", {1ull << 32, 1ull << 32, 2}, 0, {}}})).find("too large"),
            std::string::npos);
  EXPECT_NE(Error(WriteGguf({}, {{"a", {0}, 0, {}}})).find("zero"), std::string::npos);
  EXPECT_NE(Error(WriteGguf({Scalar<uint32_t>("general.alignment", 4, 24)}, {})).find("power of two"),
            std::string::npos);
  EXPECT_NE(Error(WriteGguf({Scalar<uint8_t>("b", 7, 2)}, {})).find("bool value"),
            std::string::npos);
  // Counts and lengths far beyond the file.
  std::vector<std::byte> huge;
  Put<uint32_t>(huge, 0x46554747);
  Put<uint32_t>(huge, 3);
  Put<uint64_t>(huge, 0);
  Put<uint64_t>(huge, 1ull << 62);
  EXPECT_NE(Error(huge).find("exceeds the file"), std::string::npos);
  Kv arr{"arr", 9, {}};
  Put<uint32_t>(arr.value, 4);
  Put<uint64_t>(arr.value, 1ull << 61);
  EXPECT_NE(Error(WriteGguf({arr}, {})).find("exceeds the file"), std::string::npos);
  Kv nested{"arr", 9, {}};
  Put<uint32_t>(nested.value, 9);
  Put<uint64_t>(nested.value, 0);
  EXPECT_NE(Error(WriteGguf({nested}, {})).find("nested"), std::string::npos);
}

// ---- The Llama view: a generated model converted to GGUF as llama.cpp's converter does ----

// HF -> GGUF row order of attn_q / attn_k (convert_hf_to_gguf.py's permute):
// GGUF row h * d + 2 * i + j holds HF row h * d + j * d / 2 + i.
std::vector<std::byte> Permute(const HostTensor& t, size_t row_bytes, int heads) {
  const int64_t rows = t.shape[0], d = rows / heads;
  std::vector<std::byte> out(t.nbytes);
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t j = 0; j < 2; ++j) {
      for (int64_t i = 0; i < d / 2; ++i) {
        std::memcpy(out.data() + (h * d + 2 * i + j) * row_bytes,
                    t.data + (h * d + j * d / 2 + i) * row_bytes, row_bytes);
      }
    }
  }
  return out;
}

// Writes DIR's weights as a GGUF file; q8: 2-D tensors quantized with QuantizeRowQ8_0.
void ConvertToGguf(const std::filesystem::path& dir, const ModelConfig& c, bool q8,
                   const std::filesystem::path& out) {
  auto store = WeightStore::Open(dir);
  ASSERT_TRUE(store.ok());
  std::map<std::string, std::string> names = {{"model.embed_tokens.weight", "token_embd.weight"},
                                              {"model.norm.weight", "output_norm.weight"},
                                              {"lm_head.weight", "output.weight"}};
  const std::map<std::string, std::string> layer = {
      {"input_layernorm.weight", "attn_norm.weight"}, {"self_attn.q_proj.weight", "attn_q.weight"},
      {"self_attn.k_proj.weight", "attn_k.weight"},   {"self_attn.v_proj.weight", "attn_v.weight"},
      {"self_attn.o_proj.weight", "attn_output.weight"},
      {"post_attention_layernorm.weight", "ffn_norm.weight"},
      {"mlp.gate_proj.weight", "ffn_gate.weight"},     {"mlp.up_proj.weight", "ffn_up.weight"},
      {"mlp.down_proj.weight", "ffn_down.weight"}};
  for (int i = 0; i < c.num_layers; ++i) {
    for (const auto& [hf, gg] : layer) {
      names["model.layers." + std::to_string(i) + "." + hf] = "blk." + std::to_string(i) + "." + gg;
    }
  }
  std::vector<TensorSpec> ts;
  for (const std::string& name : (*store)->Names()) {
    const HostTensor* t = (*store)->Find(name);
    ASSERT_TRUE(names.count(name)) << name;
    TensorSpec s;
    s.name = names[name];
    for (auto it = t->shape.rbegin(); it != t->shape.rend(); ++it) s.ne.push_back(*it);
    HostTensor src = *t;
    std::vector<std::byte> quantized;
    if (q8 && t->shape.size() == 2) {
      const int64_t cols = t->shape[1];
      std::vector<float> row(cols);
      quantized.resize(DTypeBytes(DType::kQ8_0, t->numel()));
      for (int64_t r = 0; r < t->shape[0]; ++r) {
        for (int64_t k = 0; k < cols; ++k) {
          uint16_t h;
          std::memcpy(&h, t->data + 2 * (r * cols + k), 2);
          row[k] = HalfToFloat(h);
        }
        QuantizeRowQ8_0(row.data(), cols, quantized.data() + DTypeBytes(DType::kQ8_0, r * cols));
      }
      src.data = quantized.data();
      src.nbytes = quantized.size();
      src.dtype = DType::kQ8_0;
    }
    s.type = src.dtype == DType::kQ8_0 ? 8 : src.dtype == DType::kF16 ? 1 : 0;
    const bool is_q = s.name.find("attn_q.weight") != std::string::npos;
    const bool is_k = s.name.find("attn_k.weight") != std::string::npos;
    if (is_q || is_k) {
      s.data = Permute(src, DTypeBytes(src.dtype, src.shape[1]), is_q ? c.num_heads : c.num_kv_heads);
    } else {
      s.data.assign(src.data, src.data + src.nbytes);
    }
    ts.push_back(std::move(s));
  }
  const std::vector<Kv> kvs = {
      Str("general.architecture", "llama"),
      Scalar<uint32_t>("llama.embedding_length", 4, c.hidden_size),
      Scalar<uint32_t>("llama.feed_forward_length", 4, c.intermediate_size),
      Scalar<uint32_t>("llama.block_count", 4, c.num_layers),
      Scalar<uint32_t>("llama.attention.head_count", 4, c.num_heads),
      Scalar<uint32_t>("llama.attention.head_count_kv", 4, c.num_kv_heads),
      Scalar<uint32_t>("llama.context_length", 4, c.max_position_embeddings),
      Scalar<float>("llama.rope.freq_base", 6, c.rope_theta),
      Scalar<float>("llama.attention.layer_norm_rms_epsilon", 6, c.rms_norm_eps),
      Scalar<uint32_t>("tokenizer.ggml.bos_token_id", 4, c.bos_token_id)};
  const auto img = WriteGguf(kvs, ts);
  std::FILE* f = std::fopen(out.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(std::fwrite(img.data(), 1, img.size(), f), img.size());
  std::fclose(f);
}

std::vector<float> Logits(const std::filesystem::path& path, bool q8) {
  auto backend = CreateCpuBackend(CpuBackendOptions{2, false});
  EXPECT_TRUE(backend.ok());
  ModelLoadOptions lo;
  lo.quantize_q8_0 = q8;
  auto model = Model::Load(path, backend->get(), 64, lo);
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  if (!model.ok()) return {};
  const ModelConfig& c = (*model)->config();
  EXPECT_TRUE((*backend)->InitKvCache({c.num_layers, 4, 16, c.num_heads, c.num_kv_heads,
                                       c.head_dim, DType::kF32}).ok());
  testing::BatchBuilder bb(1, 40, 16);
  bb.Append(0, {1, 17, 300, 45, 8, 99, 200, 3, 511, 64, 7, 120});
  auto logits = (*model)->Forward(bb.Build({{0, 12}}));
  EXPECT_TRUE(logits.ok());
  return logits.ok() ? std::vector<float>(logits->begin(), logits->end()) : std::vector<float>{};
}

TEST(GgufLlamaTest, ConvertedModelGivesTheSafetensorsLogitsBitForBit) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("llmux_gguf_tiny_" + std::to_string(::getpid()));
  MakeModelOptions mo;
  mo.shape = "tiny";
  mo.dtype = DType::kF16;
  mo.seed = 9;
  mo.out_dir = dir;
  auto made = MakeModel(mo);
  ASSERT_TRUE(made.ok()) << made.status().ToString();
  ConvertToGguf(dir, made->config, false, dir / "f16.gguf");
  ConvertToGguf(dir, made->config, true, dir / "q8_0.gguf");

  auto llama = OpenGgufLlama(dir / "q8_0.gguf");
  ASSERT_TRUE(llama.ok()) << llama.status().ToString();
  EXPECT_EQ(llama->config.hidden_size, made->config.hidden_size);
  EXPECT_EQ(llama->config.num_kv_heads, made->config.num_kv_heads);
  EXPECT_EQ(llama->config.vocab_size, made->config.vocab_size);
  EXPECT_FALSE(llama->config.tie_word_embeddings);
  ASSERT_NE(llama->weights->Find("model.layers.3.self_attn.k_proj.weight"), nullptr);
  EXPECT_EQ(llama->weights->Find("model.layers.3.self_attn.k_proj.weight")->dtype, DType::kQ8_0);

  const auto ref_f16 = Logits(dir, false);
  const auto ref_q8 = Logits(dir, true);
  const auto gguf_f16 = Logits(dir / "f16.gguf", false);
  const auto gguf_q8 = Logits(dir / "q8_0.gguf", false);
  std::filesystem::remove_all(dir);
  ASSERT_FALSE(ref_f16.empty());
  ASSERT_EQ(ref_f16.size(), gguf_f16.size());
  EXPECT_EQ(0, std::memcmp(ref_f16.data(), gguf_f16.data(), 4 * ref_f16.size()));
  ASSERT_EQ(ref_q8.size(), gguf_q8.size());
  EXPECT_EQ(0, std::memcmp(ref_q8.data(), gguf_q8.data(), 4 * ref_q8.size()))
      << "a Q8_0 GGUF must match quantize-at-load bit for bit";
  EXPECT_NE(0, std::memcmp(ref_f16.data(), ref_q8.data(), 4 * ref_q8.size()));
}

TEST(GgufLlamaTest, RejectsOtherArchitecturesAndMissingKeys) {
  auto f = GgufFile::FromBytes(WriteGguf({Str("general.architecture", "qwen2")}, {}), "x.gguf");
  ASSERT_TRUE(f.ok());
  auto l = GgufLlamaFromFile(std::move(f).value());
  EXPECT_EQ(l.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(l.status().message().find("qwen2"), std::string::npos);
  auto g = GgufFile::FromBytes(WriteGguf({Str("general.architecture", "llama")}, {}), "x.gguf");
  ASSERT_TRUE(g.ok());
  auto m = GgufLlamaFromFile(std::move(g).value());
  EXPECT_NE(m.status().message().find("llama.embedding_length"), std::string::npos);
}

// The fuzz seeds that describe valid models stay valid (so the fuzzer starts from files that
// reach the Llama view and its un-permutation).
TEST(GgufLlamaTest, FuzzSeedsOfValidModelsParse) {
  for (const char* seed : {"llama_q8", "llama_v2_align64"}) {
    auto llama = OpenGgufLlama(std::filesystem::path(LLMUX_SOURCE_DIR) / "tests/fuzz/corpus/gguf" / seed);
    ASSERT_TRUE(llama.ok()) << seed << ": " << llama.status().ToString();
    EXPECT_EQ(llama->config.hidden_size, 32);
    EXPECT_EQ(llama->config.num_kv_heads, 1);
    EXPECT_EQ(llama->config.vocab_size, 8);
    EXPECT_TRUE(llama->config.tie_word_embeddings);
    ASSERT_NE(llama->weights->Find("model.layers.0.self_attn.q_proj.weight"), nullptr);
  }
}

}  // namespace
}  // namespace llmux
