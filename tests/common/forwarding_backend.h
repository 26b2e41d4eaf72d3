// A Backend that forwards every call to another backend: tests derive from it
// and override the calls they observe or break (fault injection, op counting).
#pragma once

#include <memory>

#include "llmux/backend.h"

namespace llmux::testing {

class ForwardingBackend : public Backend {
 public:
  explicit ForwardingBackend(std::unique_ptr<Backend> inner) : inner_(std::move(inner)) {}
  std::string_view Name() const override { return inner_->Name(); }
  DType ActivationDType() const override { return inner_->ActivationDType(); }
  StatusOr<std::unique_ptr<DeviceBuffer>> Allocate(size_t bytes) override {
    return inner_->Allocate(bytes);
  }
  StatusOr<Tensor> LoadWeight(const HostTensor& src, WeightKind kind) override {
    return inner_->LoadWeight(src, kind);
  }
  bool AliasesHostWeights() const override { return inner_->AliasesHostWeights(); }
  bool StopsBetweenLayers() const override { return inner_->StopsBetweenLayers(); }
  StatusOr<Tensor> UploadF32(std::span<const float> v, int64_t rows, int64_t cols) override {
    return inner_->UploadF32(v, rows, cols);
  }
  Status InitKvCache(const KvCacheSpec& spec) override { return inner_->InitKvCache(spec); }
  const KvCacheSpec& kv_spec() const override { return inner_->kv_spec(); }
  Status BeginBatch(const ForwardBatch& batch) override { return inner_->BeginBatch(batch); }
  void Embedding(const Tensor& table, Tensor out) override { inner_->Embedding(table, out); }
  void RmsNorm(const Tensor& x, const Tensor& w, float eps, Tensor out) override {
    inner_->RmsNorm(x, w, eps, out);
  }
  void AddRmsNorm(Tensor r, const Tensor& x, const Tensor& w, float eps, Tensor out) override {
    inner_->AddRmsNorm(r, x, w, eps, out);
  }
  void MatMul(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor out) override {
    inner_->MatMul(x, w, bias, out);
  }
  void Rope(Tensor q, Tensor k, const Tensor& inv_freq) override { inner_->Rope(q, k, inv_freq); }
  void WriteKv(int layer, const Tensor& k, const Tensor& v) override {
    inner_->WriteKv(layer, k, v);
  }
  void Attention(int layer, const Tensor& q, float scale, Tensor out) override {
    inner_->Attention(layer, q, scale, out);
  }
  void SiluMul(const Tensor& g, const Tensor& u, Tensor out) override {
    inner_->SiluMul(g, u, out);
  }
  void GatherLogitsRows(const Tensor& x, Tensor out) override { inner_->GatherLogitsRows(x, out); }
  Status CopyToHostF32(const Tensor& src, float* dst) override {
    return inner_->CopyToHostF32(src, dst);
  }
  Status SampleTokens(Tensor logits, const SampleBatch& batch,
                      std::vector<SampledToken>* out) override {
    return inner_->SampleTokens(logits, batch, out);
  }
  Status DeviceHealth() const override { return inner_->DeviceHealth(); }
  std::vector<GemmChoice> GemmChoices() const override { return inner_->GemmChoices(); }
  std::optional<CpuBf16Activations> CpuBf16ActivationsInUse() const override {
    return inner_->CpuBf16ActivationsInUse();
  }
  Status ZeroKvBlocks(std::span<const int32_t> blocks) override {
    return inner_->ZeroKvBlocks(blocks);
  }
  Status ReadKvBlock(int layer, int32_t block, std::vector<std::byte>* k,
                     std::vector<std::byte>* v) override {
    return inner_->ReadKvBlock(layer, block, k, v);
  }

 private:
  std::unique_ptr<Backend> inner_;
};

}  // namespace llmux::testing
