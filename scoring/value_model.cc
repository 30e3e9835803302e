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
//
// For large a the series needs about (a-1) z / (1-z) terms and its two parts
// overflow ((1-z)^-(a-1)); degenerate fits end with a ~ 1e10. There the
// expectation is taken in its other form: given survival, lambda ~ Gamma(r+x,
// alpha+T) and the dropout probability q ~ Beta(a, b+x) independently, and
// E[Y] = E_q[(1 - (1 + q tau)^-(r+x)) / q] with tau = z / (1-z). With a >= 100
// Beta(a, b+x) is close to normal, so three-point Gauss-Hermite quadrature
// (exact for quintics) agrees with the series to ~1e-5 where both work.
double bgnbd_expectation_large_a(const BgNbdParams& p, double x, double log1mz) {
  const double tau = std::expm1(-log1mz);
  const double k = p.r + x;
  const double bx = p.b + x;
  const double mean = p.a / (p.a + bx);
  const double sd = std::sqrt(mean * (1 - mean) / (p.a + bx + 1));
  const auto g = [&](double q) { return -std::expm1(-k * std::log1p(q * tau)) / q; };
  const double d = std::sqrt(3.0) * sd;
  if (!(mean - d > 0 && mean + d < 1)) return g(mean);
  return (2.0 / 3.0) * g(mean) + (g(mean - d) + g(mean + d)) / 6.0;
}

double bgnbd_expectation_core(const BgNbdParams& p, double x, double z, double log1mz) {
  const double eps = p.a - 1;
  if (p.a >= 100 && (eps * -log1mz > 200 || eps * z > 1e5 * (1 - z))) {
    return bgnbd_expectation_large_a(p, x, log1mz);
  }
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
  bool converged = false;
  int evaluations = 0;  // set by minimise_with_gradient
  bool at_bound = false;
};

// What one fit may cost: degenerate data (every customer alike, say) have their
// maximum at infinity (a, b or alpha -> inf), where BFGS creeps along a ridge
// and Nelder-Mead restarts without end. Every log-parameter is kept within
// +-kLogBound (the objective is +inf outside), and the optimisers stop when
// `used` reaches `limit` evaluations.
constexpr double kLogBound = kFitLogBound;
constexpr int kMaxEvaluations = kMaxFitEvaluations;
struct Budget {
  int used = 0;
  int limit = kMaxEvaluations;
  bool exhausted() const { return used >= limit; }
};

// Nelder-Mead simplex minimisation (standard coefficients), from `start`.
Minimum nelder_mead(const Objective& f, std::vector<double> start, double step, int max_iterations,
                    const Budget& budget) {
  const std::size_t n = start.size();
  std::vector<std::vector<double>> simplex(n + 1, start);
  std::vector<double> values(n + 1);
  for (std::size_t i = 0; i < n; ++i) simplex[i + 1][i] += step;
  for (std::size_t i = 0; i <= n; ++i) values[i] = f(simplex[i]);
  std::vector<std::size_t> order(n + 1);
  std::vector<double> centroid(n), trial(n), trial2(n);
  int it = 0;
  bool out_of_budget = false;
  for (; it < max_iterations; ++it) {
    if (budget.exhausted()) {
      out_of_budget = true;
      break;
    }
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
  return Minimum{simplex[best], values[best], it, !out_of_budget && it < max_iterations};
}

// Restarts Nelder-Mead from its own optimum until the value stops improving.
Minimum minimise(const Objective& f, std::vector<double> start, double step, const Budget& budget) {
  Minimum m = nelder_mead(f, std::move(start), step, 5000, budget);
  int total = m.iterations;
  for (int restart = 0; restart < 20 && !budget.exhausted(); ++restart) {
    Minimum again = nelder_mead(f, m.point, 0.1, 5000, budget);
    total += again.iterations;
    const bool improved = again.value < m.value - 1e-9 * (std::abs(m.value) + 1);
    if (again.value < m.value) m = std::move(again);
    if (!improved) {
      m.converged = m.converged && again.converged;
      break;
    }
  }
  m.iterations = total;
  return m;
}

// An objective with its gradient: returns f(x) (+inf where undefined) and sets `g`.
using ObjectiveWithGradient = std::function<double(const std::vector<double>& x, std::vector<double>& g)>;

double dot(const std::vector<double>& u, const std::vector<double>& v) {
  double s = 0;
  for (std::size_t i = 0; i < u.size(); ++i) s += u[i] * v[i];
  return s;
}

double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double e : v) m = std::max(m, std::abs(e));
  return m;
}

