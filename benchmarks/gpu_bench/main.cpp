// gpu_bench: what the daemon runs, timed. The real Model (fused q/k/v and
// gate/up weights, as Model::Load builds them) with synthetic BF16 weights of a
// config.json's shape (no checkpoint is read or written; the values do not
// change the time) is served by a real Engine, and whole engine steps are
// timed: schedule, batch metadata, forward, sampling through
// Backend::SampleTokens (on the device for CUDA: only token ids come back, into
// pinned memory), emit. --sampling picks greedy (default) or nucleus requests
// (temperature 0.8, top_p 0.95: the draw's full path in the sampling kernel).
//
//   1. the device and its measured memory bandwidth (a device-to-device copy);
//   2. decode steps at each --batches size with --context-token contexts:
//   ms/step, tokens/s,
//      bytes that step must move (every weight once + the batch's KV) and that
//      as a fraction of the measured bandwidth (the roofline);
//   3. one prefill of --prefill tokens;
//   4. with --micro, the kernel microbenchmarks on a hand-built model of the
//   same shape: paged
//      attention decode alone, small-M GEMMs per weight shape (bench_model.h),
//      and SampleTokens alone on [1, 64, 256] x vocab logits (greedy and nucleus; us per row).
//
// Usage: gpu_bench [--config DIR] [--backend cuda|cpu] [--batches 1,8,32,256]
// [--context 1024]
//                  [--prefill 2048] [--steps 20] [--fast] [--micro]
//                  [--sampling greedy|nucleus] [--out FILE.md]
// --config names a model directory (its config.json; default: the llama3-8b
// shape written to a temporary directory). --fast runs the pool mode
// engine.batch_invariant: false. --backend cpu exercises the same harness
// without a GPU (tests, small shapes).
#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "llmux/backend.h"
#include "llmux/engine.h"
#include "llmux/model.h"

#ifdef LLMUX_HAVE_CUDA
#include "backend/cuda/cuda_access.h"
#include "bench_model.h"
#endif

namespace llmux::bench {
namespace {

struct Options {
  std::string config_dir;
  std::string backend = "cuda";
  std::vector<int> batches = {1, 8, 32, 256};
  int context = 1024;
  int prefill = 2048;
  int steps = 20;
  bool fast = false;
  bool micro = false;
  std::string sampling = "greedy";  // or "nucleus"
  std::string out;
};

// The requests' sampling parameters for --sampling.
void SetSampling(const Options& o, SamplingParams* p) {
  if (o.sampling == "nucleus") {
    p->temperature = 0.8f;
    p->top_p = 0.95f;
  } else {
    p->temperature = 0;
  }
}

bool ParseArgs(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    try {
      if (a == "--config") {
        o->config_dir = next();
      } else if (a == "--backend") {
        o->backend = next();
      } else if (a == "--batches") {
        o->batches.clear();
        std::stringstream ss(next());
        for (std::string t; std::getline(ss, t, ',');) o->batches.push_back(std::stoi(t));
      } else if (a == "--context") {
        o->context = std::stoi(next());
      } else if (a == "--prefill") {
        o->prefill = std::stoi(next());
      } else if (a == "--steps") {
        o->steps = std::stoi(next());
      } else if (a == "--fast") {
        o->fast = true;
      } else if (a == "--micro") {
        o->micro = true;
      } else if (a == "--sampling") {
        o->sampling = next();
        if (o->sampling != "greedy" && o->sampling != "nucleus") {
          std::fprintf(stderr, "gpu_bench: --sampling must be greedy or nucleus\n");
          return false;
        }
      } else if (a == "--out") {
        o->out = next();
      } else {
        std::fprintf(stderr, "gpu_bench: unknown argument %s\n", a.c_str());
        return false;
      }
    } catch (const std::exception&) {
      std::fprintf(stderr, "gpu_bench: %s needs a number\n", a.c_str());
      return false;
    }
  }
  const bool batches_ok = !o->batches.empty() && std::all_of(o->batches.begin(), o->batches.end(),
                                                             [](int b) { return b >= 1; });
  if (!batches_ok || o->context < 1 || o->prefill < 1 || o->steps < 1 ||
      (o->backend != "cuda" && o->backend != "cpu")) {
    std::fprintf(stderr,
                 "gpu_bench: --batches needs sizes >= 1, "
                 "--context/--prefill/--steps >= 1, "
                 "--backend cuda or cpu\n");
    return false;
  }
  return true;
}

// The Llama-3-8B shape (HF config.json), used when no --config is given.
constexpr char kLlama3_8B[] =
    R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 4096,
 "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
 "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 8192,
 "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "tie_word_embeddings": false,
 "torch_dtype": "bfloat16", "bos_token_id": 128000, "eos_token_id": 128001})";

