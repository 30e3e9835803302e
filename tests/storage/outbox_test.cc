// The alerts outbox (storage/outbox.h): an observer's payloads commit with the event that fired them,
// duplicates and journal replay fire nothing, the bound drops the oldest and never refuses an event,
// entries move between pending and dead, and sequences are never reused.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "storage/store.h"
#include "tests/storage/store_fixture.h"

namespace rapport {
namespace {

Event complaint(std::string_view customer, std::string_view id, std::int64_t ts_ms = 1'700'000'000'000) {
  Event e;
  e.customer_id.assign(customer);
  e.event_id.assign(id);
  e.ts_ms = ts_ms;
  e.type = EventType::kComplaint;
  return e;
}

// Fires one payload "<customer>/<event>/<events before>-><events after>" per complaint.
class RecordingObserver : public OutboxObserver {
 public:
  bool before_event(const Event& event, const CustomerState& state) override {
    ++calls;
    before_count = state.event_count;
    return event.type == EventType::kComplaint;
  }
  void after_event(const Event& event, const CustomerState& state, std::vector<std::string>& payloads) override {
    payloads.push_back(std::string(event.customer_id.view()) + "/" + std::string(event.event_id.view()) + "/" +
                       std::to_string(before_count) + "->" + std::to_string(state.event_count));
  }
  int calls = 0;
  std::uint32_t before_count = 0;
};

std::vector<std::string> payloads(const Store& store, OutboxArea area) {
  auto r = store.outbox(area, 0, 1000);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.message());
  std::vector<std::string> out;
  if (r.ok()) {
    for (const OutboxEntry& e : *r) out.push_back(e.payload);
  }
  return out;
}

std::vector<std::uint64_t> sequences(const Store& store, OutboxArea area) {
  auto r = store.outbox(area, 0, 1000);
  std::vector<std::uint64_t> out;
  if (r.ok()) {
    for (const OutboxEntry& e : *r) out.push_back(e.sequence);
  }
  return out;
}

class OutboxTest : public StoreFixture {};

TEST_F(OutboxTest, FiredAlertsCommitWithTheirEventWithBeforeAndAfterState) {
  auto store = open_ok(options());
  ASSERT_TRUE(store);
  auto observer = std::make_shared<RecordingObserver>();
  store->set_outbox_observer(observer);
  Event purchase = complaint("c1", "e0");
  purchase.type = EventType::kPurchase;
  purchase.amount = 5;
  apply_ok(*store, {purchase, complaint("c1", "e1"), complaint("c2", "e1")});
  EXPECT_EQ(payloads(*store, OutboxArea::kPending), (std::vector<std::string>{"c1/e1/1->2", "c2/e1/0->1"}));
  // A duplicate is not applied, so it fires nothing (and the observer is not asked).
  const int calls = observer->calls;
  apply_ok(*store, {complaint("c1", "e1")});
  EXPECT_EQ(observer->calls, calls);
  EXPECT_EQ(payloads(*store, OutboxArea::kPending).size(), 2u);
  auto stats = store->outbox_stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->pending, 2u);
  EXPECT_EQ(stats->dead, 0u);
  EXPECT_EQ(stats->dropped, 0u);
}

TEST_F(OutboxTest, SurvivesReopenAndJournalReplayFiresNothingAgain) {
  StoreOptions o = options();
  o.checkpoint_on_close = false;  // the events are replayed from the journal at the next open
  {
    auto store = open_ok(o);
    ASSERT_TRUE(store);
    store->set_outbox_observer(std::make_shared<RecordingObserver>());
    apply_ok(*store, {complaint("c1", "e1"), complaint("c1", "e2")});
  }
  auto store = open_ok(o);
  ASSERT_TRUE(store);
  auto observer = std::make_shared<RecordingObserver>();
  store->set_outbox_observer(observer);
  apply_ok(*store, {complaint("c1", "e3")});
  EXPECT_EQ(payloads(*store, OutboxArea::kPending),
            (std::vector<std::string>{"c1/e1/0->1", "c1/e2/1->2", "c1/e3/2->3"}));
  EXPECT_EQ(observer->calls, 1);
}

