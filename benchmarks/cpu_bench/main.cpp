// cpu_bench: llama-bench-style throughput of the forward pass on the CPU backend.
//   pp<N>: prompt processing of N tokens in one batch (tokens/s)
//   tg<N>: generation of N tokens one at a time after a 1-token prompt (tokens/s)
// Prints a table with tokens/s and the weight bandwidth achieved during generation
// (weight bytes read per token x tokens/s).
//
//   build/cpu_bench --model DIR|FILE.gguf [--model ...] [--threads 2] [--pp 512] [--tg 128] [--reps 3]
//                   [--quantize q8_0] [--blas] [--kv-dtype f32|f16] [--bf16-activations bf16|f32]
//                   [--op-profile]
// --quantize q8_0 loads the weights as model.quantize: q8_0 does (Q8_0 matrices).
// --bf16-activations f32 keeps BF16 weights' activations exact as engine.cpu_bf16_activations:
// f32 does (default bf16: rounded to bf16, AVX-512 BF16 dot products).
// --kv-dtype f16 keeps the KV cache in F16 as engine.kv_dtype: f16 does (llama-bench's default).
// --op-profile also prints where a decode step's time goes, op by op (op_profile.h); the
// timing adds ~20 ns per op.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "llmux/backend.h"
#include "llmux/model.h"
#include "llmux/safetensors.h"
#include "model/gguf_llama.h"
#include "op_profile.h"

