// The journal + checkpoint design behind Store: crash recovery by replay,
// read-your-writes before a checkpoint, dedup across checkpoints and reopens,
// checkpoint triggers, erasure, concurrency and map growth during checkpoints.
#include <gtest/gtest.h>
#include <lmdb.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "storage/store.h"
#include "tests/storage/store_fixture.h"

namespace rapport {
namespace {

namespace fs = std::filesystem;

constexpr auto kAccepted = EventOutcome::kAccepted;
constexpr auto kDuplicate = EventOutcome::kDuplicate;

Event make_event(std::string_view customer, std::string_view id, std::int64_t ts_ms,
                 EventType type = EventType::kPurchase) {
  Event e;
  e.customer_id.assign(customer);
  e.event_id.assign(id);
  e.ts_ms = ts_ms;
  e.type = type;
  e.channel.assign("web");
  if (type == EventType::kPurchase || type == EventType::kRefund) e.amount = 10.0 + static_cast<double>(ts_ms % 7);
  if (type == EventType::kSupport) e.sentiment = -0.25;
  return e;
}

// A mixed stream: 40 customers, purchases, support, surveys, some repeats.
std::vector<Event> mixed_batch(int batch, int size) {
  std::vector<Event> out;
  for (int i = 0; i < size; ++i) {
    const int n = batch * size + i;
    const EventType type = n % 5 == 0 ? EventType::kSupport : n % 7 == 0 ? EventType::kSurvey : EventType::kPurchase;
    Event e =
        make_event("cust-" + std::to_string(n % 40), "ev-" + std::to_string(n), 1'700'000'000'000 + n * 3600'000, type);
    if (type == EventType::kSurvey) e.nps = n % 11;
    out.push_back(e);
    if (n % 9 == 0) out.push_back(e);  // a duplicate within the batch
  }
  return out;
}

class JournalTest : public StoreFixture {
 protected:
  // No checkpoint on close: destroying the Store is then what a crash leaves on disk.
  StoreOptions crash_options(std::string_view sub = "db") const {
    StoreOptions o = options(sub);
    o.checkpoint_on_close = false;
    return o;
  }

  static std::optional<CustomerState> customer(const Store& store, std::string_view id) {
    auto r = store.get_customer(id);
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.message());
    return r.ok() ? *r : std::nullopt;
  }

  // Everything a reader can see: each customer's serialized state and timeline, in key order.
  struct Snapshot {
    std::map<std::string, std::string> states;
    std::map<std::string, std::vector<std::string>> timelines;
    std::uint64_t customers = 0, events = 0;
    friend bool operator==(const Snapshot&, const Snapshot&) = default;
  };
  static Snapshot snapshot(const Store& store) {
    Snapshot snap;
    std::vector<std::string> order;
    Status s = store.for_each_customer([&](std::string_view id, const CustomerState& state) {
      order.emplace_back(id);
      snap.states[std::string(id)] = serialize(state);
      return true;
    });
    EXPECT_TRUE(s.ok()) << s.message();
    EXPECT_TRUE(std::is_sorted(order.begin(), order.end()));
    EXPECT_EQ(order.size(), snap.states.size()) << "a customer was visited twice";
    for (const auto& [id, state] : snap.states) {
      auto r = store.customer_events(id, std::nullopt, 1000000);
      EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.message());
      if (!r.ok()) continue;
      auto& timeline = snap.timelines[id];
      for (const TimelineEvent& e : *r) {
        timeline.push_back(e.event_id + "@" + std::to_string(e.ts_ms) + "/" + std::to_string(int(e.type)) + "/" +
                           e.channel + "/" + std::to_string(e.amount.value_or(-1)) + "/" +
                           std::to_string(e.nps.value_or(-1)) + "/" + std::to_string(e.sentiment.value_or(-9)));
      }
      auto got = customer(store, id);
      EXPECT_TRUE(got.has_value());
      if (got) {
        EXPECT_EQ(serialize(*got), state) << id;
        EXPECT_EQ(got->event_count, timeline.size()) << id;
      }
    }
    snap.customers = store.stats().customers;
    snap.events = store.stats().events;
    EXPECT_EQ(snap.customers, snap.states.size());
    return snap;
  }
};

TEST_F(JournalTest, CrashRecoveryReplaysTheJournalExactlyOnce) {
  const StoreOptions o = crash_options();
  Snapshot before;
  std::vector<std::vector<EventOutcome>> outcomes;
  {
    auto store = open_ok(o);
    ASSERT_TRUE(store);
    for (int b = 0; b < 5; ++b) outcomes.push_back(apply_ok(*store, mixed_batch(b, 50)));
    std::vector<DeadLetter> letters = {DeadLetter{1, "tcp", "bad_json", "oops", "{"}};
    apply_ok(*store, mixed_batch(5, 50), ApplyConfig{}, letters);
    before = snapshot(*store);
    EXPECT_EQ(store->stats().checkpoint_sequence, 0u);
    EXPECT_EQ(store->stats().pending_events, before.events);
    EXPECT_GT(before.events, 0u);
  }  // destroyed without a checkpoint: as after a crash
  {
    auto store = open_ok(o);
    ASSERT_TRUE(store);
    EXPECT_EQ(snapshot(*store), before);
    EXPECT_EQ(store->stats().pending_events, before.events);
    EXPECT_EQ(store->dead_letters(0, 10)->size(), 1u);
    // Dedup survives: every event of the first batches is a duplicate now.
    auto again = apply_ok(*store, mixed_batch(0, 50));
    EXPECT_EQ(std::count(again.begin(), again.end(), kAccepted), 0);
  }
  // Replay is repeatable, and a checkpoint then reopen gives the same again.
  {
    auto store = open_ok(o);
    EXPECT_EQ(snapshot(*store), before);
    ASSERT_TRUE(store->checkpoint().ok());
    EXPECT_EQ(store->stats().pending_events, 0u);
    EXPECT_GT(store->stats().checkpoint_sequence, 0u);
    EXPECT_EQ(snapshot(*store), before);
  }
  auto store = open_ok(o);
  EXPECT_EQ(snapshot(*store), before);
  EXPECT_EQ(store->stats().pending_events, 0u);
}

TEST_F(JournalTest, ReplayAfterACheckpointAppliesOnlyTheRest) {
  const StoreOptions o = crash_options();
  Snapshot before;
  {
    auto store = open_ok(o);
    apply_ok(*store, mixed_batch(0, 60));
    ASSERT_TRUE(store->checkpoint().ok());
    const std::uint64_t checkpointed = store->stats().checkpoint_sequence;
    EXPECT_GT(checkpointed, 0u);
    apply_ok(*store, mixed_batch(1, 60));
    apply_ok(*store, mixed_batch(2, 60));
    before = snapshot(*store);
    EXPECT_GT(store->stats().pending_events, 0u);
    EXPECT_EQ(store->stats().checkpoint_sequence, checkpointed);
  }
  auto store = open_ok(o);
  EXPECT_EQ(snapshot(*store), before);
}

TEST_F(JournalTest, ChildProcessKilledAfterAcknowledgementLosesNothing) {
  StoreOptions o = options();
  o.durability = Durability::kFsync;
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(pipe_fds[0]);
    auto store = Store::open(o);
    if (!store.ok()) _exit(1);
    for (int b = 0; b < 4; ++b) {
      std::vector<EventOutcome> outcomes;
      std::vector<Event> batch = mixed_batch(b, 30);
      if (!(*store)->apply_batch(batch, ApplyConfig{}, outcomes).ok()) _exit(2);
    }
    char done = 'x';
    if (::write(pipe_fds[1], &done, 1) != 1) _exit(3);
    ::pause();  // killed here: no destructor, no checkpoint
    _exit(4);
  }
  ::close(pipe_fds[1]);
  char got = 0;
  ASSERT_EQ(::read(pipe_fds[0], &got, 1), 1);
  ::close(pipe_fds[0]);
  ::kill(child, SIGKILL);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status));

  // The same batches applied cleanly elsewhere give the reference state.
  auto reference = open_ok(options("reference"));
  for (int b = 0; b < 4; ++b) apply_ok(*reference, mixed_batch(b, 30));
  auto store = open_ok(o);
  EXPECT_EQ(snapshot(*store), snapshot(*reference));
}

