// The rapport_kafka_* series of the state that follows its partition (registered on the daemon's
// registry; docs/design.md, "Kafka group"): restores (how, how long, how far) and the changes topic's
// producer. (The consumer's own series, rebalances and lag among them, are daemon/kafka_source.h's.)
// Labels: partition (bounded by kMaxPartitions), source, outcome. Thread safety: prometheus-cpp.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <cstdint>
#include <mutex>
#include <string_view>

#include "ingest/kafka/changes_publisher.h"

namespace rapport {

class KafkaStateMetrics {
 public:
  explicit KafkaStateMetrics(prometheus::Registry& registry);
  // source: "changes" (the changes topic), "local" (the state already here is newest), "input" (replay from 0).
  prometheus::Counter& restores(std::string_view source);
  prometheus::Histogram& restore_duration() { return *restore_duration_; }  // seconds, per partition restored
  // Records of the changes partition read so far by the restore in progress, and its total (0 / 0 when none).
  prometheus::Gauge& restore_read(std::uint32_t partition);
  prometheus::Gauge& restore_to_read(std::uint32_t partition);
  prometheus::Counter& restore_skipped() { return *restore_skipped_; }  // undecodable changes records
  // The changes topic's producer: records delivered, and records that failed (or fatal producer errors).
  prometheus::Counter& produced() { return *produced_; }
  prometheus::Counter& produce_errors() { return *produce_errors_; }
  // Brings those two up to the publisher's counts (call before each scrape; counts only grow).
  void refresh(const kafka::PublisherStats& stats);

 private:
  prometheus::Family<prometheus::Counter>* restores_;
  prometheus::Histogram* restore_duration_;
  prometheus::Family<prometheus::Gauge>* restore_read_;
  prometheus::Family<prometheus::Gauge>* restore_to_read_;
  prometheus::Counter* restore_skipped_;
  prometheus::Counter* produced_;
  prometheus::Counter* produce_errors_;
  std::mutex mutex_;
  std::uint64_t last_delivered_ = 0, last_errors_ = 0;  // mutex_
};

}  // namespace rapport
