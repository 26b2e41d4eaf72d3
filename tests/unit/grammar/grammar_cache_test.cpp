// GrammarCache: hits per (tenant, spec), tenants never share an entry, LRU eviction under the
// memory cap, compile errors are not cached.
#include <gtest/gtest.h>

#include "grammar_test_util.h"

namespace llmux {
namespace {

GrammarSpec Schema(const std::string& s) {
  GrammarSpec spec;
  spec.schema = s;
  return spec;
}

TEST(GrammarCacheTest, HitsAreSharedWithinATenantOnly) {
  auto vocab = grammar_test::ByteVocab();
  GrammarCache cache;
  auto a1 = cache.GetOrCompile("acme", Schema(R"({"type":"integer"})"), vocab);
  auto a2 = cache.GetOrCompile("acme", Schema(R"({"type":"integer"})"), vocab);
  auto b1 = cache.GetOrCompile("bob", Schema(R"({"type":"integer"})"), vocab);
  ASSERT_TRUE(a1.ok() && a2.ok() && b1.ok());
  EXPECT_EQ(a1->get(), a2->get());
  EXPECT_NE(a1->get(), b1->get());
  auto other = cache.GetOrCompile("acme", Schema(R"({"type":"string"})"), vocab);
  ASSERT_TRUE(other.ok());
  EXPECT_NE(other->get(), a1->get());
  GrammarSpec with_prefix = Schema(R"({"type":"integer"})");
  with_prefix.prefix = std::string(1, 'x');
  EXPECT_NE(cache.GetOrCompile("acme", with_prefix, vocab)->get(), a1->get());
  const GrammarCache::Stats s = cache.GetStats();
  EXPECT_EQ(s.hits, 1);
  EXPECT_EQ(s.misses, 4);
  EXPECT_EQ(s.entries, 4u);
}

TEST(GrammarCacheTest, EvictsLeastRecentlyUsedUnderTheCap) {
  auto vocab = grammar_test::ByteVocab();
  auto probe = CompileGrammar(Schema(R"({"enum":[0]})"), vocab);
  ASSERT_TRUE(probe.ok());
  // Room for about two small grammars.
  GrammarCache cache((*probe)->MemoryBytes() * 5 / 2);
  auto get = [&](int i) {
    std::string schema = R"({"enum":[)";
    schema += std::to_string(i);
    schema += "]}";
    return cache.GetOrCompile("t", Schema(schema), vocab);
  };
  ASSERT_TRUE(get(1).ok());
  ASSERT_TRUE(get(2).ok());
  ASSERT_TRUE(get(1).ok());  // 1 is now the most recent
  ASSERT_TRUE(get(3).ok());  // evicts 2
  EXPECT_EQ(cache.GetStats().evictions, 1);
  const int64_t hits = cache.GetStats().hits;
  ASSERT_TRUE(get(1).ok());
  EXPECT_EQ(cache.GetStats().hits, hits + 1);
  ASSERT_TRUE(get(2).ok());  // recompiled
  EXPECT_EQ(cache.GetStats().hits, hits + 1);
  EXPECT_LE(cache.GetStats().bytes, (*probe)->MemoryBytes() * 5 / 2);
}

TEST(GrammarCacheTest, ErrorsAreReturnedAndNotCached) {
  GrammarCache cache;
  auto bad = cache.GetOrCompile("t", Schema(R"({"not":{}})"), grammar_test::ByteVocab());
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("'not'"), std::string::npos);
  EXPECT_EQ(cache.GetStats().entries, 0u);
}

}  // namespace
}  // namespace llmux
