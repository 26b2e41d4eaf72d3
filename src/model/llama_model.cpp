// The Llama-family forward pass (Llama 2/3, Mistral, Qwen2), written once against Backend.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "llmux/backend.h"
#include "llmux/model.h"
#include "llmux/safetensors.h"
#include "model/gguf_llama.h"
#include "model/synthetic_weights.h"
#include "model/weight_fusion.h"

namespace llmux {
namespace {

// NOTE: q/k/v and gate/up are fused at load (model/weight_fusion.h): one GEMM reads the
// normed activations once per layer input, and the outputs are column views of one buffer.
struct LayerWeights {
  Tensor attn_norm;  // [1, dim]
  Tensor w_qkv;      // [q_size + 2 * kv_size, dim]: rows of q_proj, then k_proj, then v_proj
  Tensor b_qkv;      // [1, q_size + 2 * kv_size] (attention_bias only)
  Tensor wo;         // [dim, q_size]
  Tensor ffn_norm;   // [1, dim]
  Tensor w_gate_up;  // [2 * ffn, dim]: rows of gate_proj, then up_proj
  Tensor w_down;     // [dim, ffn]
};

// Activation buffers sized for max_batch_tokens rows, allocated once at load.
struct Activations {
  std::vector<std::unique_ptr<DeviceBuffer>> owned;
  Tensor residual;  // [T, dim]
  Tensor normed;    // [T, dim]
  Tensor qkv;       // [T, q_size + 2 * kv_size]; q, k, v are column views of it
  Tensor attn;      // [T, q_size]
  Tensor proj;      // [T, dim] output of o_proj / down_proj, added into the residual
  Tensor gate_up;   // [T, 2 * ffn]; gate, up are column views of it
  Tensor act;       // [T, ffn]
  Tensor last;      // [T, dim] rows gathered for logits
  Tensor logits;    // [T, vocab] F32
};

class LlamaModel final : public Model {
 public:
  LlamaModel(ModelConfig config, std::unique_ptr<WeightStore> store, Backend* backend,
             int max_batch_tokens, const ModelLoadOptions& options)
      : config_(std::move(config)),
        store_(std::move(store)),
        backend_(backend),
        max_batch_tokens_(max_batch_tokens),
        options_(options) {}

  Status Init();

  const ModelConfig& config() const override { return config_; }
  StatusOr<std::span<const float>> Forward(const ForwardBatch& batch) override;
  StatusOr<Tensor> ForwardLogits(const ForwardBatch& batch) override;

 private:
  // Finds tensor `name` with the expected shape ({rows, cols}; rows == 0 means 1-D of `cols`).
  StatusOr<const HostTensor*> Find(const std::string& name, int64_t rows, int64_t cols) const;
  // Find + Load.
  StatusOr<Tensor> Bind(const std::string& name, int64_t rows, int64_t cols, WeightKind kind);
  // Quantizes `t` to Q8_0 when options_ ask for it (matrices of whole blocks), then
  // Backend::LoadWeight.
  StatusOr<Tensor> Load(const HostTensor& t, WeightKind kind);
  // Loads the row-wise concatenation of `parts` (each checked as Find does) as one weight
  // called `fused_name` (model/weight_fusion.h).
  struct Part {
    std::string name;
    int64_t rows;
    int64_t cols;
  };
  StatusOr<Tensor> BindFused(const std::string& fused_name, std::span<const Part> parts,
                             WeightKind kind);
  // A Q8_0 copy of the 2-D float tensor t (rows of whole blocks), owned by quantized_.
  HostTensor QuantizeQ8_0(const HostTensor& t);
  Status AllocateActivations();
  StatusOr<Tensor> NewActivation(int64_t rows, int64_t cols, DType dtype);

  ModelConfig config_;
  std::unique_ptr<WeightStore> store_;  // keeps the mmap'd weights alive
  Backend* backend_;
  int max_batch_tokens_;
  ModelLoadOptions options_;
  // Q8_0 copies of the weights when options_.quantize_q8_0 that the backend aliases.
  std::vector<std::unique_ptr<std::byte[]>> quantized_;
  // Fused weights' host bytes the backend uses in place (backend.h: AliasesHostWeights).
  std::vector<OwnedHostTensor> fused_host_;

