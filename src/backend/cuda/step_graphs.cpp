#include "backend/cuda/step_graphs.h"

namespace llmux::cuda {
namespace {

constexpr size_t kMaxSeen = 1024;

}  // namespace

StepGraphs::~StepGraphs() {
  if (recording_) Flush();
  Clear();
}

void StepGraphs::BeginRecording(uint64_t bucket) {
  LLMUX_CHECK(!recording_) << "previous step not flushed";
  recording_ = true;
  signature_.clear();
  launches_.clear();
  bucket_ = bucket;
  early_ = false;
  auto predicted = last_by_bucket_.find(bucket);
  if (predicted == last_by_bucket_.end()) return;
  cudaGraphExec_t* exec = graphs_.Find(predicted->second);
  if (exec == nullptr) return;
  const cudaError_t err = cudaGraphLaunch(*exec, stream_);
  if (err != cudaSuccess) return on_error_(err, "cudaGraphLaunch (early)");
  early_ = true;
  early_signature_ = predicted->second;
  ++early_launches_;
}

void StepGraphs::Enqueue(std::initializer_list<uint64_t> signature, Launch launch) {
  if (!recording_) {
    launch(stream_);
    return;
  }
  signature_.push_back(0x9e3779b97f4a7c15ull ^ signature.size());
  signature_.insert(signature_.end(), signature.begin(), signature.end());
  launches_.push_back(std::move(launch));
}

uint64_t StepGraphs::Hash(const std::vector<uint64_t>& words) {
  uint64_t h = 1469598103934665603ull;
  for (uint64_t w : words) {
    h ^= w + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h *= 1099511628211ull;
  }
  return h;
}

void StepGraphs::RunEagerly() {
  for (auto& l : launches_) l(stream_);
  launches_.clear();
}

void StepGraphs::Flush() {
  if (!recording_) return;
  recording_ = false;
  if (launches_.empty()) return;
  if (last_by_bucket_.size() >= kMaxSeen) last_by_bucket_.clear();
  last_by_bucket_[bucket_] = signature_;
  if (early_) {
    early_ = false;
    if (signature_ == early_signature_) {  // the early graph was this step
      launches_.clear();
      ++replays_;
      return;
    }
    ++early_misses_;  // it ran the wrong ops: the recorded ones follow and overwrite its output
  }
  if (cudaGraphExec_t* exec = graphs_.Find(signature_)) {
    launches_.clear();
    const cudaError_t err = cudaGraphLaunch(*exec, stream_);
    if (err != cudaSuccess) return on_error_(err, "cudaGraphLaunch");
    ++replays_;
    return;
  }
  const uint64_t key = Hash(signature_);
  int& seen = seen_[key];
  if (seen == 0) {
    // First sight: run eagerly (many shapes are seen once; capture is not
    // free).
    ++seen;
    RunEagerly();
    if (seen_.size() > kMaxSeen) seen_.clear();
    return;
  }
  cudaError_t err = cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal);
  if (err != cudaSuccess) {
    on_error_(err, "cudaStreamBeginCapture");
    launches_.clear();
    return;
  }
  RunEagerly();  // captured, not executed
  cudaGraph_t graph = nullptr;
  err = cudaStreamEndCapture(stream_, &graph);
  if (err != cudaSuccess) {
    if (graph != nullptr) cudaGraphDestroy(graph);
    return on_error_(err, "cudaStreamEndCapture");
  }
  cudaGraphExec_t exec = nullptr;
  err = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  if (err != cudaSuccess) return on_error_(err, "cudaGraphInstantiate");
  if (auto evicted = graphs_.Insert(signature_, exec)) {
    cudaGraphExecDestroy(evicted->second);
    ++evictions_;
  }
  ++captures_;
  err = cudaGraphLaunch(exec, stream_);
  if (err != cudaSuccess) return on_error_(err, "cudaGraphLaunch");
  ++replays_;
}

void StepGraphs::Clear() {
  graphs_.Clear([](cudaGraphExec_t exec) { cudaGraphExecDestroy(exec); });
  seen_.clear();
  last_by_bucket_.clear();
}

}  // namespace llmux::cuda
