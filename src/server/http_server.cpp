// Boost.Beast HTTP/1.1 server: one Session per connection on its own strand, paired
// DoRead/OnRead and DoWrite/OnWrite, explicit limits (body, header, read/idle/write timeouts,
// queued stream bytes, connections). While a request is being served, a "watch" read on the
// raw socket notices a client that goes away, so its engine work can be aborted at once.
// Lane-ordered I/O: the completions of a connection's reads and writes, and what is posted to its
// strand, wait in a LaneRunQueue in the lane of the connection's request; each is given an I/O
// thread in io_context order, but the slot runs the highest lane's oldest handler (Asio's
// "prioritised handlers" example, with one slot posted per queued handler so several I/O
// threads share the queue).
#include "llmux/thread_annotations.h"
#include "server/http_server.h"

#include <pthread.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <algorithm>
#include <deque>
#include <unordered_map>
#include <mutex>
#include <thread>

namespace llmux::server {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

const std::string kEmpty;

std::string StatusLine(int status) {
  return "HTTP/1.1 " + std::to_string(status) + " " +
         std::string(http::obsolete_reason(static_cast<http::status>(status))) + "\r\n";
}

// Handlers waiting for an I/O thread, one FIFO per lane (lane 0 first). Add queues a handler
// and posts one slot to the io_context; whichever slot runs next takes the oldest handler of the
// highest non-empty lane and hands it to its connection's strand, so completions that became
// ready together run highest lane first, FIFO within a lane, while the io_context still decides
// when (and on which thread) a slot runs. Thread-safe.
class LaneRunQueue {
 public:
  LaneRunQueue(asio::io_context& ioc, int lanes)
      : ioc_(ioc), lanes_(std::max(1, lanes)), queues_(static_cast<size_t>(lanes_)) {}

  int lanes() const { return lanes_; }
  int Clamp(int lane) const { return std::clamp(lane, 0, lanes() - 1); }

  void Add(int lane, asio::any_io_executor strand, std::function<void()> fn) {
    // One lane has no order to keep but arrival's: straight to the strand, as without lanes.
    if (lanes_ == 1) return asio::post(strand, std::move(fn));
    {
      MutexLock lock(mutex_);
      const size_t l = static_cast<size_t>(Clamp(lane));
      // NOTE: a highest-lane handler with none of its lane waiting skips the slot: no handler
      // may run before it, and posting it under the lock (after every earlier one of its lane
      // was posted) keeps its connection's order. One io_context hop less for premium work.
      if (l == 0 && queues_[0].empty()) return asio::post(strand, std::move(fn));
      queues_[l].push_back(Entry{std::move(strand), std::move(fn)});
    }
    asio::post(ioc_, [this] { RunOne(); });
  }

  std::vector<int64_t> Depths() const {
    MutexLock lock(mutex_);
    std::vector<int64_t> out;
    for (const auto& q : queues_) out.push_back(static_cast<int64_t>(q.size()));
    return out;
  }

  // Drops every queued handler (and what it holds). After the I/O threads are joined.
  void Clear() {
    std::vector<std::deque<Entry>> dropped;
    {
      MutexLock lock(mutex_);
      dropped.resize(queues_.size());
      dropped.swap(queues_);
    }
  }

 private:
  struct Entry {
    asio::any_io_executor strand;
    std::function<void()> fn;
  };

  void RunOne() {
    MutexLock lock(mutex_);
    auto q = std::find_if(queues_.begin(), queues_.end(), [](const auto& d) { return !d.empty(); });
    if (q == queues_.end()) return;  // cleared
    // NOTE: posted to the strand under the lock, so two handlers of one connection reach its
    // strand in the order they were queued even when two I/O threads take them at once (a
    // dispatch outside the lock could swap two SSE chunks). The strand then runs it in
    // io_context order, after the slots taken before it: highest lane first still.
    asio::post(q->front().strand, std::move(q->front().fn));
    q->pop_front();
  }

