#include <algorithm>
#include <deque>
#include <unordered_map>

#include "grammar/grammar.h"

namespace llmux::grammar_internal {

int32_t GrammarBuilder::NewRule(std::string name) {
  Rule r;
  r.name = std::move(name);
  rules_.push_back(std::move(r));
  return static_cast<int32_t>(rules_.size()) - 1;
}

int32_t GrammarBuilder::NewState(int32_t rule) {
  states_.push_back(BState{rule, false, {}});
  return static_cast<int32_t>(states_.size()) - 1;
}

void GrammarBuilder::AddEdge(int32_t from, Edge e) { states_[from].edges.push_back(e); }

void GrammarBuilder::Define(int32_t rule, Frag body) {
  rules_[rule].start = body.in;
  states_[body.out].final = true;
}

Frag GrammarBuilder::Empty(int32_t rule) {
  const int32_t s = NewState(rule);
  return {s, s};
}

Frag GrammarBuilder::Range(int32_t rule, uint8_t lo, uint8_t hi) {
  Frag f{NewState(rule), NewState(rule)};
  AddEdge(f.in, Edge{Edge::kByte, lo, hi, -1, f.out});
  return f;
}

Frag GrammarBuilder::Literal(int32_t rule, std::string_view bytes) {
  Frag f = Empty(rule);
  for (char c : bytes) {
    const int32_t next = NewState(rule);
    const auto b = static_cast<uint8_t>(c);
    AddEdge(f.out, Edge{Edge::kByte, b, b, -1, next});
    f.out = next;
  }
  return f;
}

Frag GrammarBuilder::Call(int32_t rule, int32_t callee) {
  Frag f{NewState(rule), NewState(rule)};
  AddEdge(f.in, Edge{Edge::kRef, 0, 0, callee, f.out});
  return f;
}

Frag GrammarBuilder::Ranges(int32_t rule,
                            const std::vector<std::vector<std::pair<uint8_t, uint8_t>>>& seqs) {
  Frag f{NewState(rule), NewState(rule)};
  // NOTE: sequences sharing a leading range share its state (UTF-8 classes have many
  // sequences with the same lead range; merging keeps the automaton deterministic-ish).
  std::unordered_map<uint64_t, int32_t> after_prefix;
  for (const auto& seq : seqs) {
    int32_t at = f.in;
    uint64_t key = 0;
    for (size_t i = 0; i < seq.size(); ++i) {
      const bool last = i + 1 == seq.size();
      key = key * 1000003u + (static_cast<uint64_t>(seq[i].first) << 8 | seq[i].second) + 1;
      if (last) {
        AddEdge(at, Edge{Edge::kByte, seq[i].first, seq[i].second, -1, f.out});
        break;
      }
      auto it = after_prefix.find(key);
      if (it == after_prefix.end()) {
        const int32_t next = NewState(rule);
        AddEdge(at, Edge{Edge::kByte, seq[i].first, seq[i].second, -1, next});
        it = after_prefix.emplace(key, next).first;
      }
      at = it->second;
    }
  }
  return f;
}

Frag GrammarBuilder::Seq(int32_t rule, const std::vector<Frag>& parts) {
  if (parts.empty()) return Empty(rule);
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    AddEdge(parts[i].out, Edge{Edge::kEps, 0, 0, -1, parts[i + 1].in});
  }
  return {parts.front().in, parts.back().out};
}

Frag GrammarBuilder::Alt(int32_t rule, const std::vector<Frag>& parts) {
  Frag f{NewState(rule), NewState(rule)};
  for (const Frag& p : parts) {
    AddEdge(f.in, Edge{Edge::kEps, 0, 0, -1, p.in});
    AddEdge(p.out, Edge{Edge::kEps, 0, 0, -1, f.out});
  }
  return f;
}

Frag GrammarBuilder::Optional(int32_t rule, Frag f) {
  Frag o{NewState(rule), NewState(rule)};
  AddEdge(o.in, Edge{Edge::kEps, 0, 0, -1, f.in});
  AddEdge(o.in, Edge{Edge::kEps, 0, 0, -1, o.out});
  AddEdge(f.out, Edge{Edge::kEps, 0, 0, -1, o.out});
  return o;
}

