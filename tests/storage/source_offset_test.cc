// Kafka offsets stored outside Kafka: Store::apply_batch writes a batch's source offsets in the same
// transaction as its events; Store::source_offset reads them back (also after reopening).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "storage/store.h"
#include "tests/storage/store_fixture.h"

namespace rapport {
namespace {

Event purchase(std::string_view customer, std::string_view id) {
  Event e;
  e.customer_id.assign(customer);
  e.event_id.assign(id);
  e.ts_ms = 1700000000000;
  e.type = EventType::kPurchase;
  e.channel.assign("web");
  e.amount = 10.0;
  return e;
}

class SourceOffsetTest : public StoreFixture {
 protected:
  static std::optional<std::int64_t> offset(const Store& store, const std::string& topic, std::int32_t partition) {
    auto r = store.source_offset(topic, partition);
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.message());
    return r.ok() ? *r : std::nullopt;
  }
};

TEST_F(SourceOffsetTest, StoredWithTheBatchAndKeptAcrossReopen) {
  const StoreOptions o = options();
  {
    auto store = open_ok(o);
    EXPECT_EQ(offset(*store, "events", 2), std::nullopt);
    std::vector<Event> events = {purchase("c1", "e1"), purchase("c2", "e2")};
    std::vector<EventOutcome> outcomes;
    const std::vector<SourceOffset> sources = {{"events", 2, 17}};
    ASSERT_TRUE(store->apply_batch(events, ApplyConfig{}, outcomes, {}, sources).ok());
    EXPECT_EQ(offset(*store, "events", 2), 17);
    EXPECT_EQ(offset(*store, "events", 1), std::nullopt);
    EXPECT_EQ(offset(*store, "other", 2), std::nullopt);
    // A batch of duplicates only (a replay after a crash) still moves the offset.
    ASSERT_TRUE(
        store->apply_batch(events, ApplyConfig{}, outcomes, {}, std::vector<SourceOffset>{{"events", 2, 19}}).ok());
    EXPECT_EQ(outcomes, (std::vector<EventOutcome>{EventOutcome::kDuplicate, EventOutcome::kDuplicate}));
    EXPECT_EQ(offset(*store, "events", 2), 19);
  }
  auto store = open_ok(o);
  EXPECT_EQ(offset(*store, "events", 2), 19);
}

TEST_F(SourceOffsetTest, ABatchOfOnlyAnOffsetIsStored) {
  auto store = open_ok(options());
  std::vector<EventOutcome> outcomes;
  ASSERT_TRUE(store->apply_batch({}, ApplyConfig{}, outcomes, {}, std::vector<SourceOffset>{{"events", 0, 5}}).ok());
  EXPECT_EQ(offset(*store, "events", 0), 5);
}

TEST_F(SourceOffsetTest, ABadOffsetFailsTheBatchAndStoresNothing) {
  auto store = open_ok(options());
  std::vector<Event> events = {purchase("c1", "e1")};
  std::vector<EventOutcome> outcomes;
  const Status s = store->apply_batch(events, ApplyConfig{}, outcomes, {}, std::vector<SourceOffset>{{"", 0, 5}});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("source offset needs a topic"), std::string::npos) << s.message();
  EXPECT_EQ(store->stats().events, 0u);
  const Status negative =
      store->apply_batch(events, ApplyConfig{}, outcomes, {}, std::vector<SourceOffset>{{"events", 0, -1}});
  EXPECT_FALSE(negative.ok());
  EXPECT_EQ(offset(*store, "events", 0), std::nullopt);
}

}  // namespace
}  // namespace rapport