// BFGS (inverse-Hessian form) with a backtracking line search whose steps are
// at most 1 in every coordinate (a factor e in a log-parameter). Converged
// when every gradient component is at most `gtol`, or when no step is found
// any more and the gradient is at most 1000 gtol (f at its rounding floor).
// Also stops (converged only if the gradient is at most 1000 gtol) when f has
// improved by less than 1e-10 of itself in each of 20 consecutive iterations (a
// ridge towards a maximum at infinity), or when the budget is spent.
Minimum bfgs(const ObjectiveWithGradient& fg, std::vector<double> x, double gtol, int max_iterations,
             const Budget& budget) {
  const std::size_t n = x.size();
  std::vector<double> g(n), x_new(n), g_new(n), d(n), s(n), y(n), hy(n);
  std::vector<double> h(n * n, 0.0);
  const auto reset = [&] {
    std::fill(h.begin(), h.end(), 0.0);
    for (std::size_t i = 0; i < n; ++i) h[i * n + i] = 1.0;
  };
  reset();
  bool scaled = false;
  double f = fg(x, g);
  Minimum out{x, f, 0, false};
  if (!std::isfinite(f)) return out;
  int it = 0;
  int stalled = 0;
  for (; it < max_iterations; ++it) {
    if (max_abs(g) <= gtol) {
      out.converged = true;
      break;
    }
    if (budget.exhausted()) break;
    for (std::size_t i = 0; i < n; ++i) {
      d[i] = 0;
      for (std::size_t j = 0; j < n; ++j) d[i] -= h[i * n + j] * g[j];
    }
    double slope = dot(g, d);
    if (!(slope < 0)) {  // not a descent direction: start again from steepest descent
      reset();
      scaled = false;
      for (std::size_t i = 0; i < n; ++i) d[i] = -g[i];
      slope = dot(g, d);
    }
    double step = std::min(1.0, 1.0 / max_abs(d));
    double f_new = 0;
    bool accepted = false;
    for (int tries = 0; tries < 60 && !budget.exhausted(); ++tries) {
      for (std::size_t i = 0; i < n; ++i) x_new[i] = x[i] + step * d[i];
      f_new = fg(x_new, g_new);
      // Armijo; or, where f changes by no more than its rounding noise, the
      // approximate Wolfe condition of Hager & Zhang on the slope along d
      // (the gradient stays accurate when differences of f no longer are).
      if (std::isfinite(f_new) &&
          (f_new <= f + 1e-4 * step * slope || (f_new <= f + 1e-12 * std::abs(f) && dot(g_new, d) <= -0.8 * slope))) {
        accepted = true;
        break;
      }
      // Minimum of the quadratic through f, the slope and f_new, kept within [0.1, 0.5] of the step.
      double next = 0.5 * step;
      if (std::isfinite(f_new)) {
        const double q = -slope * step * step / (2 * (f_new - f - slope * step));
        if (std::isfinite(q)) next = std::clamp(q, 0.1 * step, 0.5 * step);
      }
      step = next;
    }
    if (!accepted) {
      out.converged = max_abs(g) <= 1000 * gtol;
      break;
    }
    if (x_new == x) {  // the step vanished in rounding
      out.converged = max_abs(g) <= 1000 * gtol;
      break;
    }
    for (std::size_t i = 0; i < n; ++i) {
      s[i] = x_new[i] - x[i];
      y[i] = g_new[i] - g[i];
    }
    const double sy = dot(s, y);
    if (sy > 1e-12 * std::sqrt(dot(s, s) * dot(y, y))) {
      if (!scaled) {  // the first update: scale the identity to the observed curvature
        const double gamma = sy / dot(y, y);
        for (double& e : h) e *= gamma;
        scaled = true;
      }
      // H <- (I - rho s y') H (I - rho y s') + rho s s'
      const double rho = 1.0 / sy;
      for (std::size_t i = 0; i < n; ++i) {
        hy[i] = 0;
        for (std::size_t j = 0; j < n; ++j) hy[i] += h[i * n + j] * y[j];
      }
      const double yhy = dot(y, hy);
      for (std::size_t i = 0; i < n; ++i) {
        for (std::size_t j = 0; j < n; ++j) {
          h[i * n + j] += -rho * (s[i] * hy[j] + hy[i] * s[j]) + (rho * rho * yhy + rho) * s[i] * s[j];
        }
      }
    }
    stalled = f - f_new < 1e-10 * (std::abs(f) + 1e-300) ? stalled + 1 : 0;
    x.swap(x_new);
    g.swap(g_new);
    f = f_new;
    if (stalled >= 20) {
      out.converged = max_abs(g) <= 1000 * gtol;
      ++it;
      break;
    }
  }
  out.point = x;
  out.value = f;
  out.iterations = it;
  return out;
}

