// Running the grammar's pushdown automaton over bytes. A configuration is a set of stacks,
// each a top (a state with byte edges) plus a persistent linked list of return frames in an
// arena. Shared by the per-sequence matcher and the token-mask precomputation. Internal.
#pragma once

#include <cstdint>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "grammar/grammar.h"

namespace llmux::grammar_internal {

// Parent values of a frame: the root rule's caller, and the artificial bottom used when a
// token mask is computed from one state without knowing what lies below it.
constexpr int32_t kRootFrame = -1;
constexpr int32_t kBottomFrame = -2;

struct Frame {
  int32_t state;   // where the caller continues when the callee ends
  int32_t parent;  // the caller's own frame (an arena index, kRootFrame or kBottomFrame)
};

struct Top {
  int32_t state;  // a state with byte edges
  int32_t parent;
};

struct Config {
  std::vector<Top> tops;
  bool complete = false;    // the root rule can end here (the output is a sentence)
  bool hit_bottom = false;  // a stack popped past kBottomFrame (mask precomputation only)

  bool alive() const { return !tops.empty() || complete || hit_bottom; }
  void Clear() {
    tops.clear();
    complete = hit_bottom = false;
  }
};

// Not thread-safe. The arena only grows; Truncate() rolls it back to an earlier size (every
// configuration computed after that point must then be dropped).
class Pda {
 public:
  explicit Pda(const Grammar& grammar) : g_(grammar) {}

  // The configuration at the start of `rule` whose caller is `parent`.
  void Start(int32_t rule, int32_t parent, Config& out);
  // The configuration after reading one byte from `top` only.
  void StartAt(Top top, Config& out);
  // out = the configuration after `byte` from `in` (out is cleared first; must not be `in`).
  void Step(const Config& in, uint8_t byte, Config& out);
  // Runs `bytes` from `in`; whether the result is alive (a prefix of some sentence).
  bool Accepts(const Config& in, std::string_view bytes);

  // Adds a frame to the arena; returns its index.
  int32_t PushFrame(Frame f) {
    arena_.push_back(f);
    return static_cast<int32_t>(arena_.size()) - 1;
  }
  const Frame& frame(int32_t index) const { return arena_[index]; }
  size_t arena_size() const { return arena_.size(); }
  void Truncate(size_t size) { arena_.resize(size); }

 private:
  void Closure(int32_t state, int32_t parent, Config& out);

  const Grammar& g_;
  std::vector<Frame> arena_;
  std::vector<uint64_t> work_;
  std::vector<uint64_t> seen_small_;
  std::unordered_set<uint64_t> seen_large_;
  Config scratch_a_, scratch_b_;
};

}  // namespace llmux::grammar_internal
