// Tenants (tenants.yaml) and the tenancy services built on them: API-key authentication,
// per-tenant rate limits, and the hot-reloadable policy store.
//
// A TenantPolicy is immutable once loaded and shared as std::shared_ptr<const TenantPolicy>,
// so a request keeps the policy it was admitted under while a reload installs a new one.
// Keys, defaults and units are documented in docs/configuration.md.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "llmux/config.h"
#include "llmux/status.h"
#include "llmux/thread_annotations.h"

namespace llmux {

// ---------------------------------------------------------------------------------------------
// Policy values
// ---------------------------------------------------------------------------------------------

struct Lane {
  std::string name;
  Millis max_wait{0};  // aging: work waiting longer is no longer held back by higher lanes; 0 = off
  // Which tenant's waiting request a free slot of the lane goes to: the lowest fair-share
  // counter (the default), or the oldest request of any tenant (`order: arrival`: one FIFO for
  // the lane, as an engine without tenants serves; the benchmarks' FIFO baseline).
  bool arrival_order = false;
};

struct PrefixCachePolicy {
  enum class Mode { kPrivate, kShared, kOff };
  Mode mode = Mode::kPrivate;
  std::string group;  // kShared only: tenants naming the same group share cache hits
};

struct RateLimit {
  std::int64_t requests_per_minute = 0;  // 0 = unlimited
  std::int64_t tokens_per_minute = 0;    // 0 = unlimited
  bool operator==(const RateLimit&) const = default;
};

struct Reservation {
  std::int64_t kv_tokens = 0;
  std::int64_t seqs = 0;
};

// Prices in integer nano-units of the currency per million tokens (0.20/Mtok = 200000000).
struct Prices {
  std::int64_t input_nano_per_mtok = 0;
  std::int64_t output_nano_per_mtok = 0;
  std::int64_t cached_nano_per_mtok = 0;  // defaults to the input price when not given
};

// Prices of capacity held for a tenant whether it is used or not (tenants.yaml
// `capacity_prices`), in integer nano-units of the currency. Billed per hour held, prorated to
// the millisecond (see docs/billing.md, "Capacity charges").
struct CapacityPrices {
  std::int64_t reserved_kv_nano_per_1k_tokens_hour = 0;  // per 1000 reserved.kv_tokens per hour
  std::int64_t reserved_seq_nano_per_hour = 0;           // per reserved.seqs per hour
  std::int64_t dedicated_pool_nano_per_hour = 0;         // the tenant's non-shared pool, per hour
  bool operator==(const CapacityPrices&) const = default;
};

struct Quota {
  std::optional<std::int64_t> tokens_per_day;        // nullopt = unlimited
  std::optional<std::int64_t> spend_per_month_nano;  // nano-units; nullopt = unlimited
};

// An OpenAI service_tier a tenant may request (tenants.yaml `service_tiers`): the lane its
// requests run in, and the prices they are billed at (the tenant's when not given).
struct ServiceTier {
  std::string lane;
  int lane_index = 0;
  std::optional<Prices> prices;
};

struct TenantConfig {
  std::string name;
  std::vector<KeyHash> api_keys;
  std::string lane;
  int lane_index = 0;  // index into TenantPolicy::lanes; 0 = highest
  int weight = 1;
  std::int64_t max_inflight_tokens = 32768;
  int max_queued_requests = 64;
  Millis max_queue_wait{30000};
  std::optional<std::int64_t> max_tokens_per_request;  // nullopt = the context decides
  std::optional<std::int64_t> max_prompt_tokens;       // nullopt = the context decides
  RateLimit rate_limit;
  Reservation reserved;
  PrefixCachePolicy prefix_cache;
  bool zero_kv_on_free = false;
  std::vector<std::string> models = {"*"};  // served model ids; '*' matches any run of chars
  bool log_prompts = false;
  std::string pool = "shared";
  Prices prices;
  CapacityPrices capacity_prices;
  std::optional<Quota> quota;
  // "priority" / "flex" -> its lane. `auto` and `default` always use `lane`; a tier not listed
  // is refused (403).
  std::map<std::string, ServiceTier> service_tiers;
};

struct TenantPolicy {
  std::filesystem::path source;  // the file it was loaded from ("" for ParseTenantPolicy)
  std::vector<Lane> lanes;       // first = highest; never empty
  std::map<std::string, TenantConfig> tenants;

