// llmux.yaml: parse, validate, apply defaults.
#include <algorithm>
#include <cctype>
#include <limits>
#include <set>

#include "config/quote.h"
#include "config/yaml_reader.h"
#include "llmux/config.h"

namespace llmux {
namespace {

using config_internal::ErrorSink;
using config_internal::MapReader;
using config_internal::QuoteValue;
using config_internal::Value;

constexpr std::int64_t kInt32Max = std::numeric_limits<int>::max();
constexpr std::int64_t kInt64Max = std::numeric_limits<std::int64_t>::max();

// "HOST:PORT" or "[IPV6]:PORT" with PORT in 0..65535 (0 = an ephemeral port, for tests and
// for a launcher that reads the bound port from the log); an error message otherwise.
std::optional<std::string> CheckListenAddress(std::string_view addr) {
  const size_t colon = addr.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return "expected \"HOST:PORT\" (e.g. \"127.0.0.1:8080\"), got " + QuoteValue(addr);
  }
  const std::string_view host = addr.substr(0, colon);
  const std::string_view port = addr.substr(colon + 1);
  if (host.front() == '[' ? host.back() != ']' || host.size() < 3
                          : host.find(':') != std::string_view::npos) {
    return "an IPv6 host must be in brackets (\"[::1]:8080\"), got " + QuoteValue(addr);
  }
  int port_value = 0;
  bool port_ok = !port.empty() && port.size() <= 5;
  for (char c : port) {
    port_ok = port_ok && c >= '0' && c <= '9';
    if (port_ok) port_value = port_value * 10 + (c - '0');
  }
  if (!port_ok || port_value > 65535) {
    return "port must be 0..65535, got " + QuoteValue(port);
  }
  return std::nullopt;
}

// "" or an HTTP field name (RFC 9110 token) that is not one llmux reads itself; an error
// message otherwise.
std::optional<std::string> CheckHeaderName(std::string_view name) {
  if (name.empty()) return std::nullopt;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    if (!ok) return "expected an HTTP header name (e.g. \"X-Tenant-ID\"), got " + QuoteValue(name);
  }
  std::string lower(name);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const char* reserved : {"authorization", "host", "content-length", "content-type",
                               "connection", "transfer-encoding", "x-forwarded-for", "forwarded"}) {
    if (lower == reserved) return "cannot be " + QuoteValue(name) + " (llmux reads it itself)";
  }
  return std::nullopt;
}

std::filesystem::path Resolve(const std::filesystem::path& base, const std::string& p) {
  if (p.empty()) return {};
  std::filesystem::path path(p);
  return (path.is_absolute() ? path : base / path).lexically_normal();
}

std::vector<AdminKey> ReadKeyList(const Value& list, std::set<KeyHash>* seen) {
  std::vector<AdminKey> keys;
  for (const Value& item : list.Elements()) {
    MapReader m(item);
    AdminKey key;
    if (auto v = m.Get("sha256")) {
      key.sha256 = v->Sha256Hex();
      if (!seen->insert(key.sha256).second) v->Error("duplicate key hash");
    } else {
      item.Error("missing required key \"sha256\"");
    }
    m.Finish();
    keys.push_back(key);
  }
  return keys;
}

