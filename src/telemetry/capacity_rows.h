// Capacity rows as the SQLite and PostgreSQL ledgers store them: the accrual rule both apply,
// the SQLite table, and building usage summaries from token and capacity rows (telemetry only).
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <vector>

#include "llmux/usage_ledger.h"

namespace llmux {

inline constexpr int64_t kMsPerHour = 3'600'000;

// A stored capacity row with the bookkeeping the accrual rule needs.
struct CapacityRowState {
  bool exists = false;
  CapacityRecord record;
  int64_t covered_until_ms = 0;  // the row holds every accrued millisecond before this
  CapacityAmount amount;
};

// Applies `a` (within the UTC hour starting at row->record.hour_start_ms) to `row`: adds the
// part of [from_ms, to_ms) at or after covered_until_ms, moves covered_until_ms to to_ms and
// records the hold. Returns the cost the row gained (0 when nothing was new).
int64_t ApplyCapacityAccrual(const CapacityAccrual& a, CapacityRowState* row);

// Appends `day` (token charges) to `tenant`'s days and adds it to the tenant's totals. Rows
// come in (tenant, day) order: a tenant other than the last one starts a new TenantUsage.
void AppendUsageDay(std::vector<TenantUsage>* usage, const std::string& tenant, DailyUsage day);

// Adds `cost_nano` of capacity charges to `tenant`'s day starting at `day_start_ms` (a new
// tenant or day is inserted in order) and to the tenant's totals.
void MergeCapacityDay(std::vector<TenantUsage>* usage, const std::string& tenant,
                      int64_t day_start_ms, int64_t cost_nano);

namespace sqlite {

// Creates the `capacity` table when missing (the migration of a ledger file from before
// capacity rows: idempotent).
extern const char* const kCapacitySchema;

// AccrueCapacity on `db` in one IMMEDIATE transaction.
StatusOr<std::vector<CapacityCharge>> AccrueCapacity(sqlite3* db,
                                                     const std::vector<CapacityAccrual>& accruals);
StatusOr<std::vector<CapacityRecord>> ReadCapacity(sqlite3* db, const UsageQuery& q);
// Merges the capacity charges of the rows `q` selects into `usage` (per UTC day).
Status SummarizeCapacity(sqlite3* db, const UsageQuery& q, std::vector<TenantUsage>* usage);
// Deletes capacity rows of hours that started before `before_ms`.
Status PruneCapacity(sqlite3* db, int64_t before_ms);

}  // namespace sqlite
}  // namespace llmux
