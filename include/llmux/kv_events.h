// KV-cache events: what the prefix cache stores, evicts and clears, for prefix-aware routers.
//
// The KV manager reports changes to a KvEventSink on the engine thread. The sink is a plain
// observer (no sockets here): kv/ and engine/ stay free of ZeroMQ. An implementation must never
// block the caller; the events module's publisher copies into a bounded queue and drops (and
// counts) when it is full. docs/kv_events.md describes the wire format built from these.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace llmux {

// One block that became cached: a full block registered in the prefix cache.
struct KvBlockStored {
  uint64_t block_hash = 0;
  std::optional<uint64_t> parent_block_hash;  // none for a chain's first block
  std::vector<int32_t> token_ids;             // the block's block_size tokens
  int32_t block_size = 0;
  // The sharing scope whose seed started the chain: "tenant:NAME" or "group:NAME" (never a key).
  std::string scope;
};

// Counters a sink keeps (monotonic since it was created).
struct KvEventCounters {
  int64_t published = 0;  // events handed to subscribers
  int64_t dropped = 0;    // events dropped because the queue was full
};

class KvEventSink {
 public:
  virtual ~KvEventSink() = default;
  // Blocks that became cached, in registration order (a parent before its children).
  virtual void OnBlocksStored(std::vector<KvBlockStored> blocks) = 0;
  // Hashes of cached blocks that were evicted or dropped from the cache.
  virtual void OnBlocksRemoved(std::vector<uint64_t> block_hashes) = 0;
  // Every cached block is gone (the cache is empty).
  virtual void OnAllCleared() = 0;
  // Thread-safe.
  virtual KvEventCounters Counters() const = 0;
};

}  // namespace llmux
