// Element types of weights, activations and the KV cache.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "llmux/status.h"

namespace llmux {

// kQ8_0 is a block type (GGML's Q8_0 layout, byte for byte): each run of 32 consecutive
// elements of a row is one 34-byte block {f16 scale d; int8 q[32]}, value = d * q. A row of a
// Q8_0 matrix is self-contained: its column count is a multiple of 32 and its bytes are
// cols / 32 * 34, so rows can be sliced and concatenated like any other dtype's.
enum class DType : uint8_t { kF32, kF16, kBF16, kI32, kQ8_0 };

inline constexpr int64_t kQ8BlockElems = 32;
inline constexpr size_t kQ8BlockBytes = 34;

// Bytes of one element; 0 for the block type kQ8_0 (use DTypeBytes).
inline size_t DTypeSize(DType t) {
  switch (t) {
    case DType::kF32: return 4;
    case DType::kF16: return 2;
    case DType::kBF16: return 2;
    case DType::kI32: return 4;
    case DType::kQ8_0: return 0;
  }
  return 0;
}

// Bytes of n consecutive elements of a row (for kQ8_0, n must be a multiple of 32).
inline size_t DTypeBytes(DType t, int64_t n) {
  if (t == DType::kQ8_0) return static_cast<size_t>(n / kQ8BlockElems) * kQ8BlockBytes;
  return static_cast<size_t>(n) * DTypeSize(t);
}

// "f32", "f16", "bf16", "i32", "q8_0".
std::string_view DTypeName(DType t);
// Accepts the safetensors spellings ("F32", "F16", "BF16", "I32") and the lower-case ones.
// Returns InvalidArgument naming the string otherwise. Never returns kQ8_0 (safetensors has
// no block types; Q8_0 comes from quantizing at load or from a GGUF file).
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

// Q8_0 quantization of n (a multiple of 32) floats into n / 32 blocks at dst, exactly as
// GGML's quantize_row_q8_0_ref: d = max|x| / 127, q = round-half-away(x / d) computed with the
// unrounded d, then d stored as F16. Same input, same bytes as llama.cpp's llama-quantize.
void QuantizeRowQ8_0(const float* x, int64_t n, std::byte* dst);
// The inverse: n floats, each d * q exactly (an int8 times an F16 value is exact in F32).
void DequantizeRowQ8_0(const std::byte* src, int64_t n, float* out);

}  // namespace llmux
