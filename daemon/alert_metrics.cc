#include "daemon/alert_metrics.h"

#include <string>

namespace rapport {

AlertMetrics::AlertMetrics(prometheus::Registry& registry) {
  deliveries_ = &prometheus::BuildCounter()
                     .Name("rapport_alert_deliveries_total")
                     .Help("Alert delivery attempts by alert and outcome (delivered, failed, gone, dead)")
                     .Register(registry);
  latency_ = &prometheus::BuildHistogram()
                  .Name("rapport_alert_delivery_latency_seconds")
                  .Help("Time from an alert firing to its receiver's 2xx answer")
                  .Register(registry)
                  .Add({}, prometheus::Histogram::BucketBoundaries{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
                                                                   300, 900, 3600, 21600, 86400});
  auto& gauges = prometheus::BuildGauge()
                     .Name("rapport_alert_outbox")
                     .Help("Alerts outbox entries: pending (not yet delivered) and dead (given up)")
                     .Register(registry);
  pending_ = &gauges.Add({{"area", "pending"}});
  dead_ = &gauges.Add({{"area", "dead"}});
  oldest_age_ = &prometheus::BuildGauge()
                     .Name("rapport_alert_outbox_oldest_age_seconds")
                     .Help("Age of the oldest pending alert delivery (0 when none is pending)")
                     .Register(registry)
                     .Add({});
  dropped_ = &prometheus::BuildGauge()
                  .Name("rapport_alert_outbox_dropped")
                  .Help("Pending alert deliveries dropped by the outbox bound (storage.outbox_capacity) since start")
                  .Register(registry)
                  .Add({});
}

prometheus::Counter& AlertMetrics::deliveries(std::string_view alert, std::string_view outcome) {
  return deliveries_->Add({{"alert", std::string(alert)}, {"outcome", std::string(outcome)}});
}

}  // namespace rapport
