// OpenSSL helpers shared by the fronts' server contexts (tls.cc) and the
// HTTP client's (http_client.cc). Private to ingest/net.
#pragma once

#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"

namespace rapport::net {

// The reason of the most recent OpenSSL error ("unknown OpenSSL error" if none) and clears the thread's error
// queue; `first_error`, when given, receives its code.
std::string openssl_reason(unsigned long* first_error = nullptr);

// A new context for `method` that refuses TLS versions below `min_version` (TLS1_2_VERSION, TLS1_3_VERSION).
Result<std::unique_ptr<boost::asio::ssl::context>> new_tls_context(boost::asio::ssl::context::method method,
                                                                   int min_version);

// Fails with "<what> '<path>': cannot read: <reason>" when the file cannot be opened for reading.
Status check_readable(std::string_view what, const std::string& path);

}  // namespace rapport::net
