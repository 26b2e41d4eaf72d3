// Value syntaxes shared by llmux.yaml and tenants.yaml, key hashing, and the file reader.
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "config/quote.h"
#include "llmux/config.h"

namespace llmux {
namespace {

constexpr std::int64_t kMaxDurationMs = 30LL * 24 * 3600 * 1000;  // 30 days
constexpr std::int64_t kNanoPerUnit = 1000000000;

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Non-empty all-digit string -> value; false on overflow past `max`.
bool ParseDigits(std::string_view s, std::int64_t max, std::int64_t* out) {
  if (s.empty()) return false;
  std::int64_t v = 0;
  for (char c : s) {
    if (!IsDigit(c)) return false;
    const int d = c - '0';
    if (v > (max - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string_view BackendKindName(BackendKind kind) {
  switch (kind) {
    case BackendKind::kCpu:
      return "cpu";
    case BackendKind::kCuda:
      return "cuda";
  }
  return "?";
}

std::string_view KvDTypeName(KvDType dtype) {
  switch (dtype) {
    case KvDType::kBackendDefault:
      return "default";
    case KvDType::kF32:
      return "f32";
    case KvDType::kF16:
      return "f16";
    case KvDType::kBF16:
      return "bf16";
  }
  return "?";
}

std::string_view Bf16ActivationsName(Bf16Activations mode) {
  switch (mode) {
    case Bf16Activations::kBf16:
      return "bf16";
    case Bf16Activations::kF32:
      return "f32";
  }
  return "?";
}

std::string_view EngineBatchingName(EngineBatching mode) {
  switch (mode) {
    case EngineBatching::kContinuous:
      return "continuous";
    case EngineBatching::kStatic:
      return "static";
  }
  return "?";
}

StatusOr<Millis> ParseDuration(std::string_view text) {
  const std::string quoted = config_internal::QuoteValue(text);
  if (text == "0") return Millis(0);
  size_t digits = 0;
  while (digits < text.size() && IsDigit(text[digits])) ++digits;
  const std::string_view number = text.substr(0, digits);
  const std::string_view unit = text.substr(digits);
  const bool unit_letters_only =
      unit.find_first_not_of("abcdefghijklmnopqrstuvwxyz") == std::string_view::npos;
  if (number.empty() || !unit_letters_only) {
    return InvalidArgument("invalid duration " + quoted +
                           ": expected a whole number and a unit (ms, s, m, h), e.g. \"30s\"");
  }
  if (unit.empty()) {
    return InvalidArgument("invalid duration " + quoted +
                           ": needs a unit (ms, s, m, h), e.g. \"30s\"");
  }
  std::int64_t per_unit = 0;
  if (unit == "ms") {
    per_unit = 1;
  } else if (unit == "s") {
    per_unit = 1000;
  } else if (unit == "m") {
    per_unit = 60 * 1000;
  } else if (unit == "h") {
    per_unit = 3600 * 1000;
  } else {
    return InvalidArgument("invalid duration " + quoted + ": unknown unit " +
                           config_internal::QuoteValue(unit) + " (use ms, s, m or h)");
  }
  std::int64_t n = 0;
  if (!ParseDigits(number, kMaxDurationMs, &n) || n > kMaxDurationMs / per_unit) {
    return InvalidArgument("invalid duration " + quoted + ": longer than 30 days");
  }
  return Millis(n * per_unit);
}

StatusOr<std::int64_t> ParseDecimalNano(std::string_view text) {
  const std::string quoted = config_internal::QuoteValue(text);
  if (!text.empty() && text.front() == '-') {
    return InvalidArgument("must not be negative, got " + quoted);
  }
  const size_t dot = text.find('.');
  const std::string_view whole = text.substr(0, dot);
  const std::string_view frac =
      dot == std::string_view::npos ? std::string_view() : text.substr(dot + 1);
  const bool digits_only = !whole.empty() && (dot == std::string_view::npos || !frac.empty()) &&
                           whole.find_first_not_of("0123456789") == std::string_view::npos &&
                           frac.find_first_not_of("0123456789") == std::string_view::npos;
  if (!digits_only) {
    return InvalidArgument("expected a decimal number such as \"0.20\", got " + quoted);
  }
  if (frac.size() > 9) {
    return InvalidArgument("at most 9 decimal places, got " + quoted);
  }
  std::int64_t units = 0;
  if (!ParseDigits(whole, std::numeric_limits<std::int64_t>::max() / kNanoPerUnit, &units)) {
    return InvalidArgument("too large, got " + quoted);
  }
  std::int64_t nano = 0;
  for (size_t i = 0; i < 9; ++i) nano = nano * 10 + (i < frac.size() ? frac[i] - '0' : 0);
  const std::int64_t base = units * kNanoPerUnit;
  if (base > std::numeric_limits<std::int64_t>::max() - nano) {
    return InvalidArgument("too large, got " + quoted);
  }
  return base + nano;
}

StatusOr<KeyHash> ParseKeyHashHex(std::string_view hex) {
  KeyHash out{};
  if (hex.size() != 2 * out.size()) {
    return InvalidArgument("expected a SHA-256 as 64 hex digits, got " +
                           std::to_string(hex.size()) + " characters");
  }
  for (size_t i = 0; i < out.size(); ++i) {
    const int hi = HexValue(hex[2 * i]);
    const int lo = HexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return InvalidArgument("expected a SHA-256 as 64 hex digits, found a non-hex character");
    }
    out[i] = static_cast<std::uint8_t>(hi * 16 + lo);
  }
  return out;
}

std::string KeyHashHex(const KeyHash& hash) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(hash.size() * 2);
  for (std::uint8_t b : hash) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0xf]);
  }
  return out;
}

KeyHash HashApiKey(std::string_view key) {
  KeyHash out{};
  unsigned int len = 0;
  const bool ok = EVP_Digest(key.data(), key.size(), out.data(), &len, EVP_sha256(), nullptr) == 1;
  LLMUX_CHECK(ok && len == out.size()) << "EVP_Digest(sha256) failed";
  return out;
}

StatusOr<std::string> ReadConfigFile(const std::filesystem::path& path, std::int64_t max_bytes) {
  const std::string name = path.string();
  // O_NONBLOCK: opening a FIFO must not hang; it is rejected below as not a regular file.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) {
    const int err = errno;
    std::string msg = name + ": cannot open: " + std::strerror(err);
    return err == ENOENT ? NotFound(std::move(msg)) : InvalidArgument(std::move(msg));
  }
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) return Internal(name + ": fstat: " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return InvalidArgument(name + ": not a regular file");
  const std::string too_large =
      name + ": file larger than the " + std::to_string(max_bytes) + "-byte limit";
  if (st.st_size > max_bytes) return InvalidArgument(too_large);
  // NOTE: everything comes from this one descriptor, so a rename or symlink swap while we read
  // cannot mix two versions; reading past max_bytes catches a file growing meanwhile.
  const size_t limit = static_cast<size_t>(max_bytes) + 1;
  std::string data(std::min(limit, static_cast<size_t>(st.st_size) + 1), '\0');
  size_t total = 0;
  while (total < limit) {
    if (total == data.size()) data.resize(std::min(limit, data.size() * 2));
    const ssize_t n = ::read(fd, data.data() + total, data.size() - total);
    if (n < 0) {
      if (errno == EINTR) continue;
      return InvalidArgument(name + ": read: " + std::strerror(errno));
    }
    if (n == 0) break;
    total += static_cast<size_t>(n);
  }
  if (total > static_cast<size_t>(max_bytes)) return InvalidArgument(too_large);
  data.resize(total);
  return data;
}

}  // namespace llmux
