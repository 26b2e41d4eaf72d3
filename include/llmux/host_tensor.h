// A tensor in host memory that something else owns (a mapped weights file, a test buffer):
// what the model hands a backend to upload. One concept, so that backend.h need not include
// the safetensors loader.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "llmux/dtype.h"

namespace llmux {

// `data` stays valid while its owner (SafetensorsFile / WeightStore / the caller) lives.
struct HostTensor {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const std::byte* data = nullptr;
  size_t nbytes = 0;

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

}  // namespace llmux
