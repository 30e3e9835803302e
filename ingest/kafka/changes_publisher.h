// ChangesPublisher: the changes topic's producer (docs/design.md, "Kafka"). After each commit the
// daemon hands it the customers the commit changed, with the input offset the commit reached; it
// publishes each customer's snapshot (ingest/kafka/snapshot_record.h) keyed by customer_id to the
// same partition number as the input partition, then the partition's position marker. Erasure
// publishes a tombstone (null value). The producer is idempotent (enable.idempotence): records of one
// partition are written once each, in the order published, with no gaps, so a reader that sees a
// position marker has seen every record published before it.
//
// Publishing only enqueues (librdkafka sends in the background); flush() waits for delivery: the old
// owner of a partition flushes before it lets the partition go, so the new owner's restore sees all.
// Thread safety: every member may be called from any thread (librdkafka's producer is thread-safe).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "common/status.h"
#include "ingest/kafka/client.h"
#include "scoring/customer_state.h"

namespace rapport::kafka {

struct ChangedCustomer {
  std::string_view customer_id;
  const CustomerState* state = nullptr;
};

struct PublisherStats {
  std::uint64_t enqueued = 0;   // records handed to librdkafka
  std::uint64_t delivered = 0;  // acknowledged by the cluster
  std::uint64_t errors = 0;     // records that failed (delivery or enqueue), and fatal producer errors
  std::string last_error;       // "" when none
};

class ChangesPublisher {
 public:
  // Creates the producer (no network round trip yet). An error names the property librdkafka refused.
  static Result<std::unique_ptr<ChangesPublisher>> create(const ClientOptions& client, std::string topic);
  ~ChangesPublisher();  // flushes for at most 10 s; what is still queued then is lost (a restore resumes before it)
  ChangesPublisher(const ChangesPublisher&) = delete;
  ChangesPublisher& operator=(const ChangesPublisher&) = delete;

  // One commit of input partition `partition`: each changed customer's snapshot, then the position
  // marker `input_offset` (the next input offset to consume). Waits (serving delivery reports) while
  // librdkafka's local queue is full, at most queue_timeout; an error then, or after a fatal producer error.
  Status publish(std::int32_t partition, std::span<const ChangedCustomer> changed, std::uint64_t input_offset);
  // The tombstone of an erased customer.
  Status publish_erasure(std::int32_t partition, std::string_view customer_id);
  // Waits until everything enqueued is delivered or failed; an error if some failed or time ran out.
  Status flush(std::chrono::milliseconds timeout);
  PublisherStats stats() const;

  std::chrono::milliseconds queue_timeout{30000};

 private:
  struct Impl;
  explicit ChangesPublisher(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace rapport::kafka
