// `llmux generate`: offline generation through the real engine (scheduler, paged KV cache,
// sampler), all prompts in one continuous batch.
#include <cstdio>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "llmux/backend.h"
#include "llmux/engine.h"
#include "llmux/model.h"
#include "llmux/tokenizer.h"
#include "tools/command.h"

namespace llmux::tools {
namespace {

constexpr char kUsage[] =
    "usage: llmux generate --model DIR --prompt TEXT [--prompt TEXT ...] [--max-tokens N]\n"
    "                      [--temperature T] [--top-p P] [--top-k K] [--seed S]\n"
    "                      [--backend cpu|cuda] [--threads N] [--kv-tokens N] [--ignore-eos]\n"
    "Prints only the generated text of each prompt (in prompt order), one per line block.\n";

int Fail(const std::string& message) {
  std::fprintf(stderr, "llmux generate: %s\n", message.c_str());
  return 1;
}

StatusOr<std::unique_ptr<Backend>> MakeBackend(const std::string& name, int threads) {
  if (name == "cpu") {
    CpuBackendOptions opts;
    opts.threads = threads;
    return CreateCpuBackend(opts);
  }
  if (name == "cuda") return CreateCudaBackend(CudaBackendOptions{});
  return InvalidArgument("--backend must be cpu or cuda, not '" + name + "'");
}

template <typename T>
bool ParseNumber(const std::optional<std::string>& s, T* out, const char* flag, std::string* err) {
  if (!s) return true;
  try {
    size_t used = 0;
    if constexpr (std::is_floating_point_v<T>) {
      *out = static_cast<T>(std::stod(*s, &used));
    } else {
      *out = static_cast<T>(std::stoll(*s, &used));
    }
    if (used == s->size()) return true;
  } catch (const std::exception&) {
  }
  *err = std::string(flag) + ": not a number: '" + *s + "'";
  return false;
}

int RunGenerate(const std::vector<std::string>& argv) {
  Args args(argv);
  if (args.Has("--help")) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  const std::string unknown = args.FirstUnknown(
      {"--model", "--prompt", "--max-tokens", "--temperature", "--top-p", "--top-k", "--seed",
       "--backend", "--threads", "--kv-tokens"},
      {"--ignore-eos"});
  if (!unknown.empty()) return Fail("unknown option '" + unknown + "'\n" + kUsage);
  const auto model_dir = args.Get("--model");
  const auto prompts = args.GetAll("--prompt");
  if (!model_dir || prompts.empty()) return Fail(std::string("--model and --prompt are required\n") + kUsage);

  SamplingParams sampling;
  sampling.temperature = 1.0f;
  sampling.max_tokens = 64;
  int threads = 0;
  int64_t kv_tokens = 0;
  uint64_t seed = 0;
  std::string err;
  if (!ParseNumber(args.Get("--max-tokens"), &sampling.max_tokens, "--max-tokens", &err) ||
      !ParseNumber(args.Get("--temperature"), &sampling.temperature, "--temperature", &err) ||
      !ParseNumber(args.Get("--top-p"), &sampling.top_p, "--top-p", &err) ||
      !ParseNumber(args.Get("--top-k"), &sampling.top_k, "--top-k", &err) ||
      !ParseNumber(args.Get("--seed"), &seed, "--seed", &err) ||
      !ParseNumber(args.Get("--threads"), &threads, "--threads", &err) ||
      !ParseNumber(args.Get("--kv-tokens"), &kv_tokens, "--kv-tokens", &err)) {
    return Fail(err);
  }
  if (args.Has("--seed")) sampling.seed = seed;
  sampling.ignore_eos = args.Has("--ignore-eos");

  auto tokenizer = Tokenizer::FromModelDir(*model_dir);
  if (!tokenizer.ok()) return Fail(tokenizer.status().ToString());
  auto backend = MakeBackend(args.Get("--backend").value_or("cpu"), threads);
  if (!backend.ok()) return Fail(backend.status().ToString());

  std::vector<std::vector<int32_t>> encoded;
  int64_t total = 0;
  for (const std::string& p : prompts) {
    encoded.push_back((*tokenizer)->Encode(p, /*add_special_tokens=*/true));
    total += static_cast<int64_t>(encoded.back().size()) + sampling.max_tokens;
  }
  EngineConfig config;
  config.scheduler.max_batched_tokens = 2048;
  config.scheduler.max_seqs = static_cast<int32_t>(std::max<size_t>(prompts.size(), 1));
  config.scheduler.max_model_len = 0;  // the model's own context
  config.kv_cache_tokens = kv_tokens > 0 ? kv_tokens : total + 16 * static_cast<int64_t>(prompts.size()) + 64;

  auto model = Model::Load(*model_dir, backend->get(), config.scheduler.max_batched_tokens);
  if (!model.ok()) return Fail(model.status().ToString());
  auto engine = Engine::Create(config, std::move(*backend), std::move(*model));
  if (!engine.ok()) return Fail(engine.status().ToString());
  Status s = (*engine)->UpsertTenant("cli", TenantLimits{});
  if (!s.ok()) return Fail(s.ToString());

  std::map<uint64_t, std::vector<int32_t>> outputs;
  std::map<uint64_t, Status> errors;
  for (size_t i = 0; i < encoded.size(); ++i) {
    EngineRequest r;
    r.id = i;
    r.tenant = "cli";
    r.prompt = encoded[i];
    r.sampling = sampling;
    Status submitted = (*engine)->Submit(std::move(r), [&outputs, &errors](EngineOutput&& out) {
      if (!out.error.ok()) errors[out.id] = out.error;
      auto& o = outputs[out.id];
      o.insert(o.end(), out.tokens.begin(), out.tokens.end());
    });
    if (!submitted.ok()) return Fail("prompt " + std::to_string(i) + ": " + submitted.ToString());
  }
  s = (*engine)->RunUntilIdle();
  if (!s.ok()) return Fail(s.ToString());
  for (size_t i = 0; i < encoded.size(); ++i) {
    if (errors.count(i)) return Fail("prompt " + std::to_string(i) + ": " + errors[i].ToString());
    std::cout << (*tokenizer)->Decode(outputs[i], /*skip_special_tokens=*/true) << "\n";
  }
  return 0;
}

}  // namespace

LLMUX_REGISTER_COMMAND("generate", "generate text for one or more prompts (offline, batched)",
                       RunGenerate);

}  // namespace llmux::tools
