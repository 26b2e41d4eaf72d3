#include "server/policy_reloader.h"

#include <utility>

namespace llmux::server {

PolicyReloader::PolicyReloader(PolicyStore* store, std::vector<Step> steps, Report report)
    : store_(store), steps_(std::move(steps)), report_(std::move(report)) {}

Status PolicyReloader::Reload(std::string_view trigger) {
  MutexLock lock(mutex_);
  // NOTE: the file is read under the reloader's lock too, so two admin/signal triggers cannot
  // apply their policies in the opposite order of reading them.
  return ApplyLocked(trigger, store_->Reload());
}

Status PolicyReloader::Apply(std::string_view trigger, Status loaded) {
  MutexLock lock(mutex_);
  return ApplyLocked(trigger, std::move(loaded));
}

Status PolicyReloader::ApplyLocked(std::string_view trigger, Status loaded) {
  Status s = std::move(loaded);
  if (s.ok()) {
    const std::shared_ptr<const TenantPolicy> policy = store_->Current();
    for (const Step& step : steps_) {
      s = step(*policy);
      if (!s.ok()) break;
    }
  }
  if (report_) report_(PolicyReloadOutcome{std::string(trigger), s, store_->generation()});
  return s;
}

}  // namespace llmux::server
