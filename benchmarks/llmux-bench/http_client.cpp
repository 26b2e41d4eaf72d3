#include "http_client.h"

#include <boost/asio/connect.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>

namespace llmux::bench {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

// One request/response on one connection. Owned by shared_ptr copies held by its pending
// async operations; ends when the last callback returns.
class HttpClient::Exchange : public std::enable_shared_from_this<HttpClient::Exchange> {
 public:
  Exchange(HttpClient& client, http::request<http::string_body> req, StreamSink sink)
      : client_(client), req_(std::move(req)), sink_(std::move(sink)) {}

  void Begin() {
    if (cancelled_) return Finish(0, "cancelled");
    socket_ = client_.TakeIdle();
    reused_ = socket_ != nullptr;
    if (!socket_) return Connect();
    Write();
  }

  void Cancel() {
    cancelled_ = true;
    if (socket_) {
      beast::error_code ignored;
      socket_->close(ignored);
    }
  }

 private:
  void Connect() {
    socket_ = std::make_unique<tcp::socket>(client_.io_);
    socket_->async_connect(client_.endpoint_, [self = shared_from_this()](beast::error_code ec) {
      if (ec) return self->Finish(0, "connect: " + ec.message());
      self->socket_->set_option(tcp::no_delay(true));
      self->Write();
    });
  }

  void Write() {
    http::async_write(*socket_, req_, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec) return self->RetryOrFail("write: " + ec.message());
      self->parser_.emplace();
      // NOTE: not boost::none: Boost 1.74 compares a Content-Length against an empty
      // optional as "exceeded".
      self->parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
      http::async_read_header(*self->socket_, self->buffer_, *self->parser_,
                              [self](beast::error_code ec2, size_t) { self->OnHeader(ec2); });
    });
  }

  // A reused keep-alive connection may have been closed by the server meanwhile: one retry
  // on a fresh connection (nothing was processed: the request was not read).
  void RetryOrFail(const std::string& what) {
    if (reused_ && !cancelled_ && !got_header_) {
      reused_ = false;
      buffer_.clear();
      return Connect();
    }
    Finish(status_, what);
  }

  void OnHeader(beast::error_code ec) {
    if (ec) return RetryOrFail("read header: " + ec.message());
    got_header_ = true;
    status_ = static_cast<int>(parser_->get().result_int());
    sse_ = std::string(parser_->get()[http::field::content_type]).find("text/event-stream") !=
           std::string::npos;
    ReadSome();
  }

  // NOTE: async_read_some, not async_read: async_read returns only once the body buffer is full
  // or the message is complete, so every event of a stream shorter than the buffer would arrive
  // (and be timed) at the end, making TTFT equal to the whole request's time.
  void ReadSome() {
    if (parser_->is_done()) return Done();
    parser_->get().body().data = chunk_;
    parser_->get().body().size = sizeof(chunk_);
    http::async_read_some(*socket_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec == http::error::need_buffer) ec = {};
      if (ec) return self->Finish(self->status_, "read body: " + ec.message());
      const size_t n = sizeof(self->chunk_) - self->parser_->get().body().size;
      self->OnBytes(std::string_view(self->chunk_, n), Clock::now());
      self->ReadSome();
    });
  }

  void OnBytes(std::string_view bytes, Clock::time_point at) {
    if (!sse_ || status_ != 200) {
      body_.append(bytes);
      return;
    }
    pending_.append(bytes);
    for (size_t end; (end = pending_.find("\n\n")) != std::string::npos;) {
      std::string_view event(pending_.data(), end);
      size_t pos = 0;
      while (pos <= event.size()) {
        size_t nl = event.find('\n', pos);
        if (nl == std::string_view::npos) nl = event.size();
        std::string_view line = event.substr(pos, nl - pos);
        if (line.substr(0, 5) == "data:") {
          line.remove_prefix(line.size() > 5 && line[5] == ' ' ? 6 : 5);
          if (sink_.on_event) sink_.on_event(std::string(line), at);
        }
        pos = nl + 1;
      }
      pending_.erase(0, end + 2);
    }
  }

  void Done() {
    const bool keep = parser_->get().keep_alive() && !cancelled_;
    if (status_ == 200 && !sse_ && sink_.on_event) sink_.on_event(body_, Clock::now());
    std::string err = status_ == 200 ? "" : "HTTP " + std::to_string(status_) + ": " + body_.substr(0, 300);
    if (keep && !client_.shut_down_) client_.GiveBack(std::move(socket_));
    Finish(status_, std::move(err));
  }

  void Finish(int status, std::string error) {
    if (finished_) return;
    finished_ = true;
    if (socket_) {
      beast::error_code ignored;
      socket_->close(ignored);
    }
    HttpResult r;
    // A 200 whose stream broke off is a transport failure, not a success.
    r.status = cancelled_ || (status == 200 && !error.empty()) ? 0 : status;
    if (cancelled_) error = "cancelled";
    r.error = std::move(error);
    if (r.status != 200 || !sse_) r.body = body_;
    if (sink_.on_done) sink_.on_done(r);
  }

  HttpClient& client_;
  http::request<http::string_body> req_;
  StreamSink sink_;
  std::unique_ptr<tcp::socket> socket_;
  beast::flat_buffer buffer_;
  std::optional<http::response_parser<http::buffer_body>> parser_;  // one per attempt
  char chunk_[16384];
  std::string pending_;  // SSE bytes not yet split into events
  std::string body_;     // non-SSE body
  int status_ = 0;
  bool reused_ = false, got_header_ = false, sse_ = false, cancelled_ = false, finished_ = false;
};

