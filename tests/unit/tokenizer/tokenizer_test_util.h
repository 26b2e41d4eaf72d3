// Helpers shared by the tokenizer tests.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "llmux/tokenizer.h"

namespace llmux::testing {

// Everything an IncrementalDetokenizer emits for `ids`, then Flush().
inline std::string Streamed(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip) {
  IncrementalDetokenizer detok(tok, skip);
  std::string text;
  for (int32_t id : ids) text += detok.Push(id);
  return text + detok.Flush();
}

// Loads a tokenizer or fails the test.
inline std::unique_ptr<Tokenizer> MustLoad(const std::string& json, const std::string& config) {
  auto tok = Tokenizer::FromJson(json, config);
  EXPECT_TRUE(tok.ok()) << tok.status().ToString();
  return tok.ok() ? std::move(tok).value() : nullptr;
}

}  // namespace llmux::testing