// BFGS from `start`; Nelder-Mead from its best point when it does not converge.
// Within the box |log theta| <= kLogBound and the evaluation budget; a result
// at the edge of the box (the likelihood still rising towards infinity or
// zero) is reported as not converged, with at_bound set.
Minimum minimise_with_gradient(const ObjectiveWithGradient& fg, std::vector<double> start, double gtol) {
  Budget budget;
  const ObjectiveWithGradient boxed = [&](const std::vector<double>& x, std::vector<double>& g) {
    ++budget.used;
    for (double e : x) {
      if (!(std::abs(e) <= kLogBound)) return std::numeric_limits<double>::infinity();
    }
    return fg(x, g);
  };
  Minimum m = bfgs(boxed, std::move(start), gtol, 500, budget);
  if (!m.converged) {
    std::vector<double> unused(m.point.size());
    const Objective f = [&](const std::vector<double>& x) { return boxed(x, unused); };
    const bool finite_start = std::isfinite(m.value);
    Minimum polished = minimise(f, m.point, finite_start ? 0.1 : 0.5, budget);
    polished.iterations += m.iterations;
    if (polished.value <= m.value || !std::isfinite(m.value)) {
      m = std::move(polished);
    } else {
      m.iterations = polished.iterations;
    }
  }
  m.evaluations = budget.used;
  for (double e : m.point) m.at_bound = m.at_bound || std::abs(e) > kLogBound - 0.5;
  if (m.at_bound) m.converged = false;
  return m;
}

// Digamma function for x > 0 (recurrence up to 10, then the asymptotic series; error < 1e-13).
double digamma(double x) {
  double result = 0;
  while (x < 10) {
    result -= 1 / x;
    x += 1;
  }
  const double f = 1 / (x * x);
  return result + std::log(x) - 0.5 / x -
         f * (1.0 / 12 - f * (1.0 / 120 - f * (1.0 / 252 - f * (1.0 / 240 - f * (1.0 / 132)))));
}

// The BG/NBD data reduced to what the likelihood depends on: customers
// without repeat purchases by T, repeat customers by distinct (x, t_x, T),
// with every time value indexed into one table of distinct times and every x
// into a table of distinct x, so an evaluation takes one log per distinct
// time, a few lgamma/digamma per distinct x and one exp + one log1p per
// distinct repeat customer.
struct BgNbdData {
  std::vector<double> times;  // distinct T and t_x values, ascending
  std::vector<double> xs;     // distinct x > 0, ascending
  struct Single {
    std::uint32_t T;
    double count;
  };
  struct Repeat {
    std::uint32_t x, t_x, T;
    double count;
  };
  std::vector<Single> singles;
  std::vector<Repeat> repeats;
  double customers = 0;
};

std::uint32_t index_of(const std::vector<double>& sorted, double v) {
  return static_cast<std::uint32_t>(std::lower_bound(sorted.begin(), sorted.end(), v) - sorted.begin());
}

