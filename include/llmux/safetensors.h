// Read-only access to .safetensors files (single or sharded), memory-mapped.
//
// Files are untrusted input: the header is validated completely (length cap, JSON shape,
// dtype, shape x dtype size == byte length without overflow, offsets inside the data region,
// no overlaps) before any tensor is exposed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "llmux/dtype.h"
#include "llmux/host_tensor.h"
#include "llmux/status.h"

namespace llmux {

// Largest accepted JSON header (bytes). Real headers are well under 1 MiB.
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100ull << 20;

class SafetensorsFile {
 public:
  virtual ~SafetensorsFile() = default;

  // Maps and validates PATH. Errors (NotFound, DataLoss, InvalidArgument) name the file and,
  // where one is at fault, the tensor.
  static StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::filesystem::path& path);

  // Validates an in-memory image (tests, fuzzing). The bytes must outlive the result.
  static StatusOr<std::unique_ptr<SafetensorsFile>> FromBytes(std::span<const std::byte> bytes,
                                                             std::string source_name);

  virtual const std::vector<HostTensor>& tensors() const = 0;
  // nullptr when absent.
  virtual const HostTensor* Find(std::string_view name) const = 0;
};

// All tensors of a model directory: model.safetensors, or the shards that
// model.safetensors.index.json names. A tensor name present in two shards is an error.
class WeightStore {
 public:
  virtual ~WeightStore() = default;
  static StatusOr<std::unique_ptr<WeightStore>> Open(const std::filesystem::path& model_dir);
  virtual const HostTensor* Find(std::string_view name) const = 0;
  virtual std::vector<std::string> Names() const = 0;
};

}  // namespace llmux
