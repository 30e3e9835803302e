// PartitionedSink: splits submissions by partition, admits all parts or none, and completes the
// original only once every part has committed (the acknowledgement point).
#include "daemon/partitioned_sink.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <filesystem>
#include <future>
#include <mutex>
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

// Identify items: the merges the sink queued (set_merge), answered by the test.
class Merges {
 public:
  MergeFn fn() {
    return [this](std::string survivor, std::vector<std::string> from, MergeDone done) {
      std::lock_guard lock(mutex_);
      calls_.push_back({std::move(survivor), std::move(from), std::move(done)});
      cv_.notify_all();
    };
  }
  // Waits for the n-th merge (0-based) and answers it.
  void answer(std::size_t n, int status, std::string error = {}) {
    MergeDone done;
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [&] { return calls_.size() > n; });
      done = std::move(calls_[n].done);
    }
    done(status, std::move(error));
  }
  std::size_t count() {
    std::lock_guard lock(mutex_);
    return calls_.size();
  }
  std::pair<std::string, std::vector<std::string>> args(std::size_t n) {
    std::lock_guard lock(mutex_);
    return {calls_.at(n).survivor, calls_.at(n).from};
  }

 private:
  struct Call {
    std::string survivor;
    std::vector<std::string> from;
    MergeDone done;
  };
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<Call> calls_;
};

Identify identify(std::uint32_t index, const std::string& survivor, std::vector<std::string> aliases) {
  Identify i;
  i.index = index;
  i.customer_id = survivor;
  i.aliases = std::move(aliases);
  i.payload = R"({"type":"identify"})";
  return i;
}

TEST_F(PartitionedSinkTest, IdentifyItemsCompleteOnlyAfterTheirMergesAndARefusalIsADeadLetter) {
  Writers writers(*store_, metrics_, WriterOptions{}, ApplyConfig{});
  Merges merges;
  writers.set_merge(merges.fn(), "unused");
  writers.start();
  std::promise<SubmissionResult> done;
  std::atomic<int> calls{0};
  auto s = submission({make_event(in_[1][0], "e1"), make_event(in_[0][0], "e2")}, done, &calls);
  s->identifies.push_back(identify(1, in_[0][1], {in_[1][1]}));
  s->identifies.push_back(identify(3, in_[0][1], {"anonymous"}));
  ASSERT_TRUE(writers.sink().try_submit(s));
  while (!stored(1, in_[1][0]) || !stored(0, in_[0][0])) std::this_thread::yield();  // the events are committed
  while (merges.count() < 2) std::this_thread::yield();
  EXPECT_EQ(merges.args(0), (std::pair<std::string, std::vector<std::string>>{in_[0][1], {in_[1][1]}}));
  EXPECT_EQ(merges.args(1), (std::pair<std::string, std::vector<std::string>>{in_[0][1], {"anonymous"}}));
  merges.answer(0, 200);
  EXPECT_EQ(calls.load(), 0) << "acknowledged before every merge answered";
  merges.answer(1, 422, "customer id 'anonymous' is blocked from merging");
  const SubmissionResult r = done.get_future().get();
  ASSERT_TRUE(r.status.ok()) << r.status.message();
  EXPECT_EQ(r.outcomes, (std::vector<Outcome>{Outcome::kAccepted, Outcome::kAccepted}));
  ASSERT_EQ(r.refused.size(), 1u);
  EXPECT_EQ(r.refused[0].index, 3u);
  EXPECT_EQ(r.refused[0].reason, RejectReason::kIdentityRefused);
  EXPECT_EQ(r.refused[0].message, "customer id 'anonymous' is blocked from merging");
  // The refusal's dead letter is stored before the completion.
  auto letters = store_->partition(0).dead_letters(0, 10);
  ASSERT_TRUE(letters.ok()) << letters.message();
  ASSERT_EQ(letters->size(), 1u);
  EXPECT_EQ(letters->at(0).letter.reason, "identity_refused");
  EXPECT_EQ(letters->at(0).letter.transport, "http");
  EXPECT_EQ(letters->at(0).letter.message, "customer id 'anonymous' is blocked from merging");
  EXPECT_EQ(letters->at(0).letter.payload, R"({"type":"identify"})");
  writers.stop();
  EXPECT_EQ(calls.load(), 1);
}