  asio::io_context& ioc_;
  const int lanes_;
  mutable Mutex mutex_;
  std::vector<std::deque<Entry>> queues_ GUARDED_BY(mutex_);  // [lane]
};

class ServerImpl;

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket&& socket, ServerImpl* server);
  ~Session();
  void Run();
  void RejectBusy();

  // ---- called on the strand by Channel ----
  // `close_after`: the bytes announce `Connection: close`; the connection closes once the
  // response is written.
  void QueueResponse(uint64_t request_seq, std::string bytes, bool complete,
                     bool close_after = false);
  // Closes the connection when it waits for a next request with nothing of it received.
  void CloseIfIdle();
  void AddCloseHandler(uint64_t request_seq, std::function<void()> fn);
  bool closed() const { return closed_.load(); }

 private:
  void DoRead();
  void OnHeader(beast::error_code ec, size_t bytes);
  void OnRead(beast::error_code ec, size_t bytes);
  // `handler` (a completion handler of this session), queued in the connection's lane of the
  // moment it completes rather than run at once. `completed_at`, when given, is set to the
  // moment the operation completed (before its wait in the queue).
  template <class Handler>
  auto InLane(Handler handler, std::chrono::steady_clock::time_point* completed_at = nullptr);
  void StartWatch();
  void OnWatch(beast::error_code ec, size_t bytes);
  void DoWrite();
  void OnWrite(beast::error_code ec, size_t bytes);
  void SendError(int status, const std::string& message, int retry_after_seconds = 0);
  void Close();
  void FireClose();

  beast::tcp_stream stream_;
  asio::any_io_executor strand_;
  ServerImpl* server_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  bool first_request_ = true;
  int lane_;  // the lane of the current (or last) request; the last lane before the first
  HttpRequest next_;  // the request being read: its headers once OnHeader has run
  std::chrono::steady_clock::time_point read_at_;  // when its last byte was read
  bool keep_alive_ = true;
  std::atomic<bool> closed_{false};  // written on the strand, read by Channel::closed
  bool watching_ = false;
  bool response_complete_ = false;
  bool in_request_ = false;
  uint64_t request_seq_ = 0;
  // Response bytes not yet handed to the socket, and those of the write in progress. NOTE: all
  // queued chunks go out in one gathered write, so a stream whose client (or strand) fell
  // behind catches up in one syscall rather than one per SSE chunk.
  std::deque<std::string> write_queue_;
  std::vector<std::string> in_flight_;
  int64_t queued_bytes_ = 0;  // write_queue_ and in_flight_
  bool writing_ = false;
  // The current request's milestones (docs/metrics.md); the write marks its first byte.
  std::shared_ptr<RequestTimeline> timeline_;
  std::array<char, 4096> watch_buf_{};
  std::vector<std::function<void()>> close_handlers_;
};

class Channel final : public ResponseChannel {
 public:
  // `run_queue` must outlive the channel (as the server's io_context must).
  Channel(std::weak_ptr<Session> session, asio::any_io_executor strand, LaneRunQueue* run_queue,
          int lane, uint64_t seq, bool keep_alive,
          std::shared_ptr<const std::atomic<bool>> draining)
      : session_(std::move(session)), strand_(std::move(strand)), run_queue_(run_queue),
        lane_(lane), seq_(seq), keep_alive_(keep_alive), draining_(std::move(draining)) {}

