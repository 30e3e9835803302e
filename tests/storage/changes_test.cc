// The change feed (Store::changes, PartitionedStore::changes): order, one item
// per customer, tombstones and their compaction, restarts, and the property
// that a follower applying the feed ends with the store's state.
#include <gtest/gtest.h>
#include <lmdb.h>

#include <atomic>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "storage/partitioned_store.h"
#include "store_fixture.h"

namespace rapport {
namespace {

Event purchase(std::string_view customer, std::string_view id, double amount = 10.0) {
  Event e;
  e.customer_id.assign(customer);
  e.event_id.assign(id);
  e.ts_ms = 1000;
  e.type = EventType::kPurchase;
  e.amount = amount;
  return e;
}

struct Item {
  std::uint64_t seq;
  std::string id;
  bool deleted;
  friend bool operator==(const Item&, const Item&) = default;
};
std::ostream& operator<<(std::ostream& os, const Item& i) {
  return os << "{" << i.seq << "," << i.id << (i.deleted ? ",deleted}" : "}");
}

std::vector<Item> feed(const Store& store, std::uint64_t after = 0, std::size_t limit = 1000) {
  auto page = store.changes(after, limit);
  EXPECT_TRUE(page.ok()) << (page.ok() ? "" : page.message());
  std::vector<Item> items;
  if (page.ok()) {
    for (const Change& c : page->items) items.push_back(Item{c.seq, c.customer_id, !c.state});
  }
  return items;
}

class ChangesTest : public StoreFixture {};

TEST_F(ChangesTest, OneItemPerCustomerAtItsLastChangeBeforeAndAfterCheckpoint) {
  auto store = open_ok(options());
  apply_ok(*store, {purchase("a", "1"), purchase("b", "1")});  // seqs 1, 2
  apply_ok(*store, {purchase("a", "2")});                      // 3: a moves to the end
  const std::vector<Item> expected = {{2, "b", false}, {3, "a", false}};
  EXPECT_EQ(feed(*store), expected);
  ASSERT_TRUE(store->checkpoint().ok());
  EXPECT_EQ(feed(*store), expected);
  EXPECT_EQ(feed(*store, 2), std::vector<Item>({{3, "a", false}}));
  EXPECT_EQ(feed(*store, 0, 1), std::vector<Item>({{2, "b", false}}));
  EXPECT_TRUE(feed(*store, 3).empty());
  // A change after the checkpoint supersedes the stored item; the state is the current one.
  apply_ok(*store, {purchase("b", "2", 5.0)});  // 4
  EXPECT_EQ(feed(*store), std::vector<Item>({{3, "a", false}, {4, "b", false}}));
  auto page = store->changes(3, 10);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->items.size(), 1u);
  auto b = store->get_customer("b");
  ASSERT_TRUE(b.ok() && b->has_value());
  EXPECT_EQ(*page->items[0].state, **b);
  // A duplicate is no change.
  apply_ok(*store, {purchase("a", "2")});
  EXPECT_TRUE(feed(*store, 4).empty());
}

TEST_F(ChangesTest, SurvivesRestartWithAndWithoutCheckpoint) {
  auto o = options();
  o.checkpoint_on_close = false;
  {
    auto store = open_ok(o);
    apply_ok(*store, {purchase("a", "1"), purchase("b", "1")});
    ASSERT_TRUE(store->checkpoint().ok());
    apply_ok(*store, {purchase("a", "2"), purchase("c", "1")});  // pending: replayed at open
  }
  const std::vector<Item> expected = {{2, "b", false}, {3, "a", false}, {4, "c", false}};
  {
    auto store = open_ok(o);
    EXPECT_EQ(feed(*store), expected);
    ASSERT_TRUE(store->checkpoint().ok());
  }
  auto store = open_ok(o);
  EXPECT_EQ(feed(*store), expected);
}

TEST_F(ChangesTest, ErasureReplacesTheItemWithATombstoneAtANewSequence) {
  auto o = options();
  o.checkpoint_on_close = false;
  auto store = open_ok(o);
  apply_ok(*store, {purchase("a", "1"), purchase("b", "1")});  // 1, 2
  ASSERT_TRUE(store->checkpoint().ok());
  apply_ok(*store, {purchase("c", "1")});             // 3, pending
  ASSERT_TRUE(store->erase_customer("a").value());    // tombstone 4
  ASSERT_TRUE(store->erase_customer("c").value());    // tombstone 5 (c was pending only)
  EXPECT_FALSE(store->erase_customer("zz").value());  // unknown: no tombstone
  const std::vector<Item> expected = {{2, "b", false}, {4, "a", true}, {5, "c", true}};
  EXPECT_EQ(feed(*store), expected);
  // Sequences are not reused: the next event follows the tombstones.
  apply_ok(*store, {purchase("d", "1")});
  EXPECT_EQ(feed(*store, 5), std::vector<Item>({{6, "d", false}}));
  store.reset();
  store = open_ok(o);  // d replayed from the journal
  EXPECT_EQ(feed(*store, 0, 3), expected);
  // A customer back after its erasure: the tombstone gives way to its new item.
  apply_ok(*store, {purchase("a", "9")});  // 7
  ASSERT_TRUE(store->checkpoint().ok());
  EXPECT_EQ(feed(*store), std::vector<Item>({{2, "b", false}, {5, "c", true}, {6, "d", false}, {7, "a", false}}));
}

TEST_F(ChangesTest, OldestTombstonesBeyondTheBoundAreCompactedAndRaiseTheFloor) {
  auto o = options();
  o.feed_tombstones = 2;
  auto store = open_ok(o);
  apply_ok(*store, {purchase("a", "1"), purchase("b", "1"), purchase("c", "1"), purchase("d", "1")});  // 1-4
  ASSERT_TRUE(store->checkpoint().ok());
  ASSERT_TRUE(store->erase_customer("a").value());  // 5
  ASSERT_TRUE(store->erase_customer("b").value());  // 6
  auto page = store->changes(0, 10);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->floor, 0u);
  ASSERT_TRUE(store->erase_customer("c").value());  // 7: a's tombstone goes
  page = store->changes(0, 10);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->floor, 5u);
  EXPECT_EQ(feed(*store), std::vector<Item>({{4, "d", false}, {6, "b", true}, {7, "c", true}}));
  // A customer whose tombstone went may come back.
  apply_ok(*store, {purchase("a", "2")});
  ASSERT_TRUE(store->checkpoint().ok());
  EXPECT_EQ(feed(*store, 7), std::vector<Item>({{8, "a", false}}));
}

