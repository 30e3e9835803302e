#include "daemon/metrics.h"

#include <string>

namespace rapport {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;
using prometheus::Histogram;

// In Route order.
// clang-format off
constexpr std::array<std::string_view, kRouteCount> kRouteNames = {
    "events",          "other",   "customer", "customer_events", "customers_batch_get", "customers_list",
    "customer_delete", "tiers",   "model",    "model_fit",       "deadletter",          "deadletter_remove",
    "metrics",         "healthz", "readyz",   "openapi",         "model_backtest",      "changes",
    "cluster",         "customer_merge",  "customer_unmerge",    "customer_aliases",
};
// clang-format on

constexpr std::array<std::string_view, kTlsFailureCount> kTlsFailureNames = {"plaintext", "error", "timeout"};

constexpr std::array<std::string_view, 5> kTiers = {"platinum", "gold", "iron", "lead", "unranked"};

std::string str(std::string_view v) { return std::string(v); }

Histogram::BucketBoundaries latency_buckets() { return MetricsRegistry::latency_buckets(); }

}  // namespace

std::string_view route_name(Route route) { return kRouteNames[static_cast<std::size_t>(route)]; }

Route route_of(HttpRoute route) {
  const auto id = static_cast<std::size_t>(route);
  return id < kRouteNames.size() ? static_cast<Route>(id) : Route::kOther;
}

std::string_view tls_failure_name(TlsFailure failure) { return kTlsFailureNames[static_cast<std::size_t>(failure)]; }

