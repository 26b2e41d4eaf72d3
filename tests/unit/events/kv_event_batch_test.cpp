// msgpack encoding of KV-event batches, decoded back with msgpack-cxx.
#include "events/kv_event_batch.h"

#include <gtest/gtest.h>

#include <map>

#include <msgpack.hpp>

#include "events/wire.h"

namespace llmux::events {
namespace {

std::string Str(const msgpack::object& o) {
  EXPECT_EQ(o.type, msgpack::type::STR);
  return o.as<std::string>();
}

std::vector<msgpack::object> Array(const msgpack::object& o) {
  EXPECT_EQ(o.type, msgpack::type::ARRAY);
  if (o.type != msgpack::type::ARRAY) return {};
  return {o.via.array.ptr, o.via.array.ptr + o.via.array.size};
}

KvEvent Stored(uint64_t hash, std::optional<uint64_t> parent, std::vector<int32_t> tokens,
               std::string scope) {
  KvEvent e;
  e.kind = KvEvent::Kind::kBlockStored;
  e.stored.block_hash = hash;
  e.stored.parent_block_hash = parent;
  e.stored.block_size = static_cast<int32_t>(tokens.size());
  e.stored.token_ids = std::move(tokens);
  e.stored.scope = std::move(scope);
  return e;
}

KvEvent Removed(std::vector<uint64_t> hashes) {
  KvEvent e;
  e.kind = KvEvent::Kind::kBlockRemoved;
  e.removed = std::move(hashes);
  return e;
}

TEST(KvEventBatchTest, EncodesVllmPositionalArrays) {
  KvEventBatch batch;
  batch.ts = 1234.5;
  batch.data_parallel_rank = 0;
  AppendEvent(Stored(0xFFFFFFFFFFFFFFF0ULL, std::nullopt, {1, 2, 3, 4}, "tenant:acme"),
              &batch.events);
  AppendEvent(Stored(7, 0xFFFFFFFFFFFFFFF0ULL, {5, 6, 7, 8}, ""), &batch.events);
  AppendEvent(Removed({7}), &batch.events);
  AppendEvent(Removed({9, 10}), &batch.events);  // merged into the previous removal
  KvEvent cleared;
  cleared.kind = KvEvent::Kind::kAllBlocksCleared;
  AppendEvent(cleared, &batch.events);
  const std::string bytes = EncodeBatch(batch, "CPU");

  msgpack::object_handle h = msgpack::unpack(bytes.data(), bytes.size());
  std::vector<msgpack::object> top = Array(h.get());
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[0].type, msgpack::type::FLOAT64);
  EXPECT_DOUBLE_EQ(top[0].as<double>(), 1234.5);
  EXPECT_EQ(top[2].as<int>(), 0);
  std::vector<msgpack::object> events = Array(top[1]);
  ASSERT_EQ(events.size(), 4u);

  std::vector<msgpack::object> s0 = Array(events[0]);
  ASSERT_EQ(s0.size(), 9u);
  EXPECT_EQ(Str(s0[0]), "BlockStored");
  EXPECT_EQ(s0[1].as<std::vector<uint64_t>>(), std::vector<uint64_t>{0xFFFFFFFFFFFFFFF0ULL});
  EXPECT_TRUE(s0[2].is_nil());
  EXPECT_EQ(s0[3].as<std::vector<int>>(), (std::vector<int>{1, 2, 3, 4}));
  EXPECT_EQ(s0[4].as<int>(), 4);
  EXPECT_TRUE(s0[5].is_nil());  // lora_id
  EXPECT_EQ(Str(s0[6]), "CPU");
  EXPECT_TRUE(s0[7].is_nil());  // lora_name
  std::vector<msgpack::object> extra = Array(s0[8]);
  ASSERT_EQ(extra.size(), 1u);
  EXPECT_EQ(extra[0].as<std::vector<std::string>>(), std::vector<std::string>{"tenant:acme"});

  std::vector<msgpack::object> s1 = Array(events[1]);
  ASSERT_EQ(s1.size(), 9u);
  EXPECT_EQ(s1[2].as<uint64_t>(), 0xFFFFFFFFFFFFFFF0ULL);
  std::vector<msgpack::object> extra1 = Array(s1[8]);
  ASSERT_EQ(extra1.size(), 1u);
  EXPECT_TRUE(extra1[0].is_nil());

