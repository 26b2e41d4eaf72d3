// tenants.yaml: parse, validate, apply defaults; and the checks the daemon runs on a policy.
#include <limits>
#include <map>
#include <set>

#include "config/quote.h"
#include "config/yaml_reader.h"
#include "llmux/tenant_policy.h"

namespace llmux {
namespace {

using config_internal::ErrorSink;
using config_internal::IsValidName;
using config_internal::MapReader;
using config_internal::QuoteValue;
using config_internal::Value;

constexpr std::int64_t kMaxTokens = std::numeric_limits<std::int64_t>::max() / 4;
const char kNameRule[] = "1-64 of [A-Za-z0-9_-], starting with a letter or digit";

std::vector<Lane> ReadLanes(const Value& list) {
  std::vector<Lane> lanes;
  std::set<std::string> seen;
  for (const Value& item : list.Elements()) {
    MapReader m(item);
    Lane lane;
    if (auto v = m.Get("name")) {
      lane.name = v->String("");
      if (!IsValidName(lane.name)) {
        v->Error("invalid lane name " + QuoteValue(lane.name) + " (" + kNameRule + ")");
      } else if (!seen.insert(lane.name).second) {
        v->Error("duplicate lane " + QuoteValue(lane.name));
      }
    } else {
      item.Error("missing required key \"name\"");
    }
    lane.max_wait = m.Duration("max_wait", Millis(0));
    if (auto v = m.Get("order")) {
      const std::string order = v->String("fair_share");
      if (order == "arrival") {
        lane.arrival_order = true;
      } else if (order != "fair_share") {
        v->Error("expected \"fair_share\" or \"arrival\", got " + QuoteValue(order));
      }
    }
    m.Finish();
    lanes.push_back(std::move(lane));
  }
  if (list.node().IsSequence() && lanes.empty()) list.Error("must define at least one lane");
  return lanes;
}

std::string LaneList(const std::vector<Lane>& lanes) {
  std::string out;
  for (const Lane& l : lanes) out += (out.empty() ? "" : ", ") + l.name;
  return out;
}

class TenantReader {
 public:
  TenantReader(const std::vector<Lane>& lanes, std::map<KeyHash, std::string>* key_owner)
      : lanes_(lanes), key_owner_(key_owner) {}

  TenantConfig Read(const std::string& name, const Value& value) {
    TenantConfig t;
    t.name = name;
    MapReader m(value);
    ReadKeys(m, t);
    ReadLane(m, t);
    t.weight = static_cast<int>(m.Int("weight", t.weight, 1, 1000000));
    t.max_inflight_tokens = m.Int("max_inflight_tokens", t.max_inflight_tokens, 1, kMaxTokens);
    t.max_queued_requests =
        static_cast<int>(m.Int("max_queued_requests", t.max_queued_requests, 0, 1000000));
    t.max_queue_wait = m.Duration("max_queue_wait", t.max_queue_wait);
    t.max_tokens_per_request = m.OptionalInt("max_tokens_per_request", 1, kMaxTokens);
    t.max_prompt_tokens = m.OptionalInt("max_prompt_tokens", 1, kMaxTokens);
    if (auto v = m.Get("rate_limit"); v && !v->is_null()) {
      MapReader r(*v);
      t.rate_limit.requests_per_minute = r.Int("requests_per_minute", 0, 0, 1000000000);
      t.rate_limit.tokens_per_minute = r.Int("tokens_per_minute", 0, 0, 1000000000000LL);
      r.Finish();
    }
    if (auto v = m.Get("reserved"); v && !v->is_null()) {
      MapReader r(*v);
      t.reserved.kv_tokens = r.Int("kv_tokens", 0, 0, kMaxTokens);
      t.reserved.seqs = r.Int("seqs", 0, 0, 1 << 20);
      r.Finish();
    }
    ReadPrefixCache(m, t);
    t.zero_kv_on_free = m.Bool("zero_kv_on_free", t.zero_kv_on_free);
    ReadModels(m, t);
    t.log_prompts = m.Bool("log_prompts", t.log_prompts);
    if (auto v = m.Get("pool")) {
      t.pool = v->String(t.pool);
      if (!IsValidName(t.pool)) {
        v->Error("invalid pool name " + QuoteValue(t.pool) + " (" + kNameRule + ")");
      }
    }
    if (auto v = m.Get("prices"); v && !v->is_null()) {
      MapReader p(*v);
      t.prices.input_nano_per_mtok = p.DecimalNano("input_per_mtok", 0);
      t.prices.output_nano_per_mtok = p.DecimalNano("output_per_mtok", 0);
      t.prices.cached_nano_per_mtok =
          p.DecimalNano("cached_per_mtok", t.prices.input_nano_per_mtok);
      p.Finish();
    }
    ReadCapacityPrices(m, t);
    ReadServiceTiers(m, t);
    if (auto v = m.Get("quota"); v && !v->is_null()) {
      MapReader q(*v);
      Quota quota;
      quota.tokens_per_day = q.OptionalInt("tokens_per_day", 1, kMaxTokens);
      quota.spend_per_month_nano = q.OptionalDecimalNano("spend_per_month");
      q.Finish();
      t.quota = quota;
    }
    m.Finish();
    return t;
  }

