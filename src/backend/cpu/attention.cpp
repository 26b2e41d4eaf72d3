// CpuBackend::Attention: causal paged attention with GQA, tiled over query rows (flash-attention
// style, online softmax).
//
// A work item is a tile: up to kTileRows query rows (at least one token's) of ONE sequence and
// ONE kv head (the query tokens [t0, t1) times the query heads that share the kv head). The
// tile walks the sequence's keys in chunks: a chunk is 16 consecutive key slots of one KV block
// (fewer when block_size is below 16 or not a multiple of it), so chunk boundaries are fixed by
// absolute key position.
// Per query row r (position p_r) and chunk c, over the chunk's keys j <= p_r:
//   s_j   = (sum over d = 0..head_dim-1, in order, of q[d] * k_j[d]) * scale   (one FMA chain
//           per key, in the key's vector lane: K is stored transposed in its block)
//   m'    = max(m, max_j s_j)                  (exact)
//   alpha = exp(m - m'), e_j = exp(s_j - m')   (simd.h Exp; keys beyond p_r give exactly 0)
//   l     = l * alpha + Hsum(e)                (16 lanes, the fixed tree)
//   o     = o * alpha, then o += e_j * v_j for j in key order (per output element)
// and out = o * (1 / l) after the row's last chunk. Every step of that sequence depends only on
// the row's own q, its position and the keys; the tile only decides which rows share the loads
// of a chunk's K and V. So a row's bits do not depend on the tile size, on the other tokens or
// sequences of the batch, or on the thread, and a decode row (a tile of one token) equals the
// prefill row at the same position. F16 caches are converted to F32 per chunk (exactly), so an
// F16 cache gives the bits an F32 cache holding the same rounded values gives.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/simd.h"