namespace {

using namespace llmux;
using Clock = std::chrono::steady_clock;

struct Options {
  std::vector<std::string> models;
  int threads = 2;
  int pp = 512;
  int tg = 128;
  int reps = 3;
  bool blas = false;
  bool q8 = false;
  bool op_profile = false;
  DType kv = DType::kF32;
  CpuBf16Activations bf16 = CpuBf16Activations::kBf16;
};

// A single sequence in blocks 0..n (contiguous), `computed` tokens already cached.
ForwardBatch SequenceBatch(int first_pos, int n, int block_size, int max_blocks) {
  ForwardBatch b;
  b.max_blocks_per_seq = max_blocks;
  for (int i = 0; i < n; ++i) {
    const int pos = first_pos + i;
    b.token_ids.push_back(3 + (pos * 7) % 200);
    b.positions.push_back(pos);
    b.slot_mapping.push_back(pos);
  }
  b.query_start_loc = {0, n};
  b.seq_lens = {first_pos + n};
  for (int i = 0; i < max_blocks; ++i) b.block_tables.push_back(i);
  b.logits_indices = {n - 1};
  (void)block_size;
  return b;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int Run(const Options& o) {
  std::printf("| %-28s | %-5s | %7s | %-6s | %12s | %10s |\n", "model", "dtype", "threads", "test",
              "t/s", "GB/s");
  std::printf("|------------------------------|-------|---------|--------|--------------|------------|\n");
  for (const std::string& dir : o.models) {
    CpuBackendOptions bo;
    bo.threads = o.threads;
    bo.use_blas = o.blas;
    bo.bf16_activations = o.bf16;
    auto backend = CreateCpuBackend(bo);
    if (!backend.ok()) return std::fprintf(stderr, "%s\n", backend.status().ToString().c_str()), 1;
    bench::OpTimingBackend* timing = nullptr;
    if (o.op_profile) {
      auto t = std::make_unique<bench::OpTimingBackend>(std::move(*backend));
      timing = t.get();
      *backend = std::move(t);
    }
    ModelLoadOptions lo;
    lo.quantize_q8_0 = o.q8;
    auto model = Model::Load(dir, backend->get(), std::max(o.pp, 1), lo);
    if (!model.ok()) return std::fprintf(stderr, "%s\n", model.status().ToString().c_str()), 1;
    const ModelConfig& c = (*model)->config();
    const int block = 16;
    const int max_len = o.pp + o.tg + 1;
    const int max_blocks = (max_len + block - 1) / block;
    KvCacheSpec spec{c.num_layers, max_blocks, block, c.num_heads, c.num_kv_heads, c.head_dim, o.kv};
    if (Status s = (*backend)->InitKvCache(spec); !s.ok()) return std::fprintf(stderr, "%s\n", s.ToString().c_str()), 1;

    // Bytes of weights one decode token reads: every tensor once (tied embeddings once).
    std::unique_ptr<WeightStore> store;
    if (std::filesystem::path(dir).extension() == ".gguf") {
      auto gguf = OpenGgufLlama(dir);
      if (!gguf.ok()) return std::fprintf(stderr, "%s\n", gguf.status().ToString().c_str()), 1;
      store = std::move(gguf->weights);
    } else {
      auto st = WeightStore::Open(dir);
      if (!st.ok()) return std::fprintf(stderr, "%s\n", st.status().ToString().c_str()), 1;
      store = std::move(st).value();
    }
    double weight_bytes = 0;
    std::string dtype = "?";
    for (const std::string& name : store->Names()) {
      const HostTensor* t = store->Find(name);
      // Matrices of whole 32-element rows are what --quantize q8_0 turns into Q8_0.
      const bool q8 = o.q8 && t->shape.size() == 2 && t->shape[1] % kQ8BlockElems == 0;
      weight_bytes += q8 ? static_cast<double>(DTypeBytes(DType::kQ8_0, t->numel()))
                         : static_cast<double>(t->nbytes);
      if (name.find("q_proj.weight") != std::string::npos) {
        dtype = std::string(DTypeName(q8 ? DType::kQ8_0 : t->dtype));
      }
    }
    // The embedding lookup reads one row, but a tied table is read whole as the LM head.
    const std::string name = std::filesystem::path(dir).filename().string();

    std::vector<double> pp_rates, tg_rates;
    for (int rep = 0; rep < o.reps + 1; ++rep) {  // first repetition warms up
      auto t0 = Clock::now();
      auto r = (*model)->Forward(SequenceBatch(0, o.pp, block, max_blocks));
      if (!r.ok()) return std::fprintf(stderr, "%s\n", r.status().ToString().c_str()), 1;
      const double pp_s = std::chrono::duration<double>(Clock::now() - t0).count();
      if (timing != nullptr) timing->set_recording(rep > 0);
      t0 = Clock::now();
      for (int i = 0; i < o.tg; ++i) {
        auto g = (*model)->Forward(SequenceBatch(1 + i, 1, block, max_blocks));
        if (!g.ok()) return std::fprintf(stderr, "%s\n", g.status().ToString().c_str()), 1;
      }
      const double tg_s = std::chrono::duration<double>(Clock::now() - t0).count();
      if (timing != nullptr) timing->set_recording(false);
      if (rep == 0) continue;
      pp_rates.push_back(o.pp / pp_s);
      tg_rates.push_back(o.tg / tg_s);
    }
    const double pp = Median(pp_rates), tg = Median(tg_rates);
    std::printf("| %-28s | %-5s | %7d | pp%-4d | %12.1f | %10s |\n", name.c_str(), dtype.c_str(), o.threads, o.pp, pp, "");
    std::printf("| %-28s | %-5s | %7d | tg%-4d | %12.1f | %10.1f |\n", name.c_str(), dtype.c_str(), o.threads, o.tg, tg,
                weight_bytes * tg / 1e9);
    if (timing != nullptr) timing->Report(stdout);
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--model") o.models.push_back(next());
    else if (a == "--threads") o.threads = std::stoi(next());
    else if (a == "--pp") o.pp = std::stoi(next());
    else if (a == "--tg") o.tg = std::stoi(next());
    else if (a == "--reps") o.reps = std::stoi(next());
    else if (a == "--blas") o.blas = true;
    else if (a == "--op-profile") o.op_profile = true;
    else if (a == "--kv-dtype") {
      const std::string k = next();
      if (k != "f32" && k != "f16") {
        std::fprintf(stderr, "--kv-dtype: expected f32 or f16, got '%s'\n", k.c_str());
        return 2;
      }
      o.kv = k == "f16" ? DType::kF16 : DType::kF32;
    }
    else if (a == "--bf16-activations") {
      const std::string b = next();
      if (b != "bf16" && b != "f32") {
        std::fprintf(stderr, "--bf16-activations: expected bf16 or f32, got '%s'\n", b.c_str());
        return 2;
      }
      o.bf16 = b == "bf16" ? CpuBf16Activations::kBf16 : CpuBf16Activations::kF32;
    }
    else if (a == "--quantize") {
      const std::string q = next();
      if (q != "q8_0" && q != "none") {
        std::fprintf(stderr, "--quantize: expected q8_0 or none, got '%s'\n", q.c_str());
        return 2;
      }
      o.q8 = q == "q8_0";
    }
    else {
      std::fprintf(stderr, "usage: cpu_bench --model DIR [--model DIR ...] [--threads N] [--pp N] [--tg N] [--reps N] [--quantize q8_0|none] [--blas] [--kv-dtype f32|f16] [--bf16-activations bf16|f32] [--op-profile]\n");
      return 2;
    }
  }
  if (o.models.empty()) {
    std::fprintf(stderr, "cpu_bench: at least one --model is required\n");
    return 2;
  }
  return Run(o);
}
