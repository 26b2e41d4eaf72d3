// engine.kv_events in llmux.yaml: off when absent, every key, errors with file:line, per pool.
#include <gtest/gtest.h>

#include "llmux/config.h"

namespace llmux {
namespace {

std::string Error(const std::string& text) {
  auto cfg = ParseServerConfig(text, "llmux.yaml", "/etc/llmux");
  return cfg.ok() ? "" : cfg.status().message();
}

const PoolSection& Pool(const ServerConfig& cfg, const std::string& name) {
  const PoolSection* p = FindPool(cfg, name);
  EXPECT_NE(p, nullptr) << name;
  return *p;
}

TEST(KvEventsConfigTest, OffWhenAbsent) {
  auto cfg = ParseServerConfig("", "llmux.yaml", "/etc/llmux");
  ASSERT_TRUE(cfg.ok());
  EXPECT_FALSE(cfg->engine.kv_events.enabled);
}

TEST(KvEventsConfigTest, ReadsEveryKey) {
  auto cfg = ParseServerConfig(
      "engine:\n  kv_events:\n    endpoint: \"tcp://127.0.0.1:5557\"\n"
      "    replay_endpoint: \"tcp://127.0.0.1:5558\"\n    topic: kv\n"
      "    buffer_batches: 5\n    max_queue_events: 7\n",
      "llmux.yaml", "/etc/llmux");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  const KvEventsSection& k = cfg->engine.kv_events;
  EXPECT_TRUE(k.enabled);
  EXPECT_EQ(k.endpoint, "tcp://127.0.0.1:5557");
  EXPECT_EQ(k.replay_endpoint, "tcp://127.0.0.1:5558");
  EXPECT_EQ(k.topic, "kv");
  EXPECT_EQ(k.buffer_batches, 5);
  EXPECT_EQ(k.max_queue_events, 7);
  EXPECT_FALSE(k.map_events);
  EXPECT_TRUE(Pool(*cfg, "shared").engine.kv_events.enabled);

  auto defaults = ParseServerConfig("engine: {kv_events: {endpoint: \"ipc:///tmp/kv\"}}",
                                    "llmux.yaml", "/");
  ASSERT_TRUE(defaults.ok()) << defaults.status().ToString();
  EXPECT_EQ(defaults->engine.kv_events.replay_endpoint, "");
  EXPECT_EQ(defaults->engine.kv_events.topic, "");
  EXPECT_EQ(defaults->engine.kv_events.buffer_batches, 10000);
  EXPECT_EQ(defaults->engine.kv_events.max_queue_events, 100000);

  auto map = ParseServerConfig("engine: {kv_events: {endpoint: \"ipc:///tmp/kv\", format: map}}",
                               "llmux.yaml", "/");
  ASSERT_TRUE(map.ok()) << map.status().ToString();
  EXPECT_TRUE(map->engine.kv_events.map_events);
  EXPECT_EQ(Error("engine: {kv_events: {endpoint: \"ipc:///tmp/kv\", format: json}}"),
            "llmux.yaml:1:57: engine.kv_events.format: expected \"array\" or \"map\", got "
            "\"json\"");
}

TEST(KvEventsConfigTest, ErrorsNameTheKeyAndLine) {
  EXPECT_EQ(Error("engine:\n  kv_events: {topic: x}\n"),
            "llmux.yaml:2:14: engine.kv_events: needs an endpoint (e.g. "
            "\"tcp://127.0.0.1:5557\")");
  EXPECT_EQ(Error("engine:\n  kv_events: {endpoint: \"127.0.0.1:5557\"}\n"),
            "llmux.yaml:2:25: engine.kv_events.endpoint: expected a ZeroMQ endpoint such as "
            "\"tcp://127.0.0.1:5557\" (tcp://HOST:PORT, ipc://PATH or inproc://NAME), got "
            "\"127.0.0.1:5557\"");
  EXPECT_NE(Error("engine:\n  kv_events: {endpoint: \"tcp://h:x\"}\n"), "");
  EXPECT_NE(Error("engine:\n  kv_events: {endpoint: \"tcp://h:1\", "
                  "replay_endpoint: \"tcp://h:1\"}\n")
                .find("must differ from endpoint"),
            std::string::npos);
  EXPECT_NE(Error("engine:\n  kv_events: {endpoint: \"tcp://h:1\", buffer_batches: -1}\n")
                .find("engine.kv_events.buffer_batches"),
            std::string::npos);
  EXPECT_NE(Error("engine:\n  kv_events: {endpoint: \"tcp://h:1\", bogus: 1}\n").find("bogus"),
            std::string::npos);
}

TEST(KvEventsConfigTest, PerPool) {
  const std::string top = "engine: {kv_events: {endpoint: \"tcp://127.0.0.1:5557\"}}\n";
  // Another thread pool does not inherit the shared pool's publisher.
  auto cfg = ParseServerConfig(top + "pools:\n  other: {}\n", "llmux.yaml", "/");
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_TRUE(Pool(*cfg, "shared").engine.kv_events.enabled);
  EXPECT_FALSE(Pool(*cfg, "other").engine.kv_events.enabled);
  // Its own, on other endpoints, is fine; the same endpoint is an error.
  const std::string own = "pools:\n  other: {engine: {kv_events: {endpoint: ";
  EXPECT_EQ(Error(top + own + "\"tcp://127.0.0.1:6000\"}}}\n"), "");
  EXPECT_NE(Error(top + own + "\"tcp://127.0.0.1:5557\"}}}\n")
                .find("already used by pool \"shared\""),
            std::string::npos);
  EXPECT_NE(Error("pools:\n  w: {isolation: process, "
                  "engine: {kv_events: {endpoint: \"tcp://h:1\"}}}\n")
                .find("not supported with isolation: process"),
            std::string::npos);
}

}  // namespace
}  // namespace llmux
