#include "cluster/scripts.h"

namespace llmux::cluster {
namespace {

// Redis's clock in milliseconds.
constexpr const char* kNow = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function int(v) return string.format('%d', v) end
)lua";

}  // namespace

const std::string& AdmitScript() {
  static const std::string kScript = std::string(kNow) + R"lua(
local R = ARGV[1]
local rpm, tpm = tonumber(ARGV[2]), tonumber(ARGV[3])
local tok, nano, ch = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local qcap, budget = tonumber(ARGV[7]), tonumber(ARGV[8])
local tpd, spm = tonumber(ARGV[9]), tonumber(ARGV[10])

-- Holds of live replicas; a dead replica's holds are dropped here (its lease expired).
local live = {}
local function alive(rep)
  if rep == R then return true end
  if live[rep] == nil then
    local s = redis.call('ZSCORE', KEYS[3], rep)
    live[rep] = (s ~= false and s ~= nil and tonumber(s) > now)
  end
  return live[rep]
end
local held_tok, held_nano, queued = 0, 0, 0
local h = redis.call('HGETALL', KEYS[2])
for i = 1, #h, 2 do
  local f = h[i]
  local sep = string.find(f, '|', 1, true)
  if sep then
    local rep, kind = string.sub(f, 1, sep - 1), string.sub(f, sep + 1)
    if alive(rep) then
      local v = tonumber(h[i + 1])
      if kind == 'tok' then held_tok = held_tok + v
      elseif kind == 'nano' then held_nano = held_nano + v
      elseif kind == 'q' then queued = queued + v end
    else
      redis.call('HDEL', KEYS[2], f)
    end
  end
end

-- Usage of the period: every replica's total (fields without '|').
local function used(key)
  local total = 0
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    if not string.find(all[i], '|', 1, true) then total = total + tonumber(all[i + 1]) end
  end
  return total
end
local used_tok, used_nano = 0, 0
if tpd >= 0 then used_tok = used(KEYS[4]) end
if spm >= 0 then used_nano = used(KEYS[5]) end
local function reply(code, wait) return {code, wait, used_tok, held_tok, used_nano, held_nano, queued} end
if tpd >= 0 and used_tok + held_tok >= tpd then return reply(1, 0) end
if spm >= 0 and used_nano + held_nano >= spm then return reply(2, 0) end

-- Token buckets, as the local limiter: refilled continuously at per_min units per minute,
-- holding at most one minute's worth; level in units of 1/60000 (one millisecond's refill).
local function level_of(p, per_min)
  local v = redis.call('HMGET', KEYS[1], p .. 'l', p .. 't', p .. 'r')
  local cap = per_min * 60000
  local level, last, rate = tonumber(v[1]), tonumber(v[2]), tonumber(v[3])
  if level == nil or last == nil or rate == nil or rate <= 0 then return cap end
  if now > last then level = math.min(rate * 60000, level + (now - last) * rate) end
  if rate ~= per_min then
    -- A changed limit keeps what the last minute consumed.
    level = math.max(0, math.min(cap, cap - (rate * 60000 - level)))
  end
  return level
end
local function check(p, per_min, cost)
  if per_min <= 0 or cost <= 0 then return 0, nil end
  if cost > per_min then return -1, nil end
  local level = level_of(p, per_min)
  local need = cost * 60000
  if level >= need then return 0, level - need end
  return math.ceil((need - level) / per_min), nil
end
local rw, rl = check('r', rpm, 1)
local tw, tl = check('t', tpm, tok)
if rw < 0 or tw < 0 then return reply(4, 0) end
if rw > 0 or tw > 0 then return reply(3, math.max(rw, tw)) end
if qcap >= 0 and queued + ch > qcap then return reply(5, 0) end
-- A call alone above the budget goes through: the engine refuses what can never fit.
if budget > 0 and held_tok > 0 and held_tok + tok > budget then return reply(6, 0) end

if rl ~= nil then redis.call('HSET', KEYS[1], 'rl', int(rl), 'rt', int(now), 'rr', int(rpm)) end
if tl ~= nil then redis.call('HSET', KEYS[1], 'tl', int(tl), 'tt', int(now), 'tr', int(tpm)) end
if rl ~= nil or tl ~= nil then redis.call('PEXPIRE', KEYS[1], 120000) end
redis.call('HINCRBY', KEYS[2], R .. '|tok', int(tok))
redis.call('HINCRBY', KEYS[2], R .. '|nano', int(nano))
redis.call('HINCRBY', KEYS[2], R .. '|q', int(ch))
redis.call('SADD', KEYS[6], KEYS[2])
return reply(0, 0)
)lua";
  return kScript;
}

const std::string& SyncScript() {
  static const std::string kScript = std::string(kNow) + R"lua(
local R, mode, epoch = ARGV[1], ARGV[2], ARGV[8]
local kinds = {'tok', 'nano', 'q'}
for i = 1, 3 do
  local f = R .. '|' .. kinds[i]
  local v = tonumber(ARGV[2 + i])
  if mode == 'set' then
    if v > 0 then redis.call('HSET', KEYS[1], f, int(v)) else redis.call('HDEL', KEYS[1], f) end
  elseif v ~= 0 then
    if redis.call('HINCRBY', KEYS[1], f, int(v)) <= 0 then redis.call('HDEL', KEYS[1], f) end
  end
end
redis.call('SADD', KEYS[4], KEYS[1])
-- This process's total for the period on top of what earlier processes of the replica left
-- (or, when Redis has no figure of this replica for the period, on top of its ledger's `seed`).
local function put_used(key, total, ttl_ms, seed)
  if total < 0 then return end
  local mark = redis.call('HGET', key, R .. '|e')
  local base = nil
  if mark then
    local sep = string.find(mark, ':', 1, true)
    if sep and string.sub(mark, 1, sep - 1) == epoch then base = tonumber(string.sub(mark, sep + 1)) end
  end
  if base == nil then
    local cur = redis.call('HGET', key, R)
    if cur then base = tonumber(cur) else base = seed end
    redis.call('HSET', key, R .. '|e', epoch .. ':' .. int(base))
  end
  redis.call('HSET', key, R, int(base + total))
  redis.call('PEXPIRE', key, ttl_ms)
end
put_used(KEYS[2], tonumber(ARGV[6]), 2 * 86400000, tonumber(ARGV[9]))
put_used(KEYS[3], tonumber(ARGV[7]), 40 * 86400000, tonumber(ARGV[10]))
return 0
)lua";
  return kScript;
}

const std::string& HeartbeatScript() {
  static const std::string kScript = std::string(kNow) + R"lua(
local prev = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local lapsed = 0
if (not prev) or tonumber(prev) <= now then lapsed = 1 end
return {redis.call('ZCARD', KEYS[1]), lapsed}
)lua";
  return kScript;
}

const std::string& RegisterScript() {
  static const std::string kScript = std::string(kNow) + R"lua(
local R = ARGV[1]
for _, key in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  redis.call('HDEL', key, R .. '|tok', R .. '|nano', R .. '|q')
end
redis.call('DEL', KEYS[2])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), R)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return {redis.call('ZCARD', KEYS[1])}
)lua";
  return kScript;
}

}  // namespace llmux::cluster
