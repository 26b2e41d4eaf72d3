// Paged attention against a naive reference over contiguous K/V: block-table holes and
// shuffled block ids, chunked prefill over a cached prefix, mixed prefill + decode batches,
// GQA ratios 1/2/4, F32 and F16 caches, and invariance: a sequence's output bits do not depend
// on its batch, on the attention tile size, or on how its prompt was split into steps (a decode
// row equals the prefill row at the same position).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "unit/backend/cpu/test_util.h"

namespace llmux::cpu {
namespace {

constexpr int kBlockSize = 4;
constexpr int kHeadDim = 24;  // one full 16-lane chunk + a masked tail of 8
constexpr int kKvHeads = 2;
constexpr int kNumBlocks = 32;
constexpr int kMaxBlocks = 16;

// Deterministic value of (kind, seq, position, head, d) in [-1, 1).
float Val(int kind, int seq, int pos, int head, int d) {
  uint32_t h = 2166136261u;
  for (int v : {kind, seq, pos, head, d}) h = (h ^ static_cast<uint32_t>(v)) * 16777619u;
  h ^= h >> 13;
  h *= 0x5bd1e995u;
  h ^= h >> 15;
  return static_cast<float>(h % 20001) / 10000.0f - 1.0f;
}

// A value as the cache stores it: F16-rounded for an F16 cache.
float Stored(float x, DType kv) { return kv == DType::kF16 ? HalfToFloat(FloatToHalf(x)) : x; }

std::unique_ptr<Backend> MakeTiledBackend(int threads, int tile_tokens) {
  CpuBackendOptions o;
  o.threads = threads;
  o.attention_tile_tokens = tile_tokens;
  auto b = CreateCpuBackend(o);
  return b.ok() ? std::move(b).value() : nullptr;
}

struct Seq {
  int id;                   // value seed
  std::vector<int32_t> blocks;  // physical block of each logical block
  int cached;               // tokens already in the cache
  int num_new;              // tokens in this step
};

struct Param {
  int ratio;  // query heads per kv head
  DType kv;   // cache dtype
};

class AttentionTest : public ::testing::TestWithParam<Param> {
 protected:
  int heads() const { return kKvHeads * GetParam().ratio; }
  DType kv() const { return GetParam().kv; }

  void SetUp() override { be_ = NewBackend(2, 0); }

  std::unique_ptr<Backend> NewBackend(int threads, int tile_tokens) {
    auto be = MakeTiledBackend(threads, tile_tokens);
    EXPECT_NE(be, nullptr);
    KvCacheSpec spec;
    spec.num_layers = 2;
    spec.num_blocks = kNumBlocks;
    spec.block_size = kBlockSize;
    spec.num_heads = heads();
    spec.num_kv_heads = kKvHeads;
    spec.head_dim = kHeadDim;
    spec.dtype = kv();
    EXPECT_TRUE(be->InitKvCache(spec).ok());
    return be;
  }

  // Runs one step (layer 1) over `seqs` and returns out [T, heads * head_dim]. `round` writes
  // K/V values already rounded to F16 (so an F32 and an F16 cache hold the same values).
  std::vector<float> Step(const std::vector<Seq>& seqs, Backend* be = nullptr,
                          bool round = false) {
    if (be == nullptr) be = be_.get();
    ForwardBatch b;
    b.max_blocks_per_seq = kMaxBlocks;
    b.query_start_loc.push_back(0);
    for (const Seq& s : seqs) {
      for (int p = s.cached; p < s.cached + s.num_new; ++p) {
        b.token_ids.push_back(1);
        b.positions.push_back(p);
        b.slot_mapping.push_back(int64_t{s.blocks[p / kBlockSize]} * kBlockSize + p % kBlockSize);
      }
      b.query_start_loc.push_back(b.num_tokens());
      b.seq_lens.push_back(s.cached + s.num_new);
      for (int i = 0; i < kMaxBlocks; ++i) {
        b.block_tables.push_back(i < static_cast<int>(s.blocks.size()) ? s.blocks[i] : -1);
      }
    }
    Status st = be->BeginBatch(b);
    EXPECT_TRUE(st.ok()) << st.ToString();
    const int T = b.num_tokens(), qw = heads() * kHeadDim, kw = kKvHeads * kHeadDim;
    std::vector<float> q(T * qw), k(T * kw), v(T * kw), out(T * qw, -9.0f);
    int t = 0;
    for (const Seq& s : seqs) {
      for (int p = s.cached; p < s.cached + s.num_new; ++p, ++t) {
        for (int h = 0; h < heads(); ++h)
          for (int d = 0; d < kHeadDim; ++d) q[t * qw + h * kHeadDim + d] = Val(0, s.id, p, h, d);
        for (int h = 0; h < kKvHeads; ++h) {
          for (int d = 0; d < kHeadDim; ++d) {
            const DType r = round ? DType::kF16 : DType::kF32;
            k[t * kw + h * kHeadDim + d] = Stored(Val(1, s.id, p, h, d), r);
            v[t * kw + h * kHeadDim + d] = Stored(Val(2, s.id, p, h, d), r);
          }
        }
      }
    }
    be->WriteKv(1, Tensor::Dense(k.data(), DType::kF32, T, kw),
                Tensor::Dense(v.data(), DType::kF32, T, kw));
    be->Attention(1, Tensor::Dense(q.data(), DType::kF32, T, qw), kScale,
                   Tensor::Dense(out.data(), DType::kF32, T, qw));
    return out;
  }

