#include "backend/cuda/step_graphs.h"

#include "backend/cuda/cuda_check.h"

namespace llmux::cuda {
namespace {

constexpr size_t kMaxGraphs = 64;
constexpr size_t kMaxSeen = 1024;

}  // namespace

StepGraphs::~StepGraphs() {
  if (recording_) Flush();
  Clear();
}

void StepGraphs::BeginRecording() {
  LLMUX_CHECK(!recording_) << "previous step not flushed";
  recording_ = true;
  signature_.clear();
  launches_.clear();
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

void StepGraphs::Flush() {
  if (!recording_) return;
  recording_ = false;
  if (launches_.empty()) return;
  const uint64_t key = Hash(signature_);
  auto range = graphs_.equal_range(key);
  for (auto it = range.first; it != range.second; ++it) {
    if (it->second.signature == signature_) {
      LLMUX_CUDA_CHECK(cudaGraphLaunch(it->second.exec, stream_));
      ++replays_;
      launches_.clear();
      return;
    }
  }
  int& seen = seen_[key];
  if (seen == 0) {
    // First sight: run eagerly (many shapes are seen once; capture is not free).
    ++seen;
    for (auto& l : launches_) l(stream_);
    launches_.clear();
    if (seen_.size() > kMaxSeen) seen_.clear();
    return;
  }
  if (graphs_.size() >= kMaxGraphs) Clear();
  cudaGraph_t graph = nullptr;
  LLMUX_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
  for (auto& l : launches_) l(stream_);
  LLMUX_CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
  cudaGraphExec_t exec = nullptr;
  const cudaError_t inst = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  LLMUX_CUDA_CHECK(inst);
  graphs_.emplace(key, Graph{signature_, exec});
  ++captures_;
  LLMUX_CUDA_CHECK(cudaGraphLaunch(exec, stream_));
  ++replays_;
  launches_.clear();
}

void StepGraphs::Clear() {
  for (auto& [key, g] : graphs_) cudaGraphExecDestroy(g.exec);
  graphs_.clear();
  seen_.clear();
}

}  // namespace llmux::cuda
