#include "server/daemon.h"

#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <thread>

#include "llmux/backend.h"
#include "llmux/chat_template.h"
#include "llmux/config.h"
#include "llmux/engine.h"
#include "llmux/log.h"
#include "llmux/metrics.h"
#include "llmux/quota.h"
#include "llmux/usage_ledger.h"
#include "llmux/model.h"
#include "llmux/tenant_policy.h"
#include "llmux/tokenizer.h"
#include "server/api_service.h"
#include "server/http_server.h"
#include "server/metrics_routes.h"

namespace llmux::server {
namespace {

int StartupFailure(const std::string& what, const Status& s) {
  std::fprintf(stderr, "llmuxd: %s: %s\n", what.c_str(), s.ToString().c_str());
  LogEvent(LogLevel::kError, "startup_failed", {F("stage", what), F("error", s.ToString())});
  return 1;
}

TenantLimits LimitsOf(const TenantConfig& t) {
  TenantLimits l;
  l.lane = t.lane_index;
  l.weight = t.weight;
  l.max_inflight_tokens = t.max_inflight_tokens;
  l.reserved_kv_tokens = t.reserved.kv_tokens;
  l.reserved_seqs = static_cast<int32_t>(t.reserved.seqs);
  switch (t.prefix_cache.mode) {
    case PrefixCachePolicy::Mode::kPrivate: l.prefix_cache = PrefixCacheMode::kPrivate; break;
    case PrefixCachePolicy::Mode::kShared: l.prefix_cache = PrefixCacheMode::kShared; break;
    case PrefixCachePolicy::Mode::kOff: l.prefix_cache = PrefixCacheMode::kOff; break;
  }
  l.prefix_cache_group = t.prefix_cache.group;
  l.zero_kv_on_free = t.zero_kv_on_free;
  return l;
}

std::vector<std::string> TenantNames(const TenantPolicy& policy) {
  std::vector<std::string> names;
  for (const auto& [name, t] : policy.tenants) names.push_back(name);
  return names;
}

int64_t UnixMsNow() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Status ApplyPolicy(Engine& engine, const TenantPolicy& policy) {
  for (const auto& [name, t] : policy.tenants) {
    LLMUX_RETURN_IF_ERROR(engine.UpsertTenant(name, LimitsOf(t)));
  }
  return Status::Ok();
}

std::string ChatTemplateSpec(const ChatTemplateSource& s) {
  switch (s.kind) {
    case ChatTemplateSource::Kind::kModel: return "";
    case ChatTemplateSource::Kind::kBuiltin: return "builtin:" + s.value;
    case ChatTemplateSource::Kind::kFile: return "file:" + s.value;
  }
  return "";
}

bool SameLanes(const std::vector<Lane>& a, const std::vector<Lane>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].name != b[i].name || a[i].max_wait != b[i].max_wait) return false;
  }
  return true;
}

}  // namespace

