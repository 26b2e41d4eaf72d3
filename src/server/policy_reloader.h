// The one path a tenant-policy change takes through the daemon, whatever triggered it: SIGHUP
// and POST /admin/reload re-read the file here; the file watcher has re-read it already and
// passes how that went. An installed policy is then applied, step by step, to what holds a
// copy of it (the pools' engines, the metrics' tenant list, the capacity meter), and every
// outcome is reported once (the `policy_reload` log event and counter).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "llmux/status.h"
#include "llmux/tenant_policy.h"
#include "llmux/thread_annotations.h"

namespace llmux::server {

// What one trigger did, as reported.
struct PolicyReloadOutcome {
  std::string trigger;      // "signal", "admin", "file"
  Status status;            // OK = the store's current policy was applied by every step
  std::uint64_t generation = 0;  // the store's generation after the reload (PolicyStore)
};

// Thread-safe: triggers arrive from the main thread (signals), an I/O thread (admin route) and
// the watcher's thread; they run one at a time, each applying the store's policy of that
// moment, so the last one applied is the newest.
class PolicyReloader {
 public:
  // Applies an installed policy to one part of the daemon. A failing step ends that apply (the
  // later steps do not run) and its error is the outcome.
  using Step = std::function<Status(const TenantPolicy&)>;
  // Called with every outcome, success or not, while the reloader is held (never concurrently).
  using Report = std::function<void(const PolicyReloadOutcome&)>;

  // `store` must outlive the reloader.
  PolicyReloader(PolicyStore* store, std::vector<Step> steps, Report report);
  PolicyReloader(const PolicyReloader&) = delete;
  PolicyReloader& operator=(const PolicyReloader&) = delete;

  // Re-reads and validates the store's file, then applies it. On a rejected file the policy in
  // force stays (nothing is applied) and the store's error (file:line:column) is returned.
  Status Reload(std::string_view trigger);

  // As Reload for a file someone else has reloaded already (`loaded`: how that went). A
  // non-OK `loaded` is reported and returned; nothing is applied.
  Status Apply(std::string_view trigger, Status loaded);

 private:
  Status ApplyLocked(std::string_view trigger, Status loaded) REQUIRES(mutex_);

  PolicyStore* const store_;
  const std::vector<Step> steps_;
  const Report report_;
  Mutex mutex_;  // one trigger at a time
};

}  // namespace llmux::server