TEST_F(JournalTest, ReplayAppliesEachEventWithItsOwnApplyConfig) {
  ApplyConfig fast, costly;
  fast.half_life_days = 7.0;
  costly.half_life_days = 30.0;
  costly.default_cost.fill(2.5);
  const StoreOptions o = crash_options();
  Snapshot before;
  {
    auto store = open_ok(o);
    apply_ok(*store, mixed_batch(0, 40), fast);
    apply_ok(*store, mixed_batch(1, 40), costly);
    ASSERT_TRUE(store->checkpoint().ok());
    apply_ok(*store, mixed_batch(2, 40), costly);  // replay starts with the config in effect at the checkpoint
    apply_ok(*store, mixed_batch(3, 40), fast);
    apply_ok(*store, mixed_batch(4, 40), ApplyConfig{});
    before = snapshot(*store);
  }
  auto store = open_ok(o);
  EXPECT_EQ(snapshot(*store), before);
}

TEST_F(JournalTest, ReadsSeeWritesBeforeTheCheckpoint) {
  auto store = open_ok(options());
  // "bob" and "dave" get checkpointed; then bob gets more, and "alice", "carol", "erin" are new.
  apply_ok(*store, {make_event("bob", "b1", 1000), make_event("dave", "d1", 1000), make_event("bob", "b2", 3000)});
  ASSERT_TRUE(store->checkpoint().ok());
  apply_ok(*store, {make_event("bob", "b3", 2000, EventType::kComplaint), make_event("alice", "a1", 500),
                    make_event("carol", "c1", 700), make_event("erin", "e1", 900), make_event("bob", "b4", 4000)});
  ASSERT_GT(store->stats().pending_events, 0u);

  auto bob = customer(*store, "bob");
  ASSERT_TRUE(bob);
  EXPECT_EQ(bob->event_count, 4u);
  EXPECT_EQ(bob->type_counts[static_cast<int>(EventType::kComplaint)], 1u);
  EXPECT_EQ(customer(*store, "alice")->event_count, 1u);
  EXPECT_EQ(customer(*store, "dave")->event_count, 1u);
  EXPECT_FALSE(store->get_customer("zed")->has_value());

  // The timeline merges stored and pending events, newest first, with offset and limit.
  EXPECT_EQ(event_ids(*store, "bob"), (std::vector<std::string>{"b4", "b2", "b3", "b1"}));
  EXPECT_EQ(event_ids(*store, "bob", 1, 2), (std::vector<std::string>{"b2", "b3"}));
  EXPECT_EQ(event_ids(*store, "bob", 3, 5), (std::vector<std::string>{"b1"}));
  auto details = store->customer_events("bob", std::nullopt, 4);
  ASSERT_TRUE(details.ok());
  EXPECT_EQ((*details)[0].amount, 10.0 + 4000 % 7);
  EXPECT_EQ((*details)[2].type, EventType::kComplaint);
  EXPECT_EQ((*details)[2].channel, "web");

  // for_each merges in key order, pending states replacing stored ones.
  std::vector<std::pair<std::string, std::uint32_t>> seen;
  ASSERT_TRUE(store
                  ->for_each_customer([&](std::string_view id, const CustomerState& s) {
                    seen.emplace_back(id, s.event_count);
                    return true;
                  })
                  .ok());
  EXPECT_EQ(seen, (std::vector<std::pair<std::string, std::uint32_t>>{
                      {"alice", 1}, {"bob", 4}, {"carol", 1}, {"dave", 1}, {"erin", 1}}));
  seen.clear();
  ASSERT_TRUE(store
                  ->for_each_customer([&](std::string_view id, const CustomerState& s) {
                    seen.emplace_back(id, s.event_count);
                    return seen.size() < 3;
                  })
                  .ok());
  EXPECT_EQ(seen.size(), 3u);
  EXPECT_EQ(store->stats().customers, 5u);
  EXPECT_EQ(store->stats().events, 8u);

  const Snapshot before = snapshot(*store);
  ASSERT_TRUE(store->checkpoint().ok());
  EXPECT_EQ(store->stats().pending_events, 0u);
  EXPECT_EQ(snapshot(*store), before);
}

