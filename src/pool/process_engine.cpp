#include "pool/process_engine.h"

#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "llmux/log.h"
#include "llmux/model_config.h"

extern char** environ;

namespace llmux::pool {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr milliseconds kMaxBackoff{10000};
// A worker that served this long before dying restarts after the first backoff again.
constexpr milliseconds kStableRun{10000};
// A blocked write to a worker (it stopped reading) fails after this long.
constexpr int kSendTimeoutMs = 2000;

std::string DescribeExit(int wstatus) {
  if (WIFSIGNALED(wstatus)) return "killed by signal " + std::to_string(WTERMSIG(wstatus));
  if (WIFEXITED(wstatus)) return "exited with status " + std::to_string(WEXITSTATUS(wstatus));
  return "ended";
}

}  // namespace

StatusOr<std::unique_ptr<ProcessEngine>> ProcessEngine::Create(const PoolSection& pool,
                                                               std::vector<LaneConfig> lanes,
                                                               const PoolSetOptions& options) {
  if (options.worker_executable.empty()) return InvalidArgument("no worker executable");
  auto mc = LoadModelConfig(pool.model.path);
  if (!mc.ok()) return mc.status().WithContext("pool " + pool.name + ": model");
  return std::unique_ptr<ProcessEngine>(
      new ProcessEngine(pool, std::move(lanes), options, std::move(mc).value()));
}

ProcessEngine::ProcessEngine(const PoolSection& pool, std::vector<LaneConfig> lanes,
                             PoolSetOptions options, ModelConfig model_config)
    : pool_(pool),
      lanes_(std::move(lanes)),
      options_(std::move(options)),
      model_config_(std::move(model_config)) {}

ProcessEngine::~ProcessEngine() { Stop(); }

ProcessEngine::Connection::~Connection() { ::close(fd); }

std::shared_ptr<ProcessEngine::Connection> ProcessEngine::ReadyConnection() const {
  MutexLock lock(mutex_);
  if (state_ != PoolState::kReady || worker_ == nullptr || worker_->dead) return nullptr;
  return worker_->conn;
}

Status ProcessEngine::UpsertTenant(const std::string& name, const TenantLimits& limits) {
  if (name.empty()) return InvalidArgument("tenant name is empty");
  if (!(limits.weight > 0)) return InvalidArgument("tenant '" + name + "': weight must be > 0");
  {
    MutexLock lock(mutex_);
    tenants_[name] = limits;
  }
  // A lost connection is noticed by the reader; the next worker gets every tenant anyway.
  // NOTE: a worker becoming ready meanwhile gets the new limits from tenants_ (ReaderMain).
  if (auto conn = ReadyConnection()) {
    (void)conn->writer.Write({{"t", "upsert"}, {"tenant", name}, {"limits", EncodeLimits(limits)}});
  }
  return Status::Ok();
}

