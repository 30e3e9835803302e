// Test support for the value model: simulation of BG/NBD + Gamma-Gamma
// customers from known parameters (value_simulation.h), standard errors from the observed information
// (a numerical Hessian of the model's own log-likelihood), and the CDNOW
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
#include "tests/scoring/value_simulation.h"

namespace rapport::testing {

// Inverts a small symmetric positive definite matrix (Gauss-Jordan); false if singular.
template <std::size_t N>
bool invert(std::array<std::array<double, N>, N>& m) {
  std::array<std::array<double, N>, N> inv{};
  for (std::size_t i = 0; i < N; ++i) inv[i][i] = 1;
  for (std::size_t c = 0; c < N; ++c) {
    std::size_t pivot = c;
    for (std::size_t r = c + 1; r < N; ++r) {
      if (std::abs(m[r][c]) > std::abs(m[pivot][c])) pivot = r;
    }
    if (m[pivot][c] == 0) return false;
    std::swap(m[c], m[pivot]);
    std::swap(inv[c], inv[pivot]);
    const double d = m[c][c];
    for (std::size_t k = 0; k < N; ++k) {
      m[c][k] /= d;
      inv[c][k] /= d;
    }
    for (std::size_t r = 0; r < N; ++r) {
      if (r == c) continue;
      const double f = m[r][c];
      for (std::size_t k = 0; k < N; ++k) {
        m[r][k] -= f * m[c][k];
        inv[r][k] -= f * inv[c][k];
      }
    }
  }
  m = inv;
  return true;
}

// Standard errors of the log-parameters at `theta` from the observed information:
// the inverse of minus the Hessian of `ll` (central differences).
template <std::size_t N>
std::array<double, N> log_parameter_standard_errors(const std::function<double(const std::array<double, N>&)>& ll,
                                                    const std::array<double, N>& theta) {
  const double h = 1e-3;
  std::array<std::array<double, N>, N> info{};
  for (std::size_t i = 0; i < N; ++i) {
    for (std::size_t j = i; j < N; ++j) {
      auto at = [&](double di, double dj) {
        auto t = theta;
        t[i] += di;
        t[j] += dj;
        return ll(t);
      };
      const double second = (at(h, h) - at(h, -h) - at(-h, h) + at(-h, -h)) / (4 * h * h);
      info[i][j] = info[j][i] = -second;
    }
  }
  std::array<double, N> se{};
  if (!invert(info)) {
    se.fill(NAN);
    return se;
  }
  for (std::size_t i = 0; i < N; ++i) se[i] = std::sqrt(info[i][i]);
  return se;
}

inline std::array<double, 4> bgnbd_standard_errors(const BgNbdParams& p, const std::vector<PurchaseSummary>& data) {
  const std::function<double(const std::array<double, 4>&)> ll = [&](const std::array<double, 4>& t) {
    return bgnbd_log_likelihood(BgNbdParams{std::exp(t[0]), std::exp(t[1]), std::exp(t[2]), std::exp(t[3])}, data);
  };
  return log_parameter_standard_errors<4>(ll, {std::log(p.r), std::log(p.alpha), std::log(p.a), std::log(p.b)});
}

inline std::array<double, 3> gamma_gamma_standard_errors(const GammaGammaParams& g,
                                                         const std::vector<PurchaseSummary>& data) {
  const std::function<double(const std::array<double, 3>&)> ll = [&](const std::array<double, 3>& t) {
    return gamma_gamma_log_likelihood(GammaGammaParams{std::exp(t[0]), std::exp(t[1]), std::exp(t[2])}, data);
  };
  return log_parameter_standard_errors<3>(ll, {std::log(g.p), std::log(g.q), std::log(g.gamma)});
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
