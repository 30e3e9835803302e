// Backtest of the value model: a model fitted on a calibration period
// (purchases up to the calibration end day D1) predicts the holdout period
// (D1, D2]; the predictions are compared with what the customers did.
//
// Pure function over plain structs; time in whole UTC days (days since
// 1970-01-01), purchases are purchase days (same-day purchases are one
// transaction, as in the fit). Thread safety: plain values.
//
// What it computes (Fader, Hardie & Lee 2005, section 4):
//  - per customer, the conditional expectation of the repeat transactions in
//    the holdout given x, t_x and T at D1 (eq. 10, expected_transactions) and
//    the Gamma-Gamma mean spend per transaction (expected_spend); predicted
//    spend = the two multiplied;
//  - totals and mean absolute errors per customer, predicted against actual;
//  - the conditional-expectations table: customers grouped by x in the
//    calibration (0, 1, ..., 6, 7+), the mean actual and predicted holdout
//    transactions of each group;
//  - the tracking curve: cumulative repeat transactions of the cohort at the
//    end of every week, actual against the unconditional expectation summed
//    over the customers (eq. 7 at each customer's time since first purchase).
//    Week k (k = 1, 2, ...) covers the days first + 7(k-1) .. first + 7k - 1
//    where `first` is the earliest first purchase; the last week ends at D2.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/status.h"
#include "scoring/value_model.h"

namespace rapport {

// One customer who bought by the calibration end.
struct BacktestCustomer {
  PurchaseSummary calibration;             // x, t_x, T (days) and mean repeat spend at D1
  std::int32_t first_day = 0;              // first purchase day (<= D1)
  std::uint32_t holdout_transactions = 0;  // purchase days in (D1, D2]
  double holdout_spend = 0;                // money spent in (D1, D2]
};

struct BacktestInput {
  std::int32_t calibration_end_day = 0;  // D1, counted in the calibration
  std::int32_t holdout_end_day = 0;      // D2, counted in the holdout
  std::vector<BacktestCustomer> customers;
  // The day of every repeat purchase (every purchase day after a customer's first) up to D2, in
  // any order: the actual tracking curve.
  std::vector<std::int32_t> repeat_purchase_days;
};

inline constexpr int kBacktestGroups = 8;  // x = 0, 1, ..., 6 and 7+

struct BacktestGroup {
  int x = 0;  // calibration repeat transactions (the last group: x >= 7)
  std::uint64_t customers = 0;
  double mean_actual = 0;     // holdout transactions, mean over the group (0 for an empty group)
  double mean_predicted = 0;  // conditional expectation, mean over the group
};

struct TrackingPoint {
  int week = 0;              // 1, 2, ...
  std::int32_t end_day = 0;  // last day of the week (counted in it)
  double actual = 0;         // cumulative repeat transactions up to end_day
  double predicted = 0;      // their expectation
};

struct BacktestResult {
  std::uint64_t customers = 0;
  std::int32_t holdout_days = 0;  // D2 - D1
  double actual_transactions = 0, predicted_transactions = 0;
  double actual_spend = 0, predicted_spend = 0;
  double transactions_mae = 0, spend_mae = 0;  // mean absolute error per customer
  std::vector<BacktestGroup> groups;           // kBacktestGroups rows, x = 0..7
  std::int32_t first_day = 0;                  // the earliest first purchase: week 1 starts on it
  std::vector<TrackingPoint> tracking;
  int calibration_weeks = 0;  // the weeks that end by D1 (the holdout starts after tracking[calibration_weeks-1])
};

// Errors (Status::Error, with a message that says what to change): D2 <= D1, no customers, no
// purchase in the holdout, a model that predicts nothing finite.
Result<BacktestResult> run_backtest(const BgNbdParams& bgnbd, const GammaGammaParams& gamma_gamma,
                                    const BacktestInput& input);

}  // namespace rapport
