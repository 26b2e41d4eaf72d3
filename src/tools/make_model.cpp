// `llmux make-model`: writes an HF model directory with deterministic random weights.
#include "llmux/make_model.h"

#include <chrono>
#include <cstdio>
#include <string>

#include "llmux/model_shapes.h"
#include "tools/command.h"

namespace llmux::tools {
namespace {

void Usage() {
  std::fprintf(stderr,
               "usage: llmux make-model --shape NAME --out DIR [--dtype f32|f16|bf16] [--seed S]\n"
               "                        [--threads N] [--max-shard-bytes B]\n\n"
               "Writes config.json, tokenizer.json, tokenizer_config.json and safetensors\n"
               "weights (random, deterministic in shape/dtype/seed). Defaults: dtype bf16,\n"
               "seed 0, shards above 5e9 bytes.\n\nshapes:\n");
  for (const ModelShape& s : ModelShapes()) {
    const auto specs = ModelTensors(ShapeConfig(s));
    uint64_t params = 0;
    for (const TensorSpec& t : specs) params += t.numel();
    std::fprintf(stderr, "  %-15s %8.1fM params, %7.1f MB in bf16  (like %s)\n",
                 std::string(s.name).c_str(), static_cast<double>(params) / 1e6,
                 static_cast<double>(params) * 2 / 1e6, std::string(s.like).c_str());
  }
}

std::optional<uint64_t> ParseUint(const std::string& s) {
  if (s.empty() || s.size() > 19 || s.find_first_not_of("0123456789") != std::string::npos) {
    return std::nullopt;
  }
  return std::stoull(s);
}

int MakeModelCommand(const std::vector<std::string>& argv) {
  Args args(argv);
  if (args.Has("--help") || args.Has("-h")) {
    Usage();
    return 0;
  }
  const std::string unknown = args.FirstUnknown(
      {"--shape", "--dtype", "--seed", "--out", "--threads", "--max-shard-bytes"}, {});
  if (!unknown.empty()) {
    std::fprintf(stderr, "make-model: unknown option '%s'\n\n", unknown.c_str());
    Usage();
    return 2;
  }
  MakeModelOptions opt;
  if (!args.Get("--shape") || !args.Get("--out")) {
    std::fprintf(stderr, "make-model: --shape and --out are required\n\n");
    Usage();
    return 2;
  }
  opt.shape = *args.Get("--shape");
  opt.out_dir = *args.Get("--out");
  if (auto d = args.Get("--dtype")) {
    auto dtype = ParseDType(*d);
    if (!dtype.ok() || *dtype == DType::kI32) {
      std::fprintf(stderr, "make-model: --dtype must be f32, f16 or bf16, got '%s'\n", d->c_str());
      return 2;
    }
    opt.dtype = *dtype;
  }
  struct NumFlag {
    const char* name;
    uint64_t max;
  };
  for (const NumFlag f : {NumFlag{"--seed", UINT64_MAX}, NumFlag{"--threads", 256},
                          NumFlag{"--max-shard-bytes", UINT64_MAX}}) {
    auto s = args.Get(f.name);
    if (!s) continue;
    auto v = ParseUint(*s);
    if (!v || *v > f.max) {
      std::fprintf(stderr, "make-model: %s takes a non-negative integer, got '%s'\n", f.name,
                   s->c_str());
      return 2;
    }
    if (std::string(f.name) == "--seed") opt.seed = *v;
    if (std::string(f.name) == "--threads") opt.threads = static_cast<int>(*v);
    if (std::string(f.name) == "--max-shard-bytes") opt.max_shard_bytes = *v;
  }

  const auto start = std::chrono::steady_clock::now();
  auto result = MakeModel(opt);
  if (!result.ok()) {
    std::fprintf(stderr, "make-model: %s\n", result.status().ToString().c_str());
    return 1;
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("wrote %s: shape %s, %s, seed %llu, %.1f MB of weights in %.2f s (%.0f MB/s)\n",
              opt.out_dir.c_str(), opt.shape.c_str(), std::string(DTypeName(opt.dtype)).c_str(),
              static_cast<unsigned long long>(opt.seed),
              static_cast<double>(result->weight_bytes) / 1e6, secs,
              static_cast<double>(result->weight_bytes) / 1e6 / std::max(secs, 1e-9));
  for (const std::string& f : result->files) std::printf("  %s\n", f.c_str());
  return 0;
}

}  // namespace

LLMUX_REGISTER_COMMAND("make-model", "write an HF model directory with random weights",
                       MakeModelCommand);

}  // namespace llmux::tools
