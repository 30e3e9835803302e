// The changes topic end to end on librdkafka's mock cluster: ChangesPublisher writes it, restore_partition
// reads it back.
#include <gtest/gtest.h>

#include <vector>

#include "ingest/kafka/changes_publisher.h"
#include "ingest/kafka/restore.h"
#include "ingest/kafka/snapshot_record.h"
#include "tests/kafka/mock_cluster.h"
#include "tests/kafka/state_fixture.h"

namespace rapport::kafka {
namespace {

using std::chrono::milliseconds;
using test::MockCluster;
using test::with_purchases;

constexpr char kTopic[] = "rapport.changes";

ClientOptions client_of(const MockCluster& cluster) { return ClientOptions{cluster.bootstrap(), {{"log_level", "3"}}}; }

Result<RestoredPartition> restore(const MockCluster& cluster, std::int32_t partition,
                                  std::vector<RestoreProgress>* progress = nullptr) {
  RestoreOptions options;
  options.client = client_of(cluster);
  options.topic = kTopic;
  options.partition = partition;
  options.progress_every = 2;
  return restore_partition(options, [&](const RestoreProgress& p) {
    if (progress != nullptr) progress->push_back(p);
  });
}

std::unique_ptr<ChangesPublisher> publisher(const MockCluster& cluster) {
  auto p = ChangesPublisher::create(client_of(cluster), kTopic);
  EXPECT_TRUE(p) << p.message();
  return p ? std::move(p.value()) : nullptr;
}

TEST(ChangesTopic, RestoreSeesTheLastCommitAndTombstones) {
  MockCluster cluster;
  cluster.create_topic(kTopic, 4);
  auto pub = publisher(cluster);
  ASSERT_NE(pub, nullptr);
  const CustomerState a1 = with_purchases(1), a2 = with_purchases(2), b1 = with_purchases(1, 99.0);
  const CustomerState c3 = with_purchases(3, 5.0);
  const ChangedCustomer first[] = {{"a", &a1}, {"b", &b1}, {"c", &c3}};
  ASSERT_TRUE(pub->publish(2, first, 10));
  const ChangedCustomer second[] = {{"a", &a2}};
  ASSERT_TRUE(pub->publish(2, second, 17));
  ASSERT_TRUE(pub->publish_erasure(2, "b"));
  ASSERT_TRUE(pub->publish(2, {}, 20));  // a commit that changed nobody still moves the position
  ASSERT_TRUE(pub->flush(milliseconds(60000)));
  const PublisherStats stats = pub->stats();
  EXPECT_EQ(stats.enqueued, 8u);
  EXPECT_EQ(stats.delivered, 8u);
  EXPECT_EQ(stats.errors, 0u);

  std::vector<RestoreProgress> progress;
  Result<RestoredPartition> r = restore(cluster, 2, &progress);
  ASSERT_TRUE(r) << r.message();
  ASSERT_TRUE(r->input_offset.has_value());
  EXPECT_EQ(*r->input_offset, 20u);
  ASSERT_EQ(r->customers.size(), 3u);
  ASSERT_TRUE(r->customers.at("a").has_value());
  EXPECT_EQ(*r->customers.at("a"), a2);
  EXPECT_FALSE(r->customers.at("b").has_value());  // erased
  ASSERT_TRUE(r->customers.at("c").has_value());
  EXPECT_EQ(*r->customers.at("c"), c3);
  EXPECT_EQ(r->records, 8u);
  EXPECT_EQ(r->stale + r->incomplete + r->undecodable, 0u);
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back().read, 8u);
  EXPECT_EQ(progress.back().total, 8u);
  EXPECT_EQ(progress.back().partition, 2);
  EXPECT_EQ(progress.front().read, 2u);  // every progress_every records, then at the end

