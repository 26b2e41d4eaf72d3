#include "op_profile.h"

#include <algorithm>
#include <map>

namespace llmux::bench {
namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

template <class Fn>
void OpTimingBackend::Timed(const char* kind, const Tensor* w, Fn&& fn) {
  if (!in_step_) {
    fn();
    return;
  }
  const auto t0 = Clock::now();
  if (op_index_ > 0) between_s_ += std::chrono::duration<double>(t0 - last_return_).count();
  fn();
  last_return_ = Clock::now();
  const double s = std::chrono::duration<double>(last_return_ - t0).count();
  const size_t i = op_index_++;
  if (i == ops_.size()) {
    Op op{kind, 0};
    if (w != nullptr) {
      char buf[96];
      std::snprintf(buf, sizeof(buf), "%s %lldx%lld %s", kind, static_cast<long long>(w->rows),
                    static_cast<long long>(w->cols), std::string(DTypeName(w->dtype)).c_str());
      op.label = buf;
      op.bytes = static_cast<double>(DTypeBytes(w->dtype, w->rows * w->cols));
    }
    ops_.push_back(std::move(op));
    secs_.emplace_back();
  }
  secs_[i].push_back(s);
}

Status OpTimingBackend::BeginBatch(const ForwardBatch& batch) {
  in_step_ = recording_;
  op_index_ = 0;
  between_s_ = 0;
  step_start_ = Clock::now();
  Status s = Status::Ok();
  Timed("BeginBatch", nullptr, [&] { s = ForwardingBackend::BeginBatch(batch); });
  return s;
}

Status OpTimingBackend::CopyToHostF32(const Tensor& src, float* dst) {
  Status s = Status::Ok();
  Timed("CopyToHostF32", nullptr, [&] { s = ForwardingBackend::CopyToHostF32(src, dst); });
  if (in_step_) {
    step_secs_.push_back(std::chrono::duration<double>(Clock::now() - step_start_).count());
    between_secs_.push_back(between_s_);
    in_step_ = false;
  }
  return s;
}

void OpTimingBackend::Embedding(const Tensor& table, Tensor out) {
  Timed("Embedding", nullptr, [&] { ForwardingBackend::Embedding(table, out); });
}
void OpTimingBackend::RmsNorm(const Tensor& x, const Tensor& w, float eps, Tensor out) {
  Timed("RmsNorm", nullptr, [&] { ForwardingBackend::RmsNorm(x, w, eps, out); });
}
void OpTimingBackend::AddRmsNorm(Tensor r, const Tensor& x, const Tensor& w, float eps,
                                 Tensor out) {
  Timed("AddRmsNorm", nullptr, [&] { ForwardingBackend::AddRmsNorm(r, x, w, eps, out); });
}
void OpTimingBackend::MatMul(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor out) {
  Timed("MatMul", &w, [&] { ForwardingBackend::MatMul(x, w, bias, out); });
}
void OpTimingBackend::Rope(Tensor q, Tensor k, const Tensor& inv_freq) {
  Timed("Rope", nullptr, [&] { ForwardingBackend::Rope(q, k, inv_freq); });
}
void OpTimingBackend::WriteKv(int layer, const Tensor& k, const Tensor& v) {
  Timed("WriteKv", nullptr, [&] { ForwardingBackend::WriteKv(layer, k, v); });
}
void OpTimingBackend::Attention(int layer, const Tensor& q, float scale, Tensor out) {
  Timed("Attention", nullptr, [&] { ForwardingBackend::Attention(layer, q, scale, out); });
}
void OpTimingBackend::SiluMul(const Tensor& g, const Tensor& u, Tensor out) {
  Timed("SiluMul", nullptr, [&] { ForwardingBackend::SiluMul(g, u, out); });
}
void OpTimingBackend::GatherLogitsRows(const Tensor& x, Tensor out) {
  Timed("GatherLogitsRows", nullptr, [&] { ForwardingBackend::GatherLogitsRows(x, out); });
}

void OpTimingBackend::Report(std::FILE* out) {
  if (step_secs_.empty()) return;
  struct Row {
    int calls = 0;
    double min_s = 0, median_s = 0, bytes = 0;
  };
  std::map<std::string, Row> rows;
  std::vector<std::string> order;  // first appearance in the step
  double sum_min = 0, sum_median = 0, bytes = 0;
  for (size_t i = 0; i < ops_.size(); ++i) {
    auto [it, fresh] = rows.try_emplace(ops_[i].label);
    if (fresh) order.push_back(ops_[i].label);
    Row& r = it->second;
    const double mn = *std::min_element(secs_[i].begin(), secs_[i].end());
    const double md = Median(secs_[i]);
    ++r.calls;
    r.min_s += mn;
    r.median_s += md;
    r.bytes += ops_[i].bytes;
    sum_min += mn;
    sum_median += md;
    bytes += ops_[i].bytes;
  }
  const double step_min = *std::min_element(step_secs_.begin(), step_secs_.end());
  const double step_median = Median(step_secs_);
  std::fprintf(out, "\nop profile: %zu decode steps; per op: min and median over the steps, "
                    "summed over the op's calls in a step\n", step_secs_.size());
  std::fprintf(out, "| %-24s | %5s | %9s | %6s | %9s | %6s | %12s |\n", "op", "calls", "min us",
               "% min", "median us", "% med", "GB/s at min");
  std::fprintf(out, "|--------------------------|-------|-----------|--------|-----------|--------|"
                    "--------------|\n");
  for (const std::string& label : order) {
    const Row& r = rows[label];
    std::string gbs = r.bytes > 0 ? std::to_string(r.bytes / r.min_s / 1e9).substr(0, 5) : "";
    std::fprintf(out, "| %-24s | %5d | %9.1f | %5.1f%% | %9.1f | %5.1f%% | %12s |\n",
                 label.c_str(), r.calls, 1e6 * r.min_s, 100 * r.min_s / step_min,
                 1e6 * r.median_s, 100 * r.median_s / step_median, gbs.c_str());
  }
  std::fprintf(out, "| %-24s | %5zu | %9.1f | %5.1f%% | %9.1f | %5.1f%% | %12.2f |\n",
               "sum of ops", ops_.size(), 1e6 * sum_min, 100 * sum_min / step_min,
               1e6 * sum_median, 100 * sum_median / step_median, bytes / sum_min / 1e9);
  const double between_min = *std::min_element(between_secs_.begin(), between_secs_.end());
  const double between_median = Median(between_secs_);
  std::fprintf(out, "| %-24s | %5s | %9.1f | %5.1f%% | %9.1f | %5.1f%% | %12s |\n",
               "between ops", "", 1e6 * between_min, 100 * between_min / step_min,
               1e6 * between_median, 100 * between_median / step_median, "");
  std::fprintf(out, "| %-24s | %5s | %9.1f | %5.1f%% | %9.1f | %5.1f%% | %12.2f |\n",
               "step (BeginBatch..copy)", "", 1e6 * step_min, 100.0, 1e6 * step_median, 100.0,
               bytes / step_min / 1e9);
  ops_.clear();
  secs_.clear();
  step_secs_.clear();
  between_secs_.clear();
}

}  // namespace llmux::bench
