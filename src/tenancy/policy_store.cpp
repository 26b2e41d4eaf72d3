// The current tenant policy and its reload (swap only on success).
#include "llmux/tenant_policy.h"

namespace llmux {

PolicyStore::PolicyStore(std::filesystem::path path, Validator validator)
    : path_(std::move(path)), validator_(std::move(validator)) {}

StatusOr<std::unique_ptr<PolicyStore>> PolicyStore::Create(const std::filesystem::path& path,
                                                           Validator validator) {
  std::error_code ec;
  std::filesystem::path absolute = std::filesystem::absolute(path, ec).lexically_normal();
  if (ec) return Internal("cannot resolve " + path.string() + ": " + ec.message());
  std::unique_ptr<PolicyStore> store(new PolicyStore(std::move(absolute), std::move(validator)));
  LLMUX_RETURN_IF_ERROR(store->Reload());
  return store;
}

std::shared_ptr<const TenantPolicy> PolicyStore::Current() const {
  MutexLock lock(mutex_);
  return current_;
}

std::uint64_t PolicyStore::generation() const {
  MutexLock lock(mutex_);
  return generation_;
}

KeyHash PolicyStore::content_hash() const {
  MutexLock lock(mutex_);
  return content_hash_;
}

Status PolicyStore::Reload() { return ReloadImpl(false, nullptr); }

Status PolicyStore::ReloadIfChanged(bool* changed) { return ReloadImpl(true, changed); }

Status PolicyStore::ReloadImpl(bool only_if_changed, bool* changed) {
  if (changed != nullptr) *changed = false;
  MutexLock reload_lock(reload_mutex_);
  LLMUX_ASSIGN_OR_RETURN(std::string text, ReadConfigFile(path_));
  const KeyHash content_hash = HashApiKey(text);  // SHA-256 of the file's bytes
  if (only_if_changed) {
    MutexLock lock(mutex_);
    if (current_ != nullptr && content_hash == content_hash_) return Status::Ok();
  }
  LLMUX_ASSIGN_OR_RETURN(std::shared_ptr<const TenantPolicy> policy,
                         ParseTenantPolicy(text, path_.string(), path_));
  if (validator_) LLMUX_RETURN_IF_ERROR(validator_(*policy));
  {
    MutexLock lock(mutex_);
    current_ = std::move(policy);
    content_hash_ = content_hash;
    ++generation_;
  }
  if (changed != nullptr) *changed = true;
  return Status::Ok();
}

}  // namespace llmux
