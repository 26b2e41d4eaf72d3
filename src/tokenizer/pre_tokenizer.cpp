#include "tokenizer/pre_tokenizer.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <utility>

#include "tokenizer/regex.h"
#include "tokenizer/utf8.h"

namespace llmux::tokenizer_internal {
namespace {

using Range = std::pair<size_t, size_t>;

// HF SplitDelimiterBehavior.
enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// A cover of [0, size) by ranges flagged as matches or not, as HF Pattern::find_matches.
std::vector<std::pair<Range, bool>> Cover(const std::vector<Range>& matches, size_t size) {
  std::vector<std::pair<Range, bool>> out;
  size_t prev = 0;
  for (const auto& m : matches) {
    if (prev != m.first) out.push_back({{prev, m.first}, false});
    out.push_back({m, true});
    prev = m.second;
  }
  if (prev != size) out.push_back({{prev, size}, false});
  return out;
}

// Applies `behavior` as HF NormalizedString::split does, then emits the non-empty pieces.
void SplitBy(const Piece& in, std::vector<std::pair<Range, bool>> cover, Behavior behavior,
             std::vector<Piece>& out) {
  std::vector<Range> pieces;
  bool previous_match = false;
  switch (behavior) {
    case Behavior::kRemoved:
      for (const auto& [r, is_match] : cover) {
        if (!is_match) pieces.push_back(r);
      }
      break;
    case Behavior::kIsolated:
      for (const auto& [r, is_match] : cover) pieces.push_back(r);
      break;
    case Behavior::kMergedWithPrevious:
      for (const auto& [r, is_match] : cover) {
        if (is_match && !previous_match && !pieces.empty()) {
          pieces.back().second = r.second;
        } else {
          pieces.push_back(r);
        }
        previous_match = is_match;
      }
      break;
    case Behavior::kMergedWithNext:
      for (auto it = cover.rbegin(); it != cover.rend(); ++it) {
        if (it->second && !previous_match && !pieces.empty()) {
          pieces.back().first = it->first.first;
        } else {
          pieces.push_back(it->first);
        }
        previous_match = it->second;
      }
      std::reverse(pieces.begin(), pieces.end());
      break;
    case Behavior::kContiguous:
      for (const auto& [r, is_match] : cover) {
        if (is_match == previous_match && !pieces.empty()) {
          pieces.back().second = r.second;
        } else {
          pieces.push_back(r);
        }
        previous_match = is_match;
      }
      break;
  }
  for (const auto& [s, e] : pieces) {
    if (e > s) out.push_back({in.text.substr(s, e - s), in.at_origin && s == 0});
  }
}

std::vector<Range> FindLiteral(const std::string& text, const std::string& pattern) {
  std::vector<Range> m;
  if (pattern.empty()) return m;
  for (size_t p = text.find(pattern); p != std::string::npos;
       p = text.find(pattern, p + pattern.size())) {
    m.emplace_back(p, p + pattern.size());
  }
  return m;
}

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> parts)
      : parts_(std::move(parts)) {}
  void Split(const Piece& in, std::vector<Piece>& out) const override {
    std::vector<Piece> cur{in}, next;
    for (const auto& p : parts_) {
      next.clear();
      for (const auto& piece : cur) p->Split(piece, next);
      std::swap(cur, next);
    }
    for (auto& piece : cur) out.push_back(std::move(piece));
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(std::string literal, std::unique_ptr<Regex> regex, Behavior behavior,
                    bool invert)
      : literal_(std::move(literal)),
        regex_(std::move(regex)),
        behavior_(behavior),
        invert_(invert) {}
  void Split(const Piece& in, std::vector<Piece>& out) const override {
    auto cover =
        Cover(regex_ ? regex_->FindAll(in.text) : FindLiteral(in.text, literal_), in.text.size());
    if (invert_) {
      for (auto& c : cover) c.second = !c.second;
    }
    SplitBy(in, std::move(cover), behavior_, out);
  }

 private:
  std::string literal_;
  std::unique_ptr<Regex> regex_;  // set for a Regex pattern, else literal_ is used
  Behavior behavior_;
  bool invert_;
};

constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, std::unique_ptr<Regex> regex)
      : add_prefix_space_(add_prefix_space), regex_(std::move(regex)) {}
  void Split(const Piece& in, std::vector<Piece>& out) const override {
    Piece p = in;
    if (add_prefix_space_ && (p.text.empty() || p.text[0] != ' ')) p.text = " " + p.text;
    std::vector<Piece> words;
    if (regex_) {
      SplitBy(p, Cover(regex_->FindAll(p.text), p.text.size()), Behavior::kIsolated, words);
    } else if (!p.text.empty()) {
      words.push_back(std::move(p));
    }
    const auto& table = ByteToUnicode();
    for (auto& w : words) {
      std::string mapped;
      mapped.reserve(w.text.size() * 2);
      for (unsigned char b : w.text) mapped.append(table[b]);
      out.push_back({std::move(mapped), w.at_origin});
    }
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;  // GPT-2 pattern when use_regex, else null
};

