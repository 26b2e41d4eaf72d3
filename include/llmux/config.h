// The server configuration (llmux.yaml): plain values, immutable once loaded.
//
// Every key, its default and its unit is documented in docs/configuration.md. Loading rejects
// unknown keys, wrong types and out-of-range values with "FILE:LINE:COLUMN: KEY: message", so a
// typo never silently becomes a default.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "llmux/ip_network.h"
#include "llmux/status.h"

namespace llmux {

// SHA-256 digest of an API key. Keys themselves are never stored.
using KeyHash = std::array<std::uint8_t, 32>;

// Durations are kept in milliseconds ("250ms", "30s", "5m", "1h" in the files).
using Millis = std::chrono::milliseconds;

struct AdminKey {
  KeyHash sha256{};
};

struct ServerSection {
  std::string listen = "127.0.0.1:8080";  // "HOST:PORT" or "[IPV6]:PORT"
  int io_threads = 2;
  // The front door's planning pool (parse, chat template, tokenize; docs/isolation.md): its
  // workers, and the requests one lane may have waiting there before more get 503.
  int planning_threads = 1;
  int planning_queue = 256;
  // Every this-many-th planning pick takes the oldest waiting call of any lane, so a lower lane
  // is never starved by a higher one; 0 = strict lane priority.
  int planning_oldest_every = 8;
  std::int64_t max_body_bytes = 4194304;
  std::int64_t max_header_bytes = 16384;
  Millis read_timeout{30000};
  Millis idle_timeout{60000};
  // A response write that makes no progress this long closes the connection.
  Millis write_timeout{30000};
  // A stream whose unsent output exceeds this (the client stopped reading) is closed and its
  // request aborted.
  std::int64_t max_stream_queue_bytes = 1048576;
  // SIGTERM -> exit: /ready answers 503 at once; requests that still arrive during
  // `drain_grace` are served (with `Connection: close`) while load balancers notice; after it,
  // idle connections close and new requests get 503 `draining`; in-flight calls finish until
  // `drain_timeout` (counted from SIGTERM, grace included) ends them. drain_grace <= drain_timeout.
  Millis drain_timeout{30000};
  Millis drain_grace{5000};
  // Peers whose X-Forwarded-For / Forwarded headers are believed (load balancers, gateways).
  // A request from one of them is attributed to the rightmost address in those headers that is
  // not itself trusted; from any other peer the headers are ignored. Empty = trust none.
  std::vector<IpNetwork> trusted_proxies;
  // Which header the trusted proxies set: X-Forwarded-For (HAProxy `option forwardfor`, nginx
  // `proxy_add_x_forwarded_for`, Envoy) or the standard Forwarded (RFC 7239). Only that one is
  // read: a client could send the other, and a proxy that does not set it would pass it through.
  enum class ForwardedHeader { kXForwardedFor, kForwarded };
  ForwardedHeader forwarded_header = ForwardedHeader::kXForwardedFor;
  // e.g. "X-Tenant-ID": a request from a trusted proxy carrying this header is served as that
  // tenant without an API key (the gateway authenticated it); from any other peer the header
  // is refused with 401. "" = off.
  std::string tenant_header;
  int max_connections = 1024;
  int max_n = 8;               // largest `n` a request may ask for
  int max_stop_strings = 8;    // most `stop` strings per request
  // Failed authentications one client address may make per minute before it gets 429; 0 = no
  // throttling.
  int max_auth_failures_per_minute = 20;
  std::string metrics_listen;  // "" = /metrics only on `listen`, behind an admin key
  Millis health_stall_timeout{30000};
  std::vector<AdminKey> admin_api_keys;
};

struct ChatTemplateSource {
  enum class Kind { kModel, kBuiltin, kFile };
  Kind kind = Kind::kModel;
  // kBuiltin: the builtin's name ("chatml"); kFile: an absolute path; kModel: empty.
  std::string value;
};

struct ModelSection {
  std::filesystem::path path;  // absolute; empty = none given (the daemon picks its default)
  std::string path_origin;     // where `path` was set ("llmux.yaml:12:9", "--model"), for messages
  std::string name;            // served model id; "" in the file = last component of `path`
  int max_model_len = 0;       // 0 = the model's own max_position_embeddings
  ChatTemplateSource chat_template;
  // `quantize`: "none" (default: weights as stored) or "q8_0" (projection and embedding
  // matrices quantized to Q8_0 at load; docs/models.md).
  bool quantize_q8_0 = false;
};

enum class BackendKind { kCpu, kCuda };
enum class KvDType { kBackendDefault, kF32, kF16, kBF16 };
std::string_view KvDTypeName(KvDType dtype);  // "default" | "f32" | "f16" | "bf16"
// `engine.cpu_bf16_activations`: what MatMuls on BF16 weights round activations to on the CPU
// backend (CpuBf16Activations, docs/cpu_backend.md).
enum class Bf16Activations { kBf16, kF32 };
std::string_view Bf16ActivationsName(Bf16Activations mode);  // "bf16" | "f32"
enum class EngineBatching { kContinuous, kStatic };

std::string_view BackendKindName(BackendKind kind);    // "cpu" | "cuda"
std::string_view EngineBatchingName(EngineBatching mode);  // "continuous" | "static"

// `engine.kv_events`: publish KV-cache events in vLLM's ZeroMQ format (docs/kv_events.md).
// Off when the key is absent.
struct KvEventsSection {
  bool enabled = false;
  std::string endpoint;         // PUB socket, bound
  std::string replay_endpoint;  // ROUTER socket for replay, bound; empty = no replay
  std::string topic;            // first frame of every message
  int buffer_batches = 10000;   // batches kept for replay
  int max_queue_events = 100000;  // events waiting to be published; beyond it they are dropped
  bool map_events = false;  // format: "map" (vLLM after PR #42892) instead of "array"
};

struct EngineSection {
  BackendKind backend = BackendKind::kCpu;
  int threads = 2;                       // CPU backend worker threads
  std::vector<int> devices = {0};        // CUDA device ordinals
  std::int64_t kv_cache_tokens = 65536;  // KV pool capacity in tokens
  // `kv_dtype`: element type of the KV cache. kBackendDefault = the backend's own (cpu: f32,
  // cuda: bf16). The CPU backend takes f32 or f16, the CUDA backend bf16 only (checked at load).
  KvDType kv_dtype = KvDType::kBackendDefault;
  // `cpu_bf16_activations`: kBf16 rounds the activations of BF16-weight MatMuls to bf16 and
  // multiplies with AVX-512 BF16 (faster; outputs differ from kF32 in the low bits); kF32 keeps
  // them exact. CPU backend only (the CUDA backend's activations are bf16 already).
  Bf16Activations cpu_bf16_activations = Bf16Activations::kBf16;
  int block_size = 16;                   // tokens per KV block
  int max_batched_tokens = 2048;         // token budget of one engine step
  int max_seqs = 64;                     // sequences in one engine step
  int max_step_ms = 0;  // step-time target: the step token budget adapts to it (0 = off)
  // A higher-lane arrival stops the step in flight between layers (CPU backend).
  bool yield_to_higher_lane = true;
  // A step that runs a lane's prefill holds no lower-lane work.
  bool lane_exclusive_prefill = true;
  // Within a fair-share lane, the most underserved tenant's arrival stops the step in flight
  // and its prefill runs without the lane's other tenants' work (bounded).
  bool yield_to_underserved = true;
  EngineBatching batching = EngineBatching::kContinuous;
  Millis max_queue_wait{30000};  // server-wide cap on a request's wait before it runs (503)
  int prefill_weight = 1;        // fair-share cost of one prefill token
  int decode_weight = 2;         // fair-share cost of one decode token
  // Batch-invariant kernels (a sequence's logits do not depend on its batch). false selects the
  // faster batch-dependent paths (CPU: OpenBLAS GEMMs for prefill; CUDA: free GEMM algorithms).
  bool batch_invariant = true;
  KvEventsSection kv_events;

