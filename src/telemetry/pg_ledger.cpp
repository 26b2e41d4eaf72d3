// PostgreSQL usage ledger with a local spool.
//
// Rows reach PostgreSQL one of two ways:
//   direct: the writer thread commits each group of queued rows to PostgreSQL;
//   spooled: while PostgreSQL is unreachable (or the spool still holds older rows, so that
//     rows keep their order), the writer commits the group to the local SQLite spool instead;
//     the replay thread moves spooled rows to PostgreSQL in spool order, deleting them from the
//     spool only after PostgreSQL committed them.
// Either way a row's OnCommitted runs once one durable store committed it. PostgreSQL inserts
// are idempotent by request id, so a row whose PostgreSQL commit was uncertain and was spooled
// too, or a replay cut short between the PostgreSQL commit and the spool delete, adds nothing
// twice.
//
// Rows are queued through a GroupCommitQueue, whose writer thread runs Commit for each group.
//
// Thread ownership: `writer_store_` belongs to the queue's writer thread, `replay_store_` to the
// replay thread, `read_store_` to query callers under `read_mutex_`. `direct_` (the route) is
// guarded by `route_mutex_`, which the writer holds while it commits a group and the replay
// thread holds while it checks the spool is empty and switches the route back to direct, so
// no row can be left behind in the spool.
#include "llmux/thread_annotations.h"
#include "telemetry/pg_ledger.h"

#include <atomic>
#include <chrono>
#include <thread>
#include <utility>

#include "llmux/log.h"
#include "telemetry/group_commit_queue.h"
#include "telemetry/pg_store.h"
#include "telemetry/usage_spool.h"

namespace llmux {
namespace {

constexpr int kMaxReplayBatch = GroupCommitQueue::kMaxGroup;  // rows per replay transaction

class PgLedger final : public UsageLedger {
 public:
  PgLedger(LedgerOptions options, std::unique_ptr<PgStore> first, std::unique_ptr<UsageSpool> spool,
           int64_t spooled)
      : options_(std::move(options)),
        redacted_url_(RedactUrl(options_.target)),
        spool_(std::move(spool)),
        writer_store_(std::move(first)),
        direct_(writer_store_ != nullptr && spooled == 0),
        store_up_(writer_store_ != nullptr),
        spooled_rows_(spooled),
        queue_([this](const std::vector<const UsageRecord*>& rows) { return Commit(rows); }) {
    if (spool_) replayer_ = std::thread([this] { ReplayMain(); });
  }
  ~PgLedger() override { Close(); }

  void Append(UsageRecord record, OnCommitted on_committed) override {
    queue_.Append(std::move(record), std::move(on_committed));
  }
  Status AppendSync(UsageRecord record) override { return queue_.AppendSync(std::move(record)); }

  StatusOr<std::vector<TenantUsage>> Summarize(const UsageQuery& q) override {
    return OnReadStore([&](PgStore& store) { return store.Summarize(q); });
  }
  StatusOr<std::vector<UsageRecord>> Records(const UsageQuery& q) override {
    return OnReadStore([&](PgStore& store) { return store.Records(q); });
  }
  StatusOr<int64_t> Prune(int64_t before_ms) override {
    return OnReadStore([&](PgStore& store) { return store.Prune(before_ms); });
  }
  StatusOr<std::vector<CapacityCharge>> AccrueCapacity(
      const std::vector<CapacityAccrual>& accruals) override {
    return OnReadStore([&](PgStore& store) { return store.AccrueCapacity(accruals); });
  }
  StatusOr<std::vector<CapacityRecord>> CapacityRecords(const UsageQuery& q) override {
    return OnReadStore([&](PgStore& store) { return store.CapacityRecords(q); });
  }

  LedgerHealth Health() const override {
    return LedgerHealth{store_up_.load(), spooled_rows_.load(), replayed_rows_.load()};
  }

