// Streams one .safetensors file to disk: header first, then tensor data in header order,
// without holding more than the caller's current chunk in memory.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "llmux/dtype.h"
#include "llmux/status.h"

namespace llmux {

struct TensorHeader {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t nbytes() const;
};

// Single-threaded. Writes to PATH.tmp and renames to PATH on a successful Finish(), so a
// crashed or failed run never leaves a truncated file under the final name.
class SafetensorsWriter {
 public:
  // Writes the header for TENSORS (data laid out contiguously in this order; the header is
  // space-padded so data starts 8-byte aligned). Internal on I/O errors.
  static StatusOr<std::unique_ptr<SafetensorsWriter>> Create(
      const std::filesystem::path& path, const std::vector<TensorHeader>& tensors,
      const std::map<std::string, std::string>& metadata);
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  // Appends the next BYTES of tensor data. FailedPrecondition past the declared total.
  Status Append(std::span<const std::byte> bytes);
  // Checks that exactly the declared data was written, flushes, closes and renames.
  Status Finish();

 private:
  SafetensorsWriter(std::filesystem::path path, std::FILE* file, uint64_t data_bytes)
      : path_(std::move(path)), file_(file), data_bytes_(data_bytes) {}

  std::filesystem::path path_;
  std::FILE* file_;  // owned; null after Finish
  uint64_t data_bytes_;
  uint64_t written_ = 0;
  std::vector<char> buffer_;  // stdio buffer
};

}  // namespace llmux
