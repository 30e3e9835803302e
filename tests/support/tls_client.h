// A TLS test client on its own io_context (Asio SSL), every operation bounded
// by a timeout: handshake, send, read lines and HTTP/1.1 responses, and tell
// a clean close by the server from a wait that timed out.
#pragma once

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <utility>

#include "tests/support/loopback_client.h"

namespace rapport::test {

struct TlsClientOptions {
  std::string ca_file;  // verify the server against it, and its name against "localhost"; empty: no verification
  int max_version = 0;  // e.g. TLS1_2_VERSION; 0: the library's default
  std::chrono::milliseconds timeout = std::chrono::seconds(10);  // per operation

  static TlsClientOptions verifying(std::string ca_file) {
    TlsClientOptions o;
    o.ca_file = std::move(ca_file);
    return o;
  }
  static TlsClientOptions at_most(int max_version) {
    TlsClientOptions o;
    o.max_version = max_version;
    return o;
  }
};

class TlsClient {
 public:
  explicit TlsClient(int port, TlsClientOptions options = {})
      : ctx_(boost::asio::ssl::context::tls_client), timeout_(options.timeout) {
    namespace ssl = boost::asio::ssl;
    if (options.ca_file.empty()) {
      ctx_.set_verify_mode(ssl::verify_none);
    } else {
      ctx_.load_verify_file(options.ca_file);
      ctx_.set_verify_mode(ssl::verify_peer);
      ctx_.set_verify_callback(ssl::host_name_verification("localhost"));
    }
    if (options.max_version != 0) SSL_CTX_set_max_proto_version(ctx_.native_handle(), options.max_version);
    stream_.emplace(io_, ctx_);
    SSL_set_tlsext_host_name(stream_->native_handle(), "localhost");
    boost::system::error_code ec;
    stream_->lowest_layer().connect(
        boost::asio::ip::tcp::endpoint(boost::asio::ip::address_v4::loopback(), static_cast<unsigned short>(port)), ec);
    if (ec) {
      last_error_ = ec;
      return;
    }
    handshake_ok_ = run([&](auto handler) { stream_->async_handshake(ssl::stream_base::client, handler); });
  }

  bool handshake_ok() const { return handshake_ok_; }
  // The last operation's error: boost::asio::error::timed_out when it did not complete in time.
  const boost::system::error_code& last_error() const { return last_error_; }
  std::string error() const { return last_error_.message(); }

  // The common name of the server's certificate.
  std::string peer_common_name() {
    X509* cert = SSL_get1_peer_certificate(stream_->native_handle());
    if (cert == nullptr) return {};
    char buf[256] = {};
    X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buf, sizeof buf);
    X509_free(cert);
    return buf;
  }

  bool send(const std::string& data) {
    return run([&](auto handler) { boost::asio::async_write(*stream_, boost::asio::buffer(data), handler); });
  }

  std::optional<std::string> read_line() {
    for (;;) {
      if (const auto nl = buffer_.find('\n'); nl != std::string::npos) {
        std::string line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return line;
      }
      if (!fill()) return std::nullopt;
    }
  }

  std::optional<HttpResponseText> read_response() {
    for (;;) {
      if (auto r = take_response(buffer_)) return r;
      if (!fill()) return std::nullopt;
    }
  }

  // True when the server ended the stream (a read error or close) rather than the wait timing out.
  bool ended_by_peer() {
    while (fill()) {
    }
    return last_error_ && last_error_ != boost::asio::error::timed_out;
  }

 private:
  bool fill() {
    char chunk[16384];
    std::size_t got = 0;
    const bool ok = run([&](auto handler) { stream_->async_read_some(boost::asio::buffer(chunk), handler); }, &got);
    buffer_.append(chunk, got);
    return ok && got > 0;
  }

  // Starts `op` with a completion handler and runs the io_context until it completes or times out.
  template <typename Op>
  bool run(Op op, std::size_t* transferred = nullptr) {
    bool done = false;
    io_.restart();
    op([&](const boost::system::error_code& ec, auto... n) {
      done = true;
      last_error_ = ec;
      if constexpr (sizeof...(n) > 0) {
        if (transferred != nullptr) *transferred = (n + ...);
      }
    });
    io_.run_for(timeout_);
    if (!done) {
      boost::system::error_code ignored;
      stream_->lowest_layer().cancel(ignored);
      io_.restart();
      io_.run();
      last_error_ = boost::asio::error::timed_out;
      return false;
    }
    return !last_error_;
  }

  boost::asio::io_context io_;
  boost::asio::ssl::context ctx_;
  std::optional<boost::asio::ssl::stream<boost::asio::ip::tcp::socket>> stream_;
  std::chrono::milliseconds timeout_;
  bool handshake_ok_ = false;
  boost::system::error_code last_error_;
  std::string buffer_;
};

}  // namespace rapport::test