TEST_F(ChangesTest, CustomersStoredBeforeTheFeedExistedGetAnItemAtOpen) {
  const auto o = options();
  {
    auto store = open_ok(o);
    apply_ok(*store, {purchase("b", "1"), purchase("a", "1"), purchase("c", "1")});  // 1-3, checkpointed at close
  }
  // As a store written before the feed: no items, no feed version.
  {
    MDB_env* env = nullptr;
    ASSERT_EQ(mdb_env_create(&env), 0);
    ASSERT_EQ(mdb_env_set_maxdbs(env, 8), 0);
    ASSERT_EQ(mdb_env_open(env, o.directory.c_str(), 0, 0640), 0);
    MDB_txn* txn = nullptr;
    ASSERT_EQ(mdb_txn_begin(env, nullptr, 0, &txn), 0);
    MDB_dbi changes = 0, meta = 0;
    ASSERT_EQ(mdb_dbi_open(txn, "changes", 0, &changes), 0);
    ASSERT_EQ(mdb_drop(txn, changes, 1), 0);
    ASSERT_EQ(mdb_dbi_open(txn, "meta", 0, &meta), 0);
    MDB_val k{std::strlen("storage.feed_version"), const_cast<char*>("storage.feed_version")};
    ASSERT_EQ(mdb_del(txn, meta, &k, nullptr), 0);
    ASSERT_EQ(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
  }
  auto store = open_ok(o);
  // Fresh sequences after every one used, in key order.
  EXPECT_EQ(feed(*store), std::vector<Item>({{4, "a", false}, {5, "b", false}, {6, "c", false}}));
  apply_ok(*store, {purchase("b", "2")});
  EXPECT_EQ(feed(*store, 6), std::vector<Item>({{7, "b", false}}));
  store.reset();
  store = open_ok(o);  // once only
  EXPECT_EQ(feed(*store), std::vector<Item>({{4, "a", false}, {6, "c", false}, {7, "b", false}}));
}

// Applies pages of the feed to a copy of the state, as a client would.
struct Follower {
  std::map<std::string, CustomerState> state;
  std::vector<std::uint64_t> cursor;
  void follow(const PartitionedStore& store, std::size_t limit) {
    if (cursor.empty()) cursor.assign(store.partition_count(), 0);
    for (;;) {
      auto page = store.changes(cursor, limit);
      ASSERT_TRUE(page.ok()) << page.message();
      for (std::size_t p = 0; p < cursor.size(); ++p) ASSERT_LE(page->floors[p], cursor[p]) << "tombstone compacted";
      std::uint64_t last_seq = 0;
      for (const auto& item : page->items) {
        ASSERT_GT(item.change.seq, cursor[item.partition]);
        EXPECT_GE(item.change.seq, last_seq);  // merged in seq order
        last_seq = item.change.seq;
        cursor[item.partition] = item.change.seq;
        if (item.change.state) {
          state[item.change.customer_id] = *item.change.state;
        } else {
          state.erase(item.change.customer_id);
        }
      }
      if (page->items.size() < limit) return;
    }
  }
};

class ChangesPropertyTest : public StoreFixture, public ::testing::WithParamInterface<std::uint32_t> {};

// Randomized: events, duplicates, erasures, checkpoint slices and restarts (with and without a
// checkpoint at close, i.e. as after kill -9) interleaved with a follower reading small pages.
TEST_P(ChangesPropertyTest, AFollowerEndsWithTheStoresState) {
  PartitionedStoreOptions o;
  static_cast<StoreOptions&>(o) = options();
  o.partitions = GetParam();
  o.checkpoint_events = 7;  // checkpoints (in slices) during the run
  o.checkpoint_in_apply_batch = true;
  std::mt19937 rng(20261207 + GetParam());
  auto open = [&] {
    auto r = PartitionedStore::open(o);
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.message());
    return r.ok() ? std::move(r).value() : nullptr;
  };
  auto store = open();
  ASSERT_TRUE(store);
  Follower follower;
  std::vector<std::string> ids;
  for (int i = 0; i < 12; ++i) ids.push_back("cust-" + std::to_string(i));
  int next_event = 0;
  for (int step = 0; step < 400; ++step) {
    const int op = std::uniform_int_distribution<int>(0, 99)(rng);
    if (op < 70) {
      std::vector<Event> batch;
      const int n = std::uniform_int_distribution<int>(1, 5)(rng);
      for (int j = 0; j < n; ++j) {
        const std::string& id = ids[std::uniform_int_distribution<std::size_t>(0, ids.size() - 1)(rng)];
        // Sometimes a duplicate of an earlier event id.
        const int eid =
            op < 10 && next_event > 0 ? std::uniform_int_distribution<int>(0, next_event - 1)(rng) : next_event++;
        batch.push_back(purchase(id, "e" + std::to_string(eid), 1.0 + eid % 7));
      }
      std::vector<EventOutcome> outcomes;
      ASSERT_TRUE(store->apply_batch(batch, ApplyConfig{}, outcomes).ok());
    } else if (op < 80) {
      const std::string& id = ids[std::uniform_int_distribution<std::size_t>(0, ids.size() - 1)(rng)];
      ASSERT_TRUE(store->erase_customer(id).ok());
    } else if (op < 85) {
      ASSERT_TRUE(store->checkpoint().ok());
    } else if (op < 90) {
      o.checkpoint_on_close = op % 2 == 0;  // odd: as after kill -9 (journal replay)
      store.reset();
      store = open();
      ASSERT_TRUE(store);
    } else {
      follower.follow(*store, std::uniform_int_distribution<std::size_t>(1, 4)(rng));
      if (HasFatalFailure()) return;
    }
  }
  follower.follow(*store, 3);
  std::map<std::string, CustomerState> truth;
  ASSERT_TRUE(store
                  ->for_each_customer([&](std::string_view id, const CustomerState& s) {
                    truth.emplace(std::string(id), s);
                    return true;
                  })
                  .ok());
  EXPECT_FALSE(truth.empty());
  EXPECT_EQ(follower.state.size(), truth.size());
  EXPECT_TRUE(follower.state == truth);
}

