// Engine::Create and the engine's lifecycle: the thread loop, Start/Stop, RunUntilIdle.
// engine_impl.h lists where the rest of the engine lives.
#include <pthread.h>

#include <atomic>

#include "engine/engine_impl.h"

namespace llmux {

EngineImpl::EngineImpl(const EngineConfig& config, std::unique_ptr<Backend> backend,
                       std::unique_ptr<Model> model, std::unique_ptr<Scheduler> scheduler)
    : config_(config),
      backend_(std::move(backend)),
      model_(std::move(model)),
      scheduler_(std::move(scheduler)),
      stop_checker_(model_->config().eos_token_ids, config.scheduler.max_model_len),
      batch_builder_(config.scheduler.block_size),
      cost_model_(model_->config(), config.step_cost),
      epoch_(EngineClock::now()),
      inbox_(config.max_inbox, static_cast<int32_t>(config.scheduler.lanes.size())) {
  // Known before the first step: a pool describes it from the start.
  stats_.cpu_bf16_activations = backend_->CpuBf16ActivationsInUse();
}

void EngineImpl::ThreadMain() {
  for (;;) {
    // Idle: sleep until something arrives (or a queue timeout may be due).
    const bool closed = scheduler_->HasWork() ? inbox_.closed()
                                              : inbox_.WaitForItem(std::chrono::milliseconds(100));
    if (closed) break;
    auto progressed = StepOnce();
    if (!progressed.ok()) continue;  // FailStep failed that step's requests, not the engine
    // Work waits on capacity that only a finishing request (or an abort) can free.
    if (!*progressed && scheduler_->HasWork()) inbox_.WaitForItem(std::chrono::milliseconds(2));
  }
  DrainInbox();
  FailAll(Unavailable("engine stopped"));
}

void EngineImpl::Start() {
  LLMUX_CHECK(!thread_.joinable()) << "engine started twice";
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "llmux-engine");  // names it in top, perf and gdb
    ThreadMain();
  });
}

void EngineImpl::Stop() {
  if (!inbox_.Close()) return;
  if (thread_.joinable()) {
    thread_.join();
  } else {
    DrainInbox();
    FailAll(Unavailable("engine stopped"));
  }
}

Status EngineImpl::RunUntilIdle() {
  for (;;) {
    LLMUX_ASSIGN_OR_RETURN(bool progressed, StepOnce());
    if (!progressed) {
      if (!scheduler_->HasWork()) return Status::Ok();
      return Internal("engine has work it cannot schedule (" +
                      std::to_string(scheduler_->Stats().waiting) + " waiting)");
    }
  }
}

namespace {
std::atomic<EngineCreatedHook> engine_created_hook{nullptr};
}  // namespace

void SetEngineCreatedHookForTesting(EngineCreatedHook hook) { engine_created_hook.store(hook); }

StatusOr<std::unique_ptr<Engine>> Engine::Create(const EngineConfig& config,
                                                 std::unique_ptr<Backend> backend,
                                                 std::unique_ptr<Model> model) {
  if (!backend || !model) return InvalidArgument("engine needs a backend and a model");
  EngineConfig c = config;
  const ModelConfig& mc = model->config();
  if (c.scheduler.max_model_len <= 0 || c.scheduler.max_model_len > mc.max_position_embeddings) {
    c.scheduler.max_model_len = mc.max_position_embeddings;
  }
  if (c.scheduler.num_kv_blocks == 0) {
    if (c.kv_cache_tokens < c.scheduler.block_size) {
      return InvalidArgument("kv_cache_tokens (" + std::to_string(c.kv_cache_tokens) +
                             ") is smaller than one block");
    }
    c.scheduler.num_kv_blocks = static_cast<int32_t>(c.kv_cache_tokens / c.scheduler.block_size);
  }
  KvCacheSpec spec;
  spec.num_layers = mc.num_layers;
  spec.num_blocks = c.scheduler.num_kv_blocks;
  spec.block_size = c.scheduler.block_size;
  spec.num_heads = mc.num_heads;
  spec.num_kv_heads = mc.num_kv_heads;
  spec.head_dim = mc.head_dim;
  spec.dtype = c.kv_dtype.value_or(backend->ActivationDType());
  LLMUX_RETURN_IF_ERROR(backend->InitKvCache(spec));
  c.scheduler.kv_event_sink = c.kv_event_sink.get();
  LLMUX_ASSIGN_OR_RETURN(std::unique_ptr<Scheduler> scheduler, Scheduler::Create(c.scheduler));
  auto engine = std::unique_ptr<Engine>(
      new EngineImpl(c, std::move(backend), std::move(model), std::move(scheduler)));
  if (EngineCreatedHook hook = engine_created_hook.load()) hook(*engine);
  return engine;
}

}  // namespace llmux
