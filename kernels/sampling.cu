// One block per logits row; see sampling.cuh for the definition and sampling_select.h for the
// integer selection and draw. Every token's place in the order (logit desc, id asc) is one
// 64-bit value; the argmax and the top logprobs are block minima of it, and the k-th
// candidate, the nucleus boundary and the draw are found by a radix descent over it: per
// level one pass over the row builds a histogram of the candidates under the digits chosen so
// far (count and integer weight per bucket, shared-memory atomics: integer sums, so the result
// does not depend on the order of the additions), and a block scan picks the bucket in which
// the prefix reaches the target. The first level's histogram (all candidates) is built once
// per row and shared by every descent.
#include "common.cuh"
#include "sampling.cuh"
#include "sampling_select.h"

namespace llmux::kernels {
namespace {

namespace sel = sampling;
constexpr uint64_t kNone = ~0ull;

struct Histogram {
  unsigned int count[sel::kBuckets];
  unsigned long long weight[sel::kBuckets];
};

struct Shared {
  Histogram root;   // level 0 over every candidate, built once per row
  Histogram level;  // deeper levels
  unsigned long long red[32];
  unsigned long long red2[32];
  unsigned long long red3[32];
  unsigned int chosen;
  unsigned long long chosen_count;   // candidates before the chosen bucket
  unsigned long long chosen_weight;  // their weight
  unsigned int chosen_size;          // candidates in it
  unsigned long long found_order;
  unsigned long long found_weight;
};

struct Row {
  const float* l;  // [vocab] processed logits
  int vocab;
  int id_bits;
  int total_bits;  // 32 + id_bits
  float lmax;
  float inv_t;

  __device__ uint64_t Order(int i) const { return sel::OrderValue(l[i], i, id_bits); }
  __device__ int Id(uint64_t order) const {
    return static_cast<int>(order & ((1ull << id_bits) - 1));
  }
  // The float weight (min-p) and the integer weight of token i.
  __device__ float FloatWeight(int i) const {
    return sel::Weight(sel::Scaled(l[i], lmax, inv_t));
  }
};

// Block-wide reductions: integer (exact, so any order gives the same result); every thread
// gets the result. `scratch`: 32 entries, reused across calls.
template <int kThreads>
__device__ __forceinline__ unsigned long long BlockSum(unsigned long long v,
                                                       unsigned long long* scratch) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();
  if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  unsigned long long t = (threadIdx.x & 31) < kThreads / 32 ? scratch[threadIdx.x & 31] : 0ull;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) t += __shfl_xor_sync(0xffffffffu, t, o);
  return t;
}

template <int kThreads>
__device__ __forceinline__ uint64_t BlockMin(uint64_t v, unsigned long long* scratch) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const uint64_t x = __shfl_xor_sync(0xffffffffu, static_cast<unsigned long long>(v), o);
    v = x < v ? x : v;
  }
  __syncthreads();
  if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  uint64_t t = (threadIdx.x & 31) < kThreads / 32 ? scratch[threadIdx.x & 31] : kNone;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const uint64_t x = __shfl_xor_sync(0xffffffffu, static_cast<unsigned long long>(t), o);
    t = x < t ? x : t;
  }
  return t;
}

// Exclusive prefix sums of (a, b) over the threads in thread order.
template <int kThreads>
__device__ __forceinline__ void BlockExclusiveScan2(unsigned long long a, unsigned long long b,
                                                    unsigned long long* out_a,
                                                    unsigned long long* out_b, Shared& s) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  unsigned long long ia = a, ib = b;  // inclusive within the warp
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const unsigned long long xa = __shfl_up_sync(0xffffffffu, ia, o);
    const unsigned long long xb = __shfl_up_sync(0xffffffffu, ib, o);
    if (lane >= o) {
      ia += xa;
      ib += xb;
    }
  }
  __syncthreads();
  if (lane == 31) {
    s.red[warp] = ia;
    s.red2[warp] = ib;
  }
  __syncthreads();
  unsigned long long wa = 0, wb = 0;  // the warps before this one
  for (int w = 0; w < warp; ++w) {
    wa += s.red[w];
    wb += s.red2[w];
  }
  *out_a = wa + ia - a;
  *out_b = wb + ib - b;
}

__device__ __forceinline__ void ClearHistogram(Histogram& h) {
  for (int d = threadIdx.x; d < sel::kBuckets; d += blockDim.x) {
    h.count[d] = 0u;
    h.weight[d] = 0ull;
  }
}