BgNbdData reduce_bgnbd(std::vector<PurchaseSummary>& data) {
  BgNbdData out;
  out.customers = static_cast<double>(data.size());
  std::sort(data.begin(), data.end(), [](const PurchaseSummary& l, const PurchaseSummary& r) {
    if (l.x != r.x) return l.x < r.x;
    if (l.T != r.T) return l.T < r.T;
    return l.t_x < r.t_x;
  });
  for (const PurchaseSummary& c : data) {
    out.times.push_back(c.T);
    if (c.x > 0) {
      out.times.push_back(c.t_x);
      if (out.xs.empty() || out.xs.back() != c.x) out.xs.push_back(c.x);
    }
  }
  std::sort(out.times.begin(), out.times.end());
  out.times.erase(std::unique(out.times.begin(), out.times.end()), out.times.end());
  for (std::size_t i = 0; i < data.size();) {
    std::size_t j = i;
    while (j < data.size() && data[j].x == data[i].x && data[j].T == data[i].T &&
           (data[i].x == 0 || data[j].t_x == data[i].t_x)) {
      ++j;
    }
    const auto count = static_cast<double>(j - i);
    const PurchaseSummary& c = data[i];
    if (c.x == 0) {
      out.singles.push_back({index_of(out.times, c.T), count});
    } else {
      out.repeats.push_back({index_of(out.xs, c.x), index_of(out.times, c.t_x), index_of(out.times, c.T), count});
    }
    i = j;
  }
  return out;
}

// -LL / customers and its gradient in (log r, log alpha, log a, log b).
double bgnbd_objective(const BgNbdData& data, const std::vector<double>& theta, std::vector<double>& grad) {
  const double r = std::exp(theta[0]), alpha = std::exp(theta[1]), a = std::exp(theta[2]), b = std::exp(theta[3]);
  if (!(r > 0 && alpha > 0 && a > 0 && b > 0) || !std::isfinite(r + alpha + a + b)) {
    return std::numeric_limits<double>::infinity();
  }
  const double log_alpha = std::log(alpha);
  std::vector<double> log_time(data.times.size()), inv_time(data.times.size());
  for (std::size_t i = 0; i < data.times.size(); ++i) {
    log_time[i] = std::log(alpha + data.times[i]);
    inv_time[i] = 1 / (alpha + data.times[i]);
  }
  double ll = 0, g_r = 0, g_alpha = 0, g_a = 0, g_b = 0;
  for (const BgNbdData::Single& s : data.singles) {  // x = 0: r (log alpha - log(alpha + T))
    ll += s.count * r * (log_alpha - log_time[s.T]);
    g_r += s.count * (log_alpha - log_time[s.T]);
    g_alpha += s.count * (r / alpha - r * inv_time[s.T]);
  }
  struct PerX {
    double constant, log_q, d_r, d_a, d_b, inv_bx1;
  };
  std::vector<PerX> per_x(data.xs.size());
  const double lg_r = std::lgamma(r), lg_ab = std::lgamma(a + b), lg_b = std::lgamma(b);
  const double dg_r = digamma(r), dg_ab = digamma(a + b), dg_b = digamma(b);
  for (std::size_t j = 0; j < data.xs.size(); ++j) {
    const double x = data.xs[j];
    const double dg_abx = digamma(a + b + x);
    per_x[j] =
        PerX{std::lgamma(r + x) - lg_r + r * log_alpha + lg_ab + std::lgamma(b + x) - lg_b - std::lgamma(a + b + x),
             std::log(a) - std::log(b + x - 1),
             digamma(r + x) - dg_r + log_alpha,
             dg_ab - dg_abx,
             dg_ab + digamma(b + x) - dg_b - dg_abx,
             1 / (b + x - 1)};
  }
  for (const BgNbdData::Repeat& c : data.repeats) {
    const PerX& px = per_x[c.x];
    const double rx = r + data.xs[c.x];
    const double lT = log_time[c.T], lt = log_time[c.t_x];
    // log(e^A3 + e^A4) with A3 = -(r+x) log(alpha+T), A4 = log q - (r+x) log(alpha+t_x); w = share of A4.
    const double d = px.log_q + rx * (lT - lt);
    const double e = std::exp(-std::abs(d));
    const double w = d > 0 ? 1 / (1 + e) : e / (1 + e);
    ll += c.count * (px.constant - rx * lT + std::max(d, 0.0) + std::log1p(e));
    g_r += c.count * (px.d_r - (1 - w) * lT - w * lt);
    g_alpha += c.count * (r / alpha - rx * ((1 - w) * inv_time[c.T] + w * inv_time[c.t_x]));
    g_a += c.count * (px.d_a + w / a);
    g_b += c.count * (px.d_b - w * px.inv_bx1);
  }
  if (!std::isfinite(ll)) return std::numeric_limits<double>::infinity();
  const double n = data.customers;
  grad = {-g_r * r / n, -g_alpha * alpha / n, -g_a * a / n, -g_b * b / n};
  return -ll / n;
}

