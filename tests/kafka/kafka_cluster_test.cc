// KafkaCluster (daemon/kafka_cluster.h) on librdkafka's mock cluster: the assignment becomes the map's own
// partitions as soon as sync() returns and is published; other members' records and tombstones update the
// map; undecodable records are counted; stop() publishes this member's tombstone.
#include "daemon/kafka_cluster.h"

#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "tests/kafka/mock_cluster.h"

namespace rapport {
namespace {

using kafka::test::MockCluster;

constexpr const char* kMembers = "events.members";

// What a second follower of the members topic sees: the latest record per key.
class Seen {
 public:
  kafka::MembersTopic::OnRecord callback() {
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

// A condition, polled with a generous deadline (nothing asserts timing).
bool eventually(const std::function<bool()>& pred) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

double counter(prometheus::Registry& registry, const std::string& name, const std::string& outcome) {
  for (const auto& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const auto& m : family.metric) {
      for (const auto& label : m.label) {
        if (label.name == "outcome" && label.value == outcome) return m.counter.value;
      }
    }
  }
  return -1;
}

class KafkaClusterTest : public ::testing::Test {
 protected:
  void SetUp() override { mock_.create_topic(kMembers, 1); }
  KafkaOptions kafka() const {
    KafkaOptions o;
    o.brokers = mock_.bootstrap();
    o.topic = "events";
    o.group_id = "g";
    o.properties = {{"log_level", "3"}};
    return o;
  }
  std::vector<KafkaConsumer::PartitionLag> held() {
    std::lock_guard lock(mutex_);
    return held_;
  }
  void hold(std::vector<KafkaConsumer::PartitionLag> held) {
    std::lock_guard lock(mutex_);
    held_ = std::move(held);
  }
  MockCluster mock_;
  std::mutex mutex_;
  std::vector<KafkaConsumer::PartitionLag> held_;
  prometheus::Registry registry_;
};

TEST_F(KafkaClusterTest, FollowsTheAssignmentAndTheOtherMembersAndLeavesWithATombstone) {
  Seen seen;
  auto watcher = kafka::MembersTopic::start(kafka::ClientOptions{mock_.bootstrap(), {{"log_level", "3"}}}, kMembers,
                                            seen.callback());
  ASSERT_TRUE(watcher.ok()) << watcher.message();
  auto started = KafkaCluster::start(
      kafka(), KafkaClusterOptions{kMembers, "a", ""}, "http://127.0.0.1:1", 4, [this] { return held(); }, registry_);
  ASSERT_TRUE(started.ok()) << started.message();
  KafkaCluster& member = **started;
  const auto map = member.cluster();
  // Its first record: no partitions yet, so nobody owns anything.
  EXPECT_TRUE(seen.wait_for("a", encode_member(Member{"a", "http://127.0.0.1:1", {}})));
  EXPECT_EQ(map->owner_of_partition(1).kind, Owner::Kind::kUnknown);

  // The consumer holds 3 and 1: the map has them when sync() returns, with their lag; then it is published.
  hold({{3, 0}, {1, 5}});
  member.sync();
  EXPECT_EQ(map->owner_of_partition(1).kind, Owner::Kind::kSelf);
  EXPECT_EQ(map->owner_of_partition(3).kind, Owner::Kind::kSelf);
  EXPECT_NE(map->to_json().find(R"({"partition":1,"owner":"a","http_address":"http://127.0.0.1:1","lag":5})"),
            std::string::npos)
      << map->to_json();
  EXPECT_TRUE(seen.wait_for("a", encode_member(Member{"a", "http://127.0.0.1:1", {1, 3}})));

  // Another member's record, a record that does not decode, and its tombstone.
  mock_.produce(kMembers, 0, "b", encode_member(Member{"b", "http://127.0.0.1:2", {0, 2}}));
  ASSERT_TRUE(eventually([&] { return map->owner_of_partition(2).instance == "b"; })) << map->to_json();
  EXPECT_EQ(map->owner_of_partition(0).http_address, "http://127.0.0.1:2");
  mock_.produce(kMembers, 0, "c", std::string("not json"));
  ASSERT_TRUE(eventually([&] { return counter(registry_, "rapport_kafka_member_records_total", "bad") == 1; }));
  mock_.produce(kMembers, 0, "b", std::nullopt);
  ASSERT_TRUE(eventually([&] { return map->owner_of_partition(2).kind == Owner::Kind::kUnknown; })) << map->to_json();
  EXPECT_EQ(map->member_count(), 1u);

  // Partition 1 goes elsewhere: dropped from the map and from the record.
  hold({{3, 0}});
  member.sync();
  EXPECT_EQ(map->owner_of_partition(1).kind, Owner::Kind::kUnknown);
  EXPECT_TRUE(seen.wait_for("a", encode_member(Member{"a", "http://127.0.0.1:1", {3}})));

  member.stop();
  EXPECT_TRUE(seen.wait_for("a", std::nullopt));
  EXPECT_GE(counter(registry_, "rapport_kafka_member_records_total", "published"), 4);
}

TEST_F(KafkaClusterTest, ABadSettingIsAnErrorNamingTheMembersTopic) {
  KafkaOptions bad = kafka();
  bad.properties.emplace_back("no.such.property", "1");
  auto r = KafkaCluster::start(
      bad, KafkaClusterOptions{kMembers, "a", ""}, "http://127.0.0.1:1", 4, [this] { return held(); }, registry_);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.message().find("members topic \"events.members\""), std::string::npos) << r.message();
  EXPECT_NE(r.message().find("no.such.property"), std::string::npos) << r.message();
}

}  // namespace
}  // namespace rapport
