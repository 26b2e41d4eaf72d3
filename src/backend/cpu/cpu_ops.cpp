// CpuBackend's row-wise ops: embedding, norms, matmul dispatch, RoPE, KV writes, SiLU-mul,
// logits gather. Each row is computed from its own inputs in a fixed order (simd.h).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/matmul.h"
#include "backend/cpu/simd.h"

namespace llmux::cpu {
namespace {

float* RowF(const Tensor& t, int64_t r) { return static_cast<float*>(t.data) + r * t.stride; }

// Units of a parallel op (thread_pool.h), so that a unit has at least ~16K elements of work.
int MaxUnitsFor(int64_t rows, int64_t cols) {
  return static_cast<int>(std::clamp<int64_t>(rows * cols / (16 << 10), 1, 1 << 15));
}

// out = (x * inv_rms(x)) * w over n elements; sum of squares in the Dot order.
void NormRow(const float* x, const float* w, float eps, int64_t n, float* out) {
  const float ss = Dot(x, x, n);
  const float inv = 1.0f / std::sqrt(ss / static_cast<float>(n) + eps);
  const __m512 vinv = _mm512_set1_ps(inv);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_mul_ps(Load16(x + i), vinv), Load16(w + i)));
  }
  if (i < n) {
    __mmask16 m = TailMask(n - i);
    __m512 v = _mm512_mul_ps(_mm512_mul_ps(LoadMasked(x + i, m), vinv), LoadMasked(w + i, m));
    _mm512_mask_storeu_ps(out + i, m, v);
  }
}

void CheckF32(const Tensor& t, const char* what) {
  LLMUX_CHECK(t.dtype == DType::kF32 && t.data != nullptr) << what << " must be an f32 tensor";
}

}  // namespace

void CpuBackend::Embedding(const Tensor& table, Tensor out) {
  LLMUX_CHECK(has_batch_) << "Embedding without BeginBatch";
  CheckF32(out, "Embedding out");
  const int64_t T = static_cast<int64_t>(batch_.token_ids.size());
  LLMUX_CHECK(out.rows == T && out.cols == table.cols) << "Embedding: shape mismatch";
  // A table from LoadWeight is packed (one copy serves Embedding and a tied lm_head); a
  // caller's own row-major Tensor is read in place.
  const PackedWeight* packed = PackedFor(table);
  for (int64_t t = 0; t < T; ++t) {
    const int64_t id = batch_.token_ids[t];
    LLMUX_CHECK(id < table.rows) << "Embedding: token id " << id << " >= vocab " << table.rows;
    float* dst = RowF(out, t);
    if (packed != nullptr) {
      UnpackRowsF32(*packed, id, id + 1, dst);
      continue;
    }
    const int64_t n = table.cols;
    switch (table.dtype) {
      case DType::kF32:
        std::memcpy(dst, static_cast<const float*>(table.data) + id * table.stride, n * 4);
        break;
      case DType::kF16:
      case DType::kBF16: {
        const auto* src = static_cast<const uint16_t*>(table.data) + id * table.stride;
        const bool f16 = table.dtype == DType::kF16;
        for (int64_t i = 0; i < n; i += 16) {
          __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xffff) : TailMask(n - i);
          _mm512_mask_storeu_ps(dst + i, m,
                                f16 ? LoadF16Masked(src + i, m) : LoadBf16Masked(src + i, m));
        }
        break;
      }
      case DType::kQ8_0: {
        const auto* src = static_cast<const uint8_t*>(table.data) +
                          DTypeBytes(DType::kQ8_0, id * table.stride);
        for (int64_t i = 0; i < n; i += 16) _mm512_storeu_ps(dst + i, LoadQ8x16(src, i));
        break;
      }
      case DType::kI32: LLMUX_CHECK(false) << "Embedding: i32 table";
    }
  }
}

void CpuBackend::RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor out) {
  CheckF32(x, "RmsNorm x");
  CheckF32(weight, "RmsNorm weight");
  LLMUX_CHECK(weight.cols == x.cols && out.rows == x.rows && out.cols == x.cols)
      << "RmsNorm: shape mismatch";
  const float* w = static_cast<const float*>(weight.data);
  pool_.ParallelFor(
      x.rows,
      [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) NormRow(RowF(x, r), w, eps, x.cols, RowF(out, r));
      },
      MaxUnitsFor(x.rows, x.cols));
}

