// The value-model backtest over a store (POST /v1/model:backtest, rapportctl backtest): the model
// fitted as of the calibration end exactly as `fit --as-of` fits it (fit_population), every
// customer's purchase days read from the same store, and the comparison of scoring/backtest.h;
// its JSON rendering, shared by the daemon and rapportctl.
// Thread safety: the functions share nothing; backtest_population reads the store in read
// transactions (never blocking ingest) and costs a fit plus one pass over every customer.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/json_writer.h"
#include "common/status.h"
#include "daemon/value_service.h"
#include "scoring/backtest.h"
#include "storage/partitioned_store.h"

namespace rapport {

struct BacktestDates {
  std::int64_t calibration_end_ms = 0;  // D1: purchases on its UTC day and before are the calibration
  std::int64_t holdout_end_ms = 0;      // D2: purchases after D1's day up to and including D2's day are the holdout
};

// Parses and checks the two dates ("YYYY-MM-DD" or RFC 3339, as for fit --as-of): both dates, the holdout
// ending on a later UTC day than the calibration, and the holdout over by `now_ms`. The message names the
// field as `calibration_name` / `holdout_name` (the JSON field or the CLI option) and says what to send.
Result<BacktestDates> parse_backtest_dates(std::string_view calibration_end, std::string_view holdout_end,
                                           std::int64_t now_ms, std::string_view calibration_name,
                                           std::string_view holdout_name);

struct BacktestReport {
  BacktestDates dates;
  ValueModel model;  // fitted as of dates.calibration_end_ms
  BacktestResult result;
};

// Why a backtest failed: the request (no customers or no purchase in the holdout: a client error, HTTP 400),
// the data cannot identify the model yet (422, as a fit), or the store (503).
enum class BacktestFailure { kInput, kNotReady, kStorage };
struct BacktestOutcome {
  std::optional<BacktestReport> report;  // set on success
  BacktestFailure failure = BacktestFailure::kInput;
  std::string error;  // on failure
};

// Fits as of D1 over every customer (fit_population), then reads every customer's purchase days:
// the customers with a purchase by D1 are the backtest's (x, t_x, T at D1 and their holdout purchases).
BacktestOutcome backtest_population(const PartitionedStore& store, const EvaluateConfig& scoring,
                                    const ValueConfig& value, const BacktestDates& dates);

// The JSON answer (docs/openapi.json, BacktestReport):
//   {"calibration_end", "holdout_end", "holdout_days", "model": {as GET /v1/model}, "customers",
//    "transactions": {"actual", "predicted", "mae"}, "spend": {"actual", "predicted", "mae"},
//    "conditional_expectations": [{"x", "label", "customers", "actual", "predicted"}] (x = 0..7, label "7+"),
//    "tracking": {"first_day", "calibration_weeks", "weeks": [{"week", "end", "actual", "predicted"}]}}
void write_backtest_json(JsonWriter& w, const BacktestReport& report);

// "YYYY-MM-DD" of a day number (days since 1970-01-01).
std::string format_day(std::int32_t day);

}  // namespace rapport
