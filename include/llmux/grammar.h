// Structured outputs: JSON Schema -> grammar -> per-token allowed-vocabulary bitmasks.
//
// A GrammarSpec (plain, serializable: what a request asked for) is compiled against a
// TokenVocabulary (the byte string of every token of one model) into an immutable
// CompiledGrammar, shared by every request that uses the same schema. Each constrained
// sequence owns a GrammarMatcher over it: the engine asks the matcher for the bitmask of
// allowed tokens, masks the logits, samples, and advances the matcher with the sampled token.
// docs/structured_outputs.md lists what is supported, the whitespace policy and the limits.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "llmux/status.h"

namespace llmux {

class Tokenizer;

// What a request asks for. Plain value: the process pool sends it to its worker, which
// compiles it again against its own vocabulary.
struct GrammarSpec {
  enum class Kind {
    kJsonSchema,  // `schema` is a JSON Schema document (text)
    kJsonObject,  // any JSON object (`response_format: {type: "json_object"}`)
  };
  Kind kind = Kind::kJsonSchema;
  std::string schema;
  // Literal text around the JSON value (e.g. "<tool_call>" / "</tool_call>" for Hermes-style
  // tool calls); emitted byte for byte, no whitespace allowed around them.
  std::string prefix;
  std::string suffix;

  // A stable digest of every field (the compiled-grammar cache key).
  std::string Fingerprint() const;
};

struct GrammarLimits {
  size_t max_schema_bytes = 256 * 1024;  // text of the schema
  int32_t max_schema_depth = 64;         // nesting of schema objects (not of the JSON output)
  int32_t max_states = 200000;           // automaton states of the compiled grammar
  int32_t max_repeat = 4096;             // largest minLength/maxLength/minItems/maxItems bound
  int64_t compile_deadline_ms = 1000;    // wall time for compile + mask precomputation
};

// The byte string of every token of a model's vocabulary, and its EOS ids. Immutable; share
// one per model (building it costs a pass over the vocabulary).
class TokenVocabulary {
 public:
  // `vocab_size` is the model's (the logits row width; may exceed the tokenizer's). Special
  // added tokens and ids the tokenizer does not know get no bytes: a grammar never allows
  // them. `eos_ids` are allowed exactly when the grammar is complete.
  static std::shared_ptr<const TokenVocabulary> FromTokenizer(const Tokenizer& tokenizer,
                                                              int32_t vocab_size,
                                                              std::vector<int32_t> eos_ids);
  // From explicit byte strings (tests, benchmarks): token i has bytes `tokens[i]`.
  static std::shared_ptr<const TokenVocabulary> FromBytes(std::vector<std::string> tokens,
                                                          std::vector<int32_t> eos_ids);

  int32_t size() const { return static_cast<int32_t>(bytes_.size()); }
  const std::string& bytes(int32_t id) const { return bytes_[id]; }
  const std::vector<int32_t>& eos_ids() const { return eos_ids_; }
  // Ids with non-empty bytes, sorted by their bytes; lcp()[i] is the length of the common
  // prefix of sorted()[i] and sorted()[i - 1] (0 for i == 0).
  const std::vector<int32_t>& sorted() const { return sorted_; }
  const std::vector<uint16_t>& lcp() const { return lcp_; }
  // The bytes of sorted()[i], stored contiguously in sorted order (a vocabulary walk reads
  // them sequentially instead of chasing one heap string per token).
  std::string_view sorted_bytes(size_t i) const {
    return std::string_view(blob_).substr(offsets_[i], offsets_[i + 1] - offsets_[i]);
  }
  // One past the last index of sorted() whose token starts with byte `b`.
  int32_t first_byte_end(uint8_t b) const { return first_byte_end_[b]; }
  // Words of a packed bitmask over the vocabulary: bit (id % 32) of word (id / 32).
  int32_t mask_words() const { return (size() + 31) / 32; }
  // A stable digest of the vocabulary (part of the grammar cache key).
  uint64_t digest() const { return digest_; }

 private:
  TokenVocabulary(std::vector<std::string> tokens, std::vector<int32_t> eos_ids);
  std::vector<std::string> bytes_;
  std::vector<int32_t> eos_ids_;
  std::vector<int32_t> sorted_;
  std::vector<uint16_t> lcp_;
  std::vector<int32_t> first_byte_end_;  // [256]
  std::string blob_;                      // sorted tokens' bytes, concatenated
  std::vector<uint32_t> offsets_;         // [sorted().size() + 1] into blob_
  uint64_t digest_ = 0;
};

namespace grammar_internal {
struct Grammar;
class MaskCache;
}  // namespace grammar_internal

// An immutable compiled grammar bound to one vocabulary; thread-safe (its token-mask cache
// fills lazily under a lock). Share it through std::shared_ptr<const CompiledGrammar>.
class CompiledGrammar {
 public:
  ~CompiledGrammar();
  CompiledGrammar(const CompiledGrammar&) = delete;
  CompiledGrammar& operator=(const CompiledGrammar&) = delete;