// The Gamma-Gamma data: repeat customers by distinct x, and per customer x * mean spend.
struct GammaGammaData {
  std::vector<double> xs;      // distinct x, ascending
  std::vector<double> counts;  // customers per distinct x
  struct Customer {
    std::uint32_t x;
    double spend;  // x * mean spend
  };
  std::vector<Customer> customers;
  double sum_x_log_z = 0, sum_log_z = 0, sum_x_log_x = 0;  // sums of x log(mean spend), log(mean spend), x log x
  double n = 0;
};

GammaGammaData reduce_gamma_gamma(std::vector<PurchaseSummary>& data) {
  GammaGammaData out;
  out.n = static_cast<double>(data.size());
  std::sort(data.begin(), data.end(), [](const PurchaseSummary& l, const PurchaseSummary& r) { return l.x < r.x; });
  out.customers.reserve(data.size());
  for (const PurchaseSummary& c : data) {
    if (out.xs.empty() || out.xs.back() != c.x) {
      out.xs.push_back(c.x);
      out.counts.push_back(0);
    }
    out.counts.back() += 1;
    out.customers.push_back({static_cast<std::uint32_t>(out.xs.size() - 1), c.x * c.mean_spend});
    const double log_z = std::log(c.mean_spend);
    out.sum_x_log_z += c.x * log_z;
    out.sum_log_z += log_z;
    out.sum_x_log_x += c.x * std::log(c.x);
  }
  return out;
}

// -LL / customers and its gradient in (log p, log q, log gamma).
double gamma_gamma_objective(const GammaGammaData& data, const std::vector<double>& theta, std::vector<double>& grad) {
  const double p = std::exp(theta[0]), q = std::exp(theta[1]), gamma = std::exp(theta[2]);
  if (!(p > 0 && q > 0 && gamma > 0) || !std::isfinite(p + q + gamma)) return std::numeric_limits<double>::infinity();
  const double log_gamma = std::log(gamma);
  const double lg_q = std::lgamma(q), dg_q = digamma(q);
  // Per customer: (px+q) log(gamma + x z); the rest by distinct x or from the precomputed sums.
  double sum_log = 0, sum_x_log = 0, sum_inv = 0, sum_x_inv = 0;
  for (const GammaGammaData::Customer& c : data.customers) {
    const double x = data.xs[c.x];
    const double l = std::log(gamma + c.spend);
    const double inv = 1 / (gamma + c.spend);
    sum_log += l;
    sum_x_log += x * l;
    sum_inv += inv;
    sum_x_inv += x * inv;
  }
  double ll = p * data.sum_x_log_z - data.sum_log_z + p * data.sum_x_log_x - p * sum_x_log - q * sum_log +
              data.n * (q * log_gamma - lg_q);
  double g_p = data.sum_x_log_z + data.sum_x_log_x - sum_x_log;
  double g_q = data.n * (log_gamma - dg_q) - sum_log;
  const double g_gamma = data.n * q / gamma - p * sum_x_inv - q * sum_inv;
  for (std::size_t j = 0; j < data.xs.size(); ++j) {
    const double x = data.xs[j], n = data.counts[j];
    ll += n * (std::lgamma(p * x + q) - std::lgamma(p * x));
    const double dg = digamma(p * x + q);
    g_p += n * x * (dg - digamma(p * x));
    g_q += n * dg;
  }
  if (!std::isfinite(ll)) return std::numeric_limits<double>::infinity();
  grad = {-g_p * p / data.n, -g_q * q / data.n, -g_gamma * gamma / data.n};
  return -ll / data.n;
}

// Gradient tolerance of the per-customer objectives.
constexpr double kGradientTolerance = 1e-9;

bool valid(const PurchaseSummary& c) {
  return std::isfinite(c.x) && std::isfinite(c.t_x) && std::isfinite(c.T) && c.x >= 0 && c.t_x >= 0 && c.T >= c.t_x;
}

