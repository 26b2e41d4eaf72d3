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
                              bool use_blas = false) {
  auto f = std::make_unique<Fixture>();
  CpuBackendOptions o;
  o.threads = 2;
  o.use_blas = use_blas;
  f->be = std::move(CreateCpuBackend(o)).value();
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1, 1);
  const size_t bytes = n * k * DTypeSize(dt);
  std::vector<std::byte> image(bytes);
  for (int64_t i = 0; i < n * k; ++i) {
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

void BM_Gemv(benchmark::State& state, DType dt) {
  const int64_t n = state.range(0), k = state.range(1);
  const size_t bytes = n * k * DTypeSize(dt);
  const int copies = static_cast<int>(std::max<size_t>(1, kStreamBytes / bytes));
  auto f = Make(n, k, 1, dt, copies);
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

void BM_Gemm(benchmark::State& state, DType dt, bool use_blas) {
  const int64_t n = state.range(0), k = state.range(1), m = 512;
  auto f = Make(n, k, m, dt, 1, use_blas);
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
BENCHMARK_CAPTURE(BM_Gemm, f32, DType::kF32, false)->Apply(GemmShapes);
BENCHMARK_CAPTURE(BM_Gemm, f16, DType::kF16, false)->Apply(GemmShapes);
BENCHMARK_CAPTURE(BM_Gemm, bf16, DType::kBF16, false)->Apply(GemmShapes);
BENCHMARK_CAPTURE(BM_Gemm, f32_blas, DType::kF32, true)->Apply(GemmShapes);
BENCHMARK_CAPTURE(BM_Gemm, f16_blas, DType::kF16, true)->Apply(GemmShapes);

}  // namespace
}  // namespace llmux

BENCHMARK_MAIN();
