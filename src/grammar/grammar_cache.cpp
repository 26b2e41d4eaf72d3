#include <list>
#include <mutex>
#include <unordered_map>

#include "llmux/grammar.h"
#include "llmux/thread_annotations.h"

namespace llmux {

struct GrammarCache::Impl {
  struct Entry {
    std::string key;
    std::shared_ptr<const CompiledGrammar> grammar;
    size_t bytes = 0;
  };
  size_t max_bytes;
  GrammarLimits limits;
  mutable Mutex mutex;
  std::list<Entry> lru GUARDED_BY(mutex);  // most recent first
  std::unordered_map<std::string, std::list<Entry>::iterator> index GUARDED_BY(mutex);
  size_t bytes GUARDED_BY(mutex) = 0;
  Stats stats GUARDED_BY(mutex);

  void EvictLocked() REQUIRES(mutex) {
    while (bytes > max_bytes && !lru.empty()) {
      bytes -= lru.back().bytes;
      index.erase(lru.back().key);
      lru.pop_back();
      ++stats.evictions;
    }
  }
};

GrammarCache::GrammarCache(size_t max_bytes, GrammarLimits limits) : impl_(std::make_unique<Impl>()) {
  impl_->max_bytes = max_bytes;
  impl_->limits = limits;
}

GrammarCache::~GrammarCache() = default;

StatusOr<std::shared_ptr<const CompiledGrammar>> GrammarCache::GetOrCompile(
    const std::string& tenant, const GrammarSpec& spec,
    std::shared_ptr<const TokenVocabulary> vocab) {
  if (!vocab) return InvalidArgument("no vocabulary");
  std::string key = std::to_string(tenant.size()) + ":" + tenant + "/" +
                    std::to_string(vocab->digest()) + "/" + spec.Fingerprint();
  {
    MutexLock lock(impl_->mutex);
    auto it = impl_->index.find(key);
    if (it != impl_->index.end()) {
      impl_->lru.splice(impl_->lru.begin(), impl_->lru, it->second);
      Impl::Entry& e = *it->second;
      // The mask cache fills lazily: re-measure on use.
      const size_t now = e.grammar->MemoryBytes();
      impl_->bytes += now - e.bytes;
      e.bytes = now;
      ++impl_->stats.hits;
      auto g = e.grammar;
      impl_->EvictLocked();
      return g;
    }
    ++impl_->stats.misses;
  }
  // Compiled outside the lock: other tenants' lookups do not wait for it.
  LLMUX_ASSIGN_OR_RETURN(std::shared_ptr<const CompiledGrammar> g,
                         CompileGrammar(spec, std::move(vocab), impl_->limits));
  MutexLock lock(impl_->mutex);
  if (impl_->index.count(key) == 0) {
    const size_t b = g->MemoryBytes();
    impl_->lru.push_front(Impl::Entry{key, g, b});
    impl_->index[key] = impl_->lru.begin();
    impl_->bytes += b;
    impl_->EvictLocked();
  }
  return g;
}

GrammarCache::Stats GrammarCache::GetStats() const {
  MutexLock lock(impl_->mutex);
  Stats s = impl_->stats;
  s.entries = impl_->lru.size();
  s.bytes = impl_->bytes;
  return s;
}

}  // namespace llmux
