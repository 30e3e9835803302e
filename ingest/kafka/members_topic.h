// MembersTopic: the group's membership records (daemon/cluster.h says what they hold). publish() writes
// this instance's record keyed by its instance name (a tombstone when it leaves) and waits for its
// delivery; a thread of its own follows every partition of the topic from its start and hands each
// record to the callback, so every instance ends with every member's latest record. A compacted topic
// keeps one record per instance.
// Thread safety: publish from any thread; the callback runs on the follower thread.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "ingest/kafka/client.h"

namespace rapport::kafka {

class MembersTopic {
 public:
  // key = the instance; value nullopt: a tombstone (the member left).
  using OnRecord = std::function<void(std::string_view key, std::optional<std::string_view> value)>;

  static Result<std::unique_ptr<MembersTopic>> start(const ClientOptions& client, std::string topic,
                                                     OnRecord on_record);
  ~MembersTopic();  // stops the follower
  MembersTopic(const MembersTopic&) = delete;
  MembersTopic& operator=(const MembersTopic&) = delete;

  Status publish(std::string_view instance, const std::optional<std::string>& value,
                 std::chrono::milliseconds timeout = std::chrono::milliseconds(30000));

 private:
  struct Impl;
  explicit MembersTopic(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace rapport::kafka
