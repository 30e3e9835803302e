// KafkaConsumer against rapport-kafka-mock with a fake engine (KafkaPartitions): it hands chunks over with
// their offsets, waits while the writer's queue is full, and after a failed commit reads again from the
// stored offset, so the stored events are the topic's records exactly once.
#include <gtest/gtest.h>

#include <chrono>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "ingest/kafka/consumer.h"
#include "tests/support/counting_stats.h"
#include "tests/support/kafka_mock.h"

namespace rapport {
namespace {

using namespace std::chrono_literals;

// One partition. Refuses the first `refusals` submissions (a full queue), fails the first accepted commit
// (disk full: nothing stored), stores the rest with their offsets.
class FakeEngine final : public KafkaPartitions {
 public:
  explicit FakeEngine(int refusals) : refusals_(refusals) {}
  std::uint32_t count() const override { return 1; }
  std::uint32_t partition_of(std::string_view) const override { return 0; }
  Result<std::optional<std::int64_t>> take_over(const std::string&, std::int32_t) override {
    std::lock_guard lock(mutex_);
    return offset_;
  }
  void let_go(const std::string&, std::int32_t) override {}
  bool try_submit(std::uint32_t partition, std::unique_ptr<Submission>& s) override {
    EXPECT_EQ(partition, 0u);
    std::unique_lock lock(mutex_);
    if (refusals_ > 0) {
      --refusals_;
      ++refused_;
      return false;
    }
    SubmissionResult result;
    if (!failed_once_) {
      failed_once_ = true;
      result.status = Status::Error("disk full (test)");
    } else {
      EXPECT_TRUE(s->source.has_value());
      for (const Event& e : s->events) {
        const std::string id(e.event_id.view());
        result.outcomes.push_back(ids_.insert(id).second ? Outcome::kAccepted : Outcome::kDuplicate);
        ++stored_events_;
      }
      dead_letters_ += s->rejections.size();
      offset_ = s->source->next_offset;
    }
    auto submission = std::move(s);
    lock.unlock();
    submission->done(std::move(result));  // as a writer thread would, after the commit
    return true;
  }
  std::int64_t offset() const {
    std::lock_guard lock(mutex_);
    return offset_.value_or(-1);
  }
  std::size_t stored_events() const {
    std::lock_guard lock(mutex_);
    return stored_events_;
  }
  std::size_t distinct() const {
    std::lock_guard lock(mutex_);
    return ids_.size();
  }
  std::size_t dead_letters() const {
    std::lock_guard lock(mutex_);
    return dead_letters_;
  }
  int refused() const {
    std::lock_guard lock(mutex_);
    return refused_;
  }

 private:
  mutable std::mutex mutex_;
  int refusals_;
  int refused_ = 0;
  bool failed_once_ = false;
  std::optional<std::int64_t> offset_;
  std::set<std::string> ids_;
  std::size_t stored_events_ = 0, dead_letters_ = 0;
};

TEST(KafkaConsumer, RefusalsAndAFailedCommitNeitherLoseNorRepeatRecords) {
  test::KafkaMock mock(std::string(RAPPORT_BINARY_DIR) + "/daemon/rapport-kafka-mock", {"events:1"});
  test::KafkaProducer producer(mock.bootstrap());
  constexpr int kRecords = 500;
  for (int i = 0; i < kRecords; ++i) {
    if (i == 250) {
      producer.produce("events", "c", "not json");
      continue;
    }
    producer.produce("events", "c",
                     R"({"customer_id":"c","event_id":"e)" + std::to_string(i) +
                         R"(","type":"purchase","amount":1,"ts":1704067200000})");
  }
  producer.flush();

  FakeEngine engine(/*refusals=*/5);
  test::CountingStats stats;
  KafkaOptions options{mock.bootstrap(), "events", "g", {{"session.timeout.ms", "6000"}}, 40, "", RestoreMode::kInput};
  KafkaConsumer consumer(options, DecodeOptions{}, engine, stats);
  ASSERT_TRUE(consumer.start().ok());
  const auto deadline = std::chrono::steady_clock::now() + 180s;
  while (engine.offset() < kRecords && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(50ms);
  consumer.stop();

  EXPECT_EQ(engine.offset(), kRecords);
  EXPECT_EQ(engine.stored_events(), static_cast<std::size_t>(kRecords - 1)) << "an event stored twice or lost";
  EXPECT_EQ(engine.distinct(), static_cast<std::size_t>(kRecords - 1));
  EXPECT_EQ(engine.dead_letters(), 1u);
  EXPECT_EQ(engine.refused(), 5);
  // The failed chunk was read again from the stored offset.
  EXPECT_GT(consumer.records(), static_cast<std::uint64_t>(kRecords));
  EXPECT_EQ(stats.refused(Transport::kKafka).Value(), 1);
  EXPECT_EQ(stats.accepted(Transport::kKafka, EventType::kPurchase).Value(), kRecords - 1);
  EXPECT_GE(consumer.rebalances(), 1u);
}

// One partition whose take-over answers `start` and whose writer holds each chunk until the test completes
// it; records the order of what happens to the partition.
class HoldingEngine final : public KafkaPartitions {
 public:
  explicit HoldingEngine(std::int64_t start) : start_(start) {}
  std::uint32_t count() const override { return 1; }
  std::uint32_t partition_of(std::string_view) const override { return 0; }
  Result<std::optional<std::int64_t>> take_over(const std::string&, std::int32_t) override {
    note("take_over");
    return std::optional<std::int64_t>(start_);
  }
  void let_go(const std::string&, std::int32_t) override { note("let_go"); }
  bool try_submit(std::uint32_t, std::unique_ptr<Submission>& s) override {
    std::lock_guard lock(mutex_);
    if (held_) return false;
    first_event_ =
        first_event_.empty() && !s->events.empty() ? std::string(s->events[0].event_id.view()) : first_event_;
    held_ = std::move(s);
    return true;
  }
  bool holding() const {
    std::lock_guard lock(mutex_);
    return held_ != nullptr;
  }
  // Completes the held chunk as its writer would after committing it.
  void complete() {
    std::unique_ptr<Submission> s;
    {
      std::lock_guard lock(mutex_);
      s = std::move(held_);
    }
    SubmissionResult result;
    result.outcomes.assign(s->events.size(), Outcome::kAccepted);
    note("done");
    s->done(std::move(result));
  }
  std::vector<std::string> order() const {
    std::lock_guard lock(mutex_);
    return order_;
  }
  std::string first_event() const {
    std::lock_guard lock(mutex_);
    return first_event_;
  }

