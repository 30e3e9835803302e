#include "daemon/writer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <future>
#include <random>
#include <thread>

namespace rapport {
namespace {

Event make_event(const std::string& customer, const std::string& id, double amount = 1) {
  Event e;
  e.customer_id.assign(customer);
  e.event_id.assign(id);
  e.ts_ms = 1700000000000;
  e.type = EventType::kPurchase;
  e.amount = amount;
  return e;
}

class WriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(RAPPORT_BINARY_DIR) / "test-tmp" /
           ("writer-" + std::to_string(::getpid()) + "-" + std::to_string(std::random_device{}()));
    StoreOptions options;
    options.directory = dir_.string();
    auto store = Store::open(options);
    ASSERT_TRUE(store.ok()) << store.message();
    store_ = std::move(store.value());
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::unique_ptr<Submission> submission(std::vector<Event> events, std::promise<SubmissionResult>& done) {
    auto s = std::make_unique<Submission>();
    s->transport = Transport::kHttp;
    s->events = std::move(events);
    for (std::size_t i = 0; i < s->events.size(); ++i) s->event_index.push_back(static_cast<std::uint32_t>(i));
    s->received_at = std::chrono::steady_clock::now();
    s->done = [&done](SubmissionResult&& r) { done.set_value(std::move(r)); };
    return s;
  }

