#include "ingest/net/http_client.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "ingest/net/tls_util.h"

namespace rapport {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

constexpr std::size_t kMaxResponseBodyBytes = 256u << 20;

std::string seconds_text(std::chrono::milliseconds d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", static_cast<double>(d.count()) / 1000.0);
  return buf;
}

using net::openssl_reason;

// A client context: TLS >= 1.2, the server's certificate verified against `ca_file` (PEM) or, when it
// is empty, the system's CA certificates.
Result<std::unique_ptr<ssl::context>> make_client_context(const std::string& ca_file) {
  auto context = net::new_tls_context(ssl::context::tls_client, TLS1_2_VERSION);
  if (!context.ok()) return context.status();
  SSL_CTX* ctx = context.value()->native_handle();
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  if (!ca_file.empty()) {
    if (Status s = net::check_readable("CA file", ca_file); !s.ok()) return s;
    if (SSL_CTX_load_verify_locations(ctx, ca_file.c_str(), nullptr) != 1) {
      return Status::Error("CA file '" + ca_file + "': no PEM certificate found (OpenSSL: " + openssl_reason() + ")");
    }
  } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
    return Status::Error("cannot load the system's CA certificates (OpenSSL: " + openssl_reason() + ")");
  }
  return context;
}

// One request/response exchange driven by completion handlers on a private io_context; over TLS when kTls.
template <bool kTls>
class Exchange {
 public:
  using Stream = std::conditional_t<kTls, beast::ssl_stream<beast::tcp_stream>, beast::tcp_stream>;

  Exchange(const HttpEndpoint& endpoint, const HttpClientRequest& request, ssl::context* tls)
      : endpoint_(endpoint), timeout_(request.timeout), stream_(make_stream(ioc_, tls)) {
    req_.version(11);
    req_.method_string(request.method);
    std::string target = endpoint.base_path + request.target;
    if (target.empty() || target.front() != '/') target.insert(target.begin(), '/');
    req_.target(target);
    req_.set(http::field::host, endpoint.host + ":" + endpoint.port);
    req_.set(http::field::user_agent, "rapportctl");
    req_.keep_alive(false);
    if (!request.bearer_token.empty()) req_.set(http::field::authorization, "Bearer " + request.bearer_token);
    for (const auto& [name, value] : request.headers) req_.set(name, value);
    if (!request.body.empty() || request.method == "POST" || request.method == "PUT") {
      req_.set(http::field::content_type, request.content_type);
      req_.body() = request.body;
    }
    req_.prepare_payload();
    parser_.body_limit(kMaxResponseBodyBytes);
  }

  Result<HttpClientResponse> run() {
    resolver_.async_resolve(endpoint_.host, endpoint_.port,
                            [this](beast::error_code ec, const tcp::resolver::results_type& results) {
                              if (ec) return fail("cannot resolve " + endpoint_.host, ec);
                              lowest().expires_after(timeout_);
                              lowest().async_connect(results, [this](beast::error_code ec2, const tcp::endpoint&) {
                                if (ec2) return fail("cannot connect to " + endpoint_.url, ec2);
                                if constexpr (kTls) {
                                  handshake();
                                } else {
                                  send();
                                }
                              });
                            });
    // The stream's expiry bounds connect, handshake, write and read; this bounds name resolution too.
    ioc_.run_for(timeout_ + std::chrono::milliseconds(250));
    if (error_) return Status::Error(*error_);
    if (!finished_) {
      return Status::Error("no response from " + endpoint_.url + " within " + seconds_text(timeout_));
    }
    beast::error_code ignored;
    lowest().socket().shutdown(tcp::socket::shutdown_both, ignored);
    HttpClientResponse response;
    const auto& msg = parser_.get();
    response.status = static_cast<int>(msg.result_int());
    response.content_type = std::string(msg[http::field::content_type]);
    response.location = std::string(msg[http::field::location]);
    response.body = std::move(parser_.release().body());
    return response;
  }

 private:
  static Stream make_stream(asio::io_context& ioc, ssl::context* tls) {
    if constexpr (kTls) {
      return Stream(ioc, *tls);
    } else {
      (void)tls;
      return Stream(ioc);
    }
  }
  beast::tcp_stream& lowest() { return beast::get_lowest_layer(stream_); }

