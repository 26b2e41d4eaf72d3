// Element types of weights, activations and the KV cache.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "llmux/status.h"

namespace llmux {

enum class DType : uint8_t { kF32, kF16, kBF16, kI32 };

inline size_t DTypeSize(DType t) {
  switch (t) {
    case DType::kF32: return 4;
    case DType::kF16: return 2;
    case DType::kBF16: return 2;
    case DType::kI32: return 4;
  }
  return 0;
}

// "f32", "f16", "bf16", "i32".
std::string_view DTypeName(DType t);
// Accepts the safetensors spellings ("F32", "F16", "BF16", "I32") and the lower-case ones.
// Returns InvalidArgument naming the string otherwise.
StatusOr<DType> ParseDType(std::string_view s);

// Exact scalar conversions (F16/BF16 -> F32 is exact; F32 -> BF16 rounds to nearest even).
float HalfToFloat(uint16_t h);
uint16_t FloatToHalf(float f);
inline float Bf16ToFloat(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint16_t FloatToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

}  // namespace llmux
