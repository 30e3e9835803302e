// KafkaConsumer: rapportd's Kafka source. Hides librdkafka.
//
// Joins a consumer group on one input topic (cooperative-sticky assignor: incremental assign and unassign
// in the rebalance callback) and turns each record into one event: the record value is an NDJSON object
// or a structured-mode CloudEvent (header content-type application/cloudevents+json, or a "specversion"
// member), the key is the customer_id. Kafka partition k is engine partition k: each chunk of records
// read from partition k goes, as one Submission carrying {topic, k, next offset}, to partition k's writer,
// which stores the offset in the same LMDB commit as the events ("offsets outside Kafka"). On assignment
// the consumer asks its owner where to start each partition (KafkaPartitions::take_over: the offset stored
// with the state, after a restore when the partition comes from another instance; the beginning when
// none is), so the effect on state is exactly once across restarts, crashes and rebalances. On revoke
// it waits for the partition's chunk in the writer's hands to complete, then tells its owner (let_go)
// before the partition is let go. Kafka's committed offsets are
// written too, after each stored chunk, for lag monitoring only; they are never read back.
//
// A bad record (not JSON, not a valid event, a customer_id of another partition) becomes a dead letter
// whose message names its topic, partition and offset; the records around it continue.
// Backpressure: at most one chunk per partition is in a writer's hands; while it is, the next chunk grows
// up to max_chunk_records, then the partition is paused (librdkafka stops fetching it) until the chunk
// is handed over. A failed commit (e.g. disk full) rewinds the partition to its stored offset and retries.
// Uses rd_kafka_consumer_poll (librdkafka 2.0.x's batch-consume calls lose or repeat records around
// seeks and rebalances).
//
// Thread safety: start/stop from the owner; lag() and rebalances() from any thread. The consumer runs one
// thread of its own; submissions complete on writer threads.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "common/status.h"
#include "ingest/decoder.h"
#include "ingest/net/front_stats.h"
#include "ingest/submission.h"

namespace rapport {

// [kafka] restore: where a new owner gets a partition's state from (daemon/kafka_state.h).
enum class RestoreMode : std::uint8_t {
  kChanges,  // "changes" (default): the changes topic; replay the input from 0 when it holds nothing for p
  kInput,    // "input": replay the input topic from offset 0 (needs retention of the whole topic)
};

struct KafkaOptions {
  std::string brokers;   // bootstrap.servers; empty: Kafka mode is off
  std::string topic;     // the input topic
  std::string group_id;  // the consumer group
  // Other librdkafka properties, passed through ([kafka.properties]), e.g. session.timeout.ms.
  std::vector<std::pair<std::string, std::string>> properties;
  std::size_t max_chunk_records = 5000;  // records per submission and per partition (pause beyond)
  // The compacted changes topic (the input's partition count): snapshots after each commit, tombstones
  // after erasures. "" = none (nothing published, restores replay the input); the config always names one
  // ("<topic>.changes" unless set).
  std::string changes_topic;
  RestoreMode restore = RestoreMode::kChanges;
  bool enabled() const { return !brokers.empty(); }
  friend bool operator==(const KafkaOptions&, const KafkaOptions&) = default;
};

// librdkafka properties the consumer sets itself; [kafka.properties] may not override them.
std::vector<std::string_view> kafka_reserved_properties();

// Checks the options without connecting: required keys, reserved properties, and every pass-through
// property known to librdkafka with a valid value. The message names the key.
Status validate_kafka_options(const KafkaOptions& options);

// What the consumer needs from its owner (the daemon): the engine's partitions.
class KafkaPartitions {
 public:
  virtual ~KafkaPartitions() = default;
  virtual std::uint32_t count() const = 0;
  // The engine partition of a customer (must equal the producer's Kafka partition).
  virtual std::uint32_t partition_of(std::string_view customer_id) const = 0;
  // The topic partition was assigned to this instance (called on the consumer thread, from the rebalance
  // callback, before it is consumed; no chunk of it is in a writer's hands): brings the partition's state
  // here if it has to (a restore) and returns the next offset to consume, which the state reflects;
  // nullopt: the beginning. An error: the partition is not consumed by this instance.
  virtual Result<std::optional<std::int64_t>> take_over(const std::string& topic, std::int32_t partition) = 0;
  // The topic partition is being revoked (consumer thread): its last chunk has completed (committed, and
  // whatever the owner does after a commit done). Called before the partition is let go.
  virtual void let_go(const std::string& topic, std::int32_t partition) = 0;
  // Queues a submission (its events all belong to `partition`) on that partition's writer; false when the
  // queue is full (the submission is left as it was). Never blocks.
  virtual bool try_submit(std::uint32_t partition, std::unique_ptr<Submission>& submission) = 0;
};

class KafkaConsumer {
 public:
  KafkaConsumer(KafkaOptions options, DecodeOptions decode, KafkaPartitions& partitions, FrontStats& stats);
  ~KafkaConsumer();  // stop()
  KafkaConsumer(const KafkaConsumer&) = delete;
  KafkaConsumer& operator=(const KafkaConsumer&) = delete;

  // Creates the consumer, checks that the topic has as many partitions as the engine (waiting up to
  // `metadata_timeout` for the brokers), subscribes and starts the consumer thread.
  Status start(std::chrono::milliseconds metadata_timeout = std::chrono::milliseconds(30000));
  // Leaves the group (what is in the writers' hands still commits with its offsets) and joins the thread.
  void stop();

  struct PartitionLag {
    std::int32_t partition = 0;
    std::int64_t lag = 0;  // records in the topic partition after the stored offset (high watermark - stored)
  };
  // The partitions this instance holds, with their lag.
  std::vector<PartitionLag> lag() const;
  std::uint64_t rebalances() const { return rebalances_.load(std::memory_order_relaxed); }
  // Records read and turned into dead letters, since start.
  std::uint64_t records() const { return records_.load(std::memory_order_relaxed); }
  std::uint64_t bad_records() const { return bad_records_.load(std::memory_order_relaxed); }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::atomic<std::uint64_t> rebalances_{0}, records_{0}, bad_records_{0};
};

}  // namespace rapport