  // TLS: the host name goes out as SNI and the certificate must be issued for it (or for the IP address).
  void handshake() {
    if constexpr (kTls) {
      SSL* ssl_handle = stream_.native_handle();
      boost::system::error_code not_ip;
      asio::ip::make_address(endpoint_.host, not_ip);
      if (not_ip) {
        SSL_set_tlsext_host_name(ssl_handle, endpoint_.host.c_str());
        SSL_set1_host(ssl_handle, endpoint_.host.c_str());
      } else {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_handle), endpoint_.host.c_str());
      }
      stream_.async_handshake(ssl::stream_base::client, [this](beast::error_code ec) {
        if (ec) return fail_handshake(ec);
        send();
      });
    }
  }

  void send() {
    http::async_write(stream_, req_, [this](beast::error_code ec, std::size_t) {
      if (ec) return fail("cannot send the request to " + endpoint_.url, ec);
      http::async_read(stream_, buffer_, parser_, [this](beast::error_code ec2, std::size_t) {
        if (ec2) return fail("no valid response from " + endpoint_.url, ec2);
        finished_ = true;
      });
    });
  }

  void fail_handshake(beast::error_code ec) {
    if constexpr (kTls) {
      const long verify = SSL_get_verify_result(stream_.native_handle());
      const std::string what = "TLS handshake with " + endpoint_.url + " failed: ";
      if (verify == X509_V_ERR_HOSTNAME_MISMATCH || verify == X509_V_ERR_IP_ADDRESS_MISMATCH) {
        error_ = what + "the server's certificate is not issued for " + endpoint_.host +
                 " (use the name the certificate was issued for in the URL)";
      } else if (verify != X509_V_OK) {
        error_ = what + "the server's certificate is not trusted: " + X509_verify_cert_error_string(verify) +
                 " (pass the certificate of the CA that signed it, or the server's own self-signed one, with "
                 "--ca-file)";
      } else if (ec == beast::error::timeout) {
        fail("TLS handshake with " + endpoint_.url, ec);
      } else {
        error_ = what + ec.message() +
                 " (is it an HTTPS listener? rapportd speaks TLS on HTTP only with [tls] http = "
                 "true; otherwise use http://)";
      }
    }
  }

  void fail(const std::string& what, beast::error_code ec) {
    std::string message = what + ": ";
    if (ec == asio::error::connection_refused) {
      message += "connection refused (is rapportd running and listening there?)";
    } else if (ec == beast::error::timeout) {
      message += "timed out after " + seconds_text(timeout_);
    } else if (ec == http::error::body_limit) {
      message += "response body larger than " + std::to_string(kMaxResponseBodyBytes >> 20) + " MiB";
    } else if (ec == http::error::end_of_stream || ec == asio::error::eof || ec == ssl::error::stream_truncated) {
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
  Stream stream_;
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
  e.tls = url.substr(0, 8) == "https://";
  const std::string_view scheme = e.tls ? "https://" : "http://";
  if (url.size() <= scheme.size() || url.substr(0, scheme.size()) != scheme) {
    return Status::Error("URL must look like http://HOST:PORT or https://HOST:PORT, got '" + e.url + "'");
  }
  std::string_view rest = url.substr(scheme.size());
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
  std::string_view host = authority, port = e.tls ? "443" : "80";
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

Result<std::pair<HttpEndpoint, std::string>> parse_redirect(std::string_view location) {
  const auto scheme_end = location.find("://");
  if (location.empty() || scheme_end == std::string_view::npos) {
    return Status::Error("a redirect needs an absolute http:// or https:// Location, got '" + std::string(location) +
                         "'");
  }
  const auto path = location.find('/', scheme_end + 3);
  if (path == std::string_view::npos) {
    return Status::Error("the redirect's Location '" + std::string(location) + "' has no path");
  }
  auto endpoint = parse_http_url(location.substr(0, path));
  if (!endpoint.ok()) return Status::Error("cannot follow the redirect: " + endpoint.message());
  return std::make_pair(std::move(endpoint.value()), std::string(location.substr(path)));
}

Result<HttpClientResponse> http_request(const HttpEndpoint& endpoint, const HttpClientRequest& request) {
  if (!endpoint.tls && !request.ca_file.empty()) {
    return Status::Error("a CA file (--ca-file) applies to https:// URLs only, not to " + endpoint.url);
  }
  try {
    if (endpoint.tls) {
      auto context = make_client_context(request.ca_file);
      if (!context.ok()) return context.status();
      Exchange<true> exchange(endpoint, request, context->get());
      return exchange.run();
    }
    Exchange<false> exchange(endpoint, request, nullptr);
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