TEST_F(JournalTest, DedupAcrossCheckpointsAndReopens) {
  const StoreOptions o = crash_options();
  {
    auto store = open_ok(o);
    EXPECT_EQ(apply_ok(*store, {make_event("a", "e1", 1)}), (std::vector<EventOutcome>{kAccepted}));
    ASSERT_TRUE(store->checkpoint().ok());
    // e1 is now only in the index, e2 only in memory (and the journal).
    EXPECT_EQ(apply_ok(*store, {make_event("a", "e1", 9), make_event("a", "e2", 2), make_event("a", "e2", 3)}),
              (std::vector<EventOutcome>{kDuplicate, kAccepted, kDuplicate}));
    EXPECT_EQ(apply_ok(*store, {make_event("a", "e2", 4)}), (std::vector<EventOutcome>{kDuplicate}));
    // The same event id for another customer is another event.
    EXPECT_EQ(apply_ok(*store, {make_event("b", "e1", 5)}), (std::vector<EventOutcome>{kAccepted}));
  }
  {
    auto store = open_ok(o);  // after a crash: e2 and b/e1 come back from the journal
    EXPECT_EQ(apply_ok(*store, {make_event("a", "e1", 9), make_event("a", "e2", 9), make_event("b", "e1", 9),
                                make_event("a", "e3", 9)}),
              (std::vector<EventOutcome>{kDuplicate, kDuplicate, kDuplicate, kAccepted}));
    ASSERT_TRUE(store->checkpoint().ok());
  }
  auto store = open_ok(o);
  EXPECT_EQ(apply_ok(*store, {make_event("a", "e1", 9), make_event("a", "e2", 9), make_event("a", "e3", 9)}),
            (std::vector<EventOutcome>{kDuplicate, kDuplicate, kDuplicate}));
  EXPECT_EQ(customer(*store, "a")->event_count, 3u);
  EXPECT_EQ(customer(*store, "b")->event_count, 1u);
  EXPECT_EQ(store->stats().events, 4u);
}

// The dedup filter over the stored index (no B-tree lookup for a new event)
// never lets a stored duplicate through: not after a checkpoint, a reopen
// (rebuilt from the index), an erasure (the erased keys may be accepted
// again), nor after another process stored events this one never saw.
TEST_F(JournalTest, DedupFilterNeverAcceptsAStoredDuplicate) {
  const StoreOptions o = crash_options();
  auto batch_of = [](int from, int to, int customers) {
    std::vector<Event> out;
    for (int n = from; n < to; ++n) {
      out.push_back(make_event("c" + std::to_string(n % customers), "e" + std::to_string(n), 1000 + n));
    }
    return out;
  };
  auto outcomes_of = [](std::size_t accepted, std::size_t duplicate) {
    std::vector<EventOutcome> out(accepted, kAccepted);
    out.insert(out.end(), duplicate, kDuplicate);
    return out;
  };
  const std::vector<Event> first = batch_of(0, 3000, 300);
  {
    auto store = open_ok(o);
    EXPECT_EQ(apply_ok(*store, first), outcomes_of(3000, 0));
    ASSERT_TRUE(store->checkpoint().ok());
    // Every customer is stored now: each repeat would need the index, the filter must send it there.
    EXPECT_EQ(apply_ok(*store, first), outcomes_of(0, 3000));
    // Keys added since the filter was built (pending, then checkpointed) are in it too.
    const std::vector<Event> second = batch_of(3000, 4000, 300);
    EXPECT_EQ(apply_ok(*store, second), outcomes_of(1000, 0));
    ASSERT_TRUE(store->checkpoint().ok());
    EXPECT_EQ(apply_ok(*store, second), outcomes_of(0, 1000));
  }
  auto store = open_ok(o);  // the filter is rebuilt from the index
  EXPECT_EQ(apply_ok(*store, batch_of(0, 4000, 300)), outcomes_of(0, 4000));
  // Erasure: that customer's events are new again, the others' still duplicates.
  auto erased = store->erase_customer("c7");
  ASSERT_TRUE(erased.ok() && *erased);
  std::vector<EventOutcome> expected;
  for (const Event& e : first) {
    expected.push_back(e.customer_id.view() == std::string_view("c7") ? kAccepted : kDuplicate);
  }
  EXPECT_EQ(apply_ok(*store, first), expected);
  EXPECT_EQ(customer(*store, "c7")->event_count, 10u);
  ASSERT_TRUE(store->checkpoint().ok());

  // Another process stores events for customers this one has stored, and checkpoints them:
  // this process never sees those keys in its journal, yet they are duplicates.
  const std::vector<Event> other = batch_of(4000, 4600, 300);
  pid_t child = fork();
  if (child == 0) {
    int code = 1;
    {
      auto writer = Store::open(o);
      std::vector<EventOutcome> outcomes;
      if (writer.ok() && (*writer)->apply_batch(other, ApplyConfig{}, outcomes).ok() &&
          outcomes == outcomes_of(600, 0) && (*writer)->checkpoint().ok()) {
        code = 0;
      }
    }
    _exit(code);
  }
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(apply_ok(*store, other), outcomes_of(0, 600));
  EXPECT_EQ(apply_ok(*store, other), outcomes_of(0, 600));
  EXPECT_EQ(store->stats().events, 4600u - 14u + 10u);  // c7 had 14 events among the first 4000, 10 came back
}

