#include "scoring/value_model.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "scoring/customer_state.h"

namespace rapport {
namespace {

const std::string kCdnow = RAPPORT_CDNOW_DIR;

// The published per-customer summary: x, t_x, T (weeks), mean repeat spend.
std::vector<PurchaseSummary> load_summary() {
  std::ifstream in(kCdnow + "/cdnow_customers_summary_with_transactions.csv");
  std::vector<PurchaseSummary> out;
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::stringstream ss(line);
    std::string id, x, tx, T, zbar;
    std::getline(ss, id, ',');
    std::getline(ss, x, ',');
    std::getline(ss, tx, ',');
    std::getline(ss, T, ',');
    std::getline(ss, zbar, ',');
    out.push_back({std::stod(x), std::stod(tx), std::stod(T), std::stod(zbar)});
  }
  return out;
}

const BgNbdParams kPublished{0.243, 4.414, 0.793, 2.426};

TEST(ValueModel, CdnowSummaryIsAvailable) {
  const auto data = load_summary();
  ASSERT_EQ(data.size(), 2357u) << "CDNOW data missing under " << kCdnow;
}

TEST(ValueModel, PublishedLogLikelihood) {
  const auto data = load_summary();
  EXPECT_NEAR(bgnbd_log_likelihood(kPublished, data), -9582.4, 0.5);
}

TEST(ValueModel, FitReproducesPublishedBgNbdEstimates) {
  const auto data = load_summary();
  const auto fit = fit_bgnbd(data);
  ASSERT_TRUE(fit.ok()) << fit.message();
  EXPECT_NEAR(fit->params.r, 0.243, 0.002);
  EXPECT_NEAR(fit->params.alpha, 4.414, 0.02);
  EXPECT_NEAR(fit->params.a, 0.793, 0.005);
  EXPECT_NEAR(fit->params.b, 2.426, 0.02);
  EXPECT_NEAR(fit->log_likelihood, -9582.4, 0.1);
  EXPECT_TRUE(fit->converged);
  EXPECT_GT(fit->iterations, 0);
  EXPECT_EQ(fit->customers, 2357u);
}

TEST(ValueModel, FitReproducesPublishedGammaGammaEstimates) {
  const auto data = load_summary();
  const auto fit = fit_gamma_gamma(data);
  ASSERT_TRUE(fit.ok()) << fit.message();
  EXPECT_NEAR(fit->params.p, 6.25, 0.02);
  EXPECT_NEAR(fit->params.q, 3.74, 0.02);
  EXPECT_NEAR(fit->params.gamma, 15.44, 0.1);
  EXPECT_TRUE(fit->converged);
  EXPECT_EQ(fit->customers, 946u);
}

TEST(ValueModel, ConditionalExpectationOfThePaper) {
  const PurchaseSummary c{2, 30.43, 38.86, 0};
  EXPECT_NEAR(expected_transactions(kPublished, c, 39), 1.226, 0.001);
  EXPECT_EQ(expected_transactions(kPublished, c, 0), 0.0);
  // More recent activity means more expected transactions and a higher P(alive).
  const PurchaseSummary recent{2, 38.0, 38.86, 0};
  EXPECT_GT(expected_transactions(kPublished, recent, 39), expected_transactions(kPublished, c, 39));
  EXPECT_GT(probability_alive(kPublished, recent), probability_alive(kPublished, c));
  EXPECT_EQ(probability_alive(kPublished, {0, 0, 38.86, 0}), 1.0);
  const double p = probability_alive(kPublished, {2, 5, 38.86, 0});
  EXPECT_GT(p, 0.0);
  EXPECT_LT(p, 0.5);
}

TEST(ValueModel, ExpectedSpendShrinksTowardsThePopulationMean) {
  const GammaGammaParams g{6.25, 3.74, 15.44};
  const double population = 6.25 * 15.44 / (3.74 - 1);
  EXPECT_NEAR(expected_spend(g, {0, 0, 10, 0}), population, 1e-9);
  const double one = expected_spend(g, {1, 1, 10, 100});
  const double many = expected_spend(g, {20, 1, 10, 100});
  EXPECT_GT(one, population);
  EXPECT_LT(one, many);
  EXPECT_LT(many, 100.0);
}

// The same summary computed by Rapport's own scoring state from the raw purchase log.
TEST(ValueModel, CustomerStateReproducesTheCdnowSummary) {
  std::ifstream in(kCdnow + "/CDNOW_sample.txt");
  ASSERT_TRUE(in) << "CDNOW data missing under " << kCdnow;
  const std::int64_t calibration_end_ms = 875'577'600'000;  // 1997-09-30T00:00:00Z
  std::map<int, CustomerState> states;
  std::string master, sample, date, cds, dollars;
  int line_no = 0;
  while (in >> master >> sample >> date >> cds >> dollars) {
    std::tm tm{};
    tm.tm_year = std::stoi(date.substr(0, 4)) - 1900;
    tm.tm_mon = std::stoi(date.substr(4, 2)) - 1;
    tm.tm_mday = std::stoi(date.substr(6, 2));
    const std::int64_t ts = static_cast<std::int64_t>(timegm(&tm)) * 1000;
    CustomerState& s = states[std::stoi(sample)];
    if (ts > calibration_end_ms) continue;
    Event e;
    e.event_id.assign(std::to_string(++line_no));
    e.customer_id.assign(sample);
    e.type = EventType::kPurchase;
    e.ts_ms = ts;
    e.amount = std::stod(dollars);
    apply_event(s, e, {});
  }
  const auto published = load_summary();
  ASSERT_EQ(states.size(), published.size());
  int i = 0;
  for (const auto& [id, state] : states) {
    const Scores sc = evaluate(state, calibration_end_ms, {});
    const PurchaseSummary& want = published[i++];
    SCOPED_TRACE(id);
    EXPECT_EQ(sc.x, want.x);
    EXPECT_NEAR(sc.t_x_days / 7, want.t_x, 0.006);
    EXPECT_NEAR(sc.T_days / 7, want.T, 0.006);
    EXPECT_NEAR(sc.mean_repeat_spend, want.mean_spend, 0.006);
  }
}

TEST(ValueModel, FitRefusesDataThatCannotIdentifyTheModel) {
  std::vector<PurchaseSummary> few(5, PurchaseSummary{1, 1, 2, 10});
  const auto fit = fit_bgnbd(few);
  ASSERT_FALSE(fit.ok());
  EXPECT_NE(fit.message().find("need at least"), std::string::npos);
  EXPECT_TRUE(fit.status().not_ready()) << "too little data is 'not ready', not a failure";
  std::vector<PurchaseSummary> no_repeat(100, PurchaseSummary{0, 0, 30, 0});
  EXPECT_TRUE(fit_bgnbd(no_repeat).status().not_ready());
  EXPECT_TRUE(fit_gamma_gamma(no_repeat).status().not_ready());
}

TEST(ValueModel, FitReadinessCountsWhatTheFitsNeed) {
  std::vector<PurchaseSummary> customers(9, PurchaseSummary{0, 0, 30, 0});
  customers.push_back(PurchaseSummary{2, 10, 30, 15});
  customers.push_back(PurchaseSummary{1, 5, 30, 0});             // repeat, no spend
  customers.push_back(PurchaseSummary{std::nan(""), 0, 30, 0});  // invalid: skipped
  customers.push_back(PurchaseSummary{0.5, 1, 30, 5});           // fractional x: skipped
  FitReadiness r = fit_readiness(customers);
  EXPECT_EQ(r.customers, 11u);
  EXPECT_EQ(r.repeaters, 2u);
  EXPECT_EQ(r.repeaters_with_spend, 1u);
  EXPECT_FALSE(r.ready());
  EXPECT_TRUE(fit_gamma_gamma(customers).status().not_ready());
  customers.push_back(PurchaseSummary{3, 20, 30, 40});
  r = fit_readiness(customers);
  EXPECT_TRUE(r.ready());
  // Ready data fits, or fails as a real error, never as 'not ready'.
  const auto bgnbd = fit_bgnbd(customers);
  EXPECT_TRUE(bgnbd.ok() || !bgnbd.status().not_ready());
  const auto gg = fit_gamma_gamma(customers);
  EXPECT_TRUE(gg.ok() || !gg.status().not_ready());
}

TEST(ValueModel, TiersFollowTheConfiguredShares) {
  ValueModel model;
  model.fitted_at_ms = 1;
  ValueConfig cfg;
  std::vector<double> clvs;
  for (int i = 1; i <= 100; ++i) clvs.push_back(i);
  set_tier_thresholds(model, cfg, clvs);
  EXPECT_EQ(model.platinum_min_clv, 96.0);
  EXPECT_EQ(model.gold_min_clv, 81.0);
  int count[kTierCount] = {};
  for (int i = 1; i <= 100; ++i) ++count[static_cast<int>(classify_tier(&model, i, 1.0))];
  EXPECT_EQ(count[static_cast<int>(Tier::kPlatinum)], 5);
  EXPECT_EQ(count[static_cast<int>(Tier::kGold)], 15);
  EXPECT_EQ(count[static_cast<int>(Tier::kIron)], 80);
  EXPECT_EQ(classify_tier(&model, 1000, -0.01), Tier::kLead);
  EXPECT_EQ(classify_tier(nullptr, 1000, 5), Tier::kUnranked);
  EXPECT_EQ(classify_tier(nullptr, 1000, -5), Tier::kLead);
  Tier t;
  ASSERT_TRUE(parse_tier("gold", t));
  EXPECT_EQ(t, Tier::kGold);
  EXPECT_FALSE(parse_tier("bronze", t));
}

TEST(ValueModel, CustomerValueCombinesBothModels) {
  ValueModel model;
  model.fitted_at_ms = 1;
  model.bgnbd = {0.243, 4.414 * 7, 0.793, 2.426};  // alpha in days
  model.gamma_gamma = {6.25, 3.74, 15.44};
  ValueConfig cfg;
  cfg.horizon_days = 39 * 7;
  cfg.margin = 0.5;
  cfg.annual_discount_rate = 0;
  const CustomerValue v = customer_value(model, cfg, {2, 30.43 * 7, 38.86 * 7, 20});
  EXPECT_NEAR(v.expected_transactions, 1.226, 0.001);  // the time unit cancels out
  EXPECT_NEAR(v.churn_risk, 1 - v.p_alive, 1e-12);
  EXPECT_NEAR(v.clv, 0.5 * v.expected_transactions * v.expected_spend, 1e-9);
  EXPECT_EQ(customer_value(ValueModel{}, cfg, {2, 1, 2, 3}).clv, 0.0);  // no model yet
  // Discounting lowers CLV, by less than discounting everything by the full horizon.
  cfg.annual_discount_rate = 0.2;
  const double discounted = customer_value(model, cfg, {2, 30.43 * 7, 38.86 * 7, 20}).clv;
  EXPECT_LT(discounted, v.clv);
  EXPECT_GT(discounted, v.clv * std::pow(1.2, -39.0 * 7 / 365));
}

TEST(ValueModel, SerializationRoundTrips) {
  ValueModel m;
  m.bgnbd = kPublished;
  m.gamma_gamma = {6.25, 3.74, 15.44};
  m.fitted_at_ms = 123;
  m.customers = 2357;
  m.gold_min_clv = 4.5;
  ValueModel back;
  ASSERT_TRUE(deserialize(serialize(m), back).ok());
  EXPECT_EQ(back.bgnbd.alpha, m.bgnbd.alpha);
  EXPECT_EQ(back.customers, 2357u);
  EXPECT_EQ(back.gold_min_clv, 4.5);
  EXPECT_FALSE(deserialize(serialize(m).substr(0, 10), back).ok());
  EXPECT_FALSE(deserialize("\x07", back).ok());
}

TEST(ValueModel, SerializationKeepsAsOfCountsAndConvergenceAndReadsVersionOne) {
  ValueModel m;
  m.bgnbd = kPublished;
  m.fitted_at_ms = 2'000;
  m.as_of_ms = 1'000;
  m.customers = 2360;
  m.bgnbd_customers = 2357;
  m.gamma_gamma_customers = 946;
  m.bgnbd_iterations = 22;
  m.gamma_gamma_iterations = 19;
  m.bgnbd_converged = true;
  m.platinum_fraction = 0.05;
  m.gold_fraction = 0.15;
  const std::string bytes = serialize(m);
  ASSERT_EQ(static_cast<std::uint8_t>(bytes[0]), 2);
  ValueModel back;
  ASSERT_TRUE(deserialize(bytes, back).ok());
  EXPECT_EQ(back.version, 2);
  EXPECT_EQ(back.as_of_ms, 1'000);
  EXPECT_EQ(back.fitted_at_ms, 2'000);
  EXPECT_EQ(back.bgnbd_customers, 2357u);
  EXPECT_EQ(back.gamma_gamma_customers, 946u);
  EXPECT_EQ(back.bgnbd_iterations, 22);
  EXPECT_EQ(back.gamma_gamma_iterations, 19);
  EXPECT_TRUE(back.bgnbd_converged);
  EXPECT_FALSE(back.gamma_gamma_converged);
  EXPECT_EQ(back.gold_fraction, 0.15);
  EXPECT_FALSE(deserialize(bytes + "x", back).ok());
  std::string bad_flag = bytes;
  bad_flag[bad_flag.size() - 2 * sizeof(double) - 2] = '\x05';  // bgnbd_converged must be 0 or 1
  EXPECT_FALSE(deserialize(bad_flag, back).ok());

  // A version-1 record (the fields up to the thresholds): as_of is its fit time, the rest unknown.
  std::string v1 = bytes.substr(0, bytes.size() - (8 + 8 + 8 + 4 + 4 + 1 + 1 + 8 + 8));
  v1[0] = '\x01';
  ValueModel old;
  ASSERT_TRUE(deserialize(v1, old).ok());
  EXPECT_EQ(old.version, 1);
  EXPECT_EQ(old.as_of_ms, 2'000);
  EXPECT_EQ(old.customers, 2360u);
  EXPECT_EQ(old.bgnbd.r, kPublished.r);
  EXPECT_EQ(old.bgnbd_customers, 0u);
}

TEST(ValueModel, TierThresholdsRecordTheFractions) {
  ValueModel model;
  ValueConfig cfg;
  cfg.platinum_fraction = 0.1;
  cfg.gold_fraction = 0.2;
  std::vector<double> clvs = {1, 2, 3};
  set_tier_thresholds(model, cfg, clvs);
  EXPECT_EQ(model.platinum_fraction, 0.1);
  EXPECT_EQ(model.gold_fraction, 0.2);
}

}  // namespace
}  // namespace rapport