namespace llmux::cpu {
namespace {

// Query rows per tile. 32 rows of head_dim <= 512 keep the tile's accumulators (64 KiB at the
// largest head_dim, 8 KiB at 64) next to one chunk's K and V in L1/L2.
constexpr int kTileRows = 32;
constexpr int kChunk = 16;  // keys per chunk: one vector lane each
// NOTE: below this many key visits in a step, one thread is faster than waking another. In a
// decode step the layer's K/V come from DRAM (the weights streamed since evicted them), so a
// visit costs several times what a hot micro-benchmark shows; 512 (a SmolLM-135M decode from
// position ~40 on) was measured against 2048, 256 and 128 (docs/performance.md).
constexpr int64_t kMinParallelCost = 512;
// Chunks of K/V prefetched ahead of the one computed (64 KiB at head_dim 64 in F32).
constexpr int kPrefetchChunks = 8;
// Output columns accumulated in registers at once (8 vectors = 128 dims).
constexpr int64_t kColBlock = 8;
// F16 chunks read by at most this many rows are converted as loaded, not staged in F32.
constexpr int64_t kDirectRows = 4;

struct AttnShape {
  int64_t heads, kv_heads, group, head_dim, block_size, kv_row, max_blocks;
  float scale;
};

// Elements from the start of a layer's cache to the chunk at slot `off` of `block`, kv head
// `kvh`: K^T is [block][kv_head][hd][block_size] (a chunk's d-th row at + d * block_size), V is
// [block][block_size][kv_head][hd] (its j-th key at + j * kv_row).
inline int64_t KtChunkElem(const AttnShape& sh, int64_t block, int64_t kvh, int64_t off) {
  return ((block * sh.kv_heads + kvh) * sh.head_dim) * sh.block_size + off;
}
inline int64_t VChunkElem(const AttnShape& sh, int64_t block, int64_t kvh, int64_t off) {
  return ((block * sh.block_size + off) * sh.kv_heads + kvh) * sh.head_dim;
}

// One chunk's K and V in element type E (float, or uint16_t holding F16):
// kt[d * kt_stride + lane] (lane = key), v + j * v_stride.
template <typename E>
struct ChunkView {
  const E* kt;
  int64_t kt_stride;
  const E* v;
  int64_t v_stride;
};

// 16 elements (masked: lanes outside m are 0, memory untouched) as F32; exact.
inline __m512 LoadE(const float* p, __mmask16 m) { return LoadMasked(p, m); }
inline __m512 LoadE(const uint16_t* p, __mmask16 m) { return LoadF16Masked(p, m); }

// Per-thread scratch, grown once (no allocation per op afterwards).
struct Scratch {
  // Rows: kTileRows, or the head group when it is larger (one token's heads are one tile).
  std::vector<float> o;      // [rows, hd_pad] unnormalised outputs
  std::vector<float> m, l;   // [rows] running max and sum
  std::vector<float> p;      // [rows, 16] exp(s - m) of the current chunk
  std::vector<float> alpha;  // [rows] rescale of the current chunk
  std::vector<const float*> q;  // [rows] query row pointers
  std::vector<int64_t> pos;     // [rows] positions
  std::vector<float> kt, v;  // [head_dim, 16] and [16, head_dim]: an F16 chunk as F32
};

// Scores of rows [r0, r0 + n) (n <= 4) against the chunk's keys: acc[i] lane j = the FMA chain
// over d of q_row[d] * k_j[d]. Processing rows together only shares the K loads.
template <int N, typename E>
void ScoreRows(const float* const* qrows, const ChunkView<E>& cv, int64_t hd, __mmask16 lanes,
               __m512* acc) {
  for (int i = 0; i < N; ++i) acc[i] = _mm512_setzero_ps();
  for (int64_t d = 0; d < hd; ++d) {
    const __m512 k = LoadE(cv.kt + d * cv.kt_stride, lanes);
    for (int i = 0; i < N; ++i) acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(qrows[i][d]), k, acc[i]);
  }
}

// o_i = o_i * alpha_i + sum_{j < n_i} e_i[j] * v_j (j ascending) for N rows at once; the rows
// share the V loads of their common keys. Each output element's operation sequence is the
// row's own whatever N is.
template <int N, typename E>
void AccumulateRows(float* const* o, const float* const* e, const float* alpha, const int64_t* n,
                    const ChunkView<E>& cv, int64_t hd) {
  const int64_t vecs = (hd + 15) / 16;
  const int64_t full = hd / 16;
  const __mmask16 tail = TailMask(hd - full * 16);
  int64_t common = n[0];
  for (int i = 1; i < N; ++i) common = std::min(common, n[i]);
  for (int64_t c0 = 0; c0 < vecs; c0 += kColBlock) {
    const int64_t nc = std::min<int64_t>(kColBlock, vecs - c0);
    __m512 acc[N][kColBlock];
    for (int i = 0; i < N; ++i) {
      const __m512 va = _mm512_set1_ps(alpha[i]);
      for (int64_t c = 0; c < nc; ++c) {
        acc[i][c] = _mm512_loadu_ps(o[i] + 16 * (c0 + c));
        if (alpha[i] != 1.0f) acc[i][c] = _mm512_mul_ps(acc[i][c], va);  // x * 1 == x
      }
    }
    auto v_at = [&](int64_t j, int64_t c) {
      return LoadE(cv.v + j * cv.v_stride + 16 * (c0 + c),
                   c0 + c < full ? static_cast<__mmask16>(0xffff) : tail);
    };
    for (int64_t j = 0; j < common; ++j) {
      __m512 p[N];
      for (int i = 0; i < N; ++i) p[i] = _mm512_set1_ps(e[i][j]);
      for (int64_t c = 0; c < nc; ++c) {
        const __m512 vv = v_at(j, c);
        for (int i = 0; i < N; ++i) acc[i][c] = _mm512_fmadd_ps(p[i], vv, acc[i][c]);
      }
    }
    for (int i = 0; i < N; ++i) {
      for (int64_t j = common; j < n[i]; ++j) {
        const __m512 p = _mm512_set1_ps(e[i][j]);
        for (int64_t c = 0; c < nc; ++c) acc[i][c] = _mm512_fmadd_ps(p, v_at(j, c), acc[i][c]);
      }
      for (int64_t c = 0; c < nc; ++c) _mm512_storeu_ps(o[i] + 16 * (c0 + c), acc[i][c]);
    }
  }
}

// Runs one tile: rows r = (t - t0) * group + i for query head kv_head * group + i.
void AttendTile(const AttnShape& sh, DType kv_dtype, const std::byte* kc, const std::byte* vc,
                const int32_t* table, const Tensor& q, Tensor& out, int64_t pos0, int64_t t0,
                int64_t t1, int64_t kvh, Scratch& sc) {
  const int64_t hd = sh.head_dim;
  const int64_t hd_pad = (hd + 15) / 16 * 16;
  const int64_t full = hd / 16;
  const __mmask16 hd_tail = TailMask(hd - full * 16);
  const int64_t nrows = (t1 - t0) * sh.group;
  const int64_t last = pos0 + (t1 - t0) - 1;  // position of the tile's last token
  const bool f16 = kv_dtype == DType::kF16;
  if (static_cast<int64_t>(sc.o.size()) < nrows * hd_pad) sc.o.resize(nrows * hd_pad);
  if (static_cast<int64_t>(sc.m.size()) < nrows) {
    sc.m.resize(nrows);
    sc.l.resize(nrows);
    sc.alpha.resize(nrows);
    sc.p.resize(nrows * kChunk);
    sc.q.resize(nrows);
    sc.pos.resize(nrows);
  }
  if (f16 && static_cast<int64_t>(sc.kt.size()) < hd * kChunk) {
    sc.kt.resize(hd * kChunk);
    sc.v.resize(hd * kChunk);
  }
  std::fill_n(sc.o.begin(), nrows * hd_pad, 0.0f);
  std::fill_n(sc.m.begin(), nrows, -INFINITY);
  std::fill_n(sc.l.begin(), nrows, 0.0f);

  const float** qrow = sc.q.data();
  int64_t* rpos = sc.pos.data();
  for (int64_t r = 0; r < nrows; ++r) {
    const int64_t t = t0 + r / sh.group;
    const int64_t h = kvh * sh.group + r % sh.group;
    qrow[r] = static_cast<const float*>(q.data) + t * q.stride + h * hd;
    rpos[r] = pos0 + r / sh.group;
  }
  const int64_t bs = sh.block_size;
  const __m512 vscale = _mm512_set1_ps(sh.scale);
  const __m512 lane_idx = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);

