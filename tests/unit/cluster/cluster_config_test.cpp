// The `cluster:` section of llmux.yaml.
#include <gtest/gtest.h>

#include "llmux/config.h"

namespace llmux {
namespace {

StatusOr<ServerConfig> Parse(const std::string& text) {
  return ParseServerConfig(text, "llmux.yaml", "/etc/llmux");
}

TEST(ClusterConfigTest, AbsentMeansLocal) {
  auto c = Parse("server: {listen: \"127.0.0.1:8080\"}\n");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_FALSE(c->cluster.enabled);
}

TEST(ClusterConfigTest, FullSection) {
  auto c = Parse(
      "cluster:\n"
      "  redis: {url: \"redis://:s3cret@10.0.0.5:6380/2\", key_prefix: \"prod:\", timeout: 20ms}\n"
      "  replica_id: node-1\n"
      "  lease_ttl: 5s\n"
      "  on_store_failure: reject\n");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  const ClusterSection& s = c->cluster;
  EXPECT_TRUE(s.enabled);
  EXPECT_EQ(s.redis_host, "10.0.0.5");
  EXPECT_EQ(s.redis_port, 6380);
  EXPECT_EQ(s.redis_db, 2);
  EXPECT_EQ(s.redis_password, "s3cret");
  EXPECT_EQ(s.key_prefix, "prod:");
  EXPECT_EQ(s.timeout, Millis(20));
  EXPECT_EQ(s.replica_id, "node-1");
  EXPECT_EQ(s.lease_ttl, Millis(5000));
  EXPECT_EQ(s.on_store_failure, StoreFailureMode::kReject);
}

TEST(ClusterConfigTest, DefaultsAndUnixSockets) {
  auto c = Parse("cluster:\n  redis: {url: \"unix:///run/redis/redis.sock?db=3\"}\n");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->cluster.redis_socket, "/run/redis/redis.sock");
  EXPECT_EQ(c->cluster.redis_db, 3);
  EXPECT_EQ(c->cluster.key_prefix, "llmux:");
  EXPECT_EQ(c->cluster.timeout, Millis(50));
  EXPECT_EQ(c->cluster.lease_ttl, Millis(10000));
  EXPECT_EQ(c->cluster.on_store_failure, StoreFailureMode::kLocalShare);
  EXPECT_EQ(c->cluster.replica_id, "");
  auto plain = Parse("cluster:\n  redis: {url: /tmp/r.sock}\n");
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  EXPECT_EQ(plain->cluster.redis_socket, "/tmp/r.sock");
  auto host = Parse("cluster:\n  redis: {url: \"redis://cache\"}\n");
  ASSERT_TRUE(host.ok());
  EXPECT_EQ(host->cluster.redis_host, "cache");
  EXPECT_EQ(host->cluster.redis_port, 6379);
}

TEST(ClusterConfigTest, ErrorsNameFileLineAndKey) {
  auto bad_url = Parse("cluster:\n  redis:\n    url: \"http://x\"\n");
  ASSERT_FALSE(bad_url.ok());
  EXPECT_NE(bad_url.status().message().find("llmux.yaml:3:"), std::string::npos)
      << bad_url.status().message();
  EXPECT_NE(bad_url.status().message().find("cluster.redis.url"), std::string::npos)
      << bad_url.status().message();

  auto mode = Parse("cluster:\n  redis: {url: \"redis://h:1\"}\n  on_store_failure: panic\n");
  ASSERT_FALSE(mode.ok());
  EXPECT_NE(mode.status().message().find("llmux.yaml:3:"), std::string::npos);
  EXPECT_NE(mode.status().message().find("expected \"local_share\" or \"reject\""),
            std::string::npos)
      << mode.status().message();

  auto no_redis = Parse("cluster:\n  lease_ttl: 5s\n");
  ASSERT_FALSE(no_redis.ok());
  EXPECT_NE(no_redis.status().message().find("missing required key \"redis\""), std::string::npos)
      << no_redis.status().message();

  auto ttl = Parse("cluster:\n  redis: {url: \"redis://h:1\"}\n  lease_ttl: 10ms\n");
  ASSERT_FALSE(ttl.ok());
  EXPECT_NE(ttl.status().message().find("at least 300ms"), std::string::npos);

  auto port = Parse("cluster:\n  redis: {url: \"redis://h:99999\"}\n");
  ASSERT_FALSE(port.ok());

  auto unknown = Parse("cluster:\n  redis: {url: \"redis://h:1\", tls: true}\n");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("tls"), std::string::npos) << unknown.status().message();

  auto pipe = Parse("cluster:\n  redis: {url: \"redis://h:1\"}\n  replica_id: \"a|b\"\n");
  ASSERT_FALSE(pipe.ok());
}

}  // namespace
}  // namespace llmux
