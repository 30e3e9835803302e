// KafkaFit: a value-model fit that sees every partition's customers in Kafka mode (docs/design.md,
// "Kafka group"). Each instance publishes, to the stats topic, the reduced statistics
// (daemon/population_stats.h) of the partitions it holds as of a shared as_of, keyed
// "<as_of>/<partition>/<chunk>"; every instance follows the whole topic, and collect() returns, once
// all P partitions' stats for that as_of are in, their merge in partition order: identical input on
// every instance, so the same deterministic fit gives the same model everywhere, without a leader.
// A partition still missing after the timeout fails the collection (the slot is skipped; the
// previous model stays; logged and counted).
//
// Joining: a record for an as_of this instance has not collected, written within the timeout, makes it
// call `join(as_of)` (the daemon queues a fit as of then), so a fit asked of one instance (a schedule
// slot, or POST /v1/model:fit) runs on every instance. Records older than that only fill the table.
// Undecodable records are skipped, counted (rapport_kafka_stats_skipped_total) and the first is logged.
// Thread safety: collect() from one thread at a time (the fitter); the rest from any thread.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"
#include "daemon/population_stats.h"
#include "ingest/kafka/client.h"
#include "ingest/kafka/followed_topic.h"
#include "storage/partitioned_store.h"

namespace rapport {

class KafkaFit {
 public:
  // The engine partitions this instance holds now (KafkaConsumer::lag()).
  using HeldPartitions = std::function<std::vector<std::uint32_t>()>;
  // Asked to fit as of `as_of_ms` (another instance published stats for it). Must not block.
  using Join = std::function<void(std::int64_t as_of_ms)>;

  KafkaFit(const PartitionedStore& store, prometheus::Registry& registry, std::chrono::milliseconds timeout,
           HeldPartitions held, Join join);
  ~KafkaFit();  // stop()

  // Starts following `topic` (and producing to it).
  Status start(const kafka::ClientOptions& client, std::string topic);
  // A collect() waiting returns an error, and none starts; the follower runs until the destructor (its
  // join callback must cope with a stopped service).
  void stop();

  // Until every partition's stats as of `as_of_ms` are in (at most the timeout), publishes those of each
  // partition it holds (asked again every half second) whose stats are not in yet: then their merge. An error naming
  // the missing partitions after the timeout (the slot is skipped), or when publishing fails.
  Result<PopulationStats> collect(std::int64_t as_of_ms, const EvaluateConfig& scoring);

  // Hands one stats-topic record to the table (the follower's callback; public for tests).
  void on_record(const kafka::FollowedTopic::Record& record);

 private:
  struct Publication {
    std::uint32_t chunks = 0;
    std::map<std::uint32_t, PopulationStats> got;  // by chunk
    bool complete() const { return got.size() == chunks; }
  };
  using Slot = std::map<std::uint32_t, std::map<std::string, Publication>>;  // partition -> publication id -> chunks
  // The complete publication of `partition` with the smallest id (every instance picks the same), or null.
  static const Publication* complete_publication(const Slot& slot, std::uint32_t partition);
  // Publishes one partition's stats as of `as_of_ms` (reads the store; call without mutex_).
  Status publish(std::int64_t as_of_ms, std::uint32_t partition, const std::string& publication,
                 const EvaluateConfig& scoring);
  void prune();  // mutex_: at most kMaxSlots slots (the one being collected is kept)

  static constexpr std::size_t kMaxSlots = 4;  // each holds up to a whole population's tuples
  const PartitionedStore& store_;
  const std::uint32_t partitions_;
  const std::chrono::milliseconds timeout_;
  const std::string instance_;  // random; publication ids are "<instance>-<n>"
  prometheus::Counter* skipped_;
  prometheus::Counter* published_;
  prometheus::Counter* collected_;
  prometheus::Counter* slots_skipped_;
  std::unique_ptr<kafka::FollowedTopic> topic_;
  const HeldPartitions held_;
  const Join join_;

  std::mutex mutex_;
  std::condition_variable changed_;
  std::map<std::int64_t, Slot> slots_;      // mutex_
  std::set<std::int64_t> handled_;          // mutex_: as_ofs collected (or being collected) here
  std::optional<std::int64_t> collecting_;  // mutex_
  std::uint64_t publications_ = 0;          // mutex_
  bool stopping_ = false;                   // mutex_
  bool skip_logged_ = false;                // mutex_
};

}  // namespace rapport
