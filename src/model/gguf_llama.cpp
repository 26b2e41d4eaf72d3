#include "model/gguf_llama.h"

#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace llmux {
namespace {

class GgufWeightStore final : public WeightStore {
 public:
  explicit GgufWeightStore(std::unique_ptr<GgufFile> file) : file_(std::move(file)) {}

  const HostTensor* Find(std::string_view name) const override {
    auto it = tensors_.find(std::string(name));
    return it == tensors_.end() ? nullptr : &it->second;
  }
  std::vector<std::string> Names() const override {
    std::vector<std::string> names;
    for (const auto& [name, t] : tensors_) names.push_back(name);
    return names;
  }

  // Exposes GGUF tensor `src` as HF name `name`.
  void Add(const std::string& name, const HostTensor& src) {
    HostTensor t = src;
    t.name = name;
    tensors_[name] = std::move(t);
  }
  // Exposes `src` as `name` with its rows un-permuted for `heads` heads (see gguf_llama.h):
  // HF row h * d + j * d / 2 + i is GGUF row h * d + 2 * i + j.
  Status AddUnpermuted(const std::string& name, const HostTensor& src, int heads) {
    const int64_t rows = src.shape[0];
    if (heads <= 0 || rows % (2 * heads) != 0) {
      return DataLoss(file_->source() + ": tensor '" + src.name + "' has " +
                      std::to_string(rows) + " rows, not a whole number of heads");
    }
    const size_t row_bytes = src.nbytes / static_cast<size_t>(rows);
    auto buf = std::make_unique<std::byte[]>(src.nbytes);
    const int64_t d = rows / heads;
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t j = 0; j < 2; ++j) {
        for (int64_t i = 0; i < d / 2; ++i) {
          std::memcpy(buf.get() + (h * d + j * d / 2 + i) * row_bytes,
                      src.data + (h * d + 2 * i + j) * row_bytes, row_bytes);
        }
      }
    }
    HostTensor t = src;
    t.name = name;
    t.data = buf.get();
    owned_.push_back(std::move(buf));
    tensors_[name] = std::move(t);
    return Status::Ok();
  }

 private:
  std::unique_ptr<GgufFile> file_;
  std::map<std::string, HostTensor> tensors_;
  std::vector<std::unique_ptr<std::byte[]>> owned_;
};

// Metadata readers: each names the file and key in its error.
class Meta {
 public:
  explicit Meta(const GgufFile& f) : f_(f) {}

  StatusOr<int> Int(const std::string& key, std::optional<int> def, int lo, int hi) const {
    const GgufFile::Value* v = f_.Get(key);
    if (v == nullptr) {
      if (def) return *def;
      return InvalidArgument(f_.source() + ": missing metadata '" + key + "'");
    }
    int64_t n;
    if (const auto* u = std::get_if<uint64_t>(v)) {
      n = *u > static_cast<uint64_t>(hi) ? int64_t{hi} + 1 : static_cast<int64_t>(*u);
    } else if (const auto* s = std::get_if<int64_t>(v)) {
      n = *s;
    } else {
      return InvalidArgument(f_.source() + ": metadata '" + key + "' must be an integer");
    }
    if (n < lo || n > hi) {
      return InvalidArgument(f_.source() + ": metadata '" + key + "' = " + std::to_string(n) +
                             " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) +
                             "]");
    }
    return static_cast<int>(n);
  }
  StatusOr<float> Positive(const std::string& key, float def) const {
    const GgufFile::Value* v = f_.Get(key);
    if (v == nullptr) return def;
    const auto* d = std::get_if<double>(v);
    if (d == nullptr || !(*d > 0.0) || *d > 1e30) {
      return InvalidArgument(f_.source() + ": metadata '" + key + "' must be a positive float");
    }
    return static_cast<float>(*d);
  }
  std::string String(const std::string& key) const {
    const GgufFile::Value* v = f_.Get(key);
    const auto* s = v == nullptr ? nullptr : std::get_if<std::string>(v);
    return s == nullptr ? "" : *s;
  }

 private:
  const GgufFile& f_;
};

constexpr int kMaxDim = 1 << 20;

