#include "llmux/dtype.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace llmux {

std::string_view DTypeName(DType t) {
  switch (t) {
    case DType::kF32: return "f32";
    case DType::kF16: return "f16";
    case DType::kBF16: return "bf16";
    case DType::kI32: return "i32";
    case DType::kQ8_0: return "q8_0";
  }
  return "?";
}

StatusOr<DType> ParseDType(std::string_view s) {
  if (s == "F32" || s == "f32" || s == "float32") return DType::kF32;
  if (s == "F16" || s == "f16" || s == "float16") return DType::kF16;
  if (s == "BF16" || s == "bf16" || s == "bfloat16") return DType::kBF16;
  if (s == "I32" || s == "i32" || s == "int32") return DType::kI32;
  return InvalidArgument("unsupported dtype '" + std::string(s) +
                         "' (supported: F32, F16, BF16, I32)");
}

float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t u;
  if (exp == 0) {
    if (mant == 0) {
      u = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ffu;
      u = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 0x1f) {
    u = sign | 0x7f800000u | (mant << 13);
  } else {
    u = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t FloatToHalf(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00u;   // NaN
  if (abs >= 0x477ff000u) return sign | 0x7c00u;  // overflow -> inf (incl. rounding up)
  if (abs < 0x38800000u) {                        // subnormal or zero in half
    if (abs < 0x33000000u) return sign;           // rounds to zero
    const uint32_t e = abs >> 23;
    const uint32_t m = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - e;  // 14 - (e - 127) - 13 + 13 ... places m into 10 bits
    uint32_t half_m = m >> (shift);
    const uint32_t rem = m & ((1u << shift) - 1);
    const uint32_t halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (half_m & 1u))) ++half_m;
    return sign | static_cast<uint16_t>(half_m);
  }
  uint32_t r = abs + 0xfffu + ((abs >> 13) & 1u);  // round to nearest even at bit 13
  r -= (127 - 15) << 23;
  return sign | static_cast<uint16_t>(r >> 13);
}

void QuantizeRowQ8_0(const float* x, int64_t n, std::byte* dst) {
  for (int64_t b = 0; b < n / kQ8BlockElems; ++b) {
    const float* xb = x + b * kQ8BlockElems;
    float amax = 0.0f;
    for (int64_t i = 0; i < kQ8BlockElems; ++i) amax = std::max(amax, std::fabs(xb[i]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    std::byte* out = dst + b * kQ8BlockBytes;
    const uint16_t dh = FloatToHalf(d);
    std::memcpy(out, &dh, 2);
    for (int64_t i = 0; i < kQ8BlockElems; ++i) {
      // roundf (half away from zero) without a libm call: v - trunc(v) is exact here.
      const float v = xb[i] * id;
      float t = std::trunc(v);
      if (std::fabs(v - t) >= 0.5f) t += std::copysign(1.0f, v);
      if (!(std::fabs(t) <= 127.0f)) t = 0.0f;  // NaN / infinite weights (never in range)
      const auto q = static_cast<int8_t>(static_cast<int>(t));
      std::memcpy(out + 2 + i, &q, 1);
    }
  }
}

void DequantizeRowQ8_0(const std::byte* src, int64_t n, float* out) {
  for (int64_t b = 0; b < n / kQ8BlockElems; ++b) {
    const std::byte* blk = src + b * kQ8BlockBytes;
    uint16_t dh;
    std::memcpy(&dh, blk, 2);
    const float d = HalfToFloat(dh);
    for (int64_t i = 0; i < kQ8BlockElems; ++i) {
      int8_t q;
      std::memcpy(&q, blk + 2 + i, 1);
      out[b * kQ8BlockElems + i] = d * static_cast<float>(q);
    }
  }
}

}  // namespace llmux