  // nullptr when no tenant has that name.
  const TenantConfig* Find(std::string_view tenant) const;
};

// Reads and validates a tenants file. Errors as LoadServerConfig: NotFound, or
// InvalidArgument with "PATH:LINE:COLUMN: KEY: message".
StatusOr<std::shared_ptr<const TenantPolicy>> LoadTenantPolicy(const std::filesystem::path& path);
// Parses `text` as if it were the file `source_name` (named in messages); `source` is recorded
// as TenantPolicy::source.
StatusOr<std::shared_ptr<const TenantPolicy>> ParseTenantPolicy(
    std::string_view text, std::string_view source_name, const std::filesystem::path& source = {});

// Whether `model` matches one of the tenant's `models` patterns.
bool ModelAllowed(const TenantConfig& tenant, std::string_view model);

// Sum of the reservations of the tenants bound to `pool`.
Reservation TotalReserved(const TenantPolicy& policy, std::string_view pool = "shared");

// FailedPrecondition when the shared pool's reservations exceed the engine's capacity
// (kv_cache_tokens, max_seqs) or one tenant's reservation cannot fit; the message names the
// figures and the tenants. The daemon runs it at start and before installing a reload.
Status CheckPolicyFitsEngine(const TenantPolicy& policy, const EngineSection& engine);

// InvalidArgument when a tenant key hash equals an admin key hash (one key, two identities).
Status CheckNoAdminKeyReuse(const TenantPolicy& policy, const std::vector<AdminKey>& admin_keys);

// ---------------------------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------------------------

// True when a and b hold the same bytes. Time depends only on the lengths, not the contents
// (CRYPTO_memcmp); unequal lengths return false.
bool ConstantTimeEquals(std::string_view a, std::string_view b);

struct Principal {
  enum class Kind { kTenant, kAdmin };
  Kind kind = Kind::kTenant;
  std::string tenant;  // kTenant only
};

// Maps an API key to a tenant or to the administrator. Immutable; any thread.
class Authenticator {
 public:
  explicit Authenticator(std::vector<AdminKey> admin_keys) : admin_keys_(std::move(admin_keys)) {}

  // `authorization` is the Authorization header value ("" when absent); the scheme must be
  // "Bearer" (any case). Returns the principal, or Unauthenticated with a message that never
  // contains the key. The presented key's hash is compared with every admin and tenant hash
  // (no early exit), each comparison constant-time.
  StatusOr<Principal> Authenticate(std::string_view authorization,
                                   const TenantPolicy& policy) const;
  // Same, for a bare key.
  StatusOr<Principal> AuthenticateKey(std::string_view key, const TenantPolicy& policy) const;

 private:
  std::vector<AdminKey> admin_keys_;
};

// ---------------------------------------------------------------------------------------------
// Rate limiting
// ---------------------------------------------------------------------------------------------

using SteadyTime = std::chrono::steady_clock::time_point;
using ClockFn = std::function<SteadyTime()>;

struct RateDecision {
  static constexpr std::int64_t kNever = -1;
  bool admitted = false;
  // When not admitted: whole seconds after which the same request would be admitted if
  // nothing else consumed meanwhile (rounded up, >= 1), or kNever when the cost exceeds the
  // bucket's capacity. 0 when admitted.
  std::int64_t retry_after_seconds = 0;
};

// A token bucket refilled continuously at `per_minute` units per minute, holding at most one
// minute's worth (the burst). Exact integer arithmetic. Not thread-safe (TenantRateLimiter
// locks around it). `per_minute` 0 means unlimited.
class TokenBucket {
 public:
  TokenBucket(std::int64_t per_minute, SteadyTime now);

  // Takes `cost` units when available; otherwise takes nothing.
  RateDecision TryTake(std::int64_t cost, SteadyTime now);
  // What TryTake would decide, without taking.
  RateDecision Check(std::int64_t cost, SteadyTime now);
  std::int64_t per_minute() const { return per_minute_; }
  // Whole units available now (rounded down).
  std::int64_t Available(SteadyTime now);
  // Keeps at most `units` (negative = none); used when a reload changes the rate.
  void ClampTo(std::int64_t units);

