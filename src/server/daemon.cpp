#include "llmux/daemon.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cctype>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <thread>

#include "llmux/capacity_meter.h"
#include "llmux/chat_template.h"
#include "llmux/cluster.h"
#include "llmux/config.h"
#include "llmux/engine.h"
#include "llmux/log.h"
#include "llmux/metrics.h"
#include "llmux/quota.h"
#include "llmux/usage_ledger.h"
#include "llmux/pool.h"
#include "llmux/tenant_policy.h"
#include "llmux/thread_annotations.h"
#include "llmux/tokenizer.h"
#include "server/api_service.h"
#include "server/capacity_billing.h"
#include "server/http_server.h"
#include "server/metrics_routes.h"
#include "server/policy_reloader.h"

namespace llmux::server {
namespace {

int StartupFailure(const std::string& what, const Status& s) {
  std::fprintf(stderr, "llmuxd: %s: %s\n", what.c_str(), s.ToString().c_str());
  LogEvent(LogLevel::kError, "startup_failed", {F("stage", what), F("error", s.ToString())});
  return 1;
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

// HOSTNAME:PORT of `listen`; HOSTNAME:pidPID when the port is chosen by the kernel (0).
std::string DefaultReplicaId(const std::string& listen) {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) std::snprintf(host, sizeof(host), "localhost");
  const std::string port = listen.substr(listen.rfind(':') + 1);
  if (port == "0") return std::string(host) + ":pid" + std::to_string(getpid());
  return std::string(host) + ":" + port;
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
  if (!args.model_override.empty()) {
    config.model.path = std::filesystem::absolute(args.model_override);
    config.model.path_origin = "--model";
    for (PoolSection& p : config.pools) {
      if (!p.own_model) {
        p.model.path = config.model.path;
        p.model.path_origin = config.model.path_origin;
      }
    }
  }
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
    LLMUX_RETURN_IF_ERROR(CheckPolicyFitsPools(p, config));
    LLMUX_RETURN_IF_ERROR(CheckNoAdminKeyReuse(p, config.server.admin_api_keys));
    if (!start_lanes.empty() && !SameLanes(start_lanes, p.lanes)) {
      return FailedPrecondition("lanes cannot change on reload (restart llmuxd to change them)");
    }
    return Status::Ok();
  });
  if (!store_or.ok()) return StartupFailure("tenants", store_or.status());
  std::unique_ptr<PolicyStore> store = std::move(store_or).value();
  start_lanes = store->Current()->lanes;

  // Telemetry outlives the servers (their handlers).
  const std::string model_name = ServedModelName(config.model);
  std::unique_ptr<Metrics> metrics = Metrics::Create(model_name, "shared");
  metrics->SetTenants(TenantNames(*store->Current()));
  metrics->SetCacheConfig(CacheConfigInfo{
      config.engine.block_size, config.engine.kv_cache_tokens / config.engine.block_size, true});
  QuotaTracker quota(UnixMsNow);  // declared first: the ledger's replay thread reloads it
  std::atomic<UsageLedger*> ledger_for_reload{nullptr};
  LedgerOptions ledger_options;
  ledger_options.target = config.telemetry.usage_db.string();
  ledger_options.sync = config.telemetry.ledger_sync;
  ledger_options.spool = config.telemetry.usage_spool;
  ledger_options.on_store_up = [&quota, &ledger_for_reload] {
    // Totals from the shared ledger again, now that it holds what this replica spooled.
    UsageLedger* l = ledger_for_reload.load();
    if (l == nullptr) return;
    if (Status q = quota.LoadFrom(*l); !q.ok()) {
      LogEvent(LogLevel::kWarn, "quota_reload_failed", {F("error", q.message())});
    }
  };
  auto ledger_or = UsageLedger::Open(ledger_options);
  if (!ledger_or.ok()) return StartupFailure("usage ledger", ledger_or.status());
  std::unique_ptr<UsageLedger> ledger = std::move(ledger_or).value();
  ledger_for_reload.store(ledger.get());
  if (Status q = quota.LoadFrom(*ledger); !q.ok()) {
    // A shared ledger that is down at startup: rows are spooled and the totals load once it
    // returns (on_store_up). Anything else is fatal.
    if (q.code() != StatusCode::kUnavailable) return StartupFailure("usage ledger", q);
    LogEvent(LogLevel::kWarn, "quota_load_deferred", {F("error", q.message())});
  }
  // Capacity billing: each tenant's reservation and dedicated pool, charged from now on.
  CapacityMeter capacity;
  capacity.Apply(*store->Current(), UnixMsNow());

