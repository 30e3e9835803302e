// ?explain=true of the customer JSON: every score taken apart into parts that add up to it.
#include "daemon/customer_json.h"

#include <gtest/gtest.h>
#include <simdjson.h>

#include <string>
#include <vector>

namespace rapport {
namespace {

constexpr std::int64_t kDayMs = 86'400'000;
constexpr std::int64_t kT0 = 1'700'000'000'000;

Event make(EventType type, std::int64_t ts_ms) {
  Event e;
  e.event_id.assign("e");
  e.customer_id.assign("c");
  e.ts_ms = ts_ms;
  e.type = type;
  return e;
}

CustomerState mixed_customer() {
  CustomerState state;
  ApplyConfig apply;
  std::vector<Event> events;
  Event survey = make(EventType::kSurvey, kT0);
  survey.csat = 5;
  survey.nps = 10;
  events.push_back(survey);
  Event review = make(EventType::kReview, kT0 + 3 * kDayMs);
  review.rating = 2;
  review.sentiment = -0.4;
  events.push_back(review);
  events.push_back(make(EventType::kComplaint, kT0 + 10 * kDayMs));
  for (int i = 0; i < 4; ++i) {
    Event p = make(EventType::kPurchase, kT0 + (20 + 15 * i) * kDayMs);
    p.amount = 40 + 10 * i;
    events.push_back(p);
  }
  Event refund = make(EventType::kRefund, kT0 + 70 * kDayMs);
  refund.amount = 5;
  events.push_back(refund);
  for (int i = 0; i < 12; ++i) events.push_back(make(EventType::kEngagement, kT0 + i * 6 * kDayMs));
  for (const Event& e : events) apply_event(state, e, apply);
  return state;
}

struct Rendered {
  std::string json;
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
};

void render(Rendered& r, const CustomerState& state, std::int64_t now, const EvaluateConfig& config,
            const ValueModel* model, bool explain) {
  JsonWriter w;
  write_customer_json(w, "c", state, now, config, model, ValueConfig{}, explain);
  r.json = w.take();
  ASSERT_EQ(r.parser.parse(r.json).get(r.doc), simdjson::SUCCESS) << r.json;
}

double num(const simdjson::dom::element& e, const char* pointer) {
  double v = 0;
  EXPECT_EQ(e.at_pointer(pointer).get_double().get(v), simdjson::SUCCESS) << pointer;
  return v;
}

std::string str(const simdjson::dom::element& e, const char* pointer) {
  std::string_view v;
  EXPECT_EQ(e.at_pointer(pointer).get_string().get(v), simdjson::SUCCESS) << pointer;
  return std::string(v);
}

TEST(CustomerJsonExplain, SatisfactionIsNeutralPlusTheClassContributions) {
  const CustomerState state = mixed_customer();
  EvaluateConfig config;
  config.weight_complaint = 2.5;
  const std::int64_t now = kT0 + 100 * kDayMs;
  Rendered r;
  render(r, state, now, config, nullptr, true);
  const auto& d = r.doc;
  const double score = num(d, "/satisfaction/score");
  const double confidence = num(d, "/satisfaction/confidence");
  const double prior = num(d, "/satisfaction/prior_weight");
  EXPECT_EQ(prior, config.prior_weight);
  EXPECT_EQ(num(d, "/satisfaction/neutral"), 50);
  double points = 0, weight = 0;
  int classes = 0;
  simdjson::dom::object by_class;
  ASSERT_EQ(d.at_pointer("/satisfaction/classes").get_object().get(by_class), simdjson::SUCCESS);
  for (const auto field : by_class) {
    ++classes;
    const double cw = num(field.value, "/class_weight");
    const double n = num(field.value, "/decayed_signals");
    const double mean = num(field.value, "/mean_signal");
    const double contribution = num(field.value, "/contribution");
    points += contribution;
    weight += cw * n;
    // Each class's contribution is its share of the weighted mean.
    EXPECT_NEAR(contribution, 50 * cw * n * mean / (prior + confidence), 2e-3) << field.key;
  }
  EXPECT_EQ(classes, kSignalClassCount);
  EXPECT_EQ(num(d, "/satisfaction/classes/complaint/class_weight"), 2.5);
  EXPECT_LT(num(d, "/satisfaction/classes/complaint/contribution"), 0);
  EXPECT_GT(num(d, "/satisfaction/classes/csat/contribution"), 0);
  EXPECT_EQ(num(d, "/satisfaction/classes/refund/decayed_signals") > 0, true);
  EXPECT_NEAR(50 + points, score, 1e-3);
  EXPECT_NEAR(weight, confidence, 1e-3);
  // The decay: the csat signal is 100 days old, half-life 90 days.
  EXPECT_NEAR(num(d, "/satisfaction/classes/csat/decayed_signals"), std::exp2(-100.0 / 90.0), 1e-4);
}

TEST(CustomerJsonExplain, LoyaltyContributionsAddUpAndTheBlockingComponentIsNamed) {
  const CustomerState state = mixed_customer();
  EvaluateConfig config;
  config.loyalty_weights = {0.1, 0.2, 0.3, 0.4};
  config.stage_threshold = 0.3;
  const std::int64_t now = kT0 + 80 * kDayMs;
  Rendered r;
  render(r, state, now, config, nullptr, true);
  const auto& d = r.doc;
  const char* names[] = {"cognitive", "affective", "conative", "action"};
  double points = 0;
  int first_below = -1;
  for (int i = 0; i < 4; ++i) {
    const std::string c = std::string("/loyalty/components/") + names[i];
    const std::string w = std::string("/loyalty/weights/") + names[i];
    const std::string p = std::string("/loyalty/contributions/") + names[i];
    EXPECT_EQ(num(d, w.c_str()), config.loyalty_weights[i]);
    EXPECT_NEAR(num(d, p.c_str()), 100 * config.loyalty_weights[i] * num(d, c.c_str()) / 1.0, 2e-3) << names[i];
    points += num(d, p.c_str());
    if (first_below < 0 && num(d, c.c_str()) < config.stage_threshold) first_below = i;
  }
  EXPECT_NEAR(points, num(d, "/loyalty/score"), 1e-3);
  ASSERT_GE(first_below, 0) << r.json;
  EXPECT_EQ(str(d, "/loyalty/stage"), first_below == 0 ? "none" : names[first_below - 1]);
  EXPECT_EQ(str(d, "/loyalty/next_stage"), names[first_below]);
  EXPECT_EQ(str(d, "/loyalty/blocked_by/component"), names[first_below]);
  EXPECT_EQ(num(d, "/loyalty/blocked_by/threshold"), 0.3);
  EXPECT_LT(num(d, "/loyalty/blocked_by/value"), 0.3);

  // At the last stage nothing blocks.
  config.stage_threshold = 0;
  Rendered top;
  render(top, state, now, config, nullptr, true);
  EXPECT_EQ(str(top.doc, "/loyalty/stage"), "action");
  EXPECT_TRUE(top.doc.at_pointer("/loyalty/next_stage").is_null());
  EXPECT_TRUE(top.doc.at_pointer("/loyalty/blocked_by").is_null());
}

TEST(CustomerJsonExplain, ValueShowsItsInputsAndTheModelsAsOf) {
  const CustomerState state = mixed_customer();
  ValueModel model;
  model.bgnbd = {0.25, 4.0, 0.8, 2.5};
  model.gamma_gamma = {6.0, 4.0, 15.0};
  model.fitted_at_ms = kT0 + 120 * kDayMs;
  model.as_of_ms = kT0 + 90 * kDayMs;
  const std::int64_t now = kT0 + 100 * kDayMs;
  Rendered r;
  render(r, state, now, EvaluateConfig{}, &model, true);
  const auto& d = r.doc;
  // Purchases on days 20, 35, 50, 65 after kT0; T measured at now (day 100).
  EXPECT_EQ(num(d, "/value/model_inputs/x"), 3);
  EXPECT_EQ(num(d, "/value/model_inputs/t_x_days"), 45);
  EXPECT_EQ(num(d, "/value/model_inputs/T_days"), 80);
  EXPECT_EQ(num(d, "/value/model_inputs/mean_repeat_spend"), (50 + 60 + 70) / 3.0);
  EXPECT_EQ(str(d, "/value/model_inputs/measured_at"), format_rfc3339(now));
  EXPECT_EQ(str(d, "/value/model/as_of"), format_rfc3339(model.as_of_ms));
  EXPECT_EQ(str(d, "/value/model/fitted_at"), format_rfc3339(model.fitted_at_ms));
  EXPECT_GT(num(d, "/value/clv"), 0);
}

TEST(CustomerJsonExplain, WithoutExplainNoneOfTheParts) {
  Rendered r;
  render(r, mixed_customer(), kT0 + 100 * kDayMs, EvaluateConfig{}, nullptr, false);
  for (const char* pointer :
       {"/satisfaction/classes", "/loyalty/components", "/loyalty/weights", "/loyalty/contributions",
        "/loyalty/blocked_by", "/value/model_inputs", "/evaluated_at"}) {
    EXPECT_EQ(r.doc.at_pointer(pointer).error(), simdjson::NO_SUCH_FIELD) << pointer << " in " << r.json;
  }
}

}  // namespace
}  // namespace rapport
