// llmux-bench: a minimal asynchronous HTTP/1.1 client for OpenAI-compatible servers
// (Boost.Beast), with SSE streaming and keep-alive connection reuse. Single-threaded: every
// method and callback runs on the io_context's one thread.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace llmux::bench {

using Clock = std::chrono::steady_clock;

// What one HTTP exchange produced.
struct HttpResult {
  int status = 0;          // HTTP status; 0 = connect/transport failure
  std::string error;       // transport error, or the start of a non-200 body
  std::string body;        // the full body (non-streaming calls only)
};

// Events of one SSE stream, delivered as they arrive.
struct StreamSink {
  // A `data:` event's payload (without the "data: " prefix), and when its bytes arrived.
  std::function<void(const std::string& data, Clock::time_point arrived)> on_event;
  // Exactly once, at the end (success or failure).
  std::function<void(const HttpResult&)> on_done;
};

class HttpClient {
 public:
  // `host`/`port`: the server (loopback in our runs). Idle keep-alive connections are reused.
  HttpClient(boost::asio::io_context& io, std::string host, uint16_t port);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // POST `target` with a JSON body; SSE events (or the whole body of a non-stream answer, as
  // one event) go to `sink`.
  void PostStream(const std::string& target, const std::string& bearer, std::string body,
                  StreamSink sink);
  // GET `target`; `done` gets the status and body.
  void Get(const std::string& target, const std::string& bearer,
           std::function<void(const HttpResult&)> done);

  // Closes idle connections and makes in-flight exchanges fail ("cancelled").
  void CancelAll();
  // CancelAll, and every later exchange fails at once.
  void Shutdown();

  class Exchange;

 private:
  friend class Exchange;
  std::unique_ptr<boost::asio::ip::tcp::socket> TakeIdle();
  void GiveBack(std::unique_ptr<boost::asio::ip::tcp::socket> s);
  void Start(std::shared_ptr<Exchange> ex);

  boost::asio::io_context& io_;
  boost::asio::ip::tcp::endpoint endpoint_;
  std::string host_header_;
  std::vector<std::unique_ptr<boost::asio::ip::tcp::socket>> idle_;
  std::vector<std::weak_ptr<Exchange>> live_;
  bool shut_down_ = false;
};

}  // namespace llmux::bench
