// rapportctl (daemon/ctl/): what every subcommand group shares. Each group has
// its own header (import.h, query.h, admin.h, backup.h); main.cc parses the
// arguments and calls them. Subcommands work either against a running rapportd
// over HTTP (CtlTarget::url) or on a state dir directly (LMDB is
// multi-process, so reading and small writes work beside a running daemon).
// They take plain option structs, print results to stdout and errors to
// stderr (prefixed "rapportctl: "), and return the process exit code.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"
#include "daemon/config.h"
#include "ingest/net/http_client.h"
#include "storage/partitioned_store.h"

namespace rapport {

// Exit codes of every rapportctl subcommand.
inline constexpr int kExitOk = 0;
inline constexpr int kExitPartial = 1;  // not found, or only part of the work done
inline constexpr int kExitFatal = 2;    // usage error or nothing done

// Where a subcommand works: a daemon (url non-empty) or a state dir.
struct CtlTarget {
  std::string url;          // "http://127.0.0.1:8470" or "https://…": talk to a running rapportd
  std::string token;        // bearer token for url mode (--token or RAPPORT_TOKEN)
  std::string ca_file;      // https url: PEM CA certificate(s) to trust instead of the system's (--ca-file)
  std::string state_dir;    // empty: from the config (default ./var/rapport)
  std::string config_path;  // rapportd TOML config (weights, value settings, limits)
  double timeout_s = 0;     // HTTP timeout; 0 = the subcommand's default
};

// --- shared helpers -------------------------------------------------------

// Prints "rapportctl: <message>" to stderr and returns `code`.
int ctl_error(const std::string& message, int code = kExitFatal);

// The config with the target's state dir applied (when given).
Result<Config> ctl_config(const CtlTarget& target);

// Opens the config's state dir (read-only for inspection).
Result<std::unique_ptr<PartitionedStore>> ctl_open_store(const Config& config, bool read_only);

// One HTTP exchange with the target daemon (token and timeout applied; `default_timeout_s` when the target has none).
// A 307 or 308 answer (a Kafka group member redirecting to the customer's owner) is followed: the same
// method, body and token to the Location, at most kCtlMaxRedirects hops; a Location that is not an absolute
// http:// or https:// URL is an error.
inline constexpr int kCtlMaxRedirects = 3;
Result<HttpClientResponse> ctl_http(const CtlTarget& target, HttpClientRequest request, double default_timeout_s = 30);

// The "error" field of a JSON error answer, else the start of the body on one line.
std::string json_error_field(std::string_view body);

// Reports a non-2xx answer: "rapportctl: <what>: HTTP <status>: <error field>"; returns 1 for 404, else 2.
int ctl_http_failure(const HttpClientResponse& response, const std::string& what);

// parse_as_of (the --as-of dates) is in daemon/value_records.h.

}  // namespace rapport
