#include "server/client_address.h"

#include <cctype>
#include <optional>
#include <string_view>

namespace llmux::server {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// "1.2.3.4", "1.2.3.4:5678", "2001:db8::1", "[2001:db8::1]", "[2001:db8::1]:443".
std::optional<IpAddress> ParseHop(std::string_view hop) {
  hop = Trim(hop);
  if (!hop.empty() && hop.front() == '[') {
    const size_t end = hop.find(']');
    if (end == std::string_view::npos) return std::nullopt;
    return ParseIpAddress(hop.substr(1, end - 1));
  }
  if (auto a = ParseIpAddress(hop)) return a;
  const size_t colon = hop.find(':');
  if (colon != std::string_view::npos && hop.find(':', colon + 1) == std::string_view::npos) {
    return ParseIpAddress(hop.substr(0, colon));  // IPv4 with a port
  }
  return std::nullopt;
}

}  // namespace

std::vector<std::string> SplitForwardedFor(const std::string& value) {
  std::vector<std::string> hops;
  size_t start = 0;
  while (start <= value.size()) {
    size_t comma = value.find(',', start);
    if (comma == std::string::npos) comma = value.size();
    const std::string_view hop = Trim(std::string_view(value).substr(start, comma - start));
    if (!hop.empty()) hops.emplace_back(hop);
    start = comma + 1;
  }
  return hops;
}

std::vector<std::string> SplitForwarded(const std::string& value) {
  // Elements are separated by ',', pairs by ';'. A quoted value may hold neither.
  std::vector<std::string> hops;
  size_t i = 0;
  while (i < value.size()) {
    size_t end = i;
    bool quoted = false;
    while (end < value.size() && (quoted || (value[end] != ',' && value[end] != ';'))) {
      if (value[end] == '"') quoted = !quoted;
      ++end;
    }
    const std::string_view pair = Trim(std::string_view(value).substr(i, end - i));
    if (pair.size() > 4) {
      std::string key(pair.substr(0, 4));
      for (char& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (key == "for=") {
        std::string_view v = pair.substr(4);
        if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
        hops.emplace_back(v);
      }
    }
    i = end + 1;
  }
  return hops;
}

bool ClientAddressResolver::IsTrusted(const std::string& peer) const {
  if (trusted_.empty()) return false;
  auto a = ParseIpAddress(peer);
  return a && InAnyNetwork(trusted_, *a);
}

ClientAddress ClientAddressResolver::Resolve(const std::string& peer,
                                             const HttpRequest& request) const {
  ClientAddress out;
  out.address = peer;
  if (trusted_.empty()) return out;
  auto peer_ip = ParseIpAddress(peer);
  if (!peer_ip || !InAnyNetwork(trusted_, *peer_ip)) return out;
  out.peer_trusted = true;
  out.address = peer_ip->ToString();
  const bool xff = header_ == ServerSection::ForwardedHeader::kXForwardedFor;
  const std::string& value = request.Header(xff ? "x-forwarded-for" : "forwarded");
  if (value.empty()) return out;
  const std::vector<std::string> hops = xff ? SplitForwardedFor(value) : SplitForwarded(value);
  for (auto it = hops.rbegin(); it != hops.rend(); ++it) {
    auto hop = ParseHop(*it);
    if (!hop) break;  // unparsable: the last trusted hop is as far as we can tell
    out.address = hop->ToString();
    if (!InAnyNetwork(trusted_, *hop)) break;  // the first untrusted hop is the client
  }
  return out;
}

}  // namespace llmux::server
