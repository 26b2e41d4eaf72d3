#include "llmux/ip_network.h"

#include <arpa/inet.h>

#include <cstring>

namespace llmux {
namespace {

// NOTE: built by appending: GCC 12 reports a false -Wrestrict on `"\"" + std::string(...)`.
std::string Quoted(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 2);
  out += '"';
  out.append(text);
  out += '"';
  return out;
}

constexpr std::array<uint8_t, 12> kV4MappedPrefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

}  // namespace

bool IpAddress::is_v4() const {
  return std::memcmp(bytes.data(), kV4MappedPrefix.data(), kV4MappedPrefix.size()) == 0;
}

std::string IpAddress::ToString() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (is_v4()) {
    inet_ntop(AF_INET, bytes.data() + 12, buf, sizeof(buf));
  } else {
    inet_ntop(AF_INET6, bytes.data(), buf, sizeof(buf));
  }
  return buf;
}

std::optional<IpAddress> ParseIpAddress(std::string_view text) {
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']') {
    text = text.substr(1, text.size() - 2);
  }
  if (const size_t zone = text.find('%'); zone != std::string_view::npos) {
    text = text.substr(0, zone);
  }
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return std::nullopt;
  const std::string s(text);
  IpAddress a;
  in_addr v4{};
  if (inet_pton(AF_INET, s.c_str(), &v4) == 1) {
    std::memcpy(a.bytes.data(), kV4MappedPrefix.data(), kV4MappedPrefix.size());
    std::memcpy(a.bytes.data() + 12, &v4, 4);
    return a;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, s.c_str(), &v6) == 1) {
    std::memcpy(a.bytes.data(), &v6, 16);
    return a;
  }
  return std::nullopt;
}

bool IpNetwork::Contains(const IpAddress& address) const {
  const int full = prefix_len / 8;
  if (std::memcmp(base.bytes.data(), address.bytes.data(), full) != 0) return false;
  const int rest = prefix_len % 8;
  if (rest == 0) return true;
  const uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (base.bytes[full] & mask) == (address.bytes[full] & mask);
}

std::string IpNetwork::ToString() const {
  return base.ToString() + "/" + std::to_string(base.is_v4() ? prefix_len - 96 : prefix_len);
}

StatusOr<IpNetwork> ParseIpNetwork(std::string_view text) {
  const size_t slash = text.find('/');
  const std::string_view addr_text = text.substr(0, slash);
  auto addr = ParseIpAddress(addr_text);
  if (!addr) {
    return InvalidArgument(Quoted(text) + " is not an IP address or CIDR range");
  }
  const bool v4 = addr->is_v4() && addr_text.find(':') == std::string_view::npos;
  const int max_len = v4 ? 32 : 128;
  int len = max_len;
  if (slash != std::string_view::npos) {
    const std::string_view len_text = text.substr(slash + 1);
    bool ok = !len_text.empty() && len_text.size() <= 3;
    len = 0;
    for (char c : len_text) {
      ok = ok && c >= '0' && c <= '9';
      if (ok) len = len * 10 + (c - '0');
    }
    if (!ok || len > max_len) {
      return InvalidArgument(Quoted(text) + ": prefix length must be 0.." + std::to_string(max_len));
    }
  }
  IpNetwork net;
  net.base = *addr;
  net.prefix_len = v4 ? len + 96 : len;
  IpNetwork masked = net;
  for (int bit = net.prefix_len; bit < 128; ++bit) {
    masked.base.bytes[bit / 8] &= static_cast<uint8_t>(~(0x80 >> (bit % 8)));
  }
  if (!(masked.base == net.base)) {
    return InvalidArgument(Quoted(text) + " has host bits set; write " +
                           Quoted(masked.ToString()) + " (or a /" + std::to_string(max_len) +
                           " for one host)");
  }
  return net;
}

bool InAnyNetwork(const std::vector<IpNetwork>& networks, const IpAddress& address) {
  for (const IpNetwork& n : networks) {
    if (n.Contains(address)) return true;
  }
  return false;
}

}  // namespace llmux
