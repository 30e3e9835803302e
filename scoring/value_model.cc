#include "scoring/value_model.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>

namespace rapport {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

double log_sum_exp(double u, double v) {
  if (u == kNegInf) return v;
  if (v == kNegInf) return u;
  const double m = std::max(u, v);
  return m + std::log(std::exp(u - m) + std::exp(v - m));
}

// C (2F1(A, B; C; z) - 1) / B by its power series,
//   sum_{k>=1} (A)_k (B+1)_{k-1} z^k / ((C+1)_{k-1} k!),
// which is also defined at B = 0 and C = 0 (C > -1). For 0 <= z < 1. Stops
// when the remainder, bounded by the current term and max(term ratio, z), is
// below 1e-17 of the sum; NaN when that takes more than 10^7 terms (z within
// ~1e-7 of 1).
double hyp2f1_scaled_excess(double A, double B, double C, double z) {
  double term = A * z;
  double sum = term;
  if (term == 0) return 0.0;
  for (int k = 1; k < 10'000'000; ++k) {
    const double ratio = (A + k) * (B + k) / ((C + k) * (k + 1.0)) * z;
    term *= ratio;
    sum += term;
    const double rho = std::max(std::abs(ratio), z);
    if (rho < 1 && std::abs(term) * rho <= 1e-17 * (1 - rho) * std::abs(sum)) return sum;
    if (term == 0) return sum;
  }
  return std::numeric_limits<double>::quiet_NaN();
}

// (a+b+x-1)/(a-1) * [1 - (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z)] with
// L = log(1 - z): the head and bracket of the BG/NBD expectations after
// Euler's transformation. With eps = a-1, C = a+b+x-1 and F = 1 + eps H / C,
// it is C (-expm1(eps L)/eps) - e^(eps L) H: no pole at a = 1 (eps -> 0) nor
// at a + b = 1 (C = 0 when x = 0), where the textbook form is 0 x inf.
double bgnbd_expectation_core(const BgNbdParams& p, double x, double z, double log1mz) {
  const double eps = p.a - 1;
  const double c = p.a + p.b + x - 1;
  const double h = hyp2f1_scaled_excess(p.a + p.b - 1 - p.r, eps, c, z);
  const double scaled = eps == 0 ? -log1mz : -std::expm1(eps * log1mz) / eps;
  return c * scaled - std::exp(eps * log1mz) * h;
}

// log of the odds that a customer with x > 0 repeat purchases has dropped out
// rather than being alive: a/(b+x-1) * ((alpha+T)/(alpha+t_x))^(r+x).
double log_dropout_odds(const BgNbdParams& p, const PurchaseSummary& c) {
  return std::log(p.a) - std::log(p.b + c.x - 1) + (p.r + c.x) * std::log1p((c.T - c.t_x) / (p.alpha + c.t_x));
}

// 1 / (1 + e^v) without overflow.
double logistic_complement(double v) {
  if (v > 0) {
    const double e = std::exp(-v);
    return e / (1 + e);
  }
  return 1 / (1 + std::exp(v));
}

using Objective = std::function<double(const std::vector<double>&)>;

struct Minimum {
  std::vector<double> point;
  double value = 0;
  int iterations = 0;
};

// Nelder-Mead simplex minimisation (standard coefficients), from `start`.
Minimum nelder_mead(const Objective& f, std::vector<double> start, double step, int max_iterations) {
  const std::size_t n = start.size();
  std::vector<std::vector<double>> simplex(n + 1, start);
  std::vector<double> values(n + 1);
  for (std::size_t i = 0; i < n; ++i) simplex[i + 1][i] += step;
  for (std::size_t i = 0; i <= n; ++i) values[i] = f(simplex[i]);
  std::vector<std::size_t> order(n + 1);
  std::vector<double> centroid(n), trial(n), trial2(n);
  int it = 0;
  for (; it < max_iterations; ++it) {
    for (std::size_t i = 0; i <= n; ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](std::size_t x, std::size_t y) { return values[x] < values[y]; });
    const std::size_t best = order[0], worst = order[n], second = order[n - 1];
    if (std::abs(values[worst] - values[best]) <= 1e-12 * (std::abs(values[best]) + 1e-12)) {
      double spread = 0;
      for (std::size_t i = 0; i < n; ++i) spread = std::max(spread, std::abs(simplex[worst][i] - simplex[best][i]));
      if (spread < 1e-10) break;
    }
    std::fill(centroid.begin(), centroid.end(), 0.0);
    for (std::size_t k = 0; k < n; ++k) {
      for (std::size_t i = 0; i < n; ++i) centroid[i] += simplex[order[k]][i] / static_cast<double>(n);
    }
    for (std::size_t i = 0; i < n; ++i) trial[i] = centroid[i] + (centroid[i] - simplex[worst][i]);
    const double fr = f(trial);
    if (fr < values[best]) {
      for (std::size_t i = 0; i < n; ++i) trial2[i] = centroid[i] + 2.0 * (centroid[i] - simplex[worst][i]);
      const double fe = f(trial2);
      if (fe < fr) {
        simplex[worst] = trial2;
        values[worst] = fe;
      } else {
        simplex[worst] = trial;
        values[worst] = fr;
      }
    } else if (fr < values[second]) {
      simplex[worst] = trial;
      values[worst] = fr;
    } else {
      const bool outside = fr < values[worst];
      for (std::size_t i = 0; i < n; ++i) {
        trial2[i] = outside ? centroid[i] + 0.5 * (trial[i] - centroid[i])
                            : centroid[i] + 0.5 * (simplex[worst][i] - centroid[i]);
      }
      const double fc = f(trial2);
      if (fc < std::min(fr, values[worst])) {
        simplex[worst] = trial2;
        values[worst] = fc;
      } else {  // shrink towards the best vertex
        for (std::size_t k = 1; k <= n; ++k) {
          auto& v = simplex[order[k]];
          for (std::size_t i = 0; i < n; ++i) v[i] = simplex[best][i] + 0.5 * (v[i] - simplex[best][i]);
          values[order[k]] = f(v);
        }
      }
    }
  }
  const auto best = std::min_element(values.begin(), values.end()) - values.begin();
  return Minimum{simplex[best], values[best], it};
}

