#include "model/safetensors_writer.h"

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

namespace llmux {
namespace {

std::filesystem::path TempPath(const std::filesystem::path& path) {
  return std::filesystem::path(path.string() + ".tmp");
}

std::string SafetensorsDTypeName(DType t) {
  switch (t) {
    case DType::kF32:
      return "F32";
    case DType::kF16:
      return "F16";
    case DType::kBF16:
      return "BF16";
    case DType::kI32:
      return "I32";
  }
  return "?";
}

constexpr size_t kStdioBuffer = 8u << 20;

}  // namespace

uint64_t TensorHeader::nbytes() const {
  uint64_t n = DTypeSize(dtype);
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n;
}

StatusOr<std::unique_ptr<SafetensorsWriter>> SafetensorsWriter::Create(
    const std::filesystem::path& path, const std::vector<TensorHeader>& tensors,
    const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const TensorHeader& t : tensors) {
    const uint64_t end = offset + t.nbytes();
    header[t.name] = {{"dtype", SafetensorsDTypeName(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, end}}};
    offset = end;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // 8 + header is a multiple of 8

  const std::filesystem::path tmp = TempPath(path);
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) return Internal(tmp.string() + ": cannot create: " + std::strerror(errno));
  std::unique_ptr<SafetensorsWriter> w(new SafetensorsWriter(path, f, offset));
  w->buffer_.resize(kStdioBuffer);
  std::setvbuf(f, w->buffer_.data(), _IOFBF, w->buffer_.size());
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>((text.size() >> (8 * i)) & 0xff);
  if (std::fwrite(len, 1, 8, f) != 8 ||
      std::fwrite(text.data(), 1, text.size(), f) != text.size()) {
    return Internal(tmp.string() + ": write failed: " + std::strerror(errno));
  }
  return w;
}

SafetensorsWriter::~SafetensorsWriter() {
  if (file_ != nullptr) {  // not finished: drop the partial file
    std::fclose(file_);
    std::error_code ec;
    std::filesystem::remove(TempPath(path_), ec);
  }
}

Status SafetensorsWriter::Append(std::span<const std::byte> bytes) {
  LLMUX_CHECK(file_ != nullptr) << "Append after Finish";
  if (written_ + bytes.size() > data_bytes_) {
    return FailedPrecondition(path_.string() + ": more tensor data than the header declares");
  }
  if (std::fwrite(bytes.data(), 1, bytes.size(), file_) != bytes.size()) {
    return Internal(TempPath(path_).string() + ": write failed: " + std::strerror(errno));
  }
  written_ += bytes.size();
  return Status::Ok();
}

Status SafetensorsWriter::Finish() {
  LLMUX_CHECK(file_ != nullptr) << "Finish called twice";
  if (written_ != data_bytes_) {
    return FailedPrecondition(path_.string() + ": " + std::to_string(written_) + " of " +
                              std::to_string(data_bytes_) + " data bytes written");
  }
  const bool flushed = std::fflush(file_) == 0;
  const int err = errno;
  const bool closed = std::fclose(file_) == 0;
  file_ = nullptr;
  const std::filesystem::path tmp = TempPath(path_);
  if (!flushed || !closed) {
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    return Internal(tmp.string() + ": write failed: " + std::strerror(err));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path_, ec);
  if (ec) return Internal(path_.string() + ": rename failed: " + ec.message());
  return Status::Ok();
}

}  // namespace llmux
