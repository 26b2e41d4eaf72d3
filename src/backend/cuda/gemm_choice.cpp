#include "backend/cuda/gemm_choice.h"

#include <algorithm>

namespace llmux::cuda {

int64_t GemmCtas(const GemmCandidate& c, int64_t m, int64_t n) {
  if (c.tile_n <= 0 || c.tile_m <= 0) return 1;
  const int64_t along_n = (n + c.tile_n - 1) / c.tile_n;
  const int64_t along_m = (std::max<int64_t>(m, 1) + c.tile_m - 1) / c.tile_m;
  return std::max<int64_t>(1, along_n * along_m);
}

bool GemmSplitFree(const GemmCandidate& c) { return c.split_k <= 1 && !c.reduction; }

int64_t GemmBusySms(const GemmCandidate& c, int64_t n, int sm_count) {
  return std::min<int64_t>(GemmCtas(c, 1, n), std::max(sm_count, 1));
}

std::vector<int> InvariantGemmOrder(std::span<const GemmCandidate> candidates, int64_t n,
                                    int sm_count) {
  std::vector<int> order;
  int64_t best = 0;
  for (int i = 0; i < static_cast<int>(candidates.size()); ++i) {
    if (!GemmSplitFree(candidates[i])) continue;
    order.push_back(i);
    best = std::max(best, GemmBusySms(candidates[i], n, sm_count));
  }
  auto busy = [&](int i) { return GemmBusySms(candidates[i], n, sm_count); };
  auto near_best = [&](int i) { return busy(i) * 10 >= best * 9; };
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    const GemmCandidate& ca = candidates[a];
    const GemmCandidate& cb = candidates[b];
    if (near_best(a) != near_best(b)) return near_best(a);
    if (!near_best(a) && busy(a) != busy(b)) return busy(a) > busy(b);
    if (ca.prefill_rank != cb.prefill_rank) return ca.prefill_rank < cb.prefill_rank;
    if (ca.offered_at_m != cb.offered_at_m) return ca.offered_at_m > cb.offered_at_m;
    return busy(a) > busy(b);
  });
  return order;
}

bool CublasLtTileDims(uint32_t tile_id, int* tile_n, int* tile_m) {
  struct Tile {
    uint32_t id;
    int rows, cols;
  };
  static constexpr Tile kTiles[] = {
#include "cublaslt_tiles.inc"
  };
  for (const Tile& t : kTiles) {
    if (t.id == tile_id) {
      *tile_n = t.rows;
      *tile_m = t.cols;
      return true;
    }
  }
  return false;
}

std::string DescribeGemmChoice(const GemmChoice& c) {
  std::string s = "N=" + std::to_string(c.n) + " K=" + std::to_string(c.k) +
                  (c.out_f32 ? " f32: " : " bf16: ") + c.kernel;
  if (c.kernel == "cublaslt") {
    s += " tile " + std::to_string(c.tile_n) + "x" + std::to_string(c.tile_m);
  }
  if (c.kernel != "per_m") s += ", " + std::to_string(c.ctas_at_m1) + " CTAs at M=1";
  return s;
}

}  // namespace llmux::cuda
