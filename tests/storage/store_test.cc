#include "storage/store.h"

#include <gtest/gtest.h>
#include <lmdb.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/storage/store_fixture.h"

namespace rapport {
namespace {

namespace fs = std::filesystem;

Event make_event(std::string_view customer, std::string_view id, std::int64_t ts_ms,
                 EventType type = EventType::kPurchase) {
  Event e;
  e.customer_id.assign(customer);
  e.event_id.assign(id);
  e.ts_ms = ts_ms;
  e.type = type;
  e.channel.assign("web");
  if (type == EventType::kPurchase || type == EventType::kRefund) e.amount = 10.0;
  return e;
}

class StoreTest : public StoreFixture {
 protected:
  static CustomerState customer(const Store& store, std::string_view id) {
    auto r = store.get_customer(id);
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.message());
    EXPECT_TRUE(r.ok() && r->has_value()) << "customer " << id << " missing";
    return r.ok() && r->has_value() ? **r : CustomerState{};
  }
};

constexpr auto kAccepted = EventOutcome::kAccepted;
constexpr auto kDuplicate = EventOutcome::kDuplicate;

TEST_F(StoreTest, OpenCreatesMissingDirectory) {
  StoreOptions o = options("a/b/c");
  ASSERT_FALSE(fs::exists(o.directory));
  auto store = open_ok(o);
  ASSERT_TRUE(store);
  EXPECT_TRUE(fs::exists(fs::path(o.directory) / "data.mdb"));
  StoreStats st = store->stats();
  EXPECT_EQ(st.customers, 0u);
  EXPECT_EQ(st.events, 0u);
  EXPECT_GE(st.map_bytes, o.initial_map_bytes);
  EXPECT_GT(st.used_bytes, 0u);
  EXPECT_EQ(st.max_readers, 256u);
  EXPECT_EQ(store->options().directory, o.directory);
}

TEST_F(StoreTest, OpenFailureNamesTheDirectory) {
  // A regular file where the directory should be.
  fs::path file = root_ / "file";
  { std::ofstream(file) << "x"; }
  StoreOptions o = options();
  o.directory = (file / "db").string();
  auto r = Store::open(o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.message().find(o.directory), std::string::npos) << r.message();
}

TEST_F(StoreTest, AppliesBatchAndReadsStateBack) {
  auto store = open_ok(options());
  std::vector<Event> batch = {make_event("alice", "e1", 2000), make_event("bob", "e1", 1500),
                              make_event("alice", "e2", 1000, EventType::kSupport),
                              make_event("alice", "e3", 3000, EventType::kComplaint)};
  auto outcomes = apply_ok(*store, batch);
  EXPECT_EQ(outcomes, (std::vector<EventOutcome>{kAccepted, kAccepted, kAccepted, kAccepted}));

  CustomerState alice = customer(*store, "alice");
  EXPECT_EQ(alice.event_count, 3u);
  EXPECT_EQ(alice.first_seen_ms, 1000);
  EXPECT_EQ(alice.last_seen_ms, 3000);
  EXPECT_EQ(alice.type_counts[static_cast<int>(EventType::kPurchase)], 1u);
  EXPECT_EQ(alice.type_counts[static_cast<int>(EventType::kSupport)], 1u);
  EXPECT_EQ(alice.type_counts[static_cast<int>(EventType::kComplaint)], 1u);
  CustomerState bob = customer(*store, "bob");
  EXPECT_EQ(bob.event_count, 1u);

  // The stored state is exactly what apply_event computes.
  CustomerState expected;
  for (int i : {0, 2, 3}) apply_event(expected, batch[i], ApplyConfig{});
  EXPECT_EQ(serialize(alice), serialize(expected));

  auto missing = store->get_customer("carol");
  ASSERT_TRUE(missing.ok());
  EXPECT_FALSE(missing->has_value());
  EXPECT_EQ(store->stats().customers, 2u);
  EXPECT_EQ(store->stats().events, 4u);
}

TEST_F(StoreTest, ReportsDuplicatesWithinAndAcrossBatches) {
  auto store = open_ok(options());
  auto outcomes = apply_ok(
      *store, {make_event("alice", "e1", 1000), make_event("alice", "e1", 5000), make_event("bob", "e1", 1000)});
  EXPECT_EQ(outcomes, (std::vector<EventOutcome>{kAccepted, kDuplicate, kAccepted}));
  CustomerState before = customer(*store, "alice");
  EXPECT_EQ(before.event_count, 1u);
  EXPECT_EQ(before.last_seen_ms, 1000);

  outcomes =
      apply_ok(*store, {make_event("alice", "e1", 9000, EventType::kComplaint), make_event("alice", "e2", 2000)});
  EXPECT_EQ(outcomes, (std::vector<EventOutcome>{kDuplicate, kAccepted}));
  CustomerState after = customer(*store, "alice");
  EXPECT_EQ(after.event_count, 2u);
  EXPECT_EQ(after.last_seen_ms, 2000);
  EXPECT_EQ(after.type_counts[static_cast<int>(EventType::kComplaint)], 0u);

  // A batch of nothing but duplicates changes nothing.
  outcomes = apply_ok(*store, {make_event("alice", "e2", 7000)});
  EXPECT_EQ(outcomes, (std::vector<EventOutcome>{kDuplicate}));
  EXPECT_EQ(serialize(customer(*store, "alice")), serialize(after));
  EXPECT_EQ(store->stats().events, 3u);
}

TEST_F(StoreTest, BatchIsAllOrNothingWhenTheMapCannotGrow) {
  StoreOptions o = options();
  o.initial_map_bytes = 128 << 10;
  o.max_map_bytes = 128 << 10;
  auto store = open_ok(o);
  apply_ok(*store, {make_event("alice", "e1", 1000)});
  CustomerState alice = customer(*store, "alice");

  std::vector<Event> big;
  big.push_back(make_event("alice", "e2", 2000));
  for (int i = 0; i < 5000; ++i) {
    big.push_back(make_event("cust-" + std::to_string(i), "event-with-a-longish-id-" + std::to_string(i), 1000 + i));
  }
  std::vector<DeadLetter> letters(1, DeadLetter{1, "tcp", "bad_json", "oops", "{"});
  std::vector<EventOutcome> outcomes;
  Status s = store->apply_batch(big, ApplyConfig{}, outcomes, letters);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("storage full"), std::string::npos) << s.message();