double Seconds(std::chrono::steady_clock::time_point a) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count();
}

StatusOr<std::unique_ptr<Backend>> MakeBackend(const Options& o) {
  if (o.backend == "cpu") {
    CpuBackendOptions c;
    c.use_blas = o.fast;
    return CreateCpuBackend(c);
  }
  CudaBackendOptions c;
  c.batch_invariant = !o.fast;
  return CreateCudaBackend(c);
}

// Bytes one decode step must read at least: every weight once (in the backend's
// dtype for matrices: 2 bytes; norms f32) plus, per sequence, its whole KV
// context in every layer.
double WeightBytes(const ModelConfig& c) {
  const double dim = c.hidden_size, q = c.q_size(), kv = c.kv_size(), ffn = c.intermediate_size;
  const double per_layer = dim * (q + 2 * kv) + q * dim + 3 * dim * ffn;
  const double matrices = c.num_layers * per_layer +
                          static_cast<double>(c.vocab_size) * dim * (c.tie_word_embeddings ? 1 : 2);
  return 2 * matrices + 4 * dim * (2 * c.num_layers + 1);
}
double KvBytes(const ModelConfig& c, const KvCacheSpec& kv, int batch, int context) {
  return static_cast<double>(batch) * context * c.num_layers * 2.0 * c.kv_size() *
         static_cast<double>(DTypeSize(kv.dtype));
}

struct Table {
  std::vector<std::string> rows;
  void Add(const std::string& row) {
    std::printf("%s\n", row.c_str());
    std::fflush(stdout);
    rows.push_back(row);
  }
};

std::string Row(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string Row(const char* fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  return line;
}

// Serves `batch` greedy requests of `context` prompt tokens until every one has
// its first token (the prefills), then times `steps` decode steps of the whole
// batch.
StatusOr<double> TimeDecode(Engine& engine, const ModelConfig& c, const Options& opt, int batch,
                            int context, int steps, uint64_t* next_id) {
  std::mt19937 rng(static_cast<uint32_t>(batch));
  std::uniform_int_distribution<int32_t> token(0, c.vocab_size - 1);
  std::map<uint64_t, int> produced;
  std::vector<uint64_t> ids;
  for (int s = 0; s < batch; ++s) {
    EngineRequest r;
    r.id = (*next_id)++;
    r.tenant = "bench";
    r.prompt.resize(context);
    for (int32_t& t : r.prompt) t = token(rng);
    SetSampling(opt, &r.sampling);
    r.sampling.seed = r.id;
    r.sampling.ignore_eos = true;
    r.sampling.max_tokens = steps + 8;
    ids.push_back(r.id);
    produced[r.id] = 0;
    LLMUX_RETURN_IF_ERROR(engine.Submit(std::move(r), [&produced](EngineOutput&& out) {
      produced[out.id] += static_cast<int>(out.tokens.size());
    }));
  }
  auto all_started = [&] {
    return std::all_of(produced.begin(), produced.end(), [](auto& p) { return p.second > 0; });
  };
  for (int guard = 0; !all_started(); ++guard) {
    LLMUX_ASSIGN_OR_RETURN(bool progressed, engine.StepOnce());
    if (!progressed || guard > 1 << 20) return Internal("the prefills did not finish");
  }
  for (int i = 0; i < 3; ++i) LLMUX_RETURN_IF_ERROR(engine.StepOnce().status());  // graphs
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; ++i) LLMUX_RETURN_IF_ERROR(engine.StepOnce().status());
  const double per_step = Seconds(t0) / steps;
  for (uint64_t id : ids) engine.Abort(id);
  LLMUX_RETURN_IF_ERROR(engine.RunUntilIdle());
  return per_step;
}

