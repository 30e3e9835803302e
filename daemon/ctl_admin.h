// rapportctl's admin subcommands: top, tiers, fit, erase, get --url,
// deadletter list/replay, backup and restore. Each works either against a
// running rapportd over HTTP (CtlTarget::url) or on a state dir directly
// (LMDB is multi-process, so reading and small writes work beside a running
// daemon). Argument parsing stays in rapportctl_main.cc; these functions take
// plain option structs, print results to stdout and errors to stderr
// (prefixed "rapportctl: "), and return the process exit code.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"
#include "daemon/config.h"
#include "ingest/net/http_client.h"
#include "storage/store.h"

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
Result<std::unique_ptr<Store>> ctl_open_store(const Config& config, bool read_only);

// One HTTP exchange with the target daemon (token and timeout applied; `default_timeout_s` when the target has none).
Result<HttpClientResponse> ctl_http(const CtlTarget& target, HttpClientRequest request, double default_timeout_s = 30);

// Reports a non-2xx answer: "rapportctl: <what>: HTTP <status>: <error field>"; returns 1 for 404, else 2.
int ctl_http_failure(const HttpClientResponse& response, const std::string& what);

// parse_as_of (the --as-of dates) is in daemon/value_records.h.

// --- subcommands ----------------------------------------------------------

// GET /v1/customers/{id}[?explain=true] (url mode only; the state-dir form lives in rapportctl_main.cc).
int ctl_get_url(const CtlTarget& target, const std::string& id, bool explain);

// The metrics `top --by` ranks by.
inline constexpr std::string_view kTopMetrics[] = {"clv",     "churn_risk",   "p_alive", "profit_12m",
                                                   "revenue", "satisfaction", "loyalty"};

struct TopOptions {
  std::string by = "clv";  // one of kTopMetrics
  std::size_t n = 10;
  std::string tier;   // empty = every tier
  std::string as_of;  // evaluation time (default now)
  bool json = false;
};
// The n customers with the highest value of the metric, ties by id. State dir: one scan of every customer.
// Url: GET /v1/customers?tier=T&order=M for the asked tier, or for each tier, paged with next_cursor up to n
// customers each, then merged into the same order (metrics clv, churn_risk, satisfaction and loyalty only;
// no as_of: the daemon ranks as of now).
int ctl_top(const CtlTarget& target, const TopOptions& options);

// Customers per tier at the last fit, the thresholds and the configured fractions.
int ctl_tiers(const CtlTarget& target, bool json);

struct FitOptions {
  std::string as_of;  // default now; over --url sent as {"as_of": …} to POST /v1/model:fit
  bool save = false;  // state dir only: store the model and tier counts in meta (the daemon always stores)
};
int ctl_fit(const CtlTarget& target, const FitOptions& options);

// Erases a customer (state, events, dedup keys). Exit 1 when unknown.
int ctl_erase(const CtlTarget& target, const std::string& id);

struct DeadLetterOptions {
  std::uint64_t after = 0;  // start after this sequence number
  std::size_t limit = 0;    // at most this many letters (0 = all)
};
// One JSON object per line: sequence, received, transport, reason, error, payload.
int ctl_deadletter_list(const CtlTarget& target, const DeadLetterOptions& options);
// Re-submits the payloads; removes the letters that were accepted or duplicate; reports the rest.
int ctl_deadletter_replay(const CtlTarget& target, const DeadLetterOptions& options);

// Hot compacted copy of the state dir into `destination` (must not exist or be empty).
int ctl_backup(const CtlTarget& target, const std::string& destination, bool quiet);
// Copies a backup into the (stopped) target state dir; refuses a dir with data unless `force`.
int ctl_restore(const CtlTarget& target, const std::string& source, bool force);

// True when a process other than this one has the LMDB environment in `directory` open
// (it holds the shared lock on lock.mdb that every LMDB process takes).
bool state_dir_in_use(const std::string& directory);

}  // namespace rapport