  EXPECT_EQ(serialize(customer(*store, "alice")), serialize(alice));
  EXPECT_EQ(event_ids(*store, "alice"), (std::vector<std::string>{"e1"}));
  EXPECT_FALSE(store->get_customer("cust-0")->has_value());
  EXPECT_FALSE(store->get_customer("cust-4999")->has_value());
  EXPECT_TRUE(event_ids(*store, "cust-0").empty());
  EXPECT_EQ(store->stats().customers, 1u);
  EXPECT_EQ(store->stats().events, 1u);
  EXPECT_TRUE(store->dead_letters(0, 10)->empty());

  // The store stays usable, and the rejected event is not a duplicate.
  auto ok = apply_ok(*store, {make_event("alice", "e2", 2000)});
  EXPECT_EQ(ok, (std::vector<EventOutcome>{kAccepted}));
  EXPECT_EQ(customer(*store, "alice").event_count, 2u);
}

TEST_F(StoreTest, GrowsTheMapFrom64KiB) {
  StoreOptions o = options();
  o.initial_map_bytes = 64 << 10;
  o.max_map_bytes = 1ull << 30;
  auto store = open_ok(o);
  const std::size_t initial = store->stats().map_bytes;
  constexpr int kEvents = 20000, kCustomers = 2000, kBatch = 1000;
  for (int b = 0; b < kEvents / kBatch; ++b) {
    std::vector<Event> batch;
    for (int i = b * kBatch; i < (b + 1) * kBatch; ++i) {
      batch.push_back(make_event("c" + std::to_string(i % kCustomers), "e" + std::to_string(i), i));
    }
    auto outcomes = apply_ok(*store, batch);
    ASSERT_EQ(std::count(outcomes.begin(), outcomes.end(), kAccepted), kBatch);
  }
  StoreStats st = store->stats();
  EXPECT_EQ(st.events, static_cast<std::uint64_t>(kEvents));
  EXPECT_EQ(st.customers, static_cast<std::uint64_t>(kCustomers));
  EXPECT_GT(st.map_bytes, initial);
  EXPECT_LE(st.used_bytes, st.map_bytes);
  std::uint64_t total = 0;
  Status visited = store->for_each_customer([&](std::string_view, const CustomerState& s) {
    total += s.event_count;
    return true;
  });
  ASSERT_TRUE(visited.ok()) << visited.message();
  EXPECT_EQ(total, static_cast<std::uint64_t>(kEvents));
  EXPECT_EQ(event_ids(*store, "c7").size(), static_cast<std::size_t>(kEvents / kCustomers));
}

