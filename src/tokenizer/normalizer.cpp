#include "tokenizer/normalizer.h"

#ifdef LLMUX_HAVE_ICU
#include <unicode/bytestream.h>
#include <unicode/locid.h>
#include <unicode/normalizer2.h>
#include <unicode/unistr.h>
#endif

#include <nlohmann/json.hpp>
#include <vector>

#include "tokenizer/regex.h"

namespace llmux::tokenizer_internal {
namespace {

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts)
      : parts_(std::move(parts)) {}
  void Normalize(std::string& text) const override {
    for (const auto& p : parts_) p->Normalize(text);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

// NOTE: HF prepends only to non-empty text, so "" stays "" (no lone "▁" token).
class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  void Normalize(std::string& text) const override {
    if (!text.empty()) text = prefix_ + text;
  }

 private:
  std::string prefix_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(std::string pattern, std::unique_ptr<Regex> regex, std::string content)
      : pattern_(std::move(pattern)), regex_(std::move(regex)), content_(std::move(content)) {}

  void Normalize(std::string& text) const override {
    std::vector<std::pair<size_t, size_t>> matches;
    if (regex_) {
      matches = regex_->FindAll(text);
    } else if (!pattern_.empty()) {
      for (size_t p = text.find(pattern_); p != std::string::npos;
           p = text.find(pattern_, p + pattern_.size())) {
        matches.emplace_back(p, p + pattern_.size());
      }
    }
    if (matches.empty()) return;
    std::string out;
    out.reserve(text.size() + matches.size() * content_.size());
    size_t prev = 0;
    for (const auto& [s, e] : matches) {
      out.append(text, prev, s - prev);
      out.append(content_);
      prev = e;
    }
    out.append(text, prev, std::string::npos);
    text = std::move(out);
  }

 private:
  std::string pattern_;
  std::unique_ptr<Regex> regex_;  // set for a Regex pattern, else pattern_ is literal
  std::string content_;
};

#ifdef LLMUX_HAVE_ICU
// Unicode normalization forms (Qwen2 ships NFC) through ICU, on UTF-8 directly.
class UnicodeFormNormalizer : public Normalizer {
 public:
  explicit UnicodeFormNormalizer(const icu::Normalizer2* form) : form_(form) {}
  void Normalize(std::string& text) const override {
    UErrorCode status = U_ZERO_ERROR;
    if (form_->isNormalizedUTF8(text, status) && U_SUCCESS(status)) return;
    std::string out;
    icu::StringByteSink<std::string> sink(&out);
    status = U_ZERO_ERROR;
    form_->normalizeUTF8(0, text, sink, nullptr, status);
    // NOTE: input is valid UTF-8 (the tokenizer replaces invalid sequences first), so ICU
    // cannot fail here; if it ever did, the text stays unnormalized rather than lost.
    if (U_SUCCESS(status)) text = std::move(out);
  }

 private:
  const icu::Normalizer2* form_;  // owned by ICU (process-lifetime singleton)
};

// HF's Lowercase: Unicode full lowercase mapping (root locale, like Rust's to_lowercase).
class LowercaseNormalizer : public Normalizer {
 public:
  void Normalize(std::string& text) const override {
    icu::UnicodeString u = icu::UnicodeString::fromUTF8(text);
    u.toLower(icu::Locale::getRoot());
    text.clear();
    u.toUTF8String(text);
  }
};

StatusOr<const icu::Normalizer2*> UnicodeForm(const std::string& type) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* form = nullptr;
  if (type == "NFC") form = icu::Normalizer2::getNFCInstance(status);
  if (type == "NFD") form = icu::Normalizer2::getNFDInstance(status);
  if (type == "NFKC") form = icu::Normalizer2::getNFKCInstance(status);
  if (type == "NFKD") form = icu::Normalizer2::getNFKDInstance(status);
  if (form == nullptr || U_FAILURE(status)) {
    return Internal("ICU could not provide the " + type + " normalizer: " + u_errorName(status));
  }
  return form;
}

#endif  // LLMUX_HAVE_ICU

}  // namespace

StatusOr<std::unique_ptr<Normalizer>> ParseNormalizer(const nlohmann::json& j) {
  if (j.is_null()) return std::unique_ptr<Normalizer>();
  const std::string type = j.at("type").get<std::string>();
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (const auto& n : j.at("normalizers")) {
      LLMUX_ASSIGN_OR_RETURN(auto part, ParseNormalizer(n));
      if (part) parts.push_back(std::move(part));
    }
    return std::unique_ptr<Normalizer>(new SequenceNormalizer(std::move(parts)));
  }
  if (type == "Prepend") {
    return std::unique_ptr<Normalizer>(new PrependNormalizer(j.at("prepend").get<std::string>()));
  }
  if (type == "Replace") {
    const auto& pattern = j.at("pattern");
    std::string content = j.at("content").get<std::string>();
    if (pattern.contains("String")) {
      return std::unique_ptr<Normalizer>(
          new ReplaceNormalizer(pattern.at("String").get<std::string>(), nullptr, content));
    }
    LLMUX_ASSIGN_OR_RETURN(auto regex, Regex::Compile(pattern.at("Regex").get<std::string>()));
    return std::unique_ptr<Normalizer>(new ReplaceNormalizer("", std::move(regex), content));
  }
  if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD" || type == "Lowercase") {
#ifdef LLMUX_HAVE_ICU
    if (type == "Lowercase") return std::unique_ptr<Normalizer>(new LowercaseNormalizer());
    LLMUX_ASSIGN_OR_RETURN(const icu::Normalizer2* form, UnicodeForm(type));
    return std::unique_ptr<Normalizer>(new UnicodeFormNormalizer(form));
#else
    return Unimplemented("tokenizer.json normalizer '" + type +
                         "' needs ICU, which this build of llmux was configured without");
#endif
  }
  return Unimplemented("tokenizer.json normalizer type '" + type +
                       "' is not supported (supported: Sequence, Prepend, Replace, NFC, NFD, "
                       "NFKC, NFKD, Lowercase)");
}

}  // namespace llmux::tokenizer_internal
