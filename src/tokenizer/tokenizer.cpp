#include "llmux/tokenizer.h"

#include <fstream>
#include <sstream>

#include "llmux/file_util.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/utf8.h"

namespace llmux {

using tokenizer_internal::Piece;
using tokenizer_internal::Segment;
using tokenizer_internal::TokenizerImpl;

namespace tokenizer_internal {

std::optional<std::string_view> TokenizerImpl::Piece(int32_t id) const {
  if (const AddedToken* a = added->FindById(id)) return a->content;
  std::string_view p = model->IdToPiece(id);
  if (p.empty()) return std::nullopt;
  return p;
}

void TokenizerImpl::EncodeText(std::string_view text, bool at_origin,
                               std::vector<int32_t>& out) const {
  std::string normalized(text);
  if (normalizer) normalizer->Normalize(normalized);
  std::vector<Segment> segments;
  if (added->HasNormalized()) {
    added->Split(normalized, /*normalized_set=*/true, /*parse_special=*/true, segments);
  } else if (!normalized.empty()) {
    segments.push_back({0, normalized.size(), -1});
  }
  std::vector<tokenizer_internal::Piece> words;
  for (const Segment& s : segments) {
    if (s.id >= 0) {
      out.push_back(s.id);
      continue;
    }
    tokenizer_internal::Piece piece{normalized.substr(s.start, s.end - s.start),
                                    at_origin && s.start == 0};
    words.clear();
    if (pre_tokenizer) {
      pre_tokenizer->Split(piece, words);
    } else {
      words.push_back(std::move(piece));
    }
    for (const auto& w : words) model->EncodeWord(w.text, out);
  }
}

}  // namespace tokenizer_internal

namespace {


}  // namespace

Tokenizer::Tokenizer(std::unique_ptr<TokenizerImpl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(std::string_view tokenizer_json,
                                                         std::string_view tokenizer_config_json) {
  LLMUX_ASSIGN_OR_RETURN(auto impl,
                         tokenizer_internal::LoadTokenizer(tokenizer_json, tokenizer_config_json));
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl)));
}

StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromFile(
    const std::filesystem::path& tokenizer_json,
    std::optional<std::filesystem::path> tokenizer_config_json) {
  LLMUX_ASSIGN_OR_RETURN(std::string json, ReadFileToString(tokenizer_json));
  std::string config;
  if (tokenizer_config_json && std::filesystem::exists(*tokenizer_config_json)) {
    LLMUX_ASSIGN_OR_RETURN(config, ReadFileToString(*tokenizer_config_json));
  }
  auto t = FromJson(json, config);
  if (!t.ok()) return t.status().WithContext(tokenizer_json.string());
  return t;
}

StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromModelDir(const std::filesystem::path& dir) {
  return FromFile(dir / "tokenizer.json", dir / "tokenizer_config.json");
}

std::vector<int32_t> Tokenizer::Encode(std::string_view text, bool add_special_tokens,
                                       bool parse_special) const {
  std::string sanitized;
  if (!tokenizer_internal::IsValidUtf8(text)) {
    sanitized = tokenizer_internal::Utf8Lossy(text);
    text = sanitized;
  }
  std::vector<int32_t> ids;
  if (add_special_tokens) ids = impl_->prefix_special;
  ids.reserve(ids.size() + text.size() / 3 + 4);
  std::vector<Segment> segments;
  impl_->added->Split(text, /*normalized_set=*/false, parse_special, segments);
  for (const Segment& s : segments) {
    if (s.id >= 0) {
      ids.push_back(s.id);
    } else {
      impl_->EncodeText(text.substr(s.start, s.end - s.start), s.start == 0, ids);
    }
  }
  if (add_special_tokens) {
    ids.insert(ids.end(), impl_->suffix_special.begin(), impl_->suffix_special.end());
  }
  return ids;
}

std::string Tokenizer::Decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  tokenizer_internal::DecodeStream stream(impl_->decoder);
  std::string text;
  for (int32_t id : ids) {
    auto piece = impl_->Piece(id);
    if (!piece || (skip_special_tokens && IsSpecial(id))) continue;
    text += stream.Push(std::string(*piece));
  }
  text += stream.Finish();
  return text;
}

int32_t Tokenizer::vocab_size() const { return impl_->vocab_size; }
std::optional<int32_t> Tokenizer::bos_id() const { return impl_->bos_id; }
std::optional<int32_t> Tokenizer::eos_id() const { return impl_->eos_id; }
const std::string& Tokenizer::bos_token() const { return impl_->bos_token; }
const std::string& Tokenizer::eos_token() const { return impl_->eos_token; }
bool Tokenizer::adds_bos() const {
  return impl_->bos_id && !impl_->prefix_special.empty() &&
         impl_->prefix_special.front() == *impl_->bos_id;
}

std::string_view Tokenizer::IdToPiece(int32_t id) const { return impl_->Piece(id).value_or(""); }

std::string Tokenizer::TokenBytes(int32_t id) const {
  if (IsSpecial(id)) return "";
  auto piece = impl_->Piece(id);
  if (!piece) return "";
  return impl_->decoder.RawBytes(std::string(*piece));
}

std::optional<int32_t> Tokenizer::TokenToId(std::string_view token) const {
  if (const auto* a = impl_->added->FindByContent(token)) return a->id;
  return impl_->model->TokenToId(token);
}

bool Tokenizer::IsSpecial(int32_t id) const {
  const auto* a = impl_->added->FindById(id);
  return a != nullptr && a->special;
}

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special_tokens)
    : tokenizer_(tokenizer),
      skip_special_tokens_(skip_special_tokens),
      stream_(std::make_unique<tokenizer_internal::DecodeStream>(tokenizer.impl_->decoder)) {}

IncrementalDetokenizer::~IncrementalDetokenizer() = default;

std::string IncrementalDetokenizer::Push(int32_t id) {
  auto piece = tokenizer_.impl_->Piece(id);
  if (!piece || (skip_special_tokens_ && tokenizer_.IsSpecial(id))) return "";
  return stream_->Push(std::string(*piece));
}

std::string IncrementalDetokenizer::Flush() {
  std::string rest = stream_->Finish();
  stream_ = std::make_unique<tokenizer_internal::DecodeStream>(tokenizer_.impl_->decoder);
  return rest;
}

}  // namespace llmux
