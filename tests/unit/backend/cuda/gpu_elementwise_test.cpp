// The elementwise CUDA ops (Embedding, RmsNorm, AddRmsNorm, RoPE, SiLU-mul, the MatMul bias,
// WriteKv, GatherLogitsRows) against the CPU backend's ops, the project's reference, on the
// same inputs: rows 1, 7 and 64; the model widths (576 and 4096: SmolLM-135M and
// Llama-3-8B) and odd ones; strided views whose rows are not 16-byte aligned next to
// aligned ones; RoPE at the model's frequencies (theta 10000, and 500000 with Llama-3
// scaling) up to position 131000.
//
// Tolerances by dtype. The CPU computes in f32 from the same bf16-representable inputs; the
// device computes in f32 too and rounds its output once to bf16 (its activation dtype). So
// a device value must lie within half a bf16 ulp of the CPU's f32 value (its one rounding)
// plus a bound on the f32 difference of the two computations:
//   - RmsNorm / AddRmsNorm: the sum of squares is taken in another order; both sums of n
//     exact squares are within n * 2^-24 (relative) of the true sum, so the outputs differ by
//     at most (n + 16) * 2^-24 relative (sqrt, division and two products add a few roundings);
//   - SiLU-mul: expf (CUDA, 2 ulp) vs the CPU's polynomial exp (about 2 ulp), then 1 + e,
//     the division and the product: about 13 * 2^-24 relative, taken as 32 * 2^-24;
//   - RoPE: the angle is the same f32 product on both; cos/sin differ by at most 3 f32 ulps
//     (CUDA's sincosf 2 ulp, glibc's 1), so with the products' and the sum's roundings a
//     rotated value differs by at most about 10 * 2^-24 * (|x_i| + |x_partner|), taken as
//     16 * 2^-24 * (...) (absolute: the difference can cancel).
// Besides that bound, all but 1% (+ 2) of the values must be exactly the CPU's value rounded
// to bf16: the f32 results agree to a few 2^-24, so only values within that distance of a bf16
// rounding boundary (about one in a thousand) may round the other way.
// Copies (Embedding, gather, KV write) and the bias add after an exact GEMM are exact: the
// device result is the CPU's value rounded to bf16 (f32 for logits), bit for bit.
// Every op is also checked for batch invariance where it reduces: a row alone gives the same
// bits as in a 64-row launch.
#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "gpu_test_util.h"
#include "llmux/model_config.h"
#include "reference_ops.h"

namespace llmux {
namespace {

#ifdef LLMUX_HAVE_CUDA
using cuda::testing::DeviceTensors;
using cuda::testing::RandomBf16;
using cuda::testing::RoundBf16;

constexpr float kU = 0x1p-24f;  // the f32 unit roundoff

// One unit in the last place of a bf16 value of magnitude |x| (8 significant bits).
float Bf16Ulp(float x) {
  int e = 0;
  std::frexp(std::max(std::abs(x), FLT_MIN), &e);  // |x| in [2^(e-1), 2^e)
  return std::ldexp(1.0f, e - 8);
}

// got (device, bf16 values) vs want (CPU, f32): |got - want| <= ulp(want) / 2 + err[i], and
// all but 1% (+ 2, for short rows) of got exactly RoundBf16(want). `err` is the f32 difference
// bound per value.
void ExpectBf16OfCpu(const std::vector<float>& got, const std::vector<float>& want,
                     const std::vector<float>& err, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  ASSERT_EQ(err.size(), want.size()) << what;
  size_t exact = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_LE(std::abs(got[i] - want[i]), 0.5f * Bf16Ulp(want[i]) + err[i])
        << what << " at element " << i << ": device " << got[i] << ", cpu " << want[i] << " (bf16 "
        << RoundBf16(want[i]) << ")";
    exact += got[i] == RoundBf16(want[i]);
  }
  EXPECT_LE(got.size() - exact, got.size() / 100 + 2)
      << what << ": only " << exact << " of " << got.size() << " values are the CPU's rounded";
}

// err[i] = rel * |want[i]|.
std::vector<float> RelErr(const std::vector<float>& want, float rel) {
  std::vector<float> e(want.size());
  for (size_t i = 0; i < want.size(); ++i) e[i] = rel * std::abs(want[i]);
  return e;
}

// Rows [r0, r0 + n) of a dense [rows, cols] host matrix.
std::vector<float> RowsOf(const std::vector<float>& m, int cols, int r0, int n) {
  return {m.begin() + int64_t{r0} * cols, m.begin() + int64_t{r0 + n} * cols};
}

// The CUDA backend under test, the CPU backend (the reference) and tensors on both. Values
// are bf16-representable, so both backends start from the same numbers.
class Both {
 public:
  explicit Both(std::unique_ptr<Backend> cuda)
      : cuda_(std::move(cuda)), dev_(cuda_.get()), cpu_(CreateCpuBackend({.threads = 2}).value()) {}

