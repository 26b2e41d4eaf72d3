// The worker process of a process pool: `llmuxd --worker POOL --config FILE --socket-fd N`.
// It loads only its pool's model and engine and learns only its pool's tenants (from the
// daemon's upsert frames); it never reads tenants.yaml.
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <map>
#include <set>
#include <string>

#include "llmux/grammar.h"
#include "llmux/log.h"
#include "llmux/pool.h"
#include "llmux/tokenizer.h"
#include "pool/local_engine.h"
#include "pool/wire.h"

namespace llmux {
namespace {

using json = nlohmann::json;

// The worker's exit status after a sticky device fault (EngineStats::device_fault).
constexpr int kDeviceFaultExitCode = 3;

int Fail(const std::string& pool, const std::string& what) {
  std::fprintf(stderr, "llmuxd worker %s: %s\n", pool.c_str(), what.c_str());
  return 1;
}

}  // namespace

int RunPoolWorker(const PoolWorkerArgs& args) {
  // The worker never outlives the daemon, even one killed with SIGKILL.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  std::signal(SIGPIPE, SIG_IGN);
  // NOTE: SIGTERM/SIGINT to the whole process group (Ctrl-C) must not end the worker before
  // the daemon drains; it exits when the daemon closes the socket.
  std::signal(SIGINT, SIG_IGN);
  std::signal(SIGTERM, SIG_IGN);
  std::signal(SIGHUP, SIG_IGN);

  auto config_or = LoadServerConfig(args.config_path);
  if (!config_or.ok()) return Fail(args.pool, config_or.status().ToString());
  ServerConfig config = std::move(config_or).value();
  InitLogging(config.telemetry.log_file.string(), static_cast<size_t>(config.telemetry.log_max_bytes),
              static_cast<size_t>(config.telemetry.log_max_files));
  const PoolSection* found = FindPool(config, args.pool);
  if (found == nullptr) return Fail(args.pool, "no such pool in " + args.config_path);
  PoolSection pool = *found;
  if (!args.model_override.empty() && !pool.own_model) {
    pool.model.path = std::filesystem::absolute(args.model_override);
  }

  const int fd = args.socket_fd;
  std::optional<json> init = pool::ReadFrame(fd);
  if (!init || (*init)["t"] != "init") return Fail(args.pool, "no init frame from the daemon");
  std::vector<LaneConfig> lanes;
  try {
    for (const json& l : init->at("lanes")) {
      lanes.push_back({l.at("name").get<std::string>(), l.at("max_wait").get<int64_t>(),
                       l.at("arrival_order").get<bool>()});
    }
  } catch (const json::exception& e) {
    return Fail(args.pool, std::string("bad init frame: ") + e.what());
  }
  auto engine_or = pool::CreateLocalEngine(pool, lanes);
  if (!engine_or.ok()) return Fail(args.pool, engine_or.status().ToString());
  std::unique_ptr<Engine> engine = std::move(engine_or).value();
  engine->Start();

  pool::FrameWriter writer(fd);
  if (!writer.Write({{"t", "ready"}, {"pid", static_cast<long long>(::getpid())}}).ok()) return 1;
  LogEvent(LogLevel::kInfo, "pool_worker_started",
           {F("pool", pool.name), F("pid", static_cast<long long>(::getpid()))});

  // Structured-output requests arrive as specs: compile them here against this worker's
  // vocabulary (the tokenizer is loaded at the first such request).
  GrammarCache grammars;
  std::shared_ptr<const TokenVocabulary> vocabulary;
  auto compile = [&](EngineRequest& r) -> Status {
    if (!r.grammar_spec || r.grammar) return Status::Ok();
    if (!vocabulary) {
      LLMUX_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tok, Tokenizer::FromModelDir(pool.model.path));
      vocabulary = TokenVocabulary::FromTokenizer(*tok, engine->model_config().vocab_size,
                                                  engine->model_config().eos_token_ids);
    }
    LLMUX_ASSIGN_OR_RETURN(r.grammar, grammars.GetOrCompile(r.tenant, *r.grammar_spec, vocabulary));
    return Status::Ok();
  };

  auto send_output = [&writer](EngineOutput&& out) {
    // NOTE: a lost daemon shows up as EOF in the loop below; nothing to do here.
    (void)writer.Write({{"t", "output"}, {"output", pool::EncodeOutput(out)}});
  };
  std::set<std::string> tenants;  // every tenant upserted so far (reported with each pong)
  int exit_code = 0;
  for (;;) {
    std::optional<json> frame = pool::ReadFrame(fd);
    if (!frame) break;
    const std::string type = (*frame)["t"].get<std::string>();
    try {
      if (type == "submit") {
        EngineRequest r = pool::DecodeRequest(frame->at("request"));
        const uint64_t id = r.id;
        Status s = compile(r);
        if (s.ok()) s = engine->Submit(std::move(r), send_output);
        if (!s.ok()) {
          EngineOutput out;
          out.id = id;
          out.finished = true;
          out.finish_reason = FinishReason::kAbort;
          out.error = s;
          send_output(std::move(out));
        }
      } else if (type == "abort") {
        engine->Abort(frame->at("id").get<uint64_t>());
      } else if (type == "upsert") {
        const std::string tenant = frame->at("tenant").get<std::string>();
        Status s = engine->UpsertTenant(tenant, pool::DecodeLimits(frame->at("limits")));
        if (s.ok()) tenants.insert(tenant);
        if (!s.ok()) LogEvent(LogLevel::kError, "pool_worker_upsert", {F("error", s.message())});
      } else if (type == "ping") {
        std::map<std::string, TenantStats> tenant_stats;
        for (const std::string& t : tenants) {
          if (auto ts = engine->GetTenantStats(t)) tenant_stats.emplace(t, *ts);
        }
        const EngineStats stats = engine->Stats();
        (void)writer.Write({{"t", "pong"},
                            {"seq", frame->at("seq")},
                            {"stats", pool::EncodeStats(stats)},
                            {"tenants", pool::EncodeTenantStats(tenant_stats)}});
        if (!stats.device_fault.empty()) {
          // NOTE: a sticky device fault fails every later step; only a new process gets a new
          // device context. The pong above tells the daemon why; exiting makes it restart us.
          LogEvent(LogLevel::kError, "pool_worker_device_fault",
                   {F("pool", pool.name), F("error", stats.device_fault)});
          exit_code = kDeviceFaultExitCode;
          break;
        }
      }
    } catch (const json::exception& e) {
      LogEvent(LogLevel::kError, "pool_worker_bad_frame", {F("pool", pool.name), F("error", e.what())});
      break;
    }
  }
  engine->Stop();
  return exit_code;
}

}  // namespace llmux