// Picks the first bucket of `h` (of 2^width) in which the running prefix, starting from
// (before_count, before_weight), reaches `target` (by count or by weight). Leaves the bucket
// and the sums before it in s.chosen*. Candidates' totals are at least the target (callers).
template <int kThreads>
__device__ void ChooseBucket(const Histogram& h, int width, bool by_count, uint64_t target,
                             uint64_t before_count, uint64_t before_weight, Shared& s) {
  constexpr int kPer = sel::kBuckets / kThreads;  // consecutive buckets per thread
  const int first = threadIdx.x * kPer;
  const int buckets = 1 << width;
  unsigned long long c = 0, w = 0;
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    if (first + j < buckets) {
      c += h.count[first + j];
      w += h.weight[first + j];
    }
  }
  unsigned long long ec = 0, ew = 0;
  BlockExclusiveScan2<kThreads>(c, w, &ec, &ew, s);
  c = before_count + ec;
  w = before_weight + ew;
  uint64_t mine = kNone;
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int d = first + j;
    if (d < buckets && mine == kNone) {
      const unsigned long long nc = c + h.count[d];
      const unsigned long long nw = w + h.weight[d];
      if (h.count[d] > 0 && (by_count ? nc : nw) >= target) {
        mine = static_cast<uint64_t>(d);
      } else {
        c = nc;
        w = nw;
      }
    }
  }
  const uint64_t d = BlockMin<kThreads>(mine, s.red3);
  if (d != kNone && mine == d) {
    s.chosen = static_cast<unsigned int>(d);
    s.chosen_count = c;
    s.chosen_weight = w;
    s.chosen_size = h.count[d];
  }
  __syncthreads();
}

// Adds the candidates of the row whose order value's top `matched` bits equal `prefix` to `h`,
// by their digit at [shift, shift + width). At level 0 most tokens share a few buckets (the
// digit is the logit's sign, exponent and top mantissa bit), so the lanes of a warp with the
// same bucket add together: one atomic per bucket per warp instead of one per token.
template <int kThreads>
__device__ void BuildHistogram(const Row& r, int matched, uint64_t prefix, int shift, int width,
                               Histogram& h, Shared& s, float min_p) {
  ClearHistogram(h);
  __syncthreads();
  constexpr unsigned int kNoBucket = 0xffffffffu;
  constexpr int kLowBits = 27;  // W < 2^41 = 2^14 * 2^27: 32 lanes' pieces sum in 32 bits
  const uint64_t mask = (1ull << width) - 1;
  unsigned long long above_min_p = 0;
  // NOTE: every lane runs the same number of iterations (the warp stays converged for
  // __match_any_sync); lanes past the end or without a candidate take no bucket.
  for (int base = 0; base < r.vocab; base += kThreads) {
    const int i = base + static_cast<int>(threadIdx.x);
    unsigned int d = kNoBucket;
    uint64_t w = 0;
    if (i < r.vocab) {
      const uint64_t o = r.Order(i);
      if (matched == 0 || (o >> (r.total_bits - matched)) == prefix) {
        const float fw = r.FloatWeight(i);
        w = sel::FixedWeight(fw);
        if (w != 0) {
          d = static_cast<unsigned int>((o >> shift) & mask);
          above_min_p += fw >= min_p ? 1 : 0;
        }
      }
    }
    const unsigned int peers = __match_any_sync(0xffffffffu, d);
    if (d != kNoBucket) {
      const unsigned int lo =
          __reduce_add_sync(peers, static_cast<unsigned int>(w & ((1u << kLowBits) - 1)));
      const unsigned int hi = __reduce_add_sync(peers, static_cast<unsigned int>(w >> kLowBits));
      if ((threadIdx.x & 31) == static_cast<unsigned int>(__ffs(peers) - 1)) {
        atomicAdd(&h.count[d], static_cast<unsigned int>(__popc(peers)));
        atomicAdd(&h.weight[d], (static_cast<unsigned long long>(hi) << kLowBits) + lo);
      }
    }
  }
  if (matched == 0) {
    const unsigned long long n = BlockSum<kThreads>(above_min_p, s.red);
    if (threadIdx.x == 0) s.found_order = n;  // read by the caller right after
  }
  __syncthreads();
}

struct Crossing {
  uint64_t order;
  uint64_t count;   // candidates up to and including it
  uint64_t weight;  // their weight
};