StatusOr<double> TimePrefill(Engine& engine, const ModelConfig& c, int tokens, uint64_t* next_id) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int32_t> token(0, c.vocab_size - 1);
  bool done = false;
  EngineRequest r;
  r.id = (*next_id)++;
  r.tenant = "bench";
  r.prompt.resize(tokens);
  for (int32_t& t : r.prompt) t = token(rng);
  r.sampling.temperature = 0;
  r.sampling.ignore_eos = true;
  r.sampling.max_tokens = 1;
  LLMUX_RETURN_IF_ERROR(
      engine.Submit(std::move(r), [&done](EngineOutput&& out) { done |= out.finished; }));
  const auto t0 = std::chrono::steady_clock::now();
  while (!done) {
    LLMUX_ASSIGN_OR_RETURN(bool progressed, engine.StepOnce());
    if (!progressed) return Internal("the prefill did not finish");
  }
  return Seconds(t0);
}

#ifdef LLMUX_HAVE_CUDA
// Seconds per Backend::SampleTokens call on [rows, vocab] random logits (seeded), `mode`
// greedy or nucleus, the best of `reps` after a warm-up call.
StatusOr<double> TimeSampling(Backend& b, int vocab, int rows, const std::string& mode,
                              int reps) {
  const size_t n = static_cast<size_t>(rows) * vocab;
  LLMUX_ASSIGN_OR_RETURN(auto buf, b.Allocate(n * 4));
  std::mt19937 rng(11);
  std::normal_distribution<float> logit(0.0f, 3.0f);
  std::vector<float> host(n);
  for (float& x : host) x = logit(rng);
  const Tensor logits = Tensor::Dense(buf->data(), DType::kF32, rows, vocab);
  LLMUX_RETURN_IF_ERROR(cuda::CopyTensorFromHost(b, logits, host.data()));
  Options o;
  o.sampling = mode;
  std::vector<SamplingParams> params(rows);
  std::vector<SampleRow> sample_rows(rows);
  for (int r = 0; r < rows; ++r) {
    SetSampling(o, &params[r]);
    sample_rows[r].params = &params[r];
    sample_rows[r].seed = static_cast<uint64_t>(r);
  }
  std::vector<SampledToken> out;
  double best = 0;
  for (int i = 0; i <= reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    LLMUX_RETURN_IF_ERROR(b.SampleTokens(logits, SampleBatch{{}, sample_rows}, &out));
    const double t = Seconds(t0);
    if (i > 0 && (best == 0 || t < best)) best = t;  // call 0 warms up
  }
  return best;
}
#endif

