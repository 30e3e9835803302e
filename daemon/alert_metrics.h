// The rapport_alert_* series (registered on the daemon's registry). Labels: alert names from the
// config (bounded by it) and outcomes (delivered, failed, gone, dead). Thread safety: prometheus-cpp.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <string_view>

namespace rapport {

class AlertMetrics {
 public:
  explicit AlertMetrics(prometheus::Registry& registry);
  // outcome: "delivered" (2xx), "failed" (another status or a transport error: retried), "gone" (410: alert
  // disabled), "dead" (given up, or the alert is no longer configured).
  prometheus::Counter& deliveries(std::string_view alert, std::string_view outcome);
  prometheus::Histogram& delivery_latency() { return *latency_; }  // fired -> 2xx, seconds
  prometheus::Gauge& outbox_pending() { return *pending_; }
  prometheus::Gauge& outbox_dead() { return *dead_; }
  prometheus::Gauge& outbox_oldest_age() { return *oldest_age_; }  // seconds; 0 when empty
  prometheus::Gauge& outbox_dropped() { return *dropped_; }        // since start, by the outbox bound

 private:
  prometheus::Family<prometheus::Counter>* deliveries_;
  prometheus::Histogram* latency_;
  prometheus::Gauge *pending_, *dead_, *oldest_age_, *dropped_;
};

}  // namespace rapport