  std::filesystem::path dir_;
  std::unique_ptr<Store> store_;
  Metrics metrics_{"test"};
};

TEST_F(WriterTest, CommitsThenCompletesWithOutcomesIncludingDuplicates) {
  Writer writer(*store_, metrics_, WriterOptions{}, ApplyConfig{});
  writer.start();
  std::promise<SubmissionResult> first, second;
  auto a = submission({make_event("c", "1", 5), make_event("c", "2", 7)}, first);
  ASSERT_TRUE(writer.try_submit(a));
  auto ra = first.get_future().get();
  ASSERT_TRUE(ra.status.ok()) << ra.status.message();
  EXPECT_EQ(ra.outcomes, (std::vector<Outcome>{Outcome::kAccepted, Outcome::kAccepted}));
  auto b = submission({make_event("c", "2", 7), make_event("c", "3", 1)}, second);
  ASSERT_TRUE(writer.try_submit(b));
  auto rb = second.get_future().get();
  EXPECT_EQ(rb.outcomes, (std::vector<Outcome>{Outcome::kDuplicate, Outcome::kAccepted}));
  auto state = store_->get_customer("c");
  ASSERT_TRUE(state.ok());
  ASSERT_TRUE(state->has_value());
  EXPECT_EQ(evaluate(**state, 1700000000000, EvaluateConfig{}).revenue, 13);
  writer.stop();
}

TEST_F(WriterTest, FullQueueRefusesWithoutTakingTheSubmission) {
  WriterOptions options;
  options.queue_capacity_events = 3;
  Writer writer(*store_, metrics_, options, ApplyConfig{});  // not started: nothing drains
  std::promise<SubmissionResult> p1, p2;
  auto a = submission({make_event("q", "1"), make_event("q", "2")}, p1);
  auto b = submission({make_event("q", "3"), make_event("q", "4")}, p2);
  EXPECT_TRUE(writer.try_submit(a));
  EXPECT_FALSE(writer.try_submit(b));
  ASSERT_NE(b, nullptr);  // still the caller's to retry
  EXPECT_EQ(b->events.size(), 2u);
  writer.start();
  EXPECT_TRUE(p1.get_future().get().status.ok());
  EXPECT_TRUE(writer.try_submit(b));
  EXPECT_TRUE(p2.get_future().get().status.ok());
  writer.stop();
}

TEST_F(WriterTest, StopCommitsEverythingQueuedAndThenRefuses) {
  Writer writer(*store_, metrics_, WriterOptions{}, ApplyConfig{});
  std::promise<SubmissionResult> p;
  auto a = submission({make_event("s", "1")}, p);
  ASSERT_TRUE(writer.try_submit(a));
  writer.start();
  writer.stop();
  EXPECT_TRUE(p.get_future().get().status.ok());
  EXPECT_FALSE(writer.accepting());
  std::promise<SubmissionResult> late;
  auto b = submission({make_event("s", "2")}, late);
  EXPECT_FALSE(writer.try_submit(b));
  EXPECT_FALSE(writer.post([](Store&) {}));
}

TEST_F(WriterTest, JobsRunInOrderWithSubmissions) {
  Writer writer(*store_, metrics_, WriterOptions{}, ApplyConfig{});
  std::promise<SubmissionResult> p;
  auto a = submission({make_event("j", "1")}, p);
  ASSERT_TRUE(writer.try_submit(a));
  std::promise<bool> saw;
  ASSERT_TRUE(writer.post([&saw](Store& store) {
    auto s = store.get_customer("j");
    saw.set_value(s.ok() && s->has_value());
  }));
  writer.start();
  EXPECT_TRUE(saw.get_future().get());  // the job ran after the submission was committed
  writer.stop();
}

// The test hook behind the watchdog e2e test: after N commits the writer takes the next batch and
// blocks (busy, no progress, nothing completed) until stop(), which commits and completes it.
TEST_F(WriterTest, StallHookBlocksAfterNCommitsUntilStop) {
  WriterOptions options;
  options.test_stall_after_commits = 1;
  Writer writer(*store_, metrics_, options, ApplyConfig{});
  writer.start();
  std::promise<SubmissionResult> first, second;
  auto a = submission({make_event("st", "1")}, first);
  ASSERT_TRUE(writer.try_submit(a));
  ASSERT_TRUE(first.get_future().get().status.ok());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (writer.progress() < 1 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_EQ(writer.progress(), 1u);

  auto b = submission({make_event("st", "2")}, second);
  ASSERT_TRUE(writer.try_submit(b));
  auto completed = second.get_future();
  // However long we look, the stalled batch is neither completed nor stored, and the writer stays busy.
  EXPECT_EQ(completed.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout);
  EXPECT_TRUE(writer.busy());
  EXPECT_EQ(writer.progress(), 1u);
  auto state = store_->get_customer("st");
  ASSERT_TRUE(state.ok() && state->has_value());
  EXPECT_EQ(evaluate(**state, 1700000000000, EvaluateConfig{}).revenue, 1);

  writer.stop();  // releases the stall: the batch is committed and completed
  ASSERT_EQ(completed.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  const SubmissionResult r = completed.get();
  ASSERT_TRUE(r.status.ok()) << r.status.message();
  EXPECT_EQ(r.outcomes, std::vector<Outcome>{Outcome::kAccepted});
  state = store_->get_customer("st");
  ASSERT_TRUE(state.ok() && state->has_value());
  EXPECT_EQ(evaluate(**state, 1700000000000, EvaluateConfig{}).revenue, 2);
}

TEST_F(WriterTest, RejectionsBecomeDeadLetters) {
  Writer writer(*store_, metrics_, WriterOptions{}, ApplyConfig{});
  writer.start();
  std::promise<SubmissionResult> p;
  auto a = submission({}, p);
  a->rejections.push_back(Rejection{3, RejectReason::kMalformedJson, "bad", "{oops"});
  ASSERT_TRUE(writer.try_submit(a));
  EXPECT_TRUE(p.get_future().get().status.ok());
  auto letters = store_->dead_letters(0, 10);
  ASSERT_TRUE(letters.ok());
  ASSERT_EQ(letters->size(), 1u);
  EXPECT_EQ((*letters)[0].letter.payload, "{oops");
  EXPECT_EQ((*letters)[0].letter.reason, "malformed_json");
  EXPECT_EQ((*letters)[0].letter.transport, "http");
  writer.stop();
}

// The daemon's arrangement: the store leaves checkpoints to the writer, which
// writes slices after acknowledging and finishes a checkpoint while idle.
TEST_F(WriterTest, WritesCheckpointSlicesAfterAcknowledgingAndFinishesThemWhenIdle) {
  store_.reset();
  StoreOptions options;
  options.directory = dir_.string();
  options.checkpoint_in_apply_batch = false;
  options.checkpoint_events = 20000;
  auto reopened = Store::open(options);
  ASSERT_TRUE(reopened.ok()) << reopened.message();
  store_ = std::move(reopened.value());

  Writer writer(*store_, metrics_, WriterOptions{}, ApplyConfig{});
  writer.start();
  // 20 batches of 1000 events, each on new customers: a checkpoint becomes due with the last,
  // many slices long at that batch size.
  for (int b = 0; b < 20; ++b) {
    std::vector<Event> events;
    for (int i = 0; i < 1000; ++i) events.push_back(make_event("c" + std::to_string(b * 1000 + i), "e"));
    std::promise<SubmissionResult> done;
    auto s = submission(events, done);
    ASSERT_TRUE(writer.try_submit(s));
    ASSERT_TRUE(done.get_future().get().status.ok());
  }
  // Nothing else arrives: idle time writes the remaining slices.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (store_->stats().checkpoints == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  StoreStats stats = store_->stats();
  EXPECT_EQ(stats.checkpoints, 1u);
  EXPECT_GE(stats.checkpoint_slices, 2u) << "the checkpoint was not written in slices";
  EXPECT_EQ(stats.pending_events, 0u);

  // Below the threshold nothing is due; a request (the daemon's clock) checkpoints it anyway.
  std::promise<SubmissionResult> more;
  auto t = submission({make_event("late", "1")}, more);
  ASSERT_TRUE(writer.try_submit(t));
  ASSERT_TRUE(more.get_future().get().status.ok());
  EXPECT_EQ(store_->stats().pending_events, 1u);
  ASSERT_TRUE(writer.request_checkpoint());
  while (store_->stats().checkpoints < 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  stats = store_->stats();
  EXPECT_EQ(stats.checkpoints, 2u);
  EXPECT_EQ(stats.pending_events, 0u);
  writer.stop();
}

}  // namespace
}  // namespace rapport