class StoreDurabilityTest : public StoreTest, public ::testing::WithParamInterface<Durability> {};

TEST_P(StoreDurabilityTest, DataPersistsAcrossReopen) {
  StoreOptions o = options();
  o.durability = GetParam();
  {
    auto store = open_ok(o);
    apply_ok(*store, {make_event("alice", "e1", 1000), make_event("alice", "e2", 2000)});
    ASSERT_TRUE(store->put_meta("schema", "1").ok());
  }
  auto store = open_ok(o);
  EXPECT_EQ(customer(*store, "alice").event_count, 2u);
  EXPECT_EQ(event_ids(*store, "alice"), (std::vector<std::string>{"e2", "e1"}));
  EXPECT_EQ(store->get_meta("schema")->value_or(""), "1");
  // Dedup survives the reopen.
  EXPECT_EQ(apply_ok(*store, {make_event("alice", "e1", 1000)}), (std::vector<EventOutcome>{kDuplicate}));
}

INSTANTIATE_TEST_SUITE_P(Modes, StoreDurabilityTest, ::testing::Values(Durability::kFsync, Durability::kAsync),
                         [](const auto& param_info) {
                           return param_info.param == Durability::kFsync ? "Fsync" : "Async";
                         });

TEST_F(StoreTest, ReopenKeepsAGrownMap) {
  StoreOptions o = options();
  o.initial_map_bytes = 64 << 10;
  std::size_t grown = 0;
  {
    auto store = open_ok(o);
    std::vector<Event> batch;
    for (int i = 0; i < 3000; ++i) batch.push_back(make_event("c" + std::to_string(i), "e", i));
    apply_ok(*store, batch);
    grown = store->stats().map_bytes;
    ASSERT_GT(grown, o.initial_map_bytes);
  }
  auto store = open_ok(o);
  EXPECT_EQ(store->stats().map_bytes, grown);
  EXPECT_EQ(store->stats().customers, 3000u);
}

TEST_F(StoreTest, AdoptsAMapGrownByAnotherProcess) {
  StoreOptions o = options();
  o.initial_map_bytes = 64 << 10;
  auto store = open_ok(o);
  apply_ok(*store, {make_event("parent", "e1", 1)});
  const std::size_t before = store->stats().map_bytes;

  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // A second process (its own environment) grows the map well past ours.
    int code = 1;
    {
      auto other = Store::open(o);
      if (other.ok()) {
        std::vector<Event> batch;
        for (int i = 0; i < 5000; ++i) batch.push_back(make_event("c" + std::to_string(i), "e", i));
        std::vector<EventOutcome> outcomes;
        if ((*other)->apply_batch(batch, ApplyConfig{}, outcomes).ok()) code = 0;
      }
    }
    _exit(code);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);

  // Reads and writes here see the other process's data after adopting its map size.
  EXPECT_EQ(customer(*store, "c4999").event_count, 1u);
  EXPECT_GT(store->stats().map_bytes, before);
  apply_ok(*store, {make_event("parent", "e2", 2)});
  EXPECT_EQ(customer(*store, "parent").event_count, 2u);
  EXPECT_EQ(store->stats().customers, 5001u);
}

TEST_F(StoreTest, EraseCustomerRemovesStateAndEvents) {
  auto store = open_ok(options());
  // "c1" is a prefix of "c10": erasing c1 must leave c10 alone.
  apply_ok(*store, {make_event("c1", "e1", 1000), make_event("c1", "e2", 2000), make_event("c10", "e1", 3000),
                    make_event("c0", "e1", 500)});
  auto erased = store->erase_customer("c1");
  ASSERT_TRUE(erased.ok()) << erased.message();
  EXPECT_TRUE(*erased);
  EXPECT_FALSE(store->get_customer("c1")->has_value());
  EXPECT_TRUE(event_ids(*store, "c1").empty());
  EXPECT_EQ(customer(*store, "c10").event_count, 1u);
  EXPECT_EQ(event_ids(*store, "c10"), (std::vector<std::string>{"e1"}));
  EXPECT_EQ(event_ids(*store, "c0"), (std::vector<std::string>{"e1"}));
  EXPECT_EQ(store->stats().events, 2u);

  auto again = store->erase_customer("c1");
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(*again);

  // The same event id starts fresh.
  EXPECT_EQ(apply_ok(*store, {make_event("c1", "e2", 7000)}), (std::vector<EventOutcome>{kAccepted}));
  CustomerState fresh = customer(*store, "c1");
  EXPECT_EQ(fresh.event_count, 1u);
  EXPECT_EQ(fresh.first_seen_ms, 7000);
}

