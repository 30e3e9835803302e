// KafkaCluster: rapportd's membership in its Kafka consumer group (docs/design.md, "Owners and redirects").
// Wires the Cluster map (daemon/cluster.h) to the members topic (ingest/kafka/members_topic.h) and to this
// instance's consumer: every record of the members topic updates the map (a tombstone removes its member);
// the consumer's assignment is followed by polling (sync(): from a thread of its own every 200 ms, and
// before each metrics scrape) and, when it changes, becomes the map's own partitions and this instance's
// member record, published to the members topic. The lag of each held partition goes to the map too. At
// stop a tombstone tells the others that this instance left.
// Metrics: rapport_kafka_members, rapport_kafka_unowned_partitions, rapport_kafka_member_records_total.
// Thread safety: sync() from any thread; start/stop from the owner.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/status.h"
#include "daemon/cluster.h"
#include "daemon/config.h"
#include "ingest/kafka/consumer.h"
#include "ingest/kafka/members_topic.h"

namespace rapport {

// The base URL the other members redirect to: `options.advertised_url` when set (without a trailing '/'),
// else derived from the bound HTTP listener `http_endpoint` ("127.0.0.1:40123", "[::]:8470"): its host,
// or `machine` (the host name) when it is bound to every address (0.0.0.0, ::), with its actual port, and https:// when
// the listener speaks TLS. An error when there is no HTTP listener and no advertised_url.
Result<std::string> advertised_http_address(const KafkaClusterOptions& options, std::string_view http_endpoint,
                                            bool tls, std::string_view machine);

class KafkaCluster {
 public:
  // The partitions this instance holds, with their lag (KafkaConsumer::lag()).
  using Assignment = std::function<std::vector<KafkaConsumer::PartitionLag>()>;

  // Starts following the members topic and publishes this instance's first record (no partitions yet).
  static Result<std::unique_ptr<KafkaCluster>> start(const KafkaOptions& kafka, const KafkaClusterOptions& options,
                                                     std::string http_address, std::uint32_t partitions,
                                                     Assignment assignment, prometheus::Registry& registry);
  ~KafkaCluster();  // stop()
  KafkaCluster(const KafkaCluster&) = delete;
  KafkaCluster& operator=(const KafkaCluster&) = delete;

  std::shared_ptr<const Cluster> cluster() const { return cluster_; }

  // Reads the assignment now: own partitions, lags and the gauges; a changed assignment is published by the
  // thread (never by the caller: a scrape does not wait for the brokers).
  void sync();

  // Stops the thread and publishes the tombstone (waits up to 5 s for its delivery). Idempotent.
  void stop();

 private:
  KafkaCluster(const KafkaClusterOptions& options, std::string http_address, std::uint32_t partitions,
               Assignment assignment, prometheus::Registry& registry);
  void on_record(std::string_view key, std::optional<std::string_view> value);
  void run();
  bool publish_if_due();  // false: the publication failed (retried later)

  const std::string instance_;
  const std::string http_address_;
  const Assignment assignment_;
  const std::shared_ptr<Cluster> cluster_;
  std::unique_ptr<kafka::MembersTopic> topic_;
  prometheus::Gauge* members_;
  prometheus::Gauge* unowned_;
  prometheus::Counter *published_, *publish_errors_, *bad_records_, *conflicts_;
  bool own_read_back_ = false;    // follower thread: this process's own record came back from the topic
  bool conflict_logged_ = false;  // follower thread

  std::mutex sync_mutex_;  // one sync() at a time

  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;    // mutex_
  bool publish_due_ = true;  // mutex_: the record published last is not this instance's current one
  std::thread thread_;
};

}  // namespace rapport
