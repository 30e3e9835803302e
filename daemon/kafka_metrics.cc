#include "daemon/kafka_metrics.h"

#include <string>

namespace rapport {

KafkaMetrics::KafkaMetrics(prometheus::Registry& registry) {
  rebalances_ =
      &prometheus::BuildCounter()
           .Name("rapport_kafka_rebalances_total")
           .Help("Consumer group rebalances that changed this instance's partitions, by kind (assigned, revoked)")
           .Register(registry);
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
  restore_total_ = &prometheus::BuildGauge()
                        .Name("rapport_kafka_restore_records_total")
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

prometheus::Counter& KafkaMetrics::rebalances(std::string_view kind) {
  return rebalances_->Add({{"kind", std::string(kind)}});
}
prometheus::Counter& KafkaMetrics::restores(std::string_view source) {
  return restores_->Add({{"source", std::string(source)}});
}
prometheus::Gauge& KafkaMetrics::restore_read(std::uint32_t partition) {
  return restore_read_->Add({{"partition", std::to_string(partition)}});
}
prometheus::Gauge& KafkaMetrics::restore_total(std::uint32_t partition) {
  return restore_total_->Add({{"partition", std::to_string(partition)}});
}

}  // namespace rapport
