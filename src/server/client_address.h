// Which client a request comes from, behind load balancers: the TCP peer, or — only when that
// peer is a configured trusted proxy — the rightmost untrusted hop of X-Forwarded-For (or
// Forwarded: for=). The result keys the failed-auth throttle and appears in logs.
// Immutable after construction; any thread.
#pragma once

#include <string>
#include <vector>

#include "llmux/config.h"
#include "llmux/ip_network.h"
#include "server/http_types.h"

namespace llmux::server {

struct ClientAddress {
  std::string address;        // the client as text ("203.0.113.7", "2001:db8::7")
  bool peer_trusted = false;  // the TCP peer is in server.trusted_proxies
};

class ClientAddressResolver {
 public:
  ClientAddressResolver(std::vector<IpNetwork> trusted_proxies,
                        ServerSection::ForwardedHeader header)
      : trusted_(std::move(trusted_proxies)), header_(header) {}

  // `peer` is the socket's remote address text; `request` supplies the forwarding header
  // (names lower-cased; repeated fields joined with ", " by the HTTP layer). A peer that is not
  // trusted, or a trusted one that sent no usable header, is the client itself. Walking the
  // hops from the right, trusted ones are skipped; the first untrusted one is the client; an
  // unparsable hop ("unknown", an obfuscated Forwarded id) stops the walk at the hop before
  // it, which was trusted — never further left, where a client may have written anything.
  ClientAddress Resolve(const std::string& peer, const HttpRequest& request) const;

  bool IsTrusted(const std::string& peer) const;

 private:
  const std::vector<IpNetwork> trusted_;
  const ServerSection::ForwardedHeader header_;
};

// The hop addresses of an X-Forwarded-For value, left to right, as written (ports and
// brackets kept: ParseHop strips them).
std::vector<std::string> SplitForwardedFor(const std::string& value);
// The `for=` values of a Forwarded value, left to right (quotes removed).
std::vector<std::string> SplitForwarded(const std::string& value);

}  // namespace llmux::server