TEST_F(PartitionedSinkTest, AMergeThatCannotRunFailsTheSubmission) {
  Writers writers(*store_, metrics_, WriterOptions{}, ApplyConfig{});
  Merges merges;
  writers.set_merge(merges.fn(), "unused");
  writers.start();
  std::promise<SubmissionResult> done;
  auto s = submission({make_event(in_[0][0], "e1")}, done);
  s->identifies.push_back(identify(1, in_[0][1], {in_[1][1]}));
  ASSERT_TRUE(writers.sink().try_submit(s));
  merges.answer(0, 503, "not accepting: shutting down");
  const SubmissionResult r = done.get_future().get();
  ASSERT_FALSE(r.status.ok());
  EXPECT_EQ(r.status.message(), "identify (line or item 1): not accepting: shutting down");
  writers.stop();
}

TEST_F(PartitionedSinkTest, WithoutAMergeEveryIdentifyIsRefusedAndOnlyIdentifiesIsFine) {
  Writers writers(*store_, metrics_, WriterOptions{}, ApplyConfig{});
  writers.set_merge(nullptr, "identify events are not available in Kafka mode");
  writers.start();
  std::promise<SubmissionResult> done;
  auto s = submission({}, done);
  s->identifies.push_back(identify(0, "a", {"b"}));
  s->identifies.back().dead_letter = false;  // HTTP ?deadletter=false
  ASSERT_TRUE(writers.sink().try_submit(s));
  const SubmissionResult r = done.get_future().get();
  ASSERT_TRUE(r.status.ok()) << r.status.message();
  EXPECT_TRUE(r.outcomes.empty());
  ASSERT_EQ(r.refused.size(), 1u);
  EXPECT_EQ(r.refused[0].message, "identify events are not available in Kafka mode");
  EXPECT_EQ(store_->partition(0).stats().dead_letters, 0u);
  writers.stop();
}

TEST_F(PartitionedSinkTest, AFullQueueLeavesTheIdentifyItemsWithTheSubmissionAndMergesNothing) {
  WriterOptions small;
  small.queue_capacity_events = 1;
  Writer w0(store_->partition(0), metrics_, small, ApplyConfig{}, 0);
  PartitionedSink sink({&w0}, metrics_);
  Merges merges;
  sink.set_merge(merges.fn(), "unused");
  std::promise<SubmissionResult> filler_done, done;
  auto filler = submission({make_event(in_[0][2], "f")}, filler_done);
  ASSERT_TRUE(w0.try_submit(filler));  // not started: the queue is now full
  auto s = submission({make_event(in_[0][0], "x")}, done);
  s->identifies.push_back(identify(1, "a", {"b"}));
  ASSERT_FALSE(sink.try_submit(s));
  ASSERT_NE(s, nullptr);
  ASSERT_EQ(s->identifies.size(), 1u);
  EXPECT_EQ(s->identifies[0].aliases, std::vector<std::string>{"b"});
  EXPECT_EQ(merges.count(), 0u);
  w0.start();
  filler_done.get_future().get();
  ASSERT_TRUE(sink.try_submit(s));  // room again: the same submission goes through, with its merge
  merges.answer(0, 200);
  const SubmissionResult r = done.get_future().get();
  ASSERT_TRUE(r.status.ok()) << r.status.message();
  EXPECT_TRUE(r.refused.empty());
  EXPECT_EQ(merges.count(), 1u);
  w0.stop();
}

}  // namespace
}  // namespace rapport
