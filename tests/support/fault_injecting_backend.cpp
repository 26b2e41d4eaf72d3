#include "fault_injecting_backend.h"

#include <cstdlib>
#include <utility>
#include <vector>

namespace llmux::testing {
namespace {

// What the injected errors say: cudaGetErrorString's text for an error of each kind
// (cudaErrorLaunchOutOfResources is a step fault, cudaErrorIllegalAddress a sticky one), with
// the op's name first as CudaBackend records it (cuda_backend_ops.cpp).
constexpr const char* kStepError = "MatMul: too many resources requested for launch (injected)";
constexpr const char* kStickyError =
    "Attention: an illegal memory access was encountered (injected)";

class FaultInjectingBackend final : public Backend {
 public:
  FaultInjectingBackend(std::unique_ptr<Backend> inner, const DeviceFaultSpec& spec)
      : inner_(std::move(inner)), spec_(spec) {}

  std::string_view Name() const override { return inner_->Name(); }
  DType ActivationDType() const override { return inner_->ActivationDType(); }
  StatusOr<std::unique_ptr<DeviceBuffer>> Allocate(size_t bytes) override {
    return inner_->Allocate(bytes);
  }
  StatusOr<Tensor> LoadWeight(const HostTensor& src, WeightKind kind) override {
    return inner_->LoadWeight(src, kind);
  }
  bool AliasesHostWeights() const override { return inner_->AliasesHostWeights(); }
  StatusOr<Tensor> UploadF32(std::span<const float> values, int64_t rows, int64_t cols) override {
    return inner_->UploadF32(values, rows, cols);
  }
  Status InitKvCache(const KvCacheSpec& spec) override { return inner_->InitKvCache(spec); }
  const KvCacheSpec& kv_spec() const override { return inner_->kv_spec(); }

  Status BeginBatch(const ForwardBatch& batch) override {
    // As CudaBackend::BeginBatch: a faulted device runs nothing more.
    if (Status health = DeviceHealth(); !health.ok()) return health;
    return inner_->BeginBatch(batch);
  }
  void Embedding(const Tensor& table, Tensor out) override { inner_->Embedding(table, out); }
  void RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor out) override {
    inner_->RmsNorm(x, weight, eps, out);
  }
  void AddRmsNorm(Tensor residual, const Tensor& x, const Tensor& weight, float eps,
                  Tensor out) override {
    inner_->AddRmsNorm(residual, x, weight, eps, out);
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
  void SiluMul(const Tensor& gate, const Tensor& up, Tensor out) override {
    inner_->SiluMul(gate, up, out);
  }
  void GatherLogitsRows(const Tensor& x, Tensor out) override { inner_->GatherLogitsRows(x, out); }
  Status CopyToHostF32(const Tensor& src, float* dst) override {
    if (Status health = DeviceHealth(); !health.ok()) return health;
    return inner_->CopyToHostF32(src, dst);
  }

  Status SampleTokens(Tensor logits, const SampleBatch& batch,
                      std::vector<SampledToken>* out) override {
    if (Status health = DeviceHealth(); !health.ok()) return health;
    for (const SampleRow& row : batch.rows) {
      if (row.seed != spec_.trigger_seed || row.output_token_ids.size() < spec_.after_tokens) {
        continue;
      }
      // The step's sync point reports the failure exactly as DeviceFaults::TakeStepStatus
      // words it; a sticky one also marks the backend faulted (DeviceFaults::Health).
      if (spec_.kind == cuda::FaultKind::kSticky) {
        sticky_ = kStickyError;
        return DeviceHealth();
      }
      return Unavailable(std::string("cuda step failed: ") + kStepError);
    }
    return inner_->SampleTokens(logits, batch, out);
  }

  Status DeviceHealth() const override {
    if (sticky_.empty()) return inner_->DeviceHealth();
    return Unavailable("cuda device faulted: " + sticky_);
  }
  std::vector<GemmChoice> GemmChoices() const override { return inner_->GemmChoices(); }
  Status ZeroKvBlocks(std::span<const int32_t> blocks) override {
    if (Status health = DeviceHealth(); !health.ok()) return health;
    return inner_->ZeroKvBlocks(blocks);
  }
  Status ReadKvBlock(int layer, int32_t block, std::vector<std::byte>* k,
                     std::vector<std::byte>* v) override {
    return inner_->ReadKvBlock(layer, block, k, v);
  }

 private:
  const std::unique_ptr<Backend> inner_;
  const DeviceFaultSpec spec_;
  std::string sticky_;  // the sticky fault ("" while healthy); engine thread only
};

}  // namespace

std::unique_ptr<Backend> WrapWithDeviceFault(std::unique_ptr<Backend> inner,
                                             const DeviceFaultSpec& spec) {
  return std::make_unique<FaultInjectingBackend>(std::move(inner), spec);
}

namespace {
// A whole decimal number: false for "", signs, spaces or trailing characters.
bool ParseDecimal(const std::string& text, uint64_t* value) {
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos) return false;
  char* end = nullptr;
  *value = std::strtoull(text.c_str(), &end, 10);
  return *end == '\0';
}
}  // namespace

bool ParseDeviceFaultSpec(const std::string& text, DeviceFaultSpec* spec) {
  std::vector<std::string> parts;
  for (size_t p = 0;;) {
    const size_t colon = text.find(':', p);
    parts.push_back(text.substr(p, colon == std::string::npos ? std::string::npos : colon - p));
    if (colon == std::string::npos) break;
    p = colon + 1;
  }
  if (parts.size() < 2 || parts.size() > 3) return false;
  if (parts[0] == "step") {
    spec->kind = cuda::FaultKind::kStep;
  } else if (parts[0] == "sticky") {
    spec->kind = cuda::FaultKind::kSticky;
  } else {
    return false;
  }
  if (!ParseDecimal(parts[1], &spec->trigger_seed)) return false;
  spec->after_tokens = 0;
  return parts.size() == 2 || ParseDecimal(parts[2], &spec->after_tokens);
}

}  // namespace llmux::testing