TEST_F(StoreTest, TimelineIsNewestFirstWithOffsetAndLimit) {
  auto store = open_ok(options());
  Event full = make_event("alice", "full", 4000, EventType::kSurvey);
  full.amount.reset();
  full.channel.assign("a-very-custom-channel-label-32by");
  full.cost = 1.25;
  full.sentiment = -0.5;
  full.nps = 9;
  full.csat = 4;
  full.rating = 5;
  Event bare = make_event("alice", "bare", 3000, EventType::kEngagement);
  bare.channel.clear();
  apply_ok(*store, {make_event("alice", "a", 1000), make_event("alice", "c", 2000), make_event("alice", "b", 2000),
                    full, bare, make_event("bob", "z", 9999)});

  EXPECT_EQ(event_ids(*store, "alice"), (std::vector<std::string>{"full", "bare", "c", "b", "a"}));
  EXPECT_EQ(event_ids(*store, "alice", 1, 2), (std::vector<std::string>{"bare", "c"}));
  EXPECT_EQ(event_ids(*store, "alice", 3, 100), (std::vector<std::string>{"b", "a"}));
  EXPECT_TRUE(event_ids(*store, "alice", 5, 10).empty());
  EXPECT_TRUE(event_ids(*store, "alice", 0, 0).empty());
  EXPECT_TRUE(event_ids(*store, "nobody").empty());

  auto events = store->customer_events("alice", std::nullopt, 2);
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), 2u);
  const TimelineEvent& f = (*events)[0];
  EXPECT_EQ(f.ts_ms, 4000);
  EXPECT_EQ(f.type, EventType::kSurvey);
  EXPECT_EQ(f.channel, "a-very-custom-channel-label-32by");
  EXPECT_FALSE(f.amount.has_value());
  EXPECT_EQ(f.cost, 1.25);
  EXPECT_EQ(f.sentiment, -0.5);
  EXPECT_EQ(f.nps, 9);
  EXPECT_EQ(f.csat, 4);
  EXPECT_EQ(f.rating, 5);
  const TimelineEvent& b = (*events)[1];
  EXPECT_EQ(b.type, EventType::kEngagement);
  EXPECT_EQ(b.channel, "");
  EXPECT_FALSE(b.cost || b.sentiment || b.nps || b.csat || b.rating || b.amount);
  auto a = store->customer_events("alice", TimelineKey(2000, "b"), 1);
  ASSERT_TRUE(a.ok());
  ASSERT_EQ(a->size(), 1u);
  EXPECT_EQ((*a)[0].amount, 10.0);
  EXPECT_EQ((*a)[0].channel, "web");
}