  // Scores, softmax statistics and the output update of one chunk for rows r_first.. (E: the
  // element type the chunk is read in; the values are the same F32 numbers either way).
  auto run_chunk = [&](const auto& cv, int64_t r_first, int64_t start, int64_t width, int64_t used,
                       __mmask16 lanes) {
    // Scores, mask, online softmax statistics.
    int64_t r = r_first;
    for (; r < nrows; r += 4) {
      const int64_t n = std::min<int64_t>(4, nrows - r);
      __m512 acc[4];
      switch (n) {
        case 4: ScoreRows<4>(qrow + r, cv, hd, lanes, acc); break;
        case 3: ScoreRows<3>(qrow + r, cv, hd, lanes, acc); break;
        case 2: ScoreRows<2>(qrow + r, cv, hd, lanes, acc); break;
        default: ScoreRows<1>(qrow + r, cv, hd, lanes, acc); break;
      }
      for (int64_t i = 0; i < n; ++i) {
        const int64_t row = r + i;
        // Keys start..min(start + width, pos + 1) - 1 are visible to this row.
        const float visible = static_cast<float>(std::min<int64_t>(width, rpos[row] - start + 1));
        const __mmask16 vis = _mm512_cmp_ps_mask(lane_idx, _mm512_set1_ps(visible), _CMP_LT_OQ);
        const __m512 s = _mm512_mask_blend_ps(vis, _mm512_set1_ps(-INFINITY),
                                              _mm512_mul_ps(acc[i], vscale));
        const float m_old = sc.m[row];
        const float m_new = std::max(m_old, _mm512_reduce_max_ps(s));
        // NOTE: Exp(0) == 1 and Exp(-inf) == 0 exactly, so the shortcuts give the same bits.
        const float alpha = m_old == m_new   ? 1.0f
                            : m_old == -INFINITY ? 0.0f
                                                 : _mm_cvtss_f32(_mm512_castps512_ps128(
                                                       Exp(_mm512_set1_ps(m_old - m_new))));
        const __m512 e = _mm512_maskz_mov_ps(vis, Exp(_mm512_sub_ps(s, _mm512_set1_ps(m_new))));
        _mm512_storeu_ps(sc.p.data() + row * kChunk, e);
        sc.l[row] = sc.l[row] * alpha + Hsum(e);
        sc.m[row] = m_new;
        sc.alpha[row] = alpha;
      }
    }

    // o = o * alpha + sum_j e_j v_j over the row's visible keys, in key order; two rows at
    // a time share the V loads.
    for (int64_t row = r_first; row < nrows; row += 2) {
      const int nr = row + 1 < nrows ? 2 : 1;
      float* o[2];
      const float* e[2];
      int64_t n[2];
      for (int i = 0; i < nr; ++i) {
        o[i] = sc.o.data() + (row + i) * hd_pad;
        e[i] = sc.p.data() + (row + i) * kChunk;
        n[i] = std::min<int64_t>(used, rpos[row + i] - start + 1);
      }
      if (nr == 2) {
        AccumulateRows<2>(o, e, sc.alpha.data() + row, n, cv, hd);
      } else {
        AccumulateRows<1>(o, e, sc.alpha.data() + row, n, cv, hd);
      }
    }
  };