TEST_F(OutboxTest, NoObserverWritesNothing) {
  auto store = open_ok(options());
  ASSERT_TRUE(store);
  apply_ok(*store, {complaint("c1", "e1")});
  EXPECT_TRUE(payloads(*store, OutboxArea::kPending).empty());
  store->set_outbox_observer(std::make_shared<RecordingObserver>());
  store->set_outbox_observer(nullptr);
  apply_ok(*store, {complaint("c1", "e2")});
  EXPECT_TRUE(payloads(*store, OutboxArea::kPending).empty());
}

TEST_F(OutboxTest, BeyondTheBoundTheOldestIsDroppedAndNoEventRefused) {
  StoreOptions o = options();
  o.outbox_capacity = 3;
  auto store = open_ok(o);
  ASSERT_TRUE(store);
  store->set_outbox_observer(std::make_shared<RecordingObserver>());
  for (int i = 0; i < 5; ++i) {
    const auto outcomes = apply_ok(*store, {complaint("c" + std::to_string(i), "e")});
    ASSERT_EQ(outcomes, std::vector<EventOutcome>{EventOutcome::kAccepted});
  }
  EXPECT_EQ(payloads(*store, OutboxArea::kPending), (std::vector<std::string>{"c2/e/0->1", "c3/e/0->1", "c4/e/0->1"}));
  auto stats = store->outbox_stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->pending, 3u);
  EXPECT_EQ(stats->dropped, 2u);
  EXPECT_EQ(store->stats().events, 5u);
}

TEST_F(OutboxTest, RemoveMoveAndReplayKeepSequencesUnique) {
  auto store = open_ok(options());
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->add_outbox(std::vector<std::string>{"a", "b", "c"}).ok());
  const auto seqs = sequences(*store, OutboxArea::kPending);
  ASSERT_EQ(seqs.size(), 3u);
  EXPECT_LT(seqs[0], seqs[1]);
  EXPECT_LT(seqs[1], seqs[2]);
  // Delivered: removed. Given up: moved to dead, with its sequence.
  auto removed = store->remove_outbox(OutboxArea::kPending, std::vector<std::uint64_t>{seqs[0], 999});
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(*removed, 1u);
  auto moved = store->move_outbox(OutboxArea::kPending, std::vector<std::uint64_t>{seqs[2]});
  ASSERT_TRUE(moved.ok());
  EXPECT_EQ(*moved, 1u);
  EXPECT_EQ(payloads(*store, OutboxArea::kPending), std::vector<std::string>{"b"});
  EXPECT_EQ(sequences(*store, OutboxArea::kDead), std::vector<std::uint64_t>{seqs[2]});
  // Every entry removed: a new one still gets a new sequence.
  ASSERT_TRUE(store->remove_outbox(OutboxArea::kPending, std::vector<std::uint64_t>{seqs[1]}).ok());
  ASSERT_TRUE(store->add_outbox(std::vector<std::string>{"d"}).ok());
  const auto after = sequences(*store, OutboxArea::kPending);
  ASSERT_EQ(after.size(), 1u);
  EXPECT_GT(after[0], seqs[2]);
  // Replay: dead back to pending, same sequence, same payload.
  moved = store->move_outbox(OutboxArea::kDead, std::vector<std::uint64_t>{seqs[2]});
  ASSERT_TRUE(moved.ok());
  EXPECT_EQ(*moved, 1u);
  EXPECT_EQ(payloads(*store, OutboxArea::kPending), (std::vector<std::string>{"c", "d"}));
  EXPECT_TRUE(sequences(*store, OutboxArea::kDead).empty());
  // Paging: strictly after a sequence.
  auto page = store->outbox(OutboxArea::kPending, seqs[2], 10);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->size(), 1u);
  EXPECT_EQ((*page)[0].payload, "d");
}