INSTANTIATE_TEST_SUITE_P(Partitions, ChangesPropertyTest, ::testing::Values(1u, 2u, 4u));

// A follower reading while the writer writes (batches, erasures, checkpoint slices): every page reads
// without error, and once the writer is done the follower has the store's state.
TEST_F(ChangesTest, AFollowerReadingWhileTheWriterWritesEndsWithTheStoresState) {
  PartitionedStoreOptions o;
  static_cast<StoreOptions&>(o) = options();
  o.partitions = 2;
  o.checkpoint_events = 50;
  auto opened = PartitionedStore::open(o);
  ASSERT_TRUE(opened.ok()) << opened.message();
  PartitionedStore& store = **opened;
  std::atomic<bool> done{false};
  std::thread writer([&] {
    std::mt19937 rng(99);
    for (int step = 0; step < 300; ++step) {
      const std::string id = "w" + std::to_string(std::uniform_int_distribution<int>(0, 30)(rng));
      if (step % 13 == 0) {
        EXPECT_TRUE(store.erase_customer(id).ok());
        continue;
      }
      std::vector<Event> batch = {purchase(id, "e" + std::to_string(step)),
                                  purchase("w" + std::to_string(step % 31), "f" + std::to_string(step))};
      std::vector<EventOutcome> outcomes;
      EXPECT_TRUE(store.apply_batch(batch, ApplyConfig{}, outcomes).ok());
    }
    done = true;
  });
  Follower follower;
  while (!done) {
    follower.follow(store, 3);
    if (HasFatalFailure()) break;
  }
  writer.join();
  follower.follow(store, 3);
  std::map<std::string, CustomerState> truth;
  ASSERT_TRUE(store
                  .for_each_customer([&](std::string_view id, const CustomerState& st) {
                    truth.emplace(std::string(id), st);
                    return true;
                  })
                  .ok());
  EXPECT_FALSE(truth.empty());
  EXPECT_TRUE(follower.state == truth);
}