  void Respond(int status, std::string content_type, std::string body, HeaderList headers) override {
    const bool keep = KeepAlive();
    std::string out = StatusLine(status);
    out += "Content-Type: " + content_type + "\r\n";
    out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    out += keep ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
    for (auto& [k, v] : headers) out += k + ": " + v + "\r\n";
    out += "\r\n";
    out += body;
    Post(std::move(out), /*complete=*/true, !keep);
  }
  void BeginStream(HeaderList headers) override {
    const bool keep = KeepAlive();
    std::string out = StatusLine(200);
    out += "Content-Type: text/event-stream\r\nCache-Control: no-cache\r\n";
    out += "Transfer-Encoding: chunked\r\n";
    out += keep ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
    for (auto& [k, v] : headers) out += k + ": " + v + "\r\n";
    out += "\r\n";
    Post(std::move(out), false, !keep);
  }
  void Write(std::string data) override {
    if (data.empty()) return;
    char len[20];
    std::snprintf(len, sizeof(len), "%zx\r\n", data.size());
    std::string out = len;
    out += data;
    out += "\r\n";
    Post(std::move(out), false);
  }
  void End() override { Post("0\r\n\r\n", true); }
  // NOTE: every crossing to the strand goes through the request's lane, so they keep their order
  // (FIFO within a lane) and a premium response's chunks are not queued behind a flood's.
  void OnClose(std::function<void()> fn) override {
    run_queue_->Add(lane_, strand_, [s = session_, seq = seq_, fn = std::move(fn)]() mutable {
      if (auto p = s.lock()) {
        p->AddCloseHandler(seq, std::move(fn));
      } else {
        fn();
      }
    });
  }
  bool closed() const override {
    auto p = session_.lock();
    return !p || p->closed();
  }
  void Post(std::function<void()> fn) override {
    run_queue_->Add(lane_, strand_, [s = session_, fn = std::move(fn)] {
      if (auto p = s.lock(); p && !p->closed()) fn();
    });
  }

 private:
  // NOTE: decided when the headers are written, not when the request arrived, so a response
  // still in the engine when the drain begins tells its client to go elsewhere next time.
  bool KeepAlive() const { return keep_alive_ && !draining_->load(); }
  void Post(std::string bytes, bool complete, bool close_after = false) {
    run_queue_->Add(lane_, strand_, [s = session_, seq = seq_, b = std::move(bytes), complete,
                                     close_after]() mutable {
      if (auto p = s.lock()) p->QueueResponse(seq, std::move(b), complete, close_after);
    });
  }
  std::weak_ptr<Session> session_;
  asio::any_io_executor strand_;
  LaneRunQueue* run_queue_;
  int lane_;
  uint64_t seq_;
  bool keep_alive_;
  std::shared_ptr<const std::atomic<bool>> draining_;
};

class ServerImpl final : public HttpServer {
 public:
  ServerImpl(const HttpServerOptions& options, Handler handler)
      : options_(options), handler_(std::move(handler)), ioc_(std::max(1, options.io_threads)),
        acceptor_(asio::make_strand(ioc_)), run_queue_(ioc_, options.lanes) {}
  ~ServerImpl() override { Shutdown(); }

  Status Bind();
  void DoAccept();
  int port() const override { return port_; }
  int open_connections() const override { return connections_.load(); }
  std::vector<int64_t> IoQueueDepths() const override { return run_queue_.Depths(); }
  LaneRunQueue& run_queue() { return run_queue_; }
  void StopAccepting() override {
    asio::post(acceptor_.get_executor(), [this] {
      beast::error_code ec;
      acceptor_.close(ec);
    });
  }
  void BeginDrain() override { draining_->store(true); }
  void CloseIdleConnections() override {
    std::vector<std::shared_ptr<Session>> live;
    {
      MutexLock lock(sessions_mutex_);
      for (auto& [raw, weak] : sessions_) {
        if (auto s = weak.lock()) live.push_back(std::move(s));
      }
    }
    for (auto& s : live) s->CloseIfIdle();
  }
  void Register(Session* raw, std::weak_ptr<Session> session) {
    MutexLock lock(sessions_mutex_);
    sessions_[raw] = std::move(session);
  }
  void Unregister(Session* raw) {
    MutexLock lock(sessions_mutex_);
    sessions_.erase(raw);
  }
  bool draining() const { return draining_->load(); }
  const std::shared_ptr<std::atomic<bool>>& draining_flag() const { return draining_; }
  void Shutdown() override {
    MutexLock lock(shutdown_mutex_);
    if (threads_.empty()) return;
    StopAccepting();
    ioc_.stop();
    for (auto& t : threads_) t.join();
    threads_.clear();
    run_queue_.Clear();  // the sessions its handlers hold go while ioc_ still exists
  }
  void StartThreads() {
    for (int i = 0; i < std::max(1, options_.io_threads); ++i) {
      threads_.emplace_back([this] {
        pthread_setname_np(pthread_self(), "llmux-io");  // names it in top, perf and gdb
        ioc_.run();
      });
    }
  }