  const TokenVocabulary& vocabulary() const { return *vocab_; }
  const grammar_internal::Grammar& grammar() const { return *grammar_; }
  grammar_internal::MaskCache& mask_cache() const { return *cache_; }
  // Approximate bytes held (automaton + filled mask cache); grows as the cache fills.
  size_t MemoryBytes() const;
  int32_t num_states() const;

 private:
  friend StatusOr<std::shared_ptr<const CompiledGrammar>> CompileGrammar(
      const GrammarSpec&, std::shared_ptr<const TokenVocabulary>, const GrammarLimits&);
  CompiledGrammar() = default;
  std::shared_ptr<const TokenVocabulary> vocab_;
  std::unique_ptr<grammar_internal::Grammar> grammar_;
  std::unique_ptr<grammar_internal::MaskCache> cache_;
};

// Compiles `spec` for `vocab`. Errors are InvalidArgument with a one-line message naming the
// offending schema keyword and its location (e.g. "unsupported JSON Schema keyword
// 'patternProperties' at #/properties/a"), or a limit that was exceeded. Precomputes the
// token masks of the grammar's states within the compile deadline (the rest fill lazily).
StatusOr<std::shared_ptr<const CompiledGrammar>> CompileGrammar(
    const GrammarSpec& spec, std::shared_ptr<const TokenVocabulary> vocab,
    const GrammarLimits& limits = {});

// For tool calling: a grammar accepting `prefix` + one JSON object {"name": N, "arguments": A}
// + `suffix`, where N is one of the tools' names and A matches that tool's parameter schema.
// `tools` holds (name, parameters schema JSON text) pairs; an empty schema means any object.
StatusOr<GrammarSpec> ToolCallGrammarSpec(
    const std::vector<std::pair<std::string, std::string>>& tools, std::string prefix = "",
    std::string suffix = "");

namespace grammar_internal {
class MatcherCore;
}

// The grammar state of one sequence. Not thread-safe: owned by the engine thread that
// samples the sequence. The CompiledGrammar must outlive it (the matcher holds a shared_ptr).
class GrammarMatcher {
 public:
  explicit GrammarMatcher(std::shared_ptr<const CompiledGrammar> grammar);
  ~GrammarMatcher();
  GrammarMatcher(const GrammarMatcher&) = delete;
  GrammarMatcher& operator=(const GrammarMatcher&) = delete;

  // Fills `bitmask` ([vocabulary().mask_words()] packed words, bit id%32 of word id/32) with
  // the tokens allowed next: those whose bytes keep the output a prefix of a sentence of the
  // grammar, plus the EOS ids when the output so far is a complete sentence.
  void FillNextTokenBitmask(std::span<uint32_t> bitmask) const;
  // Advances over `token`. Returns false (and changes nothing) when the token is not allowed.
  bool AcceptToken(int32_t token);
  // Advances over raw bytes (tests, prefixes); false and unchanged when they are not allowed.
  bool AcceptBytes(std::string_view bytes);
  // Undoes the last `num_tokens` successful AcceptToken/AcceptBytes calls (at most
  // num_accepted()).
  void Rollback(int32_t num_tokens);
  int32_t num_accepted() const;
  // Whether the output so far is a complete sentence (EOS allowed).
  bool IsComplete() const;
  // Complete and nothing but EOS can follow: the sequence should stop.
  bool IsTerminated() const;

  const CompiledGrammar& grammar() const { return *grammar_; }

 private:
  std::shared_ptr<const CompiledGrammar> grammar_;
  std::unique_ptr<grammar_internal::MatcherCore> core_;
};

// Compiled grammars cached per (tenant, spec, vocabulary) under a memory cap, least recently
// used evicted first. Thread-safe. Tenants never share entries (a cache hit's timing would
// tell one tenant what another asked for).
class GrammarCache {
 public:
  explicit GrammarCache(size_t max_bytes = 256u << 20, GrammarLimits limits = {});
  ~GrammarCache();
  GrammarCache(const GrammarCache&) = delete;
  GrammarCache& operator=(const GrammarCache&) = delete;

  // The cached grammar, or a fresh compile (errors as CompileGrammar's; not cached).
  StatusOr<std::shared_ptr<const CompiledGrammar>> GetOrCompile(
      const std::string& tenant, const GrammarSpec& spec,
      std::shared_ptr<const TokenVocabulary> vocab);

  struct Stats {
    int64_t hits = 0;
    int64_t misses = 0;
    int64_t evictions = 0;
    size_t entries = 0;
    size_t bytes = 0;
  };
  Stats GetStats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace llmux
