// The HTTP server's lane-ordered I/O on loopback: with the only I/O thread held by a handler,
// the requests that arrive meanwhile are served highest lane first, FIFO within a lane.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/gate.h"
#include "server/http_server.h"

namespace llmux::server {
namespace {

using testing::Gate;

// A blocking HTTP/1.1 keep-alive client on loopback.
class Client {
 public:
  explicit Client(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  ~Client() { ::close(fd_); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool connected() const { return connected_; }
  // Sends GET /NAME with `key` as its bearer key.
  bool Send(const std::string& name, const std::string& key) {
    const std::string req = "GET /" + name + " HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer " +
                            key + "\r\n\r\n";
    return ::send(fd_, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size());
  }
  // Reads one chunked response to its last chunk and decodes its body into `body`.
  bool ReadChunked(std::string* body) {
    std::string got;
    char buf[4096];
    while (got.size() < 5 || got.compare(got.size() - 5, 5, "0\r\n\r\n") != 0) {
      const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) return false;
      got.append(buf, static_cast<size_t>(n));
    }
    size_t pos = got.find("\r\n\r\n");
    if (pos == std::string::npos) return false;
    pos += 4;
    for (;;) {
      const size_t eol = got.find("\r\n", pos);
      if (eol == std::string::npos) return false;
      const size_t len = std::stoul(got.substr(pos, eol - pos), nullptr, 16);
      if (len == 0) return true;
      body->append(got, eol + 2, len);
      pos = eol + 2 + len + 2;
    }
  }
  // Reads one response whose body is `body` (the handler answers the request's name).
  bool ReadResponse(const std::string& body) {
    std::string got;
    char buf[1024];
    while (got.find("\r\n\r\n" + body) == std::string::npos) {
      const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) return false;
      got.append(buf, static_cast<size_t>(n));
    }
    return true;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

// Requests served, in the order the handler saw them.
class Served {
 public:
  void Add(const std::string& name) {
    std::lock_guard<std::mutex> lock(mu_);
    names_.push_back(name);
    cv_.notify_all();
  }
  std::vector<std::string> WaitFor(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(20), [&] { return names_.size() >= n; });
    return names_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> names_;
};

int LaneOfKey(const HttpRequest& r) {
  const std::string& auth = r.Header("authorization");
  if (auth == "Bearer premium") return 0;
  if (auth == "Bearer standard") return 1;
  return 2;  // batch
}

// A loopback server of `lanes` lanes whose requests take their lane from their key.
HttpServerOptions LaneOptions(int lanes, int io_threads) {
  HttpServerOptions options;
  options.listen = "127.0.0.1:0";
  options.io_threads = io_threads;
  options.lanes = lanes;
  options.lane_of = LaneOfKey;
  return options;
}

// `lanes` 3 and lane_of set: the test; `lanes` 1: the same server without lane order (FIFO).
std::vector<std::string> ServeBehindAGate(int lanes) {
  Gate gate;
  Served served;
  HttpServerOptions options = LaneOptions(lanes, /*io_threads=*/1);
  if (lanes <= 1) options.lane_of = nullptr;  // the control: no lane order at all
  auto server = HttpServer::Start(options, [&](HttpRequest&& r, std::shared_ptr<ResponseChannel> c) {
    const std::string name = r.path.substr(1);
    if (name == "gate") gate.Block();  // holds the only I/O thread
    if (name.find("-2") != std::string::npos) served.Add(name);
    c->Respond(200, "text/plain", name);
  });
  EXPECT_TRUE(server.ok()) << server.status().ToString();
  if (!server.ok()) return {};
  const int port = (*server)->port();

  // Keep-alive connections, each known by its first request's key (its lane from then on).
  struct Conn {
    std::string name;
    std::string key;
    std::unique_ptr<Client> client;
  };
  std::vector<Conn> conns;
  for (int i = 0; i < 6; ++i) conns.push_back({"batch" + std::to_string(i), "batch", nullptr});
  conns.push_back({"standard0", "standard", nullptr});
  conns.push_back({"premium0", "premium", nullptr});
  for (Conn& c : conns) {
    c.client = std::make_unique<Client>(port);
    EXPECT_TRUE(c.client->connected());
    EXPECT_TRUE(c.client->Send(c.name + "-1", c.key));
    EXPECT_TRUE(c.client->ReadResponse(c.name + "-1"));
  }

  // Let every connection go back to reading its next request (after its response's write
  // completes) before the thread is held.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  Client holder(port);
  EXPECT_TRUE(holder.Send("gate", "batch"));
  gate.WaitEntered();
  // Arrival order: the batch connections, then standard, then premium. While the I/O thread is
  // held, each request waits in its socket; they become ready together.
  for (Conn& c : conns) EXPECT_TRUE(c.client->Send(c.name + "-2", c.key));
  // NOTE: loopback delivers a send() into the peer's socket before it returns; the pause only
  // makes sure, it does not decide the order.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  gate.Release();
  EXPECT_TRUE(holder.ReadResponse("gate"));
  std::vector<std::string> order = served.WaitFor(conns.size());
  for (Conn& c : conns) EXPECT_TRUE(c.client->ReadResponse(c.name + "-2"));
  // The queue drains to zero (the gauge leaks nothing). NOTE: polled, not read once: a write's
  // completion handler waits in the lane queue after its bytes have reached the client, so a
  // client can hold every response while those handlers are still queued (seen under ASan).
  const std::vector<int64_t> zeros(static_cast<size_t>(lanes), 0);
  std::vector<int64_t> depths = (*server)->IoQueueDepths();
  for (auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
       depths != zeros && std::chrono::steady_clock::now() < deadline;
       depths = (*server)->IoQueueDepths()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(depths, zeros);
  (*server)->Shutdown();
  return order;
}

TEST(HttpServerLaneTest, RequestsThatArriveTogetherAreServedHighestLaneFirst) {
  EXPECT_EQ(ServeBehindAGate(3),
            (std::vector<std::string>{"premium0-2", "standard0-2", "batch0-2", "batch1-2",
                                      "batch2-2", "batch3-2", "batch4-2", "batch5-2"}));
}

// The control: one lane serves the same arrivals in arrival order, premium last.
TEST(HttpServerLaneTest, WithOneLaneTheyAreServedInArrivalOrder) {
  EXPECT_EQ(ServeBehindAGate(1),
            (std::vector<std::string>{"batch0-2", "batch1-2", "batch2-2", "batch3-2", "batch4-2",
                                      "batch5-2", "standard0-2", "premium0-2"}));
}

// Per connection, what is posted keeps its order through the lane queue even with several I/O
// threads taking slots at once: 3000 chunks written from another thread arrive in order.
TEST(HttpServerLaneTest, AStreamsChunksKeepTheirOrderWithSeveralIoThreads) {
  HttpServerOptions options = LaneOptions(/*lanes=*/3, /*io_threads=*/4);
  options.max_stream_queue_bytes = 64 << 20;
  std::vector<std::thread> writers;
  std::mutex writers_mu;
  auto server = HttpServer::Start(options, [&](HttpRequest&&, std::shared_ptr<ResponseChannel> c) {
    c->BeginStream();
    std::lock_guard<std::mutex> lock(writers_mu);
    writers.emplace_back([c] {
      for (int i = 0; i < 3000; ++i) c->Write(std::to_string(i) + "\n");
      c->End();
    });
  });
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  Client client((*server)->port());
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.Send("stream", "premium"));
  std::string want;
  for (int i = 0; i < 3000; ++i) want += std::to_string(i) + "\n";
  // The chunked body, decoded: each chunk is one line.
  std::string body;
  ASSERT_TRUE(client.ReadChunked(&body));
  EXPECT_EQ(body, want);
  {
    std::lock_guard<std::mutex> lock(writers_mu);
    for (std::thread& t : writers) t.join();
  }
  (*server)->Shutdown();
}

}  // namespace
}  // namespace llmux::server
