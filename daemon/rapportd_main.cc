// rapportd: the Rapport daemon. Wires config, storage, the writer, the
// network fronts, the API and metrics together, and runs the signal loop
// (SIGTERM/SIGINT drain and exit 0, SIGHUP reloads the config) with
// systemd notifications (READY, STOPPING, WATCHDOG).
#include <malloc.h>
#include <signal.h>
#include <systemd/sd-daemon.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include "common/clock.h"
#include "common/log.h"
#include "daemon/alert_delivery.h"
#include "daemon/alert_metrics.h"
#include "daemon/alerts.h"
#include "daemon/api.h"
#include "daemon/config.h"
#include "daemon/identity.h"
#include "daemon/kafka_fit.h"
#include "daemon/kafka_source.h"
#include "daemon/metrics.h"
#include "daemon/partitioned_sink.h"
#include "daemon/value_service.h"
#include "daemon/writer.h"
#include "ingest/net/server.h"
#include "storage/partitioned_store.h"

#ifndef RAPPORT_VERSION
#define RAPPORT_VERSION "0.0.0"
#endif

namespace rapport {
namespace {

// Command-line values that override the config file (kept for SIGHUP reloads).
struct Overrides {
  std::string http, tcp, state_dir, durability, log_level, log_format, log_timestamps;
  int io_threads = -1;
  int partitions = 0;  // 0: not given
};

Status apply_overrides(const Overrides& o, Config& c) {
  if (!o.http.empty()) c.server.http_address = o.http == "off" ? "" : o.http;
  if (!o.tcp.empty()) c.server.tcp_address = o.tcp == "off" ? "" : o.tcp;
  if (!o.state_dir.empty()) c.storage.directory = o.state_dir;
  if (!o.durability.empty()) c.storage.durability = o.durability == "async" ? Durability::kAsync : Durability::kFsync;
  if (!o.log_level.empty()) c.log_level = o.log_level;
  if (!o.log_format.empty()) c.log_format = o.log_format;
  if (!o.log_timestamps.empty()) c.log_timestamps = o.log_timestamps;
  if (o.io_threads >= 0) c.server.io_threads = o.io_threads;
  if (o.partitions > 0) c.storage.partitions = static_cast<std::uint32_t>(o.partitions);
  return validate_config(c);
}

// Test hook (docs/design.md, "Test hooks"): RAPPORT_TEST_STALL_WRITER_AFTER=N makes the storage writer block
// after N group commits, so that tests can prove the watchdog stops. Only read when set.
constexpr const char* kStallWriterEnv = "RAPPORT_TEST_STALL_WRITER_AFTER";

Result<std::optional<std::uint64_t>> stall_writer_hook() {
  const char* value = std::getenv(kStallWriterEnv);
  if (value == nullptr) return std::optional<std::uint64_t>();
  const std::string_view text(value);
  std::uint64_t n = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
    return Status::Error(std::string(kStallWriterEnv) + " must be a number of commits, got '" + std::string(text) +
                         "'");
  }
  return std::optional<std::uint64_t>(n);
}

Result<Config> load(const std::string& path, const Overrides& o) {
  auto config = load_config(path);
  if (!config.ok()) return config.status();
  if (Status s = apply_overrides(o, *config); !s.ok()) return s;
  return config;
}

void apply_log_settings(const Config& c) {
  set_log_level(parse_log_level(c.log_level));
  set_log_format(parse_log_format(c.log_format));
  set_log_timestamps(parse_log_timestamps(c.log_timestamps));
}

// A usage or configuration error: "rapportd: <message>" on stderr, exit code 2 (README, "Exit codes").
int usage_error(const std::string& message) {
  std::fprintf(stderr, "rapportd: %s\n", message.c_str());
  return 2;
}

void refresh_storage_metrics(PartitionedStore& store, Metrics& metrics, const ValueService& value) {
  const StoreStats s = store.stats();
  metrics.lmdb_map_bytes().Set(static_cast<double>(s.map_bytes));
  metrics.lmdb_used_bytes().Set(static_cast<double>(s.used_bytes));
  metrics.lmdb_readers().Set(static_cast<double>(s.readers));
  metrics.pending_events().Set(static_cast<double>(s.pending_events));
  metrics.dead_letters().Set(static_cast<double>(s.dead_letters));
  const auto fit = value.current();
  const auto tiers = customers_by_tier(fit.get(), s.customers);
  for (int t = 0; t < kTierCount; ++t) {
    metrics.customers(tier_name(static_cast<Tier>(t))).Set(static_cast<double>(tiers[t]));
  }
}

// One observer per partition while any alert is configured; none (no cost per event) otherwise.
void install_alert_observers(PartitionedStore& store, Alerts& alerts) {
  for (std::uint32_t p = 0; p < store.partition_count(); ++p) {
    store.partition(p).set_outbox_observer(alerts.empty() ? nullptr : alerts.make_observer());
  }
}

// The TCP and HTTP fronts' decode options: identify events merge through the identity service there, unless
// [identity] identify_events is off or in Kafka mode, which has no merges. (rapportctl import decodes with
// [ingest] alone: it refuses them.)
constexpr std::string_view kIdentifyEventsOff =
    "identify events are turned off on this rapportd ([identity] identify_events = false): merge with "
    "POST /v1/customers/{id}:merge (admin scope)";
DecodeOptions front_decode(const Config& config) {
  DecodeOptions decode = config.server.decode;
  decode.identify = !config.kafka.enabled() && config.identity.identify_events;
  decode.identify_refusal = config.kafka.enabled() ? kIdentifyKafkaRefusal : kIdentifyEventsOff;
  return decode;
}

// Switches the alerts to a new fit's model; if a tier-change alert is configured and there was a previous
// model, a job on the fitter thread compares every customer's tier under both and queues the alerts on the
// partitions' writers.
void queue_tier_changes(ValueService& value, Writers& writer, PartitionedStore& store, Alerts& alerts,
                        std::shared_ptr<const ValueSnapshot> previous, std::shared_ptr<const ValueSnapshot> current) {
  if (!current) return;
  alerts.set_model(std::shared_ptr<const ValueModel>(current, &current->model));
  log_info("alerts evaluate with the new value model",
           {{"fitted_at", format_rfc3339(current->model.fitted_at_ms)},
            {"tier_changes", previous ? "compared with the previous model" : "none (no previous model)"}});
  const auto context = alerts.context();
  const bool wanted =
      std::any_of(context->rules.begin(), context->rules.end(), [](const AlertRule& r) { return r.tier_changed; });
  if (!previous || !wanted) return;
  const auto queued = value.request_job([&store, &writer, &alerts, previous, current](bool cancelled) {
    if (cancelled) return;
    std::vector<std::vector<std::string>> records(store.partition_count());
    const std::int64_t now = alerts.now_ms();
    const Status s = store.for_each_customer_unordered([&](std::string_view id, const CustomerState& state) {
      alerts.tier_changes(id, state, &previous->model, current->model, now, records[store.partition_of(id)]);
      return true;
    });
    if (!s.ok()) log_error("tier-change alerts: cannot read the customers: " + s.message());
    for (std::uint32_t p = 0; p < store.partition_count(); ++p) {
      if (records[p].empty()) continue;
      auto batch = std::make_shared<std::vector<std::string>>(std::move(records[p]));
      writer.partition(p).post([batch](Store& partition) {
        if (Status added = partition.add_outbox(*batch); !added.ok()) {
          log_error("tier-change alerts: cannot write the outbox: " + added.message());
        }
      });
    }
  });
  if (queued != ValueService::JobQueued::kQueued)
    log_warn("tier-change alerts skipped for this fit: the fitter is busy");
}

int run(const std::string& config_path, const Overrides& overrides) {
  auto loaded = load(config_path, overrides);
  if (!loaded.ok()) return usage_error("configuration: " + loaded.message());
  auto config = std::make_shared<const Config>(std::move(loaded.value()));
  apply_log_settings(*config);
  const auto stall_hook = stall_writer_hook();
  if (!stall_hook.ok()) return usage_error(stall_hook.message());
  if (stall_hook->has_value()) {
    log_warn(std::string("test hook ") + kStallWriterEnv + "=" + std::to_string(**stall_hook) +
             ": the storage writer will stall after that many commits (never set this outside tests)");
  }
  log_info(std::string("rapportd ") + RAPPORT_VERSION + " starting; config " +
           (config->config_path.empty() ? std::string("(defaults)") : config->config_path) + ", state dir " +
           config->storage.directory + ", durability " +
           (config->storage.durability == Durability::kFsync ? "fsync" : "async"));

  // Signals are handled synchronously by this thread only; every thread started below inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  // A file-size limit (ulimit -f, systemd LimitFSIZE=) must turn into failed writes (EFBIG) that storage
  // reports as clean refusals, not into SIGXFSZ killing the daemon mid-commit.
  signal(SIGXFSZ, SIG_IGN);

  PartitionedStoreOptions store_options = config->storage;
  store_options.checkpoint_in_apply_batch = false;  // the writers step checkpoints after acknowledging
  auto store = PartitionedStore::open(store_options);
  if (!store.ok()) {
    log_error("storage: " + store.message());
    return 2;
  }
  log_info("storage: " + std::to_string((*store)->partition_count()) + " partition(s), one writer each");
  Metrics metrics(RAPPORT_VERSION);
  WriterOptions writer_options = config->writer;
  writer_options.test_stall_after_commits = *stall_hook;
  Writers writer(**store, metrics, writer_options, config->apply);
  // Identity: an operation recorded before a crash completes before anything else writes.
  IdentityService identity(**store, writer, metrics.registry(), config->identity, config->apply);
  if (Status recovered = identity.recover(); !recovered.ok()) {
    log_error(recovered.message());
    return 2;
  }
  if (const char* hook = std::getenv(kIdentityCrashEnv)) {
    const std::string_view step(hook);
    if (step != "parked" && step != "recorded" && step != "applied" && step != "erased" && step != "committed") {
      return usage_error(std::string(kIdentityCrashEnv) +
                         " must be one of parked, recorded, applied, erased, committed (a test hook)");
    }
    log_warn(std::string("test hook ") + kIdentityCrashEnv + "=" + hook +
             ": rapportd kills itself at that step of an identity operation (never set this outside tests)");
  }
  writer.set_aliases(&identity.table());
  // Identify events (TCP, HTTP) merge through the identity service; Kafka mode has no merges.
  if (!config->kafka.enabled()) {
    writer.set_merge(
        [&identity](std::string survivor, std::vector<std::string> from, MergeDone done) {
          identity.merge(std::move(survivor), std::move(from),
                         [done = std::move(done)](IdentityAnswer&& answer) { done(answer.status, answer.error); });
        },
        {});
  } else {
    writer.set_merge(nullptr, std::string(kIdentifyKafkaRefusal));
  }
  writer.start();
  identity.start();
  ValueService value(**store, writer, metrics, *config);
  if (Status loaded_model = value.load(); !loaded_model.ok()) log_warn(loaded_model.message());
  // Kafka mode ([kafka]): a consumer group member feeding the partitions' writers (started below), and
  // fits that see every partition through the stats topic.
  KafkaSource kafka_source(**store, writer);
  std::unique_ptr<KafkaConsumer> kafka;
  std::unique_ptr<KafkaFit> kafka_fit;
  if (config->kafka.enabled()) {
    kafka = std::make_unique<KafkaConsumer>(config->kafka, config->server.decode, kafka_source, metrics);
    kafka_fit = std::make_unique<KafkaFit>(
        **store, metrics.registry(), config->kafka_fit.stats_timeout,
        [consumer = kafka.get()] {
          std::vector<std::uint32_t> held;
          for (const auto& p : consumer->lag()) held.push_back(static_cast<std::uint32_t>(p.partition));
          return held;
        },
        [&value](std::int64_t as_of_ms) {
          value.request_fit([](const Result<std::shared_ptr<const ValueSnapshot>>&) {}, as_of_ms);
        });
    Status started = kafka_fit->start(kafka::ClientOptions{config->kafka.brokers, config->kafka.properties},
                                      config->kafka_fit.stats_topic);
    if (!started.ok()) {
      log_error(started.message());
      identity.stop();
      writer.stop();
      return 2;
    }
    value.set_kafka_fit(kafka_fit.get());
  }
  value.start();
  // Alerts: rules evaluated as events commit (an observer per partition), deliveries from the outboxes.
  AlertMetrics alert_metrics(metrics.registry());
  Alerts alerts([] { return wall_ms(); });
  alerts.set_rules(config->alerts, config->evaluate, config->value);
  auto alert_fit = value.current();
  if (alert_fit) alerts.set_model(std::shared_ptr<const ValueModel>(alert_fit, &alert_fit->model));
  install_alert_observers(**store, alerts);
  AlertDelivery delivery(**store, writer, alerts, alert_metrics, config->alert_delivery);
  delivery.start();
  Api api(**store, writer, value, metrics, config);
  api.set_identity(&identity);
  writer.set_on_change([&api] { api.notify_changes(); });
  std::unique_ptr<KafkaMetrics> kafka_metrics;
  std::unique_ptr<KafkaStateMetrics> kafka_state_metrics;
  if (config->kafka.enabled()) {
    kafka_metrics = std::make_unique<KafkaMetrics>(metrics.registry());
    // State follows its partition: restores on take-over, the changes topic after each commit and erasure.
    kafka_state_metrics = std::make_unique<KafkaStateMetrics>(metrics.registry());
    if (Status enabled = kafka_source.enable_state(config->kafka, *kafka_state_metrics); !enabled.ok()) {
      log_error(enabled.message());
      delivery.stop(config->shutdown_timeout);
      value.stop();
      identity.stop();
      writer.stop();
      return 2;
    }
    api.set_on_erased([&kafka_source](std::string_view customer_id) { kafka_source.erased(customer_id); });
  }
  metrics.set_before_scrape([&] {
    refresh_storage_metrics(**store, metrics, value);
    if (kafka) {
      kafka_metrics->refresh(*kafka);
      kafka_source.refresh_metrics();
    }
  });

  // systemd socket activation: adopt listeners passed as "http" / "tcp" (FileDescriptorName=).
  ServerOptions server_options = config->server;
  server_options.decode = front_decode(*config);
  char** names = nullptr;
  const int passed = sd_listen_fds_with_names(1, &names);
  for (int i = 0; i < passed; ++i) {
    const int fd = SD_LISTEN_FDS_START + i;
    const std::string name = names != nullptr && names[i] != nullptr ? names[i] : "";
    if (name == "http") {
      server_options.http_fd = fd;
    } else if (name == "tcp") {
      server_options.tcp_fd = fd;
    } else if (name == "metrics") {
      server_options.metrics_fd = fd;
    } else {
      log_warn("ignoring passed socket named '" + name + "' (expected 'http', 'tcp' or 'metrics')");
    }
  }
  if (names != nullptr) {
    for (int i = 0; i < passed; ++i) free(names[i]);
    free(names);
  }
  if (passed > 0) log_info("adopted " + std::to_string(passed) + " listener(s) from systemd");

  auto server = NetworkServer::start(server_options, api, writer.sink(), metrics,
                                     std::make_shared<const TokenSet>(config->tokens));
  if (!server.ok()) {
    log_error("listen: " + server.message());
    delivery.stop(config->shutdown_timeout);
    if (kafka_fit) kafka_fit->stop();  // a fit waiting for stats returns
    value.stop();
    identity.stop();
    writer.stop();
    return 2;
  }
  if (server_options.tls.enabled()) {
    log_info(std::string("tls: http ") + (server_options.tls.http ? "on" : "off") + ", tcp " +
             (server_options.tls.tcp ? "on" : "off") + ", TLS >= " + server_options.tls.min_version + ", cert " +
             server_options.tls.cert_file);
  }
  if (kafka) {
    if (Status started = kafka->start(); !started.ok()) {
      log_error(started.message());
      (*server)->shutdown(config->shutdown_timeout);
      delivery.stop(config->shutdown_timeout);
      if (kafka_fit) kafka_fit->stop();  // a fit waiting for stats returns
      value.stop();
      writer.stop();
      return 2;
    }
  }
  // Before the "listening" line, which tools wait for: the metrics address is known by then.
  if (!(*server)->metrics_endpoint().empty()) log_info("listening metrics=" + (*server)->metrics_endpoint());
  log_info("listening http=" + (*server)->http_endpoint() + " tcp=" + (*server)->tcp_endpoint());
  sd_notify(0, "READY=1");

  std::uint64_t watchdog_usec = 0;
  const bool watchdog = sd_watchdog_enabled(0, &watchdog_usec) > 0;
  const auto tick = watchdog ? std::chrono::microseconds(watchdog_usec / 2) : std::chrono::microseconds(1'000'000);
  writer.stalled();  // records the writers' progress
  // The store keeps the checkpoint settings it was opened with (a reload changes them only on restart).
  const std::chrono::milliseconds checkpoint_interval = (*store)->options().checkpoint_interval;
  auto next_checkpoint = std::chrono::steady_clock::now() + checkpoint_interval;
  for (;;) {
    timespec timeout{static_cast<time_t>(tick.count() / 1'000'000), static_cast<long>(tick.count() % 1'000'000) * 1000};
    const int sig = sigtimedwait(&signals, nullptr, &timeout);
    if (sig == SIGTERM || sig == SIGINT) {
      log_info(std::string("received ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT") + ": draining");
      break;
    }
    if (sig == SIGHUP) {
      log_debug("SIGHUP: reloading " +
                (config->config_path.empty() ? std::string("(no config file)") : config->config_path));
      auto reloaded = load(config->config_path, overrides);
      if (!reloaded.ok()) {
        log_error("reload failed, keeping the running config: " + reloaded.message());
        continue;
      }
      if (reloaded->server.http_address != config->server.http_address ||
          reloaded->server.tcp_address != config->server.tcp_address ||
          reloaded->server.metrics_address != config->server.metrics_address ||
          reloaded->server.tls.http != config->server.tls.http || reloaded->server.tls.tcp != config->server.tls.tcp ||
          reloaded->storage.directory != config->storage.directory ||
          reloaded->storage.partitions != config->storage.partitions ||
          reloaded->storage.checkpoint_events != config->storage.checkpoint_events ||
          reloaded->storage.checkpoint_interval != config->storage.checkpoint_interval ||
          !(reloaded->kafka == config->kafka) || !(reloaded->kafka_fit == config->kafka_fit)) {
        log_warn(
            "listen addresses, which listeners speak TLS, the state dir, partitions, the checkpoint settings and "
            "[kafka] change only on restart");
      }
      if (server_options.tls.enabled()) {  // a new certificate for new connections; the listeners stay as started
        TlsOptions tls = reloaded->server.tls;
        tls.http = server_options.tls.http;
        tls.tcp = server_options.tls.tcp;
        if (Status s = (*server)->reload_tls(tls); !s.ok()) {
          log_error("keeping the running TLS certificate: " + s.message());
        }
      }
      config = std::make_shared<const Config>(std::move(reloaded.value()));
      apply_log_settings(*config);
      (*server)->set_tokens(std::make_shared<const TokenSet>(config->tokens));
      (*server)->set_limits(config->server.limits, front_decode(*config));
      writer.set_apply_config(config->apply);
      api.set_config(config);
      identity.set_options(config->identity, config->apply);
      value.set_config(*config);
      alerts.set_rules(config->alerts, config->evaluate, config->value);
      install_alert_observers(**store, alerts);
      delivery.set_options(config->alert_delivery);
      delivery.enable_all();
      log_info("configuration reloaded",
               {{"tokens", static_cast<std::uint64_t>(config->tokens.size())}, {"log_level", config->log_level}});
      continue;
    }
    // A new fit: alerts evaluate with its model; tier-change alerts compare its tiers with the previous one's.
    if (auto fit = value.current(); fit != alert_fit) {
      queue_tier_changes(value, writer, **store, alerts, alert_fit, fit);
      alert_fit = fit;
    }
    // Checkpoint on the clock too: the store only checks its interval when a batch arrives, so an
    // idle daemon would otherwise keep its last events in memory (safe in the journal) indefinitely.
    if (std::chrono::steady_clock::now() >= next_checkpoint) {
      next_checkpoint = std::chrono::steady_clock::now() + checkpoint_interval;
      log_debug("checkpoint due on the clock",
                {{"interval_ms", static_cast<std::int64_t>(checkpoint_interval.count())}});
      writer.request_idle_checkpoints();
    }
    // Timeout: the watchdog is fed only while the writer makes progress or has nothing to do.
    if (watchdog) {
      if (!writer.stalled()) {
        sd_notify(0, "WATCHDOG=1");
      } else {
        log_warn("storage writer has made no progress; withholding the watchdog ping");
      }
    }
  }

  sd_notify(0, "STOPPING=1");
  if (kafka) kafka->stop();  // leaves the group; what the writers hold still commits with its offsets
  api.stop_changes();        // parked long-polls answer now, so they do not hold the shutdown up
  (*server)->shutdown(config->shutdown_timeout);
  delivery.stop(config->shutdown_timeout);
  if (kafka_fit) kafka_fit->stop();  // a fit waiting for stats returns
  value.stop();
  identity.stop();
  writer.stop();
  log_info("stopped cleanly");
  return 0;
}

}  // namespace
}  // namespace rapport