TEST_F(JournalTest, CheckpointsWhenEnoughEventsArePending) {
  StoreOptions o = options();
  o.checkpoint_events = 100;
  auto store = open_ok(o);
  std::uint64_t last_checkpoint = 0;
  int checkpoints = 0;
  for (int b = 0; b < 20; ++b) {
    std::vector<Event> batch;
    for (int i = 0; i < 30; ++i) {
      batch.push_back(make_event("c" + std::to_string(i % 13), "e" + std::to_string(b * 30 + i), b * 30 + i));
    }
    apply_ok(*store, batch);
    const StoreStats st = store->stats();
    EXPECT_LT(st.pending_events, 100u) << "memory is bounded by checkpoint_events";
    if (st.checkpoint_sequence != last_checkpoint) ++checkpoints;
    last_checkpoint = st.checkpoint_sequence;
    EXPECT_EQ(st.events, static_cast<std::uint64_t>((b + 1) * 30));
  }
  EXPECT_EQ(checkpoints, 5);  // after 120, 240, ... 600 events
  EXPECT_EQ(event_ids(*store, "c0").size(), 60u);
}

TEST_F(JournalTest, CheckpointsWhenTheOldestPendingEventIsOldEnough) {
  StoreOptions o = options();
  o.checkpoint_interval = std::chrono::milliseconds(200);
  auto store = open_ok(o);
  apply_ok(*store, {make_event("a", "e1", 1)});
  apply_ok(*store, {make_event("a", "e2", 2)});
  EXPECT_EQ(store->stats().pending_events, 2u);
  std::this_thread::sleep_for(std::chrono::milliseconds(250));
  apply_ok(*store, {make_event("a", "e3", 3)});
  EXPECT_EQ(store->stats().pending_events, 0u);
  EXPECT_GT(store->stats().checkpoint_sequence, 0u);
  // The clock restarts with the next pending event.
  apply_ok(*store, {make_event("a", "e4", 4)});
  EXPECT_EQ(store->stats().pending_events, 1u);
  EXPECT_EQ(customer(*store, "a")->event_count, 4u);
}

TEST_F(JournalTest, EraseBeforeCheckpointThenReingest) {
  const StoreOptions o = crash_options();
  {
    auto store = open_ok(o);
    apply_ok(*store, {make_event("x", "e1", 1000), make_event("x", "e2", 2000), make_event("x1", "e1", 3000),
                      make_event("y", "e1", 500)});
    const std::uint64_t journal_before = store->stats().journal_entries;
    auto erased = store->erase_customer("x");
    ASSERT_TRUE(erased.ok()) << erased.message();
    EXPECT_TRUE(*erased);
    EXPECT_FALSE(store->get_customer("x")->has_value());
    EXPECT_TRUE(event_ids(*store, "x").empty());
    EXPECT_EQ(event_ids(*store, "x1"), (std::vector<std::string>{"e1"}));
    EXPECT_EQ(store->stats().customers, 2u);
    EXPECT_EQ(store->stats().events, 2u);
    EXPECT_EQ(store->stats().journal_entries, journal_before - 2);  // its journal records are gone too
    EXPECT_FALSE(*store->erase_customer("x"));

    EXPECT_EQ(apply_ok(*store, {make_event("x", "e2", 7000)}), (std::vector<EventOutcome>{kAccepted}));
    EXPECT_EQ(customer(*store, "x")->event_count, 1u);
    EXPECT_EQ(customer(*store, "x")->first_seen_ms, 7000);
  }
  auto store = open_ok(o);  // replay must not resurrect e1 or the first e2
  auto x = customer(*store, "x");
  ASSERT_TRUE(x);
  EXPECT_EQ(x->event_count, 1u);
  EXPECT_EQ(x->first_seen_ms, 7000);
  EXPECT_EQ(event_ids(*store, "x"), (std::vector<std::string>{"e2"}));
  EXPECT_EQ(apply_ok(*store, {make_event("x", "e1", 8000)}), (std::vector<EventOutcome>{kAccepted}));
  EXPECT_EQ(customer(*store, "x1")->event_count, 1u);
  EXPECT_EQ(store->stats().events, 4u);
}

TEST_F(JournalTest, EraseAfterCheckpointThenReingest) {
  const StoreOptions o = crash_options();
  {
    auto store = open_ok(o);
    apply_ok(*store, {make_event("x", "e1", 1000), make_event("x", "e2", 2000), make_event("y", "e1", 500)});
    ASSERT_TRUE(store->checkpoint().ok());
    apply_ok(*store, {make_event("x", "e3", 3000)});  // x has checkpointed and pending events
    const std::uint64_t journal_before = store->stats().journal_entries;
    auto erased = store->erase_customer("x");
    ASSERT_TRUE(erased.ok()) << erased.message();
    EXPECT_TRUE(*erased);
    EXPECT_FALSE(store->get_customer("x")->has_value());
    EXPECT_TRUE(event_ids(*store, "x").empty());
    EXPECT_EQ(store->stats().journal_entries, journal_before - 3);
    EXPECT_EQ(store->stats().events, 1u);
    EXPECT_EQ(store->stats().customers, 1u);
    EXPECT_EQ(apply_ok(*store, {make_event("x", "e1", 9000), make_event("x", "e3", 9500)}),
              (std::vector<EventOutcome>{kAccepted, kAccepted}));
  }
  {
    auto store = open_ok(o);
    auto x = customer(*store, "x");
    ASSERT_TRUE(x);
    EXPECT_EQ(x->event_count, 2u);
    EXPECT_EQ(x->first_seen_ms, 9000);
    EXPECT_EQ(event_ids(*store, "x"), (std::vector<std::string>{"e3", "e1"}));
    ASSERT_TRUE(store->checkpoint().ok());
    EXPECT_TRUE(*store->erase_customer("x"));
  }
  auto store = open_ok(o);
  EXPECT_FALSE(store->get_customer("x")->has_value());
  EXPECT_TRUE(event_ids(*store, "x").empty());
  EXPECT_EQ(apply_ok(*store, {make_event("x", "e2", 1)}), (std::vector<EventOutcome>{kAccepted}));
  EXPECT_EQ(customer(*store, "y")->event_count, 1u);
}

