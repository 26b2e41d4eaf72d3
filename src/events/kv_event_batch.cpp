#include "events/kv_event_batch.h"

#include <msgpack.hpp>

namespace llmux::events {
namespace {

using Packer = msgpack::packer<msgpack::sbuffer>;

void PackString(Packer& pk, const std::string& s) {
  pk.pack_str(static_cast<uint32_t>(s.size()));
  pk.pack_str_body(s.data(), static_cast<uint32_t>(s.size()));
}

// A field name in map form; nothing in array form.
void Key(Packer& pk, KvEventFormat format, const char* name) {
  if (format == KvEventFormat::kMap) PackString(pk, name);
}

void PackStored(Packer& pk, const KvBlockStored& b, const std::string& medium,
                KvEventFormat format) {
  const bool map = format == KvEventFormat::kMap;
  if (map) {
    pk.pack_map(11);
    PackString(pk, "type");
  } else {
    pk.pack_array(9);
  }
  PackString(pk, "BlockStored");
  Key(pk, format, "block_hashes");
  pk.pack_array(1);
  pk.pack_uint64(b.block_hash);
  Key(pk, format, "parent_block_hash");
  if (b.parent_block_hash) pk.pack_uint64(*b.parent_block_hash); else pk.pack_nil();
  Key(pk, format, "token_ids");
  pk.pack_array(static_cast<uint32_t>(b.token_ids.size()));
  for (int32_t t : b.token_ids) pk.pack_int32(t);
  Key(pk, format, "block_size");
  pk.pack_int32(b.block_size);
  Key(pk, format, "lora_id");
  pk.pack_nil();
  Key(pk, format, "medium");
  PackString(pk, medium);
  Key(pk, format, "lora_name");
  pk.pack_nil();
  Key(pk, format, "extra_keys");
  pk.pack_array(1);  // one entry per block hash
  if (b.scope.empty()) {
    pk.pack_nil();
  } else {
    pk.pack_array(1);
    PackString(pk, b.scope);
  }
  if (map) {
    PackString(pk, "group_idx");
    pk.pack_int32(0);
    PackString(pk, "kv_cache_spec_kind");
    PackString(pk, "full_attention");
  }
}

}  // namespace

void AppendEvent(KvEvent event, std::vector<KvEvent>* events) {
  if (event.kind == KvEvent::Kind::kBlockRemoved && !events->empty() &&
      events->back().kind == KvEvent::Kind::kBlockRemoved) {
    auto& into = events->back().removed;
    into.insert(into.end(), event.removed.begin(), event.removed.end());
    return;
  }
  events->push_back(std::move(event));
}

std::string EncodeBatch(const KvEventBatch& batch, const std::string& medium,
                        KvEventFormat format) {
  const bool map = format == KvEventFormat::kMap;
  msgpack::sbuffer buf;
  Packer pk(&buf);
  pk.pack_array(3);
  pk.pack_double(batch.ts);
  pk.pack_array(static_cast<uint32_t>(batch.events.size()));
  for (const KvEvent& e : batch.events) {
    switch (e.kind) {
      case KvEvent::Kind::kBlockStored:
        PackStored(pk, e.stored, medium, format);
        break;
      case KvEvent::Kind::kBlockRemoved:
        if (map) {
          pk.pack_map(4);
          PackString(pk, "type");
        } else {
          pk.pack_array(3);
        }
        PackString(pk, "BlockRemoved");
        Key(pk, format, "block_hashes");
        pk.pack_array(static_cast<uint32_t>(e.removed.size()));
        for (uint64_t h : e.removed) pk.pack_uint64(h);
        Key(pk, format, "medium");
        PackString(pk, medium);
        if (map) {
          PackString(pk, "group_idx");
          pk.pack_int32(0);
        }
        break;
      case KvEvent::Kind::kAllBlocksCleared:
        if (map) {
          pk.pack_map(1);
          PackString(pk, "type");
        } else {
          pk.pack_array(1);
        }
        PackString(pk, "AllBlocksCleared");
        break;
    }
  }
  if (batch.data_parallel_rank) pk.pack_int32(*batch.data_parallel_rank); else pk.pack_nil();
  return std::string(buf.data(), buf.size());
}

}  // namespace llmux::events