Metrics::Metrics(std::string_view version) {
  auto& reg = registry_.registry();
  BuildGauge()
      .Name("rapport_build_info")
      .Help("Build information; the value is always 1")
      .Register(reg)
      .Add({{"version", str(version)}})
      .Set(1);

  auto& received = BuildCounter()
                       .Name("rapport_events_received_total")
                       .Help("Items received (events and rejected lines) by transport")
                       .Register(reg);
  auto& accepted = BuildCounter()
                       .Name("rapport_events_accepted_total")
                       .Help("Events durably stored, by transport and event type")
                       .Register(reg);
  auto& duplicate =
      BuildCounter()
          .Name("rapport_events_duplicate_total")
          .Help("Events acknowledged as duplicates (same customer_id and event_id), by transport and type")
          .Register(reg);
  auto& rejected = BuildCounter()
                       .Name("rapport_events_rejected_total")
                       .Help("Items rejected by validation, by transport and reason")
                       .Register(reg);
  auto& refused = BuildCounter()
                      .Name("rapport_events_refused_total")
                      .Help("Events not stored because storage refused the batch (sender must retry)")
                      .Register(reg);
  auto& ack = BuildHistogram()
                  .Name("rapport_ack_latency_seconds")
                  .Help("Time from receiving a chunk or request to its durable acknowledgement")
                  .Register(reg);
  auto& open = BuildGauge().Name("rapport_connections_open").Help("Open client connections").Register(reg);
  auto& conn_refused = BuildCounter()
                           .Name("rapport_connections_refused_total")
                           .Help("Connections refused because the connection cap was reached")
                           .Register(reg);
  for (int t = 0; t < kTransportCount; ++t) {
    const std::string tn = str(transport_name(static_cast<Transport>(t)));
    received_[t] = PromCounter(&received.Add({{"transport", tn}}));
    refused_[t] = PromCounter(&refused.Add({{"transport", tn}}));
    ack_latency_[t] = &ack.Add({{"transport", tn}}, latency_buckets());
    connections_open_[t] = PromGauge(&open.Add({{"transport", tn}}));
    connections_refused_[t] = PromCounter(&conn_refused.Add({{"transport", tn}}));
    for (int e = 0; e < kEventTypeCount; ++e) {
      const std::string en = str(event_type_name(static_cast<EventType>(e)));
      accepted_[t][e] = PromCounter(&accepted.Add({{"transport", tn}, {"type", en}}));
      duplicate_[t][e] = PromCounter(&duplicate.Add({{"transport", tn}, {"type", en}}));
    }
    for (int r = 0; r < kRejectReasonCount; ++r) {
      rejected_[t][r] = PromCounter(
          &rejected.Add({{"transport", tn}, {"reason", str(reject_reason_label(static_cast<RejectReason>(r)))}}));
    }
  }
  auto& tls_failures = BuildCounter()
                           .Name("rapport_tls_handshake_failures_total")
                           .Help(
                               "Connections to a TLS listener closed because the TLS handshake failed, by transport "
                               "and reason (plaintext client, handshake error, timeout)")
                           .Register(reg);
  for (const Transport t : {Transport::kTcp, Transport::kHttp}) {
    for (int f = 0; f < kTlsFailureCount; ++f) {
      tls_handshake_failures_[t == Transport::kTcp ? 0 : 1][f] = PromCounter(&tls_failures.Add(
          {{"transport", str(transport_name(t))}, {"reason", str(tls_failure_name(static_cast<TlsFailure>(f)))}}));
    }
  }
  auto& channels = BuildCounter()
                       .Name("rapport_events_by_channel_total")
                       .Help("Accepted events by channel class (unknown labels count as other)")
                       .Register(reg);
  for (int c = 0; c < kChannelCount; ++c) {
    by_channel_[c] = PromCounter(&channels.Add({{"channel", str(channel_name(static_cast<Channel>(c)))}}));
  }

  commit_batch_events_ =
      &BuildHistogram()
           .Name("rapport_commit_batch_events")
           .Help("Events per storage commit (group commit size)")
           .Register(reg)
           .Add({}, Histogram::BucketBoundaries{1, 10, 100, 1000, 5000, 10000, 50000, 100000, 500000});
  commit_duration_ = &BuildHistogram()
                          .Name("rapport_commit_duration_seconds")
                          .Help("Duration of one storage commit including fsync")
                          .Register(reg)
                          .Add({}, latency_buckets());
  commit_failures_ = &BuildCounter()
                          .Name("rapport_commit_failures_total")
                          .Help("Storage commits that failed (batch refused, nothing stored)")
                          .Register(reg)
                          .Add({});
  checkpoint_slice_duration_ =
      &BuildHistogram()
           .Name("rapport_checkpoint_slice_duration_seconds")
           .Help("Duration of one checkpoint slice (written after the batch before it was acknowledged)")
           .Register(reg)
           .Add({}, latency_buckets());
  checkpoint_failures_ =
      &BuildCounter()
           .Name("rapport_checkpoint_failures_total")
           .Help("Checkpoint slices that failed (retried; the journal holds every acknowledged event)")
           .Register(reg)
           .Add({});
  pending_events_ = &BuildGauge()
                         .Name("rapport_checkpoint_pending_events")
                         .Help("Acknowledged events held in memory and the journal, not yet written by a checkpoint")
                         .Register(reg)
                         .Add({});
  queue_depth_ = &BuildGauge()
                      .Name("rapport_queue_depth_events")
                      .Help("Events waiting for the storage writers (all partitions)")
                      .Register(reg)
                      .Add({});
  queue_capacity_ = &BuildGauge()
                         .Name("rapport_queue_capacity_events")
                         .Help("Capacity of the writer queues in events (all partitions)")
                         .Register(reg)
                         .Add({});
  partition_queue_depth_ = &BuildGauge()
                                .Name("rapport_partition_queue_depth_events")
                                .Help("Events waiting for one partition's storage writer")
                                .Register(reg);
  partition_commits_ = &BuildCounter()
                            .Name("rapport_partition_commits_total")
                            .Help("Group commits by one partition's storage writer")
                            .Register(reg);
  partitions_ = &BuildGauge()
                     .Name("rapport_partitions")
                     .Help("Partitions of the state dir (one writer each)")
                     .Register(reg)
                     .Add({});
  feed_parked_ = &BuildGauge()
                      .Name("rapport_feed_parked_requests")
                      .Help("Long-polls of GET /v1/changes waiting for a change")
                      .Register(reg)
                      .Add({});

  http_requests_ =
      &BuildCounter().Name("rapport_http_requests_total").Help("HTTP requests by route and status code").Register(reg);
  auto& http_duration = BuildHistogram()
                            .Name("rapport_http_request_duration_seconds")
                            .Help("HTTP request duration by route")
                            .Register(reg);
  for (int r = 0; r < kRouteCount; ++r) {
    http_duration_[r] = &http_duration.Add({{"route", str(route_name(static_cast<Route>(r)))}}, latency_buckets());
  }

  customers_ = &BuildGauge()
                    .Name("rapport_customers")
                    .Help("Customers by pyramid tier (unranked before the first model fit)")
                    .Register(reg);
  for (std::string_view tier : kTiers) customers_->Add({{"tier", str(tier)}});
  lmdb_map_bytes_ = &BuildGauge().Name("rapport_lmdb_map_size_bytes").Help("LMDB map size").Register(reg).Add({});
  lmdb_used_bytes_ =
      &BuildGauge().Name("rapport_lmdb_used_bytes").Help("LMDB pages in use times page size").Register(reg).Add({});
  lmdb_readers_ = &BuildGauge().Name("rapport_lmdb_readers").Help("LMDB reader slots in use").Register(reg).Add({});
  dead_letters_ = &BuildGauge()
                       .Name("rapport_dead_letters")
                       .Help("Rejected items kept in the dead-letter store")
                       .Register(reg)
                       .Add({});
  dead_letters_dropped_ = &BuildCounter()
                               .Name("rapport_dead_letters_dropped_total")
                               .Help("Rejected items not dead-lettered: over the per-request cap")
                               .Register(reg)
                               .Add({});
  model_fit_timestamp_ = &BuildGauge()
                              .Name("rapport_model_fit_timestamp_seconds")
                              .Help("Unix time of the last successful value-model fit (0 = never)")
                              .Register(reg)
                              .Add({});
  model_fit_duration_ = &BuildGauge()
                             .Name("rapport_model_fit_duration_seconds")
                             .Help("Duration of the last value-model fit")
                             .Register(reg)
                             .Add({});
  model_log_likelihood_ = &BuildGauge()
                               .Name("rapport_model_log_likelihood")
                               .Help("BG/NBD log-likelihood of the last fit")
                               .Register(reg)
                               .Add({});
  auto& fits = BuildCounter().Name("rapport_model_fits_total").Help("Value-model fits by result").Register(reg);
  model_fits_ok_ = &fits.Add({{"result", "ok"}});
  model_fits_failed_ = &fits.Add({{"result", "error"}});
}

void Metrics::observe_http(Route route, int status, double seconds) {
  http_requests_->Add({{"route", str(route_name(route))}, {"code", std::to_string(status)}}).Increment();
  http_duration_[idx(route)]->Observe(seconds);
}

prometheus::Gauge& Metrics::partition_queue_depth(std::uint32_t partition) {
  return partition_queue_depth_->Add({{"partition", std::to_string(partition)}});
}

prometheus::Counter& Metrics::partition_commits(std::uint32_t partition) {
  return partition_commits_->Add({{"partition", std::to_string(partition)}});
}

prometheus::Gauge& Metrics::customers(std::string_view tier) { return customers_->Add({{"tier", str(tier)}}); }

}  // namespace rapport