TEST_F(JournalTest, ReadOnlyOpenSeesPendingEvents) {
  StoreOptions o = crash_options();
  {
    auto store = open_ok(o);
    apply_ok(*store, {make_event("a", "e1", 1)});
    ASSERT_TRUE(store->checkpoint().ok());
    apply_ok(*store, {make_event("a", "e2", 2), make_event("b", "e1", 3)});
  }
  o.read_only = true;
  auto store = open_ok(o);
  EXPECT_EQ(customer(*store, "a")->event_count, 2u);
  EXPECT_EQ(event_ids(*store, "a"), (std::vector<std::string>{"e2", "e1"}));
  EXPECT_EQ(store->stats().events, 3u);
  EXPECT_FALSE(store->checkpoint().ok());
}

TEST_F(JournalTest, BackupHoldsEventsNotYetCheckpointed) {
  auto store = open_ok(crash_options());
  apply_ok(*store, mixed_batch(0, 40));
  ASSERT_TRUE(store->checkpoint().ok());
  apply_ok(*store, mixed_batch(1, 40));
  const Snapshot before = snapshot(*store);
  ASSERT_GT(store->stats().pending_events, 0u);
  ASSERT_TRUE(store->backup((root_ / "copy").string()).ok());
  auto copy = open_ok(crash_options("copy"));
  EXPECT_EQ(snapshot(*copy), before);
  auto again = apply_ok(*copy, mixed_batch(1, 40));
  EXPECT_EQ(std::count(again.begin(), again.end(), kAccepted), 0);
}

// Values as written before the journal existed (format version 1: the event itself) still read.
TEST_F(JournalTest, ReadsEventsIndexedBeforeTheJournal) {
  StoreOptions o = options();
  { open_ok(o); }
  std::string v1;
  v1.push_back(1);
  const std::uint64_t ts = 5000;
  for (int i = 0; i < 8; ++i) v1.push_back(static_cast<char>((ts >> (8 * i)) & 0xff));
  v1.push_back(static_cast<char>(EventType::kPurchase));
  v1.push_back(1);  // amount present
  v1.push_back(3);
  v1 += "web";
  const double amount = 12.5;
  std::uint64_t bits;
  std::memcpy(&bits, &amount, 8);
  for (int i = 0; i < 8; ++i) v1.push_back(static_cast<char>((bits >> (8 * i)) & 0xff));
  {
    MDB_env* env = nullptr;
    ASSERT_EQ(mdb_env_create(&env), 0);
    ASSERT_EQ(mdb_env_set_maxdbs(env, 8), 0);
    ASSERT_EQ(mdb_env_open(env, o.directory.c_str(), 0, 0640), 0);
    MDB_txn* txn = nullptr;
    ASSERT_EQ(mdb_txn_begin(env, nullptr, 0, &txn), 0);
    MDB_dbi dbi;
    ASSERT_EQ(mdb_dbi_open(txn, "events", 0, &dbi), 0);
    std::string key("old\0e1", 6);
    MDB_val k{key.size(), key.data()}, v{v1.size(), v1.data()};
    ASSERT_EQ(mdb_put(txn, dbi, &k, &v, 0), 0);
    ASSERT_EQ(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
  }
  auto store = open_ok(o);
  apply_ok(*store, {make_event("old", "e2", 9000)});
  ASSERT_TRUE(store->checkpoint().ok());
  apply_ok(*store, {make_event("old", "e3", 1000)});
  auto events = store->customer_events("old", std::nullopt, 10);
  ASSERT_TRUE(events.ok()) << events.message();
  ASSERT_EQ(events->size(), 3u);
  EXPECT_EQ((*events)[0].event_id, "e2");
  EXPECT_EQ((*events)[1].event_id, "e1");
  EXPECT_EQ((*events)[1].amount, 12.5);
  EXPECT_EQ((*events)[1].channel, "web");
  EXPECT_EQ((*events)[2].event_id, "e3");
  EXPECT_EQ(apply_ok(*store, {make_event("old", "e1", 1)}), (std::vector<EventOutcome>{kDuplicate}));
  EXPECT_TRUE(*store->erase_customer("old"));
  EXPECT_TRUE(event_ids(*store, "old").empty());
}

// Readers on several threads while the writer checkpoints every few batches:
// every read is one consistent point (nothing missing, nothing twice).
TEST_F(JournalTest, ConcurrentReadersDuringCheckpoints) {
  StoreOptions o = options();
  o.checkpoint_events = 700;
  o.initial_map_bytes = 64 << 10;  // and the map grows along the way
  auto store = open_ok(o);
  constexpr int kBatches = 60, kBatch = 100, kCustomers = 50;
  std::atomic<bool> done{false};
  std::atomic<int> failures{0};
  std::atomic<long> reads{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t));
      while (!done.load()) {
        const std::string id = "c" + std::to_string(rng() % kCustomers);
        auto c1 = store->get_customer(id);
        auto timeline = store->customer_events(id, std::nullopt, 100000);
        auto c2 = store->get_customer(id);
        if (!c1.ok() || !timeline.ok() || !c2.ok()) {
          ++failures;
          continue;
        }
        const std::size_t n1 = *c1 ? (*c1)->event_count : 0, n2 = *c2 ? (*c2)->event_count : 0;
        std::set<std::string> ids;
        for (const auto& e : *timeline) ids.insert(e.event_id);
        if (ids.size() != timeline->size() || timeline->size() < n1 || timeline->size() > n2) ++failures;

        const std::uint64_t s1 = store->stats().events;
        std::uint64_t total = 0;
        std::set<std::string> visited;
        Status s = store->for_each_customer([&](std::string_view cid, const CustomerState& st) {
          total += st.event_count;
          if (!visited.emplace(cid).second) ++failures;
          return true;
        });
        const std::uint64_t s2 = store->stats().events;
        if (!s.ok() || total < s1 || total > s2) ++failures;
        ++reads;
      }
    });
  }
  int checkpoints = 0;
  std::uint64_t last = 0;
  for (int b = 0; b < kBatches; ++b) {
    std::vector<Event> batch;
    for (int i = 0; i < kBatch; ++i) {
      const int n = b * kBatch + i;
      batch.push_back(make_event("c" + std::to_string(n % kCustomers), "e" + std::to_string(n), n));
    }
    apply_ok(*store, batch);
    if (b % 17 == 5) {
      ASSERT_TRUE(store->checkpoint().ok());
    }
    if (store->stats().checkpoint_sequence != last) ++checkpoints;
    last = store->stats().checkpoint_sequence;
  }
  done = true;
  for (auto& r : readers) r.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GT(reads.load(), 0);
  EXPECT_GE(checkpoints, 8);
  EXPECT_GT(store->stats().map_bytes, static_cast<std::size_t>(64 << 10));
}