  Backend* cuda() { return cuda_.get(); }
  Backend* cpu() { return cpu_.get(); }
  DeviceTensors& dev() { return dev_; }

  // A [rows, cols] f32 tensor in CPU memory with `pad` extra columns of stride.
  Tensor Cpu(const std::vector<float>& values, int64_t rows, int64_t cols, int64_t pad = 0) {
    EXPECT_EQ(static_cast<int64_t>(values.size()), rows * cols);
    auto buf = cpu_->Allocate(static_cast<size_t>(rows * (cols + pad)) * sizeof(float));
    EXPECT_TRUE(buf.ok());
    Tensor t{(*buf)->data(), DType::kF32, rows, cols, cols + pad};
    for (int64_t r = 0; r < rows; ++r) {
      std::memcpy(static_cast<float*>(t.data) + r * t.stride, values.data() + r * cols,
                  cols * sizeof(float));
    }
    cpu_bufs_.push_back(std::move(buf).value());
    return t;
  }
  static std::vector<float> Get(const Tensor& t) {
    std::vector<float> out(static_cast<size_t>(t.rows * t.cols));
    for (int64_t r = 0; r < t.rows; ++r) {
      std::memcpy(out.data() + r * t.cols, static_cast<const float*>(t.data) + r * t.stride,
                  t.cols * sizeof(float));
    }
    return out;
  }

  // Both KV pools (CUDA bf16, CPU f32), made once, large enough for position 131199.
  void InitKv(int kv_heads = 2, int head_dim = 8, int num_blocks = 8200) {
    if (cuda_->kv_spec().num_blocks != 0) return;
    KvCacheSpec s;
    s.num_layers = 2;
    s.num_blocks = num_blocks;
    s.block_size = 16;
    s.num_heads = kv_heads;
    s.num_kv_heads = kv_heads;
    s.head_dim = head_dim;
    s.dtype = DType::kBF16;
    ASSERT_TRUE(cuda_->InitKvCache(s).ok());
    s.dtype = DType::kF32;
    ASSERT_TRUE(cpu_->InitKvCache(s).ok());
  }

