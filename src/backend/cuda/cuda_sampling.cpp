// CudaBackend::SampleTokens: the step's sync point when the engine samples on the device.
// Upload (pinned -> device, one copy), the sampling kernel in place on the logits, then the
// per-row records (device -> pinned, one copy) and one stream synchronisation.
#include <string>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "sampling.cuh"

namespace llmux::cuda {
namespace {

// Makes `buf` hold at least `bytes` (contents are not kept).
Status Reserve(std::unique_ptr<CudaBuffer>& buf, size_t bytes) {
  if (buf != nullptr && buf->bytes() >= bytes) return Status::Ok();
  buf.reset();
  LLMUX_ASSIGN_OR_RETURN(buf, CudaBuffer::Create(bytes));
  return Status::Ok();
}
Status Reserve(std::unique_ptr<PinnedBuffer>& buf, size_t bytes) {
  if (buf != nullptr && buf->bytes() >= bytes) return Status::Ok();
  buf.reset();
  LLMUX_ASSIGN_OR_RETURN(buf, PinnedBuffer::Create(bytes));
  return Status::Ok();
}

}  // namespace

Status CudaBackend::SampleTokens(Tensor logits, const SampleBatch& batch,
                                 std::vector<SampledToken>* out) {
  const size_t rows = batch.rows.size();
  if (logits.dtype != DType::kF32) return InvalidArgument("SampleTokens: logits must be F32");
  if (logits.rows != static_cast<int64_t>(rows)) {
    return InvalidArgument("SampleTokens: " + std::to_string(rows) + " rows for " +
                           std::to_string(logits.rows) + " logits rows");
  }
  out->resize(rows);
  if (rows == 0) return Status::Ok();
  LLMUX_RETURN_IF_ERROR(sampling_packer_.Pack(batch, static_cast<int32_t>(logits.cols)));
  graphs_.Flush();
  if (faults_.faulted()) return faults_.TakeStepStatus();

  const SamplingSections sec = sampling_packer_.sections();
  const size_t num_edits = sampling_packer_.edits().size();
  const size_t out_bytes = rows * sizeof(kernels::SampledRow);
  LLMUX_RETURN_IF_ERROR(Reserve(sampling_in_host_, sec.total));
  LLMUX_RETURN_IF_ERROR(Reserve(sampling_in_, sec.total));
  LLMUX_RETURN_IF_ERROR(Reserve(sampling_edit_raw_, 4 * (num_edits > 0 ? num_edits : 1)));
  LLMUX_RETURN_IF_ERROR(Reserve(sampling_out_, out_bytes));
  LLMUX_RETURN_IF_ERROR(Reserve(sampling_out_host_, out_bytes));
  // NOTE: the previous call synchronised before returning, so the pinned staging is free.
  auto* staged = static_cast<std::byte*>(sampling_in_host_->data());
  sampling_packer_.WriteTo(staged);

  auto* in = static_cast<char*>(sampling_in_->data());
  cudaError_t err =
      cudaMemcpyAsync(in, staged, sec.total, cudaMemcpyHostToDevice, stream_);
  if (err == cudaSuccess) {
    OpResult("Sample",
             kernels::LaunchSampling(
                 static_cast<float*>(logits.data), logits.stride, static_cast<int>(rows),
                 static_cast<int>(logits.cols),
                 reinterpret_cast<const kernels::SamplingRowParams*>(in + sec.rows),
                 reinterpret_cast<const kernels::LogitEdit*>(in + sec.edits),
                 reinterpret_cast<const float*>(in + sec.biases),
                 reinterpret_cast<const uint32_t*>(in + sec.masks),
                 sampling_edit_raw_->as<float>(), sampling_out_->as<kernels::SampledRow>(),
                 stream_));
    err = cudaMemcpyAsync(sampling_out_host_->data(), sampling_out_->data(), out_bytes,
                          cudaMemcpyDeviceToHost, stream_);
  }
  if (err == cudaSuccess) err = cudaStreamSynchronize(stream_);
  LLMUX_RETURN_IF_ERROR(StepStatus(err, "sampling"));

  const auto* rec = static_cast<const kernels::SampledRow*>(sampling_out_host_->data());
  for (size_t r = 0; r < rows; ++r) {
    SampledToken& t = (*out)[r];
    t.token = rec[r].token;
    t.logprob = rec[r].logprob;
    t.top.clear();
    for (int32_t j = 0; j < rec[r].num_top; ++j) {
      t.top.push_back({rec[r].top_tokens[j], rec[r].top_logprobs[j]});
    }
  }
  return Status::Ok();
}

}  // namespace llmux::cuda
