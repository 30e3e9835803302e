#include "daemon/backtest.h"

#include <algorithm>

#include "common/clock.h"
#include "daemon/value_records.h"

namespace rapport {
namespace {

constexpr std::int64_t kDayMs = 86'400'000;

std::int32_t day_of(std::int64_t ms) {
  return static_cast<std::int32_t>(ms >= 0 ? ms / kDayMs : (ms - kDayMs + 1) / kDayMs);
}

}  // namespace

std::string format_day(std::int32_t day) {
  return format_rfc3339(static_cast<std::int64_t>(day) * kDayMs).substr(0, 10);
}

Result<BacktestDates> parse_backtest_dates(std::string_view calibration_end, std::string_view holdout_end,
                                           std::int64_t now_ms, std::string_view calibration_name,
                                           std::string_view holdout_name) {
  const std::string cal(calibration_name), hold(holdout_name);
  auto d1 = parse_as_of(calibration_end);
  if (!d1.ok()) return Status::Error(cal + ": " + d1.message());
  auto d2 = parse_as_of(holdout_end);
  if (!d2.ok()) return Status::Error(hold + ": " + d2.message());
  if (day_of(*d2) <= day_of(*d1)) {
    return Status::Error(hold + " " + format_day(day_of(*d2)) + " must be a later day than " + cal + " " +
                         format_day(day_of(*d1)) +
                         ": the model is fitted on the purchases up to the calibration end and predicts the days "
                         "after it, up to the holdout end");
  }
  if (*d2 > now_ms) {
    return Status::Error(hold + " " + format_rfc3339(*d2) + " is in the future (now is " + format_rfc3339(now_ms) +
                         "): the holdout must be over to compare the predictions with what happened");
  }
  return BacktestDates{*d1, *d2};
}

BacktestOutcome backtest_population(const PartitionedStore& store, const EvaluateConfig& scoring,
                                    const ValueConfig& value, const BacktestDates& dates) {
  BacktestOutcome out;
  // The model exactly as fit --as-of D1 fits it.
  auto fitted = fit_population(store, scoring, value, dates.calibration_end_ms);
  if (!fitted.ok()) {
    out.failure = fitted.status().not_ready() ? BacktestFailure::kNotReady : BacktestFailure::kStorage;
    out.error = "the fit as of the calibration end failed: " + fitted.message();
    return out;
  }

  BacktestInput input;
  input.calibration_end_day = day_of(dates.calibration_end_ms);
  input.holdout_end_day = day_of(dates.holdout_end_ms);
  const std::int32_t d1 = input.calibration_end_day, d2 = input.holdout_end_day;
  Status visited = store.for_each_customer_unordered([&](std::string_view, const CustomerState& state) {
    const PurchaseHistory h = purchase_history_as_of(state, dates.calibration_end_ms);  // as the fit measures it
    if (h.transactions == 0) return true;  // no purchase by D1: not in the BG/NBD population
    BacktestCustomer c;
    c.calibration = PurchaseSummary{h.x, h.t_x_days, h.T_days, h.mean_repeat_spend};
    c.first_day = state.purchase_days.front().day;
    std::int64_t holdout_units = 0;
    for (std::size_t i = 1; i < state.purchase_days.size(); ++i) {
      const PurchaseDay& p = state.purchase_days[i];
      if (p.day > d2) break;
      input.repeat_purchase_days.push_back(p.day);
      if (p.day > d1) {
        ++c.holdout_transactions;
        holdout_units += p.amount;
      }
    }
    c.holdout_spend = static_cast<double>(holdout_units) / kMoneyUnitsPerCurrency;
    input.customers.push_back(c);
    return true;
  });
  if (!visited.ok()) {
    out.failure = BacktestFailure::kStorage;
    out.error = "cannot read the customers: " + visited.message();
    return out;
  }
  auto result = run_backtest(fitted->model.bgnbd, fitted->model.gamma_gamma, input);
  if (!result.ok()) {
    out.failure = BacktestFailure::kInput;
    out.error = result.message();
    return out;
  }
  out.report = BacktestReport{dates, fitted->model, std::move(*result)};
  return out;
}

void write_backtest_json(JsonWriter& w, const BacktestReport& report) {
  const BacktestResult& r = report.result;
  w.begin_object()
      .field("calibration_end", format_rfc3339(report.dates.calibration_end_ms))
      .field("holdout_end", format_rfc3339(report.dates.holdout_end_ms))
      .field("holdout_days", r.holdout_days);
  w.key("model");
  write_value_model_json(w, report.model);
  w.field("customers", r.customers);
  w.key("transactions")
      .begin_object()
      .field("actual", r.actual_transactions)
      .field("predicted", r.predicted_transactions)
      .field("mae", r.transactions_mae)
      .end_object();
  w.key("spend")
      .begin_object()
      .field("actual", r.actual_spend)
      .field("predicted", r.predicted_spend)
      .field("mae", r.spend_mae)
      .end_object();
  w.key("conditional_expectations").begin_array();
  for (const BacktestGroup& g : r.groups) {
    const bool last = g.x == kBacktestGroups - 1;
    w.begin_object()
        .field("x", g.x)
        .field("label", std::to_string(g.x) + (last ? "+" : ""))
        .field("customers", g.customers)
        .field("actual", g.mean_actual)
        .field("predicted", g.mean_predicted)
        .end_object();
  }
  w.end_array();
  w.key("tracking").begin_object();
  w.field("first_day", format_day(r.first_day));
  w.field("calibration_weeks", r.calibration_weeks);
  w.key("weeks").begin_array();
  for (const TrackingPoint& p : r.tracking) {
    w.begin_object()
        .field("week", p.week)
        .field("end", format_day(p.end_day))
        .field("actual", p.actual)
        .field("predicted", p.predicted)
        .end_object();
  }
  w.end_array().end_object();
  w.end_object();
}

}  // namespace rapport