 private:
  void note(std::string what) {
    std::lock_guard lock(mutex_);
    order_.push_back(std::move(what));
  }
  const std::int64_t start_;
  mutable std::mutex mutex_;
  std::unique_ptr<Submission> held_;
  std::vector<std::string> order_;
  std::string first_event_;
};

// A newly assigned partition starts where its owner's take-over says; a revoked one is let go only after
// its chunk in the writer's hands has completed (its commit and what follows it).
TEST(KafkaConsumer, StartsWhereTheTakeOverSaysAndLetsGoOnlyAfterTheChunkInFlight) {
  test::KafkaMock mock(std::string(RAPPORT_BINARY_DIR) + "/daemon/rapport-kafka-mock", {"events:1"});
  test::KafkaProducer producer(mock.bootstrap());
  for (int i = 0; i < 100; ++i) {
    producer.produce("events", "c",
                     R"({"customer_id":"c","event_id":"e)" + std::to_string(i) +
                         R"(","type":"purchase","amount":1,"ts":1704067200000})");
  }
  producer.flush();
  HoldingEngine engine(/*start=*/30);
  test::CountingStats stats;
  KafkaConsumer consumer(
      KafkaOptions{mock.bootstrap(), "events", "g", {{"session.timeout.ms", "6000"}}, 40, "", RestoreMode::kInput},
      DecodeOptions{}, engine, stats);
  ASSERT_TRUE(consumer.start().ok());
  const auto deadline = std::chrono::steady_clock::now() + 180s;
  while (!engine.holding() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(20ms);
  ASSERT_TRUE(engine.holding());
  EXPECT_EQ(engine.first_event(), "e30");  // offset 30: the take-over's answer
  // The writer completes the chunk a little later, from its own thread; leaving the group revokes the
  // partition meanwhile.
  std::thread writer([&] {
    std::this_thread::sleep_for(300ms);
    engine.complete();
  });
  consumer.stop();
  writer.join();
  EXPECT_EQ(engine.order(), (std::vector<std::string>{"take_over", "done", "let_go"}));
}

// A start offset the topic no longer holds (retention deleted those records while the partition was unowned or
// behind: the mock drops a partition's oldest records beyond 5 MiB) resumes at the earliest record retained, not
// at the end (librdkafka's default, which would skip everything retained).
TEST(KafkaConsumer, AStartOffsetDeletedByRetentionResumesAtTheEarliestRecordRetained) {
  test::KafkaMock mock(std::string(RAPPORT_BINARY_DIR) + "/daemon/rapport-kafka-mock", {"events:1"});
  test::KafkaProducer producer(mock.bootstrap());
  const std::string padding(200, 'x');
  constexpr int kRecords = 32000;  // ~8 MiB: the mock keeps the last 5 MiB
  for (int i = 0; i < kRecords; ++i) {
    producer.produce("events", "c",
                     R"({"customer_id":"c","event_id":"e)" + std::to_string(i) +
                         R"(","type":"purchase","amount":1,"ts":1704067200000,"attributes":{"pad":")" + padding +
                         R"("}})");
  }
  producer.flush();
  HoldingEngine engine(/*start=*/0);
  test::CountingStats stats;
  KafkaConsumer consumer(
      KafkaOptions{mock.bootstrap(), "events", "g", {{"session.timeout.ms", "6000"}}, 40, "", RestoreMode::kInput},
      DecodeOptions{}, engine, stats);
  ASSERT_TRUE(consumer.start().ok());
  const auto deadline = std::chrono::steady_clock::now() + 180s;
  while (!engine.holding() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(20ms);
  ASSERT_TRUE(engine.holding()) << "nothing consumed: the consumer skipped to the end";
  const std::string first = engine.first_event();
  // Leaving the group waits for the chunk in the writer's hands: complete it meanwhile.
  std::thread writer([&] {
    std::this_thread::sleep_for(300ms);
    engine.complete();
  });
  consumer.stop();
  writer.join();
  ASSERT_GT(first.size(), 1u);
  const int first_number = std::stoi(first.substr(1));
  EXPECT_GT(first_number, 0) << "the mock kept offset 0: the test did not exercise retention";
  // The mock keeps ~5 MiB (~13,000 of these records): the earliest retained is that far from the end.
  EXPECT_LT(first_number, kRecords - 5000) << "resumed near the end, not at the earliest record retained";
}

TEST(KafkaConsumer, RefusesATopicWithAnotherPartitionCount) {
  test::KafkaMock mock(std::string(RAPPORT_BINARY_DIR) + "/daemon/rapport-kafka-mock", {"events:3"});
  FakeEngine engine(0);
  test::CountingStats stats;
  KafkaConsumer consumer(KafkaOptions{mock.bootstrap(), "events", "g", {}, 100, "", RestoreMode::kInput},
                         DecodeOptions{}, engine, stats);
  const Status s = consumer.start();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("has 3 partitions and the state dir 1"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace rapport
