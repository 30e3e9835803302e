// HttpClient: a small blocking HTTP/1.1 client (Boost.Beast) for rapportctl's
// --url mode. One request per connection, an overall timeout per request;
// http:// and https:// (OpenSSL through Asio SSL, TLS >= 1.2, the server's
// certificate verified against the system's CAs or a given CA file, and its
// name against the URL's host). Hides Asio, Beast and OpenSSL.
// Thread safety: plain functions; each call uses its own io_context.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace rapport {

// "http[s]://host:port[/base]" split into its parts (port defaults to 80, or 443 for https).
struct HttpEndpoint {
  std::string host;
  std::string port;
  std::string base_path;  // without a trailing '/', e.g. "" or "/rapport"
  std::string url;        // as given, for messages
  bool tls = false;       // https://
};

// Fails with a message for anything but http[s]://host[:port][/path].
Result<HttpEndpoint> parse_http_url(std::string_view url);

// A redirect's Location, an absolute "http[s]://host[:port]/path[?query]", as the endpoint and the request
// target ("/path?query"). Anything else (another scheme, a relative reference, credentials) is an error.
Result<std::pair<HttpEndpoint, std::string>> parse_redirect(std::string_view location);

struct HttpClientRequest {
  std::string method = "GET";
  std::string target;  // path and query, appended to the endpoint's base path, e.g. "/v1/tiers"
  std::string body;
  std::string content_type = "application/json";             // sent when the body is non-empty or the method is POST
  std::string bearer_token;                                  // "Authorization: Bearer ..." when non-empty
  std::vector<std::pair<std::string, std::string>> headers;  // further headers (name, value), e.g. webhook signatures
  std::chrono::milliseconds timeout{30'000};  // for the whole exchange: resolve, connect, TLS, write, read
  std::string ca_file;  // https: PEM certificate(s) to trust instead of the system's CAs (e.g. a self-signed one)
};

struct HttpClientResponse {
  int status = 0;
  std::string content_type;
  std::string location;  // the Location header (a redirect's target), "" when absent
  std::string body;
};

// Sends one request and reads the response. Any HTTP status is a success
// here; a transport failure (refused, timeout, reset, unparsable response,
// an unreadable CA file, a TLS handshake that fails or a certificate that is
// not trusted or not for the host) is an error whose message names the URL
// and suggests the usual cause.
Result<HttpClientResponse> http_request(const HttpEndpoint& endpoint, const HttpClientRequest& request);

// Percent-encodes everything but RFC 3986 unreserved characters (for path segments and query values).
std::string percent_encode(std::string_view text);

}  // namespace rapport