void ReadServer(MapReader& m, ServerSection& s) {
  if (auto v = m.Get("listen")) {
    s.listen = v->String(s.listen);
    if (auto err = CheckListenAddress(s.listen)) v->Error(*err);
  }
  s.io_threads = static_cast<int>(m.Int("io_threads", s.io_threads, 1, 1024));
  s.planning_threads = static_cast<int>(m.Int("planning_threads", s.planning_threads, 1, 256));
  s.planning_queue = static_cast<int>(m.Int("planning_queue", s.planning_queue, 1, 1 << 20));
  s.planning_oldest_every =
      static_cast<int>(m.Int("planning_oldest_every", s.planning_oldest_every, 0, 1 << 20));
  s.max_body_bytes = m.Int("max_body_bytes", s.max_body_bytes, 1, kInt64Max);
  s.max_header_bytes = m.Int("max_header_bytes", s.max_header_bytes, 1, kInt32Max);
  s.read_timeout = m.Duration("read_timeout", s.read_timeout);
  s.idle_timeout = m.Duration("idle_timeout", s.idle_timeout);
  s.write_timeout = m.Duration("write_timeout", s.write_timeout);
  s.max_stream_queue_bytes =
      m.Int("max_stream_queue_bytes", s.max_stream_queue_bytes, 4096, kInt64Max / 2);
  s.drain_timeout = m.Duration("drain_timeout", s.drain_timeout);
  if (auto v = m.Get("drain_grace")) {
    s.drain_grace = v->Duration(s.drain_grace);
    if (s.drain_grace > s.drain_timeout) {
      v->Error("must not exceed server.drain_timeout (" +
               std::to_string(s.drain_timeout.count()) + "ms)");
    }
  } else {
    s.drain_grace = std::min(s.drain_grace, s.drain_timeout);
  }
  if (auto v = m.Get("trusted_proxies"); v && !v->is_null()) {
    for (const Value& item : v->Elements()) {
      auto net = ParseIpNetwork(item.String(""));
      if (net.ok()) {
        s.trusted_proxies.push_back(*net);
      } else {
        item.Error(net.status().message());
      }
    }
  }
  if (auto v = m.Get("forwarded_header")) {
    const std::string h = v->String("");
    std::string lower = h;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (lower == "x-forwarded-for") {
      s.forwarded_header = ServerSection::ForwardedHeader::kXForwardedFor;
    } else if (lower == "forwarded") {
      s.forwarded_header = ServerSection::ForwardedHeader::kForwarded;
    } else {
      v->Error("expected \"X-Forwarded-For\" or \"Forwarded\", got " + QuoteValue(h));
    }
  }
  if (auto v = m.Get("tenant_header")) {
    s.tenant_header = v->String("");
    if (auto err = CheckHeaderName(s.tenant_header)) {
      v->Error(*err);
    } else if (!s.tenant_header.empty() && s.trusted_proxies.empty()) {
      v->Error("needs server.trusted_proxies: the header is believed only from those peers");
    }
  }
  s.max_connections = static_cast<int>(m.Int("max_connections", s.max_connections, 1, kInt32Max));
  s.max_n = static_cast<int>(m.Int("max_n", s.max_n, 1, 1024));
  s.max_stop_strings = static_cast<int>(m.Int("max_stop_strings", s.max_stop_strings, 0, 1024));
  s.max_auth_failures_per_minute = static_cast<int>(
      m.Int("max_auth_failures_per_minute", s.max_auth_failures_per_minute, 0, 1000000));
  if (auto v = m.Get("metrics_listen")) {
    s.metrics_listen = v->String("");
    if (!s.metrics_listen.empty()) {
      if (auto err = CheckListenAddress(s.metrics_listen)) {
        v->Error(*err);
      } else if (s.metrics_listen == s.listen) {
        v->Error("must differ from server.listen (\"\" serves /metrics there, admin key only)");
      }
    }
  }
  s.health_stall_timeout = m.Duration("health_stall_timeout", s.health_stall_timeout);
  if (auto v = m.Get("admin_api_keys"); v && !v->is_null()) {
    std::set<KeyHash> seen;
    s.admin_api_keys = ReadKeyList(*v, &seen);
  }
  m.Finish();
}

void ReadModel(MapReader& m, const std::filesystem::path& base, ModelSection& s) {
  if (auto v = m.Get("path")) {
    s.path = Resolve(base, v->String(""));
    s.path_origin = v->Where();
  }
  s.name = m.String("name", "");
  if (s.name.empty() && !s.path.empty()) {
    s.name = s.path.has_filename() ? s.path.filename().string()
                                   : s.path.parent_path().filename().string();
  }
  s.max_model_len = static_cast<int>(m.Int("max_model_len", 0, 0, kInt32Max));
  if (auto v = m.Get("quantize"); v && !v->is_null()) {
    const std::string q = v->String("");
    if (q == "q8_0") {
      s.quantize_q8_0 = true;
    } else if (q != "none") {
      v->Error("expected \"none\" or \"q8_0\", got " + QuoteValue(q));
    }
  }
  if (auto v = m.Get("chat_template"); v && !v->is_null()) {
    const std::string t = v->String("");
    if (t.empty()) {
      s.chat_template = {ChatTemplateSource::Kind::kModel, ""};
    } else if (t.rfind("builtin:", 0) == 0 && config_internal::IsValidName(t.substr(8))) {
      s.chat_template = {ChatTemplateSource::Kind::kBuiltin, t.substr(8)};
    } else if (t.rfind("file:", 0) == 0 && t.size() > 5) {
      s.chat_template = {ChatTemplateSource::Kind::kFile, Resolve(base, t.substr(5)).string()};
    } else {
      v->Error("expected \"\" (the model's own), \"builtin:NAME\" or \"file:PATH\", got " +
               QuoteValue(t));
    }
  }
  m.Finish();
}

