// Publishes KV-cache events in vLLM's ZeroMQ wire format (docs/kv_events.md): a PUB socket
// sending [topic, 8-byte big-endian seq, msgpack batch] and an optional ROUTER socket replaying
// buffered batches from a requested sequence number.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "llmux/kv_events.h"
#include "llmux/status.h"

namespace llmux {

struct KvEventPublisherOptions {
  std::string endpoint;         // PUB socket, bound (e.g. "tcp://127.0.0.1:5557")
  std::string replay_endpoint;  // ROUTER socket, bound; empty disables replay
  std::string topic;            // first frame of every message (may be empty)
  int32_t buffer_batches = 10000;   // batches kept for replay
  int32_t max_queue_events = 100000;  // events waiting for the publisher thread; more are dropped
  std::string medium = "GPU";   // vLLM's storage medium string: "GPU" or "CPU"
  int32_t data_parallel_rank = 0;
  // Inner event layout: false = positional arrays (vLLM before PR #42892), true = tagged maps
  // (vLLM after it). The batch itself is positional either way.
  bool map_events = false;
};

// Binds the sockets and starts the publisher thread; destroying the sink flushes what is queued
// (bounded wait) and closes the sockets. The returned sink's On* methods never block on I/O.
StatusOr<std::shared_ptr<KvEventSink>> CreateKvEventPublisher(
    const KvEventPublisherOptions& options);

}  // namespace llmux
