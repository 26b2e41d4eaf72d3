// Sequence-number frames of vLLM's KV-event protocol: 8 bytes, big-endian, signed (-1 ends a
// replay).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace llmux::events {

inline std::string EncodeSeq(int64_t seq) {
  std::string out(8, '\0');
  const uint64_t u = static_cast<uint64_t>(seq);
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((u >> (56 - 8 * i)) & 0xFF);
  return out;
}

// `bytes` must hold 8 bytes.
inline int64_t DecodeSeq(std::string_view bytes) {
  uint64_t u = 0;
  for (int i = 0; i < 8; ++i) u = (u << 8) | static_cast<unsigned char>(bytes[i]);
  return static_cast<int64_t>(u);
}

}  // namespace llmux::events
