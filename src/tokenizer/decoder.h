// Decoders of tokenizer.json ("decoder") as a streaming pipeline, plus transformers'
// clean_up_tokenization_spaces. Tokenizer::Decode and IncrementalDetokenizer both run the same
// DecodeStream, so streaming and one-shot decoding agree by construction.
#pragma once

#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "llmux/status.h"

namespace llmux::tokenizer_internal {

// One decoder step. It consumes the token strings that the previous step produced and passes
// on its own; a step may hold tokens back until later input or Finish() (stateful).
class DecodeStage {
 public:
  virtual ~DecodeStage() = default;
  // A fresh copy with empty state (stages in a DecoderSpec are prototypes).
  virtual std::unique_ptr<DecodeStage> Clone() const = 0;
  virtual void Push(std::string token, std::vector<std::string>& out) = 0;
  virtual void Finish(std::vector<std::string>& out) { (void)out; }
  // What this stage makes of `piece` in the middle of a text, as raw bytes (no UTF-8
  // repair, no start-of-text rules). Used for the bytes of single tokens (grammar masks).
  virtual void RawPiece(std::string& piece) const { (void)piece; }
};

// The immutable decoder chain of one tokenizer.
struct DecoderSpec {
  std::vector<std::unique_ptr<DecodeStage>> stages;
  bool clean_up_tokenization_spaces = false;

  // The bytes a vocabulary piece contributes mid-text (every stage's RawPiece in order).
  // NOTE: clean_up_tokenization_spaces is context-dependent and not applied.
  std::string RawBytes(std::string piece) const {
    for (const auto& s : stages) s->RawPiece(piece);
    return piece;
  }
};

// Supported: ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, and Sequence of these.
// After a fusing step (Fuse, ByteLevel) only Strip and Fuse may follow (Unimplemented
// otherwise). Null JSON decodes by concatenating pieces.
StatusOr<DecoderSpec> ParseDecoder(const nlohmann::json& j);

// transformers' PreTrainedTokenizerBase.clean_up_tokenization on a whole string.
std::string CleanUpTokenization(std::string_view text);

// Streams token pieces (vocabulary strings) through a DecoderSpec. Push returns only text
// that no later piece can change: complete UTF-8, and (with clean-up) nothing a clean-up
// pattern could still rewrite. Not thread-safe; `spec` must outlive it.
class DecodeStream {
 public:
  explicit DecodeStream(const DecoderSpec& spec);
  std::string Push(std::string piece);
  // The rest of the text; the stream must not be used afterwards.
  std::string Finish();

 private:
  // Runs `tokens` through stages[from..] and applies the clean-up hold-back.
  std::string Run(std::vector<std::string> tokens, size_t from, bool finish);

  const DecoderSpec& spec_;
  std::vector<std::unique_ptr<DecodeStage>> stages_;
  std::string held_;  // decoded text held back from clean-up
};

}  // namespace llmux::tokenizer_internal