void CpuBackend::AddRmsNorm(Tensor residual, const Tensor& x, const Tensor& weight, float eps,
                            Tensor out) {
  CheckF32(residual, "AddRmsNorm residual");
  CheckF32(x, "AddRmsNorm x");
  LLMUX_CHECK(x.rows == residual.rows && x.cols == residual.cols && weight.cols == x.cols &&
              out.rows == x.rows && out.cols == x.cols)
      << "AddRmsNorm: shape mismatch";
  const float* w = static_cast<const float*>(weight.data);
  const int64_t n = x.cols;
  pool_.ParallelFor(
      x.rows,
      [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          float* res = RowF(residual, r);
          const float* xr = RowF(x, r);
          for (int64_t i = 0; i < n; i += 16) {
            __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xffff) : TailMask(n - i);
            _mm512_mask_storeu_ps(res + i, m,
                                  _mm512_add_ps(LoadMasked(res + i, m), LoadMasked(xr + i, m)));
          }
          NormRow(res, w, eps, n, RowF(out, r));
        }
      },
      MaxUnitsFor(x.rows, x.cols));
}

void CpuBackend::NoteGemvWeight(const PackedWeight* w) {
  if (last_gemv_ != nullptr && last_gemv_ != w) gemv_next_[last_gemv_] = w;
  last_gemv_ = w;
  const auto it = gemv_next_.find(w);
  if (it != gemv_next_.end()) pool_.PrefetchWhenIdle(it->second->data, it->second->layout.bytes());
}

void CpuBackend::MatMul(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor out) {
  CheckF32(x, "MatMul x");
  CheckF32(out, "MatMul out");
  LLMUX_CHECK(w.cols == x.cols && out.rows == x.rows && out.cols == w.rows)
      << "MatMul: x [" << x.rows << ", " << x.cols << "] w [" << w.rows << ", " << w.cols
      << "] out [" << out.rows << ", " << out.cols << "]";
  LLMUX_CHECK(w.dtype != DType::kI32) << "MatMul: i32 weight";
  MatMulArgs a;
  a.x = static_cast<const float*>(x.data);
  a.x_stride = x.stride;
  a.w = w.data;
  a.w_dtype = w.dtype;
  a.w_stride = w.stride;
  a.packed = PackedFor(w);
  if (bias != nullptr) {
    CheckF32(*bias, "MatMul bias");
    LLMUX_CHECK(bias->cols == w.rows) << "MatMul: bias size";
    a.bias = static_cast<const float*>(bias->data);
  }
  a.out = static_cast<float*>(out.data);
  a.out_stride = out.stride;
  a.M = x.rows;
  a.N = w.rows;
  a.K = w.cols;
  a.bf16_activations = options_.bf16_activations == CpuBf16Activations::kBf16;
  if (a.packed != nullptr && a.M <= kGemvMaxRows) NoteGemvWeight(a.packed);
  if (options_.use_blas && a.M >= 16) {
    MatMulBlas(a, pool_);
  } else {
    MatMulInvariant(a, pool_);
  }
}

void CpuBackend::Rope(Tensor q, Tensor k, const Tensor& inv_freq) {
  LLMUX_CHECK(has_batch_) << "Rope without BeginBatch";
  CheckF32(q, "Rope q");
  CheckF32(k, "Rope k");
  CheckF32(inv_freq, "Rope inv_freq");
  const int64_t T = static_cast<int64_t>(batch_.positions.size());
  const int64_t half = inv_freq.cols;
  const int64_t hd = 2 * half;
  LLMUX_CHECK(q.rows == T && k.rows == T && hd > 0 && q.cols % hd == 0 && k.cols % hd == 0)
      << "Rope: shape mismatch";
  if (rope_key_ != inv_freq.data) {
    // HF: freqs = inv_freq * position in float32, then cos/sin in float32.
    rope_cos_.resize(T * half);
    rope_sin_.resize(T * half);
    const float* f = static_cast<const float*>(inv_freq.data);
    for (int64_t t = 0; t < T; ++t) {
      const float pos = static_cast<float>(batch_.positions[t]);
      for (int64_t i = 0; i < half; ++i) {
        const float angle = pos * f[i];
        rope_cos_[t * half + i] = std::cos(angle);
        rope_sin_[t * half + i] = std::sin(angle);
      }
    }
    rope_key_ = inv_freq.data;
  }
  auto rotate = [&](const Tensor& x, int64_t t) {
    const float* c = rope_cos_.data() + t * half;
    const float* s = rope_sin_.data() + t * half;
    for (float* head = RowF(x, t); head < RowF(x, t) + x.cols; head += hd) {
      for (int64_t i = 0; i < half; i += 16) {
        __mmask16 m = half - i >= 16 ? static_cast<__mmask16>(0xffff) : TailMask(half - i);
        __m512 x0 = LoadMasked(head + i, m), x1 = LoadMasked(head + half + i, m);
        __m512 vc = LoadMasked(c + i, m), vs = LoadMasked(s + i, m);
        // x0 * cos + (-x1) * sin and x1 * cos + x0 * sin, without FMA contraction (as HF).
        _mm512_mask_storeu_ps(head + i, m, _mm512_sub_ps(_mm512_mul_ps(x0, vc), _mm512_mul_ps(x1, vs)));
        _mm512_mask_storeu_ps(head + half + i, m,
                              _mm512_add_ps(_mm512_mul_ps(x1, vc), _mm512_mul_ps(x0, vs)));
      }
    }
  };
  pool_.ParallelFor(
      T,
      [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
          rotate(q, t);
          rotate(k, t);
        }
      },
      MaxUnitsFor(T, q.cols + k.cols));
}