Frag GrammarBuilder::Star(int32_t rule, Frag f) {
  const int32_t hub = NewState(rule);
  AddEdge(hub, Edge{Edge::kEps, 0, 0, -1, f.in});
  AddEdge(f.out, Edge{Edge::kEps, 0, 0, -1, hub});
  return {hub, hub};
}

Frag GrammarBuilder::Plus(int32_t rule, Frag f) {
  const int32_t out = NewState(rule);
  AddEdge(f.out, Edge{Edge::kEps, 0, 0, -1, out});
  AddEdge(out, Edge{Edge::kEps, 0, 0, -1, f.in});
  return {f.in, out};
}

Frag GrammarBuilder::Repeat(int32_t rule, const std::function<Frag()>& make, int32_t min,
                            int32_t max) {
  std::vector<Frag> parts;
  for (int32_t i = 0; i < min && !overflow(); ++i) parts.push_back(make());
  if (max < 0) {
    parts.push_back(Star(rule, make()));
  } else if (max > min) {
    // Optional tail x{0,max-min}: a chain of copies, each link able to jump to one shared exit
    // (flat, so epsilon closures stay small).
    const int32_t exit = NewState(rule);
    const Frag head = Empty(rule);
    int32_t at = head.out;
    for (int32_t i = min; i < max && !overflow(); ++i) {
      AddEdge(at, Edge{Edge::kEps, 0, 0, -1, exit});
      const Frag x = make();
      AddEdge(at, Edge{Edge::kEps, 0, 0, -1, x.in});
      at = x.out;
    }
    AddEdge(at, Edge{Edge::kEps, 0, 0, -1, exit});
    parts.push_back(Frag{head.in, exit});
  }
  return Seq(rule, parts);
}

void GrammarBuilder::RemoveEpsilons() {
  // Each state gets the non-epsilon edges and the finality of its epsilon closure.
  const size_t n = states_.size();
  std::vector<std::vector<Edge>> edges(n);
  std::vector<bool> final(n, false);
  std::vector<int32_t> mark(n, -1), stack;
  for (size_t s = 0; s < n; ++s) {
    stack.assign(1, static_cast<int32_t>(s));
    mark[s] = static_cast<int32_t>(s);
    while (!stack.empty()) {
      const int32_t c = stack.back();
      stack.pop_back();
      if (states_[c].final) final[s] = true;
      for (const Edge& e : states_[c].edges) {
        if (e.kind == Edge::kEps) {
          if (mark[e.target] != static_cast<int32_t>(s)) {
            mark[e.target] = static_cast<int32_t>(s);
            stack.push_back(e.target);
          }
          continue;
        }
        bool dup = false;
        for (const Edge& d : edges[s]) {
          dup = dup || (d.kind == e.kind && d.lo == e.lo && d.hi == e.hi && d.rule == e.rule &&
                        d.target == e.target);
        }
        if (!dup) edges[s].push_back(e);
      }
    }
  }
  for (size_t s = 0; s < n; ++s) {
    states_[s].edges = std::move(edges[s]);
    states_[s].final = final[s];
  }
  // Drop states no rule start reaches any more (their masks would be computed for nothing).
  std::vector<bool> reachable(n, false);
  for (const Rule& r : rules_) {
    if (r.start >= 0 && !reachable[r.start]) {
      reachable[r.start] = true;
      stack.push_back(r.start);
    }
  }
  while (!stack.empty()) {
    const int32_t c = stack.back();
    stack.pop_back();
    for (const Edge& e : states_[c].edges) {
      if (!reachable[e.target]) {
        reachable[e.target] = true;
        stack.push_back(e.target);
      }
    }
  }
  for (size_t s = 0; s < n; ++s) {
    if (!reachable[s]) states_[s].edges.clear();
  }
}

