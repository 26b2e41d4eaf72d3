// Transport-neutral HTTP request/response types shared by the server's handlers. No Boost here,
// so handlers and their tests compile without Beast.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "server/request_timeline.h"

namespace llmux::server {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // path + query, as sent
  std::string path;    // target without the query
  std::string query;   // after '?', "" when none
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  std::string peer_address;    // the TCP peer (set by the HTTP server)
  // The client: the peer, or behind a trusted proxy the forwarded client (set by ApiService
  // from peer_address and server.trusted_proxies before anything else reads it).
  std::string remote_address;
  // The request's milestones (set by the HTTP server when it read the request; null for
  // requests built elsewhere, e.g. in tests). Shared with the connection, which marks the first
  // byte written.
  std::shared_ptr<RequestTimeline> timeline;

  // Header value or "" when absent (name lower-case).
  const std::string& Header(const std::string& name) const;
};

using HeaderList = std::vector<std::pair<std::string, std::string>>;

// The response side of one request. Thread-safe: every method may be called from any thread
// (the engine's sink included); work is posted to the connection's strand. Exactly one of
// Respond() or BeginStream()...End() is used per request.
class ResponseChannel {
 public:
  virtual ~ResponseChannel() = default;
  // A complete response.
  virtual void Respond(int status, std::string content_type, std::string body,
                       HeaderList headers = {}) = 0;
  // Starts a `text/event-stream` response (chunked); then Write() each SSE frame and End().
  virtual void BeginStream(HeaderList headers = {}) = 0;
  virtual void Write(std::string data) = 0;
  virtual void End() = 0;
  // `fn` runs once (on the strand) when the client disconnects or the connection fails before
  // the response completed, including when its unsent output exceeded the stream queue limit.
  // Registered before BeginStream/Respond; a handler uses it to abort engine work.
  virtual void OnClose(std::function<void()> fn) = 0;
  // True once the connection is gone; later writes are dropped.
  virtual bool closed() const = 0;
  // Runs `fn` on the connection's strand (where handler state may be touched without locks).
  // Dropped when the connection is gone.
  virtual void Post(std::function<void()> fn) = 0;
};

using Handler = std::function<void(HttpRequest&&, std::shared_ptr<ResponseChannel>)>;

}  // namespace llmux::server