Status ProcessEngine::Submit(EngineRequest request, OutputSink sink) {
  const int32_t vocab = model_config_.vocab_size;
  if (request.prompt.empty()) return InvalidArgument("prompt is empty");
  for (int32_t t : request.prompt) {
    if (t < 0 || t >= vocab) {
      return InvalidArgument("prompt token id " + std::to_string(t) +
                             " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
    }
  }
  LLMUX_RETURN_IF_ERROR(Validate(request.sampling, vocab));
  if (!sink) return InvalidArgument("no output sink");
  const uint64_t id = request.id;
  std::shared_ptr<Connection> conn;
  {
    MutexLock lock(mutex_);
    if (state_ != PoolState::kReady || worker_ == nullptr || worker_->dead) {
      return Unavailable("pool " + pool_.name + " is " + std::string(PoolStateName(state_)) +
                         " its worker; retry shortly");
    }
    if (inflight_.count(id) != 0) {
      return InvalidArgument("duplicate request id " + std::to_string(id));
    }
    // Registered before the frame goes out: the first output may arrive before Write returns.
    inflight_.emplace(id, Inflight{std::move(sink), static_cast<int32_t>(request.prompt.size()), 0});
    conn = worker_->conn;
  }
  if (conn->writer.Write({{"t", "submit"}, {"request", EncodeRequest(request)}}).ok()) {
    return Status::Ok();
  }
  MutexLock lock(mutex_);
  // Still ours: nothing was queued. Gone: the worker's death already ended it via the sink.
  if (inflight_.erase(id) == 0) return Status::Ok();
  return Unavailable("pool " + pool_.name + " worker is not reachable; retry shortly");
}

void ProcessEngine::Abort(uint64_t id) {
  std::shared_ptr<Connection> conn;
  {
    MutexLock lock(mutex_);
    if (inflight_.count(id) == 0 || worker_ == nullptr || worker_->dead) return;
    conn = worker_->conn;
  }
  (void)conn->writer.Write({{"t", "abort"}, {"id", id}});
}

EngineStats ProcessEngine::Stats() const {
  MutexLock lock(mutex_);
  return stats_;
}

std::optional<TenantStats> ProcessEngine::GetTenantStats(const std::string& tenant) const {
  MutexLock lock(mutex_);
  auto it = tenant_stats_.find(tenant);
  if (it == tenant_stats_.end()) return std::nullopt;
  return it->second;
}

void ProcessEngine::Start() {
  LLMUX_CHECK(!supervisor_.joinable()) << "pool " << pool_.name << " started twice";
  supervisor_ = std::thread([this] { SupervisorMain(); });
}

void ProcessEngine::Stop() {
  {
    MutexLock lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
    // Closing our end makes the worker see EOF and exit; the reader then sees EOF too.
    if (worker_ != nullptr) ::shutdown(worker_->conn->fd, SHUT_RDWR);
  }
  cv_.NotifyAll();
  if (supervisor_.joinable()) supervisor_.join();
  MutexLock lock(mutex_);
  state_ = PoolState::kStopped;
}

StatusOr<bool> ProcessEngine::StepOnce() {
  return FailedPrecondition("pool " + pool_.name + " steps in its worker process");
}

Status ProcessEngine::RunUntilIdle() {
  return FailedPrecondition("pool " + pool_.name + " steps in its worker process");
}

Status ProcessEngine::WaitUntilFirstReady(milliseconds timeout) {
  MutexLock lock(mutex_);
  if (!cv_.WaitFor(lock, timeout, [&]() REQUIRES(mutex_) { return first_start_.has_value(); })) {
    return Status(StatusCode::kDeadlineExceeded,
                  "pool " + pool_.name + ": worker not ready after " +
                      std::to_string(timeout.count()) + " ms");
  }
  return *first_start_;
}

PoolStatus ProcessEngine::Describe() const {
  MutexLock lock(mutex_);
  PoolStatus s;
  s.name = pool_.name;
  s.isolation = PoolIsolation::kProcess;
  const bool worker_alive = worker_ != nullptr && !worker_->dead;
  // Between a worker's death (its reader saw the socket close) and the supervisor reaping it,
  // state_ still says ready: report what a caller can rely on, a pool without a worker.
  const bool dying = state_ == PoolState::kReady && !worker_alive;
  s.state = dying ? PoolState::kRestarting : state_;
  s.pid = worker_alive ? worker_->pid : 0;
  s.restarts = restarts_;
  s.worker_deaths = deaths_;
  s.last_error = last_error_;
  s.stats = stats_;
  if (!dying && state_ != PoolState::kReady && state_ != PoolState::kStopped) {
    s.down_ms = std::chrono::duration_cast<milliseconds>(Clock::now() - down_since_).count();
  }
  return s;
}

StatusOr<std::unique_ptr<ProcessEngine::Worker>> ProcessEngine::Spawn() {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    return Internal(std::string("socketpair: ") + std::strerror(errno));
  }
  timeval tv{kSendTimeoutMs / 1000, (kSendTimeoutMs % 1000) * 1000};
  ::setsockopt(sv[0], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));

  std::vector<std::string> args = {options_.worker_executable, "--worker", pool_.name,
                                   "--config", options_.config_path, "--socket-fd", "3"};
  if (!options_.model_override.empty()) {
    args.push_back("--model");
    args.push_back(options_.model_override);
  }
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  // dup2 onto 3 clears close-on-exec there; every other descriptor of ours is close-on-exec.
  posix_spawn_file_actions_adddup2(&actions, sv[1], 3);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  // NOTE: the daemon blocks SIGTERM/SIGHUP/SIGINT in every thread (sigwait); the worker must
  // not inherit that mask.
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, argv[0], &actions, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  ::close(sv[1]);
  if (rc != 0) {
    ::close(sv[0]);
    return Internal("cannot start " + options_.worker_executable + ": " + std::strerror(rc));
  }
  auto w = std::make_unique<Worker>();
  w->pid = pid;
  w->conn = std::make_shared<Connection>(sv[0]);
  json lanes = json::array();
  for (const LaneConfig& l : lanes_) {
    lanes.push_back({{"name", l.name}, {"max_wait", l.max_wait}, {"arrival_order", l.arrival_order}});
  }
  (void)w->conn->writer.Write({{"t", "init"}, {"lanes", lanes}});
  return w;
}

