#include "ingest/net/http_client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <optional>
#include <utility>

namespace rapport {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr std::size_t kMaxResponseBodyBytes = 256u << 20;

std::string seconds_text(std::chrono::milliseconds d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", static_cast<double>(d.count()) / 1000.0);
  return buf;
}

// One request/response exchange driven by completion handlers on a private io_context.
class Exchange {
 public:
  Exchange(const HttpEndpoint& endpoint, const HttpClientRequest& request)
      : endpoint_(endpoint), timeout_(request.timeout) {
    req_.version(11);
    req_.method_string(request.method);
    std::string target = endpoint.base_path + request.target;
    if (target.empty() || target.front() != '/') target.insert(target.begin(), '/');
    req_.target(target);
    req_.set(http::field::host, endpoint.host + ":" + endpoint.port);
    req_.set(http::field::user_agent, "rapportctl");
    req_.keep_alive(false);
    if (!request.bearer_token.empty()) req_.set(http::field::authorization, "Bearer " + request.bearer_token);
    if (!request.body.empty() || request.method == "POST" || request.method == "PUT") {
      req_.set(http::field::content_type, request.content_type);
      req_.body() = request.body;
    }
    req_.prepare_payload();
    parser_.body_limit(kMaxResponseBodyBytes);
  }

  Result<HttpClientResponse> run() {
    resolver_.async_resolve(
        endpoint_.host, endpoint_.port, [this](beast::error_code ec, const tcp::resolver::results_type& results) {
          if (ec) return fail("cannot resolve " + endpoint_.host, ec);
          stream_.expires_after(timeout_);
          stream_.async_connect(results, [this](beast::error_code ec2, const tcp::endpoint&) {
            if (ec2) return fail("cannot connect to " + endpoint_.url, ec2);
            http::async_write(stream_, req_, [this](beast::error_code ec3, std::size_t) {
              if (ec3) return fail("cannot send the request to " + endpoint_.url, ec3);
              http::async_read(stream_, buffer_, parser_, [this](beast::error_code ec4, std::size_t) {
                if (ec4) return fail("no valid response from " + endpoint_.url, ec4);
                finished_ = true;
              });
            });
          });
        });
    // The stream's expiry bounds connect, write and read; this bounds name resolution too.
    ioc_.run_for(timeout_ + std::chrono::milliseconds(250));
    if (error_) return Status::Error(*error_);
    if (!finished_) {
      return Status::Error("no response from " + endpoint_.url + " within " + seconds_text(timeout_));
    }
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    HttpClientResponse response;
    const auto& msg = parser_.get();
    response.status = static_cast<int>(msg.result_int());
    response.content_type = std::string(msg[http::field::content_type]);
    response.body = std::move(parser_.release().body());
    return response;
  }

 private:
  void fail(const std::string& what, beast::error_code ec) {
    std::string message = what + ": ";
    if (ec == asio::error::connection_refused) {
      message += "connection refused (is rapportd running and listening there?)";
    } else if (ec == beast::error::timeout) {
      message += "timed out after " + seconds_text(timeout_);
    } else if (ec == http::error::body_limit) {
      message += "response body larger than " + std::to_string(kMaxResponseBodyBytes >> 20) + " MiB";
    } else if (ec == http::error::end_of_stream || ec == asio::error::eof) {
      message += "the server closed the connection without a response";
    } else {
      message += ec.message();
    }
    error_ = std::move(message);
  }

  const HttpEndpoint& endpoint_;
  std::chrono::milliseconds timeout_;
  asio::io_context ioc_;
  tcp::resolver resolver_{ioc_};
  beast::tcp_stream stream_{ioc_};
  beast::flat_buffer buffer_;
  http::request<http::string_body> req_;
  http::response_parser<http::string_body> parser_;
  std::optional<std::string> error_;
  bool finished_ = false;
};

}  // namespace

Result<HttpEndpoint> parse_http_url(std::string_view url) {
  HttpEndpoint e;
  e.url = std::string(url);
  constexpr std::string_view kScheme = "http://";
  if (url.substr(0, 8) == "https://") {
    return Status::Error("https URLs are not supported: use http:// on loopback or a TLS-terminating proxy (" + e.url +
                         ")");
  }
  if (url.size() <= kScheme.size() || url.substr(0, kScheme.size()) != kScheme) {
    return Status::Error("URL must look like http://HOST:PORT, got '" + e.url + "'");
  }
  std::string_view rest = url.substr(kScheme.size());
  const auto slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) {
    std::string_view path = rest.substr(slash);
    while (!path.empty() && path.back() == '/') path.remove_suffix(1);
    if (path.find_first_of("?#") != std::string_view::npos) {
      return Status::Error("URL must not carry a query or fragment: '" + e.url + "'");
    }
    e.base_path = std::string(path);
  }
  if (authority.find('@') != std::string_view::npos) {
    return Status::Error("URL must not carry credentials (use --token or RAPPORT_TOKEN): '" + e.url + "'");
  }
  std::string_view host = authority, port = "80";
  if (!authority.empty() && authority.front() == '[') {  // [v6]:port
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return Status::Error("bad IPv6 address in URL '" + e.url + "'");
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return Status::Error("bad URL '" + e.url + "'");
      port = after.substr(1);
    }
  } else if (const auto colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  if (host.empty()) return Status::Error("URL has no host: '" + e.url + "'");
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string_view::npos ||
      std::stoi(std::string(port)) > 65535) {
    return Status::Error("URL has a bad port: '" + e.url + "'");
  }
  e.host = std::string(host);
  e.port = std::string(port);
  return e;
}

Result<HttpClientResponse> http_request(const HttpEndpoint& endpoint, const HttpClientRequest& request) {
  try {
    Exchange exchange(endpoint, request);
    return exchange.run();
  } catch (const std::exception& ex) {  // e.g. a header value Beast refuses
    return Status::Error("HTTP request to " + endpoint.url + " failed: " + ex.what());
  }
}

std::string percent_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if ((u >= 'A' && u <= 'Z') || (u >= 'a' && u <= 'z') || (u >= '0' && u <= '9') || u == '-' || u == '.' ||
        u == '_' || u == '~') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 15]);
    }
  }
  return out;
}

}  // namespace rapport