// The customers each fit uses (the same filters as fit_readiness).
bool bgnbd_usable(const PurchaseSummary& c) { return valid(c) && !(c.x > 0 && c.x < 1); }
bool gamma_gamma_usable(const PurchaseSummary& c) {
  return valid(c) && c.x >= 1 && c.mean_spend > 0 && std::isfinite(c.mean_spend);
}

// Standard errors from the observed information at `theta` (log-parameters): the Hessian of
// the per-customer objective (-LL / n) by central differences of its analytic gradient,
// symmetrised, times n; its inverse is the covariance of the log-parameters (Cholesky, which
// also checks that it is positive definite). The delta method gives the parameters' own
// standard errors: se(e^t) = e^t se(t).
Status observed_standard_errors(const ObjectiveWithGradient& fg, const std::vector<double>& theta, double n,
                                std::vector<double>& log_se, std::vector<double>& se) {
  const std::size_t k = theta.size();
  constexpr double h = 1e-4;
  std::vector<double> info(k * k), plus(k), minus(k), t(theta);
  for (std::size_t i = 0; i < k; ++i) {
    t[i] = theta[i] + h;
    const double f_plus = fg(t, plus);
    t[i] = theta[i] - h;
    const double f_minus = fg(t, minus);
    t[i] = theta[i];
    if (!std::isfinite(f_plus) || !std::isfinite(f_minus)) {
      return Status::Error("the likelihood is not finite next to these parameters");
    }
    for (std::size_t j = 0; j < k; ++j) info[i * k + j] = n * (plus[j] - minus[j]) / (2 * h);
  }
  // Cholesky: info = L L'.
  std::vector<double> l(k * k, 0.0);
  for (std::size_t i = 0; i < k; ++i) {
    for (std::size_t j = 0; j <= i; ++j) {
      double sum = 0.5 * (info[i * k + j] + info[j * k + i]);
      for (std::size_t m = 0; m < j; ++m) sum -= l[i * k + m] * l[j * k + m];
      if (i == j) {
        if (!(sum > 0) || !std::isfinite(sum)) {
          return Status::Error(
              "the observed information is not positive definite: these parameters are not a maximum of the "
              "likelihood, or the data do not identify the model");
        }
        l[i * k + i] = std::sqrt(sum);
      } else {
        l[i * k + j] = sum / l[j * k + j];
      }
    }
  }
  // Variance of t_i = || L^-1 e_i ||^2 (forward substitution per unit vector).
  log_se.assign(k, 0.0);
  se.assign(k, 0.0);
  std::vector<double> y(k);
  for (std::size_t i = 0; i < k; ++i) {
    double var = 0;
    for (std::size_t r = 0; r < k; ++r) {
      double v = r == i ? 1.0 : 0.0;
      for (std::size_t m = 0; m < r; ++m) v -= l[r * k + m] * y[m];
      y[r] = v / l[r * k + r];
      var += y[r] * y[r];
    }
    log_se[i] = std::sqrt(var);
    se[i] = std::exp(theta[i]) * log_se[i];
  }
  return Status::Ok();
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
    if (!bgnbd_usable(c)) continue;
    data.push_back(c);
    mean_T += c.T;
    if (c.x > 0) ++repeaters;
  }
  if (data.size() < kMinFitCustomers || repeaters < kMinFitRepeaters) {
    return Status::NotReady("cannot fit BG/NBD: need at least " + std::to_string(kMinFitCustomers) +
                            " customers with " + std::to_string(kMinFitRepeaters) + " repeat purchasers; have " +
                            std::to_string(data.size()) + " customers, " + std::to_string(repeaters) + " repeaters");
  }
  mean_T = std::max(mean_T / static_cast<double>(data.size()), 1e-3);
  const std::uint64_t used = data.size();
  const BgNbdData reduced = reduce_bgnbd(data);
  const ObjectiveWithGradient objective = [&](const std::vector<double>& theta, std::vector<double>& grad) {
    return bgnbd_objective(reduced, theta, grad);
  };
  const Minimum m = minimise_with_gradient(objective, {0.0, std::log(mean_T), 0.0, 0.0}, kGradientTolerance);
  BgNbdFit fit;
  fit.params = {std::exp(m.point[0]), std::exp(m.point[1]), std::exp(m.point[2]), std::exp(m.point[3])};
  fit.log_likelihood = -m.value * reduced.customers;
  fit.iterations = m.iterations;
  fit.converged = m.converged;
  fit.evaluations = m.evaluations;
  fit.at_bound = m.at_bound;
  fit.customers = used;
  if (!std::isfinite(fit.log_likelihood)) return Status::Error("BG/NBD fit did not converge");
  return fit;
}