enum class PrependScheme { kFirst, kAlways, kNever };

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, PrependScheme scheme, bool split)
      : replacement_(std::move(replacement)), scheme_(scheme), split_(split) {}
  void Split(const Piece& in, std::vector<Piece>& out) const override {
    Piece p{std::string(), in.at_origin};
    for (char c : in.text) {
      if (c == ' ') {
        p.text.append(replacement_);
      } else {
        p.text.push_back(c);
      }
    }
    const bool starts = p.text.compare(0, replacement_.size(), replacement_) == 0;
    // NOTE: HF's prepend is a no-op on empty text.
    if (!p.text.empty() && !starts &&
        (scheme_ == PrependScheme::kAlways || (scheme_ == PrependScheme::kFirst && p.at_origin))) {
      p.text = replacement_ + p.text;
    }
    if (split_) {
      SplitBy(p, Cover(FindLiteral(p.text, replacement_), p.text.size()), Behavior::kMergedWithNext,
              out);
    } else if (!p.text.empty()) {
      out.push_back(std::move(p));
    }
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
  bool split_;
};

StatusOr<Behavior> ParseBehavior(const std::string& s) {
  if (s == "Removed") return Behavior::kRemoved;
  if (s == "Isolated") return Behavior::kIsolated;
  if (s == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
  if (s == "MergedWithNext") return Behavior::kMergedWithNext;
  if (s == "Contiguous") return Behavior::kContiguous;
  return DataLoss("unknown Split behavior '" + s + "'");
}

}  // namespace

StatusOr<std::unique_ptr<PreTokenizer>> ParsePreTokenizer(const nlohmann::json& j) {
  if (j.is_null()) return std::unique_ptr<PreTokenizer>();
  const std::string type = j.at("type").get<std::string>();
  if (type == "Sequence") {
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (const auto& p : j.at("pretokenizers")) {
      LLMUX_ASSIGN_OR_RETURN(auto part, ParsePreTokenizer(p));
      if (part) parts.push_back(std::move(part));
    }
    return std::unique_ptr<PreTokenizer>(new SequencePreTokenizer(std::move(parts)));
  }
  if (type == "Split") {
    LLMUX_ASSIGN_OR_RETURN(Behavior behavior, ParseBehavior(j.at("behavior").get<std::string>()));
    const bool invert = j.value("invert", false);
    const auto& pattern = j.at("pattern");
    if (pattern.contains("String")) {
      return std::unique_ptr<PreTokenizer>(new SplitPreTokenizer(
          pattern.at("String").get<std::string>(), nullptr, behavior, invert));
    }
    LLMUX_ASSIGN_OR_RETURN(auto regex, Regex::Compile(pattern.at("Regex").get<std::string>()));
    return std::unique_ptr<PreTokenizer>(
        new SplitPreTokenizer("", std::move(regex), behavior, invert));
  }
  if (type == "ByteLevel") {
    std::unique_ptr<Regex> regex;
    if (j.value("use_regex", true)) {
      LLMUX_ASSIGN_OR_RETURN(regex, Regex::Compile(kGpt2Pattern));
    }
    return std::unique_ptr<PreTokenizer>(
        new ByteLevelPreTokenizer(j.value("add_prefix_space", true), std::move(regex)));
  }
  if (type == "Metaspace") {
    PrependScheme scheme = PrependScheme::kAlways;
    if (j.contains("prepend_scheme")) {
      const std::string s = j.at("prepend_scheme").get<std::string>();
      if (s == "first") {
        scheme = PrependScheme::kFirst;
      } else if (s == "never") {
        scheme = PrependScheme::kNever;
      } else if (s != "always") {
        return DataLoss("unknown Metaspace prepend_scheme '" + s + "'");
      }
    } else if (!j.value("add_prefix_space", true)) {
      scheme = PrependScheme::kNever;
    }
    return std::unique_ptr<PreTokenizer>(new MetaspacePreTokenizer(
        j.value("replacement", std::string("\xE2\x96\x81")), scheme, j.value("split", true)));
  }
  return Unimplemented("tokenizer.json pre_tokenizer type '" + type + "' is not supported");
}

}  // namespace llmux::tokenizer_internal