// Restarts Nelder-Mead from its own optimum until the value stops improving.
Minimum minimise(const Objective& f, std::vector<double> start) {
  Minimum m = nelder_mead(f, std::move(start), 0.5, 5000);
  int total = m.iterations;
  for (int restart = 0; restart < 20; ++restart) {
    Minimum again = nelder_mead(f, m.point, 0.1, 5000);
    total += again.iterations;
    const bool improved = again.value < m.value - 1e-9 * (std::abs(m.value) + 1);
    if (again.value < m.value) m = std::move(again);
    if (!improved) break;
  }
  m.iterations = total;
  return m;
}

bool valid(const PurchaseSummary& c) {
  return std::isfinite(c.x) && std::isfinite(c.t_x) && std::isfinite(c.T) && c.x >= 0 && c.t_x >= 0 && c.T >= c.t_x;
}

}  // namespace

double bgnbd_log_likelihood(const BgNbdParams& p, const PurchaseSummary& c) {
  const double x = c.x;
  const double a1 = std::lgamma(p.r + x) - std::lgamma(p.r) + p.r * std::log(p.alpha);
  const double a2 = std::lgamma(p.a + p.b) + std::lgamma(p.b + x) - std::lgamma(p.b) - std::lgamma(p.a + p.b + x);
  const double a3 = -(p.r + x) * std::log(p.alpha + c.T);
  const double a4 = x > 0 ? std::log(p.a) - std::log(p.b + x - 1) - (p.r + x) * std::log(p.alpha + c.t_x) : kNegInf;
  return a1 + a2 + log_sum_exp(a3, a4);
}

double bgnbd_log_likelihood(const BgNbdParams& params, std::span<const PurchaseSummary> customers) {
  double ll = 0;
  for (const PurchaseSummary& c : customers) ll += bgnbd_log_likelihood(params, c);
  return ll;
}

double probability_alive(const BgNbdParams& p, const PurchaseSummary& c) {
  if (c.x <= 0) return 1.0;
  return logistic_complement(log_dropout_odds(p, c));
}

double expected_transactions(const BgNbdParams& p, const PurchaseSummary& c, double horizon) {
  if (horizon <= 0) return 0.0;
  const double z = horizon / (p.alpha + c.T + horizon);
  const double log1mz = -std::log1p(horizon / (p.alpha + c.T));
  const double unconditional_on_survival = bgnbd_expectation_core(p, c.x, z, log1mz);
  const double alive = c.x > 0 ? logistic_complement(log_dropout_odds(p, c)) : 1.0;
  return std::max(0.0, unconditional_on_survival * alive);
}

double unconditional_expected_transactions(const BgNbdParams& p, double t) {
  if (t <= 0) return 0.0;
  return std::max(0.0, bgnbd_expectation_core(p, 0.0, t / (p.alpha + t), -std::log1p(t / p.alpha)));
}