  void Close() override {
    {
      MutexLock lock(close_mutex_);
      if (closed_) return;
      closed_ = true;
    }
    close_cv_.NotifyAll();  // the replay thread stops at its next wake
    queue_.Close();         // commits what is queued (direct or spooled)
    if (replayer_.joinable()) replayer_.join();
  }

 private:
  // The queue's writer thread: commits one group directly or to the spool (see the top).
  Status Commit(const std::vector<const UsageRecord*>& rows);
  void ReplayMain();
  // Moves spooled rows to PostgreSQL until the spool is empty (then the route goes back to
  // direct) or PostgreSQL fails.
  void Replay();

  // Connects `store` when it is null. Unavailable when PostgreSQL cannot be reached.
  Status EnsureStore(std::unique_ptr<PgStore>& store) {
    if (store) return Status::Ok();
    LLMUX_ASSIGN_OR_RETURN(
        store, PgStore::Connect(options_.target, options_.sync, options_.statement_timeout_ms,
                                options_.connect_timeout_s));
    return Status::Ok();
  }
  static void DropIfBroken(std::unique_ptr<PgStore>& store) {
    if (store && !store->usable()) store.reset();
  }
  // Runs `call` on the read connection under `read_mutex_`, connecting first when there is
  // none, and drops the connection when the call left it broken (the next call reconnects).
  template <typename Call>
  auto OnReadStore(Call call) -> decltype(call(std::declval<PgStore&>())) {
    MutexLock lock(read_mutex_);
    LLMUX_RETURN_IF_ERROR(EnsureStore(read_store_));
    auto out = call(*read_store_);
    if (!out.ok()) DropIfBroken(read_store_);
    return out;
  }
  // Records reachability; logs once per transition.
  void SetStoreUp(bool up, const Status& why) {
    if (store_up_.exchange(up) == up) return;
    if (up) {
      LogEvent(LogLevel::kInfo, "usage_store_up", {F("store", redacted_url_)});
    } else {
      LogEvent(LogLevel::kError, "usage_store_down",
               {F("store", redacted_url_), F("error", why.message()),
                F("spool", spool_ ? spool_->path().string() : std::string("none"))});
    }
  }

  const LedgerOptions options_;
  const std::string redacted_url_;
  const std::unique_ptr<UsageSpool> spool_;  // null: no spool (readers such as the CLI)

  std::unique_ptr<PgStore> writer_store_;  // writer thread only
  std::unique_ptr<PgStore> replay_store_;  // replay thread only
  Mutex read_mutex_;
  std::unique_ptr<PgStore> read_store_ GUARDED_BY(read_mutex_);

  Mutex route_mutex_;
  bool direct_ GUARDED_BY(route_mutex_);

  std::atomic<bool> store_up_;
  std::atomic<int64_t> spooled_rows_;
  std::atomic<int64_t> replayed_rows_{0};

