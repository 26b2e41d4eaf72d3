#include "tokenizer/decoder.h"

#include <nlohmann/json.hpp>

#include "tokenizer/regex.h"
#include "tokenizer/utf8.h"

namespace llmux::tokenizer_internal {
namespace {

const std::string kMetaspace = "\xE2\x96\x81";  // "▁"

std::string ReplaceAll(std::string_view text, std::string_view from, std::string_view to) {
  std::string out;
  if (from.empty()) return std::string(text);
  size_t prev = 0;
  for (size_t p = text.find(from); p != std::string_view::npos; p = text.find(from, prev)) {
    out.append(text.substr(prev, p - prev));
    out.append(to);
    prev = p + from.size();
  }
  out.append(text.substr(prev));
  return out;
}

class ReplaceStage : public DecodeStage {
 public:
  ReplaceStage(std::string pattern, std::shared_ptr<const Regex> regex, std::string content)
      : pattern_(std::move(pattern)), regex_(std::move(regex)), content_(std::move(content)) {}
  std::unique_ptr<DecodeStage> Clone() const override {
    return std::make_unique<ReplaceStage>(pattern_, regex_, content_);
  }
  void RawPiece(std::string& piece) const override {
    std::vector<std::string> out;
    const_cast<ReplaceStage*>(this)->Push(std::move(piece), out);  // Push is stateless here
    piece = std::move(out.front());
  }
  void Push(std::string token, std::vector<std::string>& out) override {
    if (!regex_) {
      out.push_back(ReplaceAll(token, pattern_, content_));
      return;
    }
    std::string r;
    size_t prev = 0;
    for (const auto& [s, e] : regex_->FindAll(token)) {
      r.append(token, prev, s - prev);
      r.append(content_);
      prev = e;
    }
    r.append(token, prev, std::string::npos);
    out.push_back(std::move(r));
  }

 private:
  std::string pattern_;
  std::shared_ptr<const Regex> regex_;  // set for a Regex pattern
  std::string content_;
};

// Runs of "<0xXX>" pieces become their bytes when those form valid UTF-8, else one U+FFFD per
// byte (HF ByteFallback). A run is held until it ends.
class ByteFallbackStage : public DecodeStage {
 public:
  std::unique_ptr<DecodeStage> Clone() const override {
    return std::make_unique<ByteFallbackStage>();
  }
  void Push(std::string token, std::vector<std::string>& out) override {
    if (auto b = ParseByte(token)) {
      run_.push_back(static_cast<char>(*b));
      return;
    }
    Flush(out);
    out.push_back(std::move(token));
  }
  void Finish(std::vector<std::string>& out) override { Flush(out); }
  void RawPiece(std::string& piece) const override {
    if (auto b = ParseByte(piece)) piece = std::string(1, static_cast<char>(*b));
  }

 private:
  static std::optional<uint8_t> ParseByte(std::string_view t) {
    if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return std::nullopt;
    int v = 0;
    for (char c : t.substr(3, 2)) {
      int d;
      if (c >= '0' && c <= '9') {
        d = c - '0';
      } else if (c >= 'a' && c <= 'f') {
        d = c - 'a' + 10;
      } else if (c >= 'A' && c <= 'F') {
        d = c - 'A' + 10;
      } else {
        return std::nullopt;
      }
      v = v * 16 + d;
    }
    return static_cast<uint8_t>(v);
  }
  void Flush(std::vector<std::string>& out) {
    if (run_.empty()) return;
    if (IsValidUtf8(run_)) {
      out.push_back(std::move(run_));
    } else {
      for (size_t i = 0; i < run_.size(); ++i) out.emplace_back(kReplacementChar);
    }
    run_.clear();
  }
  std::string run_;  // bytes of the current run
};

// HF Strip on each token: drop up to `start` leading and `stop` trailing `content` chars.
class StripStage : public DecodeStage {
 public:
  StripStage(char32_t content, size_t start, size_t stop)
      : content_(content), start_(start), stop_(stop) {}
  std::unique_ptr<DecodeStage> Clone() const override {
    return std::make_unique<StripStage>(content_, start_, stop_);
  }
  void RawPiece(std::string& piece) const override {
    std::vector<std::string> out;
    const_cast<StripStage*>(this)->Push(std::move(piece), out);  // Push is stateless here
    piece = std::move(out.front());
  }
  void Push(std::string token, std::vector<std::string>& out) override {
    std::vector<std::pair<size_t, char32_t>> chars;  // (byte offset, code point)
    for (size_t pos = 0; pos < token.size();) {
      const size_t at = pos;
      chars.emplace_back(at, NextCodepoint(token, pos));
    }
    size_t begin = 0, end = chars.size();
    while (begin < std::min(start_, chars.size()) && chars[begin].second == content_) ++begin;
    for (size_t i = 0; i < stop_ && end > begin && chars[end - 1].second == content_; ++i) --end;
    const size_t b = begin < chars.size() ? chars[begin].first : token.size();
    const size_t e = end < chars.size() ? chars[end].first : token.size();
    out.push_back(token.substr(b, e - b));
  }