// Readers of a customer that is repeatedly filled, checkpointed and erased
// see it whole or not at all.
TEST_F(JournalTest, ConcurrentReadersDuringErasures) {
  auto store = open_ok(options());
  apply_ok(*store, {make_event("other", "e", 1)});
  constexpr int kRounds = 60, kPerRound = 10;
  std::atomic<bool> done{false};
  std::atomic<int> failures{0};
  std::atomic<long> reads{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&] {
      while (!done.load()) {
        auto timeline = store->customer_events("x", std::nullopt, 1000);
        auto state = store->get_customer("x");
        if (!timeline.ok() || !state.ok()) {
          ++failures;
          ADD_FAILURE() << (timeline.ok() ? state.message() : timeline.message());
          continue;
        }
        std::set<std::string> rounds;
        for (const auto& e : *timeline) rounds.insert(e.event_id.substr(0, e.event_id.find('-')));
        if ((timeline->size() != 0 && timeline->size() != kPerRound) || rounds.size() > 1) {
          ++failures;
          ADD_FAILURE() << "timeline of " << timeline->size() << " events from " << rounds.size() << " rounds";
        }
        if (*state && (*state)->event_count != kPerRound) {
          ++failures;
          ADD_FAILURE() << "state with " << (*state)->event_count << " events";
        }
        std::uint64_t total = 0;
        Status s = store->for_each_customer([&](std::string_view, const CustomerState& st) {
          total += st.event_count;
          return true;
        });
        if (!s.ok() || (total != 1 && total != 1 + kPerRound)) {
          ++failures;
          ADD_FAILURE() << "for_each total " << total << " " << s.message();
        }
        ++reads;
      }
    });
  }
  for (int round = 0; round < kRounds; ++round) {
    // Let the readers complete a read between rounds, so reads really interleave with erasures
    // however the scheduler (or an optimised build) favours this thread.
    for (const long before = reads.load(); reads.load() == before;) std::this_thread::yield();
    std::vector<Event> batch;
    for (int i = 0; i < kPerRound; ++i) {
      batch.push_back(make_event("x", "r" + std::to_string(round) + "-" + std::to_string(i), i));
    }
    apply_ok(*store, batch);
    if (round % 3 == 0) {
      ASSERT_TRUE(store->checkpoint().ok());
    }
    if (round % 3 == 1) apply_ok(*store, {make_event("x", "r" + std::to_string(round) + "-0", 0)});  // a duplicate
    auto erased = store->erase_customer("x");
    ASSERT_TRUE(erased.ok() && *erased);
  }
  done = true;
  for (auto& r : readers) r.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GT(reads.load(), 0);
  EXPECT_EQ(store->stats().events, 1u);
}

TEST_F(JournalTest, TheMapGrowsDuringACheckpoint) {
  StoreOptions o = options();
  o.initial_map_bytes = 256 << 10;
  auto store = open_ok(o);
  std::vector<Event> batch;
  for (int i = 0; i < 2000; ++i) batch.push_back(make_event("customer-" + std::to_string(i), "e", i));
  apply_ok(*store, batch);
  // Use up the headroom apply_batch reserved for the checkpoint, without growing the map.
  const std::size_t map = store->stats().map_bytes;
  for (int i = 0; i < 64; ++i) {
    const StoreStats st = store->stats();
    if (st.map_bytes - st.used_bytes < (64 << 10)) break;
    const std::string filler((st.map_bytes - st.used_bytes) / 2, 'f');
    ASSERT_TRUE(store->put_meta("filler-" + std::to_string(i), filler).ok());
  }
  ASSERT_EQ(store->stats().map_bytes, map) << "filling grew the map";
  const StoreStats full = store->stats();
  ASSERT_LT(full.map_bytes - full.used_bytes, std::size_t{64 << 10});

  std::atomic<bool> done{false};
  std::atomic<int> failures{0};
  std::thread reader([&] {
    while (!done.load()) {
      auto c = store->get_customer("customer-1999");
      if (!c.ok() || !c->has_value() || (*c)->event_count != 1) ++failures;
      if (event_ids(*store, "customer-7").size() != 1) ++failures;
    }
  });
  Status s = store->checkpoint();
  done = true;
  reader.join();
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_GT(store->stats().map_bytes, map);
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(store->stats().pending_events, 0u);
  EXPECT_EQ(store->stats().customers, 2000u);
  EXPECT_EQ(customer(*store, "customer-1999")->event_count, 1u);
}