  Tensor embed_;       // [vocab, dim]
  Tensor final_norm_;  // [1, dim]
  Tensor lm_head_;     // [vocab, dim] (== embed_ when tied)
  Tensor inv_freq_;    // [1, head_dim / 2]
  std::vector<LayerWeights> layers_;
  Activations act_;
  std::vector<float> host_logits_;  // [num_logits, vocab]
};

HostTensor LlamaModel::QuantizeQ8_0(const HostTensor& t) {
  const int64_t rows = t.shape[0], cols = t.shape[1];
  const size_t row_bytes = DTypeBytes(DType::kQ8_0, cols);
  auto buf = std::make_unique<std::byte[]>(row_bytes * static_cast<size_t>(rows));
  std::vector<float> row(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    const std::byte* src = t.data + DTypeBytes(t.dtype, r * cols);
    for (int64_t i = 0; i < cols; ++i) {
      switch (t.dtype) {
        case DType::kF32: std::memcpy(&row[i], src + 4 * i, 4); break;
        case DType::kF16:
        case DType::kBF16: {
          uint16_t h;
          std::memcpy(&h, src + 2 * i, 2);
          row[i] = t.dtype == DType::kF16 ? HalfToFloat(h) : Bf16ToFloat(h);
          break;
        }
        case DType::kI32:
        case DType::kQ8_0: break;  // rejected / passed through by the caller
      }
    }
    QuantizeRowQ8_0(row.data(), cols, buf.get() + row_bytes * static_cast<size_t>(r));
  }
  HostTensor q;
  q.name = t.name;
  q.dtype = DType::kQ8_0;
  q.shape = t.shape;
  q.data = buf.get();
  q.nbytes = row_bytes * static_cast<size_t>(rows);
  quantized_.push_back(std::move(buf));
  return q;
}

StatusOr<const HostTensor*> LlamaModel::Find(const std::string& name, int64_t rows,
                                             int64_t cols) const {
  const HostTensor* t = store_->Find(name);
  if (t == nullptr) {
    return InvalidArgument("model is missing tensor '" + name + "' required by " +
                           std::string(ArchitectureName(config_.arch)));
  }
  const bool is_vector = rows == 0;
  const bool shape_ok = is_vector ? (t->shape.size() == 1 && t->shape[0] == cols)
                                  : (t->shape.size() == 2 && t->shape[0] == rows &&
                                     t->shape[1] == cols);
  if (!shape_ok) {
    std::string got;
    for (int64_t d : t->shape) {
      if (!got.empty()) got.push_back(',');
      got.append(std::to_string(d));
    }
    std::string want = is_vector ? std::to_string(cols)
                                 : std::to_string(rows) + "," + std::to_string(cols);
    return InvalidArgument("tensor '" + name + "' has shape [" + got + "], expected [" + want +
                           "] from config.json");
  }
  if (t->dtype == DType::kI32) {
    return InvalidArgument("tensor '" + name + "' has dtype i32; weights must be f32/f16/bf16");
  }
  return t;
}

StatusOr<Tensor> LlamaModel::Bind(const std::string& name, int64_t rows, int64_t cols,
                                  WeightKind kind) {
  LLMUX_ASSIGN_OR_RETURN(const HostTensor* t, Find(name, rows, cols));
  auto loaded = Load(*t, kind);
  if (!loaded.ok()) return loaded.status().WithContext("loading '" + name + "'");
  return loaded;
}

StatusOr<Tensor> LlamaModel::BindFused(const std::string& fused_name, std::span<const Part> parts,
                                       WeightKind kind) {
  std::vector<const HostTensor*> found;
  for (const Part& p : parts) {
    LLMUX_ASSIGN_OR_RETURN(const HostTensor* t, Find(p.name, p.rows, p.cols));
    found.push_back(t);
  }
  LLMUX_ASSIGN_OR_RETURN(OwnedHostTensor fused, ConcatRows(fused_name, found));
  auto loaded = Load(fused.tensor, kind);
  if (!loaded.ok()) return loaded.status().WithContext("loading '" + fused_name + "'");
  // NOTE: keep the bytes only when the backend reads them in place (CPU, unquantized); a copy
  // (CUDA, a Q8_0 quantization, an F32 vector) no longer needs them.
  const auto* data = static_cast<const std::byte*>(loaded->data);
  if (backend_->AliasesHostWeights() && data >= fused.tensor.data &&
      data < fused.tensor.data + fused.tensor.nbytes) {
    fused_host_.push_back(std::move(fused));
  }
  return loaded;
}

StatusOr<Tensor> LlamaModel::Load(const HostTensor& tensor, WeightKind kind) {
  const HostTensor* t = &tensor;
  HostTensor q8;
  // NOTE: a matrix whose rows are not whole 32-element blocks keeps its stored dtype (as
  // llama.cpp's quantizer falls back for such tensors); every matrix of the supported shapes
  // but stories260K's 172-wide down_proj is whole blocks.
  if (options_.quantize_q8_0 && kind != WeightKind::kVector && t->dtype != DType::kQ8_0 &&
      t->shape[1] % kQ8BlockElems == 0) {
    q8 = QuantizeQ8_0(*t);
    t = &q8;
  }
  auto loaded = backend_->LoadWeight(*t, kind);
  // NOTE: keep the Q8_0 bytes only when the backend reads them in place (the CPU backend's
  // embedding); a backend copy (CPU packed matrices, CUDA) makes them garbage.
  if (t == &q8 && loaded.ok()) {
    const auto* data = static_cast<const std::byte*>(loaded->data);
    if (data < q8.data || data >= q8.data + q8.nbytes) quantized_.pop_back();
  }
  return loaded;
}

Status LlamaModel::Init() {
  const ModelConfig& c = config_;
  const int64_t dim = c.hidden_size;
  LLMUX_ASSIGN_OR_RETURN(embed_,
                         Bind("model.embed_tokens.weight", c.vocab_size, dim, WeightKind::kEmbedding));
  LLMUX_ASSIGN_OR_RETURN(final_norm_, Bind("model.norm.weight", 0, dim, WeightKind::kVector));
  if (c.tie_word_embeddings || store_->Find("lm_head.weight") == nullptr) {
    if (!c.tie_word_embeddings) {
      return InvalidArgument(
          "model is missing tensor 'lm_head.weight' and config.json does not set "
          "tie_word_embeddings");
    }
    lm_head_ = embed_;
  } else {
    LLMUX_ASSIGN_OR_RETURN(lm_head_,
                           Bind("lm_head.weight", c.vocab_size, dim, WeightKind::kMatrix));
  }
  layers_.resize(c.num_layers);
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    LayerWeights& l = layers_[i];
    LLMUX_ASSIGN_OR_RETURN(l.attn_norm, Bind(p + "input_layernorm.weight", 0, dim, WeightKind::kVector));
    const Part qkv[] = {{p + "self_attn.q_proj.weight", c.q_size(), dim},
                        {p + "self_attn.k_proj.weight", c.kv_size(), dim},
                        {p + "self_attn.v_proj.weight", c.kv_size(), dim}};
    LLMUX_ASSIGN_OR_RETURN(l.w_qkv, BindFused(p + "self_attn.qkv_proj.weight", qkv, WeightKind::kMatrix));
    if (c.attention_bias) {
      const Part b[] = {{p + "self_attn.q_proj.bias", 0, c.q_size()},
                        {p + "self_attn.k_proj.bias", 0, c.kv_size()},
                        {p + "self_attn.v_proj.bias", 0, c.kv_size()}};
      LLMUX_ASSIGN_OR_RETURN(l.b_qkv, BindFused(p + "self_attn.qkv_proj.bias", b, WeightKind::kVector));
    }
    LLMUX_ASSIGN_OR_RETURN(l.wo, Bind(p + "self_attn.o_proj.weight", dim, c.q_size(), WeightKind::kMatrix));
    LLMUX_ASSIGN_OR_RETURN(l.ffn_norm, Bind(p + "post_attention_layernorm.weight", 0, dim, WeightKind::kVector));
    const Part gate_up[] = {{p + "mlp.gate_proj.weight", c.intermediate_size, dim},
                            {p + "mlp.up_proj.weight", c.intermediate_size, dim}};
    LLMUX_ASSIGN_OR_RETURN(l.w_gate_up, BindFused(p + "mlp.gate_up_proj.weight", gate_up, WeightKind::kMatrix));
    LLMUX_ASSIGN_OR_RETURN(l.w_down, Bind(p + "mlp.down_proj.weight", dim, c.intermediate_size, WeightKind::kMatrix));
  }
  const std::vector<float> inv_freq = RopeInvFreq(c);
  LLMUX_ASSIGN_OR_RETURN(inv_freq_, backend_->UploadF32(inv_freq, 1, static_cast<int64_t>(inv_freq.size())));
  // A backend that copied every weight no longer needs the host tensors (unmaps the files).
  if (!backend_->AliasesHostWeights()) store_.reset();
  return AllocateActivations();
}

StatusOr<Tensor> LlamaModel::NewActivation(int64_t rows, int64_t cols, DType dtype) {
  LLMUX_ASSIGN_OR_RETURN(auto buf, backend_->Allocate(static_cast<size_t>(rows * cols) * DTypeSize(dtype)));
  Tensor t = Tensor::Dense(buf->data(), dtype, rows, cols);
  act_.owned.push_back(std::move(buf));
  return t;
}

Status LlamaModel::AllocateActivations() {
  const int64_t t = max_batch_tokens_;
  const DType a = backend_->ActivationDType();
  const ModelConfig& c = config_;
  LLMUX_ASSIGN_OR_RETURN(act_.residual, NewActivation(t, c.hidden_size, a));
  LLMUX_ASSIGN_OR_RETURN(act_.normed, NewActivation(t, c.hidden_size, a));
  LLMUX_ASSIGN_OR_RETURN(act_.qkv, NewActivation(t, c.q_size() + 2 * c.kv_size(), a));
  LLMUX_ASSIGN_OR_RETURN(act_.attn, NewActivation(t, c.q_size(), a));
  LLMUX_ASSIGN_OR_RETURN(act_.proj, NewActivation(t, c.hidden_size, a));
  LLMUX_ASSIGN_OR_RETURN(act_.gate_up, NewActivation(t, 2 * c.intermediate_size, a));
  LLMUX_ASSIGN_OR_RETURN(act_.act, NewActivation(t, c.intermediate_size, a));
  LLMUX_ASSIGN_OR_RETURN(act_.last, NewActivation(t, c.hidden_size, a));
  LLMUX_ASSIGN_OR_RETURN(act_.logits, NewActivation(t, c.vocab_size, DType::kF32));
  return Status::Ok();
}

StatusOr<std::span<const float>> LlamaModel::Forward(const ForwardBatch& batch) {
  LLMUX_ASSIGN_OR_RETURN(Tensor logits, ForwardLogits(batch));
  if (logits.rows == 0) return std::span<const float>();
  host_logits_.resize(static_cast<size_t>(logits.rows) * config_.vocab_size);
  LLMUX_RETURN_IF_ERROR(backend_->CopyToHostF32(logits, host_logits_.data()));
  return std::span<const float>(host_logits_);
}

StatusOr<Tensor> LlamaModel::ForwardLogits(const ForwardBatch& batch) {
  const int64_t n = batch.num_tokens();
  const int64_t num_logits = static_cast<int64_t>(batch.logits_indices.size());
  if (n <= 0 || n > max_batch_tokens_) {
    return InvalidArgument("batch has " + std::to_string(n) + " tokens; this model was loaded for 1.." +
                           std::to_string(max_batch_tokens_));
  }
  for (int32_t id : batch.token_ids) {
    if (id < 0 || id >= config_.vocab_size) {
      return InvalidArgument("token id " + std::to_string(id) + " outside the vocabulary [0, " +
                             std::to_string(config_.vocab_size) + ")");
    }
  }
  LLMUX_RETURN_IF_ERROR(backend_->BeginBatch(batch));

  const ModelConfig& c = config_;
  const float eps = c.rms_norm_eps;
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  Tensor residual = act_.residual.RowSlice(0, n);
  Tensor normed = act_.normed.RowSlice(0, n);
  Tensor qkv = act_.qkv.RowSlice(0, n);
  Tensor q = qkv.ColSlice(0, c.q_size());
  Tensor k = qkv.ColSlice(c.q_size(), c.kv_size());
  Tensor v = qkv.ColSlice(c.q_size() + c.kv_size(), c.kv_size());
  Tensor attn = act_.attn.RowSlice(0, n), proj = act_.proj.RowSlice(0, n);
  Tensor gate_up = act_.gate_up.RowSlice(0, n), ff = act_.act.RowSlice(0, n);
  Tensor gate = gate_up.ColSlice(0, c.intermediate_size);
  Tensor up = gate_up.ColSlice(c.intermediate_size, c.intermediate_size);

  backend_->Embedding(embed_, residual);
  // NOTE: where each op has completed on return, a raised stop flag ends the step before the
  // next layer: the layers already run wrote K/V rows of this step's positions only, which
  // the step that computes them again overwrites.
  const std::atomic<bool>* stop = backend_->StopsBetweenLayers() ? batch.stop : nullptr;
  for (int i = 0; i < c.num_layers; ++i) {
    if (stop != nullptr && stop->load(std::memory_order_relaxed)) {
      return Status(StatusCode::kAborted, "step stopped before layer " + std::to_string(i));
    }
    const LayerWeights& l = layers_[i];
    // The previous layer's FFN output (proj) joins the residual stream here, fused with the norm.
    if (i == 0) {
      backend_->RmsNorm(residual, l.attn_norm, eps, normed);
    } else {
      backend_->AddRmsNorm(residual, proj, l.attn_norm, eps, normed);
    }
    backend_->MatMul(normed, l.w_qkv, c.attention_bias ? &l.b_qkv : nullptr, qkv);
    backend_->Rope(q, k, inv_freq_);
    backend_->WriteKv(i, k, v);
    backend_->Attention(i, q, scale, attn);
    backend_->MatMul(attn, l.wo, nullptr, proj);
    backend_->AddRmsNorm(residual, proj, l.ffn_norm, eps, normed);
    backend_->MatMul(normed, l.w_gate_up, nullptr, gate_up);
    backend_->SiluMul(gate, up, ff);
    backend_->MatMul(ff, l.w_down, nullptr, proj);
  }
  if (num_logits == 0) return act_.logits.RowSlice(0, 0);
  backend_->AddRmsNorm(residual, proj, final_norm_, eps, normed);
  // Only the rows that will be sampled go through the (large) vocabulary projection.
  Tensor last = act_.last.RowSlice(0, num_logits);
  backend_->GatherLogitsRows(normed, last);
  Tensor logits = act_.logits.RowSlice(0, num_logits);
  backend_->MatMul(last, lm_head_, nullptr, logits);
  return logits;
}

}  // namespace

