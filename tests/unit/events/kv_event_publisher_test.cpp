// The publisher over real ZeroMQ sockets (ipc:// in a temporary directory): PUB framing and
// sequence numbers, replay over ROUTER, and the drop counter.
#include "llmux/kv_event_publisher.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zmq.h>

#include <chrono>
#include <filesystem>
#include <msgpack.hpp>
#include <string>
#include <thread>
#include <vector>

#include "events/wire.h"

namespace llmux {
namespace {

using events::DecodeSeq;
using events::EncodeSeq;

class Sockets {
 public:
  Sockets() : ctx_(zmq_ctx_new()) {}
  ~Sockets() {
    for (void* s : sockets_) zmq_close(s);
    zmq_ctx_term(ctx_);
  }
  void* Open(int type, const std::string& endpoint) {
    void* s = zmq_socket(ctx_, type);
    const int linger = 0, timeout_ms = 5000;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger));
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout_ms, sizeof(timeout_ms));
    if (type == ZMQ_SUB) zmq_setsockopt(s, ZMQ_SUBSCRIBE, "", 0);
    EXPECT_EQ(zmq_connect(s, endpoint.c_str()), 0);
    sockets_.push_back(s);
    return s;
  }

 private:
  void* ctx_;
  std::vector<void*> sockets_;
};

std::vector<std::string> Recv(void* socket) {
  std::vector<std::string> frames;
  while (true) {
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, socket, 0) < 0) {
      zmq_msg_close(&m);
      ADD_FAILURE() << "receive timed out";
      return frames;
    }
    frames.emplace_back(static_cast<const char*>(zmq_msg_data(&m)), zmq_msg_size(&m));
    const bool more = zmq_msg_more(&m) != 0;
    zmq_msg_close(&m);
    if (!more) return frames;
  }
}

void Send(void* socket, const std::vector<std::string>& frames) {
  for (size_t i = 0; i < frames.size(); ++i) {
    zmq_send(socket, frames[i].data(), frames[i].size(), i + 1 < frames.size() ? ZMQ_SNDMORE : 0);
  }
}

// Hashes of the BlockStored events in a payload.
std::vector<uint64_t> StoredHashes(const std::string& payload) {
  msgpack::object_handle h = msgpack::unpack(payload.data(), payload.size());
  std::vector<uint64_t> out;
  const msgpack::object& events = h.get().via.array.ptr[1];
  for (uint32_t i = 0; i < events.via.array.size; ++i) {
    const msgpack::object& e = events.via.array.ptr[i];
    if (e.via.array.ptr[0].as<std::string>() != "BlockStored") continue;
    for (uint64_t x : e.via.array.ptr[1].as<std::vector<uint64_t>>()) out.push_back(x);
  }
  return out;
}

KvBlockStored Block(uint64_t hash) {
  KvBlockStored b;
  b.block_hash = hash;
  b.token_ids = {1, 2};
  b.block_size = 2;
  b.scope = "tenant:t";
  return b;
}

class KvEventPublisherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string leaf = "llmux_kv_events_";
    leaf.append(std::to_string(getpid()));
    leaf.append("_");
    leaf.append(::testing::UnitTest::GetInstance()->current_test_info()->name());
    dir_ = std::filesystem::temp_directory_path() / leaf;
    std::filesystem::create_directories(dir_);
    options_.endpoint = std::string("ipc://").append((dir_ / "pub").string());
    options_.replay_endpoint = std::string("ipc://").append((dir_ / "replay").string());
    options_.topic = "kv@test";
    options_.medium = "CPU";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path dir_;
  KvEventPublisherOptions options_;
};

