#include "scoring/customer_state.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace rapport {
namespace {

constexpr std::int64_t kDay = 86'400'000;
constexpr std::int64_t kT0 = 20'000 * kDay;  // 2024-10-04, a day boundary

Event make(EventType type, std::int64_t ts_ms, std::string_view id = "e") {
  Event e;
  e.event_id.assign(id);
  e.customer_id.assign("c-1");
  e.type = type;
  e.ts_ms = ts_ms;
  return e;
}

Event purchase(std::int64_t ts_ms, double amount) {
  Event e = make(EventType::kPurchase, ts_ms);
  e.amount = amount;
  return e;
}

Event survey_csat(std::int64_t ts_ms, double csat) {
  Event e = make(EventType::kSurvey, ts_ms);
  e.csat = csat;
  return e;
}

CustomerState apply_all(const std::vector<Event>& events, const ApplyConfig& config = {}) {
  CustomerState s;
  for (const Event& e : events) apply_event(s, e, config);
  return s;
}

TEST(CustomerState, EmptyStateIsNeutral) {
  const Scores sc = evaluate(CustomerState{}, kT0, {});
  EXPECT_EQ(sc.satisfaction, 50.0);
  EXPECT_EQ(sc.satisfaction_confidence, 0.0);
  EXPECT_EQ(sc.loyalty, 0.0);
  EXPECT_EQ(sc.stage, LoyaltyStage::kNone);
  EXPECT_EQ(sc.events, 0u);
}

TEST(CustomerState, CountsAndTimes) {
  const CustomerState s = apply_all({purchase(kT0 + 5000, 10), make(EventType::kSocial, kT0 + 1000),
                                     make(EventType::kSocial, kT0 + 9000)});
  EXPECT_EQ(s.event_count, 3u);
  EXPECT_EQ(s.type_counts[static_cast<int>(EventType::kSocial)], 2u);
  EXPECT_EQ(s.type_counts[static_cast<int>(EventType::kPurchase)], 1u);
  EXPECT_EQ(s.first_seen_ms, kT0 + 1000);
  EXPECT_EQ(s.last_seen_ms, kT0 + 9000);
}

TEST(CustomerState, OneSignalIsShrunkByThePrior) {
  const CustomerState s = apply_all({survey_csat(kT0, 5)});
  const Scores sc = evaluate(s, kT0, {});
  // csat 5 maps to +1; with prior weight 2: 50 + 50 * 1 / (2 + 1).
  EXPECT_NEAR(sc.satisfaction, 50.0 + 50.0 / 3.0, 1e-9);
  EXPECT_NEAR(sc.satisfaction_confidence, 1.0, 1e-12);
  EvaluateConfig no_prior;
  no_prior.prior_weight = 0;
  EXPECT_NEAR(evaluate(s, kT0, no_prior).satisfaction, 100.0, 1e-9);
}

TEST(CustomerState, SignalScalesMapLinearly) {
  Event nps = make(EventType::kSurvey, kT0);
  nps.nps = 0;
  Event review = make(EventType::kReview, kT0, "r");
  review.rating = 3;
  EvaluateConfig cfg;
  cfg.prior_weight = 0;
  EXPECT_NEAR(evaluate(apply_all({nps}), kT0, cfg).satisfaction, 0.0, 1e-9);
  EXPECT_NEAR(evaluate(apply_all({review}), kT0, cfg).satisfaction, 50.0, 1e-9);
  EXPECT_NEAR(evaluate(apply_all({make(EventType::kRefund, kT0)}), kT0, cfg).satisfaction, 25.0, 1e-9);
  EXPECT_NEAR(evaluate(apply_all({make(EventType::kComplaint, kT0)}), kT0, cfg).satisfaction, 0.0, 1e-9);
  Event sentiment = make(EventType::kSocial, kT0);
  sentiment.sentiment = 0.5;
  EXPECT_NEAR(evaluate(apply_all({sentiment}), kT0, cfg).satisfaction, 75.0, 1e-9);
}

TEST(CustomerState, SignalsDecayWithTheHalfLife) {
  const CustomerState s = apply_all({survey_csat(kT0, 5)});
  const Scores later = evaluate(s, kT0 + 90 * kDay, {});
  EXPECT_NEAR(later.satisfaction_confidence, 0.5, 1e-9);
  EXPECT_NEAR(later.satisfaction, 50.0 + 50.0 * 0.5 / 2.5, 1e-9);
  // An old signal weighs half of a new one: csat 1 (-1) 90 days before csat 5 (+1).
  const CustomerState mixed = apply_all({survey_csat(kT0 + 90 * kDay, 5), survey_csat(kT0, 1)});
  EvaluateConfig cfg;
  cfg.prior_weight = 0;
  EXPECT_NEAR(evaluate(mixed, kT0 + 90 * kDay, cfg).satisfaction, 50.0 + 50.0 * (1 - 0.5) / 1.5, 1e-9);
}

TEST(CustomerState, ClassWeightsApplyAtEvaluationWithoutReprocessing) {
  const CustomerState s = apply_all({survey_csat(kT0, 5), make(EventType::kComplaint, kT0, "c")});
  EvaluateConfig cfg;
  cfg.prior_weight = 0;
  cfg.weight_complaint = 1.0;
  EXPECT_NEAR(evaluate(s, kT0, cfg).satisfaction, 50.0, 1e-9);
  cfg.weight_complaint = 0.0;
  EXPECT_NEAR(evaluate(s, kT0, cfg).satisfaction, 100.0, 1e-9);
  cfg.weight_complaint = 3.0;
  EXPECT_NEAR(evaluate(s, kT0, cfg).satisfaction, 50.0 + 50.0 * (1 - 3) / 4.0, 1e-9);
}

TEST(CustomerState, SameDayPurchasesAreOneTransaction) {
  const CustomerState s =
      apply_all({purchase(kT0 + 1000, 10), purchase(kT0 + 5000, 5), purchase(kT0 + 10 * kDay, 20),
                 purchase(kT0 + 30 * kDay + 7, 40)});
  const Scores sc = evaluate(s, kT0 + 40 * kDay + 3, {});
  EXPECT_EQ(sc.transactions, 3u);
  EXPECT_EQ(sc.x, 2.0);
  EXPECT_EQ(sc.t_x_days, 30.0);
  EXPECT_EQ(sc.T_days, 40.0);
  EXPECT_DOUBLE_EQ(sc.mean_repeat_spend, 30.0);  // (20 + 40) / 2: the first day is not a repeat
  EXPECT_DOUBLE_EQ(sc.revenue, 75.0);
}

TEST(CustomerState, MoneyIsExactAndTwelveMonthsIsAWindow) {
  ApplyConfig cfg;
  cfg.default_cost[static_cast<int>(Channel::kPhone)] = 4.5;
  Event refund = make(EventType::kRefund, kT0 + 400 * kDay, "r");
  refund.amount = 0.3;
  Event call = make(EventType::kSupport, kT0 + 401 * kDay, "s");
  call.channel.assign("phone");
  Event chat = make(EventType::kSupport, kT0 + 10 * kDay, "t");  // old, no default cost for "other"
  chat.cost = 2.25;
  std::vector<Event> events = {purchase(kT0, 0.1), purchase(kT0 + 1, 0.2), purchase(kT0 + 380 * kDay, 100),
                               refund, call, chat};
  const Scores sc = evaluate(apply_all(events, cfg), kT0 + 402 * kDay, {});
  EXPECT_DOUBLE_EQ(sc.revenue, 100.0);  // 0.1 + 0.2 + 100 - 0.3, exact in money units
  EXPECT_DOUBLE_EQ(sc.cost_to_serve, 6.75);
  EXPECT_DOUBLE_EQ(sc.profit, 93.25);
  EXPECT_DOUBLE_EQ(sc.revenue_12m, 99.7);
  EXPECT_DOUBLE_EQ(sc.cost_12m, 4.5);
  EXPECT_DOUBLE_EQ(sc.profit_12m, 95.2);
}

TEST(CustomerState, UnprofitableCustomerHasNegativeTwelveMonthProfit) {
  ApplyConfig cfg;
  cfg.default_cost[static_cast<int>(Channel::kPhone)] = 8;
  Event call = make(EventType::kComplaint, kT0 + kDay, "s");
  call.channel.assign("phone");
  const Scores sc = evaluate(apply_all({purchase(kT0, 5), call}, cfg), kT0 + 2 * kDay, {});
  EXPECT_DOUBLE_EQ(sc.profit_12m, -3.0);
}

TEST(CustomerState, LoyaltyStagesAreReachedInSequence) {
  // Only engagement: cognitive.
  std::vector<Event> events;
  for (int i = 0; i < 5; ++i) events.push_back(make(EventType::kEngagement, kT0 + i * 1000));
  Scores sc = evaluate(apply_all(events), kT0 + 5000, {});
  EXPECT_EQ(sc.stage, LoyaltyStage::kCognitive);
  EXPECT_GT(sc.loyalty_cognitive, 0.5);
  EXPECT_EQ(sc.loyalty_affective, 0.0);

  // Positive feelings: affective.
  for (int i = 0; i < 4; ++i) events.push_back(survey_csat(kT0 + 10'000 + i, 5));
  sc = evaluate(apply_all(events), kT0 + 20'000, {});
  EXPECT_EQ(sc.stage, LoyaltyStage::kAffective);

  // Repeat purchases without intention do not skip the conative stage.
  for (int i = 0; i < 6; ++i) events.push_back(purchase(kT0 + i * 7 * kDay, 10));
  sc = evaluate(apply_all(events), kT0 + 36 * kDay, {});
  EXPECT_GT(sc.loyalty_action, 0.5);
  EXPECT_EQ(sc.stage, LoyaltyStage::kAffective);

  // Promoters and referrals: conative, then action.
  Event promoter = make(EventType::kSurvey, kT0 + 35 * kDay, "p");
  promoter.nps = 10;
  events.push_back(promoter);
  events.push_back(make(EventType::kReferral, kT0 + 35 * kDay, "r"));
  events.push_back(make(EventType::kRenewal, kT0 + 35 * kDay, "n"));
  sc = evaluate(apply_all(events), kT0 + 36 * kDay, {});
  EXPECT_EQ(sc.stage, LoyaltyStage::kAction);
  EXPECT_GT(sc.loyalty, 50.0);
  EXPECT_NEAR(sc.loyalty_behavioural, sc.loyalty_action, 0);
  EXPECT_NEAR(sc.loyalty_attitudinal, (sc.loyalty_cognitive + sc.loyalty_affective + sc.loyalty_conative) / 3, 1e-12);

  // Cancellations undo intention.
  for (int i = 0; i < 5; ++i) events.push_back(make(EventType::kCancellation, kT0 + 35 * kDay + i, "x"));
  EXPECT_EQ(evaluate(apply_all(events), kT0 + 36 * kDay, {}).loyalty_conative, 0.0);
}

TEST(CustomerState, ActionFadesWhenPurchasingStops) {
  std::vector<Event> events;
  for (int i = 0; i < 6; ++i) events.push_back(purchase(kT0 + i * 7 * kDay, 10));
  const CustomerState s = apply_all(events);
  const double active = evaluate(s, kT0 + 36 * kDay, {}).loyalty_action;
  const double lapsed = evaluate(s, kT0 + 300 * kDay, {}).loyalty_action;
  EXPECT_GT(active, 0.5);
  EXPECT_LT(lapsed, 0.15);
  EXPECT_EQ(evaluate(s, kT0 + 400 * kDay, {}).loyalty_action, 0.0);  // no repeat purchase in 12 months
}

// Random events of every kind over two years, some sharing days, some very late.
std::vector<Event> random_events(std::mt19937_64& rng, int n) {
  std::vector<Event> events;
  std::uniform_int_distribution<std::int64_t> ts(kT0, kT0 + 730 * kDay);
  std::uniform_int_distribution<int> type(0, kEventTypeCount - 1);
  std::uniform_real_distribution<double> unit(0, 1);
  const char* channels[] = {"web", "phone", "chat", "store", "carrier-pigeon", ""};
  for (int i = 0; i < n; ++i) {
    Event e = make(static_cast<EventType>(type(rng)), ts(rng), "e-" + std::to_string(i));
    e.channel.assign(channels[i % 6]);
    if (e.type == EventType::kPurchase || e.type == EventType::kRefund || unit(rng) < 0.1) {
      e.amount = std::round(unit(rng) * 100000) / 100;
    }
    if (unit(rng) < 0.3) e.sentiment = unit(rng) * 2 - 1;
    if (e.type == EventType::kSurvey) e.csat = 1 + 4 * unit(rng);
    if (unit(rng) < 0.2) e.nps = std::floor(unit(rng) * 11);
    if (e.type == EventType::kReview) e.rating = 1 + std::floor(unit(rng) * 5);
    if (unit(rng) < 0.2) e.cost = std::round(unit(rng) * 1000) / 100;
    events.push_back(e);
  }
  return events;
}

void expect_same_scores(const Scores& a, const Scores& b) {
  EXPECT_NEAR(a.satisfaction, b.satisfaction, 1e-9);
  EXPECT_NEAR(a.satisfaction_confidence, b.satisfaction_confidence, 1e-9);
  EXPECT_NEAR(a.loyalty, b.loyalty, 1e-9);
  EXPECT_EQ(a.stage, b.stage);
  // Money and transaction counts are exact whatever the order.
  EXPECT_EQ(a.revenue, b.revenue);
  EXPECT_EQ(a.cost_to_serve, b.cost_to_serve);
  EXPECT_EQ(a.profit_12m, b.profit_12m);
  EXPECT_EQ(a.transactions, b.transactions);
  EXPECT_EQ(a.x, b.x);
  EXPECT_EQ(a.t_x_days, b.t_x_days);
  EXPECT_EQ(a.T_days, b.T_days);
  EXPECT_EQ(a.mean_repeat_spend, b.mean_repeat_spend);
  EXPECT_EQ(a.events, b.events);
  EXPECT_EQ(a.first_seen_ms, b.first_seen_ms);
  EXPECT_EQ(a.last_seen_ms, b.last_seen_ms);
}

TEST(CustomerState, OrderIndependentOverRandomPermutationsWithLateAndDuplicateEvents) {
  std::mt19937_64 rng(20261128);
  ApplyConfig cfg;
  cfg.default_cost[static_cast<int>(Channel::kPhone)] = 3.5;
  for (int round = 0; round < 50; ++round) {
    const std::vector<Event> events = random_events(rng, 200);
    const std::int64_t now = kT0 + 731 * kDay;
    const Scores reference = evaluate(apply_all(events, cfg), now, {});
    // Replays: every event again (duplicates), shuffled; duplicates are dropped by
    // event id before apply_event, as the store does.
    std::vector<Event> arrival = events;
    arrival.insert(arrival.end(), events.begin(), events.begin() + 50);
    std::shuffle(arrival.begin(), arrival.end(), rng);
    CustomerState s;
    std::set<std::string> seen;
    for (const Event& e : arrival) {
      if (seen.insert(std::string(e.event_id.view())).second) apply_event(s, e, cfg);
    }
    SCOPED_TRACE(round);
    expect_same_scores(reference, evaluate(s, now, {}));
    expect_same_scores(reference, evaluate(s, now, {}));
  }
}

TEST(CustomerState, SerializationRoundTripsExactly) {
  std::mt19937_64 rng(7);
  const CustomerState s = apply_all(random_events(rng, 300));
  const std::string bytes = serialize(s);
  EXPECT_EQ(static_cast<std::uint8_t>(bytes[0]), CustomerState::kFormatVersion);
  CustomerState back;
  ASSERT_TRUE(deserialize(bytes, back).ok());
  EXPECT_EQ(back, s);
  std::string reused(1000, 'x');
  serialize_into(s, reused);
  EXPECT_EQ(reused, bytes);
}

TEST(CustomerState, DeserializeRejectsBadRecords) {
  const std::string bytes = serialize(apply_all({purchase(kT0, 3)}));
  CustomerState out;
  EXPECT_NE(deserialize("", out).message().find("empty"), std::string::npos);
  std::string wrong = bytes;
  wrong[0] = 99;
  const Status version = deserialize(wrong, out);
  ASSERT_FALSE(version.ok());
  EXPECT_NE(version.message().find("format version 99"), std::string::npos);
  for (std::size_t cut = 1; cut < bytes.size(); ++cut) {
    EXPECT_FALSE(deserialize(std::string_view(bytes).substr(0, cut), out).ok()) << cut;
  }
  EXPECT_FALSE(deserialize(bytes + "z", out).ok());
  // A corrupt day count does not allocate absurd amounts.
  std::string huge = serialize(CustomerState{});
  std::fill(huge.end() - 4, huge.end(), '\xff');
  EXPECT_FALSE(deserialize(huge, out).ok());
}

TEST(CustomerState, StageNames) {
  EXPECT_EQ(loyalty_stage_name(LoyaltyStage::kNone), "none");
  EXPECT_EQ(loyalty_stage_name(LoyaltyStage::kConative), "conative");
  EXPECT_EQ(loyalty_stage_name(LoyaltyStage::kAction), "action");
}

}  // namespace
}  // namespace rapport