  // The other partitions hold nothing: nothing to restore from.
  Result<RestoredPartition> empty = restore(cluster, 1);
  ASSERT_TRUE(empty) << empty.message();
  EXPECT_FALSE(empty->input_offset.has_value());
  EXPECT_TRUE(empty->customers.empty());
}

TEST(ChangesTopic, SnapshotsAfterTheLastMarkerAreAnUnfinishedCommit) {
  MockCluster cluster;
  cluster.create_topic(kTopic, 1);
  const CustomerState a1 = with_purchases(1), a2 = with_purchases(2);
  cluster.produce(kTopic, 0, "a", encode_snapshot("a", a1, 5));
  cluster.produce(kTopic, 0, kPositionKey, encode_position(5));
  // The owner died after publishing the next commit's first snapshot, before its marker.
  cluster.produce(kTopic, 0, "a", encode_snapshot("a", a2, 9));
  cluster.produce(kTopic, 0, "n", encode_snapshot("n", a2, 9));
  Result<RestoredPartition> r = restore(cluster, 0);
  ASSERT_TRUE(r) << r.message();
  EXPECT_EQ(r->input_offset, std::optional<std::uint64_t>(5));  // the input is replayed from 5
  ASSERT_EQ(r->customers.size(), 1u);
  EXPECT_EQ(*r->customers.at("a"), a1);
  EXPECT_EQ(r->incomplete, 2u);
}

TEST(ChangesTopic, StaleVersionsAndBadRecordsAreDroppedAndCounted) {
  MockCluster cluster;
  cluster.create_topic(kTopic, 1);
  const CustomerState a1 = with_purchases(1), a2 = with_purchases(2);
  cluster.produce(kTopic, 0, "a", encode_snapshot("a", a2, 9));
  cluster.produce(kTopic, 0, kPositionKey, encode_position(9));
  // A former owner's late write: lower version and position.
  cluster.produce(kTopic, 0, "a", encode_snapshot("a", a1, 5));
  cluster.produce(kTopic, 0, kPositionKey, encode_position(5));
  cluster.produce(kTopic, 0, "junk", std::string("{not json"));
  cluster.produce(kTopic, 0, "x", encode_snapshot("y", a1, 9));  // key and customer_id disagree
  cluster.produce(kTopic, 0, kPositionKey, std::string("{\"format\":1}"));
  Result<RestoredPartition> r = restore(cluster, 0);
  ASSERT_TRUE(r) << r.message();
  EXPECT_EQ(r->input_offset, std::optional<std::uint64_t>(9));
  ASSERT_EQ(r->customers.size(), 1u);
  EXPECT_EQ(*r->customers.at("a"), a2);
  EXPECT_EQ(r->stale, 2u);
  EXPECT_EQ(r->undecodable, 3u);
  EXPECT_NE(r->first_undecodable.find("offset 4"), std::string::npos) << r->first_undecodable;
  EXPECT_NE(r->first_undecodable.find("not a JSON object"), std::string::npos) << r->first_undecodable;
}

TEST(ChangesTopic, AnErasedCustomerCanComeBack) {
  MockCluster cluster;
  cluster.create_topic(kTopic, 1);
  auto pub = publisher(cluster);
  ASSERT_NE(pub, nullptr);
  const CustomerState a1 = with_purchases(1), a3 = with_purchases(3);
  const ChangedCustomer first[] = {{"a", &a1}};
  ASSERT_TRUE(pub->publish(0, first, 3));
  ASSERT_TRUE(pub->publish_erasure(0, "a"));
  const ChangedCustomer again[] = {{"a", &a3}};
  ASSERT_TRUE(pub->publish(0, again, 8));
  ASSERT_TRUE(pub->flush(milliseconds(60000)));
  Result<RestoredPartition> r = restore(cluster, 0);
  ASSERT_TRUE(r) << r.message();
  ASSERT_TRUE(r->customers.at("a").has_value());
  EXPECT_EQ(*r->customers.at("a"), a3);
}

TEST(ChangesTopic, ProduceErrorsAreCountedAndReported) {
  MockCluster cluster;
  cluster.create_topic(kTopic, 1);
  auto pub = publisher(cluster);
  ASSERT_NE(pub, nullptr);
  const CustomerState a1 = with_purchases(1);
  const ChangedCustomer one[] = {{"a", &a1}};
  // Partition 5 of a one-partition topic: the cluster cannot take it.
  Status s = pub->publish(5, one, 1);
  if (s) s = pub->flush(milliseconds(60000));
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("partition 5"), std::string::npos) << s.message();
  EXPECT_GE(pub->stats().errors, 1u);
  EXPECT_NE(pub->stats().last_error.find(kTopic), std::string::npos) << pub->stats().last_error;
}

TEST(ChangesTopic, BadSettingsAreErrorsThatNameThem) {
  auto p = ChangesPublisher::create(ClientOptions{"127.0.0.1:1", {{"no.such.property", "1"}}}, kTopic);
  ASSERT_FALSE(p);
  EXPECT_NE(p.message().find("no.such.property"), std::string::npos) << p.message();
  EXPECT_FALSE(ChangesPublisher::create(ClientOptions{"", {}}, kTopic));
  EXPECT_FALSE(ChangesPublisher::create(ClientOptions{"127.0.0.1:1", {}}, ""));
  RestoreOptions options;
  options.client = ClientOptions{"127.0.0.1:1", {{"no.such.property", "1"}}};
  options.topic = kTopic;
  Result<RestoredPartition> r = restore_partition(options);
  ASSERT_FALSE(r);
  EXPECT_NE(r.message().find("no.such.property"), std::string::npos) << r.message();
}

}  // namespace
}  // namespace rapport::kafka
