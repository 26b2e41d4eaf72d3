// A deterministic byte-level BPE vocabulary (GPT-2 style) and its HF tokenizer files, for
// models that `llmux make-model` generates.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace llmux {

struct ByteLevelBpe {
  // id -> token, spelled in GPT-2's byte-to-unicode alphabet (UTF-8). Ids 0..255 are the
  // 256 single bytes in GPT-2's order; then one token per merge, in merge order.
  std::vector<std::string> vocab;
  // Merge rules by rank: (left, right) -> left + right.
  std::vector<std::pair<std::string, std::string>> merges;
};

// GPT-2's printable stand-in (UTF-8) for byte B.
std::string ByteLevelSymbol(unsigned char b);

// The fixed text the merges are learned from.
std::string_view BpeTrainingText();

// Builds NUM_TOKENS (>= 256) tokens: the 256 bytes, merges learned by BPE training over
// BpeTrainingText() (most frequent pair first, ties by smallest pair), and, once no pair
// occurs twice, merges constructed deterministically (existing token + a letter, in id
// order) until the vocabulary is full. Same input, same output, on every machine.
ByteLevelBpe BuildByteLevelBpe(int num_tokens);

struct SpecialToken {
  int id;
  std::string content;
};

// tokenizer.json text: BPE model (no unk, no byte fallback), ByteLevel pre-tokenizer
// (GPT-2 regex) and decoder, SPECIALS as added tokens, and a post-processor that prepends
// BOS_CONTENT to every single sequence.
std::string TokenizerJson(const ByteLevelBpe& bpe, const std::vector<SpecialToken>& specials,
                          const std::string& bos_content);

}  // namespace llmux
