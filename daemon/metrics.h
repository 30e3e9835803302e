// Metrics: every Rapport series exported to Prometheus, declared once
// (prometheus-cpp, on a MetricsRegistry from metrics/). Implements the
// network fronts' FrontStats.
//
// Built once at start-up; modules receive a reference and keep references to
// the individual series (no family lookups on the hot path). The label sets
// are bounded: transports, event types, channel classes, reject reasons,
// routes, tiers, status codes. Never a customer id.
// Thread safety: prometheus-cpp series are thread-safe; `serialize` may be
// called from any thread.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>

#include <array>
#include <functional>
#include <string>
#include <string_view>

#include "ingest/decoder.h"
#include "ingest/net/front_stats.h"
#include "ingest/submission.h"
#include "metrics/registry.h"
#include "scoring/event.h"

namespace rapport {

// HTTP routes, the `route` label of the HTTP metrics. The first two are the
// ones the HTTP front answers itself (HttpRoute); the rest are the Api's.
enum class Route : std::uint8_t {
  kEvents = static_cast<std::uint8_t>(HttpRoute::kEvents),
  kOther = static_cast<std::uint8_t>(HttpRoute::kOther),
  kCustomer,
  kCustomerEvents,
  kCustomersBatchGet,
  kCustomersList,
  kCustomerDelete,
  kTiers,
  kModel,
  kModelFit,
  kDeadLetter,
  kDeadLetterRemove,
  kMetrics,
  kHealthz,
  kReadyz,
  kOpenApi,
  kModelBacktest,
  kChanges,
  kCluster,
  kCustomerMerge,
  kCustomerUnmerge,
  kCustomerAliases,
};
inline constexpr int kRouteCount = 22;
std::string_view route_name(Route route);
// The id the fronts carry for `route` (and back: an id no Route has counts as kOther).
inline HttpRoute http_route(Route route) { return static_cast<HttpRoute>(route); }
Route route_of(HttpRoute route);

std::string_view tls_failure_name(TlsFailure failure);

// A prometheus-cpp counter or gauge behind the fronts' StatCounter / StatGauge.
class PromCounter final : public StatCounter {
 public:
  PromCounter() = default;
  explicit PromCounter(prometheus::Counter* counter) : counter_(counter) {}
  double Value() const { return counter_->Value(); }

 protected:
  void add(double amount) override { counter_->Increment(amount); }

 private:
  prometheus::Counter* counter_ = nullptr;
};

class PromGauge final : public StatGauge {
 public:
  PromGauge() = default;
  explicit PromGauge(prometheus::Gauge* gauge) : gauge_(gauge) {}
  void Increment() override { gauge_->Increment(); }
  void Decrement() override { gauge_->Decrement(); }
  double Value() const { return gauge_->Value(); }

 private:
  prometheus::Gauge* gauge_ = nullptr;
};

class Metrics final : public FrontStats {
 public:
  explicit Metrics(std::string_view version);
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // --- ingest (indexed by enum values; the FrontStats of the network fronts) ---
  PromCounter& received(Transport t) override { return received_[idx(t)]; }
  PromCounter& accepted(Transport t, EventType e) override { return accepted_[idx(t)][idx(e)]; }
  PromCounter& duplicate(Transport t, EventType e) override { return duplicate_[idx(t)][idx(e)]; }
  PromCounter& rejected(Transport t, RejectReason r) override { return rejected_[idx(t)][idx(r)]; }
  PromCounter& refused(Transport t) override { return refused_[idx(t)]; }  // storage refused (503)
  PromCounter& by_channel(Channel c) override { return by_channel_[idx(c)]; }
  prometheus::Histogram& ack_latency(Transport t) { return *ack_latency_[idx(t)]; }
  PromGauge& connections_open(Transport t) override { return connections_open_[idx(t)]; }
  PromCounter& connections_refused(Transport t) override { return connections_refused_[idx(t)]; }
  // TLS listeners only (tcp, http); a client that closes before sending a byte is not counted.
  PromCounter& tls_handshake_failures(Transport t, TlsFailure f) override {
    return tls_handshake_failures_[t == Transport::kTcp ? 0 : 1][idx(f)];
  }

  // --- writer ---
  prometheus::Histogram& commit_batch_events() { return *commit_batch_events_; }
  prometheus::Histogram& commit_duration() { return *commit_duration_; }
  prometheus::Counter& commit_failures() { return *commit_failures_; }
  prometheus::Histogram& checkpoint_slice_duration() { return *checkpoint_slice_duration_; }
  prometheus::Counter& checkpoint_failures() { return *checkpoint_failures_; }
  prometheus::Gauge& pending_events() { return *pending_events_; }
  prometheus::Gauge& queue_depth() { return *queue_depth_; }
  prometheus::Gauge& queue_capacity() { return *queue_capacity_; }
  // Per partition (label partition="0".."P-1"): its writer's queue and group commits.
  prometheus::Gauge& partition_queue_depth(std::uint32_t partition);
  prometheus::Counter& partition_commits(std::uint32_t partition);
  prometheus::Gauge& partitions() { return *partitions_; }
  prometheus::Gauge& feed_parked() { return *feed_parked_; }  // long-polls of GET /v1/changes waiting

