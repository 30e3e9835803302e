#include "scoring/backtest.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace rapport {

Result<BacktestResult> run_backtest(const BgNbdParams& bgnbd, const GammaGammaParams& gamma_gamma,
                                    const BacktestInput& in) {
  const std::int32_t d1 = in.calibration_end_day, d2 = in.holdout_end_day;
  if (d2 <= d1) {
    return Status::Error("the holdout must end after the calibration: holdout end day " + std::to_string(d2) +
                         " is not after calibration end day " + std::to_string(d1));
  }
  if (in.customers.empty()) {
    return Status::Error("no customer bought by the calibration end: choose a later calibration end");
  }
  BacktestResult out;
  out.customers = in.customers.size();
  out.holdout_days = d2 - d1;
  const double horizon = out.holdout_days;

  // Per customer: conditional expectation and spend, totals, errors, groups.
  std::vector<double> group_actual(kBacktestGroups, 0.0), group_predicted(kBacktestGroups, 0.0);
  std::vector<std::uint64_t> group_customers(kBacktestGroups, 0);
  std::int32_t first = d1;
  for (const BacktestCustomer& c : in.customers) {
    const double predicted = expected_transactions(bgnbd, c.calibration, horizon);
    const double predicted_spend = predicted * expected_spend(gamma_gamma, c.calibration);
    if (!std::isfinite(predicted) || !std::isfinite(predicted_spend)) {
      return Status::Error("the model predicts no finite value for a customer with x = " +
                           std::to_string(c.calibration.x) + ", t_x = " + std::to_string(c.calibration.t_x) +
                           " and T = " + std::to_string(c.calibration.T) + " days: refit with more data");
    }
    const double actual = c.holdout_transactions;
    out.actual_transactions += actual;
    out.predicted_transactions += predicted;
    out.actual_spend += c.holdout_spend;
    out.predicted_spend += predicted_spend;
    out.transactions_mae += std::abs(predicted - actual);
    out.spend_mae += std::abs(predicted_spend - c.holdout_spend);
    const auto g = static_cast<std::size_t>(std::clamp(c.calibration.x, 0.0, kBacktestGroups - 1.0));
    ++group_customers[g];
    group_actual[g] += actual;
    group_predicted[g] += predicted;
    first = std::min(first, c.first_day);
  }
  if (out.actual_transactions == 0) {
    return Status::Error(
        "no purchase in the holdout (after the calibration end, up to the holdout end): there is "
        "nothing to compare the predictions with; choose dates with purchases after the "
        "calibration end");
  }
  const auto n = static_cast<double>(out.customers);
  out.transactions_mae /= n;
  out.spend_mae /= n;
  for (int g = 0; g < kBacktestGroups; ++g) {
    BacktestGroup row;
    row.x = g;
    row.customers = group_customers[g];
    if (row.customers > 0) {
      row.mean_actual = group_actual[g] / static_cast<double>(row.customers);
      row.mean_predicted = group_predicted[g] / static_cast<double>(row.customers);
    }
    out.groups.push_back(row);
  }

  // Tracking curve over the days first .. d2. Customers by first purchase day, repeat purchases by
  // day, the unconditional expectation at every whole number of days since a first purchase.
  out.first_day = first;
  const auto span = static_cast<std::size_t>(d2 - first) + 1;
  std::vector<double> first_purchases(span, 0.0), repeats(span, 0.0), expectation(span, 0.0);
  for (const BacktestCustomer& c : in.customers) first_purchases[static_cast<std::size_t>(c.first_day - first)] += 1;
  for (const std::int32_t day : in.repeat_purchase_days) {
    if (day >= first && day <= d2) repeats[static_cast<std::size_t>(day - first)] += 1;
  }
  for (std::size_t t = 1; t < span; ++t) {
    expectation[t] = unconditional_expected_transactions(bgnbd, static_cast<double>(t));
  }
  // Days that have first purchases (usually far fewer than the span).
  std::vector<std::size_t> cohort_days;
  for (std::size_t s = 0; s < span; ++s) {
    if (first_purchases[s] > 0) cohort_days.push_back(s);
  }
  double cumulative_actual = 0;
  std::size_t next_day = 0;
  const auto weeks = static_cast<int>((span + 6) / 7);
  for (int k = 1; k <= weeks; ++k) {
    const std::size_t end = std::min(static_cast<std::size_t>(7 * k) - 1, span - 1);
    for (; next_day <= end; ++next_day) cumulative_actual += repeats[next_day];
    double predicted = 0;
    for (const std::size_t s : cohort_days) {
      if (s < end) predicted += first_purchases[s] * expectation[end - s];
    }
    TrackingPoint p;
    p.week = k;
    p.end_day = first + static_cast<std::int32_t>(end);
    p.actual = cumulative_actual;
    p.predicted = predicted;
    if (p.end_day <= d1) out.calibration_weeks = k;
    out.tracking.push_back(p);
  }
  return out;
}

}  // namespace rapport