FitReadiness fit_readiness(std::span<const PurchaseSummary> customers) {
  FitReadiness r;
  for (const PurchaseSummary& c : customers) {
    if (!valid(c) || (c.x > 0 && c.x < 1)) continue;
    ++r.customers;
    if (c.x <= 0) continue;
    ++r.repeaters;
    if (c.mean_spend > 0 && std::isfinite(c.mean_spend)) ++r.repeaters_with_spend;
  }
  return r;
}

Result<GammaGammaFit> fit_gamma_gamma(std::span<const PurchaseSummary> customers) {
  std::vector<PurchaseSummary> data;
  double mean_spend = 0;
  for (const PurchaseSummary& c : customers) {
    if (!gamma_gamma_usable(c)) continue;
    data.push_back(c);
    mean_spend += c.mean_spend;
  }
  if (data.size() < kMinFitRepeaters) {
    return Status::NotReady("cannot fit Gamma-Gamma: need at least " + std::to_string(kMinFitRepeaters) +
                            " repeat customers with spend; have " + std::to_string(data.size()));
  }
  mean_spend /= static_cast<double>(data.size());
  const std::uint64_t used = data.size();
  const GammaGammaData reduced = reduce_gamma_gamma(data);
  const ObjectiveWithGradient objective = [&](const std::vector<double>& theta, std::vector<double>& grad) {
    return gamma_gamma_objective(reduced, theta, grad);
  };
  const Minimum m = minimise_with_gradient(objective, {0.0, std::log(2.0), std::log(mean_spend)}, kGradientTolerance);
  GammaGammaFit fit;
  fit.params = {std::exp(m.point[0]), std::exp(m.point[1]), std::exp(m.point[2])};
  fit.log_likelihood = -m.value * reduced.n;
  fit.iterations = m.iterations;
  fit.converged = m.converged;
  fit.evaluations = m.evaluations;
  fit.at_bound = m.at_bound;
  fit.customers = used;
  if (!std::isfinite(fit.log_likelihood)) return Status::Error("Gamma-Gamma fit did not converge");
  return fit;
}

Result<BgNbdStandardErrors> bgnbd_standard_errors(const BgNbdParams& estimate,
                                                  std::span<const PurchaseSummary> customers) {
  if (!(estimate.r > 0 && estimate.alpha > 0 && estimate.a > 0 && estimate.b > 0)) {
    return Status::Error("BG/NBD standard errors need positive parameters");
  }
  std::vector<PurchaseSummary> data;
  for (const PurchaseSummary& c : customers) {
    if (bgnbd_usable(c)) data.push_back(c);
  }
  if (data.empty()) return Status::NotReady("BG/NBD standard errors need customers");
  const BgNbdData reduced = reduce_bgnbd(data);
  const ObjectiveWithGradient objective = [&](const std::vector<double>& theta, std::vector<double>& grad) {
    return bgnbd_objective(reduced, theta, grad);
  };
  std::vector<double> log_se, se;
  const Status s = observed_standard_errors(
      objective, {std::log(estimate.r), std::log(estimate.alpha), std::log(estimate.a), std::log(estimate.b)},
      reduced.customers, log_se, se);
  if (!s.ok()) return Status::Error("BG/NBD standard errors: " + s.message());
  return BgNbdStandardErrors{{se[0], se[1], se[2], se[3]}, {log_se[0], log_se[1], log_se[2], log_se[3]}};
}

