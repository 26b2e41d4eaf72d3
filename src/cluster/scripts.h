// The Lua scripts that keep the fleet's tenant state in Redis. Each runs atomically on the
// Redis server; times come from Redis's own clock (TIME), so replica clocks never matter for
// rate windows and leases. Key layout and semantics: docs/deployment.md ("Shared tenant state").
#pragma once

#include <string>

namespace llmux::cluster {

// ADMIT: decides one call against every fleet-wide limit and, when admitted, takes it all.
//   KEYS: rate hash, hold hash, replicas zset, used-day hash, used-month hash, replica-keys set
//   ARGV: replica, rpm, tpm, tokens, cost_nano, choices, queue_cap, budget, tokens_per_day (-1
//         none), spend_per_month_nano (-1 none)
//   Returns {code, wait_ms, used_tokens_today, held_tokens, used_nano_month, held_nano, queued}
//   code: 0 admitted, 1 tokens_per_day, 2 spend_per_month, 3 rate (wait_ms), 4 rate never,
//         5 queue full, 6 in-flight budget. The figures are the fleet's, before this call.
const std::string& AdmitScript();

// SYNC: applies one replica's holds and usage for one tenant.
//   KEYS: hold hash, used-day hash, used-month hash, replica-keys set
//   ARGV: replica, "add"|"set", tokens, cost_nano, queued, used_tokens_today (-1 skip),
//         used_nano_month (-1 skip), epoch (this process's id), seed_tokens_today,
//         seed_nano_month (the replica's ledger figures before this process)
//   The hold fields are added to ("add") or replaced ("set"); the usage figures are this
//   process's totals for the period, stored on top of what earlier processes with the same
//   replica id left (remembered per epoch), so repeating a SYNC is harmless; when Redis has no
//   figure of the replica for the period, on top of the seed.
const std::string& SyncScript();

// HEARTBEAT: renews the replica's registration for ttl_ms and drops expired ones.
//   KEYS: replicas zset. ARGV: replica, ttl_ms.
//   Returns {live_replicas, lapsed (1 when the replica was not registered, e.g. its lease
//   expired or Redis lost its data: its holds must be written again)}.
const std::string& HeartbeatScript();

// REGISTER: forgets every hold the replica left (a restart or a reconciliation writes them
// again) and renews its registration.
//   KEYS: replicas zset, replica-keys set. ARGV: replica, ttl_ms. Returns {live_replicas}.
const std::string& RegisterScript();

}  // namespace llmux::cluster