double gamma_gamma_log_likelihood(const GammaGammaParams& g, std::span<const PurchaseSummary> customers) {
  double ll = 0;
  for (const PurchaseSummary& c : customers) {
    if (c.x <= 0 || c.mean_spend <= 0) continue;
    const double px = g.p * c.x;
    ll += std::lgamma(px + g.q) - std::lgamma(px) - std::lgamma(g.q) + g.q * std::log(g.gamma) +
          (px - 1) * std::log(c.mean_spend) + px * std::log(c.x) - (px + g.q) * std::log(g.gamma + c.mean_spend * c.x);
  }
  return ll;
}

double expected_spend(const GammaGammaParams& g, const PurchaseSummary& c) {
  if (c.x <= 0 || c.mean_spend <= 0) return g.q > 1 ? g.p * g.gamma / (g.q - 1) : 0.0;
  return (g.gamma + c.mean_spend * c.x) * g.p / (g.p * c.x + g.q - 1);
}

Result<BgNbdFit> fit_bgnbd(std::span<const PurchaseSummary> customers) {
  std::vector<PurchaseSummary> data;
  data.reserve(customers.size());
  double mean_T = 0;
  std::size_t repeaters = 0;
  for (const PurchaseSummary& c : customers) {
    if (!valid(c)) continue;
    data.push_back(c);
    mean_T += c.T;
    if (c.x > 0) ++repeaters;
  }
  if (data.size() < 10 || repeaters < 2) {
    return Status::Error("cannot fit BG/NBD: need at least 10 customers with 2 repeat purchasers; have " +
                         std::to_string(data.size()) + " customers, " + std::to_string(repeaters) + " repeaters");
  }
  mean_T = std::max(mean_T / static_cast<double>(data.size()), 1e-3);
  const Objective nll = [&](const std::vector<double>& v) {
    const BgNbdParams p{std::exp(v[0]), std::exp(v[1]), std::exp(v[2]), std::exp(v[3])};
    const double ll = bgnbd_log_likelihood(p, data);
    return std::isfinite(ll) ? -ll : std::numeric_limits<double>::max();
  };
  const Minimum m = minimise(nll, {0.0, std::log(mean_T), 0.0, 0.0});
  BgNbdFit fit;
  fit.params = {std::exp(m.point[0]), std::exp(m.point[1]), std::exp(m.point[2]), std::exp(m.point[3])};
  fit.log_likelihood = -m.value;
  fit.iterations = m.iterations;
  if (!std::isfinite(fit.log_likelihood)) return Status::Error("BG/NBD fit did not converge");
  return fit;
}

Result<GammaGammaFit> fit_gamma_gamma(std::span<const PurchaseSummary> customers) {
  std::vector<PurchaseSummary> data;
  double mean_spend = 0;
  for (const PurchaseSummary& c : customers) {
    if (!valid(c) || c.x <= 0 || !(c.mean_spend > 0) || !std::isfinite(c.mean_spend)) continue;
    data.push_back(c);
    mean_spend += c.mean_spend;
  }
  if (data.size() < 2) {
    return Status::Error("cannot fit Gamma-Gamma: need at least 2 repeat customers with spend; have " +
                         std::to_string(data.size()));
  }
  mean_spend /= static_cast<double>(data.size());
  const Objective nll = [&](const std::vector<double>& v) {
    const GammaGammaParams g{std::exp(v[0]), std::exp(v[1]), std::exp(v[2])};
    const double ll = gamma_gamma_log_likelihood(g, data);
    return std::isfinite(ll) ? -ll : std::numeric_limits<double>::max();
  };
  const Minimum m = minimise(nll, {0.0, std::log(2.0), std::log(mean_spend)});
  GammaGammaFit fit;
  fit.params = {std::exp(m.point[0]), std::exp(m.point[1]), std::exp(m.point[2])};
  fit.log_likelihood = -m.value;
  fit.iterations = m.iterations;
  if (!std::isfinite(fit.log_likelihood)) return Status::Error("Gamma-Gamma fit did not converge");
  return fit;
}

