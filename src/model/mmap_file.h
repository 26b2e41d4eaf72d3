// A read-only, private memory mapping of a whole file.
#pragma once

#include <cstddef>
#include <filesystem>
#include <memory>
#include <span>

#include "llmux/status.h"

namespace llmux {

// Owns a PROT_READ/MAP_PRIVATE mapping; unmapped on destruction. Not copyable.
//
// NOTE: a mapped file that another process truncates afterwards raises SIGBUS on access to
// the lost pages; model files are expected to stay unchanged while the server runs.
class MappedFile {
 public:
  // Maps PATH. NotFound when it does not exist, InvalidArgument when it is not a regular
  // file, Internal when open/mmap fail otherwise. An empty file maps to an empty span.
  static StatusOr<std::unique_ptr<MappedFile>> Open(const std::filesystem::path& path);

  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::span<const std::byte> bytes() const { return {data_, size_}; }

 private:
  MappedFile(const std::byte* data, size_t size) : data_(data), size_(size) {}

  const std::byte* data_;
  size_t size_;
};

}  // namespace llmux