TEST_F(KvEventPublisherTest, PublishesNumberedBatchesAndReplaysThem) {
  options_.buffer_batches = 2;
  auto sink = CreateKvEventPublisher(options_);
  ASSERT_TRUE(sink.ok()) << sink.status().ToString();
  Sockets z;
  void* sub = z.Open(ZMQ_SUB, options_.endpoint);
  // A SUB socket misses what is sent before its subscription reaches the publisher: send
  // probes until one arrives (bounded), then count from there.
  std::vector<std::string> first;
  for (int i = 0; i < 100 && first.empty(); ++i) {
    (*sink)->OnBlocksStored({Block(1000 + i)});
    const int short_ms = 100;
    zmq_setsockopt(sub, ZMQ_RCVTIMEO, &short_ms, sizeof(short_ms));
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, sub, 0) >= 0) {
      first.emplace_back(static_cast<const char*>(zmq_msg_data(&m)), zmq_msg_size(&m));
      zmq_msg_close(&m);
      std::vector<std::string> rest = Recv(sub);
      first.insert(first.end(), rest.begin(), rest.end());
    } else {
      zmq_msg_close(&m);
    }
  }
  ASSERT_EQ(first.size(), 3u);
  EXPECT_EQ(first[0], "kv@test");
  ASSERT_EQ(first[1].size(), 8u);
  int64_t seq0 = DecodeSeq(first[1]);
  // Probes still in flight: each arrives with the next sequence number.
  while (true) {
    zmq_msg_t m;
    zmq_msg_init(&m);
    const bool got = zmq_msg_recv(&m, sub, 0) >= 0;
    zmq_msg_close(&m);
    if (!got) break;
    std::vector<std::string> rest = Recv(sub);
    ASSERT_EQ(rest.size(), 2u);
    EXPECT_EQ(DecodeSeq(rest[0]), seq0 + 1);
    seq0 = DecodeSeq(rest[0]);
  }
  const int timeout_ms = 5000;
  zmq_setsockopt(sub, ZMQ_RCVTIMEO, &timeout_ms, sizeof(timeout_ms));

  // Three more batches, one at a time so each is its own batch.
  std::vector<std::string> payloads;
  for (uint64_t h = 1; h <= 3; ++h) {
    (*sink)->OnBlocksStored({Block(h)});
    std::vector<std::string> msg = Recv(sub);
    ASSERT_EQ(msg.size(), 3u);
    EXPECT_EQ(DecodeSeq(msg[1]), seq0 + static_cast<int64_t>(h));
    EXPECT_EQ(StoredHashes(msg[2]), std::vector<uint64_t>{h});
    payloads.push_back(msg[2]);
  }

  // Replay from seq0 + 1: the buffer keeps only the last 2 batches, so seq0 + 2 and seq0 + 3.
  void* req = z.Open(ZMQ_DEALER, options_.replay_endpoint);
  Send(req, {"", EncodeSeq(seq0 + 1)});
  std::vector<int64_t> seqs;
  for (int i = 0; i < 3; ++i) {
    std::vector<std::string> msg = Recv(req);
    ASSERT_EQ(msg.size(), 3u);
    EXPECT_EQ(msg[0], "");
    seqs.push_back(DecodeSeq(msg[1]));
    if (seqs.back() == -1) {
      EXPECT_EQ(msg[2], "");
    } else {
      EXPECT_EQ(msg[2], payloads[seqs.back() - seq0 - 1]);
    }
  }
  EXPECT_EQ(seqs, (std::vector<int64_t>{seq0 + 2, seq0 + 3, -1}));

  // A malformed request gets just the end marker.
  Send(req, {"", "short"});
  std::vector<std::string> end = Recv(req);
  ASSERT_EQ(end.size(), 3u);
  EXPECT_EQ(DecodeSeq(end[1]), -1);

  const KvEventCounters c = (*sink)->Counters();
  EXPECT_EQ(c.dropped, 0);
  EXPECT_GE(c.published, 4);
}

TEST_F(KvEventPublisherTest, DropsAndCountsWhenTheQueueIsFull) {
  options_.max_queue_events = 2;
  auto sink = CreateKvEventPublisher(options_);
  ASSERT_TRUE(sink.ok()) << sink.status().ToString();
  // One call enqueues under one lock: 2 fit, 3 are dropped whatever the publisher thread does.
  (*sink)->OnBlocksStored({Block(1), Block(2), Block(3), Block(4), Block(5)});
  EXPECT_EQ((*sink)->Counters().dropped, 3);
  for (int i = 0; i < 500 && (*sink)->Counters().published < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ((*sink)->Counters().published, 2);
  EXPECT_EQ((*sink)->Counters().dropped, 3);
}

TEST_F(KvEventPublisherTest, RejectsBadOptionsAndBusyEndpoints) {
  KvEventPublisherOptions bad = options_;
  bad.endpoint = "";
  EXPECT_EQ(CreateKvEventPublisher(bad).status().code(), StatusCode::kInvalidArgument);
  bad = options_;
  bad.endpoint = "nonsense://x";
  EXPECT_FALSE(CreateKvEventPublisher(bad).ok());

  // A loopback TCP port some other listener holds: binding it fails with a message naming it.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  KvEventPublisherOptions busy = options_;
  busy.endpoint = std::string("tcp://127.0.0.1:").append(std::to_string(ntohs(addr.sin_port)));
  auto taken = CreateKvEventPublisher(busy);
  close(fd);
  ASSERT_FALSE(taken.ok());
  EXPECT_EQ(taken.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(taken.status().message().find(busy.endpoint), std::string::npos)
      << taken.status().message();
}

}  // namespace
}  // namespace llmux