CustomerValue customer_value(const ValueModel& model, const ValueConfig& config, const PurchaseSummary& c) {
  CustomerValue v;
  if (model.fitted_at_ms == 0) return v;
  v.expected_transactions = expected_transactions(model.bgnbd, c, config.horizon_days);
  v.p_alive = probability_alive(model.bgnbd, c);
  v.churn_risk = 1.0 - v.p_alive;
  v.expected_spend = expected_spend(model.gamma_gamma, c);
  // Discount the expected transactions of each ~monthly step at its end.
  double discounted = v.expected_transactions;
  if (config.annual_discount_rate > 0) {
    const int steps = std::max(1, static_cast<int>(std::ceil(config.horizon_days / 30.0)));
    double previous = 0;
    discounted = 0;
    for (int k = 1; k <= steps; ++k) {
      const double t = config.horizon_days * k / steps;
      const double cumulative = k == steps ? v.expected_transactions : expected_transactions(model.bgnbd, c, t);
      discounted += (cumulative - previous) * std::pow(1.0 + config.annual_discount_rate, -t / 365.0);
      previous = cumulative;
    }
  }
  v.clv = config.margin * discounted * v.expected_spend;
  if (!std::isfinite(v.clv)) v.clv = 0;
  return v;
}

std::string_view tier_name(Tier tier) {
  switch (tier) {
    case Tier::kPlatinum: return "platinum";
    case Tier::kGold: return "gold";
    case Tier::kIron: return "iron";
    case Tier::kLead: return "lead";
    case Tier::kUnranked: return "unranked";
  }
  return "unranked";
}

bool parse_tier(std::string_view name, Tier& tier) {
  for (int i = 0; i < kTierCount; ++i) {
    if (tier_name(static_cast<Tier>(i)) == name) {
      tier = static_cast<Tier>(i);
      return true;
    }
  }
  return false;
}

Tier classify_tier(const ValueModel* model, double clv, double profit_12m) {
  if (profit_12m < 0) return Tier::kLead;
  if (model == nullptr || model->fitted_at_ms == 0) return Tier::kUnranked;
  if (clv >= model->platinum_min_clv) return Tier::kPlatinum;
  if (clv >= model->gold_min_clv) return Tier::kGold;
  return Tier::kIron;
}

void set_tier_thresholds(ValueModel& model, const ValueConfig& config, std::vector<double>& clvs) {
  const double inf = std::numeric_limits<double>::infinity();
  if (clvs.empty()) {
    model.platinum_min_clv = model.gold_min_clv = inf;
    return;
  }
  std::sort(clvs.begin(), clvs.end(), std::greater<>());
  const auto n = clvs.size();
  // The k-th largest value is the threshold of the top k customers (ties join the higher tier).
  const auto platinum = static_cast<std::size_t>(std::floor(config.platinum_fraction * static_cast<double>(n)));
  const auto gold = static_cast<std::size_t>(std::floor((config.platinum_fraction + config.gold_fraction) * static_cast<double>(n)));
  model.platinum_min_clv = platinum == 0 ? inf : clvs[platinum - 1];
  model.gold_min_clv = gold == 0 ? inf : clvs[std::min(gold, n) - 1];
  if (model.gold_min_clv > model.platinum_min_clv) model.gold_min_clv = model.platinum_min_clv;
}

namespace {

static_assert(std::endian::native == std::endian::little, "serialization assumes a little-endian host");

template <typename T>
void put(std::string& out, const T& v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}

}  // namespace

std::string serialize(const ValueModel& m) {
  std::string out;
  put(out, ValueModel::kFormatVersion);
  put(out, m.bgnbd);
  put(out, m.gamma_gamma);
  put(out, m.bgnbd_log_likelihood);
  put(out, m.gamma_gamma_log_likelihood);
  put(out, m.fitted_at_ms);
  put(out, m.fit_seconds);
  put(out, m.customers);
  put(out, m.repeat_customers);
  put(out, m.platinum_min_clv);
  put(out, m.gold_min_clv);
  return out;
}

Status deserialize(std::string_view bytes, ValueModel& m) {
  if (bytes.empty() || static_cast<std::uint8_t>(bytes[0]) != ValueModel::kFormatVersion) {
    return Status::Error("value model record has an unknown format version");
  }
  ValueModel t;
  std::size_t pos = 1;
  auto get = [&](auto& v) {
    if (bytes.size() - pos < sizeof(v)) return false;
    std::memcpy(&v, bytes.data() + pos, sizeof(v));
    pos += sizeof(v);
    return true;
  };
  const bool ok = get(t.bgnbd) && get(t.gamma_gamma) && get(t.bgnbd_log_likelihood) &&
                  get(t.gamma_gamma_log_likelihood) && get(t.fitted_at_ms) && get(t.fit_seconds) &&
                  get(t.customers) && get(t.repeat_customers) && get(t.platinum_min_clv) && get(t.gold_min_clv);
  if (!ok || pos != bytes.size()) return Status::Error("value model record is truncated or has trailing bytes");
  m = t;
  return Status::Ok();
}

}  // namespace rapport