 private:
  void ReadKeys(MapReader& m, TenantConfig& t) {
    auto list = m.Get("api_keys");
    if (!list || list->is_null()) return;
    for (const Value& item : list->Elements()) {
      MapReader k(item);
      if (auto v = k.Get("sha256")) {
        const KeyHash hash = v->Sha256Hex();
        if (v->node().IsScalar() && ParseKeyHashHex(v->node().Scalar()).ok()) {
          auto [it, inserted] = key_owner_->emplace(hash, t.name);
          if (!inserted) {
            v->Error(it->second == t.name
                         ? std::string("duplicate key hash")
                         : "key hash already used by tenant \"" + it->second + "\"");
          }
        }
        t.api_keys.push_back(hash);
      } else {
        item.Error("missing required key \"sha256\"");
      }
      k.Finish();
    }
  }

  void ReadLane(MapReader& m, TenantConfig& t) {
    t.lane_index = static_cast<int>(lanes_.size()) - 1;
    t.lane = lanes_.empty() ? "" : lanes_.back().name;
    auto v = m.Get("lane");
    if (!v) return;
    const std::string lane = v->String("");
    for (size_t i = 0; i < lanes_.size(); ++i) {
      if (lanes_[i].name == lane) {
        t.lane = lane;
        t.lane_index = static_cast<int>(i);
        return;
      }
    }
    v->Error("unknown lane " + QuoteValue(lane) + " (lanes: " + LaneList(lanes_) + ")");
  }

  static Prices ReadPrices(const Value& v) {
    MapReader p(v);
    Prices prices;
    prices.input_nano_per_mtok = p.DecimalNano("input_per_mtok", 0);
    prices.output_nano_per_mtok = p.DecimalNano("output_per_mtok", 0);
    prices.cached_nano_per_mtok = p.DecimalNano("cached_per_mtok", prices.input_nano_per_mtok);
    p.Finish();
    return prices;
  }

  // capacity_prices: {reserved_kv_per_1k_tokens_hour, reserved_seq_per_hour,
  // dedicated_pool_per_hour}. Read after `pool`, which decides whether the pool price applies.
  void ReadCapacityPrices(MapReader& m, TenantConfig& t) {
    auto v = m.Get("capacity_prices");
    if (!v || v->is_null()) return;
    MapReader c(*v);
    t.capacity_prices.reserved_kv_nano_per_1k_tokens_hour =
        c.DecimalNano("reserved_kv_per_1k_tokens_hour", 0);
    t.capacity_prices.reserved_seq_nano_per_hour = c.DecimalNano("reserved_seq_per_hour", 0);
    if (auto d = c.Get("dedicated_pool_per_hour")) {
      t.capacity_prices.dedicated_pool_nano_per_hour = d->DecimalNano(0);
      if (t.capacity_prices.dedicated_pool_nano_per_hour > 0 && t.pool == "shared") {
        d->Error("the tenant runs on the shared pool; a pool price needs `pool:` naming a "
                 "dedicated pool");
      }
    }
    c.Finish();
  }

