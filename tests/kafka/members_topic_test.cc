// MembersTopic on librdkafka's mock cluster: every instance sees every member's latest record.
#include "ingest/kafka/members_topic.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <map>
#include <mutex>

#include "tests/kafka/mock_cluster.h"

namespace rapport::kafka {
namespace {

using test::MockCluster;

// The latest record per key seen by one follower; waits for a condition (generous deadline, no timing asserted).
class Seen {
 public:
  MembersTopic::OnRecord callback() {
    return [this](std::string_view key, std::optional<std::string_view> value) {
      std::lock_guard lock(mutex_);
      latest_[std::string(key)] = value ? std::optional<std::string>(std::string(*value)) : std::nullopt;
      changed_.notify_all();
    };
  }
  bool wait_for(const std::string& key, const std::optional<std::string>& value) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, std::chrono::seconds(60), [&] {
      auto it = latest_.find(key);
      return it != latest_.end() && it->second == value;
    });
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::map<std::string, std::optional<std::string>> latest_;
};

TEST(MembersTopic, EveryFollowerSeesEveryMembersLatestRecordAndTombstones) {
  MockCluster cluster;
  cluster.create_topic("rapport.members", 1);
  const ClientOptions client{cluster.bootstrap(), {{"log_level", "3"}}};
  Seen seen_a, seen_b;
  auto a = MembersTopic::start(client, "rapport.members", seen_a.callback());
  ASSERT_TRUE(a) << a.message();
  ASSERT_TRUE((*a)->publish("a", std::string("a-1")));
  ASSERT_TRUE((*a)->publish("a", std::string("a-2")));
  // b starts later: it reads the topic from its start.
  auto b = MembersTopic::start(client, "rapport.members", seen_b.callback());
  ASSERT_TRUE(b) << b.message();
  ASSERT_TRUE((*b)->publish("b", std::string("b-1")));
  EXPECT_TRUE(seen_b.wait_for("a", std::string("a-2")));
  EXPECT_TRUE(seen_a.wait_for("b", std::string("b-1")));
  EXPECT_TRUE(seen_a.wait_for("a", std::string("a-2")));  // its own record comes back too
  ASSERT_TRUE((*b)->publish("b", std::nullopt));          // b leaves
  EXPECT_TRUE(seen_a.wait_for("b", std::nullopt));
}

TEST(MembersTopic, BadSettingsAreErrors) {
  auto r = MembersTopic::start(ClientOptions{"127.0.0.1:1", {{"no.such.property", "1"}}}, "m", nullptr);
  ASSERT_FALSE(r);
  EXPECT_NE(r.message().find("no.such.property"), std::string::npos) << r.message();
  EXPECT_FALSE(MembersTopic::start(ClientOptions{"", {}}, "m", nullptr));
  EXPECT_FALSE(MembersTopic::start(ClientOptions{"127.0.0.1:1", {}}, "", nullptr));
}

}  // namespace
}  // namespace rapport::kafka
