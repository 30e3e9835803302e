// rapportctl get, top, tiers and fit: reading scores and rankings, fitting the value model.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/ctl/common.h"

namespace rapport {

// Customers' scores as JSON, one line each in the order given: GET /v1/customers/{id}[?explain=true] with
// --url (several ids without --explain: POST /v1/customers:batchGet, 1000 per request), else read from the
// state dir with the value model the daemon last stored. Unknown ids are named on stderr; exit 1 when any is.
int ctl_get(const CtlTarget& target, const std::vector<std::string>& ids, bool explain);

// The metrics `top --by` ranks by.
inline constexpr std::string_view kTopMetrics[] = {"clv",     "churn_risk",   "p_alive", "profit_12m",
                                                   "revenue", "satisfaction", "loyalty"};

struct TopOptions {
  std::string by = "clv";  // one of kTopMetrics
  std::size_t n = 10;
  std::string tier;   // empty = every tier
  std::string as_of;  // evaluation time (default now)
  bool json = false;
};
// The n customers with the highest value of the metric, ties by id. State dir: one scan of every customer.
// Url: GET /v1/customers?tier=T&order=M for the asked tier, or for each tier, paged with next_cursor up to n
// customers each, then merged into the same order (metrics clv, churn_risk, satisfaction and loyalty only;
// no as_of: the daemon ranks as of now).
int ctl_top(const CtlTarget& target, const TopOptions& options);

// Customers per tier at the last fit, the thresholds and the configured fractions.
int ctl_tiers(const CtlTarget& target, bool json);

struct FitOptions {
  std::string as_of;  // default now; over --url sent as {"as_of": …} to POST /v1/model:fit
  bool save = false;  // state dir only: store the model and tier counts in meta (the daemon always stores)
};
int ctl_fit(const CtlTarget& target, const FitOptions& options);

}  // namespace rapport