  std::vector<msgpack::object> r = Array(events[2]);
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(Str(r[0]), "BlockRemoved");
  EXPECT_EQ(r[1].as<std::vector<uint64_t>>(), (std::vector<uint64_t>{7, 9, 10}));
  EXPECT_EQ(Str(r[2]), "CPU");

  std::vector<msgpack::object> c = Array(events[3]);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(Str(c[0]), "AllBlocksCleared");
}

// Field name -> value of a tagged map event.
std::map<std::string, msgpack::object> Fields(const msgpack::object& o) {
  EXPECT_EQ(o.type, msgpack::type::MAP);
  std::map<std::string, msgpack::object> out;
  if (o.type != msgpack::type::MAP) return out;
  for (uint32_t i = 0; i < o.via.map.size; ++i) {
    out.emplace(o.via.map.ptr[i].key.as<std::string>(), o.via.map.ptr[i].val);
  }
  return out;
}

TEST(KvEventBatchTest, EncodesVllmTaggedMaps) {
  KvEventBatch batch;
  batch.ts = 2.5;
  batch.data_parallel_rank = 0;
  AppendEvent(Stored(11, 10, {1, 2}, "group:g"), &batch.events);
  AppendEvent(Removed({11}), &batch.events);
  KvEvent cleared;
  cleared.kind = KvEvent::Kind::kAllBlocksCleared;
  AppendEvent(cleared, &batch.events);
  const std::string bytes = EncodeBatch(batch, "GPU", KvEventFormat::kMap);

  msgpack::object_handle h = msgpack::unpack(bytes.data(), bytes.size());
  std::vector<msgpack::object> top = Array(h.get());  // the batch stays positional
  ASSERT_EQ(top.size(), 3u);
  std::vector<msgpack::object> events = Array(top[1]);
  ASSERT_EQ(events.size(), 3u);

  auto s = Fields(events[0]);
  ASSERT_EQ(s.size(), 11u);
  EXPECT_EQ(Str(s.at("type")), "BlockStored");
  EXPECT_EQ(s.at("block_hashes").as<std::vector<uint64_t>>(), std::vector<uint64_t>{11});
  EXPECT_EQ(s.at("parent_block_hash").as<uint64_t>(), 10u);
  EXPECT_EQ(s.at("token_ids").as<std::vector<int>>(), (std::vector<int>{1, 2}));
  EXPECT_EQ(s.at("block_size").as<int>(), 2);
  EXPECT_TRUE(s.at("lora_id").is_nil());
  EXPECT_EQ(Str(s.at("medium")), "GPU");
  EXPECT_TRUE(s.at("lora_name").is_nil());
  EXPECT_EQ(s.at("extra_keys").as<std::vector<std::vector<std::string>>>(),
            (std::vector<std::vector<std::string>>{{"group:g"}}));
  EXPECT_EQ(s.at("group_idx").as<int>(), 0);
  EXPECT_EQ(Str(s.at("kv_cache_spec_kind")), "full_attention");

  auto r = Fields(events[1]);
  ASSERT_EQ(r.size(), 4u);
  EXPECT_EQ(Str(r.at("type")), "BlockRemoved");
  EXPECT_EQ(r.at("block_hashes").as<std::vector<uint64_t>>(), std::vector<uint64_t>{11});
  EXPECT_EQ(Str(r.at("medium")), "GPU");
  EXPECT_EQ(r.at("group_idx").as<int>(), 0);

  auto c = Fields(events[2]);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(Str(c.at("type")), "AllBlocksCleared");
}

TEST(KvEventBatchTest, NilRankAndEmptyBatch) {
  KvEventBatch batch;
  batch.ts = 0.25;
  const std::string bytes = EncodeBatch(batch, "GPU");
  msgpack::object_handle h = msgpack::unpack(bytes.data(), bytes.size());
  std::vector<msgpack::object> top = Array(h.get());
  ASSERT_EQ(top.size(), 3u);
  EXPECT_TRUE(Array(top[1]).empty());
  EXPECT_TRUE(top[2].is_nil());
}

TEST(KvEventWireTest, SequenceNumbersAreEightBytesBigEndian) {
  EXPECT_EQ(EncodeSeq(0x0102030405060708LL), std::string("\x01\x02\x03\x04\x05\x06\x07\x08", 8));
  EXPECT_EQ(EncodeSeq(-1), std::string(8, '\xFF'));
  EXPECT_EQ(DecodeSeq(EncodeSeq(-1)), -1);
  EXPECT_EQ(DecodeSeq(EncodeSeq(123456789)), 123456789);
}

}  // namespace
}  // namespace llmux::events