  // service_tiers: {priority: LANE, flex: {lane: LANE, prices: {...}}}
  void ReadServiceTiers(MapReader& m, TenantConfig& t) {
    auto v = m.Get("service_tiers");
    if (!v || v->is_null()) return;
    MapReader tiers(*v);
    for (auto& [tier, value] : tiers.All()) {
      if (tier != "priority" && tier != "flex") {
        value.Error("unknown service tier " + QuoteValue(tier) +
                    " (priority or flex; auto and default use the tenant's lane)");
        continue;
      }
      ServiceTier st;
      std::optional<Value> lane_value;
      if (value.node().IsMap()) {
        MapReader e(value);
        lane_value = e.Get("lane");
        if (!lane_value) value.Error("missing required key \"lane\"");
        if (auto p = e.Get("prices"); p && !p->is_null()) st.prices = ReadPrices(*p);
        e.Finish();
      } else {
        lane_value = value;
      }
      if (!lane_value) continue;
      st.lane = lane_value->String("");
      bool found = false;
      for (size_t i = 0; i < lanes_.size(); ++i) {
        if (lanes_[i].name == st.lane) {
          st.lane_index = static_cast<int>(i);
          found = true;
        }
      }
      if (!found) {
        lane_value->Error("unknown lane " + QuoteValue(st.lane) + " (lanes: " + LaneList(lanes_) + ")");
        continue;
      }
      t.service_tiers[tier] = std::move(st);
    }
  }

  void ReadPrefixCache(MapReader& m, TenantConfig& t) {
    auto v = m.Get("prefix_cache");
    if (!v) return;
    const std::string s = v->String("private");
    if (s == "private") {
      t.prefix_cache = {PrefixCachePolicy::Mode::kPrivate, ""};
    } else if (s == "off") {
      t.prefix_cache = {PrefixCachePolicy::Mode::kOff, ""};
    } else if (s.rfind("shared:", 0) == 0 && IsValidName(s.substr(7))) {
      t.prefix_cache = {PrefixCachePolicy::Mode::kShared, s.substr(7)};
    } else {
      v->Error("expected \"private\", \"off\" or \"shared:GROUP\", got " + QuoteValue(s));
    }
  }

  void ReadModels(MapReader& m, TenantConfig& t) {
    auto v = m.Get("models");
    if (!v) return;
    t.models.clear();
    for (const Value& item : v->Elements()) {
      std::string pattern = item.String("");
      if (pattern.empty()) {
        item.Error("must not be empty");
      } else {
        t.models.push_back(std::move(pattern));
      }
    }
    if (v->node().IsSequence() && v->node().size() == 0) {
      v->Error("must list at least one model (\"*\" allows any)");
    }
  }

