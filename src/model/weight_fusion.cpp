#include "model/weight_fusion.h"

#include <cstring>

namespace llmux {

StatusOr<OwnedHostTensor> ConcatRows(std::string name, std::span<const HostTensor* const> parts) {
  if (parts.empty()) return InvalidArgument("fusing '" + name + "': no parts");
  const HostTensor& first = *parts[0];
  const size_t rank = first.shape.size();
  if (rank != 1 && rank != 2) {
    return InvalidArgument("fusing '" + name + "': '" + first.name + "' is neither 1-D nor 2-D");
  }
  if (first.shape[0] <= 0)
    return InvalidArgument("fusing '" + name + "': '" + first.name + "' is empty");
  int64_t rows = 0;
  size_t nbytes = 0;
  for (const HostTensor* p : parts) {
    const std::string who = "fusing '" + name + "': '" + p->name + "'";
    if (p->dtype != first.dtype) {
      return InvalidArgument(who + " is " + std::string(DTypeName(p->dtype)) + " but '" +
                             first.name + "' is " + std::string(DTypeName(first.dtype)));
    }
    if (p->shape.size() != rank || (rank == 2 && p->shape[1] != first.shape[1])) {
      return InvalidArgument(who + " does not have the shape of '" + first.name +
                             "' (rank and column count must match)");
    }
    const int64_t r = p->shape[0];
    if (r <= 0 || p->data == nullptr || p->nbytes == 0) return InvalidArgument(who + " is empty");
    // Whole rows: every row of every part has the first part's byte length
    // (dtype-agnostic).
    if (rank == 2 && (first.nbytes % static_cast<size_t>(first.shape[0]) != 0 ||
                      p->nbytes != static_cast<size_t>(r) * (first.nbytes / first.shape[0]))) {
      return InvalidArgument(who + ": its bytes are not whole rows of the first part's width");
    }
    rows += r;
    nbytes += p->nbytes;
  }
  OwnedHostTensor out;
  out.bytes = std::make_unique<std::byte[]>(nbytes);
  size_t at = 0;
  for (const HostTensor* p : parts) {
    std::memcpy(out.bytes.get() + at, p->data, p->nbytes);
    at += p->nbytes;
  }
  out.tensor.name = std::move(name);
  out.tensor.dtype = first.dtype;
  out.tensor.shape =
      rank == 2 ? std::vector<int64_t>{rows, first.shape[1]} : std::vector<int64_t>{rows};
  out.tensor.data = out.bytes.get();
  out.tensor.nbytes = nbytes;
  return out;
}

}  // namespace llmux