  PoolSetOptions pool_options;
  pool_options.worker_executable = "/proc/self/exe";
  pool_options.config_path = std::filesystem::absolute(args.config_path).string();
  pool_options.model_override = config.model.path.string();
  if (args.model_override.empty()) pool_options.model_override.clear();
  auto pools_or = PoolSet::Create(config, start_lanes, pool_options);
  if (!pools_or.ok()) return StartupFailure("pools", pools_or.status());
  std::unique_ptr<PoolSet> pools = std::move(pools_or).value();
  Status applied = pools->ApplyPolicy(*store->Current());
  if (!applied.ok()) return StartupFailure("tenants", applied);

  // The one path a policy change takes, whatever its trigger (SIGHUP, POST /admin/reload, the
  // file watcher): the pools' engines first (the step that may refuse), then the copies that
  // cannot; every outcome is logged and counted.
  PolicyReloader reloader(
      store.get(),
      {[&](const TenantPolicy& p) { return pools->ApplyPolicy(p); },
       [&](const TenantPolicy& p) {
         metrics->SetTenants(TenantNames(p));
         return Status::Ok();
       },
       [&](const TenantPolicy& p) {
         capacity.Apply(p, UnixMsNow());  // prorated from this moment
         return Status::Ok();
       }},
      [&](const PolicyReloadOutcome& o) {
        metrics->CountPolicyReload(o.status.ok());
        LogEvent(o.status.ok() ? LogLevel::kInfo : LogLevel::kError, "policy_reload",
                 {F("trigger", o.trigger), F("result", o.status.ok() ? "ok" : "rejected"),
                  F("error", o.status.ok() ? "" : o.status.message()),
                  F("generation", static_cast<long long>(o.generation))});
      });

  ApiServiceOptions api_options;
  api_options.limits.max_n = config.server.max_n;
  api_options.limits.max_stop_strings = config.server.max_stop_strings;
  api_options.health_stall_timeout = config.server.health_stall_timeout;
  api_options.max_auth_failures_per_minute = config.server.max_auth_failures_per_minute;
  api_options.max_queue_wait = config.engine.max_queue_wait;
  api_options.trusted_proxies = config.server.trusted_proxies;
  api_options.forwarded_header = config.server.forwarded_header;
  api_options.tenant_header = config.server.tenant_header;
  api_options.planning_threads = config.server.planning_threads;
  api_options.planning_queue = config.server.planning_queue;
  api_options.planning_oldest_every = config.server.planning_oldest_every;
  for (char& c : api_options.tenant_header) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  std::map<std::string, ServedModel> served_pools;
  for (Pool* p : pools->pools()) {
    served_pools[p->name()] = ServedModel{p->model_name(), p->max_model_len(), &p->tokenizer(),
                                          &p->chat_template(), p->engine(), p};
  }
  // Cluster mode: admission against the fleet's state in Redis (the replica id defaults to
  // HOSTNAME:PORT of the listener, known once it is bound; see below).
  std::unique_ptr<ClusterAdmission> cluster_admission;
  if (config.cluster.enabled) {
    ClusterSection cluster = config.cluster;
    if (cluster.replica_id.empty()) cluster.replica_id = DefaultReplicaId(config.server.listen);
    auto created = ClusterAdmission::Create(cluster, &quota);
    if (!created.ok()) return StartupFailure("cluster", created.status());
    cluster_admission = std::move(created).value();
    // Start with the fleet's state when Redis answers now; otherwise on_store_failure applies
    // until it does (a fleet restart must not wait for Redis).
    const bool up = cluster_admission->Flush(std::max<Millis>(config.cluster.timeout * 4, Millis(200)));
    LogEvent(up ? LogLevel::kInfo : LogLevel::kWarn, "cluster_mode",
             {F("replica", cluster.replica_id), F("store_up", up ? "true" : "false"),
              F("redis", cluster.redis_socket.empty()
                             ? cluster.redis_host + ":" + std::to_string(cluster.redis_port)
                             : cluster.redis_socket),
              F("on_store_failure", std::string(StoreFailureModeName(cluster.on_store_failure)))});
  }

  const ServerTelemetry telemetry{metrics.get(), ledger.get(), &quota, &capacity,
                                  cluster_admission.get()};
  const ServedModel served = served_pools.at("shared");
  ApiService api(api_options, served, store.get(), Authenticator(config.server.admin_api_keys),
                 [&] {
                   LogEvent(LogLevel::kInfo, "admin_action", {F("action", "reload")});
                   return reloader.Reload("admin");
                 },
                 telemetry);
  CapacityFlusher capacity_flusher(telemetry, std::chrono::minutes(1));
  api.SetPools(served_pools, pools.get());
  if (cluster_admission != nullptr) api.SetAdmission(cluster_admission.get());

