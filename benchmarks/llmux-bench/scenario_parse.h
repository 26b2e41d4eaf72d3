// llmux-bench: scenario YAML -> Scenario. Header-only (tested by unit_tools). yaml-cpp throws;
// every call into it is wrapped here and turned into an InvalidArgument naming the key.
#pragma once

#include <yaml-cpp/yaml.h>

#include <set>
#include <stdexcept>
#include <string>

#include "scenario.h"

namespace llmux::bench {
namespace scenario_internal {

// Thrown inside the parser only; ParseScenario converts it to a Status.
struct ParseError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] inline void Fail(const std::string& path, const std::string& what) {
  throw ParseError(path + ": " + what);
}

inline void OnlyKeys(const YAML::Node& n, const std::string& path, std::set<std::string> allowed) {
  if (!n.IsMap()) Fail(path, "must be a map");
  for (const auto& kv : n) {
    const std::string k = kv.first.as<std::string>();
    if (!allowed.count(k)) Fail(path + "." + k, "unknown key");
  }
}

template <typename T>
T Get(const YAML::Node& n, const std::string& path) {
  if (!n.IsScalar()) Fail(path, "must be a scalar");
  try {
    return n.as<T>();
  } catch (const YAML::Exception&) {
    Fail(path, "has the wrong type (\"" + n.Scalar() + "\")");
  }
}

inline double Seconds(const YAML::Node& n, const std::string& path) {
  const std::string s = Get<std::string>(n, path);
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    Fail(path, "invalid duration \"" + s + "\"");
  }
  const std::string unit = s.substr(used);
  if (unit == "ms") v /= 1000;
  else if (unit == "m") v *= 60;
  else if (unit != "s" && !unit.empty()) Fail(path, "invalid duration unit \"" + unit + "\"");
  if (v < 0) Fail(path, "must not be negative");
  return v;
}

inline LengthDist Length(const YAML::Node& n, const std::string& path) {
  LengthDist d;
  if (n.IsScalar()) {
    d.value = Get<int64_t>(n, path);
    if (d.value < 1) Fail(path, "must be >= 1");
    return d;
  }
  OnlyKeys(n, path, {"fixed", "uniform", "sharegpt"});
  if (n.size() != 1) Fail(path, "needs exactly one of fixed, uniform, sharegpt");
  if (n["fixed"]) return Length(n["fixed"], path + ".fixed");
  if (const YAML::Node u = n["uniform"]) {
    if (!u.IsSequence() || u.size() != 2) Fail(path + ".uniform", "must be [min, max]");
    d.kind = LengthDist::Kind::kUniform;
    d.min = Get<int64_t>(u[0], path + ".uniform[0]");
    d.max = Get<int64_t>(u[1], path + ".uniform[1]");
  } else {
    const YAML::Node g = n["sharegpt"];
    const std::string gp = path + ".sharegpt";
    d.kind = LengthDist::Kind::kShareGpt;
    d.min = 4;
    d.max = 1024;
    if (!g.IsNull()) {
      OnlyKeys(g, gp, {"mean", "sigma", "min", "max"});
      if (g["mean"]) d.mean = Get<double>(g["mean"], gp + ".mean");
      if (g["sigma"]) d.sigma = Get<double>(g["sigma"], gp + ".sigma");
      if (g["min"]) d.min = Get<int64_t>(g["min"], gp + ".min");
      if (g["max"]) d.max = Get<int64_t>(g["max"], gp + ".max");
    }
    if (d.mean <= 0 || d.sigma < 0) Fail(gp, "needs mean > 0 and sigma >= 0");
  }
  if (d.min < 1 || d.max < d.min) Fail(path, "needs 1 <= min <= max");
  return d;
}

inline TenantLoad Tenant(const std::string& name, const YAML::Node& n, const std::string& path) {
  OnlyKeys(n, path, {"key", "rate", "concurrency", "prompt_len", "output_len", "ignore_eos",
                     "weight", "start", "slo", "process"});
  TenantLoad t;
  t.name = name;
  if (!n["key"]) Fail(path + ".key", "is required");
  t.key = Get<std::string>(n["key"], path + ".key");
  if (n["rate"]) t.rate = Get<double>(n["rate"], path + ".rate");
  if (n["concurrency"]) t.concurrency = Get<int>(n["concurrency"], path + ".concurrency");
  if ((t.rate > 0) == (t.concurrency > 0)) {
    Fail(path, "needs exactly one of rate (> 0 requests/s) or concurrency (> 0)");
  }
  if (t.rate < 0 || t.concurrency < 0) Fail(path, "rate and concurrency must not be negative");
  if (n["prompt_len"]) t.prompt_len = Length(n["prompt_len"], path + ".prompt_len");
  if (n["output_len"]) t.output_len = Length(n["output_len"], path + ".output_len");
  if (n["ignore_eos"]) t.ignore_eos = Get<bool>(n["ignore_eos"], path + ".ignore_eos");
  if (n["weight"]) t.weight = Get<double>(n["weight"], path + ".weight");
  if (t.weight <= 0) Fail(path + ".weight", "must be > 0");
  if (n["start"]) t.start_s = Seconds(n["start"], path + ".start");
  if (n["process"]) {
    const std::string p = Get<std::string>(n["process"], path + ".process");
    if (p != "own" && p != "shared") Fail(path + ".process", "must be own or shared");
    t.own_process = p == "own";
  }
  if (const YAML::Node s = n["slo"]) {
    OnlyKeys(s, path + ".slo", {"ttft_ms", "tpot_ms", "e2el_ms"});
    if (s["ttft_ms"]) t.slo.ttft_ms = Get<double>(s["ttft_ms"], path + ".slo.ttft_ms");
    if (s["tpot_ms"]) t.slo.tpot_ms = Get<double>(s["tpot_ms"], path + ".slo.tpot_ms");
    if (s["e2el_ms"]) t.slo.e2el_ms = Get<double>(s["e2el_ms"], path + ".slo.e2el_ms");
  }
  return t;
}

