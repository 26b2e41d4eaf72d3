#include "server/client_address.h"

#include <gtest/gtest.h>

namespace llmux::server {
namespace {

std::vector<IpNetwork> Nets(std::initializer_list<const char*> texts) {
  std::vector<IpNetwork> out;
  for (const char* t : texts) out.push_back(*ParseIpNetwork(t));
  return out;
}

HttpRequest WithHeader(const std::string& name, const std::string& value) {
  HttpRequest r;
  r.headers[name] = value;
  return r;
}

using FH = ServerSection::ForwardedHeader;

TEST(ClientAddressTest, UntrustedPeersHeadersAreIgnored) {
  ClientAddressResolver none({}, FH::kXForwardedFor);
  auto c = none.Resolve("198.51.100.7", WithHeader("x-forwarded-for", "1.2.3.4"));
  EXPECT_EQ(c.address, "198.51.100.7");
  EXPECT_FALSE(c.peer_trusted);
  ClientAddressResolver some(Nets({"10.0.0.0/8"}), FH::kXForwardedFor);
  c = some.Resolve("198.51.100.7", WithHeader("x-forwarded-for", "1.2.3.4"));
  EXPECT_EQ(c.address, "198.51.100.7");
  EXPECT_FALSE(c.peer_trusted);
}

TEST(ClientAddressTest, RightmostUntrustedHopOfXForwardedFor) {
  ClientAddressResolver r(Nets({"10.0.0.0/8", "2001:db8::/32"}), FH::kXForwardedFor);
  // The client wrote "6.6.6.6" itself; the proxy chain appended 203.0.113.9 and 10.0.0.2.
  auto c = r.Resolve("10.0.0.1", WithHeader("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.0.0.2"));
  EXPECT_EQ(c.address, "203.0.113.9");
  EXPECT_TRUE(c.peer_trusted);
  // Every hop trusted: the leftmost is as far as we know.
  EXPECT_EQ(r.Resolve("10.0.0.1", WithHeader("x-forwarded-for", "10.1.1.1,10.2.2.2")).address,
            "10.1.1.1");
  // Ports and brackets; IPv6 peer.
  EXPECT_EQ(r.Resolve("2001:db8::5", WithHeader("x-forwarded-for", "203.0.113.9:4711")).address,
            "203.0.113.9");
  EXPECT_EQ(r.Resolve("10.0.0.1", WithHeader("x-forwarded-for", "[2001:db9::7]:443")).address,
            "2001:db9::7");
  EXPECT_EQ(r.Resolve("::ffff:10.0.0.1", WithHeader("x-forwarded-for", "2001:DB9::7")).address,
            "2001:db9::7");
  // An unparsable hop stops the walk at the trusted hop to its right.
  EXPECT_EQ(r.Resolve("10.0.0.1", WithHeader("x-forwarded-for", "6.6.6.6, unknown, 10.0.0.3"))
                .address,
            "10.0.0.3");
  EXPECT_EQ(r.Resolve("10.0.0.1", WithHeader("x-forwarded-for", "garbage")).address, "10.0.0.1");
  // No header: the proxy itself.
  EXPECT_EQ(r.Resolve("10.0.0.1", HttpRequest{}).address, "10.0.0.1");
  // Forwarded is not read in X-Forwarded-For mode.
  EXPECT_EQ(r.Resolve("10.0.0.1", WithHeader("forwarded", "for=6.6.6.6")).address, "10.0.0.1");
}

TEST(ClientAddressTest, ForwardedHeader) {
  ClientAddressResolver r(Nets({"10.0.0.0/8"}), FH::kForwarded);
  auto c = r.Resolve("10.0.0.1", WithHeader("forwarded",
                                            "for=6.6.6.6;proto=http, for=\"[2001:db8:cafe::17]:4711\""
                                            ";by=10.0.0.1, For=10.0.0.9"));
  EXPECT_EQ(c.address, "2001:db8:cafe::17");
  EXPECT_EQ(r.Resolve("10.0.0.1", WithHeader("forwarded", "for=_hidden, for=10.0.0.9")).address,
            "10.0.0.9");
  EXPECT_EQ(r.Resolve("10.0.0.1", WithHeader("x-forwarded-for", "6.6.6.6")).address, "10.0.0.1");
}

TEST(ClientAddressTest, SplitHelpers) {
  EXPECT_EQ(SplitForwardedFor(" a ,b,, c "), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(SplitForwarded("for=a;by=b, for=\"[x,y]\""),
            (std::vector<std::string>{"a", "[x,y]"}));
}

}  // namespace
}  // namespace llmux::server