  const HttpServerOptions& options() const { return options_; }
  const Handler& handler() const { return handler_; }
  std::atomic<int> connections_{0};

 private:
  HttpServerOptions options_;
  Handler handler_;
  // NOTE: declared before ioc_: sessions still owned by its handlers unregister themselves
  // while ioc_ is destroyed.
  std::shared_ptr<std::atomic<bool>> draining_ = std::make_shared<std::atomic<bool>>(false);
  Mutex sessions_mutex_;
  std::unordered_map<Session*, std::weak_ptr<Session>> sessions_ GUARDED_BY(sessions_mutex_);
  asio::io_context ioc_;
  tcp::acceptor acceptor_;
  // NOTE: after ioc_: handlers still queued hold sessions, destroyed before the io_context.
  LaneRunQueue run_queue_;
  int port_ = 0;
  std::vector<std::thread> threads_;
  Mutex shutdown_mutex_;
};

Session::Session(tcp::socket&& socket, ServerImpl* server)
    : stream_(std::move(socket)),
      strand_(stream_.get_executor()),  // the accept handed us a strand executor
      server_(server),
      lane_(server->run_queue().lanes() - 1) {
  server_->connections_.fetch_add(1);
  // NOTE: without TCP_NODELAY, the second small write of a response (an SSE chunk after the
  // headers) waits for the client's delayed ACK: ~40 ms added to every short request.
  beast::error_code ec;
  beast::get_lowest_layer(stream_).socket().set_option(tcp::no_delay(true), ec);
}

Session::~Session() {
  if (timeline_) timeline_->Release();
  server_->Unregister(this);
  server_->connections_.fetch_sub(1);
}

void Session::CloseIfIdle() {
  asio::dispatch(strand_, [self = shared_from_this()] {
    if (self->closed_ || self->in_request_) return;
    if (self->buffer_.size() > 0 || (self->parser_ && self->parser_->got_some())) return;
    self->Close();
  });
}

void Session::Run() {
  server_->Register(this, weak_from_this());
  asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->DoRead(); });
}

void Session::RejectBusy() {
  keep_alive_ = false;
  asio::dispatch(stream_.get_executor(), [self = shared_from_this()] {
    self->in_request_ = true;
    self->SendError(503, "too many open connections", /*retry_after_seconds=*/1);
  });
}

template <class Handler>
auto Session::InLane(Handler handler, std::chrono::steady_clock::time_point* completed_at) {
  // Runs on the strand (the stream's executor) when the operation completes.
  return [self = shared_from_this(), handler = std::move(handler), completed_at](
             beast::error_code ec, size_t bytes) {
    if (completed_at != nullptr) *completed_at = std::chrono::steady_clock::now();
    self->server_->run_queue().Add(self->lane_, self->strand_,
                                   [handler, ec, bytes]() mutable { handler(ec, bytes); });
  };
}

void Session::DoRead() {
  if (closed_) return;
  parser_.emplace();
  parser_->body_limit(static_cast<uint64_t>(server_->options().max_body_bytes));
  parser_->header_limit(static_cast<uint32_t>(server_->options().max_header_bytes));
  stream_.expires_after(first_request_ ? server_->options().read_timeout
                                       : server_->options().idle_timeout);
  // The headers first (in the connection's lane so far), then the body in the request's lane.
  http::async_read_header(
      stream_, buffer_, *parser_,
      InLane(beast::bind_front_handler(&Session::OnHeader, shared_from_this())));
}