 private:
  char32_t content_;
  size_t start_, stop_;
};

// Strip after fusion: the token is the whole text, which arrives in chunks.
class FusedStripStage : public DecodeStage {
 public:
  FusedStripStage(char32_t content, size_t start, size_t stop)
      : content_(content), start_(start), stop_(stop) {
    AppendUtf8(content_utf8_, content_);
  }
  std::unique_ptr<DecodeStage> Clone() const override {
    return std::make_unique<FusedStripStage>(content_, start_, stop_);
  }
  void Push(std::string chunk, std::vector<std::string>& out) override {
    std::string text;
    for (size_t pos = 0; pos < chunk.size();) {
      const size_t at = pos;
      const char32_t cp = NextCodepoint(chunk, pos);
      if (leading_ && stripped_ < start_ && cp == content_) {
        ++stripped_;
        continue;
      }
      leading_ = false;
      text.append(chunk, at, pos - at);
    }
    if (stop_ == 0) {
      if (!text.empty()) out.push_back(std::move(text));
      return;
    }
    // Hold back the trailing run of `content` chars: the end may strip it.
    pending_ += text;
    size_t keep = pending_.size();
    const size_t n = content_utf8_.size();
    while (keep >= n && pending_.compare(keep - n, n, content_utf8_) == 0) keep -= n;
    if (keep > 0) out.push_back(pending_.substr(0, keep));
    pending_.erase(0, keep);
  }
  void Finish(std::vector<std::string>& out) override {
    for (size_t i = 0; i < stop_ && !pending_.empty(); ++i) {
      pending_.resize(pending_.size() - content_utf8_.size());
    }
    if (!pending_.empty()) out.push_back(std::move(pending_));
  }

 private:
  char32_t content_;
  std::string content_utf8_;
  size_t start_, stop_;
  bool leading_ = true;
  size_t stripped_ = 0;
  std::string pending_;  // a trailing run of content chars
};

// HF Metaspace decoder: "▁" -> " "; in the first token every "▁" is dropped instead (unless
// prepend_scheme is never).
class MetaspaceStage : public DecodeStage {
 public:
  MetaspaceStage(std::string replacement, bool strip_first)
      : replacement_(std::move(replacement)), strip_first_(strip_first) {}
  std::unique_ptr<DecodeStage> Clone() const override {
    return std::make_unique<MetaspaceStage>(replacement_, strip_first_);
  }
  void RawPiece(std::string& piece) const override { piece = ReplaceAll(piece, replacement_, " "); }
  void Push(std::string token, std::vector<std::string>& out) override {
    out.push_back(ReplaceAll(token, replacement_, first_ && strip_first_ ? "" : " "));
    first_ = false;
  }

 private:
  std::string replacement_;
  bool strip_first_;
  bool first_ = true;
};

// HF ByteLevel decoder: pieces -> bytes through the GPT-2 map (a piece with a char outside
// the map contributes its own UTF-8 bytes), then lossy UTF-8 over the whole byte string.
class ByteLevelStage : public DecodeStage {
 public:
  std::unique_ptr<DecodeStage> Clone() const override { return std::make_unique<ByteLevelStage>(); }
  void RawPiece(std::string& piece) const override {
    std::string bytes;
    for (size_t pos = 0; pos < piece.size();) {
      auto b = UnicodeToByte(NextCodepoint(piece, pos));
      if (!b) return;  // a char outside the map: the piece stands for its own UTF-8
      bytes.push_back(static_cast<char>(*b));
    }
    piece = std::move(bytes);
  }
  void Push(std::string token, std::vector<std::string>& out) override {
    std::string bytes;
    bool mapped = true;
    for (size_t pos = 0; pos < token.size() && mapped;) {
      auto b = UnicodeToByte(NextCodepoint(token, pos));
      if (b) {
        bytes.push_back(static_cast<char>(*b));
      } else {
        mapped = false;
      }
    }
    pending_ += mapped ? bytes : token;
    const size_t ready = pending_.size() - IncompleteUtf8Tail(pending_);
    if (ready == 0) return;
    out.push_back(Utf8Lossy(std::string_view(pending_).substr(0, ready)));
    pending_.erase(0, ready);
  }
  void Finish(std::vector<std::string>& out) override {
    if (!pending_.empty()) out.push_back(Utf8Lossy(pending_));
    pending_.clear();
  }