  // The same batch on both backends: sequence i has `lens[i]` new tokens from position
  // `starts[i]` and owns the i-th of num_seqs equal runs of the pool's blocks; token ids `ids`
  // (one per token); logits rows `logits_indices` (default: each sequence's last token).
  void Begin(const std::vector<int>& starts, const std::vector<int>& lens,
             const std::vector<int32_t>& ids, const std::vector<int32_t>& logits_indices = {}) {
    InitKv();
    const int num_blocks = cuda_->kv_spec().num_blocks;
    const int per_seq = num_blocks / static_cast<int>(starts.size());
    ForwardBatch fb;
    fb.query_start_loc = {0};
    fb.max_blocks_per_seq = per_seq;
    for (size_t s = 0; s < starts.size(); ++s) {
      const int first_block = static_cast<int>(s) * per_seq;
      for (int j = 0; j < lens[s]; ++j) {
        const int pos = starts[s] + j;
        fb.positions.push_back(pos);
        fb.slot_mapping.push_back(int64_t{first_block + pos / 16} * 16 + pos % 16);
      }
      fb.query_start_loc.push_back(static_cast<int>(fb.positions.size()));
      fb.seq_lens.push_back(starts[s] + lens[s]);
      for (int j = 0; j < per_seq; ++j) fb.block_tables.push_back(first_block + j);
    }
    fb.token_ids = ids;
    ASSERT_EQ(fb.token_ids.size(), fb.positions.size());
    fb.logits_indices = logits_indices;
    if (fb.logits_indices.empty()) {
      for (size_t s = 1; s < fb.query_start_loc.size(); ++s) {
        fb.logits_indices.push_back(fb.query_start_loc[s] - 1);
      }
    }
    const Status c = cuda_->BeginBatch(fb);
    ASSERT_TRUE(c.ok()) << c.ToString();
    const Status h = cpu_->BeginBatch(fb);
    ASSERT_TRUE(h.ok()) << h.ToString();
  }
 private:
  std::unique_ptr<Backend> cuda_;
  DeviceTensors dev_;
  std::unique_ptr<Backend> cpu_;
  std::vector<std::unique_ptr<DeviceBuffer>> cpu_bufs_;
};

#define LLMUX_BOTH_OR_SKIP(var)           \
  LLMUX_CUDA_BACKEND_OR_SKIP(var##_cuda); \
  Both var(std::move(var##_cuda))

struct RowsCols {
  int rows, cols;
  int pad;  // extra stride columns of the input views (odd pads misalign rows)
};

// rows 1, 7, 64 at the model widths and odd ones; aligned and misaligned strides.
const RowsCols kNormShapes[] = {{1, 576, 0},  {7, 576, 5},   {64, 576, 8}, {1, 4096, 3},
                                {7, 4096, 0}, {64, 4096, 1}, {7, 173, 0},  {64, 1000, 2},
                                {1, 8192, 0}, {3, 16, 1}};

// Norm weights around 1, as trained models have them.
std::vector<float> NormWeight(int cols, uint64_t seed) {
  auto w = RandomBf16(cols, seed, 0.5f);
  for (float& x : w) x = RoundBf16(1.0f + x);
  return w;
}

TEST(GpuElementwise, EmbeddingEqualsTheCpuOp) {
  LLMUX_BOTH_OR_SKIP(b);
  for (const int dim : {576, 4096, 75}) {
    const int vocab = 301;
    const auto vals = RandomBf16(size_t{vocab} * dim, dim);
    std::vector<uint16_t> bf(vals.size());
    for (size_t i = 0; i < bf.size(); ++i) bf[i] = FloatToBf16(vals[i]);
    HostTensor h{"emb",
                 DType::kBF16,
                 {vocab, dim},
                 reinterpret_cast<const std::byte*>(bf.data()),
                 bf.size() * 2};
    auto ct = b.cuda()->LoadWeight(h, WeightKind::kEmbedding);
    auto ht = b.cpu()->LoadWeight(h, WeightKind::kEmbedding);
    ASSERT_TRUE(ct.ok() && ht.ok());
    for (const int n : {1, 7, 64}) {
      std::vector<int32_t> ids(n);
      for (int t = 0; t < n; ++t) ids[t] = (t * 97 + dim) % vocab;
      ids[0] = vocab - 1;
      if (n > 1) ids[n - 1] = 0;
      b.Begin({0}, {n}, ids);
      Tensor out = b.dev().Make(DType::kBF16, n, dim, dim % 8 == 0 ? 8 : 3);
      Tensor cout = b.Cpu(std::vector<float>(size_t(n) * dim), n, dim);
      b.cuda()->Embedding(*ct, out);
      b.cpu()->Embedding(*ht, cout);
      ASSERT_EQ(b.dev().Get(out), Both::Get(cout)) << "dim " << dim << " tokens " << n;
    }
  }
}

TEST(GpuElementwise, RmsNormMatchesTheCpuOp) {
  LLMUX_BOTH_OR_SKIP(b);
  for (const RowsCols s : kNormShapes) {
    const std::string what = "rmsnorm " + std::to_string(s.rows) + "x" + std::to_string(s.cols) +
                             " pad " + std::to_string(s.pad);
    const auto x = RandomBf16(size_t(s.rows) * s.cols, s.rows * 7919 + s.cols, 3.0f);
    const auto w = NormWeight(s.cols, s.cols);
    auto cw = b.cuda()->UploadF32(w, 1, s.cols);
    auto hw = b.cpu()->UploadF32(w, 1, s.cols);
    ASSERT_TRUE(cw.ok() && hw.ok());
    Tensor tx = b.dev().Upload(x, DType::kBF16, s.rows, s.cols, s.pad);
    Tensor out = b.dev().Make(DType::kBF16, s.rows, s.cols);
    b.cuda()->RmsNorm(tx, *cw, 1e-5f, out);
    Tensor hx = b.Cpu(x, s.rows, s.cols, s.pad);
    Tensor hout = b.Cpu(std::vector<float>(x.size()), s.rows, s.cols);
    b.cpu()->RmsNorm(hx, *hw, 1e-5f, hout);
    const auto want = Both::Get(hout);
    const auto got = b.dev().Get(out);
    ExpectBf16OfCpu(got, want, RelErr(want, (s.cols + 16) * kU), what);
    // Batch invariance: the last row alone gives the same bits.
    Tensor one = b.dev().Upload(RowsOf(x, s.cols, s.rows - 1, 1), DType::kBF16, 1, s.cols);
    Tensor one_out = b.dev().Make(DType::kBF16, 1, s.cols);
    b.cuda()->RmsNorm(one, *cw, 1e-5f, one_out);
    ASSERT_EQ(b.dev().Get(one_out), RowsOf(got, s.cols, s.rows - 1, 1)) << what << " alone";
    // In place (out aliases x, with x's stride): the same bits.
    b.cuda()->RmsNorm(tx, *cw, 1e-5f, tx);
    ASSERT_EQ(b.dev().Get(tx), got) << what << " in place";
  }
}

// The device keeps the residual stream in bf16: residual <- bf16(residual + x), and the norm
// is taken of that stored value. The CPU's AddRmsNorm keeps it in f32, so the reference is
// the CPU's AddRmsNorm for the residual (rounded once, exact) and the CPU's RmsNorm of the
// rounded residual for the output: the CPU ops on the state the device holds.
TEST(GpuElementwise, AddRmsNormMatchesTheCpuOps) {
  LLMUX_BOTH_OR_SKIP(b);
  for (const RowsCols s : kNormShapes) {
    const std::string what = "add_rmsnorm " + std::to_string(s.rows) + "x" +
                             std::to_string(s.cols) + " pad " + std::to_string(s.pad);
    const size_t n = size_t(s.rows) * s.cols;
    const auto r = RandomBf16(n, s.cols * 31 + s.rows, 4.0f);
    const auto x = RandomBf16(n, s.cols * 37 + s.rows, 2.0f);
    const auto w = NormWeight(s.cols, s.cols + 1);
    auto cw = b.cuda()->UploadF32(w, 1, s.cols);
    auto hw = b.cpu()->UploadF32(w, 1, s.cols);
    ASSERT_TRUE(cw.ok() && hw.ok());
    Tensor tr = b.dev().Upload(r, DType::kBF16, s.rows, s.cols, s.pad);
    Tensor tx = b.dev().Upload(x, DType::kBF16, s.rows, s.cols, (s.pad + 1) % 9);
    Tensor out = b.dev().Make(DType::kBF16, s.rows, s.cols);
    b.cuda()->AddRmsNorm(tr, tx, *cw, 1e-6f, out);

    Tensor hr = b.Cpu(r, s.rows, s.cols);
    Tensor hx = b.Cpu(x, s.rows, s.cols, s.pad);
    Tensor hout = b.Cpu(std::vector<float>(n), s.rows, s.cols);
    b.cpu()->AddRmsNorm(hr, hx, *hw, 1e-6f, hout);
    std::vector<float> residual = Both::Get(hr);
    for (float& v : residual) v = RoundBf16(v);
    const auto got_residual = b.dev().Get(tr);
    ASSERT_EQ(got_residual, residual) << what << " residual";
    Tensor hrr = b.Cpu(residual, s.rows, s.cols);
    Tensor hout2 = b.Cpu(std::vector<float>(n), s.rows, s.cols);
    b.cpu()->RmsNorm(hrr, *hw, 1e-6f, hout2);
    const auto want = Both::Get(hout2);
    const auto got = b.dev().Get(out);
    ExpectBf16OfCpu(got, want, RelErr(want, (s.cols + 16) * kU), what);
    // The fused op equals the device's own RmsNorm of the stored residual, bit for bit.
    Tensor sep = b.dev().Make(DType::kBF16, s.rows, s.cols);
    b.cuda()->RmsNorm(tr, *cw, 1e-6f, sep);
    ASSERT_EQ(b.dev().Get(sep), got) << what << " fused vs separate";
    // A row alone: the same bits.
    Tensor r1 = b.dev().Upload(RowsOf(r, s.cols, s.rows - 1, 1), DType::kBF16, 1, s.cols);
    Tensor x1 = b.dev().Upload(RowsOf(x, s.cols, s.rows - 1, 1), DType::kBF16, 1, s.cols);
    Tensor o1 = b.dev().Make(DType::kBF16, 1, s.cols);
    b.cuda()->AddRmsNorm(r1, x1, *cw, 1e-6f, o1);
    ASSERT_EQ(b.dev().Get(o1), RowsOf(got, s.cols, s.rows - 1, 1)) << what << " alone";
  }
}

ModelConfig SmolLmRope() {  // SmolLM-135M: hidden 576, 9 heads of 64, 3 KV heads
  ModelConfig c;
  c.num_heads = 9;
  c.num_kv_heads = 3;
  c.head_dim = 64;
  c.rope_theta = 10000.0f;
  return c;
}
ModelConfig Llama3Rope() {  // Llama-3.1-8B: 32 heads of 128, 8 KV heads, theta 500000
  ModelConfig c;
  c.num_heads = 32;
  c.num_kv_heads = 8;
  c.head_dim = 128;
  c.rope_theta = 500000.0f;
  c.rope_scaling.type = RopeScaling::Type::kLlama3;
  c.rope_scaling.factor = 8.0f;
  c.rope_scaling.low_freq_factor = 1.0f;
  c.rope_scaling.high_freq_factor = 4.0f;
  c.rope_scaling.original_max_position_embeddings = 8192;
  return c;
}

// Per value: 16 * 2^-24 * (|x_i| + |x_partner|), the partner being the other half's value.
std::vector<float> RopeErr(const std::vector<float>& x, int head_dim) {
  std::vector<float> e(x.size());
  const int half = head_dim / 2;
  for (size_t i = 0; i < x.size(); ++i) {
    const size_t in_head = i % head_dim;
    const size_t partner = in_head < size_t(half) ? i + half : i - half;
    e[i] = 16 * kU * (std::abs(x[i]) + std::abs(x[partner]));
  }
  return e;
}

TEST(GpuElementwise, RopeMatchesTheCpuOpAtModelFrequencies) {
  LLMUX_BOTH_OR_SKIP(b);
  struct Case {
    ModelConfig config;
    std::vector<int> starts, lens;  // one sequence per entry
  };
  const Case cases[] = {
      {SmolLmRope(), {0}, {64}},
      {SmolLmRope(), {4093}, {7}},
      {SmolLmRope(), {131000}, {1}},
      {Llama3Rope(), {0}, {64}},
      {Llama3Rope(), {8190}, {7}},
      {Llama3Rope(), {131000}, {1}},
      // A mixed step: a decode, a chunk over a cached prefix and a fresh prefill.
      {Llama3Rope(), {40000, 300, 0}, {1, 7, 5}},
  };
  for (const Case& c : cases) {
    const int hd = c.config.head_dim;
    const std::vector<float> inv_freq = RopeInvFreq(c.config);
    auto cf = b.cuda()->UploadF32(inv_freq, 1, hd / 2);
    auto hf = b.cpu()->UploadF32(inv_freq, 1, hd / 2);
    ASSERT_TRUE(cf.ok() && hf.ok());
    int tokens = 0;
    for (int n : c.lens) tokens += n;
    b.Begin(c.starts, c.lens, std::vector<int32_t>(tokens, 1));
    const std::string what =
        "rope head_dim " + std::to_string(hd) + " first position " + std::to_string(c.starts[0]);
    // q and k as column views of one fused qkv row, as the model has them.
    const int qw = c.config.q_size(), kw = c.config.kv_size();
    const int fused = qw + 2 * kw;
    const auto qkv = RandomBf16(size_t(tokens) * fused, tokens * 131 + hd, 2.0f);
    std::vector<float> q, k;
    for (int t = 0; t < tokens; ++t) {
      const float* row = qkv.data() + size_t(t) * fused;
      q.insert(q.end(), row, row + qw);
      k.insert(k.end(), row + qw, row + qw + kw);
    }
    Tensor tqkv = b.dev().Upload(qkv, DType::kBF16, tokens, fused);
    Tensor tq = tqkv.ColSlice(0, qw);
    Tensor tk = tqkv.ColSlice(qw, kw);
    b.cuda()->Rope(tq, tk, *cf);
    Tensor hq = b.Cpu(q, tokens, qw, 3);
    Tensor hk = b.Cpu(k, tokens, kw);
    b.cpu()->Rope(hq, hk, *hf);
    const auto got = b.dev().Get(tqkv);
    std::vector<float> got_q, got_k, got_v, v;
    for (int t = 0; t < tokens; ++t) {
      const float* row = got.data() + size_t(t) * fused;
      got_q.insert(got_q.end(), row, row + qw);
      got_k.insert(got_k.end(), row + qw, row + qw + kw);
      got_v.insert(got_v.end(), row + qw + kw, row + fused);
      const float* in = qkv.data() + size_t(t) * fused;
      v.insert(v.end(), in + qw + kw, in + fused);
    }
    ExpectBf16OfCpu(got_q, Both::Get(hq), RopeErr(q, hd), what + " q");
    ExpectBf16OfCpu(got_k, Both::Get(hk), RopeErr(k, hd), what + " k");
    ASSERT_EQ(got_v, v) << what << ": v (beside k in the fused row) must be untouched";
  }
}

TEST(GpuElementwise, SiluMulMatchesTheCpuOp) {
  LLMUX_BOTH_OR_SKIP(b);
  // SmolLM-135M's ffn 1536, Llama-3-8B's 14336, and odd widths.
  for (const RowsCols s :
       {RowsCols{1, 1536, 0}, RowsCols{7, 1536, 0}, RowsCols{64, 1536, 0}, RowsCols{1, 14336, 0},
        RowsCols{7, 14336, 0}, RowsCols{64, 1001, 0}, RowsCols{7, 13, 0}}) {
    const std::string what = "silu_mul " + std::to_string(s.rows) + "x" + std::to_string(s.cols);
    // gate and up as the two column halves of one fused gate_up output, as the model has them.
    const size_t n = size_t(s.rows) * s.cols;
    const auto g = RandomBf16(n, s.cols + s.rows, 8.0f);
    const auto u = RandomBf16(n, s.cols * 3 + s.rows, 2.0f);
    std::vector<float> gu;
    for (int r = 0; r < s.rows; ++r) {
      gu.insert(gu.end(), g.begin() + size_t(r) * s.cols, g.begin() + size_t(r + 1) * s.cols);
      gu.insert(gu.end(), u.begin() + size_t(r) * s.cols, u.begin() + size_t(r + 1) * s.cols);
    }
    Tensor tgu = b.dev().Upload(gu, DType::kBF16, s.rows, 2 * s.cols);
    Tensor out = b.dev().Make(DType::kBF16, s.rows, s.cols, 1);
    b.cuda()->SiluMul(tgu.ColSlice(0, s.cols), tgu.ColSlice(s.cols, s.cols), out);
    Tensor hg = b.Cpu(g, s.rows, s.cols);
    Tensor hu = b.Cpu(u, s.rows, s.cols, 5);
    Tensor hout = b.Cpu(std::vector<float>(n), s.rows, s.cols);
    b.cpu()->SiluMul(hg, hu, hout);
    const auto want = Both::Get(hout);
    ExpectBf16OfCpu(b.dev().Get(out), want, RelErr(want, 32 * kU), what);
    // In place over gate: the same bits.
    Tensor tg = b.dev().Upload(g, DType::kBF16, s.rows, s.cols);
    Tensor tu = b.dev().Upload(u, DType::kBF16, s.rows, s.cols);
    b.cuda()->SiluMul(tg, tu, tg);
    ASSERT_EQ(b.dev().Get(tg), b.dev().Get(out)) << what << " in place";
  }
}

// The bias of MatMul (kernels/bias_add.cu) after a GEMM that is exact: w[n] selects input
// column n % K, so out = x[:, n % K] + bias[n] with one f32 rounding on both backends. bf16
// outputs equal the CPU's value rounded to bf16, f32 outputs (logits) equal it exactly.
TEST(GpuElementwise, MatMulBiasEqualsTheCpuOp) {
  LLMUX_BOTH_OR_SKIP(b);
  const int k = 64;
  for (const int n : {576, 4096, 173}) {
    std::vector<float> w(size_t(n) * k, 0.0f);
    for (int i = 0; i < n; ++i) w[size_t(i) * k + i % k] = 1.0f;
    HostTensor hw{
        "w", DType::kF32, {n, k}, reinterpret_cast<const std::byte*>(w.data()), w.size() * 4};
    auto cw = b.cuda()->LoadWeight(hw, WeightKind::kMatrix);
    auto cpw = b.cpu()->LoadWeight(hw, WeightKind::kMatrix);
    ASSERT_TRUE(cw.ok() && cpw.ok());
    const auto bias = RandomBf16(n, n, 1.0f);
    std::vector<float> bias_f32(bias);
    for (int i = 0; i < n; ++i) bias_f32[i] += 0x1p-12f * static_cast<float>(i % 7);  // not bf16
    auto cb = b.cuda()->UploadF32(bias_f32, 1, n);
    auto hb = b.cpu()->UploadF32(bias_f32, 1, n);
    ASSERT_TRUE(cb.ok() && hb.ok());
    for (const int m : {1, 7, 64}) {
      const auto x = RandomBf16(size_t(m) * k, m * 1000 + n, 4.0f);
      Tensor tx = b.dev().Upload(x, DType::kBF16, m, k);
      Tensor hx = b.Cpu(x, m, k);
      Tensor hout = b.Cpu(std::vector<float>(size_t(m) * n), m, n);
      b.cpu()->MatMul(hx, *cpw, &*hb, hout);
      const auto want = Both::Get(hout);
      std::vector<float> want_bf16(want);
      for (float& v : want_bf16) v = RoundBf16(v);
      for (const DType dt : {DType::kBF16, DType::kF32}) {
        Tensor out = b.dev().Make(dt, m, n, 8);
        b.cuda()->MatMul(tx, *cw, &*cb, out);
        ASSERT_EQ(b.dev().Get(out), dt == DType::kF32 ? want : want_bf16)
            << "bias n " << n << " m " << m << (dt == DType::kF32 ? " f32" : " bf16");
      }
    }
  }
}

// Every block of both KV caches read back through ReadKvBlock, which returns each backend's
// block token-major, [block_size, kv_heads * head_dim] (CUDA bf16, CPU f32): the device's
// values are the CPU's, bit for bit, in every block, written or not.
TEST(GpuElementwise, WriteKvEqualsTheCpuOp) {
  LLMUX_BOTH_OR_SKIP(b);
  const int kv_heads = 8, hd = 128, row = kv_heads * hd;  // Llama-3-8B's KV row
  b.InitKv(kv_heads, hd, 64);
  // Three sequences (blocks 0-20, 21-41, 42-62): a decode at 300, a chunk of 7 at 9, a
  // prefill of 64 (rows 1, 7, 64 in one step).
  const std::vector<int> starts = {300, 9, 0}, lens = {1, 7, 64};
  b.Begin(starts, lens, std::vector<int32_t>(72, 1));
  const auto k = RandomBf16(72 * size_t(row), 61, 3.0f);
  const auto v = RandomBf16(72 * size_t(row), 62, 3.0f);
  Tensor tk = b.dev().Upload(k, DType::kBF16, 72, row, 3);  // rows not 16-byte aligned
  Tensor tv = b.dev().Upload(v, DType::kBF16, 72, row);
  b.cuda()->WriteKv(1, tk, tv);
  b.cpu()->WriteKv(1, b.Cpu(k, 72, row), b.Cpu(v, 72, row, 8));
  const int bs = 16;
  for (int block = 0; block < 64; ++block) {
    std::vector<std::byte> ck, cv, hk, hv;
    ASSERT_TRUE(b.cuda()->ReadKvBlock(1, block, &ck, &cv).ok());
    ASSERT_TRUE(b.cpu()->ReadKvBlock(1, block, &hk, &hv).ok());
    ASSERT_EQ(ck.size(), size_t(bs) * row * 2);
    ASSERT_EQ(hk.size(), size_t(bs) * row * 4);
    const auto* ck16 = reinterpret_cast<const uint16_t*>(ck.data());
    const auto* cv16 = reinterpret_cast<const uint16_t*>(cv.data());
    const auto* hk32 = reinterpret_cast<const float*>(hk.data());
    const auto* hv32 = reinterpret_cast<const float*>(hv.data());
    for (int off = 0; off < bs; ++off) {
      for (int e = 0; e < row; ++e) {
        ASSERT_EQ(Bf16ToFloat(ck16[off * row + e]), hk32[off * row + e])
            << "K block " << block << " offset " << off << " element " << e;
        ASSERT_EQ(Bf16ToFloat(cv16[off * row + e]), hv32[off * row + e])
            << "V block " << block << " offset " << off << " element " << e;
      }
    }
  }
  // The steps wrote something: the decode's K in sequence 0's block 300 / 16.
  std::vector<std::byte> ck, cv;
  ASSERT_TRUE(b.cuda()->ReadKvBlock(1, 300 / 16, &ck, &cv).ok());
  EXPECT_EQ(Bf16ToFloat(reinterpret_cast<const uint16_t*>(ck.data())[(300 % 16) * row]), k[0]);
}

TEST(GpuElementwise, GatherLogitsRowsEqualsTheCpuOp) {
  LLMUX_BOTH_OR_SKIP(b);
  // 72 tokens in three sequences; logits rows in a shuffled order with a repeat.
  const std::vector<int32_t> idx = {71, 0, 7, 7, 40, 1};
  for (const int cols : {49152, 1001}) {  // SmolLM's vocabulary, an odd width
    b.Begin({300, 9, 0}, {1, 7, 64}, std::vector<int32_t>(72, 1), idx);
    const auto x = RandomBf16(72 * size_t(cols), cols, 20.0f);
    Tensor hx = b.Cpu(x, 72, cols);
    Tensor hout = b.Cpu(std::vector<float>(idx.size() * cols), idx.size(), cols);
    b.cpu()->GatherLogitsRows(hx, hout);
    const auto want = Both::Get(hout);
    for (const DType dt : {DType::kF32, DType::kBF16}) {
      Tensor tx = b.dev().Upload(x, dt, 72, cols, dt == DType::kF32 ? 1 : 8);
      Tensor out = b.dev().Make(dt, idx.size(), cols);
      b.cuda()->GatherLogitsRows(tx, out);
      ASSERT_EQ(b.dev().Get(out), want) << "gather " << cols << " " << DTypeName(dt);
    }
  }
}
#else
TEST(GpuElementwise, SkippedWithoutCuda) {
  GTEST_SKIP() << "SKIPPED: no CUDA device (built without CUDA)";
}
#endif

}  // namespace
}  // namespace llmux