void Session::OnHeader(beast::error_code ec, size_t bytes) {
  if (closed_) return;
  if (ec) return OnRead(ec, bytes);
  const auto& msg = parser_->get();
  next_ = HttpRequest{};
  next_.method = std::string(msg.method_string());
  next_.target = std::string(msg.target());
  const size_t q = next_.target.find('?');
  next_.path = next_.target.substr(0, q);
  if (q != std::string::npos) next_.query = next_.target.substr(q + 1);
  for (const auto& field : msg) {
    std::string name(field.name_string());
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    auto [it, inserted] = next_.headers.emplace(name, std::string(field.value()));
    if (!inserted) {
      // NOTE: the forwarding lists may arrive as several fields (one per proxy); they are one
      // list in order (RFC 9110 5.3). Any other repeated field keeps its last value.
      if (name == "x-forwarded-for" || name == "forwarded") {
        it->second += ", " + std::string(field.value());
      } else {
        it->second = std::string(field.value());
      }
    }
  }
  beast::error_code rec;
  auto ep = beast::get_lowest_layer(stream_).socket().remote_endpoint(rec);
  if (!rec) {
    // A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d; log them as a.b.c.d.
    auto addr = ep.address();
    if (addr.is_v6() && addr.to_v6().is_v4_mapped()) {
      addr = asio::ip::make_address_v4(asio::ip::v4_mapped, addr.to_v6());
    }
    next_.peer_address = addr.to_string();
    next_.remote_address = next_.peer_address;
  }
  const auto& lane_of = server_->options().lane_of;
  lane_ = server_->run_queue().Clamp(lane_of ? lane_of(next_) : 0);
  http::async_read(stream_, buffer_, *parser_,
                   InLane(beast::bind_front_handler(&Session::OnRead, shared_from_this()),
                          &read_at_));
}

void Session::OnRead(beast::error_code ec, size_t) {
  // NOTE: the request's clock starts when its last byte was read, so its wait for an I/O
  // thread in the lane queue counts in its phases (and full-path TTFT).
  const auto read_at = ec ? std::chrono::steady_clock::now() : read_at_;
  if (closed_) return;
  if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
      ec == asio::error::operation_aborted || ec == asio::error::connection_reset ||
      ec == asio::error::eof) {
    return Close();
  }
  in_request_ = true;
  response_complete_ = false;
  if (ec == http::error::body_limit) {
    keep_alive_ = false;
    return SendError(413, "request body exceeds " +
                              std::to_string(server_->options().max_body_bytes) + " bytes");
  }
  if (ec == http::error::header_limit) {
    keep_alive_ = false;
    return SendError(431, "request headers exceed " +
                              std::to_string(server_->options().max_header_bytes) + " bytes");
  }
  if (ec) {
    keep_alive_ = false;
    return SendError(400, "malformed HTTP request: " + ec.message());
  }
  first_request_ = false;
  stream_.expires_never();
  auto msg = parser_->release();
  keep_alive_ = msg.keep_alive() && !server_->draining();
  HttpRequest req = std::move(next_);
  next_ = HttpRequest{};
  req.body = std::move(msg.body());
  if (timeline_) timeline_->Release();
  timeline_ = std::make_shared<RequestTimeline>(read_at);
  req.timeline = timeline_;
  ++request_seq_;
  auto channel = std::make_shared<Channel>(weak_from_this(), strand_, &server_->run_queue(), lane_,
                                           request_seq_, keep_alive_, server_->draining_flag());
  StartWatch();
  server_->handler()(std::move(req), channel);
}