 private:
  std::string pending_;  // bytes of an incomplete trailing UTF-8 sequence
};

class FuseStage : public DecodeStage {
 public:
  std::unique_ptr<DecodeStage> Clone() const override { return std::make_unique<FuseStage>(); }
  void Push(std::string token, std::vector<std::string>& out) override {
    out.push_back(std::move(token));
  }
};

char32_t SingleChar(const std::string& s) {
  size_t pos = 0;
  return s.empty() ? U' ' : NextCodepoint(s, pos);
}

Status AddStages(const nlohmann::json& j, DecoderSpec& spec, bool& fused) {
  const std::string type = j.at("type").get<std::string>();
  auto reject_fused = [&]() -> Status {
    if (!fused) return Status::Ok();
    return Unimplemented("decoder '" + type + "' after Fuse/ByteLevel is not supported");
  };
  if (type == "Sequence") {
    for (const auto& d : j.at("decoders")) LLMUX_RETURN_IF_ERROR(AddStages(d, spec, fused));
  } else if (type == "ByteLevel") {
    LLMUX_RETURN_IF_ERROR(reject_fused());
    spec.stages.push_back(std::make_unique<ByteLevelStage>());
    fused = true;
  } else if (type == "Fuse") {
    spec.stages.push_back(std::make_unique<FuseStage>());
    fused = true;
  } else if (type == "ByteFallback") {
    LLMUX_RETURN_IF_ERROR(reject_fused());
    spec.stages.push_back(std::make_unique<ByteFallbackStage>());
  } else if (type == "Replace") {
    LLMUX_RETURN_IF_ERROR(reject_fused());
    const auto& pattern = j.at("pattern");
    std::shared_ptr<const Regex> regex;
    std::string literal;
    if (pattern.contains("String")) {
      literal = pattern.at("String").get<std::string>();
    } else {
      LLMUX_ASSIGN_OR_RETURN(regex, Regex::Compile(pattern.at("Regex").get<std::string>()));
    }
    spec.stages.push_back(
        std::make_unique<ReplaceStage>(literal, regex, j.at("content").get<std::string>()));
  } else if (type == "Strip") {
    const char32_t content = SingleChar(j.at("content").get<std::string>());
    const auto start = j.value("start", size_t{0}), stop = j.value("stop", size_t{0});
    if (fused) {
      spec.stages.push_back(std::make_unique<FusedStripStage>(content, start, stop));
    } else {
      spec.stages.push_back(std::make_unique<StripStage>(content, start, stop));
    }
  } else if (type == "Metaspace") {
    LLMUX_RETURN_IF_ERROR(reject_fused());
    bool strip_first = j.value("add_prefix_space", true);
    if (j.contains("prepend_scheme")) strip_first = j.at("prepend_scheme") != "never";
    spec.stages.push_back(
        std::make_unique<MetaspaceStage>(j.value("replacement", kMetaspace), strip_first));
  } else {
    return Unimplemented("tokenizer.json decoder type '" + type + "' is not supported");
  }
  return Status::Ok();
}

// Whether a clean-up pattern can never include byte `c`: text up to and including such a
// byte is final under clean-up, whatever follows.
bool CleanUpBarrier(char c) {
  return std::string_view(" .?!,'ntmsver").find(c) == std::string_view::npos;
}

}  // namespace

StatusOr<DecoderSpec> ParseDecoder(const nlohmann::json& j) {
  DecoderSpec spec;
  if (j.is_null()) return spec;
  bool fused = false;
  LLMUX_RETURN_IF_ERROR(AddStages(j, spec, fused));
  return spec;
}

std::string CleanUpTokenization(std::string_view text) {
  // Same replacements, in the same order, as transformers.
  static const std::pair<const char*, const char*> kRules[] = {
      {" .", "."},     {" ?", "?"},   {" !", "!"},   {" ,", ","},     {" ' ", "'"},
      {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
  std::string s(text);
  for (const auto& [from, to] : kRules) s = ReplaceAll(s, from, to);
  return s;
}

DecodeStream::DecodeStream(const DecoderSpec& spec) : spec_(spec) {
  for (const auto& s : spec.stages) stages_.push_back(s->Clone());
}

std::string DecodeStream::Run(std::vector<std::string> tokens, size_t from, bool finish) {
  for (size_t i = from; i < stages_.size(); ++i) {
    std::vector<std::string> next;
    for (auto& t : tokens) stages_[i]->Push(std::move(t), next);
    if (finish) stages_[i]->Finish(next);
    tokens = std::move(next);
  }
  std::string text;
  for (const auto& t : tokens) text += t;
  if (!spec_.clean_up_tokenization_spaces) return text;
  held_ += text;
  if (finish) {
    std::string out = CleanUpTokenization(held_);
    held_.clear();
    return out;
  }
  // Emit up to the last barrier that ends a character (held_ is complete UTF-8).
  size_t cut = held_.size();
  auto char_boundary = [&](size_t at) {
    return at == held_.size() || (static_cast<unsigned char>(held_[at]) & 0xC0) != 0x80;
  };
  while (cut > 0 && !(CleanUpBarrier(held_[cut - 1]) && char_boundary(cut))) --cut;
  std::string out = CleanUpTokenization(std::string_view(held_).substr(0, cut));
  held_.erase(0, cut);
  return out;
}

std::string DecodeStream::Push(std::string piece) {
  std::vector<std::string> tokens;
  tokens.push_back(std::move(piece));
  return Run(std::move(tokens), 0, false);
}

std::string DecodeStream::Finish() { return Run({}, 0, true); }

}  // namespace llmux::tokenizer_internal
