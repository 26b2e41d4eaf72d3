// One 1024-thread block per logits row; see sampling.cuh for the definition. Every token's
// place in the order (logit desc, id asc) is one 64-bit value, so "the first k tokens", "the
// prefix up to the crossing" and "argmax" are all comparisons with one number, found by
// block-wide reductions and bisection.
#include "common.cuh"
#include "sampling.cuh"

namespace llmux::kernels {
namespace {

constexpr int kThreads = 1024;
constexpr uint64_t kNone = ~0ull;

// The host sampler's DescendingKey: ascending keys are descending logits (-0 and +0 alike).
__device__ __forceinline__ uint32_t DescendingKey(float x) {
  const uint32_t bits = __float_as_uint(__fadd_rn(x, 0.0f));
  const uint32_t flip = static_cast<uint32_t>(static_cast<int32_t>(bits) >> 31) | 0x80000000u;
  return ~(bits ^ flip);
}

struct Row {
  const float* l;  // [vocab] processed logits
  int vocab;
  int id_bits;
  float wmax;   // the argmax's logit
  float inv_t;  // 1 / temperature

  __device__ uint64_t Order(int i) const {
    return (static_cast<uint64_t>(DescendingKey(l[i])) << id_bits) | static_cast<uint64_t>(i);
  }
  __device__ int Id(uint64_t order) const {
    return static_cast<int>(order & ((1ull << id_bits) - 1));
  }
  __device__ float Weight(int i) const {
    return expf(__fmul_rn(__fsub_rn(l[i], wmax), inv_t));
  }
};

// Block-wide reductions with a fixed order (warp butterflies, then the 32 warp results in a
// butterfly); every thread gets the result. `scratch`: 32 entries, reused across calls.
__device__ __forceinline__ double BlockSumD(double v, double* scratch) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();
  if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  double t = scratch[threadIdx.x & 31];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) t += __shfl_xor_sync(0xffffffffu, t, o);
  return t;
}

template <bool kMin>
__device__ __forceinline__ uint64_t BlockPickU64(uint64_t v, unsigned long long* scratch) {
  auto pick = [](uint64_t a, uint64_t b) { return kMin ? (a < b ? a : b) : (a > b ? a : b); };
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    v = pick(v, static_cast<uint64_t>(__shfl_xor_sync(0xffffffffu,
                                                       static_cast<unsigned long long>(v), o)));
  }
  __syncthreads();
  if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  uint64_t t = scratch[threadIdx.x & 31];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    t = pick(t, static_cast<uint64_t>(__shfl_xor_sync(0xffffffffu,
                                                       static_cast<unsigned long long>(t), o)));
  }
  return t;
}

struct Scratch {
  double d[32];
  unsigned long long u[32];
};

// Sum over the tokens whose order value is <= `limit` of their weight (or 1 with kCount).
template <bool kCount>
__device__ double PrefixSum(const Row& r, uint64_t limit, Scratch& s) {
  double acc = 0.0;
  for (int i = threadIdx.x; i < r.vocab; i += kThreads) {
    if (r.Order(i) <= limit) acc += kCount ? 1.0 : static_cast<double>(r.Weight(i));
  }
  return BlockSumD(acc, s.d);
}