// The first candidate whose inclusive prefix (count or weight) reaches `target`.
template <int kThreads>
__device__ Crossing Descend(const Row& r, bool by_count, uint64_t target, Shared& s) {
  uint64_t before_count = 0, before_weight = 0, prefix = 0;
  int matched = 0;
  const int levels = sel::DigitLevels(r.total_bits);
  for (int level = 0; level < levels; ++level) {
    const int shift = sel::DigitShift(r.total_bits, level);
    const int width = sel::DigitWidth(r.total_bits, level);
    if (level > 0) BuildHistogram<kThreads>(r, matched, prefix, shift, width, s.level, s, 0.0f);
    ChooseBucket<kThreads>(level == 0 ? s.root : s.level, width, by_count, target, before_count,
                           before_weight, s);
    const unsigned int d = s.chosen;
    before_count = s.chosen_count;
    before_weight = s.chosen_weight;
    const unsigned int size = s.chosen_size;
    prefix = (prefix << width) | d;
    matched += width;
    __syncthreads();  // s.chosen* are rewritten by the next level
    if (size == 1 || shift == 0) {
      // One candidate under this prefix (at the last level order values are unique).
      for (int i = threadIdx.x; i < r.vocab; i += kThreads) {
        const uint64_t o = r.Order(i);
        if ((o >> shift) != prefix) continue;
        const uint64_t w = sel::FixedWeight(r.FloatWeight(i));
        if (w != 0) {
          s.found_order = o;
          s.found_weight = w;
        }
      }
      __syncthreads();
      const Crossing c{s.found_order, before_count + 1, before_weight + s.found_weight};
      __syncthreads();
      return c;
    }
  }
  return Crossing{kNone, 0, 0};  // not reached: the last level always ends the descent
}

// The draw of a non-greedy row (sampling_select.h).
template <int kThreads>
__device__ int Draw(const Row& r, const SamplingRowParams& p, Shared& s) {
  BuildHistogram<kThreads>(r, 0, 0, sel::DigitShift(r.total_bits, 0),
                           sel::DigitWidth(r.total_bits, 0), s.root, s, p.min_p);
  const uint64_t above_min_p = s.found_order;
  unsigned long long c = 0, w = 0;
  for (int d = threadIdx.x; d < sel::kBuckets; d += kThreads) {
    c += s.root.count[d];
    w += s.root.weight[d];
  }
  const uint64_t nnz = BlockSum<kThreads>(c, s.red);
  uint64_t mass = BlockSum<kThreads>(w, s.red2);
  uint64_t kept = nnz;
  if (p.top_k > 0 && static_cast<uint64_t>(p.top_k) < nnz) {
    const Crossing x = Descend<kThreads>(r, true, static_cast<uint64_t>(p.top_k), s);
    kept = x.count;
    mass = x.weight;
  }
  if (p.top_p < 1.0f) {
    const Crossing x = Descend<kThreads>(r, false, sel::TopPTarget(mass, p.top_p), s);
    kept = x.count;
    mass = x.weight;
  }
  if (p.min_p > 0.0f && above_min_p < kept) {
    const Crossing x = Descend<kThreads>(r, true, above_min_p, s);
    kept = x.count;
    mass = x.weight;
  }
  return r.Id(Descend<kThreads>(r, false, sel::DrawTarget(mass, p.uniform), s).order);
}

