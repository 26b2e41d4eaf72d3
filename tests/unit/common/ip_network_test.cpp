#include "llmux/ip_network.h"

#include <gtest/gtest.h>

namespace llmux {
namespace {

IpAddress Ip(const char* text) {
  auto a = ParseIpAddress(text);
  EXPECT_TRUE(a.has_value()) << text;
  return a.value_or(IpAddress{});
}

TEST(IpNetworkTest, ParsesAddressesAndMapsIpv4IntoIpv6) {
  EXPECT_EQ(Ip("10.0.0.1").ToString(), "10.0.0.1");
  EXPECT_TRUE(Ip("10.0.0.1").is_v4());
  EXPECT_EQ(Ip("::ffff:10.0.0.1"), Ip("10.0.0.1"));
  EXPECT_EQ(Ip("2001:DB8::1").ToString(), "2001:db8::1");
  EXPECT_FALSE(Ip("2001:db8::1").is_v4());
  EXPECT_EQ(Ip("[::1]").ToString(), "::1");
  EXPECT_EQ(Ip("fe80::1%eth0").ToString(), "fe80::1");
  for (const char* bad : {"", "10.0.0", "10.0.0.256", "unknown", "1.2.3.4:80", "::g", "[::1"}) {
    EXPECT_FALSE(ParseIpAddress(bad).has_value()) << bad;
  }
}

TEST(IpNetworkTest, Ipv4RangesMatchPlainAndMappedAddresses) {
  auto net = ParseIpNetwork("10.1.0.0/16");
  ASSERT_TRUE(net.ok()) << net.status().ToString();
  EXPECT_EQ(net->ToString(), "10.1.0.0/16");
  EXPECT_TRUE(net->Contains(Ip("10.1.0.0")));
  EXPECT_TRUE(net->Contains(Ip("10.1.255.255")));
  EXPECT_TRUE(net->Contains(Ip("::ffff:10.1.2.3")));
  EXPECT_FALSE(net->Contains(Ip("10.2.0.0")));
  EXPECT_FALSE(net->Contains(Ip("2001:db8::1")));
  auto odd = ParseIpNetwork("192.168.1.128/25");
  ASSERT_TRUE(odd.ok());
  EXPECT_TRUE(odd->Contains(Ip("192.168.1.200")));
  EXPECT_FALSE(odd->Contains(Ip("192.168.1.127")));
  auto all = ParseIpNetwork("0.0.0.0/0");
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(all->Contains(Ip("8.8.8.8")));
  EXPECT_FALSE(all->Contains(Ip("::1")));  // /0 of IPv4 is every IPv4 address, no IPv6 one
  auto host = ParseIpNetwork("127.0.0.1");
  ASSERT_TRUE(host.ok());
  EXPECT_EQ(host->ToString(), "127.0.0.1/32");
  EXPECT_TRUE(host->Contains(Ip("127.0.0.1")));
  EXPECT_FALSE(host->Contains(Ip("127.0.0.2")));
}

TEST(IpNetworkTest, Ipv6Ranges) {
  auto net = ParseIpNetwork("2001:db8::/32");
  ASSERT_TRUE(net.ok());
  EXPECT_TRUE(net->Contains(Ip("2001:db8:ffff::1")));
  EXPECT_FALSE(net->Contains(Ip("2001:db9::1")));
  EXPECT_FALSE(net->Contains(Ip("10.0.0.1")));
  auto loop = ParseIpNetwork("::1/128");
  ASSERT_TRUE(loop.ok());
  EXPECT_TRUE(loop->Contains(Ip("::1")));
  EXPECT_EQ(ParseIpNetwork("fc00::/7")->ToString(), "fc00::/7");
}

TEST(IpNetworkTest, RejectsMalformedRangesAndHostBits) {
  EXPECT_EQ(ParseIpNetwork("10.0.0.0/33").status().message(),
            "\"10.0.0.0/33\": prefix length must be 0..32");
  EXPECT_EQ(ParseIpNetwork("::/129").status().message(), "\"::/129\": prefix length must be 0..128");
  EXPECT_EQ(ParseIpNetwork("10.0.0.0/").status().message(),
            "\"10.0.0.0/\": prefix length must be 0..32");
  EXPECT_EQ(ParseIpNetwork("10.0.0.0/x").status().message(),
            "\"10.0.0.0/x\": prefix length must be 0..32");
  EXPECT_EQ(ParseIpNetwork("proxy.local/8").status().message(),
            "\"proxy.local/8\" is not an IP address or CIDR range");
  EXPECT_EQ(ParseIpNetwork("10.0.0.1/8").status().message(),
            "\"10.0.0.1/8\" has host bits set; write \"10.0.0.0/8\" (or a /32 for one host)");
  EXPECT_EQ(ParseIpNetwork("2001:db8::1/32").status().message(),
            "\"2001:db8::1/32\" has host bits set; write \"2001:db8::/32\" (or a /128 for one "
            "host)");
}

TEST(IpNetworkTest, InAnyNetwork) {
  std::vector<IpNetwork> nets = {*ParseIpNetwork("10.0.0.0/8"), *ParseIpNetwork("fd00::/8")};
  EXPECT_TRUE(InAnyNetwork(nets, Ip("10.9.9.9")));
  EXPECT_TRUE(InAnyNetwork(nets, Ip("fd12::3")));
  EXPECT_FALSE(InAnyNetwork(nets, Ip("11.0.0.1")));
  EXPECT_FALSE(InAnyNetwork({}, Ip("10.0.0.1")));
}

}  // namespace
}  // namespace llmux