StatusOr<Grammar> GrammarBuilder::Build(int32_t root) {
  if (overflow()) {
    return InvalidArgument("the schema compiles to more than " + std::to_string(max_states_) +
                           " grammar states (simplify it or lower its length/item bounds)");
  }
  RemoveEpsilons();
  const size_t nrules = rules_.size();
  // Nullable rules (fixpoint), then the rules each rule may call before consuming a byte.
  std::vector<bool> nullable(nrules, false);
  auto left_edge = [&](int32_t r, std::vector<int32_t>* calls) {
    bool reaches_final = false;
    std::vector<bool> seen(states_.size(), false);
    std::vector<int32_t> work{rules_[r].start};
    while (!work.empty()) {
      const int32_t s = work.back();
      work.pop_back();
      if (seen[s]) continue;
      seen[s] = true;
      if (states_[s].final) reaches_final = true;
      for (const Edge& e : states_[s].edges) {
        if (e.kind == Edge::kEps) work.push_back(e.target);
        if (e.kind == Edge::kRef) {
          if (calls) calls->push_back(e.rule);
          if (nullable[e.rule]) work.push_back(e.target);
        }
      }
    }
    return reaches_final;
  };
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t r = 0; r < nrules; ++r) {
      if (!nullable[r] && left_edge(static_cast<int32_t>(r), nullptr)) {
        nullable[r] = changed = true;
      }
    }
  }
  std::vector<std::vector<int32_t>> calls(nrules);
  for (size_t r = 0; r < nrules; ++r) left_edge(static_cast<int32_t>(r), &calls[r]);
  std::vector<int8_t> mark(nrules, 0);  // 0 new, 1 on the DFS path, 2 done
  std::function<int32_t(int32_t)> find_cycle = [&](int32_t r) -> int32_t {
    mark[r] = 1;
    for (int32_t c : calls[r]) {
      if (mark[c] == 1) return c;
      if (mark[c] == 0) {
        if (int32_t hit = find_cycle(c); hit >= 0) return hit;
      }
    }
    mark[r] = 2;
    return -1;
  };
  for (size_t r = 0; r < nrules; ++r) {
    if (mark[r] != 0) continue;
    if (int32_t hit = find_cycle(static_cast<int32_t>(r)); hit >= 0) {
      return InvalidArgument("'" + rules_[hit].name +
                             "' refers to itself without consuming any output ($ref/anyOf "
                             "left recursion); such a schema cannot be generated");
    }
  }

  Grammar g;
  g.root = root;
  g.states.resize(states_.size());
  g.leaf_index.assign(states_.size(), -1);
  for (size_t s = 0; s < states_.size(); ++s) {
    State& st = g.states[s];
    st.rule = states_[s].rule;
    st.final = states_[s].final;
    st.first_edge = static_cast<int32_t>(g.edges.size());
    st.num_edges = static_cast<int32_t>(states_[s].edges.size());
    for (const Edge& e : states_[s].edges) {
      if (e.kind == Edge::kByte) st.has_bytes = true;
      g.edges.push_back(e);
    }
  }
  // Leaf keys: a canonical numbering of each call-free rule's states from its start.
  for (size_t r = 0; r < nrules; ++r) {
    if (!calls[r].empty()) continue;
    std::unordered_map<int32_t, int32_t> number;
    std::deque<int32_t> queue{rules_[r].start};
    number[rules_[r].start] = 0;
    std::string key;
    bool leaf = true;
    while (!queue.empty() && leaf) {
      const int32_t s = queue.front();
      queue.pop_front();
      key += states_[s].final ? 'F' : 'S';
      for (const Edge& e : states_[s].edges) {
        if (e.kind == Edge::kRef) {
          leaf = false;
          break;
        }
        auto [it, fresh] = number.emplace(e.target, static_cast<int32_t>(number.size()));
        if (fresh) queue.push_back(e.target);
        key += (e.kind == Edge::kByte ? 'b' : 'e');
        key += static_cast<char>(e.lo);
        key += static_cast<char>(e.hi);
        key += std::to_string(it->second);
        key += ';';
      }
    }
    if (!leaf) continue;
    rules_[r].leaf_key = std::move(key);
    for (const auto& [state, index] : number) g.leaf_index[state] = index;
  }
  g.rules = rules_;
  return g;
}

}  // namespace llmux::grammar_internal
