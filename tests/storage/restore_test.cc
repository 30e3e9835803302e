// Store::restore_customers: a partition's state restored from the Kafka changes topic.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "store_fixture.h"

namespace rapport {
namespace {

Event purchase(std::string_view customer, std::string_view id, double amount = 10.0) {
  Event e;
  e.customer_id.assign(customer);
  e.event_id.assign(id);
  e.ts_ms = 1'700'000'000'000;
  e.type = EventType::kPurchase;
  e.amount = amount;
  return e;
}

CustomerState state_of(std::initializer_list<double> amounts) {
  CustomerState s;
  int i = 0;
  for (double a : amounts) apply_event(s, purchase("x", "e" + std::to_string(i++), a), ApplyConfig{});
  return s;
}

class RestoreTest : public StoreFixture {
 protected:
  static std::optional<CustomerState> get(const Store& store, std::string_view id) {
    auto r = store.get_customer(id);
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.message());
    return r.ok() ? *r : std::nullopt;
  }
};

TEST_F(RestoreTest, ReplacesStatesErasesAndWritesMetaInOneCommit) {
  StoreOptions o = options();
  o.checkpoint_on_close = false;  // the reopen below replays the journal: it must not bring old events back
  const CustomerState a = state_of({5, 6, 7}), b = state_of({100});
  std::uint64_t feed_before = 0;
  {
    auto store = open_ok(o);
    ASSERT_NE(store, nullptr);
    apply_ok(*store, {purchase("z", "z1"), purchase("a", "a-old")});
    ASSERT_TRUE(store->checkpoint());
    apply_ok(*store, {purchase("a", "a-pending"), purchase("keep", "k1")});  // journaled, not checkpointed
    auto page = store->changes(0, 100);
    ASSERT_TRUE(page.ok());
    feed_before = page->items.back().seq;

    const RestoredCustomer restored[] = {{"b", &b}, {"z", nullptr}, {"a", &a}};
    const std::pair<std::string_view, std::string_view> meta[] = {{"kafka.input_offset.3", "42"}};
    Status s = store->restore_customers(restored, meta);
    ASSERT_TRUE(s) << s.message();

    EXPECT_EQ(get(*store, "a"), a);
    EXPECT_EQ(get(*store, "b"), b);
    EXPECT_EQ(get(*store, "z"), std::nullopt);
    EXPECT_TRUE(get(*store, "keep").has_value());  // not listed: untouched
    EXPECT_TRUE(event_ids(*store, "a").empty());   // a restored state carries no timeline
    EXPECT_TRUE(event_ids(*store, "z").empty());
    EXPECT_EQ(event_ids(*store, "keep"), std::vector<std::string>{"k1"});
    auto meta_back = store->get_meta("kafka.input_offset.3");
    ASSERT_TRUE(meta_back.ok());
    EXPECT_EQ(*meta_back, std::optional<std::string>("42"));

    // The change feed names each restored customer after what it had, in key order, z as a tombstone.
    auto after = store->changes(feed_before, 100);
    ASSERT_TRUE(after.ok()) << after.message();
    ASSERT_EQ(after->items.size(), 3u);
    EXPECT_EQ(after->items[0].customer_id, "a");
    EXPECT_EQ(after->items[1].customer_id, "b");
    EXPECT_EQ(after->items[2].customer_id, "z");
    EXPECT_FALSE(after->items[2].state.has_value());
    EXPECT_EQ(after->items[0].state, std::optional<CustomerState>(a));

    // New events apply on top of the restored state; its dedup keys are gone (documented).
    std::vector<EventOutcome> outcomes = apply_ok(*store, {purchase("a", "a-old", 1.0), purchase("a", "a-new", 2.0)});
    EXPECT_EQ(outcomes, (std::vector<EventOutcome>{EventOutcome::kAccepted, EventOutcome::kAccepted}));
  }
  // Durable, and journal replay at open does not bring the replaced events back.
  auto store = open_ok(o);
  ASSERT_NE(store, nullptr);
  CustomerState want = a;
  apply_event(want, purchase("a", "a-old", 1.0), ApplyConfig{});
  apply_event(want, purchase("a", "a-new", 2.0), ApplyConfig{});
  EXPECT_EQ(get(*store, "a"), want);
  EXPECT_EQ(get(*store, "b"), b);
  EXPECT_EQ(get(*store, "z"), std::nullopt);
  EXPECT_EQ(event_ids(*store, "a"), (std::vector<std::string>{"a-old", "a-new"}));
}

TEST_F(RestoreTest, BadInputIsRefusedAndNothingIsWritten) {
  auto store = open_ok(options());
  ASSERT_NE(store, nullptr);
  apply_ok(*store, {purchase("a", "a1")});
  const CustomerState before = *get(*store, "a");
  const CustomerState other = state_of({1, 2});
  const std::string long_id(kMaxIdBytes + 1, 'x');
  const std::string with_nul("a\0b", 3);
  struct Case {
    std::vector<RestoredCustomer> customers;
    std::vector<std::pair<std::string_view, std::string_view>> meta;
    std::string why;
  };
  const Case cases[] = {
      {{{"a", &other}, {"", &other}}, {}, "bytes without NUL"},
      {{{"a", &other}, {long_id, &other}}, {}, "bytes without NUL"},
      {{{"a", &other}, {with_nul, &other}}, {}, "bytes without NUL"},
      {{{"a", &other}, {"a", nullptr}}, {}, "listed twice"},
      {{{"a", &other}}, {{"", "1"}}, "meta key is empty"},
  };
  for (const Case& c : cases) {
    Status s = store->restore_customers(c.customers, c.meta);
    ASSERT_FALSE(s);
    EXPECT_NE(s.message().find(c.why), std::string::npos) << s.message();
    EXPECT_EQ(get(*store, "a"), before);
  }
}

TEST_F(RestoreTest, ReadOnlyStoreRefuses) {
  { ASSERT_NE(open_ok(options()), nullptr); }
  StoreOptions o = options();
  o.read_only = true;
  auto store = open_ok(o);
  ASSERT_NE(store, nullptr);
  const CustomerState a = state_of({1});
  const RestoredCustomer restored[] = {{"a", &a}};
  Status s = store->restore_customers(restored);
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("read-only"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace rapport
