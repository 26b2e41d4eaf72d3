// The PostgreSQL ledger's local spool: a SQLite file holding the rows that could not reach
// PostgreSQL, in arrival order, until the replay thread has committed them there.
//
// Thread-safe: every method takes the spool's mutex (the writer appends while the replay
// thread peeks and deletes).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "llmux/thread_annotations.h"
#include "llmux/usage_ledger.h"
#include "telemetry/sqlite_util.h"

namespace llmux {

class UsageSpool {
 public:
  // Opens (creating when missing) the spool file with `sync`. Internal naming the file.
  static StatusOr<std::unique_ptr<UsageSpool>> Open(const std::filesystem::path& path,
                                                    LedgerSync sync);
  UsageSpool(const UsageSpool&) = delete;
  UsageSpool& operator=(const UsageSpool&) = delete;

  // Commits `rows` in one transaction (durable per the spool's LedgerSync once OK).
  Status Append(const std::vector<const UsageRecord*>& rows);
  // Up to `limit` of the oldest rows with their spool ids, ascending.
  StatusOr<std::vector<std::pair<int64_t, UsageRecord>>> Oldest(int limit);
  // Deletes the rows with id <= `last_id` (those Oldest returned). Returns how many.
  StatusOr<int64_t> DeleteThrough(int64_t last_id);
  StatusOr<int64_t> Count();

  const std::filesystem::path& path() const { return path_; }

 private:
  UsageSpool(std::filesystem::path path, sqlite::Db db)
      : path_(std::move(path)), db_(std::move(db)) {}

  const std::filesystem::path path_;
  Mutex mutex_;
  sqlite::Db db_ GUARDED_BY(mutex_);
};

}  // namespace llmux
