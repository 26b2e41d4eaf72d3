// The compiled form of a grammar: one small automaton per rule (byte-range, rule-call and
// epsilon edges), flattened into global state/edge arrays. A pushdown automaton over bytes:
// a rule call pushes the return state, reaching a final state may pop. Internal to
// src/grammar.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "llmux/status.h"

namespace llmux::grammar_internal {

struct Edge {
  enum Kind : uint8_t { kByte, kRef, kEps };
  Kind kind = kEps;
  uint8_t lo = 0, hi = 0;  // kByte: the inclusive byte range
  int32_t rule = -1;       // kRef: the rule called
  int32_t target = -1;     // state reached (for kRef: after the call returns)
};

struct State {
  int32_t first_edge = 0;  // edges [first_edge, first_edge + num_edges) in Grammar::edges
  int32_t num_edges = 0;
  int32_t rule = -1;
  bool final = false;      // the rule may end here
  bool has_bytes = false;  // some outgoing edge consumes a byte
};

struct Rule {
  std::string name;
  int32_t start = -1;
  // For a rule that calls no other rule: a canonical text of its automaton. Token masks of a
  // leaf rule's states depend only on it, so they are shared across grammars (MaskCache).
  std::string leaf_key;
};

struct Grammar {
  std::vector<State> states;
  std::vector<Edge> edges;
  std::vector<Rule> rules;
  int32_t root = -1;
  // [states] the state's number in its rule's leaf_key numbering; -1 outside leaf rules.
  std::vector<int32_t> leaf_index;

  size_t MemoryBytes() const {
    size_t b = states.size() * sizeof(State) + edges.size() * sizeof(Edge);
    for (const Rule& r : rules) b += sizeof(Rule) + r.name.size() + r.leaf_key.size();
    return b;
  }
};

// A piece of a rule's automaton with one entry and one exit state.
struct Frag {
  int32_t in = -1;
  int32_t out = -1;
};

// Builds a Grammar. States belong to the rule they were created for; fragments of one rule
// combine Thompson-style (epsilon edges). Not thread-safe.
class GrammarBuilder {
 public:
  explicit GrammarBuilder(int32_t max_states) : max_states_(max_states) {}

  int32_t NewRule(std::string name);
  // Sets the rule's body (the fragment's exit becomes final).
  void Define(int32_t rule, Frag body);
  int32_t num_states() const { return static_cast<int32_t>(states_.size()); }
  // Whether max_states was exceeded (fragments keep building; Build fails).
  bool overflow() const { return num_states() > max_states_; }

  // Fragments inside `rule`.
  Frag Empty(int32_t rule);
  Frag Range(int32_t rule, uint8_t lo, uint8_t hi);
  Frag Literal(int32_t rule, std::string_view bytes);
  Frag Call(int32_t rule, int32_t callee);
  // Alternatives over byte-string sequences of ranges (UTF-8 classes).
  Frag Ranges(int32_t rule, const std::vector<std::vector<std::pair<uint8_t, uint8_t>>>& seqs);
  Frag Seq(int32_t rule, const std::vector<Frag>& parts);
  Frag Alt(int32_t rule, const std::vector<Frag>& parts);
  Frag Optional(int32_t rule, Frag f);
  Frag Star(int32_t rule, Frag f);
  Frag Plus(int32_t rule, Frag f);
  // make() builds a fresh copy of the repeated fragment each time. max < 0: unbounded.
  Frag Repeat(int32_t rule, const std::function<Frag()>& make, int32_t min, int32_t max);

  // Flattens everything. InvalidArgument when the grammar exceeded max_states or a rule can
  // call itself without consuming a byte (left recursion: such a schema has no finite
  // derivation order).
  StatusOr<Grammar> Build(int32_t root);

 private:
  int32_t NewState(int32_t rule);
  void AddEdge(int32_t from, Edge e);
  // Replaces epsilon edges by the edges of each state's epsilon closure (so a step does no
  // epsilon chasing at run time) and disconnects states that became unreachable.
  void RemoveEpsilons();

  struct BState {
    int32_t rule;
    bool final = false;
    std::vector<Edge> edges;
  };
  int32_t max_states_;
  std::vector<BState> states_;
  std::vector<Rule> rules_;
};

}  // namespace llmux::grammar_internal
