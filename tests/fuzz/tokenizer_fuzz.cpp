// Tokenizer loading, encoding and decoding. Input: byte 0 selects the mode; the rest is the
// payload.
//   mode 0: stories260K (SentencePiece-style) encodes the payload as text;
//   mode 1: stories260K decodes the payload as token ids (2 bytes each, mod the vocabulary);
//   mode 2: the payload is "TOKENIZER_JSON\0TEXT": load it (the corpus carries a byte-level
//           GPT-2 style tokenizer.json) and encode and decode TEXT with it.
// Invariants: no crash; every id Encode returns is inside the vocabulary; the incremental
// detokenizer's output equals Decode (the documented IncrementalDetokenizer contract).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "llmux/tokenizer.h"

namespace {

using llmux::Tokenizer;

const Tokenizer* Stories() {
  static const std::unique_ptr<Tokenizer> tok = [] {
    const auto dir = std::filesystem::path(llmux::fuzz::SharedDataDir()) / "models" / "stories260K-hf";
    auto t = Tokenizer::FromModelDir(dir);
    if (!t.ok()) {
      // Like the unit tests: missing data fails under CI=true and is reported otherwise.
      const char* ci = std::getenv("CI");
      const std::string msg = "stories260K tokenizer unavailable (" + t.status().ToString() +
                              "); modes 0 and 1 are skipped";
      if (ci != nullptr && std::string(ci) == "true") llmux::fuzz::Violation("tokenizer", msg);
      std::fprintf(stderr, "fuzz tokenizer: %s\n", msg.c_str());
      return std::unique_ptr<Tokenizer>();
    }
    return std::move(t).value();
  }();
  return tok.get();
}

void CheckDecode(const Tokenizer& tok, const std::vector<int32_t>& ids) {
  for (bool skip : {false, true}) {
    const std::string whole = tok.Decode(ids, skip);
    llmux::IncrementalDetokenizer detok(tok, skip);
    std::string streamed;
    for (int32_t id : ids) streamed += detok.Push(id);
    streamed += detok.Flush();
    if (streamed != whole) {
      llmux::fuzz::Violation("tokenizer", "incremental decode differs from Decode");
    }
  }
}

void CheckEncode(const Tokenizer& tok, std::string_view text, uint8_t flags) {
  const std::vector<int32_t> ids = tok.Encode(text, flags & 1, flags & 2);
  for (int32_t id : ids) {
    if (id < 0 || id >= tok.vocab_size()) llmux::fuzz::Violation("tokenizer", "id outside vocab");
  }
  CheckDecode(tok, ids);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0] % 3;
  const uint8_t flags = data[0] >> 2;
  const std::string_view payload(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (mode == 0) {
    if (const Tokenizer* tok = Stories()) CheckEncode(*tok, payload, flags);
  } else if (mode == 1) {
    if (const Tokenizer* tok = Stories()) {
      std::vector<int32_t> ids;
      for (size_t i = 0; i + 1 < payload.size(); i += 2) {
        const int v = static_cast<uint8_t>(payload[i]) << 8 | static_cast<uint8_t>(payload[i + 1]);
        ids.push_back(v % tok->vocab_size());
      }
      CheckDecode(*tok, ids);
    }
  } else {
    auto [json, text] = llmux::fuzz::SplitAtNul(payload);
    auto tok = Tokenizer::FromJson(json, "");
    if (tok.ok()) CheckEncode(**tok, text, flags);
  }
  return 0;
}
