// The backtest computation (scoring/backtest.h): totals, errors, the conditional-expectations
// table and the tracking curve from hand-made calibration summaries and holdout actuals, each
// checked against the model's own per-customer formulas; and the errors for bad input.
#include "scoring/backtest.h"

#include <gtest/gtest.h>

#include <cmath>

namespace rapport {
namespace {

// CDNOW's published estimates with alpha in days.
const BgNbdParams kBgNbd{0.243, 4.414 * 7, 0.793, 2.426};
const GammaGammaParams kGammaGamma{6.25, 3.74, 15.44};

BacktestCustomer customer(double x, double t_x, double T, double mean_spend, std::int32_t first_day,
                          std::uint32_t holdout, double holdout_spend) {
  return BacktestCustomer{PurchaseSummary{x, t_x, T, mean_spend}, first_day, holdout, holdout_spend};
}

// D1 = day 100, D2 = day 120; first purchases on days 80, 90 and 100.
BacktestInput small_input() {
  BacktestInput in;
  in.calibration_end_day = 100;
  in.holdout_end_day = 120;
  in.customers = {
      customer(0, 0, 20, 0, 80, 0, 0),        // one purchase, day 80; nothing in the holdout
      customer(2, 8, 10, 30, 90, 1, 25.5),    // days 90, 95, 98; holdout day 110
      customer(9, 0.5, 0.5, 12, 100, 2, 40),  // x = 9 (group 7+) made up; holdout days 101, 120
  };
  in.repeat_purchase_days = {95, 98, 110, 101, 120, 121 /* after D2: ignored */};
  return in;
}

TEST(BacktestTest, TotalsAndErrorsAreTheSumsOfThePerCustomerPredictions) {
  const BacktestInput in = small_input();
  const auto r = run_backtest(kBgNbd, kGammaGamma, in);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(r->customers, 3u);
  EXPECT_EQ(r->holdout_days, 20);
  double predicted = 0, predicted_spend = 0, mae = 0, spend_mae = 0;
  for (const BacktestCustomer& c : in.customers) {
    const double e = expected_transactions(kBgNbd, c.calibration, 20);
    const double s = e * expected_spend(kGammaGamma, c.calibration);
    predicted += e;
    predicted_spend += s;
    mae += std::abs(e - c.holdout_transactions);
    spend_mae += std::abs(s - c.holdout_spend);
  }
  EXPECT_GT(predicted, 0);
  EXPECT_DOUBLE_EQ(r->predicted_transactions, predicted);
  EXPECT_DOUBLE_EQ(r->predicted_spend, predicted_spend);
  EXPECT_DOUBLE_EQ(r->actual_transactions, 3);
  EXPECT_DOUBLE_EQ(r->actual_spend, 65.5);
  EXPECT_DOUBLE_EQ(r->transactions_mae, mae / 3);
  EXPECT_DOUBLE_EQ(r->spend_mae, spend_mae / 3);
}

TEST(BacktestTest, ConditionalExpectationsGroupCustomersByCalibrationRepeatsWithSevenAndMoreTogether) {
  BacktestInput in = small_input();
  in.customers.push_back(customer(7, 10, 12, 20, 88, 4, 80));  // joins x = 9 in the 7+ group
  const auto r = run_backtest(kBgNbd, kGammaGamma, in);
  ASSERT_TRUE(r.ok()) << r.message();
  ASSERT_EQ(r->groups.size(), 8u);
  for (int g = 0; g < 8; ++g) EXPECT_EQ(r->groups[g].x, g);
  EXPECT_EQ(r->groups[0].customers, 1u);
  EXPECT_EQ(r->groups[2].customers, 1u);
  EXPECT_EQ(r->groups[1].customers, 0u);
  EXPECT_EQ(r->groups[1].mean_actual, 0);
  EXPECT_EQ(r->groups[7].customers, 2u);
  EXPECT_DOUBLE_EQ(r->groups[7].mean_actual, 3.0);
  const double e9 = expected_transactions(kBgNbd, in.customers[2].calibration, 20);
  const double e7 = expected_transactions(kBgNbd, in.customers[3].calibration, 20);
  EXPECT_DOUBLE_EQ(r->groups[7].mean_predicted, (e9 + e7) / 2);
  EXPECT_DOUBLE_EQ(r->groups[2].mean_predicted, expected_transactions(kBgNbd, in.customers[1].calibration, 20));
}

TEST(BacktestTest, TrackingCurveCountsRepeatsWeekByWeekAndSumsTheUnconditionalExpectation) {
  const BacktestInput in = small_input();
  const auto r = run_backtest(kBgNbd, kGammaGamma, in);
  ASSERT_TRUE(r.ok()) << r.message();
  // Days 80..120: 41 days, 6 weeks (the last one, days 115..120, ends at D2).
  EXPECT_EQ(r->first_day, 80);
  ASSERT_EQ(r->tracking.size(), 6u);
  const std::int32_t ends[] = {86, 93, 100, 107, 114, 120};
  const double actual[] = {0, 0, 2, 3, 4, 5};  // repeats on 95, 98 | 101 | 110 | 120
  for (int k = 0; k < 6; ++k) {
    const TrackingPoint& p = r->tracking[k];
    EXPECT_EQ(p.week, k + 1);
    EXPECT_EQ(p.end_day, ends[k]);
    EXPECT_EQ(p.actual, actual[k]) << "week " << k + 1;
    double predicted = 0;
    for (const std::int32_t first : {80, 90, 100}) {
      if (p.end_day > first) predicted += unconditional_expected_transactions(kBgNbd, p.end_day - first);
    }
    EXPECT_NEAR(p.predicted, predicted, 1e-12) << "week " << k + 1;
  }
  EXPECT_GT(r->tracking.back().predicted, r->tracking.front().predicted);
  EXPECT_EQ(r->calibration_weeks, 3);  // weeks ending on days 86, 93 and 100
}

TEST(BacktestTest, AHoldoutThatDoesNotEndAfterTheCalibrationIsAnError) {
  BacktestInput in = small_input();
  in.holdout_end_day = in.calibration_end_day;
  const auto same = run_backtest(kBgNbd, kGammaGamma, in);
  ASSERT_FALSE(same.ok());
  EXPECT_NE(same.message().find("the holdout must end after the calibration"), std::string::npos) << same.message();
  in.holdout_end_day = in.calibration_end_day - 5;
  EXPECT_FALSE(run_backtest(kBgNbd, kGammaGamma, in).ok());
}

TEST(BacktestTest, NoCustomersOrNoHoldoutPurchaseIsAnError) {
  BacktestInput in = small_input();
  for (BacktestCustomer& c : in.customers) c.holdout_transactions = 0;
  const auto quiet = run_backtest(kBgNbd, kGammaGamma, in);
  ASSERT_FALSE(quiet.ok());
  EXPECT_NE(quiet.message().find("no purchase in the holdout"), std::string::npos) << quiet.message();
  in.customers.clear();
  const auto empty = run_backtest(kBgNbd, kGammaGamma, in);
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.message().find("no customer bought by the calibration end"), std::string::npos) << empty.message();
}

TEST(BacktestTest, AModelThatPredictsNothingFiniteIsAnError) {
  const GammaGammaParams broken{NAN, 3.74, 15.44};
  const auto r = run_backtest(kBgNbd, broken, small_input());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.message().find("predicts no finite value"), std::string::npos) << r.message();
}

}  // namespace
}  // namespace rapport