  // Checks `out` rows for `seqs` against softmax(q k^T * scale) v in double over contiguous K/V
  // (the values the cache holds: F16-rounded for an F16 cache).
  void ExpectMatchesReference(const std::vector<Seq>& seqs, const std::vector<float>& out) {
    const int qw = heads() * kHeadDim, group = GetParam().ratio;
    int t = 0;
    for (const Seq& s : seqs) {
      for (int p = s.cached; p < s.cached + s.num_new; ++p, ++t) {
        for (int h = 0; h < heads(); ++h) {
          std::vector<double> sc(p + 1);
          double mx = -1e300, sum = 0;
          for (int j = 0; j <= p; ++j) {
            double dot = 0;
            for (int d = 0; d < kHeadDim; ++d)
              dot += double{Val(0, s.id, p, h, d)} * Stored(Val(1, s.id, j, h / group, d), kv());
            sc[j] = dot * kScale;
            mx = std::max(mx, sc[j]);
          }
          for (double& x : sc) sum += (x = std::exp(x - mx));
          for (int d = 0; d < kHeadDim; ++d) {
            double ref = 0;
            for (int j = 0; j <= p; ++j) {
              ref += sc[j] / sum * Stored(Val(2, s.id, j, h / group, d), kv());
            }
            // Values are in [-1, 1]; float scores, exp (~2 ulp) and sums: 2e-6 absolute.
            ASSERT_NEAR(out[t * qw + h * kHeadDim + d], ref, 2e-6)
                << "seq " << s.id << " pos " << p << " head " << h << " d " << d;
          }
        }
      }
    }
  }

