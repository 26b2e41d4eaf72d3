#include "events/kv_event_batch.h"

#include <msgpack.hpp>

namespace llmux::events {
namespace {

using Packer = msgpack::packer<msgpack::sbuffer>;

void PackString(Packer& pk, const std::string& s) {
  pk.pack_str(static_cast<uint32_t>(s.size()));
  pk.pack_str_body(s.data(), static_cast<uint32_t>(s.size()));
}

void PackStored(Packer& pk, const KvBlockStored& b, const std::string& medium) {
  pk.pack_array(9);
  PackString(pk, "BlockStored");
  pk.pack_array(1);
  pk.pack_uint64(b.block_hash);
  if (b.parent_block_hash) pk.pack_uint64(*b.parent_block_hash); else pk.pack_nil();
  pk.pack_array(static_cast<uint32_t>(b.token_ids.size()));
  for (int32_t t : b.token_ids) pk.pack_int32(t);
  pk.pack_int32(b.block_size);
  pk.pack_nil();  // lora_id
  PackString(pk, medium);
  pk.pack_nil();  // lora_name
  pk.pack_array(1);  // extra_keys: one entry per block hash
  if (b.scope.empty()) {
    pk.pack_nil();
  } else {
    pk.pack_array(1);
    PackString(pk, b.scope);
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

std::string EncodeBatch(const KvEventBatch& batch, const std::string& medium) {
  msgpack::sbuffer buf;
  Packer pk(&buf);
  pk.pack_array(3);
  pk.pack_double(batch.ts);
  pk.pack_array(static_cast<uint32_t>(batch.events.size()));
  for (const KvEvent& e : batch.events) {
    switch (e.kind) {
      case KvEvent::Kind::kBlockStored:
        PackStored(pk, e.stored, medium);
        break;
      case KvEvent::Kind::kBlockRemoved:
        pk.pack_array(3);
        PackString(pk, "BlockRemoved");
        pk.pack_array(static_cast<uint32_t>(e.removed.size()));
        for (uint64_t h : e.removed) pk.pack_uint64(h);
        PackString(pk, medium);
        break;
      case KvEvent::Kind::kAllBlocksCleared:
        pk.pack_array(1);
        PackString(pk, "AllBlocksCleared");
        break;
    }
  }
  if (batch.data_parallel_rank) pk.pack_int32(*batch.data_parallel_rank); else pk.pack_nil();
  return std::string(buf.data(), buf.size());
}

}  // namespace llmux::events
