// CUDA graphs for decode steps, captured from inside the Backend interface.
//
// The forward pass issues ops one by one; the backend cannot see a whole step in advance. So
// during a graph-eligible step (decode only, batch size <= kMaxGraphBatch) each op is not
// launched but recorded: a closure that enqueues it, plus a signature of everything the
// launch depends on that is not read from device memory (op kind, every pointer, every shape
// and scalar argument). At the step's sync point (CopyToHostF32 and the other flush points)
// the recorded ops are replayed from a graph with the same signature when one exists; on the
// second sight of a signature the closures run under stream capture and the graph is kept;
// otherwise they run eagerly. Metadata (token ids, positions, slots, block tables) lives in
// persistent device buffers (BatchMetadata) that BeginBatch refills outside the graph, so one
// graph serves every step with the same shapes.
//
// Early launch: a step's bucket (its batch shape: tokens, sequences, logits rows, block-table
// stride, attention grid depth, metadata generation) is known at BeginBatch, before any op is
// called. When the last step of the same bucket ended with a cached graph, that graph is
// launched at once (BeginRecording), so the device runs the step while the host is still
// walking the forward pass and preparing sampling. At the flush the recorded signature is
// compared with the launched graph's: equal, nothing more is launched; different (a rare
// change of the op sequence under the same shape), the recorded ops then run by the rules
// above. NOTE: that is safe because a step graph writes only the step's activations and the
// KV slots of the step's own tokens (slot_mapping), all of which the correct ops, run after it
// on the same stream, overwrite.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <vector>

#include "backend/cuda/lru_cache.h"
#include "backend/cuda/step_bucket.h"
#include "llmux/status.h"

namespace llmux::cuda {

inline constexpr int kMaxGraphBatch = 256;
// Graphs kept at once (each holds its kernels' parameters; a few hundred KB of host and device
// memory for a 32-layer model).
inline constexpr size_t kMaxGraphs = 64;

class StepGraphs {
 public:
  using Launch = std::function<void(cudaStream_t)>;
  // Receives each failed graph call (capture, instantiation, launch) with what failed.
  using ErrorSink = std::function<void(cudaError_t, const char* what)>;

  StepGraphs(cudaStream_t stream, ErrorSink on_error)
      : stream_(stream), on_error_(std::move(on_error)) {}
  ~StepGraphs();
  StepGraphs(const StepGraphs&) = delete;
  StepGraphs& operator=(const StepGraphs&) = delete;

  // Starts recording a graph-eligible step of bucket `bucket` (a hash of its batch shape), and
  // launches the bucket's predicted graph early when there is one. Any previous recording must
  // have been flushed.
  void BeginRecording(uint64_t bucket);
  bool recording() const { return recording_; }

  // Records `launch` with its signature words while recording; otherwise runs it now.
  void Enqueue(std::initializer_list<uint64_t> signature, Launch launch);

  // Ends the recording (if any): replays, captures or runs the recorded ops. A failed graph
  // call goes to the error sink and the step's remaining work is dropped (the step fails at
  // its sync point).
  void Flush();

  // Drops every graph (metadata buffers moved, or the KV pool changed). At most kMaxGraphs
  // graphs are kept; capturing one more evicts the least recently launched.
  void Clear();

  // Counters for tests and benchmarks.
  int64_t replays() const { return replays_; }
  int64_t captures() const { return captures_; }
  int64_t evictions() const { return evictions_; }
  int64_t early_launches() const { return early_launches_; }
  int64_t early_misses() const { return early_misses_; }  // early graphs that were wrong
  size_t size() const { return graphs_.size(); }

 private:
  struct SignatureHash {
    size_t operator()(const std::vector<uint64_t>& words) const { return Hash(words); }
  };
  static uint64_t Hash(const std::vector<uint64_t>& words);
  void RunEagerly();

  cudaStream_t stream_;
  ErrorSink on_error_;
  bool recording_ = false;
  std::vector<uint64_t> signature_;
  std::vector<Launch> launches_;
  // Exact signature -> instantiated graph; the least recently launched one goes when full.
  LruCache<std::vector<uint64_t>, cudaGraphExec_t, SignatureHash> graphs_{kMaxGraphs};
  std::map<uint64_t, int> seen_;  // signature hash -> eager runs so far
  // Bucket -> the signature its last recorded step had (the early-launch prediction).
  std::map<uint64_t, std::vector<uint64_t>> last_by_bucket_;
  uint64_t bucket_ = 0;
  bool early_ = false;                 // a graph was launched at BeginRecording
  std::vector<uint64_t> early_signature_;
  int64_t early_launches_ = 0;
  int64_t early_misses_ = 0;
  int64_t replays_ = 0;
  int64_t captures_ = 0;
  int64_t evictions_ = 0;
};

}  // namespace llmux::cuda
