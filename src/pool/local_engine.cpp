#include "pool/local_engine.h"

#include <atomic>

#include "llmux/backend.h"
#include "llmux/kv_event_publisher.h"
#include "llmux/model.h"

namespace llmux::pool {
namespace {
std::atomic<BackendCreatedHook> backend_created_hook{nullptr};
}  // namespace

void SetBackendCreatedHookForTesting(BackendCreatedHook hook) { backend_created_hook.store(hook); }

StatusOr<std::unique_ptr<Engine>> CreateLocalEngine(const PoolSection& pool,
                                                    const std::vector<LaneConfig>& lanes,
                                                    EngineObserver* observer) {
  const std::string context = "pool " + pool.name;
  const EngineSection& e = pool.engine;
  StatusOr<std::unique_ptr<Backend>> backend = Unavailable("no backend");
  switch (e.backend) {
    case BackendKind::kCpu: {
      CpuBackendOptions o;
      o.threads = e.threads;
      o.use_blas = !e.batch_invariant;
      o.bf16_activations = e.cpu_bf16_activations == Bf16Activations::kBf16
                               ? CpuBf16Activations::kBf16
                               : CpuBf16Activations::kF32;
      backend = CreateCpuBackend(o);
      break;
    }
    case BackendKind::kCuda: {
      CudaBackendOptions o;
      o.device = e.devices.empty() ? 0 : e.devices[0];
      o.batch_invariant = e.batch_invariant;
      backend = CreateCudaBackend(o);
      break;
    }
  }
  if (!backend.ok()) return backend.status().WithContext(context + ": backend");
  if (BackendCreatedHook hook = backend_created_hook.load(); hook != nullptr) {
    *backend = hook(std::move(*backend), pool);
  }
  ModelLoadOptions load_options;
  load_options.quantize_q8_0 = pool.model.quantize_q8_0;
  auto model = Model::Load(pool.model.path, backend->get(), e.max_batched_tokens, load_options);
  if (!model.ok()) return model.status().WithContext(context + ": model");

  EngineConfig ec;
  ec.observer = observer;
  ec.kv_cache_tokens = e.kv_cache_tokens;
  switch (e.kv_dtype) {
    case KvDType::kBackendDefault: break;
    case KvDType::kF32: ec.kv_dtype = DType::kF32; break;
    case KvDType::kF16: ec.kv_dtype = DType::kF16; break;
    case KvDType::kBF16: ec.kv_dtype = DType::kBF16; break;
  }
  ec.scheduler.block_size = e.block_size;
  ec.scheduler.max_batched_tokens = e.max_batched_tokens;
  ec.scheduler.max_seqs = e.max_seqs;
  ec.max_step_ms = e.max_step_ms;
  ec.yield_to_higher_lane = e.yield_to_higher_lane;
  ec.scheduler.lane_exclusive_prefill = e.lane_exclusive_prefill;
  ec.yield_to_underserved = e.yield_to_underserved;
  ec.scheduler.underserved_exclusive_prefill = e.yield_to_underserved;
  ec.scheduler.max_model_len = pool.model.max_model_len;
  ec.scheduler.batching =
      e.batching == EngineBatching::kStatic ? BatchingMode::kStatic : BatchingMode::kContinuous;
  ec.scheduler.vtc_prefill_weight = e.prefill_weight;
  ec.scheduler.vtc_decode_weight = e.decode_weight;
  ec.scheduler.lanes = lanes;
  if (e.kv_events.enabled) {
    KvEventPublisherOptions o;
    o.endpoint = e.kv_events.endpoint;
    o.replay_endpoint = e.kv_events.replay_endpoint;
    o.topic = e.kv_events.topic;
    o.buffer_batches = e.kv_events.buffer_batches;
    o.max_queue_events = e.kv_events.max_queue_events;
    o.map_events = e.kv_events.map_events;
    o.medium = e.backend == BackendKind::kCuda ? "GPU" : "CPU";
    auto sink = CreateKvEventPublisher(o);
    if (!sink.ok()) return sink.status().WithContext(context);
    ec.kv_event_sink = std::move(*sink);
  }
  auto engine = Engine::Create(ec, std::move(*backend), std::move(*model));
  if (!engine.ok()) return engine.status().WithContext(context + ": engine");
  return engine;
}

}  // namespace llmux::pool
