// NetworkServer: Rapport's network fronts — TCP NDJSON with durable acks and
// HTTP/1.1 (Boost.Beast) — on a pool of io threads. Hides Asio and Beast.
//
// The HTTP front serves POST /v1/events itself (decode on the io thread,
// submit to the IngestSink, answer after the durable commit) and hands every
// other request to the HttpHandler. The TCP front speaks NDJSON per
// DESIGN §5. Both bound everything per connection (timeouts, header, body
// and line limits, a connection cap) and stop reading while the sink is full.
// Either front can speak TLS (OpenSSL, TLS 1.2+); an optional third listener
// serves only /metrics and /healthz (plain HTTP), and the main HTTP listener
// then answers 404 for /metrics.
// Thread safety: all public methods may be called from any thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "ingest/auth.h"
#include "ingest/decoder.h"
#include "ingest/net/front_stats.h"
#include "ingest/submission.h"

namespace rapport {

struct HttpRequest {
  std::string method;        // "GET", "POST", ...
  std::string path;          // "/v1/customers/a%2Fb": as sent, still percent-encoded (route first, then decode)
  std::string query;         // raw query string without '?', e.g. "explain=true"
  std::string content_type;  // media type only, lower-case, no parameters
  std::string bearer_token;  // from "Authorization: Bearer ..." (empty if none)
  std::string peer;          // the client's address "ip:port", for audit lines
  std::string body;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers (WWW-Authenticate, Retry-After)
};

// Call exactly once, from any thread.
using HttpRespond = std::function<void(HttpResponse&&)>;

// What a request needs before its body may be read: the HTTP front asks for
// it as soon as the header is in.
struct RouteAccess {
  HttpRoute route = HttpRoute::kOther;  // for the stats (the handler's id); kOther: no such route (404)
  std::string_view name = "other";      // the route's name for audit lines (static storage)
  std::optional<Scope> scope;           // the scope the bearer token must hold; nullopt: none (probes, metrics, 404s)
  int status = 0;                       // non-zero (400): answer this at once with `error` (a malformed target)
  std::string error;
  std::size_t max_body_bytes = 0;  // non-zero: this route's own body limit, below FrontLimits::max_body_bytes (413)
};

class HttpHandler {
 public:
  virtual ~HttpHandler() = default;
  // Called on an io thread as soon as a request's header is in, before any
  // body byte is read or `100 Continue` is sent. `raw_target` is the request
  // target as sent. The front then answers 401/403 itself when the bearer
  // token lacks `scope` (closing the connection when a body was announced),
  // and lets a request that needs no token carry at most
  // kMaxBodyWithoutToken bytes of body. Must not block.
  virtual RouteAccess access(std::string_view method, std::string_view raw_target) const = 0;
  // Returns the route (for the stats: the handler's own id, opaque to the
  // fronts) and eventually calls respond. Runs on an io thread: must not
  // block for long (post long work elsewhere).
  virtual HttpRoute handle(HttpRequest&& request, HttpRespond respond) = 0;
};

// The body a request that needs no token (a probe, /metrics, a 404) may carry: 413 above.
inline constexpr std::size_t kMaxBodyWithoutToken = 4096;

// Limits; reloadable at run time (SIGHUP) with NetworkServer::set_limits.
struct FrontLimits {
  std::size_t max_line_bytes = 64 * 1024;           // TCP: longer lines are rejected and skipped
  std::size_t max_body_bytes = 16 * 1024 * 1024;    // HTTP: 413 above this
  std::size_t max_header_bytes = 8 * 1024;          // HTTP: 431 above this
  std::chrono::milliseconds read_timeout{30'000};   // a started request / line must complete within this
  std::chrono::milliseconds idle_timeout{300'000};  // idle keep-alive HTTP or TCP connection is closed after this
  std::size_t max_connections = 4096;               // per transport; more are refused
  std::size_t max_inflight_submissions = 8;         // per TCP connection; reading pauses beyond
};

// TLS for the fronts. The certificate and key are read when the server
// starts (and by reload_tls); problems are reported naming the file.
struct TlsOptions {
  std::string cert_file;            // PEM: the server certificate, then any intermediates
  std::string key_file;             // PEM: its private key (unencrypted)
  bool http = false;                // HTTPS on the HTTP listener
  bool tcp = false;                 // TLS on the TCP NDJSON listener
  std::string min_version = "1.2";  // "1.2" or "1.3"
  bool enabled() const { return http || tcp; }
};

// Loads the certificate chain and key of `tls` and checks that they belong
// together, as start() would; the error names the offending file.
Status check_tls(const TlsOptions& tls);

struct ServerOptions {
  std::string http_address = "127.0.0.1:8470";  // "host:port"; port 0 picks a free port; empty disables
  std::string tcp_address = "127.0.0.1:8471";
  std::string metrics_address;  // "host:port" of a plain HTTP listener for /metrics and /healthz only; empty: none
  int http_fd = -1;             // an already-listening socket to adopt (systemd socket activation) instead of binding
  int tcp_fd = -1;
  int metrics_fd = -1;
  TlsOptions tls;
  int io_threads = 0;  // 0 = one per core
  FrontLimits limits;
  DecodeOptions decode;
};

class NetworkServer {
 public:
  // Binds the listeners and starts the io threads. Fails with a clear
  // message when an address is invalid or in use. `stats` must outlive the server.
  static Result<std::unique_ptr<NetworkServer>> start(const ServerOptions& options, HttpHandler& handler,
                                                      IngestSink& sink, FrontStats& stats,
                                                      std::shared_ptr<const TokenSet> tokens);
  ~NetworkServer();  // shutdown(0) if still running
  NetworkServer(const NetworkServer&) = delete;
  NetworkServer& operator=(const NetworkServer&) = delete;

  // Bound addresses, "127.0.0.1:40123" (empty when disabled).
  std::string http_endpoint() const;
  std::string tcp_endpoint() const;
  std::string metrics_endpoint() const;

  void set_tokens(std::shared_ptr<const TokenSet> tokens);
  void set_limits(const FrontLimits& limits, const DecodeOptions& decode);
  // Re-reads the certificate, key and minimum version for connections
  // accepted from now on (open ones keep theirs). Which listeners speak TLS
  // is fixed at start. On error the running certificate stays.
  Status reload_tls(const TlsOptions& tls);

  // Drain: close the listeners, stop reading, submit every complete line or
  // request already read, wait (at most `deadline`) until all their results
  // are written back to the clients, then close every connection and join
  // the io threads. Idempotent.
  void shutdown(std::chrono::milliseconds deadline);

 private:
  struct Impl;
  explicit NetworkServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace rapport