StatusOr<ModelConfig> ReadConfig(const GgufFile& f) {
  Meta m(f);
  const std::string arch = m.String("general.architecture");
  if (arch != "llama") {
    return Unimplemented(f.source() + ": general.architecture '" + arch +
                         "' is not supported (supported: llama)");
  }
  const std::string rope_type = m.String("llama.rope.scaling.type");
  if (!rope_type.empty() && rope_type != "none") {
    return Unimplemented(f.source() + ": llama.rope.scaling.type '" + rope_type +
                         "' is not supported from GGUF");
  }
  if (f.Find("rope_freqs.weight") != nullptr) {
    return Unimplemented(f.source() + ": rope_freqs.weight (Llama 3 rope scaling) is not "
                                      "supported from GGUF");
  }
  ModelConfig c;
  c.arch = Architecture::kLlama;
  LLMUX_ASSIGN_OR_RETURN(c.hidden_size, m.Int("llama.embedding_length", std::nullopt, 1, kMaxDim));
  LLMUX_ASSIGN_OR_RETURN(c.intermediate_size, m.Int("llama.feed_forward_length", std::nullopt, 1, kMaxDim));
  LLMUX_ASSIGN_OR_RETURN(c.num_layers, m.Int("llama.block_count", std::nullopt, 1, 1024));
  LLMUX_ASSIGN_OR_RETURN(c.num_heads, m.Int("llama.attention.head_count", std::nullopt, 1, 4096));
  LLMUX_ASSIGN_OR_RETURN(c.num_kv_heads, m.Int("llama.attention.head_count_kv", c.num_heads, 1, c.num_heads));
  if (c.num_heads % c.num_kv_heads != 0) {
    return InvalidArgument(f.source() + ": llama.attention.head_count must be a multiple of head_count_kv");
  }
  LLMUX_ASSIGN_OR_RETURN(c.head_dim, m.Int("llama.attention.key_length", c.hidden_size / c.num_heads, 2, 512));
  if (c.head_dim % 2 != 0) return InvalidArgument(f.source() + ": head dimension must be even");
  LLMUX_ASSIGN_OR_RETURN(c.max_position_embeddings, m.Int("llama.context_length", 2048, 2, 1 << 24));
  LLMUX_ASSIGN_OR_RETURN(c.rms_norm_eps, m.Positive("llama.attention.layer_norm_rms_epsilon", 1e-5f));
  LLMUX_ASSIGN_OR_RETURN(c.rope_theta, m.Positive("llama.rope.freq_base", 10000.0f));
  const HostTensor* embed = f.Find("token_embd.weight");
  if (embed == nullptr || embed->shape.size() != 2) {
    return InvalidArgument(f.source() + ": missing or non-matrix tensor 'token_embd.weight'");
  }
  if (embed->shape[0] > kMaxDim * 4) return InvalidArgument(f.source() + ": vocabulary too large");
  c.vocab_size = static_cast<int>(embed->shape[0]);
  c.tie_word_embeddings = f.Find("output.weight") == nullptr;
  LLMUX_ASSIGN_OR_RETURN(c.bos_token_id, m.Int("tokenizer.ggml.bos_token_id", -1, -1, c.vocab_size - 1));
  LLMUX_ASSIGN_OR_RETURN(int eos, m.Int("tokenizer.ggml.eos_token_id", -1, -1, c.vocab_size - 1));
  if (eos >= 0) c.eos_token_ids = {eos};
  c.torch_dtype = embed->dtype == DType::kQ8_0 ? DType::kF16 : embed->dtype;
  return c;
}

}  // namespace

StatusOr<GgufLlama> GgufLlamaFromFile(std::unique_ptr<GgufFile> file) {
  LLMUX_ASSIGN_OR_RETURN(ModelConfig c, ReadConfig(*file));
  const GgufFile& f = *file;
  auto store = std::make_unique<GgufWeightStore>(std::move(file));
  // GGUF name -> HF name; attn_q / attn_k come back un-permuted.
  const std::map<std::string, std::string> global = {
      {"token_embd.weight", "model.embed_tokens.weight"},
      {"output_norm.weight", "model.norm.weight"},
      {"output.weight", "lm_head.weight"},
  };
  const std::map<std::string, std::string> per_layer = {
      {"attn_norm.weight", "input_layernorm.weight"},
      {"attn_v.weight", "self_attn.v_proj.weight"},
      {"attn_output.weight", "self_attn.o_proj.weight"},
      {"ffn_norm.weight", "post_attention_layernorm.weight"},
      {"ffn_gate.weight", "mlp.gate_proj.weight"},
      {"ffn_up.weight", "mlp.up_proj.weight"},
      {"ffn_down.weight", "mlp.down_proj.weight"},
  };
  for (const HostTensor& t : f.tensors()) {
    if (auto it = global.find(t.name); it != global.end()) {
      store->Add(it->second, t);
      continue;
    }
    int layer = -1;
    size_t used = 0;
    if (t.name.rfind("blk.", 0) == 0) {
      try {
        layer = std::stoi(t.name.substr(4), &used);
      } catch (const std::exception&) {
        layer = -1;
      }
    }
    if (layer < 0 || layer >= c.num_layers || 4 + used >= t.name.size() || t.name[4 + used] != '.') {
      continue;  // not a tensor the Llama forward pass reads (the loader checks what it needs)
    }
    const std::string suffix = t.name.substr(5 + used);
    const std::string hf = "model.layers." + std::to_string(layer) + ".";
    if (auto it = per_layer.find(suffix); it != per_layer.end()) {
      store->Add(hf + it->second, t);
    } else if ((suffix == "attn_q.weight" || suffix == "attn_k.weight") && t.shape.size() == 2) {
      const bool q = suffix == "attn_q.weight";
      LLMUX_RETURN_IF_ERROR(store->AddUnpermuted(hf + (q ? "self_attn.q_proj.weight" : "self_attn.k_proj.weight"),
                                                 t, q ? c.num_heads : c.num_kv_heads));
    }
  }
  return GgufLlama{std::move(c), std::move(store)};
}

StatusOr<GgufLlama> OpenGgufLlama(const std::filesystem::path& path) {
  LLMUX_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> file, GgufFile::Open(path));
  return GgufLlamaFromFile(std::move(file));
}

}  // namespace llmux