// Keyset paging: events stored between two pages (one newer than all, one in the middle of the part
// already read, one in the part still to read) neither repeat an event nor hide one that existed.
TEST_F(StoreTest, TimelinePagesAfterAKeyNeitherRepeatNorSkipWhenEventsArrive) {
  auto store = open_ok(options());
  apply_ok(*store, {make_event("p", "e1", 1000), make_event("p", "e2", 2000), make_event("p", "e3", 3000),
                    make_event("p", "e4", 4000), make_event("p", "e5", 5000), make_event("p", "e6", 6000)});
  auto page1 = store->customer_events("p", std::nullopt, 2);
  ASSERT_TRUE(page1.ok());
  ASSERT_EQ(page1->size(), 2u);
  EXPECT_EQ((*page1)[0].event_id, "e6");
  EXPECT_EQ((*page1)[1].event_id, "e5");
  apply_ok(*store, {make_event("p", "newest", 9000), make_event("p", "middle", 5500)});
  const TimelineKey after(page1->back().ts_ms, page1->back().event_id);
  auto page2 = store->customer_events("p", after, 2);
  ASSERT_TRUE(page2.ok());
  ASSERT_EQ(page2->size(), 2u);
  EXPECT_EQ((*page2)[0].event_id, "e4");
  EXPECT_EQ((*page2)[1].event_id, "e3");
  // Ties on ts go by event_id, descending, so a key inside a run of equal times continues within it.
  apply_ok(*store, {make_event("t", "a", 7), make_event("t", "b", 7), make_event("t", "c", 7)});
  auto tie = store->customer_events("t", TimelineKey(7, "b"), 10);
  ASSERT_TRUE(tie.ok());
  ASSERT_EQ(tie->size(), 1u);
  EXPECT_EQ((*tie)[0].event_id, "a");
  // A key older than every event: nothing after it.
  auto none = store->customer_events("p", TimelineKey(0, ""), 10);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

TEST_F(StoreTest, ForEachCustomerVisitsInKeyOrderAndStopsEarly) {
  auto store = open_ok(options());
  apply_ok(*store, {make_event("carol", "e", 1), make_event("alice", "e", 1), make_event("bob", "e", 1),
                    make_event("bob", "f", 2)});
  std::vector<std::string> seen;
  Status all = store->for_each_customer([&](std::string_view id, const CustomerState& s) {
    seen.emplace_back(id);
    EXPECT_EQ(s.event_count, id == "bob" ? 2u : 1u);
    return true;
  });
  ASSERT_TRUE(all.ok()) << all.message();
  EXPECT_EQ(seen, (std::vector<std::string>{"alice", "bob", "carol"}));

  seen.clear();
  Status stopped = store->for_each_customer([&](std::string_view id, const CustomerState&) {
    seen.emplace_back(id);
    return seen.size() < 2;
  });
  ASSERT_TRUE(stopped.ok()) << stopped.message();
  EXPECT_EQ(seen, (std::vector<std::string>{"alice", "bob"}));

  // Reads nested in the visitor work (same thread, same snapshot lock).
  Status nested = store->for_each_customer([&](std::string_view id, const CustomerState&) {
    EXPECT_TRUE(store->get_customer(id)->has_value());
    return true;
  });
  ASSERT_TRUE(nested.ok()) << nested.message();
}

// Listing from a keyset position: strictly after `after` (stored or not),
// over checkpointed customers, pending ones (overlay), customers both stored
// and changed since, without erased ones; binary ids and prefixes in LMDB's
// key order (bytes, then length).
TEST_F(StoreTest, ForEachCustomerAfterResumesStrictlyAfterTheKey) {
  auto store = open_ok(options());
  auto listing = [&](std::optional<std::string_view> after, std::size_t stop_after = SIZE_MAX) {
    std::vector<std::string> seen;
    auto visit = [&](std::string_view id, const CustomerState& s) {
      EXPECT_GT(s.event_count, 0u) << id;
      seen.emplace_back(id);
      return seen.size() < stop_after;
    };
    Status st = after ? store->for_each_customer(visit, *after) : store->for_each_customer(visit);
    EXPECT_TRUE(st.ok()) << st.message();
    return seen;
  };
  const std::string high("\xff", 1), zero("a\0", 2);
  // Checkpointed: a, ab, c, e, gone-stored, high.
  apply_ok(*store, {make_event("c", "1", 1), make_event("a", "1", 1), make_event("ab", "1", 1), make_event("e", "1", 1),
                    make_event("gone-stored", "1", 1), make_event(high, "1", 1)});
  ASSERT_TRUE(store->checkpoint().ok());
  // Pending: b, a\0 (new); c (stored and changed); gone-pending (new, then erased).
  apply_ok(*store, {make_event("b", "1", 1), make_event(zero, "1", 1), make_event("c", "2", 2),
                    make_event("gone-pending", "1", 1)});
  for (std::string_view who : {"gone-stored", "gone-pending"}) {
    auto erased = store->erase_customer(who);
    ASSERT_TRUE(erased.ok() && *erased) << who;
  }
  EXPECT_EQ(store->get_customer("c")->value().event_count, 2u);
  ASSERT_GT(store->stats().pending_events, 0u);

  const std::vector<std::string> all = {"a", zero, "ab", "b", "c", "e", high};
  EXPECT_EQ(listing(std::nullopt), all);
  // From every position, stored or pending, and between and around them: the suffix strictly after it.
  const std::vector<std::string> positions = {"",
                                              std::string("\0", 1),
                                              "a",
                                              zero,
                                              std::string("a\0\0", 3),
                                              "aa",
                                              "ab",
                                              "abc",
                                              "b",
                                              "bb",
                                              "c",
                                              "d",
                                              "e",
                                              "gone-pending",
                                              "gone-stored",
                                              "z",
                                              high,
                                              "\xff\xff"};
  for (const std::string& after : positions) {
    std::vector<std::string> expected;
    for (const std::string& id : all) {
      if (std::string_view(id) > std::string_view(after)) expected.push_back(id);
    }
    EXPECT_EQ(listing(after), expected) << "after \"" << after << "\" (" << after.size() << " bytes)";
  }
  // Paging two at a time from the last id seen lists everyone once, in order.
  std::vector<std::string> paged;
  std::optional<std::string> last;
  for (int page = 0; page < 10; ++page) {
    const std::vector<std::string> got = last ? listing(std::string_view(*last), 2) : listing(std::nullopt, 2);
    if (got.empty()) break;
    paged.insert(paged.end(), got.begin(), got.end());
    last = got.back();
  }
  EXPECT_EQ(paged, all);
  // The same after a checkpoint and after a reopen (everything stored, overlay empty).
  ASSERT_TRUE(store->checkpoint().ok());
  EXPECT_EQ(listing("ab"), (std::vector<std::string>{"b", "c", "e", high}));
  store.reset();
  store = open_ok(options());
  EXPECT_EQ(listing(zero), (std::vector<std::string>{"ab", "b", "c", "e", high}));
  EXPECT_EQ(listing(high), std::vector<std::string>{});
}

TEST_F(StoreTest, MetaPutAndGet) {
  auto store = open_ok(options());
  EXPECT_FALSE(store->get_meta("model")->has_value());
  ASSERT_TRUE(store->put_meta("model", "v1").ok());
  EXPECT_EQ(store->get_meta("model")->value_or("?"), "v1");
  std::string binary("a\0b\xff", 4);
  ASSERT_TRUE(store->put_meta("model", binary).ok());
  EXPECT_EQ(store->get_meta("model")->value_or("?"), binary);
  ASSERT_TRUE(store->put_meta("empty", "").ok());
  EXPECT_EQ(store->get_meta("empty")->value_or("?"), "");
  EXPECT_FALSE(store->put_meta("", "x").ok());
}

TEST_F(StoreTest, DeadLettersAppendListRemoveAndTrim) {
  StoreOptions o = options();
  o.dead_letter_capacity = 4;
  auto store = open_ok(o);
  auto letter = [](int i) {
    return DeadLetter{1000 + i, "http", "bad_field", "message " + std::to_string(i), std::string("pay\0load", 8)};
  };
  std::vector<DeadLetter> three = {letter(1), letter(2), letter(3)};
  ASSERT_TRUE(store->add_dead_letters(three).ok());
  auto all = store->dead_letters(0, 100);
  ASSERT_TRUE(all.ok()) << all.message();
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[0].sequence, 1u);
  EXPECT_EQ((*all)[2].sequence, 3u);
  EXPECT_EQ((*all)[1].letter.received_ms, 1002);
  EXPECT_EQ((*all)[1].letter.transport, "http");
  EXPECT_EQ((*all)[1].letter.reason, "bad_field");
  EXPECT_EQ((*all)[1].letter.message, "message 2");
  EXPECT_EQ((*all)[1].letter.payload, std::string("pay\0load", 8));

  auto page = store->dead_letters(1, 1);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->size(), 1u);
  EXPECT_EQ((*page)[0].sequence, 2u);

  // Dead letters also ride along with a batch; capacity 4 drops the oldest.
  std::vector<DeadLetter> two = {letter(4), letter(5)};
  apply_ok(*store, {make_event("alice", "e1", 1)}, ApplyConfig{}, two);
  all = store->dead_letters(0, 100);
  ASSERT_EQ(all->size(), 4u);
  EXPECT_EQ((*all)[0].sequence, 2u);
  EXPECT_EQ((*all)[3].sequence, 5u);
  EXPECT_EQ((*all)[3].letter.message, "message 5");

  EXPECT_EQ(store->stats().dead_letters, 4u);
  std::vector<std::uint64_t> remove = {2, 4, 99};
  auto removed = store->remove_dead_letters(remove);
  ASSERT_TRUE(removed.ok()) << removed.message();
  EXPECT_EQ(*removed, 2u);  // 99 was never there
  EXPECT_EQ(store->stats().dead_letters, 2u);
  all = store->dead_letters(0, 100);
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].sequence, 3u);
  EXPECT_EQ((*all)[1].sequence, 5u);

  // Sequences never repeat, even once everything was removed.
  std::vector<std::uint64_t> rest = {3, 5};
  removed = store->remove_dead_letters(rest);
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(*removed, 2u);
  EXPECT_TRUE(store->dead_letters(0, 100)->empty());
  std::vector<DeadLetter> one = {letter(6)};
  ASSERT_TRUE(store->add_dead_letters(one).ok());
  all = store->dead_letters(0, 100);
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].sequence, 6u);
}

