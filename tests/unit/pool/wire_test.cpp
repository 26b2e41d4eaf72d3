// The daemon <-> worker frames: exact round trips and framing over a real socketpair.
#include "pool/wire.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include "llmux/pool.h"

namespace llmux::pool {
namespace {

TEST(WireTest, RequestRoundTripsEveryField) {
  EngineRequest r;
  r.id = 18446744073709551615ull;
  r.tenant = "acme";
  r.prompt = {1, 403, 407};
  r.sampling.temperature = 0.7f;
  r.sampling.top_p = 0.9f;
  r.sampling.top_k = 40;
  r.sampling.min_p = 0.05f;
  r.sampling.repetition_penalty = 1.1f;
  r.sampling.presence_penalty = -0.5f;
  r.sampling.frequency_penalty = 0.25f;
  r.sampling.logit_bias = {{5, -100.0f}, {7, 2.5f}};
  r.sampling.seed = 12345678901234ull;
  r.sampling.max_tokens = 33;
  r.sampling.min_tokens = 2;
  r.sampling.stop_token_ids = {9, 10};
  r.sampling.ignore_eos = true;
  r.sampling.logprobs = 3;
  r.queue_timeout_ms = 2500;
  const EngineRequest d = DecodeRequest(EncodeRequest(r));
  EXPECT_EQ(d.id, r.id);
  EXPECT_EQ(d.tenant, "acme");
  EXPECT_EQ(d.prompt, r.prompt);
  EXPECT_EQ(d.sampling.temperature, 0.7f);
  EXPECT_EQ(d.sampling.top_p, 0.9f);
  EXPECT_EQ(d.sampling.top_k, 40);
  EXPECT_EQ(d.sampling.min_p, 0.05f);
  EXPECT_EQ(d.sampling.repetition_penalty, 1.1f);
  EXPECT_EQ(d.sampling.presence_penalty, -0.5f);
  EXPECT_EQ(d.sampling.frequency_penalty, 0.25f);
  ASSERT_EQ(d.sampling.logit_bias.size(), 2u);
  EXPECT_EQ(d.sampling.logit_bias[1].token, 7);
  EXPECT_EQ(d.sampling.logit_bias[1].bias, 2.5f);
  EXPECT_EQ(d.sampling.seed, std::optional<uint64_t>(12345678901234ull));
  EXPECT_EQ(d.sampling.max_tokens, 33);
  EXPECT_EQ(d.sampling.min_tokens, 2);
  EXPECT_EQ(d.sampling.stop_token_ids, (std::vector<int32_t>{9, 10}));
  EXPECT_TRUE(d.sampling.ignore_eos);
  EXPECT_EQ(d.sampling.logprobs, std::optional<int32_t>(3));
  EXPECT_EQ(d.queue_timeout_ms, 2500);

  EngineRequest plain;
  plain.prompt = {1};
  const EngineRequest p = DecodeRequest(EncodeRequest(plain));
  EXPECT_FALSE(p.sampling.seed.has_value());
  EXPECT_FALSE(p.sampling.logprobs.has_value());
}

TEST(WireTest, GrammarSpecTravelsWithoutTheCompiledGrammar) {
  EngineRequest r;
  r.prompt = {1};
  GrammarSpec spec;
  spec.kind = GrammarSpec::Kind::kJsonSchema;
  spec.schema = R"({"type":"object","properties":{"b":{},"a":{}}})";
  spec.prefix = "<tool_call>";
  spec.suffix = "</tool_call>";
  r.grammar_spec = spec;
  const EngineRequest d = DecodeRequest(EncodeRequest(r));
  ASSERT_TRUE(d.grammar_spec.has_value());
  EXPECT_EQ(d.grammar_spec->Fingerprint(), spec.Fingerprint());  // every field, order kept
  EXPECT_EQ(d.grammar, nullptr);  // the worker compiles it against its own vocabulary
  r.grammar_spec->kind = GrammarSpec::Kind::kJsonObject;
  EXPECT_EQ(DecodeRequest(EncodeRequest(r)).grammar_spec->kind, GrammarSpec::Kind::kJsonObject);
  r.grammar_spec.reset();
  EXPECT_FALSE(DecodeRequest(EncodeRequest(r)).grammar_spec.has_value());
}

TEST(WireTest, OutputRoundTripsLogprobsBitExactAndErrors) {
  EngineOutput o;
  o.id = 42;
  o.tokens = {17};
  SampledToken s;
  s.token = 17;
  s.logprob = -0.123456789f;
  s.top = {{17, -0.123456789f}, {3, -2.75f}};
  o.logprobs = {s};
  o.finished = true;
  o.finish_reason = FinishReason::kLength;
  o.stop_token = 2;
  o.error = Unavailable("pool acme worker died");
  o.prompt_tokens = 5;
  o.cached_tokens = 32;
  o.completion_tokens = 7;
  o.preemptions = 1;
  o.step = 99;
  o.queue_seconds = 0.25;
  o.first_token_seconds = 0.5;
  o.engine_seconds = 0.125;
  const EngineOutput d = DecodeOutput(EncodeOutput(o));
  EXPECT_EQ(d.id, 42u);
  EXPECT_EQ(d.tokens, o.tokens);
  ASSERT_EQ(d.logprobs.size(), 1u);
  EXPECT_EQ(d.logprobs[0].logprob, s.logprob);  // bit-exact through JSON
  ASSERT_EQ(d.logprobs[0].top.size(), 2u);
  EXPECT_EQ(d.logprobs[0].top[1].token, 3);
  EXPECT_EQ(d.logprobs[0].top[1].logprob, -2.75f);
  EXPECT_TRUE(d.finished);
  EXPECT_EQ(d.finish_reason, FinishReason::kLength);
  EXPECT_EQ(d.stop_token, std::optional<int32_t>(2));
  EXPECT_EQ(d.error.code(), StatusCode::kUnavailable);
  EXPECT_EQ(d.error.message(), "pool acme worker died");
  EXPECT_EQ(d.prompt_tokens, 5);
  EXPECT_EQ(d.cached_tokens, 32);
  EXPECT_EQ(d.completion_tokens, 7);
  EXPECT_EQ(d.preemptions, 1);
  EXPECT_EQ(d.step, 99);
  EXPECT_EQ(d.queue_seconds, 0.25);
  EXPECT_EQ(d.first_token_seconds, 0.5);
  EXPECT_EQ(d.engine_seconds, 0.125);
  EXPECT_TRUE(DecodeOutput(EncodeOutput(EngineOutput{})).error.ok());
}

TEST(WireTest, LimitsAndStatsRoundTrip) {
  TenantLimits l;
  l.lane = 2;
  l.weight = 1.5;
  l.max_inflight_tokens = 1000;
  l.reserved_kv_tokens = 64;
  l.reserved_seqs = 3;
  l.prefix_cache = PrefixCacheMode::kOff;
  l.prefix_cache_group = "g";
  l.zero_kv_on_free = true;
  const TenantLimits d = DecodeLimits(EncodeLimits(l));
  EXPECT_EQ(d.lane, 2);
  EXPECT_EQ(d.weight, 1.5);
  EXPECT_EQ(d.max_inflight_tokens, 1000);
  EXPECT_EQ(d.reserved_kv_tokens, 64);
  EXPECT_EQ(d.reserved_seqs, 3);
  EXPECT_EQ(d.prefix_cache, PrefixCacheMode::kOff);
  EXPECT_EQ(d.prefix_cache_group, "g");
  EXPECT_TRUE(d.zero_kv_on_free);

  EngineStats s;
  s.steps = 10;
  s.running = 3;
  s.waiting = 4;
  s.kv_usage = 0.5;
  s.prefix_hit_tokens = 48;
  s.generation_tokens_total = 77;
  s.device_fault = "cuda device faulted: Attention: an illegal memory access was encountered";
  s.gemm_choices.push_back({.n = 4096, .k = 14336, .out_f32 = false, .kernel = "cublaslt",
                            .tile_n = 64, .tile_m = 64, .ctas_at_m1 = 64,
                            .candidates_tried = 2, .m_plans = 5, .rejected_layouts = 1});
  s.gemm_choices.push_back({.n = 128256, .k = 4096, .out_f32 = true, .kernel = "fallback",
                            .ctas_at_m1 = 2004, .m_plans = 1});
  const EngineStats e = DecodeStats(EncodeStats(s));
  EXPECT_EQ(e.steps, 10);
  EXPECT_EQ(e.running, 3);
  EXPECT_EQ(e.waiting, 4);
  EXPECT_EQ(e.kv_usage, 0.5);
  EXPECT_EQ(e.prefix_hit_tokens, 48);
  EXPECT_EQ(e.generation_tokens_total, 77);
  EXPECT_EQ(e.device_fault, s.device_fault);  // the daemon learns it from the worker's pong
  // /admin/pools shows a process pool's GEMM choices as its worker reported them.
  ASSERT_EQ(e.gemm_choices.size(), 2u);
  const GemmChoice& a = e.gemm_choices[0];
  EXPECT_EQ(a.n, 4096);
  EXPECT_EQ(a.k, 14336);
  EXPECT_FALSE(a.out_f32);
  EXPECT_EQ(a.kernel, "cublaslt");
  EXPECT_EQ(a.tile_n, 64);
  EXPECT_EQ(a.tile_m, 64);
  EXPECT_EQ(a.ctas_at_m1, 64);
  EXPECT_EQ(a.candidates_tried, 2);
  EXPECT_EQ(a.m_plans, 5);
  EXPECT_EQ(a.rejected_layouts, 1);
  const GemmChoice& b = e.gemm_choices[1];
  EXPECT_EQ(b.n, 128256);
  EXPECT_TRUE(b.out_f32);
  EXPECT_EQ(b.kernel, "fallback");
  EXPECT_EQ(b.ctas_at_m1, 2004);
  EXPECT_EQ(b.tile_n, 0);
}

// A process pool's engine time reaches the daemon's /metrics through the pong: the pool's busy
// seconds in its stats, each tenant's share in its tenant stats, bit-exact.
TEST(WireTest, EngineTimeAndCostConstantsRoundTrip) {
  EngineStats s;
  s.busy_seconds = 12.345678901234567;
  s.cost_step_us = 250.5;
  s.cost_prefill_token_us = 0.125;
  s.cost_decode_token_us = 3.75;
  s.cost_context_us = 0.0009765625;
  s.cost_sample_us = 41.0;
  s.cost_fit_steps = 9876;
  s.steps_yielded = 31;
  s.yielded_seconds = 0.015625;
  const EngineStats e = DecodeStats(EncodeStats(s));
  EXPECT_EQ(e.steps_yielded, 31);
  EXPECT_EQ(e.yielded_seconds, 0.015625);
  EXPECT_EQ(e.busy_seconds, s.busy_seconds);
  EXPECT_EQ(e.cost_step_us, 250.5);
  EXPECT_EQ(e.cost_prefill_token_us, 0.125);
  EXPECT_EQ(e.cost_decode_token_us, 3.75);
  EXPECT_EQ(e.cost_context_us, 0.0009765625);
  EXPECT_EQ(e.cost_sample_us, 41.0);
  EXPECT_EQ(e.cost_fit_steps, 9876);

  TenantStats a;
  a.running = 2;
  a.engine_seconds = 7.000000000000001;
  TenantStats b;
  b.engine_seconds = 0.1;
  const std::map<std::string, TenantStats> d =
      DecodeTenantStats(EncodeTenantStats({{"acme", a}, {"beta", b}}));
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(d.at("acme").engine_seconds, 7.000000000000001);
  EXPECT_EQ(d.at("acme").running, 2);
  EXPECT_EQ(d.at("beta").engine_seconds, 0.1);
}

// Every field of the stats table crosses the wire (a process pool's /metrics and /admin/stats
// read what its worker sent), each with its own value.
TEST(WireTest, EveryEngineStatsFieldRoundTrips) {
  EngineStats s;
  int n = 0;
  ForEachEngineStat([&](const EngineStatField&, auto member) {
    s.*member = static_cast<std::remove_reference_t<decltype(s.*member)>>(++n * 3);
  });
  ASSERT_EQ(n, 23);
  const nlohmann::json j = EncodeStats(s);
  EXPECT_EQ(j.at("steps_yielded").get<int64_t>(), 45);
  EXPECT_EQ(j.at("steps_yielded_underserved").get<int64_t>(), 48);
  EXPECT_EQ(j.at("kv_events_dropped").get<int64_t>(), 39);
  EXPECT_EQ(j.at("inbox").get<int32_t>(), 15);
  const EngineStats d = DecodeStats(j);
  int i = 0;
  ForEachEngineStat([&](const EngineStatField& f, auto member) {
    ++i;
    EXPECT_EQ(d.*member, s.*member) << f.name;
    EXPECT_EQ(static_cast<double>(d.*member), i * 3.0) << f.name;
  });
}

// What a worker's backend runs BF16-weight MatMuls in crosses the wire, and "not reported"
// (a CUDA worker) stays unreported: /admin/pools then shows the configured value.
TEST(WireTest, TheBackendsBf16ActivationsRoundTrip) {
  for (CpuBf16Activations mode : {CpuBf16Activations::kBf16, CpuBf16Activations::kF32}) {
    EngineStats s;
    s.cpu_bf16_activations = mode;
    const nlohmann::json j = EncodeStats(s);
    EXPECT_EQ(j.at("cpu_bf16_activations"), mode == CpuBf16Activations::kBf16 ? "bf16" : "f32");
    EXPECT_EQ(DecodeStats(j).cpu_bf16_activations, mode);
  }
  const nlohmann::json none = EncodeStats(EngineStats{});
  EXPECT_FALSE(none.contains("cpu_bf16_activations"));
  EXPECT_EQ(DecodeStats(none).cpu_bf16_activations, std::nullopt);
}

// GET /admin/pools `cpu_bf16_activations`: the value the backend runs, and the configured one
// beside it only when they differ.
TEST(WireTest, PoolsShowTheBf16ActivationsInUseAndTheConfiguredOneWhenTheyDiffer) {
  EngineStats s;
  s.cpu_bf16_activations = CpuBf16Activations::kF32;  // a CPU without AVX-512 BF16
  EXPECT_EQ(CpuBf16ActivationsJson(Bf16Activations::kBf16, s),
            nlohmann::json({{"cpu_bf16_activations", "f32"},
                            {"cpu_bf16_activations_configured", "bf16"}}));
  EXPECT_EQ(CpuBf16ActivationsJson(Bf16Activations::kF32, s),
            nlohmann::json({{"cpu_bf16_activations", "f32"}}));
  s.cpu_bf16_activations = CpuBf16Activations::kBf16;
  EXPECT_EQ(CpuBf16ActivationsJson(Bf16Activations::kBf16, s),
            nlohmann::json({{"cpu_bf16_activations", "bf16"}}));
  // Nothing reported (CUDA; a process pool before its first ping): the configured value.
  s.cpu_bf16_activations.reset();
  EXPECT_EQ(CpuBf16ActivationsJson(Bf16Activations::kBf16, s),
            nlohmann::json({{"cpu_bf16_activations", "bf16"}}));
  EXPECT_EQ(CpuBf16ActivationsJson(Bf16Activations::kF32, s),
            nlohmann::json({{"cpu_bf16_activations", "f32"}}));
}

// The step histograms (outside LLMUX_ENGINE_STATS) cross the wire whole, so a process pool's
// llmux_engine_step_seconds / _batch_size / _batch_tokens come out of its worker's pings.
TEST(WireTest, StepHistogramsRoundTrip) {
  EngineStats s;
  s.step_seconds.Observe(0.0003, kStepSecondsBounds);
  s.step_seconds.Observe(20.0, kStepSecondsBounds);  // above every bound: +Inf
  s.batch_size.Observe(3, kBatchSizeBounds);
  s.batch_tokens.Observe(64, kBatchTokenBounds);  // on a bound: that bucket (le)
  const EngineStats d = DecodeStats(EncodeStats(s));
  EXPECT_EQ(d.step_seconds, s.step_seconds);
  EXPECT_EQ(d.batch_size, s.batch_size);
  EXPECT_EQ(d.batch_tokens, s.batch_tokens);
  ASSERT_EQ(d.step_seconds.counts.size(), std::size(kStepSecondsBounds) + 1);
  EXPECT_EQ(d.step_seconds.counts[2], 1);       // 0.00025 < 0.0003 <= 0.0005
  EXPECT_EQ(d.step_seconds.counts.back(), 1);   // +Inf
  EXPECT_EQ(d.batch_size.counts[2], 1);         // 2 < 3 <= 4
  EXPECT_EQ(d.batch_tokens.counts[3], 1);       // 64 <= 64
  EXPECT_DOUBLE_EQ(d.step_seconds.sum, 20.0003);
  EXPECT_TRUE(DecodeStats(EncodeStats(EngineStats{})).batch_size.counts.empty());
}

TEST(WireTest, FramesCrossASocketInOrderAndEofEndsTheSession) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  FrameWriter w(sv[0]);
  ASSERT_TRUE(w.Write({{"t", "ping"}, {"seq", 1}}).ok());
  const std::string big(100000, 'x');  // larger than one read
  ASSERT_TRUE(w.Write({{"t", "blob"}, {"data", big}}).ok());
  auto a = ReadFrame(sv[1]);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ((*a)["t"], "ping");
  EXPECT_EQ((*a)["seq"], 1);
  auto b = ReadFrame(sv[1]);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ((*b)["data"].get<std::string>().size(), 100000u);
  ::close(sv[0]);
  EXPECT_FALSE(ReadFrame(sv[1]).has_value());
  ::close(sv[1]);
}

TEST(WireTest, MalformedFramesAreRejected) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  const char not_json[] = {3, 0, 0, 0, 'a', 'b', 'c'};
  ASSERT_EQ(::write(sv[0], not_json, sizeof(not_json)), 7);
  EXPECT_FALSE(ReadFrame(sv[1]).has_value());
  const char no_type[] = {2, 0, 0, 0, '{', '}'};
  ASSERT_EQ(::write(sv[0], no_type, sizeof(no_type)), 6);
  EXPECT_FALSE(ReadFrame(sv[1]).has_value());
  const char huge[] = {0, 0, 0, 0x7f};  // 2 GiB > kMaxFrameBytes
  ASSERT_EQ(::write(sv[0], huge, sizeof(huge)), 4);
  EXPECT_FALSE(ReadFrame(sv[1]).has_value());
  ::close(sv[0]);
  ::close(sv[1]);
}

}  // namespace
}  // namespace llmux::pool
