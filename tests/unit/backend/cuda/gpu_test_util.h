// Shared helpers for the CUDA backend tests: backend creation (skipping visibly without a
// device), and bf16/f32 tensors moved between host vectors and backend memory. Test files
// put their GPU tests under #ifdef LLMUX_HAVE_CUDA and a visible skip otherwise.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "llmux/backend.h"
#include "llmux/dtype.h"

#ifdef LLMUX_HAVE_CUDA
#include "backend/cuda/cuda_access.h"

namespace llmux::cuda::testing {

// nullptr when no CUDA device is usable.
inline std::unique_ptr<Backend> MakeCuda(CudaBackendOptions options = {}) {
  auto b = CreateCudaBackend(options);
  if (!b.ok()) return nullptr;
  return std::move(b).value();
}

// Owns device buffers for a test and moves values in and out of them.
class DeviceTensors {
 public:
  explicit DeviceTensors(Backend* b) : b_(b) {}

  // A dense [rows, cols] tensor of `dtype` with `pad` extra columns of stride.
  Tensor Make(DType dtype, int64_t rows, int64_t cols, int64_t pad = 0) {
    auto buf = b_->Allocate(static_cast<size_t>(rows) * (cols + pad) * DTypeSize(dtype));
    EXPECT_TRUE(buf.ok()) << buf.status().ToString();
    Tensor t{(*buf)->data(), dtype, rows, cols, cols + pad};
    bufs_.push_back(std::move(buf).value());
    return t;
  }
  // Uploads `values` (rounded to bf16 when dtype is BF16).
  Tensor Upload(const std::vector<float>& values, DType dtype, int64_t rows, int64_t cols,
                int64_t pad = 0) {
    Tensor t = Make(dtype, rows, cols, pad);
    Set(t, values);
    return t;
  }
  void Set(const Tensor& t, const std::vector<float>& values) {
    EXPECT_EQ(static_cast<int64_t>(values.size()), t.rows * t.cols);
    Status st;
    if (t.dtype == DType::kBF16) {
      std::vector<uint16_t> h(values.size());
      for (size_t i = 0; i < h.size(); ++i) h[i] = FloatToBf16(values[i]);
      st = CopyTensorFromHost(*b_, t, h.data());
    } else {
      st = CopyTensorFromHost(*b_, t, values.data());
    }
    EXPECT_TRUE(st.ok()) << st.ToString();
  }
  std::vector<float> Get(const Tensor& t) {
    std::vector<float> out(static_cast<size_t>(t.rows * t.cols));
    Status st;
    if (t.dtype == DType::kBF16) {
      std::vector<uint16_t> h(out.size());
      st = CopyTensorToHost(*b_, t, h.data());
      for (size_t i = 0; i < h.size(); ++i) out[i] = Bf16ToFloat(h[i]);
    } else {
      st = CopyTensorToHost(*b_, t, out.data());
    }
    EXPECT_TRUE(st.ok()) << st.ToString();
    return out;
  }

 private:
  Backend* b_;
  std::vector<std::unique_ptr<DeviceBuffer>> bufs_;
};

// Relative-or-absolute closeness: |a - b| <= atol + rtol * |b|.
inline void ExpectClose(const std::vector<float>& got, const std::vector<float>& want, float rtol,
                        float atol, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_LE(std::abs(got[i] - want[i]), atol + rtol * std::abs(want[i]))
        << what << " at element " << i << ": got " << got[i] << ", want " << want[i];
  }
}

}  // namespace llmux::cuda::testing

#define LLMUX_CUDA_BACKEND_OR_SKIP(var, ...)                            \
  auto var = ::llmux::cuda::testing::MakeCuda(__VA_ARGS__);             \
  if (var == nullptr) GTEST_SKIP() << "SKIPPED: no CUDA device"

#endif  // LLMUX_HAVE_CUDA
