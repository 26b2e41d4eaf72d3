// Validating reader for GGUF files (llama.cpp's model format), versions 2 and 3:
//   "GGUF" u32 version, u64 tensor_count, u64 kv_count,
//   kv_count x {string key, u32 type, value}, tensor_count x {string name, u32 n_dims,
//   u64 ne[n_dims], u32 ggml_type, u64 offset}, padding to general.alignment, tensor data.
// Strings are {u64 length, bytes}; all numbers little-endian.
//
// Files are untrusted input: every read is bounds-checked against the file, counts and lengths
// are capped by the bytes that remain, dimension products and byte sizes are overflow-checked,
// and tensor data must lie inside the data region, aligned, without overlaps, before any tensor
// is exposed. Tensors of a type the backends cannot read (anything but F32, F16, BF16, Q8_0)
// are rejected naming the tensor and the type.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "llmux/host_tensor.h"
#include "llmux/status.h"

namespace llmux {

class MappedFile;

// Largest accepted string (keys, values, tensor names) and dimension count.
inline constexpr uint64_t kMaxGgufStringBytes = 1ull << 20;
inline constexpr uint32_t kMaxGgufDims = 4;

class GgufFile {
 public:
  // An array value: its element type (a GGUF value type id) and length. The elements are
  // validated but not kept (the Llama loader needs only the length of tokenizer arrays).
  struct Array {
    uint32_t type = 0;
    uint64_t length = 0;
  };
  using Value = std::variant<uint64_t, int64_t, double, bool, std::string, Array>;

  // Maps and validates PATH. NotFound / DataLoss / InvalidArgument naming the file and, where
  // one is at fault, the key or tensor.
  static StatusOr<std::unique_ptr<GgufFile>> Open(const std::filesystem::path& path);
  // Validates an in-memory image (tests, fuzzing). The bytes must outlive the result.
  static StatusOr<std::unique_ptr<GgufFile>> FromBytes(std::span<const std::byte> bytes,
                                                       std::string source_name);
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& source() const { return source_; }
  uint32_t version() const { return version_; }
  // nullptr when absent.
  const Value* Get(const std::string& key) const;
  // Tensors in file order; shape outermost first ([ne1, ne0] for a matrix, as safetensors).
  const std::vector<HostTensor>& tensors() const { return tensors_; }
  const HostTensor* Find(const std::string& name) const;

 private:
  GgufFile() = default;
  static StatusOr<std::unique_ptr<GgufFile>> Parse(std::span<const std::byte> bytes,
                                                   std::string source);

  std::unique_ptr<MappedFile> mapping_;  // null for FromBytes
  std::string source_;
  uint32_t version_ = 0;
  std::map<std::string, Value> metadata_;
  std::vector<HostTensor> tensors_;
  std::map<std::string, size_t> index_;
};

}  // namespace llmux
