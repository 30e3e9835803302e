// Config: every setting of rapportd, with its default, loaded from one TOML
// file (toml++) and overridable by command-line flags.
//
// Every key is optional; an unknown key or a value of the wrong type or
// range is an error naming the key, so typos never pass silently.
// Thread safety: plain value.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "ingest/auth.h"
#include "ingest/decoder.h"
#include "ingest/kafka/consumer.h"
#include "ingest/net/server.h"
#include "scoring/alert_rules.h"
#include "scoring/customer_state.h"
#include "scoring/value_model.h"
#include "storage/partitioned_store.h"
#include "storage/store.h"

namespace rapport {

struct WriterOptions {
  std::size_t batch_max_events = 50'000;          // group commit: at most this many events per commit
  std::size_t queue_capacity_events = 1'000'000;  // fronts stop reading when this many wait
  // Test hook, never set by the config: after this many group commits the writer blocks before the
  // next one (it has taken the batch, as a stuck disk would) until stop(). rapportd sets it from the
  // environment variable RAPPORT_TEST_STALL_WRITER_AFTER to prove that the watchdog stops.
  std::optional<std::uint64_t> test_stall_after_commits;
};

// Delivery of alert webhooks (daemon/alert_delivery.h), [alert_delivery] in the config.
struct AlertDeliveryOptions {
  std::chrono::milliseconds timeout{10'000};        // per POST: connect, TLS, write, read
  std::chrono::milliseconds retry_initial{1'000};   // first retry delay
  std::chrono::milliseconds retry_max{3'600'000};   // longest retry delay
  std::chrono::milliseconds retry_for{86'400'000};  // then moved to the dead area
  std::size_t max_per_url = 4;                      // concurrent POSTs per URL
  std::size_t threads = 4;                          // delivery threads (restart to change)
  std::chrono::milliseconds poll{100};              // outbox scan interval when idle (not configurable)
  std::string ca_file;                              // https: trust these CAs instead of the system's
  friend bool operator==(const AlertDeliveryOptions&, const AlertDeliveryOptions&) = default;
};

// The value model's settings plus the background fit schedule.
struct ValueOptions : ValueConfig {
  std::chrono::seconds fit_interval{3600};  // background fit schedule (0 = only on demand)
};

// Identity merges (daemon/identity.h), [identity] in the config.
struct IdentityOptions {
  std::size_t max_aliases = 100;  // a merge that would give a survivor more aliases is refused
  // Ids that never merge (placeholders clients send for "unknown").
  std::vector<std::string> blocked_ids{"", "null", "anonymous", "0", "-1"};
  // identify events on TCP and HTTP merge (false: they are rejected, identity_refused; :merge stays).
  bool identify_events = true;
};

// [kafka] keys of the group's membership (daemon/kafka_cluster.h): who owns which partition, where to redirect.
struct KafkaClusterOptions {
  std::string members_topic;   // compacted topic of the member records; load_config defaults it to "<topic>.members"
  std::string instance;        // this member's name, unique in the group; load_config defaults it to the host name
  std::string advertised_url;  // base URL the others redirect to ("http[s]://host:port"); "": from the HTTP listener
  friend bool operator==(const KafkaClusterOptions&, const KafkaClusterOptions&) = default;
};

// The model fit over every partition in Kafka mode (daemon/kafka_fit.h), keys of [kafka].
struct KafkaFitOptions {
  std::string stats_topic;                  // where the partitions' stats go; "" = "<kafka.topic>.stats"
  std::chrono::seconds stats_timeout{120};  // how long a fit waits for every partition's stats
  friend bool operator==(const KafkaFitOptions&, const KafkaFitOptions&) = default;
};

struct Config {
  std::string config_path;  // where it was loaded from ("" = defaults)
  ServerOptions server;     // listeners (TLS, the metrics listener), io threads, limits, decode options
  // State dir, partitions, durability, map size, dead-letter capacity, checkpoint thresholds (per partition).
  PartitionedStoreOptions storage;
  WriterOptions writer;
  std::vector<TokenGrant> tokens;
  ApplyConfig apply;
  EvaluateConfig evaluate;
  ValueOptions value;
  std::vector<AlertRule> alerts;  // [[alerts]] tables, in config order (reloaded on SIGHUP)
  AlertDeliveryOptions alert_delivery;
  KafkaOptions kafka;  // [kafka]: consume the input topic as a consumer group member (off while brokers is empty)
  KafkaClusterOptions kafka_cluster;  // [kafka] members_topic, instance, advertised_url
  KafkaFitOptions kafka_fit;          // [kafka] stats_topic, stats_timeout_s (after load: stats_topic resolved)
  IdentityOptions identity;
  std::string log_level = "info";       // error, warn, info, debug
  std::string log_format = "text";      // text, json
  std::string log_timestamps = "auto";  // auto (none under journald), on, off
  std::chrono::milliseconds shutdown_timeout{10'000};
};

// Defaults: loopback listeners on 8470 (HTTP) and 8471 (TCP), state in ./var/rapport, fsync.
Config default_config();

// Loads `path` over the defaults. An empty path returns the defaults.
Result<Config> load_config(const std::string& path);

// Every key load_config understands, dotted from the root ("server.http", "scoring.satisfaction_weights.csat"),
// tables included ("server", "auth.tokens"); an [[auth.tokens]] entry's keys as "auth.tokens.token". Sorted.
std::vector<std::string> config_keys();

// Cross-field checks: e.g. a non-loopback listener without tokens is refused.
Status validate_config(const Config& config);

// This machine's host name ("localhost" if it has none): the default kafka.instance.
std::string host_name();

// True for 127.0.0.0/8, ::1 and "localhost" (an "host:port" address).
bool is_loopback_address(const std::string& address);

}  // namespace rapport
