// KafkaSource: rapportd's side of the Kafka source (ingest/kafka/consumer.h). It gives the consumer the
// engine's partitions (KafkaPartitions: the partitioner, the offsets stored in each partition's LMDB
// environment, the partitions' writers) and exports the consumer's rapport_kafka_* series.
//
// State follows its partition (docs/design.md, "Kafka group"; on once enable_state is called):
//  - take_over (rebalance callback, before partition p is consumed): take_over_partition runs as a job on
//    writer p, so the restore's commit is ordered with p's writes, and the consumer waits for it; the
//    consumer then starts p at the offset the state reflects.
//  - after each commit of a chunk of p (on writer p's thread, before the chunk completes, so before the
//    consumer hands over p's next chunk: publication order = commit order), each customer the chunk
//    changed is read back from the store and published to the changes topic with the chunk's next offset
//    (ChangesPublisher::publish). A produce error is counted and logged; ingest goes on.
//  - erased (writer thread, after an erasure committed): the customer's tombstone.
//  - let_go (revoke, after p's last chunk completed): flushes the producer, so the next owner's restore
//    reads everything published for p. The local store keeps p's data until a later take-over of p here
//    replaces it; nothing serves it meanwhile (queries for p's customers go to the owner).
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

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/kafka_metrics.h"
#include "daemon/partitioned_sink.h"
#include "ingest/kafka/changes_publisher.h"
#include "ingest/kafka/consumer.h"
#include "storage/partitioned_store.h"

namespace rapport {

class KafkaSource final : public KafkaPartitions {
 public:
  KafkaSource(PartitionedStore& store, Writers& writers) : store_(store), writers_(writers) {}

  ~KafkaSource() override;

  // Turns on the state that follows its partition: restores on take-over (options.restore), and, when
  // options.changes_topic is set, the changes topic's producer. Call once, before the consumer starts;
  // an error names what librdkafka refused. `metrics` must outlive this.
  Status enable_state(const KafkaOptions& options, KafkaStateMetrics& metrics);

  std::uint32_t count() const override { return store_.partition_count(); }
  std::uint32_t partition_of(std::string_view customer_id) const override { return store_.partition_of(customer_id); }
  // Without enable_state: the offset stored in partition p's store (nullopt: none).
  Result<std::optional<std::int64_t>> take_over(const std::string& topic, std::int32_t partition) override;
  void let_go(const std::string& topic, std::int32_t partition) override;
  bool try_submit(std::uint32_t partition, std::unique_ptr<Submission>& submission) override;

  // An erasure of `customer_id` committed (called on its partition's writer thread, after the commit):
  // publishes its tombstone to the changes topic, if there is one.
  void erased(std::string_view customer_id);
  // Brings the producer's rapport_kafka_changes_produced_total up to date (before each scrape).
  void refresh_metrics();

 private:
  // On partition p's writer thread, after the commit of a chunk whose events' customers are `ids`
  // (parallel to the result's outcomes): publishes the changed customers and the position `next`.
  void publish_commit(std::uint32_t partition, const std::vector<std::string>& ids, const SubmissionResult& result,
                      std::int64_t next);
  void produce_failed(const Status& status);

  PartitionedStore& store_;
  Writers& writers_;
  KafkaOptions options_;                                // set by enable_state
  KafkaStateMetrics* state_metrics_ = nullptr;          // null until enable_state
  std::unique_ptr<kafka::ChangesPublisher> publisher_;  // null: no changes topic
  std::atomic<std::uint64_t> produce_failures_{0};      // logged: the first, then every 1000th
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
