// GGUF parsing and validation on an in-memory image, then the Llama view of it (metadata ->
// ModelConfig, tensor renaming, attn_q/attn_k un-permutation). Invariants: no crash, no
// out-of-bounds read (ASan), a failure is a non-OK Status.
#include <cstddef>
#include <cstdint>
#include <span>

#include "model/gguf_llama.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file = llmux::GgufFile::FromBytes(
      std::span<const std::byte>(reinterpret_cast<const std::byte*>(data), size), "fuzz.gguf");
  if (file.ok()) {
    auto llama = llmux::GgufLlamaFromFile(std::move(file).value());
    (void)llama;
  }
  return 0;
}