// ZeroMQ endpoints the publisher can bind: tcp://HOST:PORT, ipc://PATH, inproc://NAME.
bool IsZmqEndpoint(const std::string& e) {
  for (const char* scheme : {"tcp://", "ipc://", "inproc://"}) {
    const std::string p(scheme);
    if (e.size() > p.size() && e.compare(0, p.size(), p) == 0) {
      if (p != "tcp://") return true;
      const size_t colon = e.rfind(':');
      if (colon <= p.size() || colon + 1 >= e.size()) return false;
      return e.find_first_not_of("0123456789", colon + 1) == std::string::npos;
    }
  }
  return false;
}

std::string ZmqEndpointError(const std::string& e) {
  return "expected a ZeroMQ endpoint such as \"tcp://127.0.0.1:5557\" (tcp://HOST:PORT, ipc://PATH "
         "or inproc://NAME), got " + QuoteValue(e);
}

void ReadEngine(MapReader& m, EngineSection& s) {
  if (auto v = m.Get("backend")) {
    const std::string b = v->String("cpu");
    if (b == "cpu") {
      s.backend = BackendKind::kCpu;
    } else if (b == "cuda") {
      s.backend = BackendKind::kCuda;
    } else {
      v->Error("expected \"cpu\" or \"cuda\", got " + QuoteValue(b));
    }
  }
  s.threads = static_cast<int>(m.Int("threads", s.threads, 1, 1024));
  if (auto v = m.Get("devices")) {
    std::vector<Value> items = v->Elements();
    if (v->node().IsSequence() && items.empty()) v->Error("must name at least one device");
    s.devices.clear();
    std::set<std::int64_t> seen;
    for (const Value& item : items) {
      const std::int64_t d = item.Int(-1, 0, 1023);
      if (d >= 0 && !seen.insert(d).second) item.Error("duplicate device");
      s.devices.push_back(static_cast<int>(d));
    }
  }
  s.block_size = static_cast<int>(m.Int("block_size", s.block_size, 1, 1024));
  std::optional<Value> kv_dtype = m.Get("kv_dtype");
  if (kv_dtype) {
    const std::string d = kv_dtype->String("f32");
    if (d == "f32") {
      s.kv_dtype = KvDType::kF32;
    } else if (d == "f16") {
      s.kv_dtype = KvDType::kF16;
    } else if (d == "bf16") {
      s.kv_dtype = KvDType::kBF16;
    } else {
      kv_dtype->Error("expected \"f32\", \"f16\" or \"bf16\", got " + QuoteValue(d));
    }
  }
  // NOTE: checked here, where a pool's own keys meet the ones it inherits: the CPU backend keeps
  // its cache in f32 or f16, the CUDA backend in bf16 only.
  const bool cuda = s.backend == BackendKind::kCuda;
  const bool fits = s.kv_dtype == KvDType::kBackendDefault ||
                    (cuda ? s.kv_dtype == KvDType::kBF16 : s.kv_dtype != KvDType::kBF16);
  if (!fits) {
    const std::string why = std::string("kv_dtype ") + std::string(KvDTypeName(s.kv_dtype)) +
                            (cuda ? " is not supported by the cuda backend (its KV cache is bf16)"
                                  : " is not supported by the cpu backend (f32 or f16)");
    if (kv_dtype) {
      kv_dtype->Error(why);
    } else if (auto b = m.Get("backend")) {
      b->Error(why);
    }
  }
  if (auto v = m.Get("cpu_bf16_activations")) {
    const std::string a = v->String("bf16");
    if (a == "bf16") {
      s.cpu_bf16_activations = Bf16Activations::kBf16;
    } else if (a == "f32") {
      s.cpu_bf16_activations = Bf16Activations::kF32;
    } else {
      v->Error("expected \"bf16\" or \"f32\", got " + QuoteValue(a));
    }
  }
  if (auto v = m.Get("kv_cache_tokens")) {
    s.kv_cache_tokens = v->Int(s.kv_cache_tokens, 1, kInt64Max / 2);
    if (s.kv_cache_tokens < s.block_size) {
      v->Error("must hold at least one block (block_size " + std::to_string(s.block_size) + ")");
    }
  }
  s.max_batched_tokens =
      static_cast<int>(m.Int("max_batched_tokens", s.max_batched_tokens, 1, kInt32Max));
  s.max_seqs = static_cast<int>(m.Int("max_seqs", s.max_seqs, 1, 1 << 20));
  s.max_step_ms = static_cast<int>(m.Int("max_step_ms", s.max_step_ms, 0, 60000));
  s.yield_to_higher_lane = m.Bool("yield_to_higher_lane", s.yield_to_higher_lane);
  s.lane_exclusive_prefill = m.Bool("lane_exclusive_prefill", s.lane_exclusive_prefill);
  s.yield_to_underserved = m.Bool("yield_to_underserved", s.yield_to_underserved);
  if (auto v = m.Get("batching")) {
    const std::string b = v->String("continuous");
    if (b == "continuous") {
      s.batching = EngineBatching::kContinuous;
    } else if (b == "static") {
      s.batching = EngineBatching::kStatic;
    } else {
      v->Error("expected \"continuous\" or \"static\", got " + QuoteValue(b));
    }
  }
  s.max_queue_wait = m.Duration("max_queue_wait", s.max_queue_wait);
  s.batch_invariant = m.Bool("batch_invariant", s.batch_invariant);
  s.prefill_weight = static_cast<int>(m.Int("prefill_weight", s.prefill_weight, 0, 1000000));
  if (auto v = m.Get("decode_weight")) {
    s.decode_weight = static_cast<int>(v->Int(s.decode_weight, 0, 1000000));
    if (s.decode_weight == 0 && s.prefill_weight == 0) {
      v->Error("prefill_weight and decode_weight cannot both be 0");
    }
  }
  if (auto v = m.Get("kv_events"); v && !v->is_null()) {
    MapReader k(*v);
    KvEventsSection& e = s.kv_events;
    e = KvEventsSection{};
    e.enabled = true;
    if (auto ep = k.Get("endpoint")) {
      e.endpoint = ep->String("");
      if (!IsZmqEndpoint(e.endpoint)) ep->Error(ZmqEndpointError(e.endpoint));
    } else {
      v->Error("needs an endpoint (e.g. \"tcp://127.0.0.1:5557\")");
    }
    if (auto ep = k.Get("replay_endpoint"); ep && !ep->is_null()) {
      e.replay_endpoint = ep->String("");
      if (!IsZmqEndpoint(e.replay_endpoint)) {
        ep->Error(ZmqEndpointError(e.replay_endpoint));
      } else if (e.replay_endpoint == e.endpoint) {
        ep->Error("must differ from endpoint");
      }
    }
    e.topic = k.String("topic", "");
    e.buffer_batches = static_cast<int>(k.Int("buffer_batches", e.buffer_batches, 0, 1000000));
    e.max_queue_events =
        static_cast<int>(k.Int("max_queue_events", e.max_queue_events, 1, 10000000));
    if (auto f = k.Get("format")) {
      const std::string fmt = f->String("array");
      if (fmt == "map") {
        e.map_events = true;
      } else if (fmt != "array") {
        f->Error("expected \"array\" or \"map\", got " + QuoteValue(fmt));
      }
    }
    k.Finish();
  }
  m.Finish();
}

