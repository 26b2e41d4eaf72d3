// A batch of KV-cache events and its msgpack encoding in vLLM's wire format
// (vllm/distributed/kv_events.py, positional `array_like` structs; docs/kv_events.md).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "llmux/kv_events.h"

namespace llmux::events {

struct KvEvent {
  enum class Kind { kBlockStored, kBlockRemoved, kAllBlocksCleared };
  Kind kind = Kind::kAllBlocksCleared;
  // kBlockStored: one block (the KV manager reports blocks one at a time).
  KvBlockStored stored;
  // kBlockRemoved: hashes of removed blocks (consecutive removals are merged).
  std::vector<uint64_t> removed;
};

struct KvEventBatch {
  double ts = 0;  // seconds since the Unix epoch
  std::vector<KvEvent> events;
  std::optional<int32_t> data_parallel_rank;
};

// How events are laid out inside the (always positional) batch.
enum class KvEventFormat {
  kArray,  // msgspec array_like: ["BlockStored", ...] (vLLM before PR #42892)
  kMap,    // tagged maps: {"type": "BlockStored", "block_hashes": ...} (vLLM after it)
};

// Appends `event` to `batch`, merging a removal into a directly preceding removal.
void AppendEvent(KvEvent event, std::vector<KvEvent>* events);

// msgpack bytes of `batch`:
//   [ts, [event...], data_parallel_rank|nil]
//   ["BlockStored", [hash], parent_hash|nil, [token...], block_size, nil (lora_id), medium,
//    nil (lora_name), [[scope]] (extra_keys, one entry per block; nil entry when no scope)]
//   ["BlockRemoved", [hash...], medium]
//   ["AllBlocksCleared"]
// kMap: the same fields by name, with "type" for the tag, plus group_idx 0 and
// kv_cache_spec_kind "full_attention" on BlockStored (group_idx 0 on BlockRemoved), as vLLM
// 0.26 emits them.
// `medium` is "GPU" or "CPU" (vLLM's storage medium string).
std::string EncodeBatch(const KvEventBatch& batch, const std::string& medium,
                        KvEventFormat format = KvEventFormat::kArray);

}  // namespace llmux::events
