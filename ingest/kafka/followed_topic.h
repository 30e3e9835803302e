// FollowedTopic: a small topic that every instance writes to and reads all of (the members topic, the stats
// topic). publish() writes keyed records (a null value: a tombstone) with an idempotent producer and waits
// for their delivery; a thread of its own follows every partition of the topic from its start (no group,
// nothing committed) and hands each record to the callback.
// Thread safety: publish from any thread; the callback runs on the follower thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "common/status.h"
#include "ingest/kafka/client.h"

namespace rapport::kafka {

class FollowedTopic {
 public:
  struct Record {
    std::string_view key;
    std::optional<std::string_view> value;  // nullopt: a tombstone
    std::int64_t timestamp_ms = -1;         // the record's timestamp (-1 when it has none)
  };
  using OnRecord = std::function<void(const Record&)>;

  // `what` names the topic in messages ("members topic").
  static Result<std::unique_ptr<FollowedTopic>> start(const ClientOptions& client, std::string topic, std::string what,
                                                      OnRecord on_record);
  ~FollowedTopic();  // stops the follower
  FollowedTopic(const FollowedTopic&) = delete;
  FollowedTopic& operator=(const FollowedTopic&) = delete;

  // Writes the records (partitioned by key) and waits until all are delivered.
  Status publish(std::span<const std::pair<std::string, std::optional<std::string>>> records,
                 std::chrono::milliseconds timeout = std::chrono::milliseconds(30000));

 private:
  struct Impl;
  explicit FollowedTopic(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace rapport::kafka
