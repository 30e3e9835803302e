// The rapport_kafka_* series of the state that follows its partition (registered on the daemon's
// registry; docs/design.md, "Kafka"): rebalances, restores (how, how long, how far), and the changes
// topic's producer. Labels: partition (bounded by kMaxPartitions), kind, source. Thread safety: prometheus-cpp.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <cstdint>
#include <string_view>

namespace rapport {

class KafkaMetrics {
 public:
  explicit KafkaMetrics(prometheus::Registry& registry);
  // kind: "assigned" or "revoked" (incremental, cooperative-sticky): one per callback that changed something.
  prometheus::Counter& rebalances(std::string_view kind);
  // source: "changes" (the changes topic), "local" (the state already here is newest), "input" (replay from 0).
  prometheus::Counter& restores(std::string_view source);
  prometheus::Histogram& restore_duration() { return *restore_duration_; }  // seconds, per partition restored
  // Records of the changes partition read so far by the restore in progress, and its total (0 / 0 when none).
  prometheus::Gauge& restore_read(std::uint32_t partition);
  prometheus::Gauge& restore_total(std::uint32_t partition);
  prometheus::Counter& restore_skipped() { return *restore_skipped_; }  // undecodable changes records
  // The changes topic's producer: records delivered, and records that failed (or fatal producer errors).
  prometheus::Counter& produced() { return *produced_; }
  prometheus::Counter& produce_errors() { return *produce_errors_; }

 private:
  prometheus::Family<prometheus::Counter>* rebalances_;
  prometheus::Family<prometheus::Counter>* restores_;
  prometheus::Histogram* restore_duration_;
  prometheus::Family<prometheus::Gauge>* restore_read_;
  prometheus::Family<prometheus::Gauge>* restore_total_;
  prometheus::Counter* restore_skipped_;
  prometheus::Counter* produced_;
  prometheus::Counter* produce_errors_;
};

}  // namespace rapport
