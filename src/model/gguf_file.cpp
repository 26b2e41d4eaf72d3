#include "model/gguf_file.h"

#include <algorithm>
#include <cstring>

#include "llmux/dtype.h"
#include "model/mmap_file.h"

namespace llmux {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
constexpr uint64_t kDefaultAlignment = 32;

// GGUF value types.
enum : uint32_t {
  kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7,
  kString = 8, kArray = 9, kU64 = 10, kI64 = 11, kF64 = 12,
};

// GGML tensor types this reader accepts.
std::optional<DType> TensorDType(uint32_t ggml_type) {
  switch (ggml_type) {
    case 0: return DType::kF32;
    case 1: return DType::kF16;
    case 8: return DType::kQ8_0;
    case 30: return DType::kBF16;
    default: return std::nullopt;
  }
}

// Sequential little-endian reads with bounds checks. Every failure is DataLoss naming what was
// being read and where.
class Reader {
 public:
  Reader(std::span<const std::byte> bytes, const std::string& source)
      : bytes_(bytes), source_(source) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return bytes_.size() - pos_; }

  Status Error(const std::string& what) const {
    return DataLoss(source_ + ": " + what + " (at byte " + std::to_string(pos_) + ")");
  }

  template <class T>
  StatusOr<T> Read(const char* what) {
    if (remaining() < sizeof(T)) return Error(std::string("truncated reading ") + what);
    T v;
    std::memcpy(&v, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  StatusOr<std::string> String(const char* what) {
    LLMUX_ASSIGN_OR_RETURN(uint64_t n, Read<uint64_t>(what));
    if (n > kMaxGgufStringBytes) {
      return Error(std::string(what) + " of " + std::to_string(n) + " bytes exceeds the " +
                   std::to_string(kMaxGgufStringBytes) + "-byte limit");
    }
    if (n > remaining()) return Error(std::string("truncated ") + what);
    std::string s(reinterpret_cast<const char*>(bytes_.data() + pos_), n);
    pos_ += n;
    return s;
  }

  Status Skip(uint64_t n, const char* what) {
    if (n > remaining()) return Error(std::string("truncated ") + what);
    pos_ += n;
    return Status::Ok();
  }

 private:
  std::span<const std::byte> bytes_;
  const std::string& source_;
  uint64_t pos_ = 0;
};

// Size of a fixed-size scalar value type; 0 for string/array/unknown.
uint64_t ScalarSize(uint32_t type) {
  switch (type) {
    case kU8: case kI8: case kBool: return 1;
    case kU16: case kI16: return 2;
    case kU32: case kI32: case kF32: return 4;
    case kU64: case kI64: case kF64: return 8;
    default: return 0;
  }
}

StatusOr<GgufFile::Value> ReadScalar(Reader& r, uint32_t type, const std::string& key) {
  switch (type) {
    case kU8: { LLMUX_ASSIGN_OR_RETURN(uint8_t v, r.Read<uint8_t>("u8")); return GgufFile::Value(uint64_t{v}); }
    case kU16: { LLMUX_ASSIGN_OR_RETURN(uint16_t v, r.Read<uint16_t>("u16")); return GgufFile::Value(uint64_t{v}); }
    case kU32: { LLMUX_ASSIGN_OR_RETURN(uint32_t v, r.Read<uint32_t>("u32")); return GgufFile::Value(uint64_t{v}); }
    case kU64: { LLMUX_ASSIGN_OR_RETURN(uint64_t v, r.Read<uint64_t>("u64")); return GgufFile::Value(v); }
    case kI8: { LLMUX_ASSIGN_OR_RETURN(int8_t v, r.Read<int8_t>("i8")); return GgufFile::Value(int64_t{v}); }
    case kI16: { LLMUX_ASSIGN_OR_RETURN(int16_t v, r.Read<int16_t>("i16")); return GgufFile::Value(int64_t{v}); }
    case kI32: { LLMUX_ASSIGN_OR_RETURN(int32_t v, r.Read<int32_t>("i32")); return GgufFile::Value(int64_t{v}); }
    case kI64: { LLMUX_ASSIGN_OR_RETURN(int64_t v, r.Read<int64_t>("i64")); return GgufFile::Value(v); }
    case kF32: { LLMUX_ASSIGN_OR_RETURN(float v, r.Read<float>("f32")); return GgufFile::Value(double{v}); }
    case kF64: { LLMUX_ASSIGN_OR_RETURN(double v, r.Read<double>("f64")); return GgufFile::Value(v); }
    case kBool: {
      LLMUX_ASSIGN_OR_RETURN(uint8_t v, r.Read<uint8_t>("bool"));
      if (v > 1) return r.Error("metadata '" + key + "': bool value " + std::to_string(v));
      return GgufFile::Value(v == 1);
    }
    case kString: {
      LLMUX_ASSIGN_OR_RETURN(std::string s, r.String("string value"));
      return GgufFile::Value(std::move(s));
    }
    default:
      return r.Error("metadata '" + key + "': unknown value type " + std::to_string(type));
  }
}

StatusOr<GgufFile::Value> ReadValue(Reader& r, uint32_t type, const std::string& key) {
  if (type != kArray) return ReadScalar(r, type, key);
  LLMUX_ASSIGN_OR_RETURN(uint32_t elem, r.Read<uint32_t>("array type"));
  LLMUX_ASSIGN_OR_RETURN(uint64_t n, r.Read<uint64_t>("array length"));
  if (elem == kArray) return r.Error("metadata '" + key + "': nested arrays are not supported");
  if (elem == kString) {
    // Each element is at least its 8-byte length: the count is capped by what remains.
    if (n > r.remaining() / 8) return r.Error("metadata '" + key + "': array length " + std::to_string(n) + " exceeds the file");
    for (uint64_t i = 0; i < n; ++i) LLMUX_RETURN_IF_ERROR(r.String("array string").status());
  } else {
    const uint64_t size = ScalarSize(elem);
    if (size == 0) return r.Error("metadata '" + key + "': unknown array type " + std::to_string(elem));
    if (n > r.remaining() / size) return r.Error("metadata '" + key + "': array length " + std::to_string(n) + " exceeds the file");
    if (elem == kBool) {
      for (uint64_t i = 0; i < n; ++i) LLMUX_RETURN_IF_ERROR(ReadScalar(r, kBool, key).status());
    } else {
      LLMUX_RETURN_IF_ERROR(r.Skip(n * size, "array"));
    }
  }
  return GgufFile::Value(GgufFile::Array{elem, n});
}

}  // namespace

GgufFile::~GgufFile() = default;

StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(const std::filesystem::path& path) {
  LLMUX_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> mapping, MappedFile::Open(path));
  LLMUX_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> file, Parse(mapping->bytes(), path.string()));
  file->mapping_ = std::move(mapping);
  return file;
}