  // --- HTTP (per request, not per event) ---
  void observe_http(Route route, int status, double seconds);
  void observe_http(HttpRoute route, int status, double seconds) override {
    observe_http(route_of(route), status, seconds);
  }

  // --- storage, customers, model, process (refreshed before each scrape) ---
  prometheus::Gauge& customers(std::string_view tier);  // tier: platinum, gold, iron, lead, unranked
  prometheus::Gauge& lmdb_map_bytes() { return *lmdb_map_bytes_; }
  prometheus::Gauge& lmdb_used_bytes() { return *lmdb_used_bytes_; }
  prometheus::Gauge& lmdb_readers() { return *lmdb_readers_; }
  prometheus::Gauge& dead_letters() { return *dead_letters_; }
  prometheus::Counter& dead_letters_dropped() { return *dead_letters_dropped_; }  // over the per-request cap
  prometheus::Gauge& model_fit_timestamp() { return *model_fit_timestamp_; }
  prometheus::Gauge& model_fit_duration() { return *model_fit_duration_; }
  prometheus::Gauge& model_log_likelihood() { return *model_log_likelihood_; }
  prometheus::Counter& model_fits(bool ok) { return ok ? *model_fits_ok_ : *model_fits_failed_; }

  // Called at the start of every serialize() to refresh gauges (set by the daemon).
  void set_before_scrape(std::function<void()> refresh) { registry_.set_before_scrape(std::move(refresh)); }
  // Text exposition format 0.0.4; also refreshes the process_* gauges.
  std::string serialize() { return registry_.serialize(); }
  prometheus::Registry& registry() { return registry_.registry(); }

 private:
  template <typename E>
  static constexpr std::size_t idx(E e) {
    return static_cast<std::size_t>(e);
  }

  MetricsRegistry registry_;
  std::array<PromCounter, kTransportCount> received_{};
  std::array<std::array<PromCounter, kEventTypeCount>, kTransportCount> accepted_{};
  std::array<std::array<PromCounter, kEventTypeCount>, kTransportCount> duplicate_{};
  std::array<std::array<PromCounter, kRejectReasonCount>, kTransportCount> rejected_{};
  std::array<PromCounter, kTransportCount> refused_{};
  std::array<PromCounter, kChannelCount> by_channel_{};
  std::array<prometheus::Histogram*, kTransportCount> ack_latency_{};
  std::array<PromGauge, kTransportCount> connections_open_{};
  std::array<PromCounter, kTransportCount> connections_refused_{};
  std::array<std::array<PromCounter, kTlsFailureCount>, 2> tls_handshake_failures_{};  // [tcp, http]
  prometheus::Histogram* commit_batch_events_ = nullptr;
  prometheus::Histogram* commit_duration_ = nullptr;
  prometheus::Counter* commit_failures_ = nullptr;
  prometheus::Histogram* checkpoint_slice_duration_ = nullptr;
  prometheus::Counter* checkpoint_failures_ = nullptr;
  prometheus::Gauge* pending_events_ = nullptr;
  prometheus::Gauge* queue_depth_ = nullptr;
  prometheus::Gauge* queue_capacity_ = nullptr;
  prometheus::Family<prometheus::Gauge>* partition_queue_depth_ = nullptr;
  prometheus::Family<prometheus::Counter>* partition_commits_ = nullptr;
  prometheus::Gauge* partitions_ = nullptr;
  prometheus::Gauge* feed_parked_ = nullptr;
  prometheus::Family<prometheus::Counter>* http_requests_ = nullptr;
  std::array<prometheus::Histogram*, kRouteCount> http_duration_{};
  prometheus::Family<prometheus::Gauge>* customers_ = nullptr;
  prometheus::Gauge* lmdb_map_bytes_ = nullptr;
  prometheus::Gauge* lmdb_used_bytes_ = nullptr;
  prometheus::Gauge* lmdb_readers_ = nullptr;
  prometheus::Gauge* dead_letters_ = nullptr;
  prometheus::Counter* dead_letters_dropped_ = nullptr;
  prometheus::Gauge* model_fit_timestamp_ = nullptr;
  prometheus::Gauge* model_fit_duration_ = nullptr;
  prometheus::Gauge* model_log_likelihood_ = nullptr;
  prometheus::Counter* model_fits_ok_ = nullptr;
  prometheus::Counter* model_fits_failed_ = nullptr;
};

}  // namespace rapport