int Main(int argc, char** argv) {
  Options opt;
  if (!ParseArgs(argc, argv, &opt)) return 2;
  if (opt.config_dir.empty()) {
    opt.config_dir = (std::filesystem::temp_directory_path() / "gpu_bench-llama3-8b").string();
    std::filesystem::create_directories(opt.config_dir);
    std::ofstream(opt.config_dir + "/config.json") << kLlama3_8B;
  }
  Table table;
  const int max_batch = *std::max_element(opt.batches.begin(), opt.batches.end());

  auto backend = MakeBackend(opt);
  if (!backend.ok()) {
    std::fprintf(stderr, "gpu_bench: %s\n", backend.status().ToString().c_str());
    return 1;
  }
  Backend* b = backend->get();
  double bandwidth = 0;  // bytes/s; 0 when not measured (cpu)
#ifdef LLMUX_HAVE_CUDA
  if (opt.backend == "cuda") {
    auto probe = cuda::ProbeDevice(*b);
    if (!probe.ok()) {
      std::fprintf(stderr, "gpu_bench: %s\n", probe.status().ToString().c_str());
      return 1;
    }
    bandwidth = probe->copy_bandwidth;
    std::printf(
        "[gpu_bench] device: %s, %d SMs, %.1f GiB; measured copy "
        "bandwidth %.2f TB/s\n",
        probe->name.c_str(), probe->sm_count, probe->memory_gib, bandwidth / 1e12);
  }
#endif
  const int batch_tokens = std::max(opt.prefill, max_batch);
  auto t0 = std::chrono::steady_clock::now();
  auto model = Model::LoadSynthetic(opt.config_dir, b, batch_tokens, /*seed=*/1);
  if (!model.ok()) {
    std::fprintf(stderr, "gpu_bench: %s\n", model.status().ToString().c_str());
    return 1;
  }
  const ModelConfig config = (*model)->config();
  std::printf(
      "[gpu_bench] %s backend (%s), synthetic weights of %s (%d "
      "layers, dim %d, ffn %d, "
      "vocab %d) loaded in %.1f s\n",
      opt.backend.c_str(), opt.fast ? "fast mode" : "batch-invariant", opt.config_dir.c_str(),
      config.num_layers, config.hidden_size, config.intermediate_size, config.vocab_size,
      Seconds(t0));
  EngineConfig ec;
  ec.kv_cache_tokens = static_cast<int64_t>(max_batch) * (opt.context + opt.steps + 32);
  ec.kv_cache_tokens = std::max<int64_t>(ec.kv_cache_tokens, opt.prefill + 64);
  ec.scheduler.block_size = 16;
  ec.scheduler.max_seqs = max_batch;
  ec.scheduler.max_batched_tokens = batch_tokens;
  ec.scheduler.max_model_len = std::max(opt.context, opt.prefill) + opt.steps + 32;
  ec.scheduler.lanes = {{"standard", 0}};
  auto engine = Engine::Create(ec, std::move(*backend), std::move(*model));
  if (!engine.ok()) {
    std::fprintf(stderr, "gpu_bench: %s\n", engine.status().ToString().c_str());
    return 1;
  }
  if (Status s = (*engine)->UpsertTenant("bench", TenantLimits{}); !s.ok()) {
    std::fprintf(stderr, "gpu_bench: %s\n", s.ToString().c_str());
    return 1;
  }
  const KvCacheSpec kv = b->kv_spec();  // the engine owns the backend now; it outlives this
  const double weights = WeightBytes(config);
  uint64_t next_id = 1;
  for (int batch : opt.batches) {
    auto step = TimeDecode(**engine, config, opt, batch, opt.context, opt.steps, &next_id);
    if (!step.ok()) {
      std::fprintf(stderr, "gpu_bench: decode batch %d: %s\n", batch,
                   step.status().ToString().c_str());
      return 1;
    }
    const double bytes = weights + KvBytes(config, kv, batch, opt.context);
    const double rate = bytes / *step;
    table.Add(
        Row("| engine decode step, batch %d, ctx %d, %s | %.3f ms | %.0f tok/s | %.2f "
            "TB/s | %s |",
            batch, opt.context, opt.sampling.c_str(), *step * 1e3, batch / *step, rate / 1e12,
            bandwidth > 0 ? Row("%.0f%%", 100.0 * rate / bandwidth).c_str() : "-"));
  }
  auto prefill = TimePrefill(**engine, config, opt.prefill, &next_id);
  if (!prefill.ok()) {
    std::fprintf(stderr, "gpu_bench: prefill: %s\n", prefill.status().ToString().c_str());
    return 1;
  }
  table.Add(Row("| engine prefill, %d tokens | %.1f ms | %.0f tok/s | - | - |", opt.prefill,
                *prefill * 1e3, opt.prefill / *prefill));
  // The kernel each weight shape ran (what GET /admin/pools shows as gemm.shapes).
  for (const GemmChoice& c : (*engine)->Stats().gemm_choices) {
    std::printf("[gpu_bench] GEMM N=%lld K=%lld %s: %s", static_cast<long long>(c.n),
                static_cast<long long>(c.k), c.out_f32 ? "f32" : "bf16", c.kernel.c_str());
    if (c.kernel == "cublaslt") std::printf(" tile %dx%d", c.tile_n, c.tile_m);
    if (c.kernel != "per_m") {
      std::printf(", %lld CTAs at M=1", static_cast<long long>(c.ctas_at_m1));
    }
    std::printf(", %d layouts, %d rejected\n", c.m_plans, c.rejected_layouts);
  }
#ifdef LLMUX_HAVE_CUDA
  if (opt.backend == "cuda") {
    auto stats = cuda::GetGraphStats(*b);
    auto fb = cuda::GemmFallbackShapes(*b);
    if (stats.ok() && fb.ok()) {
      std::printf(
          "[gpu_bench] graphs: %lld captured, %lld replays; GEMM "
          "shapes on the fallback "
          "kernel: %d\n",
          static_cast<long long>(stats->captures), static_cast<long long>(stats->replays), *fb);
    }
  }
#endif
  engine->reset();  // frees the model's weights and KV before the microbenchmarks

#ifdef LLMUX_HAVE_CUDA
  if (opt.micro && opt.backend == "cuda") {
    auto micro_backend = CreateCudaBackend({.batch_invariant = !opt.fast});
    if (!micro_backend.ok()) return 1;
    ModelShape shape;
    shape.vocab = config.vocab_size;
    shape.dim = config.hidden_size;
    shape.ffn = config.intermediate_size;
    shape.layers = config.num_layers;
    shape.heads = config.num_heads;
    shape.kv_heads = config.num_kv_heads;
    shape.head_dim = config.head_dim;
    const int seqs = std::min(32, max_batch);
    BenchModel bench(micro_backend->get(), shape, seqs, opt.context);
    if (Status st = bench.Init(); !st.ok()) {
      std::fprintf(stderr, "gpu_bench: %s\n", st.ToString().c_str());
      return 1;
    }
    bench.BeginDecode(seqs);
    const double at = bench.TimeAttention(50);
    const double kvb = bench.KvBytesPerStep(seqs) / shape.layers;
    table.Add(
        Row("| paged attention decode, %d seqs x %d | %.1f us | - | %.2f "
            "TB/s | %.0f%% |",
            seqs, opt.context, at * 1e6, kvb / at / 1e12, 100.0 * kvb / at / bandwidth));
    for (const auto& g : bench.GemmShapes()) {
      for (int m : {1, 8, 32}) {
        const double gt = bench.TimeGemm(g, m, 50);
        const double gb = 2.0 * g.n * g.k + 2.0 * m * g.k + (g.f32_out ? 4.0 : 2.0) * m * g.n;
        table.Add(Row("| GEMM %s M=%d N=%d K=%d | %.1f us | - | %.2f TB/s | %.0f%% |",
                      g.name.c_str(), m, g.n, g.k, gt * 1e6, gb / gt / 1e12,
                      100.0 * gb / gt / bandwidth));
      }
    }
    // SampleTokens alone: pack, upload, the kernel, the records back, the sync; time per call
    // and per row, rows sampled per second. The bytes are one read of the logits (the kernel
    // reads them several times: the column shows how far off one pass it is). N(0, 3) logits
    // at temperature 0.8 give nearly every token a nonzero weight: the draw's slowest case.
    for (const char* mode : {"greedy", "nucleus"}) {
      for (int rows : {1, 64, 256}) {
        if (rows > max_batch) continue;
        auto t = TimeSampling(**micro_backend, config.vocab_size, rows, mode, 20);
        if (!t.ok()) {
          std::fprintf(stderr, "gpu_bench: sampling: %s\n", t.status().ToString().c_str());
          return 1;
        }
        const double sb = 4.0 * rows * config.vocab_size;
        table.Add(Row("| SampleTokens %s, %d rows x %d | %.1f us (%.2f us/row) | %.0f | "
                      "%.2f TB/s | %.0f%% |",
                      mode, rows, config.vocab_size, *t * 1e6, *t * 1e6 / rows, rows / *t,
                      sb / *t / 1e12, 100.0 * sb / *t / bandwidth));
      }
    }
  }
#endif

  std::ostringstream out;
  out << "| what | time | tokens/s | bytes moved / time | of measured "
         "bandwidth |\n"
      << "|---|---|---|---|---|\n";
  for (const auto& r : table.rows) out << r << "\n";
  std::printf("\n%s", out.str().c_str());
  if (!opt.out.empty()) std::ofstream(opt.out) << out.str();
  return 0;
}

}  // namespace
}  // namespace llmux::bench

int main(int argc, char** argv) { return llmux::bench::Main(argc, argv); }