TEST_F(StoreTest, ReadOnlyRejectsWritesAndReads) {
  StoreOptions o = options();
  {
    auto store = open_ok(o);
    apply_ok(*store, {make_event("alice", "e1", 1000)});
    ASSERT_TRUE(store->put_meta("k", "v").ok());
  }
  o.read_only = true;
  auto store = open_ok(o);
  ASSERT_TRUE(store);
  EXPECT_EQ(customer(*store, "alice").event_count, 1u);
  EXPECT_EQ(event_ids(*store, "alice"), (std::vector<std::string>{"e1"}));
  EXPECT_EQ(store->get_meta("k")->value_or(""), "v");
  EXPECT_EQ(store->stats().customers, 1u);

  std::vector<EventOutcome> outcomes;
  std::vector<Event> batch = {make_event("bob", "e1", 1)};
  Status s = store->apply_batch(batch, ApplyConfig{}, outcomes);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("read-only"), std::string::npos) << s.message();
  EXPECT_FALSE(store->put_meta("k", "w").ok());
  EXPECT_FALSE(store->erase_customer("alice").ok());
  std::vector<DeadLetter> letters(1);
  EXPECT_FALSE(store->add_dead_letters(letters).ok());
  EXPECT_FALSE(store->get_customer("bob")->has_value());

  StoreOptions missing = options("nope");
  missing.read_only = true;
  auto r = Store::open(missing);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.message().find("nope"), std::string::npos) << r.message();
  EXPECT_FALSE(fs::exists(missing.directory));
}

