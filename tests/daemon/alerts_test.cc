// daemon/alerts.h: the outbox record round trip, and the observer over a real Store: filters checked
// before any score is computed, threshold crossing with real scores, the record's fields.
#include "daemon/alerts.h"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>

#include "storage/store.h"
#include "tests/support/temp_dir.h"

namespace rapport {
namespace {

constexpr std::int64_t kNow = 1'800'000'000'000;

TEST(AlertRecordTest, RoundTripsAndRefusesCorruptBytes) {
  AlertMessage m;
  m.alert = "a";
  m.customer_id = "c\nx";
  m.event_id = "e1";
  m.at_ms = kNow;
  m.customer_json = R"({"customer_id":"c"})";  // not stored: rendered at delivery
  AlertMessage back;
  ASSERT_TRUE(decode_alert_record(encode_alert_record(m), back).ok());
  EXPECT_EQ(back.alert, m.alert);
  EXPECT_EQ(back.customer_id, m.customer_id);
  EXPECT_EQ(back.event_id, m.event_id);
  EXPECT_EQ(back.at_ms, m.at_ms);
  EXPECT_EQ(back.customer_json, "");
  m.event_id.reset();
  ASSERT_TRUE(decode_alert_record(encode_alert_record(m), back).ok());
  EXPECT_FALSE(back.event_id.has_value());
  const std::string bytes = encode_alert_record(m);
  EXPECT_FALSE(decode_alert_record(bytes.substr(0, bytes.size() - 1), back).ok());
  EXPECT_FALSE(decode_alert_record(bytes + "x", back).ok());
  EXPECT_FALSE(decode_alert_record("\x07" + bytes.substr(1), back).ok());
  EXPECT_FALSE(decode_alert_record("", back).ok());
  EXPECT_EQ(back.id, "");  // no id stored: the delivery uses "<partition>-<sequence>"
}

// rapportctl migrate stores the id an entry was first delivered under; a record without one decodes to "".
TEST(AlertRecordTest, CarriesTheOriginalDeliveryId) {
  AlertMessage m;
  m.alert = "a";
  m.customer_id = "c";
  m.at_ms = kNow;
  AlertMessage back;
  ASSERT_TRUE(decode_alert_record(encode_alert_record(m), back).ok());
  EXPECT_EQ(back.id, "");
  const std::string plain = encode_alert_record(m);
  m.id = "3-17";
  const std::string carried = encode_alert_record(m);
  ASSERT_TRUE(decode_alert_record(carried, back).ok());
  EXPECT_EQ(back.id, "3-17");
  EXPECT_EQ(back.customer_id, "c");
  ASSERT_TRUE(decode_alert_record(plain, back).ok());  // a reused message does not keep the previous id
  EXPECT_EQ(back.id, "");
  // An empty carried id, a truncated one or bytes after it are corrupt.
  EXPECT_FALSE(decode_alert_record(plain + std::string(4, '\0'), back).ok());
  EXPECT_FALSE(decode_alert_record(carried.substr(0, carried.size() - 1), back).ok());
  EXPECT_FALSE(decode_alert_record(carried + "x", back).ok());
}

Event complaint(const std::string& id, std::string_view channel = "email") {
  Event e;
  e.customer_id.assign("c1");
  e.event_id.assign(id);
  e.ts_ms = kNow - 1000;
  e.type = EventType::kComplaint;
  e.channel.assign(channel);
  return e;
}

AlertRule rule(const std::string& name) {
  AlertRule r;
  r.name = name;
  r.url = "http://127.0.0.1:1/x";
  r.secret = "s";
  return r;
}

TEST(AlertObserverTest, FiresOnCrossingAndOnFilters) {
  test::TempDir dir;
  StoreOptions o;
  o.directory = dir.file("db");
  o.durability = Durability::kAsync;
  o.initial_map_bytes = 1 << 20;
  auto store = Store::open(o);
  ASSERT_TRUE(store.ok()) << store.message();
  Alerts alerts([] { return kNow; });
  AlertRule below = rule("below-45");
  below.satisfaction_below = 45;
  AlertRule twitter = rule("twitter");
  twitter.channels = {"twitter"};
  alerts.set_rules({below, twitter}, EvaluateConfig{}, ValueConfig{});
  (*store)->set_outbox_observer(alerts.make_observer());
  std::vector<EventOutcome> outcomes;
  ASSERT_TRUE((*store)
                  ->apply_batch(std::vector<Event>{complaint("e1"), complaint("e2"), complaint("e3", "twitter")},
                                ApplyConfig{}, outcomes)
                  .ok());
  auto entries = (*store)->outbox(OutboxArea::kPending, 0, 10);
  ASSERT_TRUE(entries.ok());
  std::vector<std::string> fired;
  for (const OutboxEntry& e : *entries) {
    AlertMessage m;
    ASSERT_TRUE(decode_alert_record(e.payload, m).ok());
    fired.push_back(m.alert + ":" + m.event_id.value_or("-"));
    EXPECT_EQ(m.at_ms, kNow);
    EXPECT_EQ(m.customer_id, "c1");
  }
  // e1 crosses 45; e2 keeps it below (no repeat); e3 matches the channel filter.
  EXPECT_EQ(fired, (std::vector<std::string>{"below-45:e1", "twitter:e3"}));

  // A reload to no matching rule: nothing more fires (the observer picks up the new rules).
  AlertRule refunds = rule("refunds");
  refunds.event_types = {EventType::kRefund};
  alerts.set_rules({refunds}, EvaluateConfig{}, ValueConfig{});
  ASSERT_TRUE((*store)->apply_batch(std::vector<Event>{complaint("e4", "twitter")}, ApplyConfig{}, outcomes).ok());
  auto after = (*store)->outbox(OutboxArea::kPending, 0, 10);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->size(), 2u);
}

ValueModel model_with_thresholds(double platinum_min_clv, double gold_min_clv) {
  ValueModel m;
  m.bgnbd = BgNbdParams{0.243, 4.414 * 7, 0.793, 2.426};
  m.gamma_gamma = GammaGammaParams{6.25, 3.74, 15.44};
  m.fitted_at_ms = kNow - 1000;
  m.as_of_ms = kNow - 1000;
  m.platinum_min_clv = platinum_min_clv;
  m.gold_min_clv = gold_min_clv;
  return m;
}

TEST(AlertTierChangeTest, FiresWhenTheNewModelMovesTheCustomer) {
  // A repeat buyer: not a lead (the last 12 months brought more than they cost).
  CustomerState state;
  for (int i = 0; i < 3; ++i) {
    Event e;
    e.customer_id.assign("t1");
    e.event_id.assign("p" + std::to_string(i));
    e.ts_ms = kNow - (100 - 30 * i) * 86'400'000LL;
    e.type = EventType::kPurchase;
    e.amount = 80;
    apply_event(state, e, ApplyConfig{});
  }
  Alerts alerts([] { return kNow; });
  AlertRule any = rule("any-move");
  any.tier_changed = true;
  AlertRule to_platinum = rule("to-platinum");
  to_platinum.tier_changed = true;
  to_platinum.tiers = {Tier::kPlatinum};
  AlertRule on_events = rule("complaints");  // not a tier-change rule: never fires at a fit
  on_events.event_types = {EventType::kComplaint};
  alerts.set_rules({any, to_platinum, on_events}, EvaluateConfig{}, ValueConfig{});
  const ValueModel platinum_for_all = model_with_thresholds(0, 0);
  const ValueModel iron_for_all = model_with_thresholds(1e12, 1e12);

  std::vector<std::string> records;
  alerts.tier_changes("t1", state, &platinum_for_all, iron_for_all, kNow, records);  // platinum -> iron
  ASSERT_EQ(records.size(), 1u);
  AlertMessage m;
  ASSERT_TRUE(decode_alert_record(records[0], m).ok());
  EXPECT_EQ(m.alert, "any-move");
  EXPECT_EQ(m.customer_id, "t1");
  EXPECT_FALSE(m.event_id.has_value());  // null in the body: a fit, not an event
  EXPECT_EQ(m.at_ms, kNow);

  records.clear();
  alerts.tier_changes("t1", state, &iron_for_all, platinum_for_all, kNow, records);  // iron -> platinum
  ASSERT_EQ(records.size(), 2u);
  ASSERT_TRUE(decode_alert_record(records[1], m).ok());
  EXPECT_EQ(m.alert, "to-platinum");

  records.clear();
  alerts.tier_changes("t1", state, &iron_for_all, iron_for_all, kNow, records);  // no move
  alerts.tier_changes("t1", state, nullptr, platinum_for_all, kNow, records);    // first fit: no previous tier
  EXPECT_TRUE(records.empty());
}

}  // namespace
}  // namespace rapport