int RunDaemon(const DaemonArgs& args) {
  // Signals are taken by this thread only (sigwait below); every thread started later
  // inherits the blocked mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGHUP);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  auto config_or = LoadServerConfig(args.config_path);
  if (!config_or.ok()) return StartupFailure("config", config_or.status());
  ServerConfig config = std::move(config_or).value();
  if (!args.model_override.empty()) config.model.path = std::filesystem::absolute(args.model_override);
  if (!args.listen_override.empty()) config.server.listen = args.listen_override;
  InitLogging(config.telemetry.log_file.string(), static_cast<size_t>(config.telemetry.log_max_bytes),
              static_cast<size_t>(config.telemetry.log_max_files),
              config.telemetry.per_tenant_log_dir.string());
  if (config.model.path.empty()) {
    return StartupFailure("config", InvalidArgument("model.path is empty and no --model was given"));
  }

  // Tenant policy first: a bad tenants file should fail before minutes of model loading.
  std::vector<Lane> start_lanes;
  auto store_or = PolicyStore::Create(config.tenants_file, [&](const TenantPolicy& p) -> Status {
    LLMUX_RETURN_IF_ERROR(CheckPolicyFitsEngine(p, config.engine));
    LLMUX_RETURN_IF_ERROR(CheckNoAdminKeyReuse(p, config.server.admin_api_keys));
    if (!start_lanes.empty() && !SameLanes(start_lanes, p.lanes)) {
      return FailedPrecondition("lanes cannot change on reload (restart llmuxd to change them)");
    }
    return Status::Ok();
  });
  if (!store_or.ok()) return StartupFailure("tenants", store_or.status());
  std::unique_ptr<PolicyStore> store = std::move(store_or).value();
  start_lanes = store->Current()->lanes;

  const std::filesystem::path model_dir = config.model.path;
  auto tokenizer = Tokenizer::FromModelDir(model_dir);
  if (!tokenizer.ok()) return StartupFailure("tokenizer", tokenizer.status());
  auto chat_template = ChatTemplate::FromSpec(ChatTemplateSpec(config.model.chat_template),
                                              model_dir / "tokenizer_config.json");
  if (!chat_template.ok() && chat_template.status().code() == StatusCode::kNotFound &&
      config.model.chat_template.kind == ChatTemplateSource::Kind::kModel) {
    LogEvent(LogLevel::kWarn, "chat_template_missing",
             {F("model", model_dir.string()), F("fallback", "builtin:chatml")});
    chat_template = ChatTemplate::FromSpec("builtin:chatml", model_dir / "tokenizer_config.json");
  }
  if (!chat_template.ok()) return StartupFailure("chat template", chat_template.status());

  StatusOr<std::unique_ptr<Backend>> backend = Unavailable("no backend");
  if (config.engine.backend == BackendKind::kCpu) {
    CpuBackendOptions o;
    o.threads = config.engine.threads;
    o.use_blas = !config.engine.batch_invariant;
    backend = CreateCpuBackend(o);
  } else {
    CudaBackendOptions o;
    o.device = config.engine.devices.empty() ? 0 : config.engine.devices[0];
    o.batch_invariant = config.engine.batch_invariant;
    backend = CreateCudaBackend(o);
  }
  if (!backend.ok()) return StartupFailure("backend", backend.status());
  auto model = Model::Load(model_dir, backend->get(), config.engine.max_batched_tokens);
  if (!model.ok()) return StartupFailure("model", model.status());

  // Telemetry outlives the engine (its observer) and the servers (their handlers).
  // The model id defaults to the model folder's name ("/models/tiny/" -> "tiny").
  std::filesystem::path folder = model_dir.lexically_normal();
  if (!folder.has_filename()) folder = folder.parent_path();
  const std::string model_name =
      config.model.name.empty() ? folder.filename().string() : config.model.name;
  std::unique_ptr<Metrics> metrics = Metrics::Create(model_name, "shared");
  metrics->SetTenants(TenantNames(*store->Current()));
  auto ledger_or = UsageLedger::Open(config.telemetry.usage_db);
  if (!ledger_or.ok()) return StartupFailure("usage ledger", ledger_or.status());
  std::unique_ptr<UsageLedger> ledger = std::move(ledger_or).value();
  QuotaTracker quota(UnixMsNow);
  if (Status q = quota.LoadFrom(*ledger); !q.ok()) return StartupFailure("usage ledger", q);

  EngineConfig ec;
  ec.observer = metrics.get();
  ec.kv_cache_tokens = config.engine.kv_cache_tokens;
  ec.scheduler.block_size = config.engine.block_size;
  ec.scheduler.max_batched_tokens = config.engine.max_batched_tokens;
  ec.scheduler.max_seqs = config.engine.max_seqs;
  ec.scheduler.max_model_len = config.model.max_model_len;
  ec.scheduler.batching = config.engine.batching == EngineBatching::kStatic ? BatchingMode::kStatic
                                                                            : BatchingMode::kContinuous;
  ec.scheduler.vtc_prefill_weight = config.engine.prefill_weight;
  ec.scheduler.vtc_decode_weight = config.engine.decode_weight;
  ec.scheduler.lanes.clear();
  for (const Lane& l : start_lanes) ec.scheduler.lanes.push_back(LaneConfig{l.name, l.max_wait.count()});
  auto engine_or = Engine::Create(ec, std::move(*backend), std::move(*model));
  if (!engine_or.ok()) return StartupFailure("engine", engine_or.status());
  std::unique_ptr<Engine> engine = std::move(engine_or).value();
  Status applied = ApplyPolicy(*engine, *store->Current());
  if (!applied.ok()) return StartupFailure("tenants", applied);
  engine->Start();

  auto reload = [&]() -> Status {
    Status s = store->Reload();
    if (s.ok()) s = ApplyPolicy(*engine, *store->Current());
    if (s.ok()) metrics->SetTenants(TenantNames(*store->Current()));
    metrics->CountPolicyReload(s.ok());
    LogEvent(s.ok() ? LogLevel::kInfo : LogLevel::kError, "policy_reload",
             {F("result", s.ok() ? "ok" : "rejected"), F("error", s.ok() ? "" : s.message()),
              F("generation", static_cast<long long>(store->generation()))});
    return s;
  };

  ApiServiceOptions api_options;
  api_options.limits.max_n = config.server.max_n;
  api_options.limits.max_stop_strings = config.server.max_stop_strings;
  api_options.health_stall_timeout = config.server.health_stall_timeout;
  api_options.max_auth_failures_per_minute = config.server.max_auth_failures_per_minute;
  api_options.max_queue_wait = config.engine.max_queue_wait;
  ServedModel served;
  served.name = model_name;
  served.max_model_len = engine->model_config().max_position_embeddings;
  if (config.model.max_model_len > 0) served.max_model_len = std::min(served.max_model_len, config.model.max_model_len);
  served.tokenizer = tokenizer->get();
  served.chat_template = chat_template->get();
  served.engine = engine.get();
  ApiService api(api_options, served, store.get(), Authenticator(config.server.admin_api_keys),
                 [&] {
                   LogEvent(LogLevel::kInfo, "admin_action", {F("action", "reload")});
                   return reload();
                 },
                 ServerTelemetry{metrics.get(), ledger.get(), &quota});

  HttpServerOptions http;
  http.listen = config.server.listen;
  http.io_threads = config.server.io_threads;
  http.max_body_bytes = config.server.max_body_bytes;
  http.max_header_bytes = config.server.max_header_bytes;
  http.read_timeout = config.server.read_timeout;
  http.idle_timeout = config.server.idle_timeout;
  http.max_connections = config.server.max_connections;
  auto server = HttpServer::Start(http, [&api](HttpRequest&& r, std::shared_ptr<ResponseChannel> c) {
    api.Handle(std::move(r), std::move(c));
  });
  if (!server.ok()) return StartupFailure("listen", server.status());
  std::unique_ptr<HttpServer> metrics_server;
  if (!config.server.metrics_listen.empty()) {
    HttpServerOptions mo = http;
    mo.listen = config.server.metrics_listen;
    mo.io_threads = 1;
    auto ms = HttpServer::Start(mo, [&](HttpRequest&& r, std::shared_ptr<ResponseChannel> c) {
      if (r.path != "/metrics") {
        return c->Respond(404, "text/plain", "only /metrics is served here\n");
      }
      ServeMetrics(r, *metrics,
                   BuildMetricsSnapshot(*engine, *store->Current(),
                                        [&api](const std::string& t) { return api.queued(t); }),
                   *c);
    });
    if (!ms.ok()) return StartupFailure("metrics listen", ms.status());
    metrics_server = std::move(ms).value();
  }

  auto watcher = PolicyFileWatcher::Start(store.get(), [&](const Status& s) {
    Status applied_now = s.ok() ? ApplyPolicy(*engine, *store->Current()) : s;
    if (applied_now.ok()) metrics->SetTenants(TenantNames(*store->Current()));
    metrics->CountPolicyReload(applied_now.ok());
    LogEvent(applied_now.ok() ? LogLevel::kInfo : LogLevel::kError, "policy_reload",
             {F("trigger", "file"), F("result", applied_now.ok() ? "ok" : "rejected"),
              F("error", applied_now.ok() ? "" : applied_now.message())});
  });
  if (!watcher.ok()) {
    LogEvent(LogLevel::kWarn, "policy_watch_unavailable", {F("error", watcher.status().message())});
  }

  const std::string host = config.server.listen.substr(0, config.server.listen.rfind(':'));
  std::fprintf(stderr, "llmuxd: serving %s on http://%s:%d\n", served.name.c_str(), host.c_str(),
               (*server)->port());
  std::fflush(stderr);
  LogEvent(LogLevel::kInfo, "listening",
           {F("address", host), F("port", (*server)->port()), F("model", served.name)});
  if (metrics_server) {
    const std::string& ml = config.server.metrics_listen;
    std::fprintf(stderr, "llmuxd: metrics on http://%s:%d/metrics\n",
                 ml.substr(0, ml.rfind(':')).c_str(), metrics_server->port());
    std::fflush(stderr);
  }

  for (;;) {
    int sig = 0;
    if (sigwait(&signals, &sig) != 0) continue;
    if (sig == SIGHUP) {
      (void)reload();
      continue;
    }
    break;  // SIGTERM / SIGINT: drain
  }
  LogEvent(LogLevel::kInfo, "draining", {F("timeout_ms", static_cast<long long>(config.server.drain_timeout.count()))});
  api.StartDraining();
  const auto deadline = std::chrono::steady_clock::now() + config.server.drain_timeout;
  while (api.calls_in_flight() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const bool clean = api.calls_in_flight() == 0;
  if (watcher.ok()) (*watcher)->Stop();
  (*server)->StopAccepting();
  engine->Stop();  // ends what is left (after the drain timeout) with 503
  ledger->Close();  // commits the last rows and releases their final events
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // let final writes go out
  if (metrics_server) metrics_server->Shutdown();
  (*server)->Shutdown();
  LogEvent(LogLevel::kInfo, "stopped", {F("clean", clean ? "true" : "false")});
  return 0;
}

}  // namespace llmux::server
