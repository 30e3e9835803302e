// Metrics: every Prometheus metric Rapport exports, declared once.
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
#include <prometheus/registry.h>

#include <array>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "ingest/decoder.h"
#include "ingest/submission.h"
#include "scoring/event.h"

namespace rapport {

// HTTP routes, the `route` label of the HTTP metrics.
enum class Route : std::uint8_t {
  kEvents,
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
  kOther,
};
inline constexpr int kRouteCount = 16;
std::string_view route_name(Route route);

// Why a TLS handshake on a TLS listener failed: the `reason` label of
// rapport_tls_handshake_failures_total.
enum class TlsFailure : std::uint8_t {
  kPlaintext,  // the client spoke plaintext (answered in plaintext and closed)
  kError,      // the handshake failed: no common version or cipher, the client rejected the certificate, garbage
  kTimeout,    // not finished within read_timeout
};
inline constexpr int kTlsFailureCount = 3;
std::string_view tls_failure_name(TlsFailure failure);

class Metrics {
 public:
  explicit Metrics(std::string_view version);
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // --- ingest (indexed by enum values) ---
  prometheus::Counter& received(Transport t) { return *received_[idx(t)]; }
  prometheus::Counter& accepted(Transport t, EventType e) { return *accepted_[idx(t)][idx(e)]; }
  prometheus::Counter& duplicate(Transport t, EventType e) { return *duplicate_[idx(t)][idx(e)]; }
  prometheus::Counter& rejected(Transport t, RejectReason r) { return *rejected_[idx(t)][idx(r)]; }
  prometheus::Counter& refused(Transport t) { return *refused_[idx(t)]; }  // storage refused (503)
  prometheus::Counter& by_channel(Channel c) { return *by_channel_[idx(c)]; }
  prometheus::Histogram& ack_latency(Transport t) { return *ack_latency_[idx(t)]; }
  prometheus::Gauge& connections_open(Transport t) { return *connections_open_[idx(t)]; }
  prometheus::Counter& connections_refused(Transport t) { return *connections_refused_[idx(t)]; }
  // TLS listeners only (tcp, http); a client that closes before sending a byte is not counted.
  prometheus::Counter& tls_handshake_failures(Transport t, TlsFailure f) {
    return *tls_handshake_failures_[t == Transport::kTcp ? 0 : 1][idx(f)];
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

  // --- HTTP (per request, not per event) ---
  void observe_http(Route route, int status, double seconds);

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
  void set_before_scrape(std::function<void()> refresh);
  // Text exposition format 0.0.4; also refreshes the process_* gauges.
  std::string serialize();
  prometheus::Registry& registry() { return *registry_; }

 private:
  template <typename E>
  static constexpr std::size_t idx(E e) {
    return static_cast<std::size_t>(e);
  }
  void refresh_process_metrics();

  std::shared_ptr<prometheus::Registry> registry_;
  std::array<prometheus::Counter*, kTransportCount> received_{};
  std::array<std::array<prometheus::Counter*, kEventTypeCount>, kTransportCount> accepted_{};
  std::array<std::array<prometheus::Counter*, kEventTypeCount>, kTransportCount> duplicate_{};
  std::array<std::array<prometheus::Counter*, kRejectReasonCount>, kTransportCount> rejected_{};
  std::array<prometheus::Counter*, kTransportCount> refused_{};
  std::array<prometheus::Counter*, kChannelCount> by_channel_{};
  std::array<prometheus::Histogram*, kTransportCount> ack_latency_{};
  std::array<prometheus::Gauge*, kTransportCount> connections_open_{};
  std::array<prometheus::Counter*, kTransportCount> connections_refused_{};
  std::array<std::array<prometheus::Counter*, kTlsFailureCount>, 2> tls_handshake_failures_{};  // [tcp, http]
  prometheus::Histogram* commit_batch_events_ = nullptr;
  prometheus::Histogram* commit_duration_ = nullptr;
  prometheus::Counter* commit_failures_ = nullptr;
  prometheus::Histogram* checkpoint_slice_duration_ = nullptr;
  prometheus::Counter* checkpoint_failures_ = nullptr;
  prometheus::Gauge* pending_events_ = nullptr;
  prometheus::Gauge* queue_depth_ = nullptr;
  prometheus::Gauge* queue_capacity_ = nullptr;
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
  prometheus::Counter* process_cpu_ = nullptr;  // advanced by the CPU time used since the last scrape
  double process_cpu_reported_ = 0;             // guarded by refresh_mutex_
  prometheus::Gauge* process_rss_ = nullptr;
  prometheus::Gauge* process_fds_ = nullptr;
  prometheus::Gauge* process_start_ = nullptr;
  std::mutex refresh_mutex_;
  std::function<void()> before_scrape_;
};

}  // namespace rapport
