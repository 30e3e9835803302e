// rapportctl backtest: the value model fitted as of a calibration end, its predictions for the
// holdout compared with what the customers did (daemon/backtest.h), printed as tables or JSON and
// optionally drawn as a PNG with gnuplot.
#pragma once

#include <string>
#include <string_view>

#include "daemon/ctl/common.h"

namespace rapport {

struct BacktestOptions {
  std::string calibration_end;      // D1, YYYY-MM-DD or RFC 3339
  std::string holdout_end;          // D2
  bool json = false;                // the JSON of POST /v1/model:backtest instead of tables
  std::string plot;                 // PNG to write (empty: none)
  std::string gnuplot = "gnuplot";  // the program --plot runs (found on PATH)
};

// Exit 0 on success, 2 on bad dates, a holdout without purchases, a failed fit, or a plot that
// could not be drawn (gnuplot missing or failing).
int ctl_backtest(const CtlTarget& target, const BacktestOptions& options);

// Draws `report_json` (the JSON of POST /v1/model:backtest) into the PNG `png_path` with `gnuplot`:
// the tracking curve and the conditional-expectations table side by side. The data and the script
// go to a temporary directory, removed afterwards. An error naming the fix when gnuplot is missing.
Status plot_backtest(std::string_view report_json, const std::string& png_path, const std::string& gnuplot);

}  // namespace rapport
