// Validating reader for the safetensors format:
//   [u64 little-endian N][N bytes of JSON header][data region]
// The header maps tensor names to {dtype, shape, data_offsets: [begin, end]} with offsets
// relative to the data region, plus an optional "__metadata__" string->string object.
//
// NOTE: the format does not require tensor data to be aligned and neither do we: the CPU
// backend reads weights with memcpy-based loads, so any byte offset is fine. Files written
// by HF (and by `llmux make-model`) pad the header so that data starts 8-byte aligned.
#include "llmux/safetensors.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "model/mmap_file.h"

namespace llmux {
namespace {

using nlohmann::json;

class SafetensorsFileImpl final : public SafetensorsFile {
 public:
  SafetensorsFileImpl(std::unique_ptr<MappedFile> mapping, std::vector<HostTensor> tensors)
      : mapping_(std::move(mapping)), tensors_(std::move(tensors)) {
    index_.reserve(tensors_.size());
    for (size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
  }

  const std::vector<HostTensor>& tensors() const override { return tensors_; }

  const HostTensor* Find(std::string_view name) const override {
    auto it = index_.find(std::string(name));
    return it == index_.end() ? nullptr : &tensors_[it->second];
  }

 private:
  std::unique_ptr<MappedFile> mapping_;  // null for FromBytes (caller owns the bytes)
  std::vector<HostTensor> tensors_;      // in data-offset order
  std::unordered_map<std::string, size_t> index_;
};

// Only the dtypes the backends implement; the other safetensors dtypes are named in the error.
std::optional<DType> SafetensorsDType(const std::string& s) {
  if (s == "F32") return DType::kF32;
  if (s == "F16") return DType::kF16;
  if (s == "BF16") return DType::kBF16;
  if (s == "I32") return DType::kI32;
  return std::nullopt;
}

struct Span {
  uint64_t begin = 0;
  uint64_t end = 0;
};

// Validates one header entry; fills `out` (without data) and `span`.
Status ParseTensorEntry(const std::string& src, const std::string& name, const json& entry,
                        uint64_t data_size, HostTensor& out, Span& span) {
  const std::string where = src + ": tensor '" + name + "'";
  if (name.empty()) return DataLoss(src + ": header has a tensor with an empty name");
  if (!entry.is_object()) return DataLoss(where + ": entry is not a JSON object");

  auto dtype_it = entry.find("dtype");
  if (dtype_it == entry.end() || !dtype_it->is_string()) {
    return DataLoss(where + ": missing or non-string \"dtype\"");
  }
  const std::string dtype_name = dtype_it->get<std::string>();
  std::optional<DType> dtype = SafetensorsDType(dtype_name);
  if (!dtype) {
    return InvalidArgument(where + ": unsupported dtype '" + dtype_name +
                           "' (supported: F32, F16, BF16, I32)");
  }

  auto shape_it = entry.find("shape");
  if (shape_it == entry.end() || !shape_it->is_array()) {
    return DataLoss(where + ": missing or non-array \"shape\"");
  }
  std::vector<int64_t> shape;
  uint64_t numel = 1;
  bool overflow = false;
  for (const json& d : *shape_it) {
    if (!d.is_number_unsigned()) {
      return DataLoss(where + ": shape entries must be non-negative integers, got " + d.dump());
    }
    const uint64_t v = d.get<uint64_t>();
    if (v > static_cast<uint64_t>(INT64_MAX))
      return DataLoss(where + ": shape dimension too large");
    shape.push_back(static_cast<int64_t>(v));
    overflow = overflow || __builtin_mul_overflow(numel, v, &numel);
  }
  uint64_t nbytes = 0;
  overflow = overflow || __builtin_mul_overflow(numel, DTypeSize(*dtype), &nbytes);
  // NOTE: an overflowing product is reported even when another dimension is 0; no real
  // tensor has such a shape and HostTensor::numel() must not overflow either.
  if (overflow) return DataLoss(where + ": shape element count overflows 64 bits");

  auto off_it = entry.find("data_offsets");
  if (off_it == entry.end() || !off_it->is_array() || off_it->size() != 2 ||
      !(*off_it)[0].is_number_unsigned() || !(*off_it)[1].is_number_unsigned()) {
    return DataLoss(where + ": \"data_offsets\" must be [begin, end] non-negative integers");
  }
  span.begin = (*off_it)[0].get<uint64_t>();
  span.end = (*off_it)[1].get<uint64_t>();
  if (span.begin > span.end) {
    return DataLoss(where + ": data_offsets begin " + std::to_string(span.begin) + " > end " +
                    std::to_string(span.end));
  }
  if (span.end > data_size) {
    return DataLoss(where + ": data_offsets end " + std::to_string(span.end) +
                    " beyond the data region (" + std::to_string(data_size) +
                    " bytes; file truncated?)");
  }
  if (span.end - span.begin != nbytes) {
    return DataLoss(where + ": " + std::to_string(span.end - span.begin) +
                    " bytes of data but dtype " + dtype_name + " x shape needs " +
                    std::to_string(nbytes));
  }
  out.name = name;
  out.dtype = *dtype;
  out.shape = std::move(shape);
  out.nbytes = static_cast<size_t>(nbytes);
  return Status::Ok();
}

Status CheckMetadata(const std::string& src, const json& meta) {
  if (!meta.is_object()) return DataLoss(src + ": \"__metadata__\" is not a JSON object");
  for (const auto& [k, v] : meta.items()) {
    if (!v.is_string()) {
      return DataLoss(src + ": \"__metadata__\" value of '" + k + "' is not a string");
    }
  }
  return Status::Ok();
}

StatusOr<std::vector<HostTensor>> ParseImage(std::span<const std::byte> bytes,
                                             const std::string& src) {
  if (bytes.size() < 8) {
    return DataLoss(src + ": " + std::to_string(bytes.size()) +
                    " bytes is too short for a safetensors file (truncated?)");
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | std::to_integer<uint8_t>(bytes[i]);
  if (header_len > kMaxSafetensorsHeaderBytes) {
    return DataLoss(src + ": header length " + std::to_string(header_len) + " exceeds the " +
                    std::to_string(kMaxSafetensorsHeaderBytes) + "-byte limit");
  }
  if (header_len > bytes.size() - 8) {
    return DataLoss(src + ": header length " + std::to_string(header_len) + " beyond the end of " +
                    "the file (" + std::to_string(bytes.size()) + " bytes; truncated?)");
  }
  const char* text = reinterpret_cast<const char*>(bytes.data() + 8);
  const std::byte* data = bytes.data() + 8 + header_len;
  const uint64_t data_size = bytes.size() - 8 - header_len;

  // Top-level keys, to reject a tensor named twice (nlohmann would keep the last silently).
  std::unordered_set<std::string> seen;
  std::string duplicate;
  json header;
  try {
    header = json::parse(
        text, text + header_len, [&](int depth, json::parse_event_t event, json& parsed) {
          if (event == json::parse_event_t::key && depth == 1 && duplicate.empty() &&
              !seen.insert(parsed.get<std::string>()).second) {
            duplicate = parsed.get<std::string>();
          }
          return true;
        });
  } catch (const json::exception& e) {
    return DataLoss(src + ": header is not valid JSON: " + e.what());
  }
  if (!header.is_object()) return DataLoss(src + ": header is not a JSON object");
  if (!duplicate.empty()) return DataLoss(src + ": tensor '" + duplicate + "' listed twice");

  std::vector<HostTensor> tensors;
  std::vector<Span> spans;
  tensors.reserve(header.size());
  spans.reserve(header.size());
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      LLMUX_RETURN_IF_ERROR(CheckMetadata(src, entry));
      continue;
    }
    HostTensor t;
    Span s;
    LLMUX_RETURN_IF_ERROR(ParseTensorEntry(src, name, entry, data_size, t, s));
    t.data = data + s.begin;
    tensors.push_back(std::move(t));
    spans.push_back(s);
  }

