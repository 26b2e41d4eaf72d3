// Inference pools (trust domains). Every pool is an Engine with its own scheduler, KV cache and
// copy of the model; a tenant is served only by the pool it names in tenants.yaml.
//
//  - isolation: thread  -> a local Engine with its own engine thread in the daemon.
//  - isolation: process -> a ProcessEngine: an Engine in the daemon that supervises a worker
//    process (`llmuxd --worker POOL --config FILE --socket-fd 3`) holding that pool's model
//    and KV cache, and talks to it over a private socketpair (pool/wire.h). A worker that dies
//    or stops answering health pings fails its in-flight requests with Unavailable ("pool X
//    worker died"), refuses new ones with Unavailable until it is back, and is restarted with
//    backoff (0.5 s doubling to 10 s). Other pools are untouched.
//
// docs/pools.md describes configuration and operations; docs/isolation.md the guarantees.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "llmux/chat_template.h"
#include "llmux/config.h"
#include "llmux/engine.h"
#include "llmux/status.h"
#include "llmux/tenant_policy.h"
#include "llmux/tokenizer.h"

namespace llmux {

// Chronological.
enum class PoolState {
  kStarting,    // the engine (or the first worker) is being created
  kReady,       // serving
  kRestarting,  // the worker died or hung; a new one is being started (after backoff)
  kStopped,     // Stop() was called
};
std::string_view PoolStateName(PoolState state);  // "starting" | "ready" | ...

// A snapshot for GET /admin/pools and for pool-labelled metrics.
struct PoolStatus {
  std::string name;
  PoolIsolation isolation = PoolIsolation::kThread;
  PoolState state = PoolState::kStarting;
  int64_t pid = 0;          // the worker's pid (process pools; 0 while none runs), else the daemon's
  int32_t restarts = 0;     // workers started after the first
  int32_t worker_deaths = 0;  // workers that died or were killed for not answering
  std::string model;        // served model id
  std::string last_error;   // why the last worker ended ("" when none did)
  EngineStats stats;        // the pool engine's figures (the worker's, last health ping)
  // How long the pool has not been ready (starting or restarting); 0 while ready.
  int64_t down_ms = 0;
};

// OK when `model.path` is an existing folder with a config.json; otherwise NotFound /
// InvalidArgument naming `model.path`, where it was set (path_origin) and what is wrong.
Status CheckModelFolder(const ModelSection& model);

// The scheduler limits a tenant's policy gives it inside its pool's engine.
TenantLimits TenantLimitsOf(const TenantConfig& tenant);

// FailedPrecondition when a tenant names a pool the server does not define, or when the
// reservations of a pool's tenants exceed that pool's engine (kv_cache_tokens, max_seqs). The
// daemon runs it at start and before installing a reloaded tenants.yaml.
Status CheckPolicyFitsPools(const TenantPolicy& policy, const ServerConfig& config);

struct PoolSetOptions {
  // The executable started as `EXE --worker POOL --config FILE --socket-fd 3 [--model DIR]`
  // for process pools (normally /proc/self/exe) and the config file it reads.
  std::string worker_executable;
  std::string config_path;
  std::string model_override;  // --model DIR given to the daemon ("" = none)
};

// The served model id of a pool: model.name, else the model folder's name
// ("/models/tiny/" -> "tiny").
std::string ServedModelName(const ModelSection& model);

// One pool: its engine plus what the HTTP layer needs to tokenize for it.
class Pool {
 public:
  virtual ~Pool() = default;
  virtual const PoolSection& config() const = 0;
  const std::string& name() const { return config().name; }
  // Never null; owned by the pool. Any thread (Engine's own rules).
  virtual Engine* engine() = 0;
  virtual const Tokenizer& tokenizer() const = 0;
  virtual const ChatTemplate& chat_template() const = 0;
  virtual const std::string& model_name() const = 0;
  virtual int32_t max_model_len() const = 0;
  // Any thread.
  virtual PoolStatus Describe() const = 0;
};

// Every pool of a server, built from ServerConfig::pools. Thread-safe after Create.
class PoolSet {
 public:
  virtual ~PoolSet() = default;

  // Loads each pool's tokenizer and chat template, creates thread pools' engines (model
  // loaded here) and starts process pools' workers (Create returns once every worker is
  // ready or has failed its first start: a worker that cannot load fails Create). `lanes` are
  // the tenants file's lanes (fixed for the daemon's life).
  static StatusOr<std::unique_ptr<PoolSet>> Create(const ServerConfig& config,
                                                   const std::vector<Lane>& lanes,
                                                   const PoolSetOptions& options);

  // nullptr for an unknown name.
  virtual Pool* Find(const std::string& name) = 0;
  virtual std::vector<Pool*> pools() = 0;
  // Registers (or updates) each tenant in its own pool's engine only: a tenant of a dedicated
  // pool is never known to the shared pool's engine. Returns the first error.
  virtual Status ApplyPolicy(const TenantPolicy& policy) = 0;
  // Stops every engine (and worker). Unfinished requests end with Unavailable.
  virtual void Stop() = 0;
};

// A pool's GEMM choices (EngineStats::gemm_choices) as JSON, one object per weight shape: what
// the worker wire carries and GET /admin/pools shows (docs/pools.md).
nlohmann::json GemmChoicesJson(const std::vector<GemmChoice>& choices);

// A pool's `cpu_bf16_activations` in GET /admin/pools (docs/pools.md), for a pool whose
// engine.cpu_bf16_activations is `configured`: what its backend runs
// (EngineStats::cpu_bf16_activations), or `configured` where the backend reports nothing (the
// CUDA backend, which ignores the key; a process pool before its worker's first ping). When
// the two differ (`bf16` asked for on a CPU without AVX-512 BF16) the object also has
// `cpu_bf16_activations_configured`: {"cpu_bf16_activations": "f32",
// "cpu_bf16_activations_configured": "bf16"}.
nlohmann::json CpuBf16ActivationsJson(Bf16Activations configured, const EngineStats& stats);

struct PoolWorkerArgs {
  std::string pool;
  std::string config_path;
  std::string model_override;
  int socket_fd = -1;
};

// The worker process's main: loads the pool's model and engine, serves the daemon over
// `socket_fd` until it closes. Returns the process exit code.
int RunPoolWorker(const PoolWorkerArgs& args);

}  // namespace llmux