inline Run ParseRun(const YAML::Node& n, const std::string& path, const Scenario& sc) {
  OnlyKeys(n, path, {"name", "tenants", "duration", "max_requests", "engine"});
  Run r;
  if (!n["name"]) Fail(path + ".name", "is required");
  r.name = Get<std::string>(n["name"], path + ".name");
  if (const YAML::Node t = n["tenants"]) {
    if (!t.IsSequence()) Fail(path + ".tenants", "must be a list of tenant names");
    for (size_t i = 0; i < t.size(); ++i) {
      const std::string name = Get<std::string>(t[i], path + ".tenants");
      if (!sc.FindTenant(name)) Fail(path + ".tenants", "unknown tenant \"" + name + "\"");
      r.tenants.push_back(name);
    }
  } else {
    for (const TenantLoad& t : sc.tenants) r.tenants.push_back(t.name);
  }
  if (n["duration"]) r.duration_s = Seconds(n["duration"], path + ".duration");
  if (n["max_requests"]) r.max_requests = Get<int64_t>(n["max_requests"], path + ".max_requests");
  if (const YAML::Node e = n["engine"]) {
    if (!e.IsMap()) Fail(path + ".engine", "must be a map of llmux.yaml engine keys");
    for (const auto& kv : e) {
      const std::string k = kv.first.as<std::string>();
      r.engine[k] = Get<std::string>(kv.second, path + ".engine." + k);
    }
  }
  return r;
}

inline Check ParseCheck(const YAML::Node& n, const std::string& path, const Scenario& sc) {
  OnlyKeys(n, path, {"kind", "run", "baseline", "tenant", "max", "min", "tolerance"});
  Check c;
  if (!n["kind"] || !n["run"]) Fail(path, "needs kind and run");
  c.kind = Get<std::string>(n["kind"], path + ".kind");
  static const std::set<std::string> kKinds = {"ttft_p99_ratio",      "errors",
                                               "fair_share",          "throughput_ratio",
                                               "inflight_high_water", "fifo_ttft_p99_ratio",
                                               "fifo_throughput_ratio", "server_ttft_p99_ratio"};
  if (!kKinds.count(c.kind)) Fail(path + ".kind", "unknown check \"" + c.kind + "\"");
  c.run = Get<std::string>(n["run"], path + ".run");
  if (n["baseline"]) c.baseline = Get<std::string>(n["baseline"], path + ".baseline");
  if (n["tenant"]) c.tenant = Get<std::string>(n["tenant"], path + ".tenant");
  if (n["max"]) c.max = Get<double>(n["max"], path + ".max");
  if (n["min"]) c.min = Get<double>(n["min"], path + ".min");
  if (n["tolerance"]) c.tolerance = Get<double>(n["tolerance"], path + ".tolerance");
  auto has_run = [&](const std::string& r) {
    for (const Run& x : sc.runs) {
      if (x.name == r) return true;
    }
    return false;
  };
  if (!has_run(c.run)) Fail(path + ".run", "unknown run \"" + c.run + "\"");
  const bool needs_baseline = c.kind == "ttft_p99_ratio" || c.kind == "throughput_ratio" ||
                              c.kind == "server_ttft_p99_ratio";
  if (needs_baseline && !has_run(c.baseline)) Fail(path + ".baseline", "unknown run \"" + c.baseline + "\"");
  const bool needs_tenant = c.kind != "fair_share" && c.kind != "throughput_ratio";
  if (needs_tenant && !sc.FindTenant(c.tenant)) Fail(path + ".tenant", "unknown tenant \"" + c.tenant + "\"");
  return c;
}

}  // namespace scenario_internal