  // Overlap check in offset order; the tensors are kept in that order too.
  std::vector<size_t> order(tensors.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return spans[a].begin != spans[b].begin ? spans[a].begin < spans[b].begin
                                            : spans[a].end < spans[b].end;
  });
  for (size_t k = 1; k < order.size(); ++k) {
    const Span& prev = spans[order[k - 1]];
    const Span& cur = spans[order[k]];
    if (cur.begin < prev.end) {
      return DataLoss(src + ": tensor '" + tensors[order[k]].name + "' [" +
                      std::to_string(cur.begin) + ", " + std::to_string(cur.end) +
                      ") overlaps tensor '" + tensors[order[k - 1]].name + "' [" +
                      std::to_string(prev.begin) + ", " + std::to_string(prev.end) + ")");
    }
  }
  std::vector<HostTensor> sorted;
  sorted.reserve(tensors.size());
  for (size_t i : order) sorted.push_back(std::move(tensors[i]));
  return sorted;
}

// ParseImage only uses non-throwing accessors after parsing; this guard keeps any library
// exception that slips through (e.g. std::bad_alloc on a hostile header) from escaping.
StatusOr<std::vector<HostTensor>> ParseImageNoThrow(std::span<const std::byte> bytes,
                                                    const std::string& src) {
  try {
    return ParseImage(bytes, src);
  } catch (const std::exception& e) {
    return DataLoss(src + ": cannot parse header: " + e.what());
  }
}

}  // namespace

StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(
    const std::filesystem::path& path) {
  LLMUX_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> mapping, MappedFile::Open(path));
  LLMUX_ASSIGN_OR_RETURN(std::vector<HostTensor> tensors,
                         ParseImageNoThrow(mapping->bytes(), path.string()));
  return std::unique_ptr<SafetensorsFile>(
      new SafetensorsFileImpl(std::move(mapping), std::move(tensors)));
}

StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::FromBytes(
    std::span<const std::byte> bytes, std::string source_name) {
  LLMUX_ASSIGN_OR_RETURN(std::vector<HostTensor> tensors, ParseImageNoThrow(bytes, source_name));
  return std::unique_ptr<SafetensorsFile>(new SafetensorsFileImpl(nullptr, std::move(tensors)));
}

}  // namespace llmux