// rapportctl migrate: pending and dead entries in one transaction, numbered from at least the given
// sequence, which becomes the floor of later ones too (and survives a reopen).
TEST_F(OutboxTest, ImportNumbersFromTheGivenSequenceAndRaisesTheHighWaterMark) {
  {
    auto store = open_ok(options());
    ASSERT_TRUE(store);
    auto next = store->outbox_next_sequence();
    ASSERT_TRUE(next.ok());
    EXPECT_EQ(*next, 1u);
    ASSERT_TRUE(store->import_outbox(std::vector<std::string>{"p1", "p2"}, std::vector<std::string>{"d1"}, 100).ok());
    EXPECT_EQ(payloads(*store, OutboxArea::kPending), (std::vector<std::string>{"p1", "p2"}));
    EXPECT_EQ(payloads(*store, OutboxArea::kDead), std::vector<std::string>{"d1"});
    const auto pending = sequences(*store, OutboxArea::kPending);
    const auto dead = sequences(*store, OutboxArea::kDead);
    ASSERT_EQ(pending.size(), 2u);
    ASSERT_EQ(dead.size(), 1u);
    EXPECT_GE(pending[0], 100u);
    EXPECT_GE(dead[0], 100u);
    EXPECT_NE(dead[0], pending[0]);
    EXPECT_NE(dead[0], pending[1]);
    next = store->outbox_next_sequence();
    ASSERT_TRUE(next.ok());
    EXPECT_GT(*next, std::max(pending[1], dead[0]));
    // Nothing to import still raises the floor.
    ASSERT_TRUE(store->import_outbox({}, {}, 500).ok());
    next = store->outbox_next_sequence();
    ASSERT_TRUE(next.ok());
    EXPECT_EQ(*next, 500u);
  }
  auto reopened = open_ok(options());
  ASSERT_TRUE(reopened);
  ASSERT_TRUE(reopened->add_outbox(std::vector<std::string>{"later"}).ok());
  const auto after = sequences(*reopened, OutboxArea::kPending);
  ASSERT_EQ(after.size(), 3u);
  EXPECT_EQ(after.back(), 500u);
}

TEST_F(OutboxTest, QueuedChangesRideInTheNextBatchOrAFlush) {
  auto store = open_ok(options());
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->add_outbox(std::vector<std::string>{"a", "b", "c", "d"}).ok());
  const auto seqs = sequences(*store, OutboxArea::kPending);
  ASSERT_EQ(seqs.size(), 4u);
  // Delivered a, given up on b: written by the next batch's commit.
  store->queue_outbox_change(seqs[0], /*delivered=*/true);
  store->queue_outbox_change(seqs[1], /*delivered=*/false);
  EXPECT_EQ(payloads(*store, OutboxArea::kPending).size(), 4u);  // nothing written yet
  apply_ok(*store, {complaint("c1", "e1")});
  EXPECT_EQ(payloads(*store, OutboxArea::kPending), (std::vector<std::string>{"c", "d"}));
  EXPECT_EQ(payloads(*store, OutboxArea::kDead), std::vector<std::string>{"b"});
  // With no batch: a flush writes them; an empty queue writes nothing.
  store->queue_outbox_change(seqs[2], true);
  store->queue_outbox_change(seqs[0], true);  // already gone: ignored
  auto flushed = store->flush_outbox_changes();
  ASSERT_TRUE(flushed.ok());
  EXPECT_EQ(*flushed, 2u);
  EXPECT_EQ(payloads(*store, OutboxArea::kPending), std::vector<std::string>{"d"});
  flushed = store->flush_outbox_changes();
  ASSERT_TRUE(flushed.ok());
  EXPECT_EQ(*flushed, 0u);
}

}  // namespace
}  // namespace rapport