// With a map that cannot grow, checkpoints fail, batches keep being
// journaled up to twice checkpoint_events, then are refused cleanly; every
// acknowledged event survives (with a larger map) after reopening.
TEST_F(JournalTest, FailingCheckpointsBoundMemoryAndRefuseCleanly) {
  StoreOptions o = crash_options();
  o.initial_map_bytes = 512 << 10;
  o.max_map_bytes = 512 << 10;
  o.checkpoint_events = 1500;
  std::size_t acknowledged = 0;
  bool refused = false;
  {
    auto store = open_ok(o);
    for (int b = 0; b < 40 && !refused; ++b) {
      std::vector<Event> batch;
      for (int i = 0; i < 250; ++i) {
        const int n = b * 250 + i;
        batch.push_back(make_event("customer-with-a-long-id-" + std::to_string(n), "e", n));
      }
      std::vector<EventOutcome> outcomes;
      Status s = store->apply_batch(batch, ApplyConfig{}, outcomes);
      if (s.ok()) {
        acknowledged += batch.size();
        EXPECT_LE(store->stats().pending_events, 2 * o.checkpoint_events + batch.size());
      } else {
        refused = true;
        EXPECT_NE(s.message().find("storage full"), std::string::npos) << s.message();
      }
    }
    EXPECT_TRUE(refused);
    EXPECT_EQ(store->stats().events, acknowledged);
  }
  o.max_map_bytes = 1ull << 30;
  auto store = open_ok(o);
  EXPECT_EQ(store->stats().events, acknowledged);
  ASSERT_TRUE(store->checkpoint().ok());
  EXPECT_EQ(store->stats().customers, acknowledged);
}