void Session::StartWatch() {
  if (watching_ || closed_) return;
  watching_ = true;
  beast::get_lowest_layer(stream_).socket().async_read_some(
      asio::buffer(watch_buf_),
      beast::bind_front_handler(&Session::OnWatch, shared_from_this()));
}

void Session::OnWatch(beast::error_code ec, size_t bytes) {
  watching_ = false;
  if (closed_) return;
  // Once the response is fully written, the next request is read here, or by OnWrite when it
  // finishes after this (it sees watching_ == false). Exactly one of the two calls DoRead.
  const bool response_sent = response_complete_ && !writing_ && write_queue_.empty();
  if (ec == asio::error::operation_aborted) {
    // Cancelled because the response completed: read the next request.
    if (response_sent && keep_alive_) DoRead();
    return;
  }
  if (ec) return Close();  // the client went away mid-request
  // Pipelined bytes of a next request: keep them for the parser.
  auto dst = buffer_.prepare(bytes);
  std::memcpy(dst.data(), watch_buf_.data(), bytes);
  buffer_.commit(bytes);
  if (buffer_.size() > static_cast<size_t>(server_->options().max_body_bytes +
                                           server_->options().max_header_bytes)) {
    return Close();
  }
  if (!response_complete_) return StartWatch();
  // NOTE: the watch may complete with the next request's bytes just as the response finishes
  // (its completion was already queued when OnWrite cancelled it): read that request now.
  if (response_sent && keep_alive_) DoRead();
}

void Session::QueueResponse(uint64_t seq, std::string bytes, bool complete, bool close_after) {
  if (closed_ || seq != request_seq_ || response_complete_) return;
  if (close_after) keep_alive_ = false;
  queued_bytes_ += static_cast<int64_t>(bytes.size());
  write_queue_.push_back(std::move(bytes));
  if (complete) response_complete_ = true;
  if (!complete && queued_bytes_ > server_->options().max_stream_queue_bytes) {
    return Close();  // the client stopped reading its stream
  }
  if (!writing_) DoWrite();
}

void Session::AddCloseHandler(uint64_t seq, std::function<void()> fn) {
  if (closed_ && seq == request_seq_) {
    fn();
    return;
  }
  if (seq != request_seq_) return;
  close_handlers_.push_back(std::move(fn));
}

void Session::DoWrite() {
  if (write_queue_.empty() || closed_) return;
  writing_ = true;
  in_flight_.clear();
  while (!write_queue_.empty()) {
    in_flight_.push_back(std::move(write_queue_.front()));
    write_queue_.pop_front();
  }
  std::vector<asio::const_buffer> buffers;  // taken after the moves (short strings relocate)
  buffers.reserve(in_flight_.size());
  for (const std::string& b : in_flight_) buffers.push_back(asio::buffer(b));
  stream_.expires_after(server_->options().write_timeout);
  asio::async_write(stream_, buffers,
                    InLane(beast::bind_front_handler(&Session::OnWrite, shared_from_this())));
  // NOTE: on Linux, Asio attempts the write at once (a speculative send before waiting for
  // readiness), so the bytes are in the socket now unless its buffer is full.
  if (timeline_) timeline_->OnBytesWritten(std::chrono::steady_clock::now());
}

void Session::OnWrite(beast::error_code ec, size_t) {
  writing_ = false;
  if (closed_) return;
  if (ec) return Close();
  for (const std::string& b : in_flight_) queued_bytes_ -= static_cast<int64_t>(b.size());
  in_flight_.clear();
  if (!write_queue_.empty()) return DoWrite();
  stream_.expires_never();
  if (!response_complete_) return;
  // The response is out: the request is done.
  in_request_ = false;
  close_handlers_.clear();
  if (timeline_) {
    timeline_->Release();
    timeline_.reset();
  }
  if (!keep_alive_) {
    beast::error_code sec;
    beast::get_lowest_layer(stream_).socket().shutdown(tcp::socket::shutdown_send, sec);
    return Close();
  }
  if (watching_) {
    beast::error_code cec;
    beast::get_lowest_layer(stream_).socket().cancel(cec);  // OnWatch then calls DoRead
  } else {
    DoRead();
  }
}

