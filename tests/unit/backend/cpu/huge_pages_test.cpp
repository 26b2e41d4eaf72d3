// Packed matrices (and the KV cache) live in memory the kernel may back with transparent huge
// pages (MADV_HUGEPAGE on 2 MiB-aligned slabs): decode streams every matrix once per token, and
// with 4 KiB pages that is a page walk per 4 KiB (docs/cpu_backend.md, "Layouts and dtypes").
// Checked through /proc/self/smaps: the mapping holding a packed weight is "THPeligible: 1".
#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "unit/backend/cpu/test_util.h"

namespace llmux::cpu {
namespace {

// The transparent-huge-page mode in brackets ("always", "madvise" or "never"); "" if unknown.
std::string ThpMode() {
  std::ifstream f("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string line;
  std::getline(f, line);
  const size_t a = line.find('['), b = line.find(']');
  return a == std::string::npos || b == std::string::npos ? "" : line.substr(a + 1, b - a - 1);
}

// The THPeligible flag of the mapping that contains `addr` (-1 when not found).
int ThpEligible(const void* addr) {
  const auto x = reinterpret_cast<uintptr_t>(addr);
  std::ifstream f("/proc/self/smaps");
  std::string line;
  bool inside = false;
  while (std::getline(f, line)) {
    uintptr_t lo = 0, hi = 0;
    char dash = 0;
    std::istringstream head(line);
    if (head >> std::hex >> lo >> dash >> hi && dash == '-') {
      inside = lo <= x && x < hi;
      continue;
    }
    if (inside && line.rfind("THPeligible:", 0) == 0) return std::stoi(line.substr(12));
  }
  return -1;
}

TEST(HugePagesTest, PackedMatricesAreHugePageEligible) {
  const std::string mode = ThpMode();
  if (mode == "never" || mode.empty()) {
    GTEST_SKIP() << "transparent huge pages are off on this machine (mode '" << mode << "')";
  }
  auto be = testing::MakeBackend(1);
  ASSERT_NE(be, nullptr);
  // A small matrix (carved from a slab) and one larger than a slab (a slab of its own).
  auto a = testing::MakeWeight(testing::RandomFloats(96 * 64, 1), {96, 64}, DType::kBF16);
  auto b = testing::MakeWeight(std::vector<float>(4608 * 2048, 0.5f), {4608, 2048}, DType::kF32);
  auto wa = be->LoadWeight(a->tensor, WeightKind::kMatrix);
  auto wb = be->LoadWeight(b->tensor, WeightKind::kMatrix);
  ASSERT_TRUE(wa.ok() && wb.ok());
  EXPECT_EQ(ThpEligible(wa->data), 1) << "THP mode " << mode;
  EXPECT_EQ(ThpEligible(wb->data), 1) << "THP mode " << mode;
}

}  // namespace
}  // namespace llmux::cpu
