// grammar_decode: decode throughput of a batch with and without structured-output rows.
// Runs the same batch twice on the CPU backend: every row unconstrained, then `--constrained`
// rows under a JSON Schema that cannot complete within max_tokens (so every row generates
// exactly max_tokens either way), and prints generated tokens per second for both.
//
//   build/grammar_decode --model DIR [--batch 16] [--constrained 8] [--max-tokens 128]
//                        [--threads 2]
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "llmux/backend.h"
#include "llmux/engine.h"
#include "llmux/grammar.h"
#include "llmux/model.h"
#include "llmux/tokenizer.h"

namespace {

using namespace llmux;

// Records with strings, integers, enums and nesting; minItems keeps it open for the run.
const char* kSchema = R"({"type":"array","minItems":1000,"items":{"type":"object","properties":{
  "name":{"type":"string"},"age":{"type":"integer","minimum":0,"maximum":150},
  "status":{"enum":["active","inactive"]},"tags":{"type":"array","items":{"type":"string"}}},
  "required":["name","age","status","tags"]}})";

struct Options {
  std::string model;
  int batch = 16;
  int constrained = 8;
  int max_tokens = 128;
  int threads = 2;
};

[[noreturn]] void Die(const Status& s) {
  std::fprintf(stderr, "grammar_decode: %s\n", s.ToString().c_str());
  std::exit(1);
}

struct Result {
  double seconds;
  int64_t generated;
  int64_t steps;
};

Result RunOnce(const Options& o, int constrained, const Tokenizer& tok) {
  CpuBackendOptions bo;
  bo.threads = o.threads;
  auto backend = CreateCpuBackend(bo);
  if (!backend.ok()) Die(backend.status());
  auto model = Model::Load(o.model, backend->get(), 2048);
  if (!model.ok()) Die(model.status());
  EngineConfig c;
  c.scheduler.max_seqs = o.batch;
  c.scheduler.max_batched_tokens = 2048;
  c.kv_cache_tokens = static_cast<int64_t>(o.batch) * (o.max_tokens + 64) + 1024;
  auto engine = Engine::Create(c, std::move(*backend), std::move(*model));
  if (!engine.ok()) Die(engine.status());
  (void)(*engine)->UpsertTenant("bench", TenantLimits{});
  auto vocab = TokenVocabulary::FromTokenizer(tok, (*engine)->model_config().vocab_size,
                                              (*engine)->model_config().eos_token_ids);
  GrammarSpec spec;
  spec.schema = kSchema;
  GrammarLimits limits;
  limits.compile_deadline_ms = 600000;  // every mask precomputed: the run measures steady state
  auto grammar = CompileGrammar(spec, vocab, limits);
  if (!grammar.ok()) Die(grammar.status());
  int64_t generated = 0;
  const std::vector<int32_t> prompt = tok.Encode("Once upon a time there was a list:", true);
  for (int i = 0; i < o.batch; ++i) {
    EngineRequest r;
    r.id = static_cast<uint64_t>(i);
    r.tenant = "bench";
    r.prompt = prompt;
    r.sampling.temperature = 0;
    r.sampling.ignore_eos = true;
    r.sampling.max_tokens = o.max_tokens;
    if (i < constrained) r.grammar = *grammar;
    Status s = (*engine)->Submit(std::move(r), [&generated](EngineOutput&& out) {
      generated += static_cast<int64_t>(out.tokens.size());
      if (out.finished && !out.error.ok()) Die(out.error);
    });
    if (!s.ok()) Die(s);
  }
  const auto t0 = std::chrono::steady_clock::now();
  Status s = (*engine)->RunUntilIdle();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!s.ok()) Die(s);
  return {secs, generated, (*engine)->Stats().steps};
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) Die(InvalidArgument(a + " needs a value"));
      return argv[++i];
    };
    if (a == "--model") o.model = next();
    else if (a == "--batch") o.batch = std::stoi(next());
    else if (a == "--constrained") o.constrained = std::stoi(next());
    else if (a == "--max-tokens") o.max_tokens = std::stoi(next());
    else if (a == "--threads") o.threads = std::stoi(next());
    else Die(InvalidArgument("unknown flag " + a));
  }
  if (o.model.empty()) Die(InvalidArgument("--model is required"));
  auto tok = Tokenizer::FromModelDir(o.model);
  if (!tok.ok()) Die(tok.status());
  std::printf("| constrained rows | seconds | steps | generated | gen tok/s |\n"
              "|------------------|---------|-------|-----------|-----------|\n");
  for (int k : {0, o.constrained}) {
    const Result r = RunOnce(o, k, **tok);
    std::printf("| %2d of %-2d         | %7.2f | %5lld | %9lld | %9.1f |\n", k, o.batch, r.seconds,
                static_cast<long long>(r.steps), static_cast<long long>(r.generated),
                static_cast<double>(r.generated) / r.seconds);
  }
  return 0;
}
