// Which GEMM algorithm a weight shape runs: the host-side decision, as pure functions over
// plain values (no cuBLAS or CUDA types), so the policy is tested without a device.
//
// NOTE: batch invariance. A fixed algorithm per M bucket is NOT batch invariant: a decode row
// computed at M = 1 and the same row computed inside an M = 300 batch would take different
// kernels and different K-reduction orders. Invariant mode therefore pins one split-free
// algorithm per weight shape for every M (see cublas_gemm.h). What remains free is WHICH one:
// cuBLASLt's heuristic at a prefill-sized M favours 128- or 256-row tiles, which at M = 1 give
// a Llama-3-8B o/down projection (N = 4096) 16-32 CTAs on 132 SMs; a decode GEMM at M <= the
// tile's column width is bandwidth-bound, and its time scales with 1 / (SMs kept busy). The
// choice below first keeps the candidates whose M = 1 GEMM keeps at least 90% as many SMs busy
// as the best one does (capped at one wave: more CTAs than SMs add nothing at M = 1), and
// among those prefers the one the heuristic ranks best for prefill (compute-bound, where the
// heuristic's ranking is the best information we have), so a marginally wider decode grid
// never buys a tile that is poor at large M.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "llmux/backend.h"

namespace llmux::cuda {

// One cuBLASLt algorithm offered for a weight shape. Dimensions are of the output as this
// backend sees it: out[M, N] (cuBLAS sees out^T, so its tile's first dimension runs along N).
struct GemmCandidate {
  int tile_n = 0;  // output columns per CTA (0: unknown tile; treated as one CTA at M = 1)
  int tile_m = 0;  // output rows (tokens) per CTA
  int split_k = 1;          // CUBLASLT_ALGO_CONFIG_SPLITK_NUM (1: no split)
  bool reduction = false;   // a split-K reduction scheme is configured
  // Position in the heuristic's list at the prefill reference M (0 = its first choice), or
  // kUnranked when the heuristic offered it only at a small M.
  int prefill_rank = kUnranked;
  // The largest reference M whose heuristic offered it (for unranked candidates, a larger M
  // suggests a tile that does better on large batches).
  int offered_at_m = 0;
  static constexpr int kUnranked = 1 << 20;
};

// SMs kept busy by one M = 1 GEMM: min(CTAs, sm_count).
int64_t GemmBusySms(const GemmCandidate& c, int64_t n, int sm_count);

// CTAs a candidate launches for out[m, n] (at least 1).
int64_t GemmCtas(const GemmCandidate& c, int64_t m, int64_t n);

// True when the candidate computes every output with one CTA's K loop (no split-K, no
// reduction scheme): the precondition for batch invariance.
bool GemmSplitFree(const GemmCandidate& c);

// Invariant mode: the order in which to try `candidates` for a weight with `n` output columns
// on a device with `sm_count` SMs. Only split-free candidates are listed; the first one that
// passes the device's bit-identity check across M is pinned. Order: first the candidates with
// GemmBusySms >= 90% of the best, by prefill_rank, then larger offered_at_m, then more busy
// SMs; then the rest by busy SMs, prefill_rank, offered_at_m; ties keep the caller's order.
// Returns indices into `candidates`.
std::vector<int> InvariantGemmOrder(std::span<const GemmCandidate> candidates, int64_t n,
                                    int sm_count);

// The output tile of a cuBLASLt tile id (CUBLASLT_ALGO_CONFIG_TILE_ID, a cublasLtMatmulTile_t):
// cuBLAS names tiles rows x cols of its C, which is out^T here, so rows run along N and cols
// along M. False for CUBLASLT_MATMUL_TILE_UNDEFINED and ids this build's cublasLt.h does not
// list (the table is generated from that header at configure time).
bool CublasLtTileDims(uint32_t tile_id, int* tile_n, int* tile_m);

// One line per shape, for logs: "N=4096 K=14336 bf16: cublaslt tile 64x64, 64 CTAs at M=1".
std::string DescribeGemmChoice(const GemmChoice& c);

}  // namespace llmux::cuda