void ProcessEngine::ReaderMain(Worker* worker) {
  for (;;) {
    std::optional<json> frame = ReadFrame(worker->conn->fd);
    if (!frame) break;
    const std::string& type = (*frame)["t"].get_ref<const std::string&>();
    try {
      if (type == "output") {
        EngineOutput out = DecodeOutput(frame->at("output"));
        OutputSink sink;
        {
          MutexLock lock(mutex_);
          auto it = inflight_.find(out.id);
          if (it == inflight_.end()) continue;
          it->second.completion_tokens += static_cast<int32_t>(out.tokens.size());
          if (out.finished) {
            sink = std::move(it->second.sink);
            inflight_.erase(it);
          } else {
            sink = it->second.sink;
          }
        }
        sink(std::move(out));
      } else if (type == "pong") {
        MutexLock lock(mutex_);
        stats_ = DecodeStats(frame->at("stats"));
        tenant_stats_ = DecodeTenantStats(frame->at("tenants"));
        last_pong_ = Clock::now();
      } else if (type == "ready") {
        MutexLock lock(mutex_);
        // Every tenant known so far, before the first request can reach the worker.
        // NOTE: written under mutex_ so no UpsertTenant is lost in between; the worker is
        // idle and reading at this point (it has just sent `ready`).
        for (const auto& [name, limits] : tenants_) {
          (void)worker->conn->writer.Write(
              {{"t", "upsert"}, {"tenant", name}, {"limits", EncodeLimits(limits)}});
        }
        state_ = PoolState::kReady;
        last_pong_ = Clock::now();
        if (!first_start_) first_start_ = Status::Ok();
        cv_.NotifyAll();
        LogEvent(LogLevel::kInfo, "pool_worker_ready",
                 {F("pool", pool_.name), F("pid", static_cast<long long>(worker->pid))});
      }
    } catch (const json::exception& e) {
      LogEvent(LogLevel::kError, "pool_worker_bad_frame", {F("pool", pool_.name), F("error", e.what())});
      break;
    }
  }
  MutexLock lock(mutex_);
  worker->dead = true;
  cv_.NotifyAll();
}