Result<GammaGammaStandardErrors> gamma_gamma_standard_errors(const GammaGammaParams& estimate,
                                                             std::span<const PurchaseSummary> customers) {
  if (!(estimate.p > 0 && estimate.q > 0 && estimate.gamma > 0)) {
    return Status::Error("Gamma-Gamma standard errors need positive parameters");
  }
  std::vector<PurchaseSummary> data;
  for (const PurchaseSummary& c : customers) {
    if (gamma_gamma_usable(c)) data.push_back(c);
  }
  if (data.empty()) return Status::NotReady("Gamma-Gamma standard errors need repeat customers with spend");
  const GammaGammaData reduced = reduce_gamma_gamma(data);
  const ObjectiveWithGradient objective = [&](const std::vector<double>& theta, std::vector<double>& grad) {
    return gamma_gamma_objective(reduced, theta, grad);
  };
  std::vector<double> log_se, se;
  const Status s = observed_standard_errors(
      objective, {std::log(estimate.p), std::log(estimate.q), std::log(estimate.gamma)}, reduced.n, log_se, se);
  if (!s.ok()) return Status::Error("Gamma-Gamma standard errors: " + s.message());
  return GammaGammaStandardErrors{{se[0], se[1], se[2]}, {log_se[0], log_se[1], log_se[2]}};
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
    case Tier::kPlatinum:
      return "platinum";
    case Tier::kGold:
      return "gold";
    case Tier::kIron:
      return "iron";
    case Tier::kLead:
      return "lead";
    case Tier::kUnranked:
      return "unranked";
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
  model.platinum_fraction = config.platinum_fraction;
  model.gold_fraction = config.gold_fraction;
  if (clvs.empty()) {
    model.platinum_min_clv = model.gold_min_clv = inf;
    return;
  }
  std::sort(clvs.begin(), clvs.end(), std::greater<>());
  const auto n = clvs.size();
  // The k-th largest value is the threshold of the top k customers (ties join the higher tier).
  const auto platinum = static_cast<std::size_t>(std::floor(config.platinum_fraction * static_cast<double>(n)));
  const auto gold =
      static_cast<std::size_t>(std::floor((config.platinum_fraction + config.gold_fraction) * static_cast<double>(n)));
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
  // Version 2.
  put(out, m.as_of_ms);
  put(out, m.bgnbd_customers);
  put(out, m.gamma_gamma_customers);
  put(out, m.bgnbd_iterations);
  put(out, m.gamma_gamma_iterations);
  put(out, static_cast<std::uint8_t>(m.bgnbd_converged));
  put(out, static_cast<std::uint8_t>(m.gamma_gamma_converged));
  put(out, m.platinum_fraction);
  put(out, m.gold_fraction);
  return out;
}

Status deserialize(std::string_view bytes, ValueModel& m) {
  const auto version = bytes.empty() ? std::uint8_t{0} : static_cast<std::uint8_t>(bytes[0]);
  if (version != 1 && version != ValueModel::kFormatVersion) {
    return Status::Error("value model record has an unknown format version");
  }
  ValueModel t;
  t.version = version;
  std::size_t pos = 1;
  auto get = [&](auto& v) {
    if (bytes.size() - pos < sizeof(v)) return false;
    std::memcpy(&v, bytes.data() + pos, sizeof(v));
    pos += sizeof(v);
    return true;
  };
  bool ok = get(t.bgnbd) && get(t.gamma_gamma) && get(t.bgnbd_log_likelihood) && get(t.gamma_gamma_log_likelihood) &&
            get(t.fitted_at_ms) && get(t.fit_seconds) && get(t.customers) && get(t.repeat_customers) &&
            get(t.platinum_min_clv) && get(t.gold_min_clv);
  if (version == 1) {
    t.as_of_ms = t.fitted_at_ms;  // version 1 fitted "as of" the time it recorded as the fit time
  } else {
    std::uint8_t bgnbd_converged = 0, gamma_gamma_converged = 0;
    ok = ok && get(t.as_of_ms) && get(t.bgnbd_customers) && get(t.gamma_gamma_customers) && get(t.bgnbd_iterations) &&
         get(t.gamma_gamma_iterations) && get(bgnbd_converged) && get(gamma_gamma_converged) &&
         get(t.platinum_fraction) && get(t.gold_fraction);
    if (bgnbd_converged > 1 || gamma_gamma_converged > 1) ok = false;
    t.bgnbd_converged = bgnbd_converged == 1;
    t.gamma_gamma_converged = gamma_gamma_converged == 1;
  }
  if (!ok || pos != bytes.size()) return Status::Error("value model record is truncated or has trailing bytes");
  m = t;
  return Status::Ok();
}

}  // namespace rapport
