#include "fault_injecting_backend.h"

#include <cstdlib>
#include <utility>
#include <vector>

#include "../common/forwarding_backend.h"

namespace llmux::testing {
namespace {

// What the injected errors say: cudaGetErrorString's text for an error of each kind
// (cudaErrorLaunchOutOfResources is a step fault, cudaErrorIllegalAddress a sticky one), with
// the op's name first as CudaBackend records it (cuda_backend_ops.cpp).
constexpr const char* kStepError = "MatMul: too many resources requested for launch (injected)";
constexpr const char* kStickyError =
    "Attention: an illegal memory access was encountered (injected)";

// Forwards everything to the real backend, except where a faulted CUDA backend would answer
// differently: the calls CudaBackend refuses once faulted, and the sampling sync point.
class FaultInjectingBackend final : public ForwardingBackend {
 public:
  FaultInjectingBackend(std::unique_ptr<Backend> inner, const DeviceFaultSpec& spec)
      : ForwardingBackend(std::move(inner)), spec_(spec) {}

  Status BeginBatch(const ForwardBatch& batch) override {
    // As CudaBackend::BeginBatch: a faulted device runs nothing more.
    if (Status health = DeviceHealth(); !health.ok()) return health;
    return ForwardingBackend::BeginBatch(batch);
  }
  Status CopyToHostF32(const Tensor& src, float* dst) override {
    if (Status health = DeviceHealth(); !health.ok()) return health;
    return ForwardingBackend::CopyToHostF32(src, dst);
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
    return ForwardingBackend::SampleTokens(logits, batch, out);
  }

  Status DeviceHealth() const override {
    if (sticky_.empty()) return ForwardingBackend::DeviceHealth();
    return Unavailable("cuda device faulted: " + sticky_);
  }
  Status ZeroKvBlocks(std::span<const int32_t> blocks) override {
    if (Status health = DeviceHealth(); !health.ok()) return health;
    return ForwardingBackend::ZeroKvBlocks(blocks);
  }

 private:
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
