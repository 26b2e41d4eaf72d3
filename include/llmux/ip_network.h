// IP addresses and CIDR ranges (IPv4 and IPv6), for `server.trusted_proxies` and the client
// address a request is attributed to. Plain values; no sockets, no Boost.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "llmux/status.h"

namespace llmux {

// One address in IPv6 form: an IPv4 address a.b.c.d is held as the IPv4-mapped ::ffff:a.b.c.d,
// so "10.0.0.1" and "::ffff:10.0.0.1" (what a dual-stack socket reports) are the same value.
struct IpAddress {
  std::array<uint8_t, 16> bytes{};
  bool is_v4() const;
  // Dotted quad for IPv4 (mapped ones included), RFC 5952 text for IPv6.
  std::string ToString() const;
  bool operator==(const IpAddress& other) const { return bytes == other.bytes; }
};

// Parses "10.0.0.1", "2001:db8::1", "::ffff:10.0.0.1"; also "[2001:db8::1]" and an IPv6 zone
// suffix ("fe80::1%eth0", the zone is dropped). nullopt when `text` is not an address.
std::optional<IpAddress> ParseIpAddress(std::string_view text);

// A CIDR range. An IPv4 range /n is stored as the mapped range /(96 + n).
struct IpNetwork {
  IpAddress base;      // host bits zero
  int prefix_len = 0;  // 0..128 over the 16-byte form
  bool Contains(const IpAddress& address) const;
  std::string ToString() const;  // "10.0.0.0/8", "2001:db8::/32"
};

// "10.0.0.0/8", "2001:db8::/32", or a bare address (a /32 or /128). InvalidArgument naming the
// problem when malformed, or when host bits are set below the prefix ("10.0.0.1/8": write
// "10.0.0.0/8" or "10.0.0.1/32"; a typo there would silently trust the wrong range).
StatusOr<IpNetwork> ParseIpNetwork(std::string_view text);

// True when `address` is inside any of `networks`.
bool InAnyNetwork(const std::vector<IpNetwork>& networks, const IpAddress& address);

}  // namespace llmux