 private:
  void Refill(SteadyTime now);

  std::int64_t per_minute_;
  // Level in units of 1/60e9 of a unit (one nanosecond's refill at 1 unit/minute).
  __int128 level_;
  SteadyTime last_;
};

// Per-tenant request and token buckets. Thread-safe: any I/O thread may call Admit.
class TenantRateLimiter {
 public:
  explicit TenantRateLimiter(ClockFn clock);

  // Admits one request costing `tokens` (what the caller charges: prompt + max new tokens)
  // under `limit` (the tenant's current policy; a changed limit rebuilds the buckets keeping
  // what was consumed). Takes from both buckets only when both admit; otherwise the decision
  // carries the larger of the two waits.
  RateDecision Admit(std::string_view tenant, const RateLimit& limit, std::int64_t tokens);

 private:
  struct Buckets {
    RateLimit limit;
    TokenBucket requests;
    TokenBucket tokens;
  };

  ClockFn clock_;
  Mutex mutex_;
  std::map<std::string, Buckets, std::less<>> buckets_ GUARDED_BY(mutex_);
};

// ---------------------------------------------------------------------------------------------
// Hot reload
// ---------------------------------------------------------------------------------------------

// Holds the current policy. Thread-safe: Current() from any thread, Reload() from any thread
// (reloads are serialized).
class PolicyStore {
 public:
  // Run on a freshly parsed policy before it is installed (e.g. CheckPolicyFitsEngine and
  // CheckNoAdminKeyReuse); a non-OK status rejects it.
  using Validator = std::function<Status(const TenantPolicy&)>;

  // Loads `path` (made absolute) and validates it; the error of either on failure.
  static StatusOr<std::unique_ptr<PolicyStore>> Create(const std::filesystem::path& path,
                                                       Validator validator = nullptr);
  PolicyStore(const PolicyStore&) = delete;
  PolicyStore& operator=(const PolicyStore&) = delete;

  // Never null.
  std::shared_ptr<const TenantPolicy> Current() const;

  // Re-reads and validates the file; installs it only on success. On failure the old policy
  // stays and the error (with file:line:column) is returned.
  Status Reload();
  // As Reload, but does nothing (and sets *changed = false) when the file's bytes equal those
  // of the installed policy. `changed` may be null.
  Status ReloadIfChanged(bool* changed);

  const std::filesystem::path& path() const { return path_; }
  // Number of policies installed so far (1 after Create).
  std::uint64_t generation() const;
  // SHA-256 of the file bytes the installed policy was parsed from (one whole read of the file).
  KeyHash content_hash() const;

 private:
  PolicyStore(std::filesystem::path path, Validator validator);
  Status ReloadImpl(bool only_if_changed, bool* changed);

  const std::filesystem::path path_;
  const Validator validator_;
  Mutex reload_mutex_;  // serializes reloads
  mutable Mutex mutex_;
  std::shared_ptr<const TenantPolicy> current_ GUARDED_BY(mutex_);
  KeyHash content_hash_ GUARDED_BY(mutex_){};
  std::uint64_t generation_ GUARDED_BY(mutex_) = 0;
};

// Watches the policy file's folder with inotify and calls store->ReloadIfChanged() when the
// file is written, replaced (rename over it) or re-pointed (a Kubernetes ConfigMap's "..data"
// symlink swap). Events are debounced. Owns one thread; Stop() (or the destructor) ends it.
class PolicyFileWatcher {
 public:
  // Called on the watcher thread after each reload it triggers that changed something or
  // failed (OK = a new policy is installed).
  using OnReload = std::function<void(const Status&)>;

  // `store` must outlive the watcher. Internal error when inotify cannot be set up.
  static StatusOr<std::unique_ptr<PolicyFileWatcher>> Start(PolicyStore* store,
                                                            OnReload on_reload = nullptr,
                                                            Millis debounce = Millis(100));
  ~PolicyFileWatcher();
  PolicyFileWatcher(const PolicyFileWatcher&) = delete;
  PolicyFileWatcher& operator=(const PolicyFileWatcher&) = delete;

  // Ends the thread and waits for it. Idempotent; any thread but the watcher's own.
  void Stop();

  class Impl;

 private:
  explicit PolicyFileWatcher(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace llmux
