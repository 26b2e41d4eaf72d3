// gpu_bench: timings of the CUDA backend on a llama3-8b-shaped model with synthetic BF16
// weights (the values do not change the time; the shapes do). Prints one markdown table:
// decode step time at several batch sizes with 1k-token contexts (tokens/s, achieved HBM
// bandwidth as a fraction of --hbm-tbs), the paged-attention decode kernel alone, and
// small-M GEMMs. Shapes come from --config (an HF config.json, e.g. from `llmux make-model`)
// or default to Llama-3-8B. Usage:
//   gpu_bench [--config DIR/config.json] [--batches 1,32,256] [--context 1024]
//             [--hbm-tbs 4.3] [--out FILE.md]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "llmux/backend.h"

#ifdef LLMUX_HAVE_CUDA
#include "backend/cuda/cuda_access.h"
#include "bench_model.h"

namespace llmux::bench {
namespace {

struct Options {
  std::string config;
  std::vector<int> batches = {1, 32, 256};
  int context = 1024;
  double hbm_tbs = 4.3;
  std::string out;
};

bool ParseArgs(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--config") {
      o->config = next();
    } else if (a == "--batches") {
      o->batches.clear();
      std::stringstream ss(next());
      for (std::string t; std::getline(ss, t, ',');) o->batches.push_back(std::stoi(t));
    } else if (a == "--context") {
      o->context = std::stoi(next());
    } else if (a == "--hbm-tbs") {
      o->hbm_tbs = std::stod(next());
    } else if (a == "--out") {
      o->out = next();
    } else {
      std::fprintf(stderr, "gpu_bench: unknown argument %s\n", a.c_str());
      return false;
    }
  }
  return true;
}

bool ReadShape(const std::string& path, ModelShape* s) {
  std::ifstream f(path);
  if (!f) return false;
  try {
    const auto j = nlohmann::json::parse(f);
    s->vocab = j.at("vocab_size");
    s->dim = j.at("hidden_size");
    s->ffn = j.at("intermediate_size");
    s->layers = j.at("num_hidden_layers");
    s->heads = j.at("num_attention_heads");
    s->kv_heads = j.value("num_key_value_heads", s->heads);
    s->head_dim = j.value("head_dim", s->dim / s->heads);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpu_bench: %s: %s\n", path.c_str(), e.what());
    return false;
  }
  return true;
}

double Seconds(std::chrono::steady_clock::time_point a) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count();
}

int Main(int argc, char** argv) {
  Options opt;
  if (!ParseArgs(argc, argv, &opt)) return 2;
  ModelShape shape;  // Llama-3-8B by default
  if (!opt.config.empty() && !ReadShape(opt.config, &shape)) return 2;
  std::vector<std::string> rows;
  const double hbm = opt.hbm_tbs * 1e12;
  char line[512];

  // ---- Decode steps (CUDA graphs on, batch-invariant GEMMs) ----
  {
    auto backend = CreateCudaBackend({});
    if (!backend.ok()) {
      std::fprintf(stderr, "gpu_bench: %s\n", backend.status().ToString().c_str());
      return 1;
    }
    Backend* b = backend->get();
    const int max_batch = *std::max_element(opt.batches.begin(), opt.batches.end());
    std::printf("[gpu_bench] loading synthetic weights (%d layers, dim %d, ffn %d, vocab %d)\n",
                shape.layers, shape.dim, shape.ffn, shape.vocab);
    std::fflush(stdout);
    auto t0 = std::chrono::steady_clock::now();
    BenchModel model(b, shape, max_batch, opt.context);
    if (Status st = model.Init(); !st.ok()) {
      std::fprintf(stderr, "gpu_bench: %s\n", st.ToString().c_str());
      return 1;
    }
    std::printf("[gpu_bench] weights and KV pool ready in %.1f s\n", Seconds(t0));
    for (int batch : opt.batches) {
      for (int i = 0; i < 4; ++i) model.DecodeStep(batch);  // eager, capture, warm replays
      const int iters = 20;
      auto t = std::chrono::steady_clock::now();
      for (int i = 0; i < iters; ++i) model.DecodeStep(batch);
      const double step = Seconds(t) / iters;
      const double bytes = model.WeightBytes() + model.KvBytesPerStep(batch);
      std::snprintf(line, sizeof(line),
                    "| decode step, batch %d, ctx %d | %.3f ms | %.0f tok/s | %.2f TB/s | %.0f%% |",
                    batch, opt.context, step * 1e3, batch / step, bytes / step / 1e12,
                    100.0 * bytes / step / hbm);
      std::printf("%s\n", line);
      std::fflush(stdout);
      rows.push_back(line);
    }
    auto stats = cuda::GetGraphStats(*b);
    if (stats.ok()) {
      std::printf("[gpu_bench] graphs: %lld captured, %lld replays\n",
                  static_cast<long long>(stats->captures),
                  static_cast<long long>(stats->replays));
    }
    auto fb = cuda::GemmFallbackShapes(*b);
    if (fb.ok()) std::printf("[gpu_bench] GEMM shapes on the fallback kernel: %d\n", *fb);

    // ---- Paged attention alone: 32 sequences x context, decode ----
    const int seqs = std::min(32, max_batch);
    model.BeginDecode(seqs);
    const double at = model.TimeAttention(50);
    const double kv = model.KvBytesPerStep(seqs) / shape.layers;
    std::snprintf(line, sizeof(line),
                  "| paged attention decode, %d seqs x %d | %.1f us | - | %.2f TB/s | %.0f%% |",
                  seqs, opt.context, at * 1e6, kv / at / 1e12, 100.0 * kv / at / hbm);
    std::printf("%s\n", line);
    rows.push_back(line);

    // ---- Small-M GEMMs over the model's weight shapes ----
    for (const auto& g : model.GemmShapes()) {
      for (int m : {1, 2, 4, 8, 16}) {
        const double gt = model.TimeGemm(g, m, 50);
        const double gb = 2.0 * g.n * g.k + 2.0 * m * g.k + (g.f32_out ? 4.0 : 2.0) * m * g.n;
        std::snprintf(line, sizeof(line),
                      "| GEMM %s M=%d N=%d K=%d | %.1f us | - | %.2f TB/s | %.0f%% |",
                      g.name.c_str(), m, g.n, g.k, gt * 1e6, gb / gt / 1e12, 100.0 * gb / gt / hbm);
        std::printf("%s\n", line);
        rows.push_back(line);
      }
    }
  }

  std::ostringstream table;
  table << "| what | time | tokens/s | achieved bandwidth | of " << opt.hbm_tbs << " TB/s |\n"
        << "|---|---|---|---|---|\n";
  for (const auto& r : rows) table << r << "\n";
  std::printf("\n%s", table.str().c_str());
  if (!opt.out.empty()) {
    std::ofstream f(opt.out);
    f << table.str();
  }
  return 0;
}

}  // namespace
}  // namespace llmux::bench

int main(int argc, char** argv) { return llmux::bench::Main(argc, argv); }

#else  // !LLMUX_HAVE_CUDA

int main() {
  std::fprintf(stderr, "gpu_bench: built without CUDA\n");
  return 1;
}

#endif
