// Structured outputs: allowed-token mask time per generated token at 32k and 128k byte-level
// BPE vocabularies, and schema compile time.
//
//   build/bench_grammar [--benchmark_repetitions=3]
//   LLMUX_LLAMA3_TOKENIZER=.testdata/llama3/tokenizer.json (scripts/test_data.sh) gives the
//   128k vocabulary; the 32k one is built by the BPE trainer (src/model/bpe_builder).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "grammar/grammar.h"
#include "grammar/json_pieces.h"
#include "grammar/json_schema_compiler.h"
#include "llmux/grammar.h"
#include "llmux/tokenizer.h"
#include "fixtures/bpe_builder.h"

namespace llmux {
namespace {

// A typical nested object schema (what a zod/pydantic model of a record produces).
const char* kSchema = R"({"type":"object","properties":{
  "id":{"type":"string","format":"uuid"},
  "name":{"type":"string","maxLength":64},
  "age":{"type":"integer","minimum":0,"maximum":150},
  "email":{"type":"string"},
  "address":{"type":"object","properties":{"street":{"type":"string"},"city":{"type":"string"},
     "zip":{"type":"string","pattern":"^[0-9]{5}$"}},"required":["street","city","zip"],
     "additionalProperties":false},
  "tags":{"type":"array","items":{"type":"string"},"maxItems":8},
  "status":{"enum":["active","inactive","banned"]},
  "score":{"type":"number"},
  "manager":{"anyOf":[{"type":"null"},{"type":"string"}]}},
  "required":["id","name","age","email","address","tags","status","score","manager"],
  "additionalProperties":false})";

const char* kDocument =
    R"({"id":"123e4567-e89b-12d3-a456-426614174000","name":"Ada Lovelace","age":36,)"
    R"("email":"ada@example.com","address":{"street":"12 St James's Square","city":"London",)"
    R"("zip":"10001"},"tags":["math","poetry","engines"],"status":"active","score":97.5,)"
    R"("manager":null})";

struct Vocab {
  std::unique_ptr<Tokenizer> tokenizer;
  std::shared_ptr<const TokenVocabulary> vocab;
};

const Vocab& Get(int which) {
  static Vocab v32k, v128k;
  Vocab& v = which == 32 ? v32k : v128k;
  if (v.vocab) return v;
  if (which == 32) {
    const ByteLevelBpe bpe = BuildByteLevelBpe(32000);
    auto tok = Tokenizer::FromJson(TokenizerJson(bpe, {{32000, "<|eos|>"}}, ""), "");
    if (!tok.ok()) std::abort();
    v.tokenizer = std::move(*tok);
  } else {
    const char* env = std::getenv("LLMUX_LLAMA3_TOKENIZER");
    const std::filesystem::path p = env ? env : ".testdata/llama3/tokenizer.json";
    auto tok = Tokenizer::FromFile(p);
    if (!tok.ok()) return v;
    v.tokenizer = std::move(*tok);
  }
  std::vector<int32_t> eos;
  if (v.tokenizer->eos_id()) eos.push_back(*v.tokenizer->eos_id());
  v.vocab = TokenVocabulary::FromTokenizer(*v.tokenizer, v.tokenizer->vocab_size(), eos);
  return v;
}

// Mask + accept per token along the tokenized document; counters give the median and p99 of
// the mask time alone.
void BM_MaskPerToken(benchmark::State& state) {
  const Vocab& v = Get(static_cast<int>(state.range(0)));
  if (!v.vocab) {
    state.SkipWithError("no 128k tokenizer (set LLMUX_LLAMA3_TOKENIZER; scripts/test_data.sh)");
    return;
  }
  GrammarSpec spec;
  spec.schema = kSchema;
  GrammarLimits limits;
  limits.compile_deadline_ms = 60000;  // precompute every mask before timing
  auto g = CompileGrammar(spec, v.vocab, limits);
  if (!g.ok()) {
    state.SkipWithError(g.status().ToString().c_str());
    return;
  }
  const std::vector<int32_t> ids = v.tokenizer->Encode(kDocument, false, false);
  GrammarMatcher m(*g);
  std::vector<uint32_t> mask(v.vocab->mask_words());
  std::vector<double> mask_us;
  for (auto _ : state) {
    for (int32_t id : ids) {
      const auto t0 = std::chrono::steady_clock::now();
      m.FillNextTokenBitmask(mask);
      const auto t1 = std::chrono::steady_clock::now();
      mask_us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
      if (!m.AcceptToken(id)) {
        state.SkipWithError("document token rejected");
        return;
      }
    }
    benchmark::DoNotOptimize(mask.data());
    m.Rollback(m.num_accepted());
  }
  std::sort(mask_us.begin(), mask_us.end());
  state.counters["tokens_per_doc"] = static_cast<double>(ids.size());
  state.counters["mask_us_median"] = mask_us[mask_us.size() / 2];
  state.counters["mask_us_p99"] = mask_us[mask_us.size() * 99 / 100];
  state.counters["vocab"] = v.vocab->size();
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(ids.size()));
}
BENCHMARK(BM_MaskPerToken)->Arg(32)->Arg(128)->Unit(benchmark::kMicrosecond);

// Schema -> automaton only (no token masks).
void BM_CompileSchema(benchmark::State& state) {
  for (auto _ : state) {
    grammar_internal::GrammarBuilder b(GrammarLimits{}.max_states);
    grammar_internal::JsonPieces pieces(b);
    auto rule = grammar_internal::CompileJsonSchema(
        kSchema, GrammarLimits{}, std::chrono::steady_clock::now() + std::chrono::seconds(10), b,
        pieces);
    auto g = b.Build(*rule);
    benchmark::DoNotOptimize(g);
  }
}
BENCHMARK(BM_CompileSchema)->Unit(benchmark::kMicrosecond);

// Compile plus every state's token mask (a cache miss in the daemon); the masks of shared leaf
// rules (JSON string bodies) come from the process-wide cache after the first iteration.
void BM_CompileWithMasks(benchmark::State& state) {
  const Vocab& v = Get(static_cast<int>(state.range(0)));
  if (!v.vocab) {
    state.SkipWithError("no 128k tokenizer (set LLMUX_LLAMA3_TOKENIZER; scripts/test_data.sh)");
    return;
  }
  GrammarSpec spec;
  spec.schema = kSchema;
  GrammarLimits limits;
  limits.compile_deadline_ms = 60000;
  for (auto _ : state) {
    auto g = CompileGrammar(spec, v.vocab, limits);
    benchmark::DoNotOptimize(g);
  }
}
BENCHMARK(BM_CompileWithMasks)->Arg(32)->Arg(128)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace llmux

BENCHMARK_MAIN();
