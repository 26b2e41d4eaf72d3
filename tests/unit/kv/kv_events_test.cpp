// KvCacheManager reports stored / removed / cleared blocks to its KvEventSink, in order, with
// tenant-seeded hashes and the cache scope.
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "kv/kv_cache_manager.h"

namespace llmux {
namespace {

// Records every call as one line, e.g. "stored h=.. parent=- tokens=1,2 size=2 scope=tenant:a".
class RecordingSink final : public KvEventSink {
 public:
  void OnBlocksStored(std::vector<KvBlockStored> blocks) override {
    for (const KvBlockStored& b : blocks) stored.push_back(b);
    for (const KvBlockStored& b : blocks) {
      std::ostringstream line;
      line << "stored tokens=";
      for (size_t i = 0; i < b.token_ids.size(); ++i) line << (i ? "," : "") << b.token_ids[i];
      line << " size=" << b.block_size << " scope=" << b.scope;
      if (b.parent_block_hash) {
        line << " parent=" << Name(*b.parent_block_hash);
      } else {
        line << " root";
      }
      line << " as " << Name(b.block_hash);
      log.push_back(line.str());
    }
  }
  void OnBlocksRemoved(std::vector<uint64_t> hashes) override {
    for (uint64_t h : hashes) log.push_back(std::string("removed ").append(Name(h)));
  }
  void OnAllCleared() override { log.push_back("cleared"); }
  KvEventCounters Counters() const override { return {}; }

  // Hashes get short names in order of first appearance: #0, #1, ...
  std::string Name(uint64_t h) {
    size_t i = 0;
    while (i < names.size() && names[i] != h) ++i;
    if (i == names.size()) names.push_back(h);
    std::ostringstream name;
    name << '#' << i;
    return name.str();
  }

  std::vector<std::string> log;
  std::vector<KvBlockStored> stored;
  std::vector<uint64_t> names;
};

TEST(KvEventsTest, ScriptedSequence) {
  KvCacheManager kv(/*num_blocks=*/4, /*block_size=*/2);
  RecordingSink sink;
  kv.SetScopeName(0, "tenant:a");
  kv.SetScopeName(1, "tenant:b");
  kv.SetEventSink(&sink);
  const PrefixRoot a{0, HashSeed("tenant:a")};
  const PrefixRoot b{1, HashSeed("tenant:b")};
  const std::vector<int32_t> prompt = {1, 2, 3, 4};

  // Tenant 0 computes two full blocks; tenant 1 the same tokens in its own scope.
  std::vector<int32_t> ta, tb;
  ASSERT_TRUE(kv.Allocate(0, false, {}, 2, &ta));
  PrefixChain ca{a.seed_hash};  // a chain starts at its scope's seed (as MatchPrefix sets it)
  kv.RegisterFullBlock(a, std::span(prompt).subspan(0, 2), ta[0], &ca);
  kv.RegisterFullBlock(a, std::span(prompt).subspan(2, 2), ta[1], &ca);
  ASSERT_TRUE(kv.Allocate(1, false, {}, 2, &tb));
  PrefixChain cb{b.seed_hash};
  kv.RegisterFullBlock(b, std::span(prompt).subspan(0, 2), tb[0], &cb);
  kv.RegisterFullBlock(b, std::span(prompt).subspan(2, 2), tb[1], &cb);

  // A hit: tenant 0 reuses its cached blocks; nothing new is stored.
  std::vector<int32_t> hits;
  PrefixChain hit_chain;
  ASSERT_EQ(kv.MatchPrefix(a, prompt, 2, &hits, &hit_chain, true), 2);
  std::vector<int32_t> ta2;
  ASSERT_TRUE(kv.Allocate(0, false, hits, 0, &ta2));
  kv.Free(&ta2);

  kv.Free(&ta);  // tenant 0's tail first, then its head, become evictable
  kv.Free(&tb);
  // Every block is cached and evictable: taking two evicts tenant 0's chain, tail first.
  std::vector<int32_t> fresh;
  ASSERT_TRUE(kv.Allocate(1, false, {}, 2, &fresh));
  kv.CheckInvariants();

  EXPECT_EQ(sink.log, (std::vector<std::string>{
                          "cleared",
                          "stored tokens=1,2 size=2 scope=tenant:a root as #0",
                          "stored tokens=3,4 size=2 scope=tenant:a parent=#0 as #1",
                          "stored tokens=1,2 size=2 scope=tenant:b root as #2",
                          "stored tokens=3,4 size=2 scope=tenant:b parent=#2 as #3",
                          "removed #1",
                          "removed #0",
                      }));
  // Identical tokens in two scopes never share a hash.
  ASSERT_EQ(sink.stored.size(), 4u);
  EXPECT_NE(sink.stored[0].block_hash, sink.stored[2].block_hash);
  EXPECT_NE(sink.stored[1].block_hash, sink.stored[3].block_hash);
  // The first block's hash chains on the scope's seed.
  EXPECT_EQ(sink.stored[0].block_hash, HashBlock(HashSeed("tenant:a"), {prompt.data(), 2}));
}

TEST(KvEventsTest, DuplicateRegistrationStoresOnce) {
  KvCacheManager kv(4, 2);
  RecordingSink sink;
  kv.SetScopeName(0, "group:g");
  kv.SetEventSink(&sink);
  const PrefixRoot g{0, HashSeed("group:g")};
  const std::vector<int32_t> tokens = {5, 6};
  std::vector<int32_t> t1, t2;
  ASSERT_TRUE(kv.Allocate(0, false, {}, 1, &t1));
  ASSERT_TRUE(kv.Allocate(1, false, {}, 1, &t2));
  PrefixChain c1{g.seed_hash}, c2{g.seed_hash};
  kv.RegisterFullBlock(g, tokens, t1[0], &c1);
  kv.RegisterFullBlock(g, tokens, t2[0], &c2);  // computed twice concurrently: one entry
  EXPECT_EQ(sink.log,
            (std::vector<std::string>{"cleared",
                                      "stored tokens=5,6 size=2 scope=group:g root as #0"}));
  kv.Free(&t1);
  kv.Free(&t2);
}

TEST(KvEventsTest, NoSinkNoEventsAndDisabledRootsStoreNothing) {
  KvCacheManager kv(2, 2);
  RecordingSink sink;
  kv.SetEventSink(&sink);
  const std::vector<int32_t> tokens = {1, 2};
  std::vector<int32_t> t;
  ASSERT_TRUE(kv.Allocate(0, false, {}, 1, &t));
  PrefixChain c;
  kv.RegisterFullBlock(PrefixRoot{}, tokens, t[0], &c);  // prefix cache off for this tenant
  kv.Free(&t);
  EXPECT_EQ(sink.log, std::vector<std::string>{"cleared"});
}

}  // namespace
}  // namespace llmux