  // The layer's K/V come from DRAM in a decode step (the weights streamed since evicted them),
  // and consecutive chunks lie in different blocks, so the hardware prefetcher starts over at
  // every chunk: each chunk's K^T and V lines are prefetched kPrefetchChunks chunks ahead.
  const int64_t esz = f16 ? 2 : 4;
  const int64_t krow = bs * esz;  // bytes from one K^T row (one d) to the next
  const int64_t kstep = krow < 64 && 64 % krow == 0 ? 64 / krow : 1;  // d rows per line
  int64_t prefetched = 0;  // the next chunk start to prefetch
  auto prefetch_chunk = [&] {
    if (prefetched > last) return;
    const int64_t blk = prefetched / bs, off = prefetched % bs;
    const int64_t block = table[blk];
    const int64_t used = std::min<int64_t>({kChunk, bs - off, last - prefetched + 1});
    const char* kt = reinterpret_cast<const char*>(kc) + KtChunkElem(sh, block, kvh, off) * esz;
    for (int64_t d = 0; d < hd; d += kstep) _mm_prefetch(kt + d * krow, _MM_HINT_T0);
    const char* v = reinterpret_cast<const char*>(vc) + VChunkElem(sh, block, kvh, off) * esz;
    for (int64_t j = 0; j < used; ++j) {
      for (int64_t c = 0; c < hd * esz; c += 64) {
        _mm_prefetch(v + j * sh.kv_row * esz + c, _MM_HINT_T0);
      }
    }
    prefetched = off + kChunk < bs ? prefetched + kChunk : (blk + 1) * bs;
  };
  for (int i = 0; i < kPrefetchChunks; ++i) prefetch_chunk();
  for (int64_t blk = 0; blk * bs <= last; ++blk) {
    const int64_t block = table[blk];
    for (int64_t off = 0; off < bs && blk * bs + off <= last; off += kChunk) {
      prefetch_chunk();
      const int64_t start = blk * bs + off;
      const int64_t width = std::min<int64_t>(kChunk, bs - off);
      const int64_t used = std::min<int64_t>(width, last - start + 1);  // keys any row reads
      const __mmask16 lanes = TailMask(width);
      // First row whose position reaches this chunk (rows are ordered by position).
      const int64_t r_first = std::max<int64_t>(0, start - pos0) * sh.group;

      const int64_t k_elem = KtChunkElem(sh, block, kvh, off);
      const int64_t v_elem = VChunkElem(sh, block, kvh, off);
      if (!f16) {
        run_chunk(ChunkView<float>{reinterpret_cast<const float*>(kc) + k_elem, bs,
                                   reinterpret_cast<const float*>(vc) + v_elem, sh.kv_row},
                  r_first, start, width, used, lanes);
        continue;
      }
      const auto* kh = reinterpret_cast<const uint16_t*>(kc) + k_elem;
      const auto* vh = reinterpret_cast<const uint16_t*>(vc) + v_elem;
      if (nrows - r_first <= kDirectRows) {
        // Few rows (decode): converting K and V as they are loaded is cheaper than staging.
        run_chunk(ChunkView<uint16_t>{kh, bs, vh, sh.kv_row}, r_first, start, width, used, lanes);
        continue;
      }
      // Many rows: convert the chunk to F32 once, shared by all of them.
      for (int64_t d = 0; d < hd; ++d) {
        _mm512_storeu_ps(sc.kt.data() + d * kChunk, LoadF16Masked(kh + d * bs, lanes));
      }
      for (int64_t j = 0; j < used; ++j) {
        for (int64_t c = 0; c < hd; c += 16) {
          const __mmask16 m = hd - c >= 16 ? static_cast<__mmask16>(0xffff) : TailMask(hd - c);
          _mm512_mask_storeu_ps(sc.v.data() + j * hd + c, m, LoadF16Masked(vh + j * sh.kv_row + c, m));
        }
      }
      run_chunk(ChunkView<float>{sc.kt.data(), kChunk, sc.v.data(), hd}, r_first, start, width,
                used, lanes);
    }
  }

