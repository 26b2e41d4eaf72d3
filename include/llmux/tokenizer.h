// Tokenizer: Hugging Face `tokenizer.json` BPE (byte-level as in GPT-2/Llama-3/Qwen2, and
// SentencePiece-style with byte fallback as in Llama-2/Mistral/TinyLlama), plus streaming
// detokenization. See docs/tokenizer.md for what is and is not supported.
//
// Behaviour mirrors HF `tokenizers` (the Rust library behind PreTrainedTokenizerFast) and, for
// `clean_up_tokenization_spaces`, transformers' Python decode.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "llmux/status.h"

namespace llmux {

namespace tokenizer_internal {
struct TokenizerImpl;
class DecodeStream;
}  // namespace tokenizer_internal

// Immutable after construction; every const method is safe to call from any number of threads
// at once (the BPE word cache is internally locked).
class Tokenizer {
 public:
  // Loads `tokenizer_json` and, when given and present, `tokenizer_config_json` (bos/eos token
  // strings, add_bos_token/add_eos_token, clean_up_tokenization_spaces).
  // Errors: NotFound (file missing), DataLoss (malformed JSON or inconsistent vocab/merges),
  // Unimplemented (a normalizer/pre-tokenizer/decoder/model llmux does not implement).
  static StatusOr<std::unique_ptr<Tokenizer>> FromFile(
      const std::filesystem::path& tokenizer_json,
      std::optional<std::filesystem::path> tokenizer_config_json = std::nullopt);
  // `dir`/tokenizer.json plus `dir`/tokenizer_config.json when that exists.
  static StatusOr<std::unique_ptr<Tokenizer>> FromModelDir(const std::filesystem::path& dir);
  // Same as FromFile, from in-memory JSON texts (config may be empty: no config).
  static StatusOr<std::unique_ptr<Tokenizer>> FromJson(std::string_view tokenizer_json,
                                                       std::string_view tokenizer_config_json);

  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Token ids of `text`. `add_special_tokens` adds BOS/EOS as the config says (tokenizer_config
  // add_bos_token/add_eos_token, else the tokenizer.json TemplateProcessing post-processor).
  // `parse_special`: when true, special added tokens written in the text (e.g. "<s>") become
  // their ids; when false they are tokenized as plain text (non-special added tokens are still
  // matched, as HF does with encode_special_tokens).
  // NOTE: invalid UTF-8 in `text` is replaced by U+FFFD (one per maximal invalid subsequence,
  // as Rust's String::from_utf8_lossy does) before tokenization; it never crashes.
  std::vector<int32_t> Encode(std::string_view text, bool add_special_tokens,
                              bool parse_special = true) const;

  // Text of `ids` as HF decodes it (decoder chain, then clean_up_tokenization_spaces when the
  // config sets it). Ids outside the vocabulary are skipped. `skip_special_tokens` drops
  // special added tokens (BOS, EOS, <|eot_id|>, ...).
  std::string Decode(std::span<const int32_t> ids, bool skip_special_tokens) const;

  // One past the largest id (model vocab and added tokens).
  int32_t vocab_size() const;
  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;
  // "" when no such token is configured.
  const std::string& bos_token() const;
  const std::string& eos_token() const;
  // Whether Encode(..., add_special_tokens=true) prepends BOS.
  bool adds_bos() const;

  // The vocabulary string of `id` (byte-level or "▁"-form, as stored); "" when out of range.
  std::string_view IdToPiece(int32_t id) const;
  // The bytes token `id` adds to a decoded text in the middle of it (SentencePiece "▁" -> ' ',
  // byte-fallback "<0xNN>" -> that byte, byte-level BPE pieces -> their raw bytes, which may be
  // a partial UTF-8 sequence). "" for special added tokens and ids out of range. Start-of-text
  // rules (a stripped leading space) and clean_up_tokenization_spaces are not applied.
  std::string TokenBytes(int32_t id) const;
  // Id of a vocabulary string or added token; nullopt when absent.
  std::optional<int32_t> TokenToId(std::string_view token) const;
  // Whether `id` is an added token marked special.
  bool IsSpecial(int32_t id) const;

 private:
  friend class IncrementalDetokenizer;
  explicit Tokenizer(std::unique_ptr<tokenizer_internal::TokenizerImpl> impl);
  std::unique_ptr<tokenizer_internal::TokenizerImpl> impl_;
};

// Streaming decode for one sequence: feed token ids one at a time, get back only newly
// completed text. Never returns a partial UTF-8 sequence, nor text that a later token could
// still change (e.g. a space that clean_up_tokenization_spaces may remove). For any ids,
// concat(Push(id) for id in ids) + Flush() == tokenizer.Decode(ids, skip_special_tokens).
// Not thread-safe (one per sequence); `tokenizer` must outlive it.
// NOTE: with SentencePiece byte fallback, a run of <0xXX> tokens is held until the run ends
// (HF decodes an invalid run as one U+FFFD per byte, so earlier bytes cannot be emitted early).
class IncrementalDetokenizer {
 public:
  IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special_tokens);
  ~IncrementalDetokenizer();
  IncrementalDetokenizer(const IncrementalDetokenizer&) = delete;
  IncrementalDetokenizer& operator=(const IncrementalDetokenizer&) = delete;

  // Newly completed text after adding `id` (possibly "").
  std::string Push(int32_t id);
  // Everything still held back; call once at the end of the sequence.
  std::string Flush();

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_tokens_;
  std::unique_ptr<tokenizer_internal::DecodeStream> stream_;
};

}  // namespace llmux