void Session::SendError(int status, const std::string& message, int retry_after_seconds) {
  std::string body = R"({"error":{"message":")" + message +
                     R"(","type":"invalid_request_error","param":null,"code":null}})";
  std::string out = StatusLine(status) + "Content-Type: application/json\r\nContent-Length: " +
                    std::to_string(body.size()) + "\r\nConnection: close\r\n";
  if (retry_after_seconds > 0) out += "Retry-After: " + std::to_string(retry_after_seconds) + "\r\n";
  out += "\r\n" + body;
  ++request_seq_;
  keep_alive_ = false;
  QueueResponse(request_seq_, std::move(out), true);
}

void Session::FireClose() {
  auto handlers = std::move(close_handlers_);
  close_handlers_.clear();
  for (auto& fn : handlers) fn();
}

void Session::Close() {
  if (closed_) return;
  closed_ = true;
  beast::error_code ec;
  beast::get_lowest_layer(stream_).socket().shutdown(tcp::socket::shutdown_both, ec);
  beast::get_lowest_layer(stream_).socket().close(ec);
  write_queue_.clear();  // in_flight_ stays until its write completes (it is being written)
  if (in_request_ && !response_complete_) FireClose();
  close_handlers_.clear();
  if (timeline_) {
    timeline_->Release();
    timeline_.reset();
  }
}

Status ServerImpl::Bind() {
  std::string host = options_.listen;
  std::string port_str;
  if (!host.empty() && host.front() == '[') {
    const size_t end = host.find(']');
    if (end == std::string::npos || end + 1 >= host.size() || host[end + 1] != ':') {
      return InvalidArgument("listen address '" + options_.listen + "' is not [IPV6]:PORT");
    }
    port_str = host.substr(end + 2);
    host = host.substr(1, end - 1);
  } else {
    const size_t colon = host.rfind(':');
    if (colon == std::string::npos) {
      return InvalidArgument("listen address '" + options_.listen + "' is not HOST:PORT");
    }
    port_str = host.substr(colon + 1);
    host = host.substr(0, colon);
  }
  beast::error_code ec;
  int port_num = 0;
  try {
    port_num = std::stoi(port_str);
  } catch (const std::exception&) {
    return InvalidArgument("listen address '" + options_.listen + "' has no valid port");
  }
  tcp::resolver resolver(ioc_);
  auto results = resolver.resolve(host, std::to_string(port_num), ec);
  if (ec || results.empty()) {
    return InvalidArgument("cannot resolve listen host '" + host + "': " + ec.message());
  }
  tcp::endpoint ep = results.begin()->endpoint();
  acceptor_.open(ep.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(ep, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Unavailable("cannot listen on " + options_.listen + ": " + ec.message());
  port_ = acceptor_.local_endpoint().port();
  return Status::Ok();
}

void ServerImpl::DoAccept() {
  acceptor_.async_accept(asio::make_strand(ioc_), [this](beast::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (!ec) {
      auto session = std::make_shared<Session>(std::move(socket), this);
      if (connections_.load() > options_.max_connections) {
        session->RejectBusy();
      } else {
        session->Run();
      }
    }
    DoAccept();
  });
}

}  // namespace

const std::string& HttpRequest::Header(const std::string& name) const {
  auto it = headers.find(name);
  return it == headers.end() ? kEmpty : it->second;
}

StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpServerOptions& options,
                                                        Handler handler) {
  auto server = std::make_unique<ServerImpl>(options, std::move(handler));
  LLMUX_RETURN_IF_ERROR(server->Bind());
  server->DoAccept();
  server->StartThreads();
  return std::unique_ptr<HttpServer>(std::move(server));
}

}  // namespace llmux::server