// The order value of the first token (among those <= limit) whose inclusive prefix sum
// reaches `target` (inclusive: >=; else >); kNone when even the whole prefix does not.
template <bool kCount>
__device__ uint64_t FindFirst(const Row& r, double target, bool inclusive, uint64_t limit,
                              Scratch& s) {
  auto crosses = [&](double v) { return inclusive ? v >= target : v > target; };
  if (!crosses(PrefixSum<kCount>(r, limit, s))) return kNone;
  uint64_t lo = 0;
  uint64_t hi = limit;  // invariant: crosses(PrefixSum(hi))
  while (lo < hi) {
    const uint64_t mid = lo + (hi - lo) / 2;
    if (crosses(PrefixSum<kCount>(r, mid, s))) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return hi;
}

// The last token in the order whose weight is >= `floor` (> 0 when `strict`).
__device__ uint64_t LastWithWeight(const Row& r, float floor, bool strict, Scratch& s) {
  uint64_t best = 0;
  for (int i = threadIdx.x; i < r.vocab; i += kThreads) {
    const float w = r.Weight(i);
    if (strict ? w > floor : w >= floor) {
      const uint64_t o = r.Order(i);
      best = o > best ? o : best;
    }
  }
  return BlockPickU64<false>(best, s.u);
}

// The first token of the order after `after` (kNone: from the start).
__device__ uint64_t NextInOrder(const Row& r, uint64_t after, Scratch& s) {
  uint64_t best = kNone;
  for (int i = threadIdx.x; i < r.vocab; i += kThreads) {
    const uint64_t o = r.Order(i);
    if ((after == kNone || o > after) && o < best) best = o;
  }
  return BlockPickU64<true>(best, s.u);
}

// The draw of a non-greedy row (sampling.cuh, step 4).
__device__ int Draw(const Row& r, const SamplingRowParams& p, Scratch& s) {
  const uint64_t all = (0xffffffffull << r.id_bits) | ((1ull << r.id_bits) - 1);
  uint64_t last = all;  // the kept set is the order's prefix up to `last`
  double mass = 0.0;
  if (p.top_k > 0) {
    last = FindFirst<true>(r, static_cast<double>(p.top_k), true, all, s);
    if (p.top_p < 1.0f) {
      const double need = static_cast<double>(p.top_p) * PrefixSum<false>(r, last, s);
      const uint64_t tp = FindFirst<false>(r, need, true, last, s);
      if (tp != kNone) last = tp;
    }
    if (p.min_p > 0.0f) {
      const uint64_t tm = LastWithWeight(r, p.min_p, false, s);
      if (tm < last) last = tm;
    }
    mass = PrefixSum<false>(r, last, s);
  } else {
    const double total = PrefixSum<false>(r, all, s);
    mass = total;
    bool cut = false;
    if (p.top_p < 1.0f) {
      const uint64_t tp =
          FindFirst<false>(r, static_cast<double>(p.top_p) * total, true, all, s);
      last = tp != kNone ? tp : LastWithWeight(r, 0.0f, true, s);
      mass = tp != kNone ? PrefixSum<false>(r, tp, s) : total;
      cut = true;
    }
    if (p.min_p > 0.0f && (!cut || r.Weight(r.Id(last)) < p.min_p)) {
      last = LastWithWeight(r, p.min_p, false, s);
      mass = PrefixSum<false>(r, last, s);
    }
  }
  const uint64_t t = FindFirst<false>(r, p.uniform * mass, false, last, s);
  if (t != kNone) return r.Id(t);
  // Rounding kept the prefix short of the target: the kept set's last token.
  return r.Id(last != all ? last : LastWithWeight(r, 0.0f, true, s));
}

__global__ void __launch_bounds__(kThreads)
    SamplingKernel(float* __restrict__ logits, int64_t stride, int vocab, int id_bits,
                   const SamplingRowParams* __restrict__ params,
                   const LogitEdit* __restrict__ edits, const float* __restrict__ biases,
                   const uint32_t* __restrict__ masks, float* __restrict__ edit_raw,
                   SampledRow* __restrict__ out) {
  __shared__ Scratch s;
  float* l = logits + static_cast<int64_t>(blockIdx.x) * stride;
  const SamplingRowParams p = params[blockIdx.x];

  // 1. NaN -> -inf; the grammar's mask.
  const uint32_t* mask = p.mask_offset >= 0 ? masks + p.mask_offset : nullptr;
  for (int i = threadIdx.x; i < vocab; i += kThreads) {
    const float x = l[i];
    const bool allowed = mask == nullptr || ((mask[i >> 5] >> (i & 31)) & 1u) != 0;
    if (x != x || !allowed) l[i] = -INFINITY;
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
  Row r{l, vocab, id_bits, 0.0f, p.inv_temperature};
  uint64_t first = NextInOrder(r, kNone, s);
  bool greedy = p.inv_temperature == 0.0f;
  if (l[r.Id(first)] == -INFINITY) {
    // Everything was suppressed: drop the processing (the mask stays), sample greedily.
    for (int e = p.edit_begin + threadIdx.x; e < p.edit_end; e += kThreads) {
      l[edits[e].token] = edit_raw[e];
    }
    __syncthreads();
    first = NextInOrder(r, kNone, s);
    greedy = true;
  }
  const int argmax = r.Id(first);
  r.wmax = l[argmax];
  if (r.wmax == INFINITY) greedy = true;
  const int token = greedy ? argmax : Draw(r, p, s);

  // 5. Logprobs of the processed logits.
  SampledRow* o = out + blockIdx.x;
  if (threadIdx.x == 0) {
    o->token = token;
    o->logprob = 0.0f;
    o->num_top = 0;
  }
  if (p.logprobs < 0) return;
  const float m = r.wmax;
  if (isinf(m)) {
    if (threadIdx.x == 0) o->logprob = l[token] == m ? 0.0f : -INFINITY;
    return;
  }
  double acc = 0.0;
  for (int i = threadIdx.x; i < vocab; i += kThreads) {
    acc += static_cast<double>(expf(__fsub_rn(l[i], m)));
  }
  const double lse = static_cast<double>(m) + log(BlockSumD(acc, s.d));
  if (threadIdx.x == 0) o->logprob = static_cast<float>(static_cast<double>(l[token]) - lse);
  const int n = min(min(p.logprobs, kMaxTopLogprobs), vocab);
  uint64_t at = kNone;
  for (int j = 0; j < n; ++j) {
    at = NextInOrder(r, at, s);
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
                           SampledRow* out, cudaStream_t stream) {
  LLMUX_KCHECK(logits != nullptr && params != nullptr && out != nullptr, "null pointer");
  LLMUX_KCHECK(vocab > 0 && stride >= vocab, "sampling shape");
  if (rows == 0) return cudaSuccess;
  int id_bits = 1;
  while ((1ll << id_bits) < vocab) ++id_bits;  // vocab <= 2^31, so the order fits 63 bits
  SamplingKernel<<<rows, kThreads, 0, stream>>>(logits, stride, vocab, id_bits, params, edits,
                                                biases, masks, edit_raw, out);
  return cudaGetLastError();
}

}  // namespace llmux::kernels