TEST_F(ChangesTest, PartitionedFeedMergesBySequenceWithOnePositionPerPartition) {
  PartitionedStoreOptions o;
  static_cast<StoreOptions&>(o) = options();
  o.partitions = 2;
  auto store = PartitionedStore::open(o);
  ASSERT_TRUE(store.ok()) << store.message();
  auto& s = **store;
  std::vector<Event> batch;
  for (int i = 0; i < 8; ++i) batch.push_back(purchase("c" + std::to_string(i), "1"));
  std::vector<EventOutcome> outcomes;
  ASSERT_TRUE(s.apply_batch(batch, ApplyConfig{}, outcomes).ok());
  std::vector<std::uint64_t> cursor(2, 0);
  auto page = s.changes(cursor, 100);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->items.size(), 8u);
  for (std::size_t i = 1; i < page->items.size(); ++i) {
    const auto& a = page->items[i - 1];
    const auto& b = page->items[i];
    EXPECT_TRUE(a.change.seq < b.change.seq || (a.change.seq == b.change.seq && a.partition < b.partition));
  }
  for (const auto& item : page->items) EXPECT_EQ(item.partition, s.partition_of(item.change.customer_id));
  // A position for another partition count is an error naming both.
  std::vector<std::uint64_t> three(3, 0);
  auto bad = s.changes(three, 10);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("names 3 partitions; the store has 2"), std::string::npos) << bad.message();
}

}  // namespace
}  // namespace rapport