StatusOr<std::unique_ptr<GgufFile>> GgufFile::FromBytes(std::span<const std::byte> bytes,
                                                        std::string source_name) {
  return Parse(bytes, std::move(source_name));
}

const GgufFile::Value* GgufFile::Get(const std::string& key) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

const HostTensor* GgufFile::Find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

StatusOr<std::unique_ptr<GgufFile>> GgufFile::Parse(std::span<const std::byte> bytes,
                                                    std::string source) {
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->source_ = std::move(source);
  Reader r(bytes, f->source_);
  LLMUX_ASSIGN_OR_RETURN(uint32_t magic, r.Read<uint32_t>("magic"));
  if (magic != kMagic) return DataLoss(f->source_ + ": not a GGUF file (bad magic)");
  LLMUX_ASSIGN_OR_RETURN(f->version_, r.Read<uint32_t>("version"));
  if (f->version_ != 2 && f->version_ != 3) {
    return InvalidArgument(f->source_ + ": GGUF version " + std::to_string(f->version_) +
                           " is not supported (supported: 2, 3)");
  }
  LLMUX_ASSIGN_OR_RETURN(uint64_t n_tensors, r.Read<uint64_t>("tensor count"));
  LLMUX_ASSIGN_OR_RETURN(uint64_t n_kv, r.Read<uint64_t>("metadata count"));
  // A metadata entry takes at least 8 + 4 + 1 bytes, a tensor entry at least 8 + 4 + 8 + 4 + 8.
  if (n_kv > r.remaining() / 13) return r.Error("metadata count " + std::to_string(n_kv) + " exceeds the file");
  for (uint64_t i = 0; i < n_kv; ++i) {
    LLMUX_ASSIGN_OR_RETURN(std::string key, r.String("metadata key"));
    LLMUX_ASSIGN_OR_RETURN(uint32_t type, r.Read<uint32_t>("metadata type"));
    LLMUX_ASSIGN_OR_RETURN(Value v, ReadValue(r, type, key));
    if (!f->metadata_.emplace(key, std::move(v)).second) {
      return r.Error("metadata key '" + key + "' appears twice");
    }
  }
  uint64_t alignment = kDefaultAlignment;
  if (const Value* a = f->Get("general.alignment")) {
    const uint64_t* v = std::get_if<uint64_t>(a);
    if (v == nullptr || *v == 0 || (*v & (*v - 1)) != 0 || *v > (1u << 20)) {
      return DataLoss(f->source_ + ": general.alignment must be a power of two up to 1 MiB");
    }
    alignment = *v;
  }
  if (n_tensors > r.remaining() / 32) return r.Error("tensor count " + std::to_string(n_tensors) + " exceeds the file");
  struct Span {
    uint64_t begin, end;
    size_t tensor;
  };
  std::vector<Span> spans;
  f->tensors_.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    HostTensor t;
    LLMUX_ASSIGN_OR_RETURN(t.name, r.String("tensor name"));
    const std::string who = "tensor '" + t.name + "'";
    LLMUX_ASSIGN_OR_RETURN(uint32_t n_dims, r.Read<uint32_t>("tensor dimension count"));
    if (n_dims == 0 || n_dims > kMaxGgufDims) {
      return r.Error(who + ": " + std::to_string(n_dims) + " dimensions (1 to 4 supported)");
    }
    std::vector<int64_t> ne(n_dims);
    uint64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      LLMUX_ASSIGN_OR_RETURN(uint64_t n, r.Read<uint64_t>("tensor dimension"));
      if (n == 0 || n > (uint64_t{1} << 40) || __builtin_mul_overflow(numel, n, &numel) ||
          numel > (uint64_t{1} << 46)) {
        return r.Error(who + ": dimension " + std::to_string(n) + " is zero or too large");
      }
      ne[d] = static_cast<int64_t>(n);
    }
    LLMUX_ASSIGN_OR_RETURN(uint32_t type, r.Read<uint32_t>("tensor type"));
    LLMUX_ASSIGN_OR_RETURN(uint64_t offset, r.Read<uint64_t>("tensor offset"));
    std::optional<DType> dtype = TensorDType(type);
    if (!dtype) {
      return InvalidArgument(f->source_ + ": " + who + " has GGML type " + std::to_string(type) +
                             ", which llmux does not read (supported: F32, F16, BF16, Q8_0)");
    }
    if (*dtype == DType::kQ8_0 && ne[0] % kQ8BlockElems != 0) {
      return r.Error(who + ": Q8_0 rows of " + std::to_string(ne[0]) +
                     " elements are not whole 32-element blocks");
    }
    if (offset % alignment != 0) return r.Error(who + ": offset is not aligned");
    t.dtype = *dtype;
    t.shape.assign(ne.rbegin(), ne.rend());
    t.nbytes = DTypeBytes(t.dtype, static_cast<int64_t>(numel));
    if (f->index_.count(t.name) != 0) return r.Error(who + " appears twice");
    f->index_.emplace(t.name, f->tensors_.size());
    spans.push_back({offset, 0, f->tensors_.size()});
    if (__builtin_add_overflow(offset, static_cast<uint64_t>(t.nbytes), &spans.back().end)) {
      return r.Error(who + ": offset overflows");
    }
    f->tensors_.push_back(std::move(t));
  }
  const uint64_t data_start = (r.pos() + alignment - 1) / alignment * alignment;
  if (data_start > bytes.size() && !f->tensors_.empty()) {
    return DataLoss(f->source_ + ": truncated before the tensor data");
  }
  const uint64_t data_size = data_start <= bytes.size() ? bytes.size() - data_start : 0;
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.begin < b.begin; });
  for (size_t i = 0; i < spans.size(); ++i) {
    const HostTensor& t = f->tensors_[spans[i].tensor];
    if (spans[i].end > data_size) {
      return DataLoss(f->source_ + ": tensor '" + t.name + "' data [" +
                      std::to_string(spans[i].begin) + ", " + std::to_string(spans[i].end) +
                      ") extends past the " + std::to_string(data_size) + "-byte data region");
    }
    if (i > 0 && spans[i].begin < spans[i - 1].end) {
      return DataLoss(f->source_ + ": tensor '" + t.name + "' overlaps tensor '" +
                      f->tensors_[spans[i - 1].tensor].name + "'");
    }
  }
  for (const Span& s : spans) f->tensors_[s.tensor].data = bytes.data() + data_start + s.begin;
  return f;
}

}  // namespace llmux
