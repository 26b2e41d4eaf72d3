#include "model/synthetic_weights.h"

#include <cstring>

#include "llmux/dtype.h"

namespace llmux {
namespace {

uint64_t SplitMix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t NameHash(std::string_view name) {
  uint64_t h = 1469598103934665603ull;
  for (char c : name) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return h;
}

}  // namespace

SyntheticWeightStore::SyntheticWeightStore(const ModelConfig& config, uint64_t seed, bool keep_all)
    : seed_(seed), keep_all_(keep_all) {
  for (TensorSpec& t : ModelTensors(config)) {
    std::string name = t.name;
    specs_.emplace(std::move(name), std::move(t));
  }
}

std::vector<std::string> SyntheticWeightStore::Names() const {
  std::vector<std::string> names;
  for (const auto& [name, spec] : specs_) names.push_back(name);
  return names;
}

const HostTensor* SyntheticWeightStore::Find(std::string_view name) const {
  if (auto it = held_.find(name); it != held_.end()) return &it->second->tensor;
  auto spec = specs_.find(name);
  if (spec == specs_.end()) return nullptr;
  const TensorSpec& s = spec->second;
  auto g = std::make_unique<Generated>();
  g->bf16.resize(s.numel());
  // Uniform in about [-0.035, 0.035) (HF's initializer_range 0.02 has this
  // spread), norms around 1: 4 values per 64-bit draw.
  const float center = s.init == TensorInit::kNorm ? 1.0f : 0.0f;
  uint64_t state = SplitMix(seed_ ^ NameHash(name));
  for (size_t i = 0; i < g->bf16.size(); i += 4) {
    uint64_t r = SplitMix(state + i);
    for (size_t j = i; j < std::min(i + 4, g->bf16.size()); ++j, r >>= 16) {
      const float u = static_cast<float>(r & 0xffff) / 65536.0f - 0.5f;
      g->bf16[j] = FloatToBf16(center + 0.07f * u);
    }
  }
  g->tensor.name = std::string(name);
  g->tensor.dtype = DType::kBF16;
  g->tensor.shape = s.shape;
  g->tensor.data = reinterpret_cast<const std::byte*>(g->bf16.data());
  g->tensor.nbytes = g->bf16.size() * 2;
  if (!keep_all_) {
    while (order_.size() >= kWindow) {
      held_.erase(order_.front());
      order_.pop_front();
    }
    order_.emplace_back(name);
  }
  const HostTensor* out = &g->tensor;
  held_.emplace(std::string(name), std::move(g));
  return out;
}

}  // namespace llmux
