#include "grammar/pda.h"

#include <algorithm>

namespace llmux::grammar_internal {
namespace {

// A stack is (state, parent); both fit in 32 bits of a key (parent offset by 2 for the
// negative sentinels).
inline uint64_t Key(int32_t state, int32_t parent) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(state)) << 32) |
         static_cast<uint32_t>(parent + 2);
}
inline int32_t KeyState(uint64_t k) { return static_cast<int32_t>(k >> 32); }
inline int32_t KeyParent(uint64_t k) { return static_cast<int32_t>(k & 0xffffffffu) - 2; }

// NOTE: a guard against runaway closures. The builder refuses left recursion, so a closure is
// bounded by the grammar's size; this only caps pathological (hugely ambiguous) grammars, whose
// excess stacks are dropped.
constexpr size_t kMaxClosure = 1 << 16;
constexpr size_t kSmallSeen = 48;

}  // namespace

void Pda::Start(int32_t rule, int32_t parent, Config& out) {
  out.Clear();
  seen_small_.clear();
  seen_large_.clear();
  Closure(g_.rules[rule].start, parent, out);
}

void Pda::StartAt(Top top, Config& out) {
  out.Clear();
  out.tops.push_back(top);
}

void Pda::Step(const Config& in, uint8_t byte, Config& out) {
  out.Clear();
  seen_small_.clear();
  seen_large_.clear();
  for (const Top& top : in.tops) {
    const State& st = g_.states[top.state];
    for (int32_t e = st.first_edge; e < st.first_edge + st.num_edges; ++e) {
      const Edge& edge = g_.edges[e];
      if (edge.kind == Edge::kByte && byte >= edge.lo && byte <= edge.hi) {
        Closure(edge.target, top.parent, out);
      }
    }
  }
}

bool Pda::Accepts(const Config& in, std::string_view bytes) {
  if (bytes.empty()) return in.alive();
  const Config* cur = &in;
  Config* next = &scratch_a_;
  for (char c : bytes) {
    Step(*cur, static_cast<uint8_t>(c), *next);
    if (!next->alive()) return false;
    cur = next;
    next = (next == &scratch_a_) ? &scratch_b_ : &scratch_a_;
  }
  return true;
}

void Pda::Closure(int32_t state, int32_t parent, Config& out) {
  work_.clear();
  work_.push_back(Key(state, parent));
  size_t expanded = 0;
  while (!work_.empty()) {
    const uint64_t k = work_.back();
    work_.pop_back();
    // Dedupe within this step: a linear scan while small, a hash set beyond.
    if (seen_large_.empty()) {
      if (std::find(seen_small_.begin(), seen_small_.end(), k) != seen_small_.end()) continue;
      seen_small_.push_back(k);
      if (seen_small_.size() > kSmallSeen) seen_large_.insert(seen_small_.begin(), seen_small_.end());
    } else if (!seen_large_.insert(k).second) {
      continue;
    }
    if (++expanded > kMaxClosure) break;
    const int32_t s = KeyState(k);
    const int32_t p = KeyParent(k);
    const State& st = g_.states[s];
    if (st.has_bytes) out.tops.push_back(Top{s, p});
    if (st.final) {
      if (p == kRootFrame) {
        out.complete = true;
      } else if (p == kBottomFrame) {
        out.hit_bottom = true;
      } else {
        work_.push_back(Key(arena_[p].state, arena_[p].parent));
      }
    }
    for (int32_t e = st.first_edge; e < st.first_edge + st.num_edges; ++e) {
      const Edge& edge = g_.edges[e];
      if (edge.kind == Edge::kEps) {
        work_.push_back(Key(edge.target, p));
      } else if (edge.kind == Edge::kRef) {
        const State& ret = g_.states[edge.target];
        const int32_t callee = g_.rules[edge.rule].start;
        if (ret.final && ret.num_edges == 0) {
          work_.push_back(Key(callee, p));  // tail call: returning would pop at once
        } else {
          arena_.push_back(Frame{edge.target, p});
          work_.push_back(Key(callee, static_cast<int32_t>(arena_.size()) - 1));
        }
      }
    }
  }
}

}  // namespace llmux::grammar_internal
