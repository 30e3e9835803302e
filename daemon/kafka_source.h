// KafkaSource: rapportd's side of the Kafka source (ingest/kafka/consumer.h). It gives the consumer the
// engine's partitions (KafkaPartitions: the partitioner, the offsets stored in each partition's LMDB
// environment, the partitions' writers) and exports the consumer's rapport_kafka_* series.
//
// A chunk of partition k goes to writer k with its offset. Its dead letters go to partition 0, which holds
// every dead letter (storage/partitioned_store.h): both parts are queued together (all or none) and the
// chunk completes when both have; if either failed the consumer reads the chunk again from the stored
// offset (its events are then duplicates, its dead letters written again). So events are exactly once;
// a dead letter of a partition k != 0 is at least once, except that a crash between the two commits
// loses it (partition k stored the offset past it).
// Thread safety: as KafkaPartitions (try_submit from the consumer thread; completions on writer threads).
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "daemon/partitioned_sink.h"
#include "ingest/kafka/consumer.h"
#include "storage/partitioned_store.h"

namespace rapport {

class KafkaSource final : public KafkaPartitions {
 public:
  KafkaSource(PartitionedStore& store, Writers& writers) : store_(store), writers_(writers) {}

  std::uint32_t count() const override { return store_.partition_count(); }
  std::uint32_t partition_of(std::string_view customer_id) const override { return store_.partition_of(customer_id); }
  Result<std::optional<std::int64_t>> stored_offset(const std::string& topic, std::int32_t partition) override;
  bool try_submit(std::uint32_t partition, std::unique_ptr<Submission>& submission) override;

 private:
  PartitionedStore& store_;
  Writers& writers_;
};

// rapport_kafka_consumer_lag{partition} (the partitions this instance holds), rapport_kafka_rebalances_total,
// rapport_kafka_records_total, rapport_kafka_bad_records_total. refresh() before each scrape.
class KafkaMetrics {
 public:
  explicit KafkaMetrics(prometheus::Registry& registry);
  void refresh(const KafkaConsumer& consumer);

 private:
  std::mutex mutex_;
  prometheus::Family<prometheus::Gauge>* lag_;
  std::map<std::int32_t, prometheus::Gauge*> lag_by_partition_;
  prometheus::Counter *rebalances_, *records_, *bad_records_;
  std::uint64_t last_rebalances_ = 0, last_records_ = 0, last_bad_records_ = 0;
};

}  // namespace rapport
