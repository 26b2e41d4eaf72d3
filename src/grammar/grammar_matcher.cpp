#include <algorithm>

#include "grammar/mask_cache.h"
#include "grammar/pda.h"
#include "llmux/grammar.h"

namespace llmux {
namespace grammar_internal {

// The matcher's state: the configuration after each accepted token (for rollback) and the
// arena size at that point.
class MatcherCore {
 public:
  explicit MatcherCore(const CompiledGrammar& g) : g_(g), pda_(g.grammar()) {
    history_.emplace_back();
    pda_.Start(g.grammar().root, kRootFrame, history_.back());
    arena_sizes_.push_back(pda_.arena_size());
  }

  const Config& current() const { return history_.back(); }

  bool AcceptBytes(std::string_view bytes) {
    Config a = history_.back(), b;
    for (char c : bytes) {
      pda_.Step(a, static_cast<uint8_t>(c), b);
      if (!b.alive()) {
        pda_.Truncate(arena_sizes_.back());
        return false;
      }
      std::swap(a, b);
    }
    Push(std::move(a));
    return true;
  }

  bool AcceptEos() {
    if (!history_.back().complete) return false;
    Config done;
    done.complete = true;  // nothing but EOS from here on
    Push(std::move(done));
    return true;
  }

  void Rollback(int32_t n) {
    LLMUX_CHECK(n >= 0 && n < static_cast<int32_t>(history_.size()))
        << "rollback of " << n << " tokens with " << history_.size() - 1 << " accepted";
    history_.resize(history_.size() - n);
    arena_sizes_.resize(arena_sizes_.size() - n);
    pda_.Truncate(arena_sizes_.back());
  }

  int32_t num_accepted() const { return static_cast<int32_t>(history_.size()) - 1; }

  void FillMask(std::span<uint32_t> mask) {
    const TokenVocabulary& vocab = g_.vocabulary();
    LLMUX_CHECK(static_cast<int32_t>(mask.size()) >= vocab.mask_words())
        << "bitmask of " << mask.size() << " words for " << vocab.size() << " tokens";
    std::fill(mask.begin(), mask.end(), 0u);
    const Config& cur = history_.back();
    done_states_.clear();
    for (const Top& top : cur.tops) {
      const std::shared_ptr<const MaskEntry> entry = g_.mask_cache().Get(top.state);
      if (std::find(done_states_.begin(), done_states_.end(), top.state) == done_states_.end()) {
        entry->OrAccepted(mask);
        done_states_.push_back(top.state);
      }
      if (entry->uncertain.empty()) continue;
      // The rule may end inside these tokens. Resolve them one frame deeper from the cache
      // (keyed by the caller's return state), then check what is left against this stack.
      const std::vector<int32_t>* to_check = &entry->uncertain;
      std::shared_ptr<const UncertainSplit> split;
      if (top.parent >= 0) {
        split = g_.mask_cache().GetSplit(top.state, pda_.frame(top.parent).state);
        for (int32_t id : split->accepted) mask[id >> 5] |= 1u << (id & 31);
        to_check = &split->deeper;
      }
      single_.Clear();
      single_.tops.push_back(top);
      const size_t base = pda_.arena_size();
      for (int32_t id : *to_check) {
        uint32_t& word = mask[id >> 5];
        const uint32_t bit = 1u << (id & 31);
        if ((word & bit) != 0) continue;
        if (pda_.Accepts(single_, vocab.bytes(id))) word |= bit;
        pda_.Truncate(base);
      }
    }
    if (cur.complete) {
      for (int32_t e : vocab.eos_ids()) mask[e >> 5] |= 1u << (e & 31);
    }
  }

 private:
  void Push(Config c) {
    history_.push_back(std::move(c));
    arena_sizes_.push_back(pda_.arena_size());
  }

  const CompiledGrammar& g_;
  Pda pda_;
  std::vector<Config> history_;
  std::vector<size_t> arena_sizes_;
  std::vector<int32_t> done_states_;
  Config single_;
};

}  // namespace grammar_internal

GrammarMatcher::GrammarMatcher(std::shared_ptr<const CompiledGrammar> grammar)
    : grammar_(std::move(grammar)),
      core_(std::make_unique<grammar_internal::MatcherCore>(*grammar_)) {}

GrammarMatcher::~GrammarMatcher() = default;

void GrammarMatcher::FillNextTokenBitmask(std::span<uint32_t> bitmask) const {
  core_->FillMask(bitmask);
}

bool GrammarMatcher::AcceptToken(int32_t token) {
  const TokenVocabulary& vocab = grammar_->vocabulary();
  if (token < 0 || token >= vocab.size()) return false;
  const auto& eos = vocab.eos_ids();
  if (std::find(eos.begin(), eos.end(), token) != eos.end()) return core_->AcceptEos();
  const std::string& bytes = vocab.bytes(token);
  if (bytes.empty()) return false;
  return core_->AcceptBytes(bytes);
}

bool GrammarMatcher::AcceptBytes(std::string_view bytes) { return core_->AcceptBytes(bytes); }

void GrammarMatcher::Rollback(int32_t num_tokens) { core_->Rollback(num_tokens); }

int32_t GrammarMatcher::num_accepted() const { return core_->num_accepted(); }

bool GrammarMatcher::IsComplete() const { return core_->current().complete; }

bool GrammarMatcher::IsTerminated() const {
  return core_->current().complete && core_->current().tops.empty();
}

}  // namespace llmux
