// CpuBackend::Attention: causal paged attention with GQA over the current batch.
//
// Per (token t, query head h): keys 0..pos(t) of t's sequence, read through its block table;
// scores s_j = Dot(q, k_j) * scale (simd.h order), m = max_j s_j, e_j = exp(s_j - m),
// sum = 16-lane accumulation of e_j in key order + Hsum, out = (sum_j e_j * v_j in key order)
// * (1 / sum). Nothing in that order depends on the other tokens of the batch, so a sequence's
// outputs are bit-identical alone or batched; pairs are only distributed over threads.
#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/simd.h"

namespace llmux::cpu {
namespace {

constexpr int kMaxChunks = 32;  // head_dim <= 512 (InitKvCache checks it)
// NOTE: below this many key visits in a step, one thread is faster than waking another.
constexpr int64_t kMinParallelCost = 2048;

struct AttnShape {
  int64_t heads, kv_heads, head_dim, block_size, kv_row, max_blocks;
  float scale;
};

void AttendOne(const AttnShape& sh, const float* q, const float* kc, const float* vc,
               const int32_t* table, int64_t pos, int64_t kvh, std::vector<float>& scores,
               float* out) {
  const int64_t hd = sh.head_dim;
  const int64_t full = hd / 16;
  const __mmask16 tail = TailMask(hd - full * 16);
  const int64_t n = pos + 1;
  if (static_cast<int64_t>(scores.size()) < n + 16) scores.resize(n + 16);
  __m512 qv[kMaxChunks + 1];
  for (int64_t c = 0; c < full; ++c) qv[c] = Load16(q + 16 * c);
  if (tail) qv[full] = LoadMasked(q + 16 * full, tail);

  float mx = -INFINITY;
  for (int64_t j = 0; j < n; ++j) {
    const int64_t slot = static_cast<int64_t>(table[j / sh.block_size]) * sh.block_size +
                         j % sh.block_size;
    const float* kp = kc + slot * sh.kv_row + kvh * hd;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t c = 0; c < full; ++c) acc = _mm512_fmadd_ps(qv[c], Load16(kp + 16 * c), acc);
    if (tail) acc = _mm512_fmadd_ps(qv[full], LoadMasked(kp + 16 * full, tail), acc);
    const float s = Hsum(acc) * sh.scale;
    scores[j] = s;
    mx = std::max(mx, s);
  }

  const __m512 vmax = _mm512_set1_ps(mx);
  __m512 vsum = _mm512_setzero_ps();
  for (int64_t j = 0; j < n; j += 16) {
    __mmask16 m = n - j >= 16 ? static_cast<__mmask16>(0xffff) : TailMask(n - j);
    __m512 e = _mm512_maskz_mov_ps(m, Exp(_mm512_sub_ps(LoadMasked(scores.data() + j, m), vmax)));
    _mm512_mask_storeu_ps(scores.data() + j, m, e);
    vsum = _mm512_add_ps(vsum, e);
  }
  const float inv_sum = 1.0f / Hsum(vsum);

  __m512 acc[kMaxChunks + 1];
  for (int64_t c = 0; c <= full; ++c) acc[c] = _mm512_setzero_ps();
  for (int64_t j = 0; j < n; ++j) {
    const int64_t slot = static_cast<int64_t>(table[j / sh.block_size]) * sh.block_size +
                         j % sh.block_size;
    const float* vp = vc + slot * sh.kv_row + kvh * hd;
    const __m512 p = _mm512_set1_ps(scores[j]);
    for (int64_t c = 0; c < full; ++c) acc[c] = _mm512_fmadd_ps(p, Load16(vp + 16 * c), acc[c]);
    if (tail) acc[full] = _mm512_fmadd_ps(p, LoadMasked(vp + 16 * full, tail), acc[full]);
  }
  const __m512 vinv = _mm512_set1_ps(inv_sum);
  for (int64_t c = 0; c < full; ++c) _mm512_storeu_ps(out + 16 * c, _mm512_mul_ps(acc[c], vinv));
  if (tail) _mm512_mask_storeu_ps(out + 16 * full, tail, _mm512_mul_ps(acc[full], vinv));
}

}  // namespace

void CpuBackend::PlanAttention() {
  const int64_t T = static_cast<int64_t>(batch_.positions.size());
  const int64_t H = spec_.num_heads;
  // Cost of one pair ~ keys visited + a constant for the softmax and output.
  int64_t total = 0;
  for (int64_t t = 0; t < T; ++t) total += H * (batch_.positions[t] + 1 + 8);
  const int chunks = total < kMinParallelCost ? 1 : pool_.threads();
  attn_split_.assign(chunks + 1, T * H);
  attn_split_[0] = 0;
  int64_t acc = 0;
  int c = 1;
  for (int64_t u = 0; u < T * H && c < chunks; ++u) {
    acc += batch_.positions[u / H] + 1 + 8;
    if (acc * chunks >= total * c) attn_split_[c++] = u + 1;
  }
}

void CpuBackend::Attention(int layer, const Tensor& q, float scale, Tensor out) {
  LLMUX_CHECK(has_batch_) << "Attention without BeginBatch";
  LLMUX_CHECK(q.dtype == DType::kF32 && out.dtype == DType::kF32) << "Attention: f32 only";
  const int64_t T = static_cast<int64_t>(batch_.positions.size());
  const AttnShape sh{spec_.num_heads,
                     spec_.num_kv_heads,
                     spec_.head_dim,
                     spec_.block_size,
                     static_cast<int64_t>(spec_.num_kv_heads) * spec_.head_dim,
                     batch_.max_blocks_per_seq,
                     scale};
  LLMUX_CHECK(layer >= 0 && layer < spec_.num_layers && q.rows == T &&
              q.cols == sh.heads * sh.head_dim && out.rows == T && out.cols == q.cols)
      << "Attention: shape mismatch";
  const float* kc = KCache(layer);
  const float* vc = VCache(layer);
  const int64_t group = sh.heads / sh.kv_heads;
  const int chunks = static_cast<int>(attn_split_.size()) - 1;
  pool_.ParallelFor(chunks, [&](int64_t c0, int64_t c1) {
    // NOTE: grows to the longest sequence once per thread; no allocation per op afterwards.
    thread_local std::vector<float> scores;
    for (int64_t u = attn_split_[c0]; u < attn_split_[c1]; ++u) {
      const int64_t t = u / sh.heads, h = u % sh.heads;
      const int64_t s = token_seq_[t];
      AttendOne(sh, static_cast<const float*>(q.data) + t * q.stride + h * sh.head_dim, kc, vc,
                batch_.block_tables.data() + s * sh.max_blocks, batch_.positions[t], h / group,
                scores, static_cast<float*>(out.data) + t * out.stride + h * sh.head_dim);
    }
  });
}

}  // namespace llmux::cpu
