// Test support for the value model: simulation of BG/NBD + Gamma-Gamma
// customers from known parameters (scoring/value_simulation.h), standard errors of the
// log-parameters (scoring's bgnbd_standard_errors), and the CDNOW
// purchase logs read into customer states.
#pragma once

#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <ctime>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "scoring/customer_state.h"
#include "scoring/value_model.h"
#include "scoring/value_simulation.h"

namespace rapport::testing {

// The standard errors of the log-parameters (scoring's observed information), NaN when
// the information is not positive definite.
inline std::array<double, 4> bgnbd_log_standard_errors(const BgNbdParams& p, const std::vector<PurchaseSummary>& data) {
  const auto e = bgnbd_standard_errors(p, data);
  if (!e.ok()) return {NAN, NAN, NAN, NAN};
  return {e->log_se.r, e->log_se.alpha, e->log_se.a, e->log_se.b};
}

inline std::array<double, 3> gamma_gamma_log_standard_errors(const GammaGammaParams& g,
                                                             const std::vector<PurchaseSummary>& data) {
  const auto e = gamma_gamma_standard_errors(g, data);
  if (!e.ok()) return {NAN, NAN, NAN};
  return {e->log_se.p, e->log_se.q, e->log_se.gamma};
}

inline std::int64_t cdnow_day(const std::string& yyyymmdd) {
  std::tm tm{};
  tm.tm_year = std::stoi(yyyymmdd.substr(0, 4)) - 1900;
  tm.tm_mon = std::stoi(yyyymmdd.substr(4, 2)) - 1;
  tm.tm_mday = std::stoi(yyyymmdd.substr(6, 2));
  return static_cast<std::int64_t>(timegm(&tm)) / 86400;
}

inline constexpr std::int64_t kCdnowCalibrationEndMs = 875'577'600'000;  // 1997-09-30T00:00:00Z
inline constexpr std::int64_t kCdnowEndMs = 899'164'800'000;             // 1998-06-30T00:00:00Z

// Every purchase of a CDNOW log applied to one CustomerState per customer (all
// dates, the holdout period included). `master` selects CDNOW_master.txt
// (header line; id, date, CDs, dollars) over CDNOW_sample.txt (master id,
// sample id, date, CDs, dollars). Empty when the file cannot be read.
inline std::map<std::string, CustomerState> load_cdnow_states(bool master, std::size_t* lines = nullptr) {
  const std::string path = std::string(RAPPORT_CDNOW_DIR) + (master ? "/CDNOW_master.txt" : "/CDNOW_sample.txt");
  std::ifstream in(path);
  std::map<std::string, CustomerState> states;
  if (!in) return states;
  std::string line;
  if (master) std::getline(in, line);  // header
  std::size_t n = 0;
  std::string id, other, date, cds, dollars;
  while (master ? static_cast<bool>(in >> id >> date >> cds >> dollars)
                : static_cast<bool>(in >> other >> id >> date >> cds >> dollars)) {
    Event e;
    e.event_id.assign(std::to_string(++n));
    e.customer_id.assign(id);
    e.type = EventType::kPurchase;
    e.ts_ms = cdnow_day(date) * 86'400'000;
    e.amount = std::stod(dollars);
    apply_event(states[id], e, ApplyConfig{});
  }
  if (lines != nullptr) *lines = n;
  return states;
}

// The states' value-model inputs as of `as_of_ms`, in weeks (the paper's unit).
inline std::vector<PurchaseSummary> summaries_in_weeks(const std::map<std::string, CustomerState>& states,
                                                       std::int64_t as_of_ms) {
  std::vector<PurchaseSummary> out;
  out.reserve(states.size());
  for (const auto& [id, state] : states) {
    const PurchaseHistory h = purchase_history_as_of(state, as_of_ms);
    if (h.transactions == 0) continue;
    out.push_back({h.x, h.t_x_days / 7, h.T_days / 7, h.mean_repeat_spend});
  }
  return out;
}

}  // namespace rapport::testing