  HttpServerOptions http;
  http.listen = config.server.listen;
  http.io_threads = config.server.io_threads;
  http.max_body_bytes = config.server.max_body_bytes;
  http.max_header_bytes = config.server.max_header_bytes;
  http.read_timeout = config.server.read_timeout;
  http.idle_timeout = config.server.idle_timeout;
  http.write_timeout = config.server.write_timeout;
  http.max_stream_queue_bytes = config.server.max_stream_queue_bytes;
  http.max_connections = config.server.max_connections;
  // /metrics shows the server's I/O queue once it exists (set before it can be scraped).
  std::atomic<HttpServer*> http_server{nullptr};
  api.SetIoQueueDepths([&http_server] {
    HttpServer* s = http_server.load();
    return s == nullptr ? std::vector<int64_t>{} : s->IoQueueDepths();
  });
  http.lanes = static_cast<int>(start_lanes.size());  // lanes cannot change on reload
  http.lane_of = [&api](const HttpRequest& headers) { return api.IoLane(headers); };
  auto server = HttpServer::Start(http, [&api](HttpRequest&& r, std::shared_ptr<ResponseChannel> c) {
    api.Handle(std::move(r), std::move(c));
  });
  if (!server.ok()) return StartupFailure("listen", server.status());
  http_server.store(server->get());
  std::unique_ptr<HttpServer> metrics_server;
  if (!config.server.metrics_listen.empty()) {
    HttpServerOptions mo = http;
    mo.listen = config.server.metrics_listen;
    mo.io_threads = 1;
    auto ms = HttpServer::Start(mo, [&](HttpRequest&& r, std::shared_ptr<ResponseChannel> c) {
      if (r.path != "/metrics") {
        return c->Respond(404, "text/plain", "only /metrics is served here\n");
      }
      ServeMetrics(
          r, *metrics, [&] { return api.PoolEngineStatsNow(); },
          [&] { return api.BuildSnapshot(*store->Current()); }, *c);
    });
    if (!ms.ok()) return StartupFailure("metrics listen", ms.status());
    metrics_server = std::move(ms).value();
  }

  auto watcher = PolicyFileWatcher::Start(
      store.get(), [&](const Status& loaded) { (void)reloader.Apply("file", loaded); });
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

  int stop_signal = 0;
  for (;;) {
    int sig = 0;
    if (sigwait(&signals, &sig) != 0) continue;
    if (sig == SIGHUP) {
      (void)reloader.Reload("signal");
      continue;
    }
    stop_signal = sig;  // SIGTERM / SIGINT: drain
    break;
  }
  // NOTE: SIGINT (Ctrl-C at a terminal, test harnesses) drains without the grace: nothing
  // routes to an interactive daemon. Orchestrators and init systems send SIGTERM.
  const Millis grace = stop_signal == SIGINT ? Millis(0) : config.server.drain_grace;
  // The drain (docs/deployment.md): readiness 503 at once; during drain_grace requests that
  // still arrive are served with `Connection: close` while balancers notice; then idle
  // connections close, the listener stops, new requests get 503; in-flight calls run until
  // drain_timeout (counted from the signal).
  LogEvent(LogLevel::kInfo, "draining",
           {F("signal", stop_signal == SIGINT ? "SIGINT" : "SIGTERM"),
            F("grace_ms", static_cast<long long>(grace.count())),
            F("timeout_ms", static_cast<long long>(config.server.drain_timeout.count()))});
  const auto drain_start = std::chrono::steady_clock::now();
  api.StartDraining();
  (*server)->BeginDrain();
  const auto grace_end = drain_start + grace;
  while (std::chrono::steady_clock::now() < grace_end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  api.RefuseNewWork();
  (*server)->StopAccepting();
  (*server)->CloseIdleConnections();
  LogEvent(LogLevel::kInfo, "drain_grace_over",
           {F("calls_in_flight", static_cast<long long>(api.calls_in_flight())),
            F("open_connections", (*server)->open_connections())});
  // NOTE: connections count too: one that was mid-request when the grace ended gets its 503
  // `draining` answer (and every response now closes its connection) instead of being cut
  // by the exit. Idle ones were closed above, so this ends as soon as the last response is out.
  const auto deadline = drain_start + config.server.drain_timeout;
  while ((api.calls_in_flight() > 0 || (*server)->open_connections() > 0) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const bool clean = api.calls_in_flight() == 0;
  api.StopPlanning();  // its last calls are answered on connections that still exist
  if (watcher.ok()) (*watcher)->Stop();
  pools->Stop();  // ends what is left (after the drain timeout) with 503
  capacity_flusher.Stop();  // capacity held until now, before the ledger closes
  ledger->Close();  // commits the last rows and releases their final events
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // let final writes go out
  if (metrics_server) metrics_server->Shutdown();
  (*server)->Shutdown();
  LogEvent(LogLevel::kInfo, "stopped", {F("clean", clean ? "true" : "false")});
  return 0;
}

}  // namespace llmux::server