void ProcessEngine::Retire(std::unique_ptr<Worker> worker, const std::string& error) {
  ::shutdown(worker->conn->fd, SHUT_RDWR);
  if (worker->reader.joinable()) worker->reader.join();
  // The socket is closed: the worker exits on EOF; one that does not is killed.
  int wstatus = 0;
  pid_t r = 0;
  for (int i = 0; i < 100 && (r = ::waitpid(worker->pid, &wstatus, WNOHANG)) == 0; ++i) {
    std::this_thread::sleep_for(milliseconds(20));
  }
  if (r == 0) {
    ::kill(worker->pid, SIGKILL);
    ::waitpid(worker->pid, &wstatus, 0);
  }
  std::map<uint64_t, Inflight> failed;
  std::string why;
  bool stopping = false;
  {
    MutexLock lock(mutex_);
    stopping = stopping_;
    worker_ = nullptr;
    failed.swap(inflight_);
    why = error.empty() ? DescribeExit(wstatus) : error;
    if (!stats_.device_fault.empty()) {
      // The worker's last pong reported a sticky device fault: that is why it exited.
      why = "device fault: " + stats_.device_fault + " (worker " + why + ")";
      stats_.device_fault.clear();
    }
    if (!stopping_) {
      ++deaths_;
      last_error_ = why;
      state_ = PoolState::kRestarting;
      down_since_ = Clock::now();
      if (!first_start_) first_start_ = Unavailable("pool " + pool_.name + " worker " + why);
      cv_.NotifyAll();
    }
  }
  worker->conn.reset();  // closed once no writer holds it
  if (!failed.empty() || !stopping) {
    LogEvent(stopping ? LogLevel::kInfo : LogLevel::kError, "pool_worker_ended",
             {F("pool", pool_.name), F("pid", static_cast<long long>(worker->pid)), F("why", why),
              F("failed_requests", static_cast<long long>(failed.size()))});
  }
  const Status status = stopping ? Unavailable("engine stopped")
                                  : Unavailable("pool " + pool_.name + " worker died (" + why + ")");
  for (auto& [id, f] : failed) {
    // Tokens already delivered stay counted: the final event carries them.
    EngineOutput out;
    out.id = id;
    out.finished = true;
    out.finish_reason = FinishReason::kAbort;
    out.error = status;
    out.prompt_tokens = f.prompt_tokens;
    out.completion_tokens = f.completion_tokens;
    f.sink(std::move(out));
  }
}

bool ProcessEngine::SleepUnlessStopping(milliseconds d) {
  MutexLock lock(mutex_);
  return !cv_.WaitFor(lock, d, [&]() REQUIRES(mutex_) { return stopping_; });
}

void ProcessEngine::SupervisorMain() {
  const milliseconds first_backoff = pool_.restart_backoff;
  const milliseconds max_backoff = std::max(kMaxBackoff, first_backoff);
  milliseconds backoff = first_backoff;
  const milliseconds ping_every =
      std::clamp(milliseconds(pool_.health_timeout.count() / 5), milliseconds(50), milliseconds(1000));
  for (;;) {
    {
      MutexLock lock(mutex_);
      if (stopping_) break;
    }
    auto spawned = Spawn();
    if (!spawned.ok()) {
      {
        MutexLock lock(mutex_);
        last_error_ = spawned.status().message();
        state_ = PoolState::kRestarting;
        if (!first_start_) first_start_ = spawned.status();
        cv_.NotifyAll();
      }
      if (!SleepUnlessStopping(backoff)) break;
      backoff = std::min(backoff * 2, max_backoff);
      continue;
    }
    std::unique_ptr<Worker> worker = std::move(spawned).value();
    Worker* w = worker.get();
    {
      MutexLock lock(mutex_);
      worker_ = w;
      if (stopping_) ::shutdown(w->conn->fd, SHUT_RDWR);
    }
    w->reader = std::thread([this, w] { ReaderMain(w); });
    std::string error;
    Clock::time_point ready_since{};
    for (;;) {
      uint64_t seq = 0;
      {
        MutexLock lock(mutex_);
        cv_.WaitFor(lock, ping_every, [&]() REQUIRES(mutex_) { return stopping_ || w->dead; });
        if (stopping_ || w->dead) break;
        if (state_ != PoolState::kReady) continue;  // loading its model: no pings yet
        if (ready_since == Clock::time_point{}) ready_since = Clock::now();
        if (Clock::now() - last_pong_ > pool_.health_timeout) {
          error = "did not answer health pings for " +
                  std::to_string(pool_.health_timeout.count()) + " ms (killed)";
          ::kill(w->pid, SIGKILL);
          break;
        }
        seq = ++ping_seq_;
      }
      (void)w->conn->writer.Write({{"t", "ping"}, {"seq", seq}});
    }
    const bool stable = ready_since != Clock::time_point{} && Clock::now() - ready_since > kStableRun;
    Retire(std::move(worker), error);
    if (stable) backoff = first_backoff;
    if (!SleepUnlessStopping(backoff)) break;
    backoff = std::min(backoff * 2, max_backoff);
    MutexLock lock(mutex_);
    if (stopping_) break;
    ++restarts_;
  }
}

}  // namespace llmux::pool
