// The text of one token as logprobs report it: the token's own bytes (SentencePiece's "▁"
// as a leading space, byte-fallback pieces as their byte), not the text Decode([id]) gives,
// which drops a sequence-initial space.
#pragma once

#include <cstdint>
#include <string>

#include "llmux/tokenizer.h"

namespace llmux::server {

// The token's UTF-8 bytes (possibly an incomplete UTF-8 sequence for byte-fallback pieces).
std::string TokenBytes(const Tokenizer& tokenizer, int32_t id);

// `bytes` when it is valid UTF-8, else "bytes:\xe2\x80" (each byte as \xNN), OpenAI's form for
// partial characters; distinct tokens thus never share a string.
std::string TokenDisplayString(const std::string& bytes);

}  // namespace llmux::server