// Two processes writing one store: each catches up with the other's journal
// (and checkpoints) before it writes, so dedup and states stay exact.
TEST_F(JournalTest, AnotherProcessWritesTheSameStore) {
  const StoreOptions o = crash_options();
  auto store = open_ok(o);
  apply_ok(*store, {make_event("a", "e1", 1000), make_event("a", "e2", 2000)});
  auto run_child = [&](bool checkpoint, std::vector<EventOutcome> expected) {
    pid_t child = fork();
    if (child == 0) {
      int code = 1;
      {
        auto other = Store::open(o);
        if (other.ok()) {
          std::vector<Event> batch = {make_event("a", "e2", 2000), make_event("a", "e3", 3000),
                                      make_event("b", "e1", 1000)};
          std::vector<EventOutcome> outcomes;
          if ((*other)->apply_batch(batch, ApplyConfig{}, outcomes).ok() && outcomes == expected &&
              (!checkpoint || (*other)->checkpoint().ok())) {
            code = 0;
          }
        }
      }
      _exit(code);
    }
    int status = 0;
    waitpid(child, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 99;
  };
  ASSERT_EQ(run_child(false, {kDuplicate, kAccepted, kAccepted}), 0);
  // This process's next write catches up first: e3 is a duplicate now.
  EXPECT_EQ(apply_ok(*store, {make_event("a", "e3", 3000), make_event("a", "e4", 4000)}),
            (std::vector<EventOutcome>{kDuplicate, kAccepted}));
  EXPECT_EQ(customer(*store, "a")->event_count, 4u);
  EXPECT_EQ(customer(*store, "b")->event_count, 1u);
  EXPECT_EQ(event_ids(*store, "a"), (std::vector<std::string>{"e4", "e3", "e2", "e1"}));

  // The other process checkpoints (including this one's pending events).
  ASSERT_TRUE(store->erase_customer("b").ok());
  ASSERT_EQ(run_child(true, {kDuplicate, kDuplicate, kAccepted}), 0);
  EXPECT_EQ(event_ids(*store, "a"), (std::vector<std::string>{"e4", "e3", "e2", "e1"}));
  EXPECT_EQ(customer(*store, "b")->event_count, 1u);
  EXPECT_EQ(apply_ok(*store, {make_event("a", "e5", 5000)}), (std::vector<EventOutcome>{kAccepted}));
  EXPECT_EQ(customer(*store, "a")->event_count, 5u);
  EXPECT_EQ(store->stats().events, 6u);
  EXPECT_EQ(store->stats().customers, 2u);
  ASSERT_TRUE(store->checkpoint().ok());
  store.reset();
  auto reopened = open_ok(o);
  EXPECT_EQ(customer(*reopened, "a")->event_count, 5u);
  EXPECT_EQ(reopened->stats().events, 6u);
}

// A checkpoint written in slices between batches: while it is in progress
// every read (states, timelines, counts) is exact, dedup covers events in
// both overlays and in slices already written, erasure reaches all three,
// and a crash between slices replays without applying anything twice.
TEST_F(JournalTest, CheckpointInSlicesKeepsEverythingExactAndSurvivesACrashBetweenSlices) {
  StoreOptions o = crash_options();
  o.checkpoint_in_apply_batch = false;
  o.initial_map_bytes = 64 << 20;
  auto store = open_ok(o);
  auto reference = open_ok(options("reference"));  // the same events, checkpointed in one go
  auto both = [&](const std::vector<Event>& batch) {
    const auto outcomes = apply_ok(*store, batch);
    EXPECT_EQ(outcomes, apply_ok(*reference, batch));
    return outcomes;
  };
  auto id = [](int n) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "c%05d", n);
    return std::string(buf);
  };
  // 6000 customers x 2 events: 18000 records, several slices of at most ~4096.
  constexpr int kCustomers = 6000;
  for (int b = 0; b < 24; ++b) {
    std::vector<Event> batch;
    for (int i = 0; i < 500; ++i) {
      const int n = b * 500 + i;
      batch.push_back(make_event(id(n % kCustomers), "e" + std::to_string(n), 1'700'000'000'000 + n * 60'000));
    }
    both(batch);
  }
  ASSERT_TRUE(reference->checkpoint().ok());

  auto step = store->checkpoint_step(true);
  ASSERT_TRUE(step.ok()) << step.message();
  EXPECT_TRUE(*step) << "one slice wrote the whole checkpoint";
  StoreStats stats = store->stats();
  EXPECT_TRUE(stats.checkpoint_in_progress);
  EXPECT_EQ(stats.checkpoint_slices, 1u);
  EXPECT_GT(stats.pending_events, 0u);
  EXPECT_LT(stats.pending_events, 12000u);
  EXPECT_EQ(snapshot(*store), snapshot(*reference));

  // New events, repeats of checkpointed (first slice) and of frozen events, for both kinds of customer.
  const std::string written = id(0), frozen = id(kCustomers - 1);
  EXPECT_EQ(both({make_event(written, "e0", 1'700'000'000'000), make_event(frozen, "e5999", 1'700'000'000'000),
                  make_event(written, "late-1", 1'600'000'000'000), make_event(frozen, "late-2", 1'800'000'000'000),
                  make_event("brand-new", "x", 1'700'000'000'000), make_event(written, "late-1", 1)}),
            (std::vector<EventOutcome>{kDuplicate, kDuplicate, kAccepted, kAccepted, kAccepted, kDuplicate}));
  // Erase one customer whose slice is written and one whose slice is not, then bring them back.
  for (const std::string& who : {id(1), id(kCustomers - 2)}) {
    auto erased = store->erase_customer(who);
    ASSERT_TRUE(erased.ok() && *erased) << who;
    ASSERT_TRUE(reference->erase_customer(who).ok());
  }
  both({make_event(id(1), "again", 1'750'000'000'000)});
  ASSERT_TRUE(store->checkpoint_step().ok());
  EXPECT_TRUE(store->stats().checkpoint_in_progress);
  EXPECT_EQ(store->stats().checkpoint_slices, 2u);
  const Snapshot expected = snapshot(*reference);
  EXPECT_EQ(snapshot(*store), expected);
  // Listings from a keyset position see the written slices, the frozen and the active overlay alike.
  auto listing_after = [](const Store& s, std::string_view after) {
    std::vector<std::string> seen;
    Status st = s.for_each_customer(
        [&](std::string_view cid, const CustomerState& state) {
          seen.push_back(std::string(cid) + "=" + serialize(state));
          return seen.size() < 3000;
        },
        after);
    EXPECT_TRUE(st.ok()) << st.message();
    return seen;
  };
  for (const std::string& after : {id(0), id(1), id(2), id(2999) + "x", id(kCustomers - 2), id(kCustomers - 1),
                                   std::string("brand"), std::string("brand-new"), std::string("c")}) {
    const std::vector<std::string> got = listing_after(*store, after);
    EXPECT_EQ(got, listing_after(*reference, after)) << "after " << after;
    if (!got.empty()) {
      EXPECT_GT(got.front().substr(0, got.front().find('=')), after);
    }
  }

  // A crash between slices: the reopened store replays from the previous checkpoint.
  store.reset();
  store = open_ok(o);
  EXPECT_EQ(snapshot(*store), expected);
  EXPECT_EQ(apply_ok(*store, {make_event(frozen, "late-2", 5), make_event(written, "e0", 5)}),
            (std::vector<EventOutcome>{kDuplicate, kDuplicate}));

  // Checkpointing to the end in steps, then after a clean reopen: the same.
  int steps = 0;
  for (;;) {
    auto more = store->checkpoint_step(true);
    ASSERT_TRUE(more.ok()) << more.message();
    ++steps;
    if (!*more) break;
    ASSERT_LT(steps, 100);
  }
  EXPECT_GE(steps, 3);
  stats = store->stats();
  EXPECT_FALSE(stats.checkpoint_in_progress);
  EXPECT_EQ(stats.pending_events, 0u);
  EXPECT_EQ(stats.checkpoints, 1u);
  EXPECT_EQ(snapshot(*store), expected);
  store.reset();
  store = open_ok(o);
  EXPECT_EQ(store->stats().pending_events, 0u);
  EXPECT_EQ(snapshot(*store), expected);
}

// Batches keep coming while checkpoints run: slices are paced so each
// checkpoint ends before the next is due, pending events stay bounded, and
// no batch waits for a whole checkpoint.
TEST_F(JournalTest, SlicesKeepUpWithAStreamOfBatches) {
  StoreOptions o = options();
  o.checkpoint_events = 20000;
  o.initial_map_bytes = 64 << 20;
  auto store = open_ok(o);
  std::uint64_t max_pending = 0;
  for (int b = 0; b < 200; ++b) {
    std::vector<Event> batch;
    for (int i = 0; i < 1000; ++i) {
      const int n = b * 1000 + i;
      batch.push_back(make_event("c" + std::to_string(n % 50000), "e" + std::to_string(n), 1'700'000'000'000 + n));
    }
    apply_ok(*store, batch);
    max_pending = std::max(max_pending, store->stats().pending_events);
  }
  const StoreStats stats = store->stats();
  EXPECT_GE(stats.checkpoints, 5u);
  EXPECT_GT(stats.checkpoint_slices, 3 * stats.checkpoints) << "checkpoints were not sliced";
  // Never past the point where apply_batch must complete a checkpoint in one go.
  EXPECT_LT(max_pending, 2u * o.checkpoint_events);
  EXPECT_EQ(stats.events, 200000u);
  EXPECT_EQ(stats.customers, 50000u);
}

}  // namespace
}  // namespace rapport
