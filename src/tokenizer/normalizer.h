// Normalizers of tokenizer.json ("normalizer"): applied to each piece of input text that is
// not an added token, before pre-tokenization.
#pragma once

#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>

#include "llmux/status.h"

namespace llmux::tokenizer_internal {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  // Rewrites valid UTF-8 `text` in place (the result is valid UTF-8).
  virtual void Normalize(std::string& text) const = 0;
};

// Supported: Sequence, Prepend, Replace (String or Regex pattern), NFC/NFD/NFKC/NFKD and
// Lowercase (ICU). Null JSON yields nullptr (no normalization). Unimplemented for other types
// (BertNormalizer, Strip, StripAccents, Precompiled...).
StatusOr<std::unique_ptr<Normalizer>> ParseNormalizer(const nlohmann::json& j);

}  // namespace llmux::tokenizer_internal