  // kv_dtype with kBackendDefault resolved: kF32 on the cpu backend, kBF16 on cuda.
  KvDType ResolvedKvDType() const {
    if (kv_dtype != KvDType::kBackendDefault) return kv_dtype;
    return backend == BackendKind::kCuda ? KvDType::kBF16 : KvDType::kF32;
  }
};

enum class PoolIsolation { kThread, kProcess };
std::string_view PoolIsolationName(PoolIsolation isolation);  // "thread" | "process"

// One inference pool (a trust domain): its own engine (scheduler, KV cache, model copy) and,
// with isolation kProcess, its own worker process. Tenants name their pool in tenants.yaml.
struct PoolSection {
  std::string name;
  PoolIsolation isolation = PoolIsolation::kThread;
  EngineSection engine;  // the top-level `engine:` with the pool's own keys applied on top
  ModelSection model;    // the top-level `model:` unless the pool has its own
  bool own_model = false;
  // kProcess: a worker that answers no health ping for this long is killed and restarted.
  Millis health_timeout{5000};
  // kProcess: the wait before restarting a dead worker; doubles after each quick death up to
  // max(10s, restart_backoff), back to this after a worker that served 10s.
  Millis restart_backoff{500};
  // A pool not ready (starting or restarting) for longer than this fails /health and /ready.
  Millis max_down{60000};
};

// How durable a row is when its OnCommitted runs (telemetry.ledger_sync; docs/billing.md).
enum class LedgerSync {
  // SQLite synchronous=FULL (fsync of the WAL at every commit) / PostgreSQL
  // synchronous_commit=on: the row survives a crash of the process, of the OS and power loss.
  kFull,
  // SQLite synchronous=NORMAL (the WAL is fsynced at checkpoints only) / PostgreSQL
  // synchronous_commit=off: the row survives a crash of llmuxd (kill -9), but the last commits
  // (SQLite: since the last checkpoint; PostgreSQL: up to 3 x wal_writer_delay) can be lost on
  // an OS crash or power loss. Never corrupts the ledger.
  kNormal,
};
struct TelemetrySection {
  std::filesystem::path log_file;  // absolute; empty = stderr
  std::int64_t log_max_bytes = 104857600;
  int log_max_files = 5;
  std::filesystem::path per_tenant_log_dir;  // absolute; empty = no per-tenant files
  // Absolute SQLite path (default "llmux-usage.db"), or a PostgreSQL URI kept verbatim
  // ("postgresql://..."; every replica then shares one ledger).
  std::filesystem::path usage_db;
  // PostgreSQL ledger only: the local spool holding rows while PostgreSQL is unreachable
  // (absolute; default "llmux-usage-spool.db" next to the config file).
  std::filesystem::path usage_spool;
  LedgerSync ledger_sync = LedgerSync::kFull;
};

// What a replica does while the cluster store (Redis) is unreachable.
enum class StoreFailureMode {
  kLocalShare,  // enforce each fleet-wide limit / live replicas locally
  kReject,      // refuse new completions with 503 + Retry-After
};
std::string_view StoreFailureModeName(StoreFailureMode mode);  // "local_share" | "reject"

// `cluster:`: tenant state shared by the replicas of a fleet (docs/deployment.md). Absent =
// every limit is this replica's own and no Redis is needed.
struct ClusterSection {
  bool enabled = false;
  // redis.url: "redis://[:PASSWORD@]HOST[:PORT][/DB]", "unix:///PATH[?db=DB]" or "/PATH" (a unix
  // socket). Parsed into the fields below.
  std::string redis_url;
  std::string redis_host;         // "" when redis_socket is set
  int redis_port = 6379;
  std::string redis_socket;       // absolute path of a unix socket, or ""
  int redis_db = 0;
  std::string redis_password;     // "" = no AUTH
  std::string key_prefix = "llmux:";
  Millis timeout{50};             // bound on every Redis connect and command
  std::string replica_id;         // "" = "HOSTNAME:PORT" of the listener (set by the daemon)
  Millis lease_ttl{10000};        // a dead replica's holds return within this
  StoreFailureMode on_store_failure = StoreFailureMode::kLocalShare;
};

struct ServerConfig {
  std::filesystem::path source;  // the file it was loaded from ("" for ParseServerConfig)
  ServerSection server;
  ModelSection model;
  EngineSection engine;
  TelemetrySection telemetry;
  ClusterSection cluster;
  std::filesystem::path tenants_file;  // absolute
  // Never empty once loaded: the `pools:` map in file order, plus "shared" (first) built from
  // `engine:` and `model:` when the map does not name it.
  std::vector<PoolSection> pools;
};

// The pool named `name`, or nullptr.
const PoolSection* FindPool(const ServerConfig& config, std::string_view name);

// Caps that protect the loaders from hostile files.
inline constexpr std::int64_t kMaxConfigFileBytes = 4 * 1024 * 1024;
inline constexpr int kMaxConfigDepth = 64;  // nested maps/sequences

// Reads and validates a server file. Relative paths inside it resolve against the folder of
// `path` (made absolute against the working directory). Errors: NotFound (no such file),
// InvalidArgument (too large, not a regular file, syntax or validation error; the message
// starts with "PATH:LINE:COLUMN: KEY: ").
StatusOr<ServerConfig> LoadServerConfig(const std::filesystem::path& path);

// Parses `text` as if it were the file `source_name`: messages name `source_name`, and
// relative paths resolve against `base_dir` (made absolute against the working directory).
StatusOr<ServerConfig> ParseServerConfig(std::string_view text, std::string_view source_name,
                                         const std::filesystem::path& base_dir = ".");

// ---- Value syntaxes shared by both files (exposed for tests and the admin API). ----

// "250ms", "30s", "5m", "1h" (a non-negative integer and one unit). Returns InvalidArgument
// naming the problem otherwise (a bare number has no unit and is rejected).
StatusOr<Millis> ParseDuration(std::string_view text);

// A non-negative decimal with at most 9 fractional digits, in nano-units: "0.20" ->
// 200000000. Parsed from the digits, never through binary floating point. InvalidArgument on
// a sign, exponent, more than 9 decimals or a value above INT64_MAX nano-units.
StatusOr<std::int64_t> ParseDecimalNano(std::string_view text);

// 64 hex digits (either case) -> digest. InvalidArgument otherwise.
StatusOr<KeyHash> ParseKeyHashHex(std::string_view hex);
// Lowercase hex of a digest.
std::string KeyHashHex(const KeyHash& hash);
// SHA-256 of an API key (OpenSSL EVP).
KeyHash HashApiKey(std::string_view key);

// Reads a whole file in one read sequence from one open descriptor (a file replaced or a
// symlink swapped mid-read cannot produce a mix), refusing anything but a regular file of at
// most `max_bytes`. NotFound when it does not exist; InvalidArgument when too large.
StatusOr<std::string> ReadConfigFile(const std::filesystem::path& path,
                                     std::int64_t max_bytes = kMaxConfigFileBytes);

}  // namespace llmux