// "postgresql://..." / "postgres://..." (the ledger's own IsPostgresUrl lives above config).
bool IsPostgresUrlText(const std::string& s) {
  return s.rfind("postgresql://", 0) == 0 || s.rfind("postgres://", 0) == 0;
}

void ReadTelemetry(MapReader& m, const std::filesystem::path& base, TelemetrySection& s) {
  s.log_file = Resolve(base, m.String("log_file", ""));
  s.log_max_bytes = m.Int("log_max_bytes", s.log_max_bytes, 4096, kInt64Max);
  s.log_max_files = static_cast<int>(m.Int("log_max_files", s.log_max_files, 1, 1000));
  s.per_tenant_log_dir = Resolve(base, m.String("per_tenant_log_dir", ""));
  if (auto v = m.Get("usage_db")) {
    const std::string db = v->String("llmux-usage.db");
    if (db.empty()) v->Error("must name a file (the usage ledger is always kept)");
    if (db.find("://") != std::string::npos && !IsPostgresUrlText(db)) {
      v->Error("expected a SQLite file or a postgresql:// URI, got " + QuoteValue(db));
    }
    s.usage_db = IsPostgresUrlText(db) ? std::filesystem::path(db)
                                       : Resolve(base, db.empty() ? "llmux-usage.db" : db);
  } else {
    s.usage_db = Resolve(base, "llmux-usage.db");
  }
  if (auto v = m.Get("usage_spool")) {
    const std::string spool = v->String("llmux-usage-spool.db");
    if (spool.empty()) v->Error("must name a file");
    s.usage_spool = Resolve(base, spool.empty() ? "llmux-usage-spool.db" : spool);
  } else {
    s.usage_spool = Resolve(base, "llmux-usage-spool.db");
  }
  if (auto v = m.Get("ledger_sync")) {
    const std::string sync = v->String("full");
    if (sync == "full") {
      s.ledger_sync = LedgerSync::kFull;
    } else if (sync == "normal") {
      s.ledger_sync = LedgerSync::kNormal;
    } else {
      v->Error("expected \"full\" or \"normal\", got " + QuoteValue(sync));
    }
  }
  m.Finish();
}

