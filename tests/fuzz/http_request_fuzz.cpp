// Raw bytes on a connection up to the handler: Beast's request parser configured as
// HttpServer configures it (string body, the default body and header limits, pipelined
// requests read one after another from one buffer), the HttpRequest the server builds from
// each message, and the OpenAI body parsing the completion routes run next.
// Invariants: no crash or sanitizer report; a parsed message never exceeds the limits.
#include <boost/asio/buffer.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <cstdint>
#include <string>

#include "fuzz_util.h"
#include "server/http_server.h"
#include "server/http_types.h"
#include "server/openai_request.h"

namespace {

namespace beast = boost::beast;
namespace http = beast::http;

// As Session::OnRead builds it.
llmux::server::HttpRequest ToRequest(http::request<http::string_body>&& msg) {
  llmux::server::HttpRequest req;
  req.method = std::string(msg.method_string());
  req.target = std::string(msg.target());
  const size_t q = req.target.find('?');
  req.path = req.target.substr(0, q);
  if (q != std::string::npos) req.query = req.target.substr(q + 1);
  for (const auto& field : msg) {
    std::string name(field.name_string());
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    req.headers[name] = std::string(field.value());
  }
  req.body = std::move(msg.body());
  return req;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace llmux::server;
  const HttpServerOptions options;
  size_t used = 0;
  for (int message = 0; message < 8 && used < size; ++message) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(static_cast<uint64_t>(options.max_body_bytes));
    parser.header_limit(static_cast<uint32_t>(options.max_header_bytes));
    beast::error_code ec;
    while (!parser.is_done()) {
      const size_t n = parser.put(boost::asio::buffer(data + used, size - used), ec);
      used += n;
      if (ec == http::error::need_more) {
        ec = {};
        if (n == 0 || used >= size) {
          parser.put_eof(ec);
          break;
        }
        continue;
      }
      if (ec || n == 0) break;
    }
    if (ec || !parser.is_done()) return 0;  // the server answers 4xx and closes
    HttpRequest req = ToRequest(parser.release());
    if (req.body.size() > static_cast<size_t>(options.max_body_bytes)) {
      llmux::fuzz::Violation("http_request", "body over the limit was accepted");
    }
    (void)req.Header("authorization");
    if (req.path == "/v1/chat/completions" || req.path == "/v1/completions") {
      const ApiKind kind = req.path == "/v1/completions" ? ApiKind::kCompletion : ApiKind::kChat;
      (void)ParseOpenAiRequest(kind, req.body, RequestLimits{});
    }
  }
  return 0;
}
