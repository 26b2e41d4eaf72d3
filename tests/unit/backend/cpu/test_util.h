// Helpers shared by the CPU backend tests: deterministic values and weight images.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "llmux/backend.h"
#include "llmux/dtype.h"
#include "llmux/safetensors.h"

namespace llmux::cpu::testing {

inline std::vector<float> RandomFloats(size_t n, uint32_t seed, float lo = -1.0f,
                                       float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// A weight image in `dtype`, stored at a deliberately odd byte offset (2 mod 64) of its buffer
// to exercise unaligned loads, as a mapped safetensors file may place it. `values` are rounded
// to the dtype; `rounded` receives the exact F32 value of each stored element.
struct WeightImage {
  std::vector<std::byte> storage;
  HostTensor tensor;
  std::vector<float> rounded;
};

inline std::unique_ptr<WeightImage> MakeWeight(const std::vector<float>& values,
                                               std::vector<int64_t> shape, DType dtype) {
  auto img = std::make_unique<WeightImage>();
  const size_t nbytes = DTypeBytes(dtype, static_cast<int64_t>(values.size()));
  img->storage.resize(nbytes + 64 + 2);
  std::byte* base = img->storage.data();
  std::byte* p = base + (64 - reinterpret_cast<uintptr_t>(base) % 64) % 64 + 2;
  img->rounded.resize(values.size());
  if (dtype == DType::kQ8_0) {  // row by row, rows a multiple of 32 long
    const int64_t cols = shape.back();
    const int64_t rows = static_cast<int64_t>(values.size()) / cols;
    for (int64_t r = 0; r < rows; ++r) {
      std::byte* row = p + DTypeBytes(dtype, r * cols);
      QuantizeRowQ8_0(values.data() + r * cols, cols, row);
      DequantizeRowQ8_0(row, cols, img->rounded.data() + r * cols);
    }
  }
  for (size_t i = 0; i < values.size() && dtype != DType::kQ8_0; ++i) {
    if (dtype == DType::kF32) {
      std::memcpy(p + 4 * i, &values[i], 4);
      img->rounded[i] = values[i];
    } else {
      uint16_t h = dtype == DType::kF16 ? FloatToHalf(values[i]) : FloatToBf16(values[i]);
      std::memcpy(p + 2 * i, &h, 2);
      img->rounded[i] = dtype == DType::kF16 ? HalfToFloat(h) : Bf16ToFloat(h);
    }
  }
  img->tensor.name.assign(1, 'w');  // NOTE: `= "w"` trips GCC 12 -Wrestrict (false positive)
  img->tensor.dtype = dtype;
  img->tensor.shape = std::move(shape);
  img->tensor.data = p;
  img->tensor.nbytes = nbytes;
  return img;
}

// NOTE: BF16 weights default to exact F32 activations here: most CPU tests check the exact
// contract of matmul.h; matmul_bf16_test.cpp covers CpuBf16Activations::kBf16.
inline std::unique_ptr<Backend> MakeBackend(
    int threads, bool use_blas = false,
    CpuBf16Activations bf16_activations = CpuBf16Activations::kF32) {
  CpuBackendOptions o;
  o.threads = threads;
  o.use_blas = use_blas;
  o.bf16_activations = bf16_activations;
  auto b = CreateCpuBackend(o);
  if (!b.ok()) return nullptr;
  return std::move(b).value();
}

}  // namespace llmux::cpu::testing
