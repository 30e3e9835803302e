#include "daemon/kafka_metrics.h"

#include <algorithm>
#include <string>

namespace rapport {

KafkaStateMetrics::KafkaStateMetrics(prometheus::Registry& registry) {
  restores_ = &prometheus::BuildCounter()
                   .Name("rapport_kafka_restores_total")
                   .Help("Partitions taken over, by where their state came from (changes, local, input)")
                   .Register(registry);
  restore_duration_ = &prometheus::BuildHistogram()
                           .Name("rapport_kafka_restore_duration_seconds")
                           .Help("Time to restore one partition's state before consuming it")
                           .Register(registry)
                           .Add({}, prometheus::Histogram::BucketBoundaries{0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60,
                                                                            300, 900, 3600});
  restore_read_ = &prometheus::BuildGauge()
                       .Name("rapport_kafka_restore_records_read")
                       .Help("Changes-topic records read by the restore in progress of a partition (0 when none)")
                       .Register(registry);
  restore_to_read_ = &prometheus::BuildGauge()
                          .Name("rapport_kafka_restore_records_to_read")
                          .Help("Changes-topic records the restore in progress of a partition reads (0 when none)")
                          .Register(registry);
  restore_skipped_ = &prometheus::BuildCounter()
                          .Name("rapport_kafka_restore_skipped_total")
                          .Help("Changes-topic records a restore skipped because they did not decode")
                          .Register(registry)
                          .Add({});
  auto& produce = prometheus::BuildCounter()
                      .Name("rapport_kafka_changes_produced_total")
                      .Help("Changes-topic records by outcome (delivered, error: failed or a fatal producer error)")
                      .Register(registry);
  produced_ = &produce.Add({{"outcome", "delivered"}});
  produce_errors_ = &produce.Add({{"outcome", "error"}});
}

void KafkaStateMetrics::refresh(const kafka::PublisherStats& stats) {
  std::lock_guard lock(mutex_);
  if (stats.delivered > last_delivered_) produced_->Increment(static_cast<double>(stats.delivered - last_delivered_));
  if (stats.errors > last_errors_) produce_errors_->Increment(static_cast<double>(stats.errors - last_errors_));
  last_delivered_ = std::max(last_delivered_, stats.delivered);
  last_errors_ = std::max(last_errors_, stats.errors);
}

prometheus::Counter& KafkaStateMetrics::restores(std::string_view source) {
  return restores_->Add({{"source", std::string(source)}});
}
prometheus::Gauge& KafkaStateMetrics::restore_read(std::uint32_t partition) {
  return restore_read_->Add({{"partition", std::to_string(partition)}});
}
prometheus::Gauge& KafkaStateMetrics::restore_to_read(std::uint32_t partition) {
  return restore_to_read_->Add({{"partition", std::to_string(partition)}});
}

}  // namespace rapport
