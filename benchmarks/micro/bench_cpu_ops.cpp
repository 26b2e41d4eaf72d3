// CPU backend micro-benchmarks: decode GEMV bandwidth and prefill GEMM throughput.
//
//   cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DLLMUX_CUDA=OFF
//         -DLLMUX_BENCHMARKS=ON
//   cmake --build build-bench --target bench_cpu_ops -j2
//   ./build-bench/bench_cpu_ops
//
// GEMV (M = 1) cycles through enough copies of the weight to exceed the 32 MiB L3, so bytes/s
// is DRAM streaming bandwidth as in a real decode step. Weight shapes are [N, K].
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "llmux/backend.h"

namespace llmux {
namespace {

constexpr size_t kStreamBytes = 192u << 20;  // working set of the GEMV benchmarks

struct Fixture {
  std::unique_ptr<Backend> be;
  std::vector<std::vector<std::byte>> storage;  // weight copies, 2 bytes off alignment
  std::vector<Tensor> w;
  std::vector<float> x, out;
};

std::unique_ptr<Fixture> Make(int64_t n, int64_t k, int64_t m, DType dt, int copies,
                              bool use_blas = false, int threads = 2,
                              CpuBf16Activations bf16 = CpuBf16Activations::kBf16) {
  auto f = std::make_unique<Fixture>();
  CpuBackendOptions o;
  o.threads = threads;
  o.use_blas = use_blas;
  o.bf16_activations = bf16;
  f->be = std::move(CreateCpuBackend(o)).value();
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1, 1);
  const size_t bytes = DTypeBytes(dt, n * k);
  std::vector<std::byte> image(bytes);
  if (dt == DType::kQ8_0) {  // rows of k (a multiple of 32) quantized as model.quantize does
    std::vector<float> row(k);
    for (int64_t r = 0; r < n; ++r) {
      for (auto& v : row) v = dist(rng);
      QuantizeRowQ8_0(row.data(), k, image.data() + DTypeBytes(dt, r * k));
    }
  }
  for (int64_t i = 0; i < n * k && dt != DType::kQ8_0; ++i) {
    float v = dist(rng);
    if (dt == DType::kF32) {
      std::memcpy(&image[4 * i], &v, 4);
    } else {
      uint16_t h = dt == DType::kF16 ? FloatToHalf(v) : FloatToBf16(v);
      std::memcpy(&image[2 * i], &h, 2);
    }
  }
  for (int c = 0; c < copies; ++c) {
    f->storage.emplace_back(bytes + 64);
    std::byte* p = f->storage.back().data() + 2;
    std::memcpy(p, image.data(), bytes);
    HostTensor t;
    t.name.assign(1, 'w');
    t.dtype = dt;
    t.shape = {n, k};
    t.data = p;
    t.nbytes = bytes;
    f->w.push_back(f->be->LoadWeight(t, WeightKind::kMatrix).value());
  }
  f->x.resize(m * k);
  for (auto& v : f->x) v = dist(rng);
  f->out.resize(m * n);
  return f;
}

// bf16: the activations option for BF16 weights (bf16 = vdpbf16ps, f32 = the exact path).
void BM_Gemv(benchmark::State& state, DType dt,
             CpuBf16Activations bf16 = CpuBf16Activations::kBf16) {
  const int64_t n = state.range(0), k = state.range(1);
  const size_t bytes = DTypeBytes(dt, n * k);
  const int copies = static_cast<int>(std::max<size_t>(1, kStreamBytes / bytes));
  auto f = Make(n, k, 1, dt, copies, false, 2, bf16);
  Tensor x = Tensor::Dense(f->x.data(), DType::kF32, 1, k);
  Tensor out = Tensor::Dense(f->out.data(), DType::kF32, 1, n);
  int c = 0;
  for (auto _ : state) {
    f->be->MatMul(x, f->w[c], nullptr, out);
    c = (c + 1) % copies;
    benchmark::DoNotOptimize(f->out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
}

// The GEMV kernel's own ceiling: one thread, one weight small enough to stay in L2 (no DRAM
// stream), bytes/s of weight consumed per second of CPU time (so a loaded machine still gives
// a usable figure). Decode can reach the read bandwidth only where this is well above half of
// it per core (2 threads).
void BM_GemvHot(benchmark::State& state, DType dt) {
  const int64_t n = state.range(0), k = state.range(1);
  auto f = Make(n, k, 1, dt, 1, false, /*threads=*/1);
  Tensor x = Tensor::Dense(f->x.data(), DType::kF32, 1, k);
  Tensor out = Tensor::Dense(f->out.data(), DType::kF32, 1, n);
  for (auto _ : state) {
    f->be->MatMul(x, f->w[0], nullptr, out);
    benchmark::DoNotOptimize(f->out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * DTypeBytes(dt, n * k)));
}

void BM_Gemm(benchmark::State& state, DType dt, bool use_blas,
             CpuBf16Activations bf16 = CpuBf16Activations::kBf16) {
  const int64_t n = state.range(0), k = state.range(1), m = 512;
  auto f = Make(n, k, m, dt, 1, use_blas, 2, bf16);
  Tensor x = Tensor::Dense(f->x.data(), DType::kF32, m, k);
  Tensor out = Tensor::Dense(f->out.data(), DType::kF32, m, n);
  for (auto _ : state) {
    f->be->MatMul(x, f->w[0], nullptr, out);
    benchmark::DoNotOptimize(f->out.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * m * n * k * state.iterations() / 1e9,
                                                  benchmark::Counter::kIsRate);
}

void Shapes(benchmark::internal::Benchmark* b) {
  b->Args({576, 1536})->Args({1536, 576})->Args({49152, 576})->Args({768, 288})->Args({288, 768});
  b->Unit(benchmark::kMicrosecond)->UseRealTime();
}
void GemmShapes(benchmark::internal::Benchmark* b) {
  b->Args({576, 1536})->Args({1536, 576})->Args({768, 288});
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}

BENCHMARK_CAPTURE(BM_Gemv, f32, DType::kF32)->Apply(Shapes);
BENCHMARK_CAPTURE(BM_Gemv, f16, DType::kF16)->Apply(Shapes);
BENCHMARK_CAPTURE(BM_Gemv, bf16, DType::kBF16)->Apply(Shapes);
BENCHMARK_CAPTURE(BM_Gemv, bf16_f32act, DType::kBF16, CpuBf16Activations::kF32)->Apply(Shapes);
BENCHMARK_CAPTURE(BM_Gemv, q8_0, DType::kQ8_0)->Apply(Shapes);
void HotShapes(benchmark::internal::Benchmark* b) {
  b->Args({384, 576})->Unit(benchmark::kMicrosecond);  // 235 KiB (Q8_0) to 884 KiB (F32): L2
}
BENCHMARK_CAPTURE(BM_GemvHot, f32, DType::kF32)->Apply(HotShapes);
BENCHMARK_CAPTURE(BM_GemvHot, f16, DType::kF16)->Apply(HotShapes);
BENCHMARK_CAPTURE(BM_GemvHot, bf16, DType::kBF16)->Apply(HotShapes);
BENCHMARK_CAPTURE(BM_GemvHot, q8_0, DType::kQ8_0)->Apply(HotShapes);
BENCHMARK_CAPTURE(BM_Gemm, f32, DType::kF32, false)->Apply(GemmShapes);
BENCHMARK_CAPTURE(BM_Gemm, f16, DType::kF16, false)->Apply(GemmShapes);
BENCHMARK_CAPTURE(BM_Gemm, bf16, DType::kBF16, false)->Apply(GemmShapes);
BENCHMARK_CAPTURE(BM_Gemm, bf16_f32act, DType::kBF16, false, CpuBf16Activations::kF32)
    ->Apply(GemmShapes);
BENCHMARK_CAPTURE(BM_Gemm, q8_0, DType::kQ8_0, false)->Apply(GemmShapes);
BENCHMARK_CAPTURE(BM_Gemm, f32_blas, DType::kF32, true)->Apply(GemmShapes);
BENCHMARK_CAPTURE(BM_Gemm, f16_blas, DType::kF16, true)->Apply(GemmShapes);

// A whole Llama forward step through the Backend ops with random weights of a real model's
// shapes (tied embedding, logits for the last token only, as llama-bench does):
// decode = one token at position 256; prefill = 512 tokens from position 0.
struct ModelShape {
  int dim, hidden, layers, heads, kv_heads, vocab;
  DType dtype;
};

void BM_Forward(benchmark::State& state, ModelShape ms, int tokens) {
  CpuBackendOptions o;
  o.threads = 2;
  auto be = std::move(CreateCpuBackend(o)).value();
  const int hd = ms.dim / ms.heads, kvw = ms.kv_heads * hd;
  std::vector<std::vector<std::byte>> storage;
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> dist(-0.05f, 0.05f);
  auto weight = [&](int64_t n, int64_t k) {
    storage.emplace_back(n * k * DTypeSize(ms.dtype));
    for (int64_t i = 0; i < n * k; ++i) {
      float v = dist(rng);
      uint16_t h = ms.dtype == DType::kF16 ? FloatToHalf(v) : FloatToBf16(v);
      if (ms.dtype == DType::kF32) std::memcpy(&storage.back()[4 * i], &v, 4);
      else std::memcpy(&storage.back()[2 * i], &h, 2);
    }
    HostTensor t;
    t.name.assign(1, 'w');
    t.dtype = ms.dtype;
    t.shape = {n, k};
    t.data = storage.back().data();
    t.nbytes = storage.back().size();
    return be->LoadWeight(t, WeightKind::kMatrix).value();
  };
  struct Layer { Tensor q, k, v, o, gate, up, down; };
  std::vector<Layer> layers;
  for (int l = 0; l < ms.layers; ++l) {
    layers.push_back({weight(ms.dim, ms.dim), weight(kvw, ms.dim), weight(kvw, ms.dim),
                      weight(ms.dim, ms.dim), weight(ms.hidden, ms.dim),
                      weight(ms.hidden, ms.dim), weight(ms.dim, ms.hidden)});
  }
  Tensor emb = weight(ms.vocab, ms.dim);
  std::vector<float> ones(ms.dim, 1.0f), freq(hd / 2);
  for (int i = 0; i < hd / 2; ++i) freq[i] = std::pow(10000.0f, -2.0f * i / hd);
  Tensor norm = be->UploadF32(ones, 1, ms.dim).value();
  Tensor inv_freq = be->UploadF32(freq, 1, hd / 2).value();
  KvCacheSpec spec{ms.layers, 64, 16, ms.heads, ms.kv_heads, hd, DType::kF32};
  (void)be->InitKvCache(spec);
  const int start = tokens == 1 ? 256 : 0;
  ForwardBatch b;
  for (int t = 0; t < tokens; ++t) {
    b.token_ids.push_back(t % ms.vocab);
    b.positions.push_back(start + t);
    b.slot_mapping.push_back(start + t);
  }
  b.query_start_loc = {0, tokens};
  b.seq_lens = {start + tokens};
  for (int i = 0; i < 64; ++i) b.block_tables.push_back(i);
  b.max_blocks_per_seq = 64;
  b.logits_indices = {tokens - 1};
  auto buf = [&](int64_t rows, int64_t cols) { return std::vector<float>(rows * cols); };
  auto x = buf(tokens, ms.dim), h = buf(tokens, ms.dim), q = buf(tokens, ms.dim),
       k = buf(tokens, kvw), v = buf(tokens, kvw), att = buf(tokens, ms.dim),
       g = buf(tokens, ms.hidden), u = buf(tokens, ms.hidden), last = buf(1, ms.dim),
       logits = buf(1, ms.vocab);
  auto T = [&](std::vector<float>& d, int64_t rows, int64_t cols) {
    return Tensor::Dense(d.data(), DType::kF32, rows, cols);
  };
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  for (auto _ : state) {
    (void)be->BeginBatch(b);
    be->Embedding(emb, T(x, tokens, ms.dim));
    for (int l = 0; l < ms.layers; ++l) {
      if (l == 0) be->RmsNorm(T(x, tokens, ms.dim), norm, 1e-5f, T(h, tokens, ms.dim));
      be->MatMul(T(h, tokens, ms.dim), layers[l].q, nullptr, T(q, tokens, ms.dim));
      be->MatMul(T(h, tokens, ms.dim), layers[l].k, nullptr, T(k, tokens, kvw));
      be->MatMul(T(h, tokens, ms.dim), layers[l].v, nullptr, T(v, tokens, kvw));
      be->Rope(T(q, tokens, ms.dim), T(k, tokens, kvw), inv_freq);
      be->WriteKv(l, T(k, tokens, kvw), T(v, tokens, kvw));
      be->Attention(l, T(q, tokens, ms.dim), scale, T(att, tokens, ms.dim));
      be->MatMul(T(att, tokens, ms.dim), layers[l].o, nullptr, T(q, tokens, ms.dim));
      be->AddRmsNorm(T(x, tokens, ms.dim), T(q, tokens, ms.dim), norm, 1e-5f,
                     T(h, tokens, ms.dim));
      be->MatMul(T(h, tokens, ms.dim), layers[l].gate, nullptr, T(g, tokens, ms.hidden));
      be->MatMul(T(h, tokens, ms.dim), layers[l].up, nullptr, T(u, tokens, ms.hidden));
      be->SiluMul(T(g, tokens, ms.hidden), T(u, tokens, ms.hidden), T(g, tokens, ms.hidden));
      be->MatMul(T(g, tokens, ms.hidden), layers[l].down, nullptr, T(q, tokens, ms.dim));
      be->AddRmsNorm(T(x, tokens, ms.dim), T(q, tokens, ms.dim), norm, 1e-5f,
                     T(h, tokens, ms.dim));
    }
    be->GatherLogitsRows(T(h, tokens, ms.dim), T(last, 1, ms.dim));
    be->MatMul(T(last, 1, ms.dim), emb, nullptr, T(logits, 1, ms.vocab));
    benchmark::DoNotOptimize(logits.data());
  }
  state.counters["tok/s"] =
      benchmark::Counter(static_cast<double>(tokens) * state.iterations(), benchmark::Counter::kIsRate);
}

const ModelShape kStories15M{288, 768, 6, 6, 6, 32000, DType::kF32};
const ModelShape kSmolLm135M{576, 1536, 30, 9, 3, 49152, DType::kF16};
BENCHMARK_CAPTURE(BM_Forward, stories15M_f32_decode, kStories15M, 1)
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Forward, stories15M_f32_pp512, kStories15M, 512)
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Forward, smollm135M_f16_decode, kSmolLm135M, 1)
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Forward, smollm135M_f16_pp512, kSmolLm135M, 512)
    ->Unit(benchmark::kMillisecond)->UseRealTime();

// Attention alone (one layer): prefill = 512 query tokens from position 0 over their own keys
// (causal); decode = one query token at position `ctx - 1` over ctx cached keys. K/V in `kv`
// (F32 or F16). tok/s = query tokens per second.
struct AttnShape {
  int heads, kv_heads, head_dim;
};

void BM_Attention(benchmark::State& state, AttnShape as, DType kv, int tokens, int ctx) {
  CpuBackendOptions o;
  o.threads = 2;
  auto be = std::move(CreateCpuBackend(o)).value();
  KvCacheSpec spec{1, (ctx + 15) / 16, 16, as.heads, as.kv_heads, as.head_dim, kv};
  if (!be->InitKvCache(spec).ok()) {
    state.SkipWithError("this build has no such KV cache dtype");
    return;
  }
  auto batch = [&](int first, int n) {
    ForwardBatch b;
    for (int t = 0; t < n; ++t) {
      b.token_ids.push_back(1);
      b.positions.push_back(first + t);
      b.slot_mapping.push_back(first + t);
    }
    b.query_start_loc = {0, n};
    b.seq_lens = {first + n};
    for (int i = 0; i < spec.num_blocks; ++i) b.block_tables.push_back(i);
    b.max_blocks_per_seq = spec.num_blocks;
    b.logits_indices = {n - 1};
    return b;
  };
  const int qw = as.heads * as.head_dim, kw = as.kv_heads * as.head_dim;
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> dist(-1, 1);
  auto random = [&](size_t n) {
    std::vector<float> v(n);
    for (float& x : v) x = dist(rng);
    return v;
  };
  auto k = random(static_cast<size_t>(ctx) * kw), v = random(static_cast<size_t>(ctx) * kw);
  (void)be->BeginBatch(batch(0, ctx));
  be->WriteKv(0, Tensor::Dense(k.data(), DType::kF32, ctx, kw),
              Tensor::Dense(v.data(), DType::kF32, ctx, kw));
  auto q = random(static_cast<size_t>(tokens) * qw);
  std::vector<float> out(q.size());
  (void)be->BeginBatch(batch(ctx - tokens, tokens));
  const float scale = 1.0f / std::sqrt(static_cast<float>(as.head_dim));
  for (auto _ : state) {
    be->Attention(0, Tensor::Dense(q.data(), DType::kF32, tokens, qw), scale,
                  Tensor::Dense(out.data(), DType::kF32, tokens, qw));
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["tok/s"] = benchmark::Counter(static_cast<double>(tokens) * state.iterations(),
                                               benchmark::Counter::kIsRate);
}

const AttnShape kStoriesAttn{6, 6, 48};
const AttnShape kSmolAttn{9, 3, 64};
BENCHMARK_CAPTURE(BM_Attention, stories15M_f32_pp512, kStoriesAttn, DType::kF32, 512, 512)
    ->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Attention, stories15M_f16_pp512, kStoriesAttn, DType::kF16, 512, 512)
    ->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Attention, smollm135M_f32_pp512, kSmolAttn, DType::kF32, 512, 512)
    ->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Attention, smollm135M_f16_pp512, kSmolAttn, DType::kF16, 512, 512)
    ->Unit(benchmark::kMicrosecond)->UseRealTime();
// The contexts of llama-bench's tg128 (1..128 keys): one thread below kMinParallelCost.
BENCHMARK_CAPTURE(BM_Attention, smollm135M_f32_decode_ctx64, kSmolAttn, DType::kF32, 1, 64)
    ->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Attention, smollm135M_f32_decode_ctx128, kSmolAttn, DType::kF32, 1, 128)
    ->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Attention, smollm135M_f32_decode_ctx512, kSmolAttn, DType::kF32, 1, 512)
    ->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Attention, smollm135M_f32_decode_ctx2048, kSmolAttn, DType::kF32, 1, 2048)
    ->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Attention, smollm135M_f16_decode_ctx2048, kSmolAttn, DType::kF16, 1, 2048)
    ->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace
}  // namespace llmux

BENCHMARK_MAIN();
