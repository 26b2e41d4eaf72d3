#include "tokenizer/bpe_model.h"

#include <cstdio>
#include <nlohmann/json.hpp>
#include <queue>

#include "tokenizer/utf8.h"

namespace llmux::tokenizer_internal {
namespace {

uint64_t PairKey(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

// One queued merge; ordered as HF's BinaryHeap: lowest rank first, then leftmost position.
struct Candidate {
  int32_t rank;
  int32_t pos;
  int32_t new_id;
  bool operator<(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
};

struct Symbol {
  int32_t id;
  int32_t prev;
  int32_t next;
  bool alive;
};

}  // namespace

StatusOr<std::unique_ptr<BpeModel>> BpeModel::Parse(const nlohmann::json& model) {
  std::unique_ptr<BpeModel> m(new BpeModel());
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(key) && !model.at(key).is_null() &&
        !model.at(key).get<std::string>().empty()) {
      return Unimplemented(std::string("BPE ") + key + " is not supported");
    }
  }
  if (model.contains("dropout") && !model.at("dropout").is_null()) {
    return Unimplemented("BPE dropout is not supported (inference never samples merges)");
  }
  int32_t max_id = -1;
  for (const auto& [piece, id] : model.at("vocab").items()) {
    const auto v = id.get<int32_t>();
    if (v < 0) return DataLoss("negative id for vocab piece '" + piece + "'");
    m->vocab_.emplace(piece, v);
    max_id = std::max(max_id, v);
  }
  m->pieces_.resize(max_id + 1);
  for (const auto& [piece, id] : m->vocab_) m->pieces_[id] = piece;

  int32_t rank = 0;
  for (const auto& merge : model.at("merges")) {
    std::string left, right;
    if (merge.is_string()) {
      // "a b": HF requires exactly one separating space.
      const std::string s = merge.get<std::string>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
        return DataLoss("malformed merge '" + s + "'");
      }
      left = s.substr(0, sp);
      right = s.substr(sp + 1);
    } else {
      if (merge.size() != 2) return DataLoss("malformed merge " + merge.dump());
      left = merge[0].get<std::string>();
      right = merge[1].get<std::string>();
    }
    auto a = m->vocab_.find(left), b = m->vocab_.find(right), ab = m->vocab_.find(left + right);
    if (a == m->vocab_.end() || b == m->vocab_.end() || ab == m->vocab_.end()) {
      return DataLoss("merge '" + left + " " + right + "' names a piece missing from the vocab");
    }
    // NOTE: the first (lowest-rank) occurrence of a duplicated pair wins, as in HF.
    m->merges_.emplace(PairKey(a->second, b->second), std::make_pair(rank, ab->second));
    ++rank;
  }

  m->byte_fallback_ = model.value("byte_fallback", false);
  m->ignore_merges_ = model.value("ignore_merges", false);
  m->fuse_unk_ = model.value("fuse_unk", false);
  if (model.contains("unk_token") && model.at("unk_token").is_string()) {
    auto it = m->vocab_.find(model.at("unk_token").get<std::string>());
    if (it == m->vocab_.end()) return DataLoss("unk_token is not in the vocab");
    m->unk_id_ = it->second;
  }
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    auto it = m->vocab_.find(std::string_view(name));
    m->byte_ids_[b] = it == m->vocab_.end() ? -1 : it->second;
  }
  return m;
}

std::optional<int32_t> BpeModel::TokenToId(std::string_view token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

std::string_view BpeModel::IdToPiece(int32_t id) const {
  if (id < 0 || id >= size()) return {};
  return pieces_[id];
}

void BpeModel::EncodeWord(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (auto it = vocab_.find(word); it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  if (word.size() > kMaxCachedWordBytes) {
    MergeWord(word, out);
    return;
  }
  CacheShard& shard = cache_[std::hash<std::string_view>{}(word) % kCacheShards];
  {
    MutexLock lock(shard.mu);
    if (auto it = shard.words.find(word); it != shard.words.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids;
  MergeWord(word, ids);
  out.insert(out.end(), ids.begin(), ids.end());
  MutexLock lock(shard.mu);
  // NOTE: a full shard is simply dropped; refilling is cheap and keeps memory bounded.
  if (shard.words.size() >= kMaxEntriesPerShard) shard.words.clear();
  shard.words.emplace(std::string(word), std::move(ids));
}

void BpeModel::MergeWord(std::string_view word, std::vector<int32_t>& out) const {
  // Initial symbols: one per character (HF BPE::merge_word), with byte fallback or unk.
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  auto add = [&](int32_t id) {
    const auto n = static_cast<int32_t>(symbols.size());
    symbols.push_back({id, n - 1, n + 1, true});
  };
  int32_t pending_unk = -1;  // an unk id not yet added (fused with the next unks)
  for (size_t i = 0; i < word.size();) {
    const size_t len = std::min(Utf8CharLen(static_cast<unsigned char>(word[i])), word.size() - i);
    const std::string_view ch = word.substr(i, len);
    i += len;
    if (auto it = vocab_.find(ch); it != vocab_.end()) {
      if (pending_unk >= 0) add(pending_unk), pending_unk = -1;
      add(it->second);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (unsigned char b : ch) all = all && byte_ids_[b] >= 0;
      if (all) {
        // NOTE: HF adds the byte tokens without first flushing a pending unk; mirrored.
        for (unsigned char b : ch) add(byte_ids_[b]);
        continue;
      }
    }
    if (unk_id_) {
      if (pending_unk >= 0 && !fuse_unk_) add(pending_unk);
      pending_unk = *unk_id_;
    }
  }
  if (pending_unk >= 0) add(pending_unk);
  if (symbols.empty()) return;
  symbols.back().next = -1;

  std::priority_queue<Candidate> queue;
  auto push_pair = [&](int32_t pos) {
    const int32_t next = symbols[pos].next;
    if (next < 0) return;
    auto it = merges_.find(PairKey(symbols[pos].id, symbols[next].id));
    if (it != merges_.end()) queue.push({it->second.first, pos, it->second.second});
  };
  for (int32_t p = 0; p + 1 < static_cast<int32_t>(symbols.size()); ++p) push_pair(p);

  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (!left.alive || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    // Skip stale entries: the pair at this position changed since it was queued.
    auto it = merges_.find(PairKey(left.id, right.id));
    if (it == merges_.end() || it->second.second != top.new_id) continue;
    left.id = top.new_id;
    right.alive = false;
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].prev = top.pos;
    if (left.prev >= 0) push_pair(left.prev);
    push_pair(top.pos);
  }
  for (const Symbol& s : symbols) {
    if (s.alive) out.push_back(s.id);
  }
}

}  // namespace llmux::tokenizer_internal