  const std::vector<Lane>& lanes_;
  std::map<KeyHash, std::string>* key_owner_;
};

bool GlobMatch(std::string_view pattern, std::string_view text) {
  // Iterative '*' matcher with single backtrack point (linear in practice, no recursion).
  size_t p = 0, t = 0, star = std::string_view::npos, mark = 0;
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = t;
    } else if (p < pattern.size() && pattern[p] == text[t]) {
      ++p;
      ++t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

}  // namespace

const TenantConfig* TenantPolicy::Find(std::string_view tenant) const {
  auto it = tenants.find(std::string(tenant));
  return it == tenants.end() ? nullptr : &it->second;
}

namespace {

// `source` is recorded in the policy (the absolute path when loaded from a file).
StatusOr<std::shared_ptr<const TenantPolicy>> Parse(std::string_view text,
                                                    std::string_view source_name,
                                                    std::filesystem::path source) {
  ErrorSink sink{std::string(source_name)};
  std::optional<YAML::Node> root = config_internal::ParseDocument(text, sink);
  if (!root) return sink.ToStatus();
  if (root->IsNull()) {
    // NOTE: an empty tenants file is far more likely a write in progress than an intent to
    // serve nobody; refusing it keeps a hot reload from wiping every tenant.
    sink.Add(YAML::Mark(), "(document)", "the file is empty");
    return sink.ToStatus();
  }
  auto policy = std::make_shared<TenantPolicy>();
  policy->source = std::move(source);
  try {
    MapReader top(Value(&sink, *root, ""));
    if (auto v = top.Get("lanes"); v && !v->is_null()) {
      policy->lanes = ReadLanes(*v);
    } else {
      policy->lanes = {Lane{"standard", Millis(0)}};
    }
    std::map<KeyHash, std::string> key_owner;
    TenantReader reader(policy->lanes, &key_owner);
    if (auto v = top.Get("tenants"); v && !v->is_null()) {
      MapReader tenants(*v);
      for (auto& [name, value] : tenants.All()) {
        if (!IsValidName(name)) {
          value.Error("invalid tenant name " + QuoteValue(name) + " (" + kNameRule + ")");
        }
        policy->tenants.emplace(name, reader.Read(name, value));
      }
    }
    top.Finish();
  } catch (const YAML::Exception& e) {
    sink.Add(e.mark, "(document)", e.msg);
  } catch (const std::exception& e) {
    sink.Add(YAML::Mark::null_mark(), "(document)", e.what());
  }
  LLMUX_RETURN_IF_ERROR(sink.ToStatus());
  return std::shared_ptr<const TenantPolicy>(std::move(policy));
}

}  // namespace

StatusOr<std::shared_ptr<const TenantPolicy>> ParseTenantPolicy(
    std::string_view text, std::string_view source_name, const std::filesystem::path& source) {
  return Parse(text, source_name, source);
}

StatusOr<std::shared_ptr<const TenantPolicy>> LoadTenantPolicy(const std::filesystem::path& path) {
  LLMUX_ASSIGN_OR_RETURN(std::string text, ReadConfigFile(path));
  std::error_code ec;
  return Parse(text, path.string(), std::filesystem::absolute(path, ec).lexically_normal());
}

bool ModelAllowed(const TenantConfig& tenant, std::string_view model) {
  for (const std::string& pattern : tenant.models) {
    if (GlobMatch(pattern, model)) return true;
  }
  return false;
}

Reservation TotalReserved(const TenantPolicy& policy, std::string_view pool) {
  Reservation total;
  for (const auto& [name, t] : policy.tenants) {
    if (t.pool != pool) continue;
    total.kv_tokens += t.reserved.kv_tokens;
    total.seqs += t.reserved.seqs;
  }
  return total;
}

Status CheckPolicyFitsEngine(const TenantPolicy& policy, const EngineSection& engine) {
  const Reservation total = TotalReserved(policy, "shared");
  auto who = [&](bool kv) {
    std::string out;
    for (const auto& [name, t] : policy.tenants) {
      const std::int64_t r = kv ? t.reserved.kv_tokens : t.reserved.seqs;
      if (t.pool != "shared" || r == 0) continue;
      out += (out.empty() ? "" : ", ") + name + " " + std::to_string(r);
    }
    return out;
  };
  if (total.kv_tokens > engine.kv_cache_tokens) {
    return FailedPrecondition(policy.source.string() + ": reserved.kv_tokens of the shared pool " +
                              "total " + std::to_string(total.kv_tokens) + " (" + who(true) +
                              ") exceeds engine.kv_cache_tokens " +
                              std::to_string(engine.kv_cache_tokens));
  }
  if (total.seqs > engine.max_seqs) {
    return FailedPrecondition(policy.source.string() + ": reserved.seqs of the shared pool " +
                              "total " + std::to_string(total.seqs) + " (" + who(false) +
                              ") exceeds engine.max_seqs " + std::to_string(engine.max_seqs));
  }
  return Status::Ok();
}

Status CheckNoAdminKeyReuse(const TenantPolicy& policy, const std::vector<AdminKey>& admin_keys) {
  for (const auto& [name, t] : policy.tenants) {
    for (const KeyHash& k : t.api_keys) {
      for (const AdminKey& a : admin_keys) {
        if (a.sha256 == k) {
          return InvalidArgument(policy.source.string() + ": tenant \"" + name +
                                 "\" uses an admin key (server.admin_api_keys)");
        }
      }
    }
  }
  return Status::Ok();
}

}  // namespace llmux
