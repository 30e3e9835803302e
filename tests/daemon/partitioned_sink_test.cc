// PartitionedSink: splits submissions by partition, admits all parts or none, and completes the
// original only once every part has committed (the acknowledgement point).
#include "daemon/partitioned_sink.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <future>
#include <random>
#include <thread>

#include "storage/partitioner.h"

namespace rapport {
namespace {

Event make_event(const std::string& customer, const std::string& id) {
  Event e;
  e.customer_id.assign(customer);
  e.event_id.assign(id);
  e.ts_ms = 1700000000000;
  e.type = EventType::kPurchase;
  e.amount = 1;
  return e;
}

class PartitionedSinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(RAPPORT_BINARY_DIR) / "test-tmp" /
           ("sink-" + std::to_string(::getpid()) + "-" + std::to_string(std::random_device{}()));
    PartitionedStoreOptions options;
    options.directory = dir_.string();
    options.durability = Durability::kAsync;
    options.partitions = 2;
    options.checkpoint_in_apply_batch = false;
    auto store = PartitionedStore::open(options);
    ASSERT_TRUE(store.ok()) << store.message();
    store_ = std::move(store.value());
    // Customers of each partition.
    for (int i = 0; in_[0].size() < 3 || in_[1].size() < 3; ++i) {
      const std::string id = "cust-" + std::to_string(i);
      in_[partition_of(id, 2)].push_back(id);
    }
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::unique_ptr<Submission> submission(std::vector<Event> events, std::promise<SubmissionResult>& done,
                                         std::atomic<int>* calls = nullptr) {
    auto s = std::make_unique<Submission>();
    s->transport = Transport::kHttp;
    s->events = std::move(events);
    for (std::size_t i = 0; i < s->events.size(); ++i) s->event_index.push_back(static_cast<std::uint32_t>(i));
    s->received_at = std::chrono::steady_clock::now();
    s->done = [&done, calls](SubmissionResult&& r) {
      if (calls != nullptr) ++*calls;
      done.set_value(std::move(r));
    };
    return s;
  }

  bool stored(std::uint32_t partition, const std::string& id) const {
    auto got = store_->partition(partition).get_customer(id);
    return got.ok() && got->has_value();
  }

  std::uint64_t ack_samples() { return metrics_.ack_latency(Transport::kHttp).Collect().histogram.sample_count; }

  std::filesystem::path dir_;
  std::unique_ptr<PartitionedStore> store_;
  Metrics metrics_{"test"};
  std::vector<std::string> in_[2];
};

TEST_F(PartitionedSinkTest, CompletesTheOriginalOnlyAfterEveryPartHasCommitted) {
  Writer w0(store_->partition(0), metrics_, WriterOptions{}, ApplyConfig{}, 0);
  Writer w1(store_->partition(1), metrics_, WriterOptions{}, ApplyConfig{}, 1);
  PartitionedSink sink({&w0, &w1}, metrics_);
  w0.start();  // partition 1's writer is not running yet: its part waits
  std::promise<SubmissionResult> done;
  std::atomic<int> calls{0};
  auto s = submission(
      {make_event(in_[1][0], "a"), make_event(in_[0][0], "b"), make_event(in_[1][1], "c"), make_event(in_[0][0], "b")},
      done, &calls);
  ASSERT_TRUE(sink.try_submit(s));
  EXPECT_EQ(s, nullptr);
  auto answer = done.get_future();
  while (!stored(0, in_[0][0])) std::this_thread::yield();                          // partition 0's part is durable ...
  EXPECT_EQ(calls.load(), 0) << "completed before partition 1 committed its part";  // ... but not the whole
  w1.start();
  const SubmissionResult r = answer.get();
  ASSERT_TRUE(r.status.ok()) << r.status.message();
  using O = Outcome;
  EXPECT_EQ(r.outcomes, (std::vector<O>{O::kAccepted, O::kAccepted, O::kAccepted, O::kDuplicate}));
  EXPECT_TRUE(stored(1, in_[1][0]));
  EXPECT_TRUE(stored(1, in_[1][1]));
  w0.stop();
  w1.stop();
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(ack_samples(), 1u) << "the ack latency is observed once, for the whole";
}

TEST_F(PartitionedSinkTest, AdmitsEveryPartOrNoneAndLeavesARefusedSubmissionAsItWas) {
  WriterOptions small;
  small.queue_capacity_events = 1;
  Writer w0(store_->partition(0), metrics_, WriterOptions{}, ApplyConfig{}, 0);
  Writer w1(store_->partition(1), metrics_, small, ApplyConfig{}, 1);
  PartitionedSink sink({&w0, &w1}, metrics_);
  std::promise<SubmissionResult> filler_done, done;
  auto filler = submission({make_event(in_[1][2], "f")}, filler_done);
  ASSERT_TRUE(w1.try_submit(filler));  // not started: partition 1's queue is now full
  auto s = submission({make_event(in_[0][0], "x"), make_event(in_[1][0], "y")}, done);
  s->rejections.push_back(Rejection{3, RejectReason::kMalformedJson, "bad", "{"});
  ASSERT_FALSE(sink.try_submit(s));
  ASSERT_NE(s, nullptr);
  ASSERT_EQ(s->events.size(), 2u);
  EXPECT_EQ(s->events[0].customer_id.view(), in_[0][0]);
  EXPECT_EQ(s->events[1].customer_id.view(), in_[1][0]);
  ASSERT_EQ(s->rejections.size(), 1u);
  EXPECT_EQ(s->rejections[0].message, "bad");
  EXPECT_TRUE(static_cast<bool>(s->done));
  EXPECT_FALSE(w0.busy()) << "partition 0's part was queued although partition 1 refused";
  w0.start();
  w1.start();
  filler_done.get_future().get();
  ASSERT_TRUE(sink.try_submit(s));  // room again: the same submission goes through whole
  const SubmissionResult r = done.get_future().get();
  ASSERT_TRUE(r.status.ok());
  EXPECT_EQ(r.outcomes.size(), 2u);
  EXPECT_TRUE(stored(0, in_[0][0]));
  EXPECT_TRUE(stored(1, in_[1][0]));
  EXPECT_EQ(store_->partition(0).stats().dead_letters, 1u);
}

TEST_F(PartitionedSinkTest, DeadLettersGoWithPartitionZerosPart) {
  Writers writers(*store_, metrics_, WriterOptions{}, ApplyConfig{});
  writers.start();
  std::promise<SubmissionResult> done;
  auto s = submission({make_event(in_[1][0], "e1")}, done);  // events for partition 1 only
  s->rejections.push_back(Rejection{2, RejectReason::kMalformedJson, "bad line", "{"});
  ASSERT_TRUE(writers.sink().try_submit(s));
  const SubmissionResult r = done.get_future().get();
  ASSERT_TRUE(r.status.ok());
  EXPECT_EQ(r.outcomes, std::vector<Outcome>{Outcome::kAccepted});
  EXPECT_EQ(store_->partition(0).stats().dead_letters, 1u);
  EXPECT_EQ(store_->partition(1).stats().dead_letters, 0u);
  EXPECT_TRUE(stored(1, in_[1][0]));
  writers.stop();
  EXPECT_FALSE(writers.accepting());
  std::promise<SubmissionResult> late;
  auto refused = submission({make_event(in_[0][0], "e2"), make_event(in_[1][0], "e3")}, late);
  EXPECT_FALSE(writers.sink().try_submit(refused));
}

}  // namespace
}  // namespace rapport
