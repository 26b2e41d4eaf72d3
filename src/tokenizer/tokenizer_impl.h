// The parts of a loaded Tokenizer (internal to src/tokenizer).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/added_vocab.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/decoder.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/pre_tokenizer.h"

namespace llmux::tokenizer_internal {

struct TokenizerImpl {
  std::unique_ptr<BpeModel> model;
  std::unique_ptr<Normalizer> normalizer;       // may be null
  std::unique_ptr<PreTokenizer> pre_tokenizer;  // may be null: the whole piece is one word
  std::unique_ptr<AddedVocab> added;
  DecoderSpec decoder;
  std::vector<int32_t> prefix_special;  // added before the text by add_special_tokens
  std::vector<int32_t> suffix_special;  // added after it
  std::string bos_token, eos_token;
  std::optional<int32_t> bos_id, eos_id;
  int32_t vocab_size = 0;

  // The vocabulary string of `id` (added tokens first, as HF), or nullopt when unknown.
  std::optional<std::string_view> Piece(int32_t id) const;
  // Appends the ids of a piece of text holding no raw-matched added token.
  void EncodeText(std::string_view text, bool at_origin, std::vector<int32_t>& out) const;
};

// Builds a TokenizerImpl from the texts of tokenizer.json and tokenizer_config.json (may be
// empty). Catches JSON exceptions and returns DataLoss for them.
StatusOr<std::unique_ptr<TokenizerImpl>> LoadTokenizer(std::string_view tokenizer_json,
                                                       std::string_view tokenizer_config_json);

}  // namespace llmux::tokenizer_internal
