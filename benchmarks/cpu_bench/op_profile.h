// cpu_bench --op-profile: where a decode step's time goes, op by op.
//
// OpTimingBackend forwards every call to the real backend and times the step's ops (steady
// clock around each call; ~20 ns each). A step is the calls between BeginBatch and
// CopyToHostF32; the k-th op of every decode step is the same op on the same weight, so the
// report takes, per call index, the MINIMUM and the median over all recorded steps. Minima
// filter out the preemptions of a loaded machine (an op of a few microseconds is rarely
// interrupted in its best run). MatMul rows also give the weight bytes read and GB/s at the
// minimum. The "between ops" row is a step's time outside every op (from one op's return to the
// next op's call: the model's own code), min and median over the steps.
//
// Ops are grouped by kind (MatMul by weight shape and dtype), so a 30-layer model prints one
// row per kind. Thread ownership: the engine thread that owns the backend (as Backend).
#pragma once

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "common/forwarding_backend.h"

namespace llmux::bench {

class OpTimingBackend : public testing::ForwardingBackend {
 public:
  explicit OpTimingBackend(std::unique_ptr<Backend> inner)
      : ForwardingBackend(std::move(inner)) {}

  // Only steps begun while recording are kept (decode steps; not the prompt or warm-up).
  void set_recording(bool on) { recording_ = on; }
  // Prints the table to `out` and forgets the recorded steps.
  void Report(std::FILE* out);

  Status BeginBatch(const ForwardBatch& batch) override;
  Status CopyToHostF32(const Tensor& src, float* dst) override;
  void Embedding(const Tensor& table, Tensor out) override;
  void RmsNorm(const Tensor& x, const Tensor& w, float eps, Tensor out) override;
  void AddRmsNorm(Tensor r, const Tensor& x, const Tensor& w, float eps, Tensor out) override;
  void MatMul(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor out) override;
  void Rope(Tensor q, Tensor k, const Tensor& inv_freq) override;
  void WriteKv(int layer, const Tensor& k, const Tensor& v) override;
  void Attention(int layer, const Tensor& q, float scale, Tensor out) override;
  void SiluMul(const Tensor& g, const Tensor& u, Tensor out) override;
  void GatherLogitsRows(const Tensor& x, Tensor out) override;

 private:
  using Clock = std::chrono::steady_clock;
  struct Op {
    std::string label;  // "MatMul 960x576 f16", "Attention", ...
    double bytes = 0;   // weight bytes a MatMul reads
  };
  // Times fn() as the next op of the current step.
  template <class Fn>
  void Timed(const char* kind, const Tensor* w, Fn&& fn);

  bool recording_ = false;
  bool in_step_ = false;
  Clock::time_point step_start_;
  size_t op_index_ = 0;
  std::vector<Op> ops_;                    // [op index] of a step
  std::vector<std::vector<double>> secs_;  // [op index][step]
  std::vector<double> step_secs_;          // [step] BeginBatch .. CopyToHostF32
  // Time in a step outside every op: from one op's return to the next op's call (the model's
  // own code and the backend's call overhead).
  Clock::time_point last_return_;
  double between_s_ = 0;
  std::vector<double> between_secs_;  // [step]
};

}  // namespace llmux::bench
