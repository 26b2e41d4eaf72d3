// Pre-tokenizers of tokenizer.json ("pre_tokenizer"): split normalized text into words that
// BPE encodes independently (and, for ByteLevel, map bytes to GPT-2 stand-in characters).
#pragma once

#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "llmux/status.h"

namespace llmux::tokenizer_internal {

// A piece of normalized text. `at_origin`: its first character comes from offset 0 of the
// original input (what HF's Metaspace prepend_scheme "first" tests).
struct Piece {
  std::string text;
  bool at_origin = false;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Appends the words of `in` to `out`, in order; never appends an empty word.
  virtual void Split(const Piece& in, std::vector<Piece>& out) const = 0;
};

// Supported: Sequence, Split (String or Regex pattern; every behavior; invert), ByteLevel
// (add_prefix_space, use_regex with the GPT-2 pattern), Metaspace (prepend_scheme
// first/always/never or legacy add_prefix_space; split). Null JSON yields nullptr.
StatusOr<std::unique_ptr<PreTokenizer>> ParsePreTokenizer(const nlohmann::json& j);

}  // namespace llmux::tokenizer_internal