  Mutex close_mutex_;
  CondVar close_cv_;
  bool closed_ GUARDED_BY(close_mutex_) = false;
  std::thread replayer_;
  // Last: its writer thread runs Commit over the members above, so it starts after them and
  // Close (which the destructor calls) stops it before they go.
  GroupCommitQueue queue_;
};

Status PgLedger::Commit(const std::vector<const UsageRecord*>& rows) {
  MutexLock route(route_mutex_);
  Status pg = Status::Ok();
  if (direct_) {
    pg = EnsureStore(writer_store_);
    if (pg.ok()) pg = writer_store_->Insert(rows);
    if (pg.ok()) return pg;
    DropIfBroken(writer_store_);
    direct_ = false;
    SetStoreUp(false, pg);
  }
  if (!spool_) {
    // Without a spool, nothing can hold the rows; try PostgreSQL once more.
    pg = EnsureStore(writer_store_);
    if (pg.ok()) pg = writer_store_->Insert(rows);
    if (!pg.ok()) DropIfBroken(writer_store_);
    if (pg.ok()) direct_ = true;
    return pg;
  }
  Status s = spool_->Append(rows);
  if (s.ok()) spooled_rows_.fetch_add(static_cast<int64_t>(rows.size()));
  return s;
}

void PgLedger::ReplayMain() {
  for (;;) {
    {
      MutexLock lock(close_mutex_);
      close_cv_.WaitFor(lock, std::chrono::milliseconds(options_.retry_interval_ms),
                        [this]() REQUIRES(close_mutex_) { return closed_; });
      if (closed_) return;
    }
    bool direct;
    {
      MutexLock route(route_mutex_);
      direct = direct_;
    }
    if (!direct) Replay();
  }
}

void PgLedger::Replay() {
  Status s = EnsureStore(replay_store_);
  if (s.ok()) s = replay_store_->Migrate();  // the ledger may have started with PG down
  while (s.ok()) {
    auto oldest = spool_->Oldest(kMaxReplayBatch);
    if (!oldest.ok()) {
      LogEvent(LogLevel::kError, "usage_spool_read_failed",
               {F("error", oldest.status().message())});
      return;
    }
    if (oldest->empty()) {
      MutexLock route(route_mutex_);
      auto n = spool_->Count();
      if (n.ok() && *n == 0) {
        direct_ = true;
        spooled_rows_.store(0);
        SetStoreUp(true, Status::Ok());
        break;
      }
      continue;  // the writer spooled more meanwhile
    }
    std::vector<const UsageRecord*> rows;
    rows.reserve(oldest->size());
    for (const auto& [id, r] : *oldest) rows.push_back(&r);
    s = replay_store_->Insert(rows);
    if (!s.ok()) break;
    SetStoreUp(true, Status::Ok());
    // Crashing here replays these rows again later: PostgreSQL skips them by request id.
    auto deleted = spool_->DeleteThrough(oldest->back().first);
    if (!deleted.ok()) {
      LogEvent(LogLevel::kError, "usage_spool_delete_failed",
               {F("error", deleted.status().message())});
      return;
    }
    spooled_rows_.fetch_sub(*deleted);
    replayed_rows_.fetch_add(static_cast<int64_t>(rows.size()));
    LogEvent(LogLevel::kInfo, "usage_spool_replayed",
             {F("rows", static_cast<long long>(rows.size())),
              F("left", static_cast<long long>(spooled_rows_.load()))});
  }
  if (!s.ok()) {
    DropIfBroken(replay_store_);
    if (replay_store_ && s.code() == StatusCode::kUnavailable) replay_store_.reset();
    SetStoreUp(false, s);
    return;
  }
  if (options_.on_store_up) options_.on_store_up();
}

}  // namespace

StatusOr<std::unique_ptr<UsageLedger>> OpenPgLedger(const LedgerOptions& options) {
  std::unique_ptr<UsageSpool> spool;
  int64_t spooled = 0;
  if (!options.spool.empty()) {
    LLMUX_ASSIGN_OR_RETURN(spool, UsageSpool::Open(options.spool, options.sync));
    LLMUX_ASSIGN_OR_RETURN(spooled, spool->Count());
  }
  auto store = PgStore::Connect(options.target, options.sync, options.statement_timeout_ms,
                                options.connect_timeout_s);
  Status s = store.status();
  if (s.ok()) s = (*store)->Migrate();
  std::unique_ptr<PgStore> first;
  if (s.ok()) {
    first = std::move(store).value();
  } else if (s.code() != StatusCode::kUnavailable || !spool) {
    return s;
  } else {
    LogEvent(LogLevel::kError, "usage_store_down",
             {F("store", RedactUrl(options.target)), F("error", s.message()),
              F("spool", spool->path().string())});
  }
  if (spooled > 0) {
    LogEvent(LogLevel::kInfo, "usage_spool_pending",
             {F("rows", static_cast<long long>(spooled)), F("spool", spool->path().string())});
  }
  return std::unique_ptr<UsageLedger>(
      new PgLedger(options, std::move(first), std::move(spool), spooled));
}

}  // namespace llmux