  static constexpr float kScale = 0.2041241f;  // 1 / sqrt(24)
  std::unique_ptr<Backend> be_;
};

TEST_P(AttentionTest, ContiguousBlocksPrefillThenDecode) {
  Seq a{1, {0, 1, 2, 3, 4}, 0, 9};
  ExpectMatchesReference({a}, Step({a}));
  a.cached = 9;
  a.num_new = 1;
  ExpectMatchesReference({a}, Step({a}));
}

TEST_P(AttentionTest, ShuffledBlocksWithHolesAndChunkedPrefill) {
  // Block ids out of order and non-contiguous; 20 cached tokens, then a chunk of 7.
  Seq a{2, {17, 3, 29, 8, 11, 5, 22}, 0, 20};
  ExpectMatchesReference({a}, Step({a}));
  a.cached = 20;
  a.num_new = 7;
  ExpectMatchesReference({a}, Step({a}));
}

TEST_P(AttentionTest, LongPrefillSplitOverThreads) {
  // 61 tokens: enough key visits for the pairs to be split over both threads.
  Seq a{6, {31, 0, 15, 2, 13, 4, 11, 6, 9, 8, 7, 10, 5, 12, 3, 14}, 0, 61};
  ExpectMatchesReference({a}, Step({a}));
}

TEST_P(AttentionTest, MixedBatchIsBatchInvariant) {
  Seq a{3, {9, 14, 2, 27, 6, 19}, 0, 13};  // will be a prefill chunk over a prefix
  Seq b{4, {1, 30, 12}, 0, 10};             // will decode
  Seq c{5, {7, 25, 4, 16}, 0, 5};           // will decode
  Step({a});
  Step({b, c});
  a.cached = 13;
  a.num_new = 6;
  b.cached = 10;
  b.num_new = 1;
  c.cached = 5;
  c.num_new = 1;
  const int qw = heads() * kHeadDim;
  // Same step, alone and in two batch orders (the KV writes are idempotent).
  auto alone_a = Step({a});
  auto alone_b = Step({b});
  auto mixed = Step({c, a, b});
  ExpectMatchesReference({c, a, b}, mixed);
  EXPECT_EQ(0, std::memcmp(mixed.data() + 1 * qw, alone_a.data(), alone_a.size() * 4))
      << "sequence a's output depends on its batch";
  EXPECT_EQ(0, std::memcmp(mixed.data() + 7 * qw, alone_b.data(), alone_b.size() * 4))
      << "sequence b's output depends on its batch";
}

TEST_P(AttentionTest, TileSizeNeverChangesABit) {
  // 45 tokens of a over a 10-token prefix, with b decoding beside it: every tile size (1 token
  // = the decode path, 3, 7, 16, automatic) and 1 or 2 threads give the same bits.
  Seq a{7, {12, 1, 30, 7, 22, 3, 9, 18, 25, 27, 14, 5, 20, 0}, 0, 10};
  Seq b{8, {2, 4, 6, 8, 10}, 0, 17};
  std::vector<float> first;
  for (int tile : {0, 1, 3, 7, 16}) {
    for (int threads : {1, 2}) {
      auto be = NewBackend(threads, tile);
      Step({a, b}, be.get());
      Seq a2 = a, b2 = b;
      a2.cached = 10;
      a2.num_new = 45;
      b2.cached = 17;
      b2.num_new = 1;
      auto out = Step({b2, a2}, be.get());
      if (first.empty()) {
        ExpectMatchesReference({b2, a2}, out);
        first = out;
        continue;
      }
      ASSERT_EQ(out.size(), first.size());
      EXPECT_EQ(0, std::memcmp(out.data(), first.data(), out.size() * 4))
          << "tile " << tile << " threads " << threads << " changed the output";
    }
  }
}

TEST_P(AttentionTest, DecodeRowEqualsPrefillRowAtTheSamePosition) {
  // One 23-token prefill vs the same prompt as 9 + 13 tokens then one decode step: rows at the
  // same position are bit-identical.
  Seq whole{9, {3, 17, 8, 26, 11, 0}, 0, 23};
  auto all = Step({whole});
  auto split_be = NewBackend(2, 0);
  Seq s = whole;
  s.num_new = 9;
  auto part1 = Step({s}, split_be.get());
  s.cached = 9;
  s.num_new = 13;
  auto part2 = Step({s}, split_be.get());
  s.cached = 22;
  s.num_new = 1;
  auto decode = Step({s}, split_be.get());
  const size_t qw = heads() * kHeadDim;
  EXPECT_EQ(0, std::memcmp(all.data(), part1.data(), 9 * qw * 4));
  EXPECT_EQ(0, std::memcmp(all.data() + 9 * qw, part2.data(), 13 * qw * 4));
  EXPECT_EQ(0, std::memcmp(all.data() + 22 * qw, decode.data(), qw * 4))
      << "the decode row differs from the prefill row at position 22";
}

TEST_P(AttentionTest, DecodeOverTwoThreadsEqualsPrefillRow) {
  // A decode step over 60 cached keys: from ratio 4 on its kv-head tiles cost more than
  // kMinParallelCost and are split over the 2 threads. The row must match the reference and,
  // bit for bit, the last row of the same 61 tokens as one prefill.
  Seq whole{12, {14, 3, 27, 9, 20, 1, 31, 6, 17, 24, 11, 29, 4, 22, 8, 15}, 0, 61};
  auto all = Step({whole});
  auto split_be = NewBackend(2, 0);
  Seq s = whole;
  s.num_new = 60;
  Step({s}, split_be.get());
  s.cached = 60;
  s.num_new = 1;
  auto decode = Step({s}, split_be.get());
  ExpectMatchesReference({s}, decode);
  const size_t qw = heads() * kHeadDim;
  EXPECT_EQ(0, std::memcmp(all.data() + 60 * qw, decode.data(), qw * 4))
      << "the decode row differs from the prefill row at position 60";
}

TEST_P(AttentionTest, F16CacheEqualsF32CacheHoldingTheSameValues) {
  // Written values already F16-exact: an F16 cache must give exactly the F32 cache's bits (the
  // only difference between the two is the storage format; conversion to F32 is exact).
  Seq a{10, {5, 9, 13, 1, 28, 16, 2, 19}, 0, 29};
  Seq b{11, {6, 10}, 0, 6};
  auto mine = Step({a, b}, nullptr, true);
  auto other_be = MakeTiledBackend(2, 0);
  KvCacheSpec spec = be_->kv_spec();
  spec.dtype = kv() == DType::kF16 ? DType::kF32 : DType::kF16;
  ASSERT_TRUE(other_be->InitKvCache(spec).ok());
  auto other = Step({a, b}, other_be.get(), true);
  EXPECT_EQ(0, std::memcmp(mine.data(), other.data(), mine.size() * 4));
}

INSTANTIATE_TEST_SUITE_P(
    GqaAndDtype, AttentionTest,
    ::testing::Values(Param{1, DType::kF32}, Param{2, DType::kF32}, Param{4, DType::kF32},
                      Param{1, DType::kF16}, Param{2, DType::kF16}, Param{4, DType::kF16},
                      // A head group above the 32-row tile: one token's heads are one tile.
                      Param{40, DType::kF32}),
    [](const auto& info) {
      return "ratio" + std::to_string(info.param.ratio) + "_" +
             std::string(DTypeName(info.param.kv));
    });

}  // namespace
}  // namespace llmux::cpu