// Parses a redis.url into `c`; an error message otherwise.
std::optional<std::string> ParseRedisUrl(const std::string& url, ClusterSection& c) {
  auto parse_int = [](std::string_view text, int max, int* out) {
    if (text.empty() || text.size() > 9) return false;
    int v = 0;
    for (char ch : text) {
      if (ch < '0' || ch > '9') return false;
      v = v * 10 + (ch - '0');
    }
    if (v > max) return false;
    *out = v;
    return true;
  };
  const std::string expected =
      "expected \"redis://HOST:PORT/DB\", \"unix:///PATH\" or an absolute socket path, got " +
      QuoteValue(url);
  if (url.rfind("/", 0) == 0 || url.rfind("unix://", 0) == 0) {
    std::string path = url.rfind("unix://", 0) == 0 ? url.substr(7) : url;
    if (const size_t q = path.find("?db="); q != std::string::npos) {
      if (!parse_int(std::string_view(path).substr(q + 4), 1 << 20, &c.redis_db)) return expected;
      path.resize(q);
    }
    if (path.empty() || path.front() != '/') return expected;
    c.redis_socket = path;
    c.redis_host.clear();
    return std::nullopt;
  }
  if (url.rfind("redis://", 0) != 0) return expected;
  std::string rest = url.substr(8);
  if (const size_t at = rest.rfind('@'); at != std::string::npos) {
    std::string auth = rest.substr(0, at);
    rest = rest.substr(at + 1);
    // "[USER]:PASSWORD"; only the default user is supported.
    const size_t colon = auth.find(':');
    if (colon == std::string::npos || colon != 0) {
      return "only \"redis://:PASSWORD@HOST\" (the default user) is supported, got a user name";
    }
    c.redis_password = auth.substr(1);
  }
  if (const size_t slash = rest.find('/'); slash != std::string::npos) {
    const std::string db = rest.substr(slash + 1);
    if (!db.empty() && !parse_int(db, 1 << 20, &c.redis_db)) return expected;
    rest.resize(slash);
  }
  if (rest.empty()) return expected;
  if (rest.front() == '[') {
    const size_t close = rest.find(']');
    if (close == std::string::npos) return expected;
    c.redis_host = rest.substr(1, close - 1);
    rest = rest.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':' || !parse_int(std::string_view(rest).substr(1), 65535, &c.redis_port)) {
        return expected;
      }
    }
  } else if (const size_t colon = rest.find(':'); colon != std::string::npos) {
    c.redis_host = rest.substr(0, colon);
    if (!parse_int(std::string_view(rest).substr(colon + 1), 65535, &c.redis_port)) return expected;
  } else {
    c.redis_host = rest;
  }
  if (c.redis_host.empty() || c.redis_port == 0) return expected;
  return std::nullopt;
}