StatusOr<std::unique_ptr<Model>> Model::Load(const std::filesystem::path& dir, Backend* backend,
                                             int max_batch_tokens,
                                             const ModelLoadOptions& options) {
  LLMUX_CHECK(backend != nullptr);
  if (max_batch_tokens <= 0) return InvalidArgument("max_batch_tokens must be positive");
  ModelConfig config;
  std::unique_ptr<WeightStore> store;
  std::error_code ec;
  if (dir.extension() == ".gguf" && std::filesystem::is_regular_file(dir, ec)) {
    LLMUX_ASSIGN_OR_RETURN(GgufLlama gguf, OpenGgufLlama(dir));
    config = std::move(gguf.config);
    store = std::move(gguf.weights);
  } else {
    LLMUX_ASSIGN_OR_RETURN(config, LoadModelConfig(dir));
    LLMUX_ASSIGN_OR_RETURN(store, WeightStore::Open(dir));
  }
  auto model = std::make_unique<LlamaModel>(std::move(config), std::move(store), backend,
                                            max_batch_tokens, options);
  Status s = model->Init();
  if (!s.ok()) return s.WithContext("model " + dir.string());
  return std::unique_ptr<Model>(std::move(model));
}

StatusOr<std::unique_ptr<Model>> Model::LoadSynthetic(const std::filesystem::path& dir,
                                                      Backend* backend, int max_batch_tokens,
                                                      uint64_t seed) {
  LLMUX_CHECK(backend != nullptr);
  if (max_batch_tokens <= 0) return InvalidArgument("max_batch_tokens must be positive");
  LLMUX_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(dir));
  auto store = std::make_unique<SyntheticWeightStore>(config, seed,
                                                      /*keep_all=*/backend->AliasesHostWeights());
  auto model = std::make_unique<LlamaModel>(std::move(config), std::move(store), backend,
                                            max_batch_tokens, ModelLoadOptions{});
  Status s = model->Init();
  if (!s.ok()) return s.WithContext("synthetic model " + dir.string());
  return std::unique_ptr<Model>(std::move(model));
}

}  // namespace llmux