HttpClient::HttpClient(asio::io_context& io, std::string host, uint16_t port)
    : io_(io), endpoint_(asio::ip::make_address(host), port), host_header_(host + ":" + std::to_string(port)) {}

HttpClient::~HttpClient() { Shutdown(); }

std::unique_ptr<tcp::socket> HttpClient::TakeIdle() {
  if (idle_.empty()) return nullptr;
  auto s = std::move(idle_.back());
  idle_.pop_back();
  return s;
}

void HttpClient::GiveBack(std::unique_ptr<tcp::socket> s) { idle_.push_back(std::move(s)); }

void HttpClient::Start(std::shared_ptr<Exchange> ex) {
  if (shut_down_) {
    ex->Cancel();
  }
  std::erase_if(live_, [](const std::weak_ptr<Exchange>& w) { return w.expired(); });
  live_.push_back(ex);
  ex->Begin();
}

void HttpClient::PostStream(const std::string& target, const std::string& bearer, std::string body,
                            StreamSink sink) {
  http::request<http::string_body> req{http::verb::post, target, 11};
  req.set(http::field::host, host_header_);
  req.set(http::field::content_type, "application/json");
  req.set(http::field::accept, "text/event-stream");
  if (!bearer.empty()) req.set(http::field::authorization, "Bearer " + bearer);
  req.keep_alive(true);
  req.body() = std::move(body);
  req.prepare_payload();
  Start(std::make_shared<Exchange>(*this, std::move(req), std::move(sink)));
}

void HttpClient::Get(const std::string& target, const std::string& bearer,
                     std::function<void(const HttpResult&)> done) {
  http::request<http::string_body> req{http::verb::get, target, 11};
  req.set(http::field::host, host_header_);
  if (!bearer.empty()) req.set(http::field::authorization, "Bearer " + bearer);
  req.keep_alive(true);
  StreamSink sink;
  auto body = std::make_shared<std::string>();
  sink.on_event = [body](const std::string& data, Clock::time_point) { *body = data; };
  sink.on_done = [body, done = std::move(done)](const HttpResult& r) {
    HttpResult out = r;
    if (r.status == 200) out.body = *body;
    done(out);
  };
  Start(std::make_shared<Exchange>(*this, std::move(req), std::move(sink)));
}

void HttpClient::Shutdown() {
  shut_down_ = true;
  CancelAll();
}

void HttpClient::CancelAll() {
  for (auto& s : idle_) {
    beast::error_code ignored;
    s->close(ignored);
  }
  idle_.clear();
  for (auto& w : live_) {
    if (auto ex = w.lock()) ex->Cancel();
  }
  live_.clear();
}

}  // namespace llmux::bench