void ReadCluster(MapReader& m, ClusterSection& c) {
  c.enabled = true;
  if (auto v = m.Get("redis"); v && !v->is_null()) {
    MapReader r(*v);
    if (auto u = r.Get("url")) {
      c.redis_url = u->String("");
      if (auto err = ParseRedisUrl(c.redis_url, c)) u->Error(*err);
    } else {
      v->Error("missing required key \"url\"");
    }
    if (auto p = r.Get("key_prefix")) {
      c.key_prefix = p->String(c.key_prefix);
      if (c.key_prefix.size() > 128) p->Error("must be at most 128 characters");
    }
    if (auto t = r.Get("timeout")) {
      c.timeout = t->Duration(c.timeout);
      if (c.timeout.count() < 1 || c.timeout.count() > 10000) t->Error("must be 1ms..10s");
    }
    r.Finish();
  } else {
    m.sink()->Add(m.mark(), m.path(), "missing required key \"redis\"");
  }
  if (auto v = m.Get("replica_id")) {
    c.replica_id = v->String("");
    if (c.replica_id.size() > 128 || c.replica_id.find('|') != std::string::npos) {
      v->Error("must be at most 128 characters without '|'");
    }
  }
  if (auto v = m.Get("lease_ttl")) {
    c.lease_ttl = v->Duration(c.lease_ttl);
    if (c.lease_ttl.count() < 300) v->Error("must be at least 300ms");
  }
  if (auto v = m.Get("on_store_failure")) {
    const std::string mode = v->String("local_share");
    if (mode == "local_share") {
      c.on_store_failure = StoreFailureMode::kLocalShare;
    } else if (mode == "reject") {
      c.on_store_failure = StoreFailureMode::kReject;
    } else {
      v->Error("expected \"local_share\" or \"reject\", got " + QuoteValue(mode));
    }
  }
  m.Finish();
}

// `pools:` -> config.pools. Each pool starts from the top-level engine and model.
void ReadPools(const Value& value, const std::filesystem::path& base, ServerConfig& cfg) {
  MapReader pools(value);
  for (auto& [name, item] : pools.All()) {
    if (!config_internal::IsValidName(name)) {
      item.Error("invalid pool name " + QuoteValue(name) + " (1-64 of [A-Za-z0-9_-])");
    }
    PoolSection p;
    p.name = name;
    p.engine = cfg.engine;
    // KV events are per pool (each publisher binds its own sockets): the top-level
    // engine.kv_events belongs to the shared pool; other pools publish with their own only.
    if (name != "shared") p.engine.kv_events = KvEventsSection{};
    p.model = cfg.model;
    MapReader m(item);
    if (auto v = m.Get("isolation")) {
      const std::string iso = v->String("thread");
      if (iso == "thread") {
        p.isolation = PoolIsolation::kThread;
      } else if (iso == "process") {
        p.isolation = PoolIsolation::kProcess;
      } else {
        v->Error("expected \"thread\" or \"process\", got " + QuoteValue(iso));
      }
    }
    if (auto v = m.Get("engine"); v && !v->is_null()) {
      MapReader e(*v);
      ReadEngine(e, p.engine);
    }
    if (p.engine.kv_events.enabled) {
      if (p.isolation == PoolIsolation::kProcess) {
        item.Error("pool " + QuoteValue(name) + ": engine.kv_events is not supported with "
                   "isolation: process yet (use a thread pool, or drop kv_events here)");
      }
      std::vector<const PoolSection*> others;
      for (const PoolSection& other : cfg.pools) others.push_back(&other);
      PoolSection top;  // the shared pool's, whether or not it is listed
      top.name = "shared";
      top.engine = cfg.engine;
      if (name != "shared") others.push_back(&top);
      for (const PoolSection* other_pool : others) {
        const PoolSection& other = *other_pool;
        if (other.name == name) continue;
        const KvEventsSection& o = other.engine.kv_events;
        if (o.enabled && (o.endpoint == p.engine.kv_events.endpoint ||
                          (!o.replay_endpoint.empty() &&
                           o.replay_endpoint == p.engine.kv_events.replay_endpoint))) {
          item.Error("pool " + QuoteValue(name) + ": engine.kv_events endpoints are already "
                     "used by pool " + QuoteValue(other.name) +
                     "; give each pool its own engine.kv_events");
        }
      }
    }
    if (auto v = m.Get("model"); v && !v->is_null()) {
      MapReader mm(*v);
      p.model = ModelSection{};
      ReadModel(mm, base, p.model);
      p.own_model = true;
      if (p.model.path.empty()) v->Error("a pool's own model needs a path");
    }
    if (auto v = m.Get("health_timeout")) {
      p.health_timeout = v->Duration(p.health_timeout);
      if (p.health_timeout.count() < 100) v->Error("must be at least 100ms");
    }
    if (auto v = m.Get("restart_backoff")) {
      p.restart_backoff = v->Duration(p.restart_backoff);
      if (p.restart_backoff.count() < 10 || p.restart_backoff.count() > 600000) {
        v->Error("must be between 10ms and 10m");
      }
    }
    if (auto v = m.Get("max_down")) {
      p.max_down = v->Duration(p.max_down);
      if (p.max_down.count() < 1000) v->Error("must be at least 1s");
    }
    m.Finish();
    cfg.pools.push_back(std::move(p));
  }
  pools.Finish();
}

}  // namespace

