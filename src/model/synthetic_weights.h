// A WeightStore whose tensors are generated, not read: every tensor config.json
// implies (model_shapes.h ModelTensors), BF16, seeded. For benchmarks of a
// model's shape without its checkpoint (timing does not depend on the values)
// and for tests.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "llmux/model_config.h"
#include "llmux/model_shapes.h"
#include "llmux/safetensors.h"

namespace llmux {

class SyntheticWeightStore final : public WeightStore {
 public:
  // `keep_all`: every generated tensor stays valid for the store's life (a
  // backend that aliases host weights needs that). Otherwise at most kWindow
  // tensors are held: a tensor returned by Find stays valid until kWindow later
  // Finds of other tensors (the model loads each weight, or one fused group of
  // at most 3, before it finds the next).
  SyntheticWeightStore(const ModelConfig& config, uint64_t seed, bool keep_all);

  static constexpr size_t kWindow = 4;

  // Generates the tensor on first use: values are a pure function of (seed,
  // name, index).
  const HostTensor* Find(std::string_view name) const override;
  std::vector<std::string> Names() const override;

 private:
  struct Generated {
    HostTensor tensor;
    std::vector<uint16_t> bf16;
  };
  uint64_t seed_;
  bool keep_all_;
  std::map<std::string, TensorSpec, std::less<>> specs_;
  // NOTE: mutable: Find is const in the WeightStore interface; generation is a
  // cache fill.
  mutable std::map<std::string, std::unique_ptr<Generated>, std::less<>> held_;
  mutable std::deque<std::string> order_;  // generation order (for the window)
};

}  // namespace llmux