  for (int64_t row = 0; row < nrows; ++row) {
    const int64_t t = t0 + row / sh.group;
    const int64_t h = kvh * sh.group + row % sh.group;
    float* dst = static_cast<float*>(out.data) + t * out.stride + h * hd;
    const float* o = sc.o.data() + row * hd_pad;
    const __m512 vinv = _mm512_set1_ps(1.0f / sc.l[row]);
    for (int64_t c = 0; c < full; ++c) _mm512_storeu_ps(dst + 16 * c, _mm512_mul_ps(Load16(o + 16 * c), vinv));
    if (hd_tail) {
      _mm512_mask_storeu_ps(dst + 16 * full, hd_tail, _mm512_mul_ps(Load16(o + 16 * full), vinv));
    }
  }
}

}  // namespace

void CpuBackend::PlanAttention() {
  const int64_t S = static_cast<int64_t>(batch_.seq_lens.size());
  const int64_t group = spec_.num_heads / spec_.num_kv_heads;
  const int64_t tile_tokens = options_.attention_tile_tokens > 0
                                  ? std::min<int64_t>(options_.attention_tile_tokens,
                                                      std::max<int64_t>(1, kTileRows / group))
                                  : std::max<int64_t>(1, kTileRows / group);
  attn_items_.clear();
  std::vector<int64_t>& cost = attn_cost_;
  cost.clear();  // NOTE: a member so that its capacity is reused across steps
  int64_t total = 0;
  for (int64_t s = 0; s < S; ++s) {
    const int64_t q0 = batch_.query_start_loc[s], q1 = batch_.query_start_loc[s + 1];
    for (int64_t a = q0; a < q1; a += tile_tokens) {
      const int64_t b = std::min(q1, a + tile_tokens);
      // Cost ~ key visits of the tile's rows + staging one pass over its keys.
      int64_t c = 0;
      for (int64_t t = a; t < b; ++t) c += group * (batch_.positions[t] + 1 + 8);
      c += batch_.positions[b - 1] + 1;
      for (int64_t g = 0; g < spec_.num_kv_heads; ++g) {
        attn_items_.push_back({static_cast<int32_t>(s), static_cast<int32_t>(g),
                               static_cast<int32_t>(a), static_cast<int32_t>(b)});
        cost.push_back(c);
        total += c;
      }
    }
  }
  const int64_t n = static_cast<int64_t>(attn_items_.size());
  const int chunks = total < kMinParallelCost ? 1 : pool_.threads();
  attn_split_.assign(chunks + 1, n);
  attn_split_[0] = 0;
  int64_t acc = 0;
  int c = 1;
  for (int64_t u = 0; u < n && c < chunks; ++u) {
    acc += cost[u];
    if (acc * chunks >= total * c) attn_split_[c++] = u + 1;
  }
}

void CpuBackend::Attention(int layer, const Tensor& q, float scale, Tensor out) {
  LLMUX_CHECK(has_batch_) << "Attention without BeginBatch";
  LLMUX_CHECK(q.dtype == DType::kF32 && out.dtype == DType::kF32) << "Attention: f32 only";
  const int64_t T = static_cast<int64_t>(batch_.positions.size());
  const AttnShape sh{spec_.num_heads,
                     spec_.num_kv_heads,
                     spec_.num_heads / spec_.num_kv_heads,
                     spec_.head_dim,
                     spec_.block_size,
                     static_cast<int64_t>(spec_.num_kv_heads) * spec_.head_dim,
                     batch_.max_blocks_per_seq,
                     scale};
  LLMUX_CHECK(layer >= 0 && layer < spec_.num_layers && q.rows == T &&
              q.cols == sh.heads * sh.head_dim && out.rows == T && out.cols == q.cols)
      << "Attention: shape mismatch";
  const std::byte* kc = KCache(layer);
  const std::byte* vc = VCache(layer);
  const int chunks = static_cast<int>(attn_split_.size()) - 1;
  pool_.ParallelFor(chunks, [&](int64_t c0, int64_t c1) {
    // NOTE: grows once per thread; no allocation per op afterwards.
    thread_local Scratch scratch;
    for (int64_t u = attn_split_[c0]; u < attn_split_[c1]; ++u) {
      const AttnItem& it = attn_items_[u];
      AttendTile(sh, spec_.dtype, kc, vc, batch_.block_tables.data() + it.seq * sh.max_blocks, q,
                 out, batch_.positions[it.t0], it.t0, it.t1, it.kv_head, scratch);
    }
  });
}

}  // namespace llmux::cpu