TEST_F(StoreTest, BackupOpensWithTheSameCustomers) {
  auto store = open_ok(options());
  std::vector<Event> batch;
  for (int i = 0; i < 100; ++i) batch.push_back(make_event("c" + std::to_string(i), "e", i));
  apply_ok(*store, batch);
  ASSERT_TRUE(store->put_meta("k", "v").ok());

  const std::string dest = (root_ / "backup" / "one").string();
  Status s = store->backup(dest);
  ASSERT_TRUE(s.ok()) << s.message();
  // A non-empty destination is refused.
  Status again = store->backup(dest);
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.message().find("not empty"), std::string::npos) << again.message();

  StoreOptions copy = options("backup/one");
  auto restored = open_ok(copy);
  ASSERT_TRUE(restored);
  EXPECT_EQ(restored->stats().customers, 100u);
  EXPECT_EQ(restored->stats().events, 100u);
  EXPECT_EQ(serialize(customer(*restored, "c42")), serialize(customer(*store, "c42")));
  EXPECT_EQ(restored->get_meta("k")->value_or(""), "v");
  // The copy is independent and writable.
  apply_ok(*restored, {make_event("c42", "e2", 1)});
  EXPECT_EQ(customer(*store, "c42").event_count, 1u);
}

// Writes raw values behind the store's back (the store must be closed).
void put_raw(const std::string& dir, const char* db, std::string_view key, std::string_view value) {
  MDB_env* env = nullptr;
  ASSERT_EQ(mdb_env_create(&env), 0);
  ASSERT_EQ(mdb_env_set_maxdbs(env, 8), 0);
  ASSERT_EQ(mdb_env_open(env, dir.c_str(), 0, 0640), 0);
  MDB_txn* txn = nullptr;
  ASSERT_EQ(mdb_txn_begin(env, nullptr, 0, &txn), 0);
  MDB_dbi dbi;
  ASSERT_EQ(mdb_dbi_open(txn, db, 0, &dbi), 0);
  MDB_val k{key.size(), const_cast<char*>(key.data())}, v{value.size(), const_cast<char*>(value.data())};
  ASSERT_EQ(mdb_put(txn, dbi, &k, &v, 0), 0);
  ASSERT_EQ(mdb_txn_commit(txn), 0);
  mdb_env_close(env);
}

