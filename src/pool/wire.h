// The daemon <-> pool worker protocol over a private socketpair (one per worker).
//
// Frame: a 4-byte little-endian payload length, then a JSON object (at most kMaxFrameBytes).
// Every message has "t" (its type):
//   daemon -> worker: init {lanes:[{name,max_wait}]}, upsert {tenant, limits}, submit {request},
//                     abort {id}, ping {seq}
//   worker -> daemon: ready {pid}, output {output}, pong {seq, stats}
// A request the worker's engine refuses at Submit comes back as an `output` final event with
// its error. Either side closing the socket ends the session.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "llmux/engine.h"
#include "llmux/scheduler.h"
#include "llmux/status.h"
#include "llmux/thread_annotations.h"

namespace llmux::pool {

inline constexpr uint32_t kMaxFrameBytes = 64u << 20;

// Writes one frame; the whole frame or an error (Unavailable when the peer is gone or a write
// times out). Thread-safe: frames from concurrent callers never interleave.
class FrameWriter {
 public:
  explicit FrameWriter(int fd) : fd_(fd) {}
  Status Write(const nlohmann::json& message);

 private:
  const int fd_;  // not owned
  Mutex mutex_;
};

// Reads one frame (blocking). nullopt on EOF, a read error or a malformed frame (the session
// is over either way). One reader thread per fd.
std::optional<nlohmann::json> ReadFrame(int fd);

nlohmann::json EncodeSampling(const SamplingParams& p);
SamplingParams DecodeSampling(const nlohmann::json& j);
nlohmann::json EncodeRequest(const EngineRequest& r);
EngineRequest DecodeRequest(const nlohmann::json& j);
nlohmann::json EncodeOutput(const EngineOutput& o);
EngineOutput DecodeOutput(const nlohmann::json& j);
nlohmann::json EncodeLimits(const TenantLimits& l);
TenantLimits DecodeLimits(const nlohmann::json& j);
// EngineStats::gemm_choices back from GemmChoicesJson (llmux/pool.h).
std::vector<GemmChoice> DecodeGemmChoices(const nlohmann::json& j);
nlohmann::json EncodeStats(const EngineStats& s);
EngineStats DecodeStats(const nlohmann::json& j);
// A worker's per-tenant figures, sent with each pong: {"<tenant>": {...}}.
nlohmann::json EncodeTenantStats(const std::map<std::string, TenantStats>& stats);
std::map<std::string, TenantStats> DecodeTenantStats(const nlohmann::json& j);

}  // namespace llmux::pool