// Parses a scenario from YAML text. Returns InvalidArgument naming the key path on any error;
// unknown keys are errors, so a typo never silently becomes a default.
inline StatusOr<Scenario> ParseScenario(const std::string& yaml_text) {
  using namespace scenario_internal;  // NOLINT(google-build-using-namespace)
  try {
    const YAML::Node root = YAML::Load(yaml_text);
    OnlyKeys(root, "(scenario)", {"name", "description", "seed", "model", "api", "prompt", "token_ids",
                                  "drain", "service_weights", "admin_key", "server", "tenants", "runs",
                                  "checks", "ablate", "flood_nice"});
    Scenario sc;
    if (!root["name"]) Fail("name", "is required");
    sc.name = Get<std::string>(root["name"], "name");
    if (root["description"]) sc.description = Get<std::string>(root["description"], "description");
    if (root["seed"]) sc.seed = Get<uint64_t>(root["seed"], "seed");
    if (root["model"]) sc.model_shape = Get<std::string>(root["model"], "model");
    if (root["api"]) sc.api = Get<std::string>(root["api"], "api");
    if (sc.api != "completions" && sc.api != "chat") Fail("api", "must be completions or chat");
    if (root["prompt"]) sc.prompt = Get<std::string>(root["prompt"], "prompt");
    if (sc.prompt != "ids" && sc.prompt != "text") Fail("prompt", "must be ids or text");
    if (sc.prompt == "ids" && sc.api == "chat") Fail("prompt", "token-id prompts need api: completions");
    if (const YAML::Node t = root["token_ids"]) {
      if (!t.IsSequence() || t.size() != 2) Fail("token_ids", "must be [min, max]");
      sc.token_id_min = Get<int64_t>(t[0], "token_ids[0]");
      sc.token_id_max = Get<int64_t>(t[1], "token_ids[1]");
      if (sc.token_id_min < 0 || sc.token_id_max < sc.token_id_min) Fail("token_ids", "needs 0 <= min <= max");
    }
    if (root["drain"]) sc.drain_s = Seconds(root["drain"], "drain");
    if (root["flood_nice"]) {
      sc.flood_nice = Get<int>(root["flood_nice"], "flood_nice");
      if (sc.flood_nice < 0 || sc.flood_nice > 19) Fail("flood_nice", "must be 0..19");
    }
    if (const YAML::Node w = root["service_weights"]) {
      OnlyKeys(w, "service_weights", {"prefill", "decode"});
      if (w["prefill"]) sc.prefill_weight = Get<double>(w["prefill"], "service_weights.prefill");
      if (w["decode"]) sc.decode_weight = Get<double>(w["decode"], "service_weights.decode");
    }
    if (root["admin_key"]) sc.admin_key = Get<std::string>(root["admin_key"], "admin_key");
    if (const YAML::Node s = root["server"]) {
      OnlyKeys(s, "server", {"llmux_yaml", "tenants_yaml"});
      if (s["llmux_yaml"]) sc.llmux_yaml = Get<std::string>(s["llmux_yaml"], "server.llmux_yaml");
      if (s["tenants_yaml"]) sc.tenants_yaml = Get<std::string>(s["tenants_yaml"], "server.tenants_yaml");
    }
    const YAML::Node tenants = root["tenants"];
    if (!tenants || !tenants.IsMap() || tenants.size() == 0) Fail("tenants", "needs at least one tenant");
    for (const auto& kv : tenants) {
      const std::string name = kv.first.as<std::string>();
      sc.tenants.push_back(Tenant(name, kv.second, "tenants." + name));
    }
    const YAML::Node runs = root["runs"];
    if (runs) {
      if (!runs.IsSequence()) Fail("runs", "must be a list");
      for (size_t i = 0; i < runs.size(); ++i) {
        sc.runs.push_back(ParseRun(runs[i], "runs[" + std::to_string(i) + "]", sc));
      }
    } else {
      sc.runs.push_back(ParseRun(YAML::Load("{name: main}"), "runs[0]", sc));
    }
    std::set<std::string> names;
    for (const Run& r : sc.runs) {
      if (!names.insert(r.name).second) Fail("runs", "duplicate run name \"" + r.name + "\"");
    }
    if (const YAML::Node ab = root["ablate"]) {
      if (!ab.IsSequence()) Fail("ablate", "must be a list (of: fifo)");
      for (size_t i = 0; i < ab.size(); ++i) {
        const std::string a = Get<std::string>(ab[i], "ablate");
        if (a != "fifo") Fail("ablate", "unknown ablation \"" + a + "\" (known: fifo)");
        sc.ablate.push_back(a);
      }
    }
    if (const YAML::Node checks = root["checks"]) {
      if (!checks.IsSequence()) Fail("checks", "must be a list");
      for (size_t i = 0; i < checks.size(); ++i) {
        sc.checks.push_back(ParseCheck(checks[i], "checks[" + std::to_string(i) + "]", sc));
      }
    }
    return sc;
  } catch (const ParseError& e) {
    return InvalidArgument(e.what());
  } catch (const YAML::Exception& e) {
    return InvalidArgument(std::string("scenario YAML: ") + e.what());
  }
}

}  // namespace llmux::bench
