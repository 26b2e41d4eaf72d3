// The BPE model of tokenizer.json ("model": {"type": "BPE"}): vocab, ranked merges, byte
// fallback, unk handling, ignore_merges, and a word cache.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "llmux/status.h"
#include "llmux/thread_annotations.h"

namespace llmux::tokenizer_internal {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using VocabMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

class BpeModel {
 public:
  // DataLoss when a merge names a piece missing from the vocab; Unimplemented for
  // continuing_subword_prefix / end_of_word_suffix / dropout, which Llama-family files never set.
  static StatusOr<std::unique_ptr<BpeModel>> Parse(const nlohmann::json& model);

  // Appends the ids of one pre-tokenized word (valid UTF-8). Thread-safe.
  void EncodeWord(std::string_view word, std::vector<int32_t>& out) const;

  std::optional<int32_t> TokenToId(std::string_view token) const;
  // "" when `id` is not in the model vocab.
  std::string_view IdToPiece(int32_t id) const;
  // One past the largest model id.
  int32_t size() const { return static_cast<int32_t>(pieces_.size()); }

 private:
  BpeModel() = default;
  void MergeWord(std::string_view word, std::vector<int32_t>& out) const;

  VocabMap vocab_;
  std::vector<std::string> pieces_;  // [size()] id -> piece ("" for gaps)
  // (left id << 32 | right id) -> (rank, merged id)
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;
  std::array<int32_t, 256> byte_ids_{};  // <0xXX> ids when byte_fallback; -1 when absent
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  bool fuse_unk_ = false;
  std::optional<int32_t> unk_id_;

  static constexpr size_t kCacheShards = 16;
  static constexpr size_t kMaxCachedWordBytes = 256;
  static constexpr size_t kMaxEntriesPerShard = 8192;
  struct CacheShard {
    Mutex mu;
    std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>>
        words GUARDED_BY(mu);
  };
  mutable std::array<CacheShard, kCacheShards> cache_;
};

}  // namespace llmux::tokenizer_internal