int main(int argc, char** argv) {
  // Blocks of 1 MiB or more (HTTP bodies, their answers) are mmapped and unmapped when freed. By default
  // glibc raises this threshold to the size of the first such block freed; later ones then come from the
  // io threads' arenas, whose freed tops stay with the process: RSS would stay at a burst's high-water mark.
  ::mallopt(M_MMAP_THRESHOLD, 1 << 20);
  CLI::App app{
      "rapportd — customer-interaction scoring daemon.\n"
      "Ingests events over TCP NDJSON and HTTP (and, when the config sets kafka.brokers, from a Kafka topic as\n"
      "a consumer group member whose value model is fitted over every member's partitions), keeps per-customer\n"
      "scores in LMDB, serves them over HTTP.\n"
      "Exit codes: 0 clean stop (SIGTERM/SIGINT) or --help/--version/--check-config ok; 2 usage, configuration,\n"
      "storage, listen or Kafka start-up error (\"rapportd: <message>\" on stderr for usage and configuration\n"
      "errors)."};
  std::string config_path;
  rapport::Overrides o;
  app.add_option("-c,--config", config_path, "TOML config file (every key optional; see docs/config.md)")
      ->check(CLI::ExistingFile);
  app.add_option("--http", o.http,
                 "HTTP listen address host:port (default 127.0.0.1:8470; port 0 = any free port; 'off' disables)");
  app.add_option(
      "--tcp", o.tcp,
      "TCP NDJSON listen address host:port (default 127.0.0.1:8471; port 0 = any free port; 'off' disables)");
  app.add_option("--state-dir", o.state_dir, "Directory of the LMDB environment (default ./var/rapport)");
  app.add_option("--durability", o.durability,
                 "fsync (default: acked = on disk) or async (faster; a machine crash may lose recent acks)")
      ->check(CLI::IsMember({"fsync", "async"}));
  app.add_option("--partitions", o.partitions,
                 "Partitions of the state dir, one writer each (default: storage.partitions, else the dir's own "
                 "layout, else one per core for a new dir; changing it needs `rapportctl migrate`)")
      ->check(CLI::Range(1, static_cast<int>(rapport::kMaxPartitions)));
  app.add_option("--io-threads", o.io_threads, "Network io threads (default 0 = one per core)")
      ->check(CLI::Range(0, 256));
  app.add_option("--log-level", o.log_level,
                 "error, warn, info (default) or debug (debug adds each connection opened and closed, checkpoint "
                 "steps, fits, reloads)")
      ->check(CLI::IsMember({"error", "warn", "info", "debug"}));
  app.add_option("--log-format", o.log_format,
                 "text (default: one line per message) or json (one object per line: ts, level, msg and the "
                 "message's fields, for log shippers)")
      ->check(CLI::IsMember({"text", "json"}));
  app.add_option("--log-timestamps", o.log_timestamps,
                 "auto (default: RFC 3339 UTC timestamps with milliseconds, except when stderr is the journal, "
                 "which timestamps lines itself), on or off")
      ->check(CLI::IsMember({"auto", "on", "off"}));
  bool check_only = false;
  app.add_flag("--check-config", check_only, "Validate the configuration and exit (0 = valid)");
  app.set_version_flag("-V,--version", std::string("rapportd ") + RAPPORT_VERSION);
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --version
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return rapport::usage_error(std::string(e.what()) + " (rapportd --help lists the options)");
  }
  if (check_only) {
    auto config = rapport::load(config_path, o);
    if (!config.ok()) return rapport::usage_error(config.message());
    std::printf("configuration ok\n");
    return 0;
  }
  return rapport::run(config_path, o);
}