TEST_F(StoreTest, UnknownFormatVersionsSurfaceAsErrors) {
  StoreOptions o = options();
  {
    auto store = open_ok(o);
    apply_ok(*store, {make_event("good", "e1", 1)});
  }
  put_raw(o.directory, "customers", "bad", std::string("\x63rest-of-record", 15));
  put_raw(o.directory, "events", std::string("evil\0e1", 7), std::string("\x63", 1));
  put_raw(o.directory, "meta", "m", std::string("\x63v", 2));
  auto store = open_ok(o);

  auto c = store->get_customer("bad");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.message().find("bad"), std::string::npos) << c.message();

  Status each = store->for_each_customer([](std::string_view, const CustomerState&) { return true; });
  ASSERT_FALSE(each.ok());
  EXPECT_NE(each.message().find("bad"), std::string::npos) << each.message();

  auto ev = store->customer_events("evil", std::nullopt, 10);
  ASSERT_FALSE(ev.ok());
  EXPECT_NE(ev.message().find("evil"), std::string::npos) << ev.message();
  EXPECT_NE(ev.message().find("version 99"), std::string::npos) << ev.message();

  auto m = store->get_meta("m");
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.message().find("version 99"), std::string::npos) << m.message();

  // A batch touching the corrupt customer fails as a whole.
  std::vector<EventOutcome> outcomes;
  std::vector<Event> batch = {make_event("good", "e2", 2), make_event("bad", "e9", 2)};
  Status s = store->apply_batch(batch, ApplyConfig{}, outcomes);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("bad"), std::string::npos) << s.message();
  EXPECT_EQ(customer(*store, "good").event_count, 1u);
  EXPECT_EQ(event_ids(*store, "good"), (std::vector<std::string>{"e1"}));
}

TEST_F(StoreTest, WriteFailureAppliesNothingAndStoreStaysUsable) {
  // Simulates a full disk: a file-size limit makes LMDB's page writes fail at commit.
  StoreOptions o = options();
  o.initial_map_bytes = 64 << 20;
  auto store = open_ok(o);
  apply_ok(*store, {make_event("alice", "e1", 1)});
  const auto data_size = fs::file_size(fs::path(o.directory) / "data.mdb");

  std::vector<Event> big;
  for (int i = 0; i < 3000; ++i) big.push_back(make_event("c" + std::to_string(i), "e", i));
  big.push_back(make_event("alice", "e2", 2));

  struct sigaction ignore {
  }, old_action{};
  ignore.sa_handler = SIG_IGN;
  ASSERT_EQ(sigaction(SIGXFSZ, &ignore, &old_action), 0);
  rlimit old_limit{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  rlimit limit = old_limit;
  limit.rlim_cur = data_size;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &limit), 0);
  std::vector<EventOutcome> outcomes;
  Status s = store->apply_batch(big, ApplyConfig{}, outcomes);
  setrlimit(RLIMIT_FSIZE, &old_limit);
  sigaction(SIGXFSZ, &old_action, nullptr);

  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(o.directory), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("file size limit"), std::string::npos) << s.message();
  EXPECT_EQ(customer(*store, "alice").event_count, 1u);
  EXPECT_FALSE(store->get_customer("c0")->has_value());
  EXPECT_EQ(store->stats().events, 1u);

  auto ok = apply_ok(*store, big);
  EXPECT_EQ(std::count(ok.begin(), ok.end(), kAccepted), static_cast<long>(big.size()));
  EXPECT_EQ(customer(*store, "alice").event_count, 2u);
}

TEST_F(StoreTest, ConcurrentReadersWhileTheWriterGrowsTheMap) {
  StoreOptions o = options();
  o.initial_map_bytes = 64 << 10;
  auto store = open_ok(o);
  apply_ok(*store, {make_event("c0", "seed", 0)});
  constexpr int kBatches = 60, kBatch = 200, kCustomers = 500;
  std::atomic<bool> done{false};
  std::atomic<int> failures{0};
  std::atomic<long> reads{0};

  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t));
      std::uint64_t last_total = 0;
      while (!done.load()) {
        std::string id = "c" + std::to_string(rng() % kCustomers);
        auto c = store->get_customer(id);
        auto ev = store->customer_events(id, std::nullopt, 5);
        if (!c.ok() || !ev.ok()) ++failures;
        std::uint64_t total = 0;
        Status s = store->for_each_customer([&](std::string_view, const CustomerState& st) {
          total += st.event_count;
          return true;
        });
        if (!s.ok() || total < last_total) ++failures;  // snapshots only move forward
        last_total = total;
        (void)store->stats();
        ++reads;
      }
    });
  }
  for (int b = 0; b < kBatches; ++b) {
    std::vector<Event> batch;
    for (int i = 0; i < kBatch; ++i) {
      int n = b * kBatch + i;
      batch.push_back(make_event("c" + std::to_string(n % kCustomers), "e" + std::to_string(n), n));
    }
    apply_ok(*store, batch);
  }
  done = true;
  for (auto& r : readers) r.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GT(reads.load(), 0);
  EXPECT_EQ(store->stats().events, static_cast<std::uint64_t>(kBatches * kBatch + 1));
  EXPECT_GT(store->stats().map_bytes, static_cast<std::size_t>(64 << 10));
}

}  // namespace
}  // namespace rapport