void CpuBackend::WriteKv(int layer, const Tensor& k, const Tensor& v) {
  LLMUX_CHECK(has_batch_) << "WriteKv without BeginBatch";
  CheckF32(k, "WriteKv k");
  CheckF32(v, "WriteKv v");
  const int64_t row = static_cast<int64_t>(spec_.num_kv_heads) * spec_.head_dim;
  const int64_t T = static_cast<int64_t>(batch_.slot_mapping.size());
  LLMUX_CHECK(layer >= 0 && layer < spec_.num_layers && k.rows == T && v.rows == T &&
              k.cols == row && v.cols == row)
      << "WriteKv: shape mismatch";
  // K goes to [block, kv_head, dim, offset] (transposed in its block, see cpu_backend.h), V to
  // [block, offset, kv_head, dim]. F16 caches round to nearest even (vcvtps2ph), as llama.cpp's.
  const int64_t bs = spec_.block_size;
  const bool f16 = spec_.dtype == DType::kF16;
  std::byte* kc = KCache(layer);
  std::byte* vc = VCache(layer);
  for (int64_t t = 0; t < T; ++t) {
    const int64_t slot = batch_.slot_mapping[t];
    const int64_t kbase = (slot / bs) * bs * row + slot % bs;  // element of (dim 0, offset)
    const float* kr = RowF(k, t);
    const float* vr = RowF(v, t);
    if (f16) {
      auto* kh = reinterpret_cast<uint16_t*>(kc) + kbase;
      auto* vh = reinterpret_cast<uint16_t*>(vc) + slot * row;
      for (int64_t e = 0; e < row; ++e) {
        kh[e * bs] = _cvtss_sh(kr[e], _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      }
      for (int64_t i = 0; i < row; i += 16) {
        __mmask16 m = row - i >= 16 ? static_cast<__mmask16>(0xffff) : TailMask(row - i);
        _mm256_mask_storeu_epi16(
            vh + i, m,
            _mm512_cvtps_ph(LoadMasked(vr + i, m), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
      }
    } else {
      auto* kf = reinterpret_cast<float*>(kc) + kbase;
      for (int64_t e = 0; e < row; ++e) kf[e * bs] = kr[e];
      std::memcpy(reinterpret_cast<float*>(vc) + slot * row, vr, row * sizeof(float));
    }
  }
}

void CpuBackend::SiluMul(const Tensor& gate, const Tensor& up, Tensor out) {
  CheckF32(gate, "SiluMul gate");
  CheckF32(up, "SiluMul up");
  LLMUX_CHECK(gate.rows == up.rows && gate.cols == up.cols && out.rows == gate.rows &&
              out.cols == gate.cols)
      << "SiluMul: shape mismatch";
  const int64_t n = gate.cols;
  pool_.ParallelFor(
      gate.rows,
      [&](int64_t r0, int64_t r1) {
        const __m512 one = _mm512_set1_ps(1.0f);
        for (int64_t r = r0; r < r1; ++r) {
          const float* g = RowF(gate, r);
          const float* u = RowF(up, r);
          float* o = RowF(out, r);
          for (int64_t i = 0; i < n; i += 16) {
            __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xffff) : TailMask(n - i);
            __m512 gv = LoadMasked(g + i, m);
            __m512 e = Exp(_mm512_sub_ps(_mm512_setzero_ps(), gv));
            __m512 silu = _mm512_div_ps(gv, _mm512_add_ps(one, e));
            _mm512_mask_storeu_ps(o + i, m, _mm512_mul_ps(silu, LoadMasked(u + i, m)));
          }
        }
      },
      MaxUnitsFor(gate.rows, gate.cols));
}

void CpuBackend::GatherLogitsRows(const Tensor& x, Tensor out) {
  LLMUX_CHECK(has_batch_) << "GatherLogitsRows without BeginBatch";
  CheckF32(x, "GatherLogitsRows x");
  const int64_t n = static_cast<int64_t>(batch_.logits_indices.size());
  LLMUX_CHECK(out.rows == n && out.cols == x.cols) << "GatherLogitsRows: shape mismatch";
  for (int64_t i = 0; i < n; ++i) {
    std::memcpy(RowF(out, i), RowF(x, batch_.logits_indices[i]), x.cols * sizeof(float));
  }
}

}  // namespace llmux::cpu