std::string_view PoolIsolationName(PoolIsolation isolation) {
  switch (isolation) {
    case PoolIsolation::kThread: return "thread";
    case PoolIsolation::kProcess: return "process";
  }
  return "thread";
}

std::string_view StoreFailureModeName(StoreFailureMode mode) {
  switch (mode) {
    case StoreFailureMode::kLocalShare: return "local_share";
    case StoreFailureMode::kReject: return "reject";
  }
  return "local_share";
}

const PoolSection* FindPool(const ServerConfig& config, std::string_view name) {
  for (const PoolSection& p : config.pools) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

StatusOr<ServerConfig> ParseServerConfig(std::string_view text, std::string_view source_name,
                                         const std::filesystem::path& base_dir) {
  ErrorSink sink{std::string(source_name)};
  std::optional<YAML::Node> root = config_internal::ParseDocument(text, sink);
  if (!root) return sink.ToStatus();
  std::error_code ec;
  const std::filesystem::path base = std::filesystem::absolute(base_dir, ec).lexically_normal();
  if (ec) return Internal("cannot resolve " + base_dir.string() + ": " + ec.message());

  ServerConfig cfg;
  try {
    MapReader top(Value(&sink, *root, ""));
    auto section = [&](std::string_view key) {
      auto v = top.Get(key);
      return MapReader(v ? *v : Value(&sink, YAML::Node(YAML::NodeType::Null), std::string(key)));
    };
    MapReader server = section("server");
    ReadServer(server, cfg.server);
    MapReader model = section("model");
    ReadModel(model, base, cfg.model);
    MapReader engine = section("engine");
    ReadEngine(engine, cfg.engine);
    MapReader telemetry = section("telemetry");
    ReadTelemetry(telemetry, base, cfg.telemetry);
    if (auto v = top.Get("cluster"); v && !v->is_null()) {
      MapReader cluster(*v);
      ReadCluster(cluster, cfg.cluster);
    }
    if (auto v = top.Get("tenants_file")) {
      const std::string f = v->String("tenants.yaml");
      if (f.empty()) v->Error("must name a file");
      cfg.tenants_file = Resolve(base, f.empty() ? "tenants.yaml" : f);
    } else {
      cfg.tenants_file = Resolve(base, "tenants.yaml");
    }
    if (auto v = top.Get("pools"); v && !v->is_null()) ReadPools(*v, base, cfg);
    if (FindPool(cfg, "shared") == nullptr) {
      PoolSection shared;
      shared.name = "shared";
      shared.engine = cfg.engine;
      shared.model = cfg.model;
      cfg.pools.insert(cfg.pools.begin(), std::move(shared));
    }
    top.Finish();
  } catch (const YAML::Exception& e) {
    sink.Add(e.mark, "(document)", e.msg);
  } catch (const std::exception& e) {
    sink.Add(YAML::Mark::null_mark(), "(document)", e.what());
  }
  LLMUX_RETURN_IF_ERROR(sink.ToStatus());
  return cfg;
}

StatusOr<ServerConfig> LoadServerConfig(const std::filesystem::path& path) {
  LLMUX_ASSIGN_OR_RETURN(std::string text, ReadConfigFile(path));
  std::filesystem::path dir = path.parent_path();
  if (dir.empty()) dir = ".";
  LLMUX_ASSIGN_OR_RETURN(ServerConfig cfg, ParseServerConfig(text, path.string(), dir));
  std::error_code ec;
  cfg.source = std::filesystem::absolute(path, ec).lexically_normal();
  return cfg;
}

}  // namespace llmux
