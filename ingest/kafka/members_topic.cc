#include "ingest/kafka/members_topic.h"

#include <utility>
#include <vector>

#include "ingest/kafka/followed_topic.h"

namespace rapport::kafka {

struct MembersTopic::Impl {
  std::unique_ptr<FollowedTopic> topic;
};

MembersTopic::MembersTopic(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
MembersTopic::~MembersTopic() = default;

Result<std::unique_ptr<MembersTopic>> MembersTopic::start(const ClientOptions& client, std::string topic,
                                                          OnRecord on_record) {
  auto followed = FollowedTopic::start(
      client, std::move(topic), "members topic",
      [on_record = std::move(on_record)](const FollowedTopic::Record& r) { on_record(r.key, r.value); });
  if (!followed) return followed.status();
  auto impl = std::make_unique<Impl>();
  impl->topic = std::move(*followed);
  return std::unique_ptr<MembersTopic>(new MembersTopic(std::move(impl)));
}

Status MembersTopic::publish(std::string_view instance, const std::optional<std::string>& value,
                             std::chrono::milliseconds timeout) {
  if (instance.empty()) return Status::Error("kafka: a member record needs an instance name");
  const std::vector<std::pair<std::string, std::optional<std::string>>> records{{std::string(instance), value}};
  return impl_->topic->publish(records, timeout);
}

}  // namespace rapport::kafka
