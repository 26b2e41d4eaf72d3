// An Engine whose steps run in a supervised worker process (isolation: process). Lives in the
// daemon; see llmux/pool.h for the behaviour on worker death and pool/wire.h for the protocol.
//
// Threads: any thread may call the Engine methods; one supervisor thread per pool starts,
// pings and restarts workers; one reader thread per worker delivers its events to the sinks
// (sinks run on that reader thread and must not block, as with the local engine).
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "llmux/pool.h"
#include "llmux/thread_annotations.h"
#include "pool/wire.h"

namespace llmux::pool {

class ProcessEngine final : public Engine {
 public:
  // Reads the pool model's config.json (model_config() needs it); starts nothing.
  static StatusOr<std::unique_ptr<ProcessEngine>> Create(const PoolSection& pool,
                                                         std::vector<LaneConfig> lanes,
                                                         const PoolSetOptions& options);
  ~ProcessEngine() override;
  ProcessEngine(const ProcessEngine&) = delete;
  ProcessEngine& operator=(const ProcessEngine&) = delete;

  const ModelConfig& model_config() const override { return model_config_; }
  // Kept and re-sent to every new worker. InvalidArgument as the local engine.
  Status UpsertTenant(const std::string& name, const TenantLimits& limits) override;
  // Validates like the local engine; Unavailable ("pool X is restarting its worker") while no
  // worker is ready. A refusal by the worker's engine arrives through the sink.
  Status Submit(EngineRequest request, OutputSink sink) override;
  void Abort(uint64_t id) override;
  // The worker's figures as of its last health ping.
  EngineStats Stats() const override;
  // The worker's per-tenant figures as of its last health ping (nullopt before the worker
  // has reported the tenant).
  std::optional<TenantStats> GetTenantStats(const std::string& tenant) const override;
  // Starts the supervisor (and so the first worker).
  void Start() override;
  void Stop() override;
  // FailedPrecondition: a process pool steps in its worker only.
  StatusOr<bool> StepOnce() override;
  Status RunUntilIdle() override;
  Backend* backend_for_testing() override { return nullptr; }
  void SetBeforeForwardHookForTesting(std::function<void(const SchedulerOutput&)>) override {}
  // NOTE: an in-process hook cannot reach the worker's engine; the test daemon's worker (the
  // same `llmuxd-test` binary) installs its own from the environment it inherits.
  void SetSequenceFaultHookForTesting(
      std::function<Status(const EngineRequest&, int32_t)>) override {}
  void SetSampleOverrideHookForTesting(
      std::function<std::optional<int32_t>(const EngineRequest&, int32_t)>) override {}

  // Blocks until the first worker is ready (OK) or has died before becoming ready (its error),
  // or `timeout` passes (DeadlineExceeded).
  Status WaitUntilFirstReady(std::chrono::milliseconds timeout);
  PoolStatus Describe() const;

 private:
  struct Inflight {
    OutputSink sink;
    int32_t prompt_tokens = 0;
    int32_t completion_tokens = 0;
  };
  // The daemon's end of a worker's socket; closed when the last holder lets go.
  // NOTE: writers copy the shared_ptr under mutex_ and write without it, so a worker that
  // stops reading blocks (up to the send timeout) only the writing thread, never the reader
  // or other pools, and the descriptor cannot be closed and reused under a writer.
  struct Connection {
    explicit Connection(int fd_in) : fd(fd_in), writer(fd_in) {}
    ~Connection();
    const int fd;
    FrameWriter writer;
  };
  // One worker process.
  struct Worker {
    int pid = 0;
    std::shared_ptr<Connection> conn;
    std::thread reader;
    // Under ProcessEngine::mutex_. NOTE: a plain comment: GUARDED_BY cannot name a mutex of
    // the enclosing object from a nested one, so this flag is outside the analysis.
    bool dead = false;
  };
  // The live worker's connection, or null when none is ready. Takes mutex_.
  std::shared_ptr<Connection> ReadyConnection() const;

  ProcessEngine(const PoolSection& pool, std::vector<LaneConfig> lanes, PoolSetOptions options,
                ModelConfig model_config);
  void SupervisorMain();
  // Spawns a worker and sends it init + every tenant. Error when it cannot be spawned.
  StatusOr<std::unique_ptr<Worker>> Spawn();
  void ReaderMain(Worker* worker);
  // Joins the reader, reaps the process, fails its in-flight requests with `error`.
  void Retire(std::unique_ptr<Worker> worker, const std::string& error);
  bool SleepUnlessStopping(std::chrono::milliseconds d);

  const PoolSection pool_;
  const std::vector<LaneConfig> lanes_;
  const PoolSetOptions options_;
  const ModelConfig model_config_;

  mutable Mutex mutex_;
  CondVar cv_;
  PoolState state_ GUARDED_BY(mutex_) = PoolState::kStarting;
  Worker* worker_ GUARDED_BY(mutex_) = nullptr;  // owned by the supervisor
  bool stopping_ GUARDED_BY(mutex_) = false;
  std::optional<Status> first_start_ GUARDED_BY(mutex_);
  std::map<uint64_t, Inflight> inflight_ GUARDED_BY(mutex_);
  std::map<std::string, TenantLimits> tenants_ GUARDED_BY(mutex_);
  EngineStats stats_ GUARDED_BY(mutex_);
  std::map<std::string, TenantStats> tenant_stats_ GUARDED_BY(mutex_);
  std::chrono::steady_clock::time_point last_pong_ GUARDED_BY(mutex_);
  int32_t restarts_ GUARDED_BY(mutex_) = 0;
  // When the pool last stopped being ready (construction: starting).
  std::chrono::steady_clock::time_point down_since_ GUARDED_BY(mutex_) =
      std::chrono::steady_clock::now();
  int32_t deaths_ GUARDED_BY(mutex_) = 0;
  std::string last_error_ GUARDED_BY(mutex_);
  uint64_t ping_seq_ GUARDED_BY(mutex_) = 0;
  std::thread supervisor_;
};

}  // namespace llmux::pool
