// safetensors header parsing and validation on an in-memory image. Invariants: no crash, no
// out-of-bounds read (ASan), a failure is a non-OK Status.
#include <cstddef>
#include <cstdint>
#include <span>

#include "llmux/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file = llmux::SafetensorsFile::FromBytes(
      std::span<const std::byte>(reinterpret_cast<const std::byte*>(data), size), "fuzz.safetensors");
  (void)file;
  return 0;
}