template <int kThreads>
__global__ void __launch_bounds__(kThreads)
    SamplingKernel(float* __restrict__ logits, int64_t stride, int vocab, int id_bits,
                   const SamplingRowParams* __restrict__ params,
                   const LogitEdit* __restrict__ edits, const float* __restrict__ biases,
                   const uint32_t* __restrict__ masks, float* __restrict__ edit_raw,
                   SampledRow* __restrict__ out) {
  __shared__ Shared s;
  float* l = logits + static_cast<int64_t>(blockIdx.x) * stride;
  const SamplingRowParams p = params[blockIdx.x];

  // 1. NaN -> -inf; the grammar's mask. A row without edits also finds its argmax (step 3)
  // in this pass: a greedy row then reads its logits once.
  const uint32_t* mask = p.mask_offset >= 0 ? masks + p.mask_offset : nullptr;
  const bool no_edits = p.edit_begin == p.edit_end;
  uint64_t best = kNone;
  for (int i = threadIdx.x; i < vocab; i += kThreads) {
    float x = l[i];
    const bool allowed = mask == nullptr || ((mask[i >> 5] >> (i & 31)) & 1u) != 0;
    if (x != x || !allowed) {
      x = -INFINITY;
      l[i] = x;
    }
    if (no_edits) {
      const uint64_t o = sel::OrderValue(x, i, id_bits);
      best = o < best ? o : best;
    }
  }
  __syncthreads();
  // 2. The edits: one token each, so in parallel.
  const bool counts = p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f;
  for (int e = p.edit_begin + threadIdx.x; e < p.edit_end; e += kThreads) {
    const LogitEdit ed = edits[e];
    float x = l[ed.token];
    edit_raw[e] = x;
    for (int b = ed.bias_begin; b < ed.bias_end; ++b) x = __fadd_rn(x, biases[b]);
    if (ed.flags & kEditSuppress) x = -INFINITY;
    if (ed.flags & kEditRepeat) {
      x = x > 0.0f ? __fdiv_rn(x, p.repetition_penalty) : __fmul_rn(x, p.repetition_penalty);
    }
    if (counts && ed.output_count > 0) {
      x = __fmaf_rn(-p.frequency_penalty, static_cast<float>(ed.output_count), x);
      x = __fsub_rn(x, p.presence_penalty);
    }
    l[ed.token] = x;
  }
  __syncthreads();

  // 3. argmax: the first token of the order.
  Row r{l, vocab, id_bits, 32 + id_bits, 0.0f, p.inv_temperature};
  auto argmin_pass = [&](uint64_t after) {
    uint64_t best = kNone;
    for (int i = threadIdx.x; i < vocab; i += kThreads) {
      const uint64_t o = r.Order(i);
      if ((after == kNone || o > after) && o < best) best = o;
    }
    return BlockMin<kThreads>(best, s.red);
  };
  uint64_t first = no_edits ? BlockMin<kThreads>(best, s.red) : argmin_pass(kNone);
  bool greedy = p.inv_temperature == 0.0f;
  if (l[r.Id(first)] == -INFINITY) {
    // Everything was suppressed: drop the processing (the mask stays), sample greedily.
    for (int e = p.edit_begin + threadIdx.x; e < p.edit_end; e += kThreads) {
      l[edits[e].token] = edit_raw[e];
    }
    __syncthreads();
    first = argmin_pass(kNone);
    greedy = true;
  }
  const int argmax = r.Id(first);
  r.lmax = l[argmax];
  if (r.lmax == INFINITY) greedy = true;
  const int token = greedy ? argmax : Draw<kThreads>(r, p, s);

  // 5. Logprobs of the processed logits: the normaliser as an integer sum too.
  SampledRow* o = out + blockIdx.x;
  if (threadIdx.x == 0) {
    o->token = token;
    o->logprob = 0.0f;
    o->num_top = 0;
  }
  if (p.logprobs < 0) return;
  const float m = r.lmax;
  if (isinf(m)) {
    if (threadIdx.x == 0) o->logprob = l[token] == m ? 0.0f : -INFINITY;
    return;
  }
  unsigned long long acc = 0;
  for (int i = threadIdx.x; i < vocab; i += kThreads) {
    acc += sel::FixedWeight(sel::Weight(sel::Scaled(l[i], m, 1.0f)));
  }
  const double lse = static_cast<double>(m) +
                     log(static_cast<double>(BlockSum<kThreads>(acc, s.red))) -
                     sel::kWeightBits * 0.69314718055994530942;
  if (threadIdx.x == 0) o->logprob = static_cast<float>(static_cast<double>(l[token]) - lse);
  const int n = min(min(p.logprobs, kMaxTopLogprobs), vocab);
  uint64_t at = kNone;
  for (int j = 0; j < n; ++j) {
    at = argmin_pass(at);
    if (threadIdx.x == 0) {
      const int id = r.Id(at);
      o->top_tokens[j] = id;
      o->top_logprobs[j] = static_cast<float>(static_cast<double>(l[id]) - lse);
    }
  }
  if (threadIdx.x == 0) o->num_top = n;
}

}  // namespace

cudaError_t LaunchSampling(float* logits, int64_t stride, int rows, int vocab,
                           const SamplingRowParams* params, const LogitEdit* edits,
                           const float* biases, const uint32_t* masks, float* edit_raw,
                           SampledRow* out, cudaStream_t stream, int threads) {
  LLMUX_KCHECK(logits != nullptr && params != nullptr && out != nullptr, "null pointer");
  LLMUX_KCHECK(vocab > 0 && vocab <= sel::kMaxVocab && stride >= vocab, "sampling shape");
  LLMUX_KCHECK(threads == 256 || threads == 1024, "sampling block size");
  if (rows == 0) return cudaSuccess;
  const int id_bits = sel::IdBits(vocab);
  if (threads == 256) {
    SamplingKernel<256><<<rows, 256, 0, stream>>>(logits, stride, vocab, id_bits, params, edits,
                                                  biases, masks, edit_raw, out);
  } else {
    SamplingKernel<1024><<<rows, 1024, 0, stream>>>(logits, stride, vocab, id_bits, params,
                                                    edits, biases, masks, edit_raw, out);
  }
  return cudaGetLastError();
}

}  // namespace llmux::kernels
