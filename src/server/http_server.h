// The HTTP/1.1 listener and connections (Boost.Beast, async, one strand per connection).
// Boost types stay inside http_server.cpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "llmux/status.h"
#include "server/http_types.h"

namespace llmux::server {

struct HttpServerOptions {
  std::string listen = "127.0.0.1:8080";  // HOST:PORT or [IPV6]:PORT; port 0 = ephemeral
  int io_threads = 2;
  int64_t max_body_bytes = 4 << 20;  // larger bodies -> 413
  int64_t max_header_bytes = 16 << 10;  // larger headers -> 431
  std::chrono::milliseconds read_timeout{30000};  // a request must arrive whole within this
  std::chrono::milliseconds idle_timeout{60000};  // keep-alive connection with no request
  // A streaming response whose unsent output exceeds this many bytes (the client stopped
  // reading) is closed; OnClose then fires.
  int64_t max_stream_queue_bytes = 1 << 20;
  // A write that makes no progress for this long closes the connection.
  std::chrono::milliseconds write_timeout{30000};
  int max_connections = 1024;  // further connections are answered 503 and closed
  // Lane-ordered I/O (docs/isolation.md, "The front door"): the completions of every
  // connection's reads and writes, and the work posted to its strand, queue in the lane of the
  // connection's current request; an I/O thread always runs the oldest handler of the highest
  // lane (0) that has one. `lane_of` maps a request's headers (the body is not read yet) to its
  // lane, on an I/O thread; unset = every request in lane 0. A connection's lane before its first
  // request's headers are read is the last one; a keep-alive connection keeps its last
  // request's lane until the next request's headers say otherwise.
  int lanes = 1;
  std::function<int(const HttpRequest& headers_only)> lane_of;
};

class HttpServer {
 public:
  virtual ~HttpServer() = default;
  // Binds and starts `io_threads` threads. Unavailable when the address cannot be bound.
  static StatusOr<std::unique_ptr<HttpServer>> Start(const HttpServerOptions& options,
                                                     Handler handler);
  // The bound port (useful with port 0).
  virtual int port() const = 0;
  virtual int open_connections() const = 0;
  // Handlers waiting for an I/O thread, per lane ([lanes]). Any thread.
  virtual std::vector<int64_t> IoQueueDepths() const = 0;
  // Stops accepting new connections (in-flight requests continue).
  virtual void StopAccepting() = 0;
  // The first step of a drain. From now on every response that has not sent its headers yet
  // says `Connection: close` and its connection closes once it is written; a request that still
  // arrives (new connection or an idle keep-alive one) is served the same way. Any thread.
  virtual void BeginDrain() = 0;
  // Closes every connection that is waiting for its next request with no byte of it received
  // (a keep-alive connection between requests). Connections in the middle of a request or a
  // response are left alone. Any thread; returns at once (the closes run on the strands).
  virtual void CloseIdleConnections() = 0;
  // Closes everything and joins the I/O threads.
  virtual void Shutdown() = 0;
};

}  // namespace llmux::server
