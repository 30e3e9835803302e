// Simulation of BG/NBD + Gamma-Gamma customers from known parameters, for the
// value-model tests and benchmarks: a portable random source with its own
// samplers (the std:: distributions are implementation-defined; these give the
// same draws everywhere). No GoogleTest here, so benchmarks can use it too.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "scoring/value_model.h"

namespace rapport::testing {

class Rng {
 public:
  explicit Rng(std::uint64_t seed) : engine_(seed) {}
  double uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }  // [0, 1)
  double uniform_positive() {
    double u = 0;
    while (u == 0) u = uniform();
    return u;
  }
  double exponential(double rate) { return -std::log(uniform_positive()) / rate; }
  double normal() {  // Box-Muller
    const double u = uniform_positive(), v = uniform();
    return std::sqrt(-2 * std::log(u)) * std::cos(2 * M_PI * v);
  }
  // Gamma(shape, rate 1): Marsaglia & Tsang, with the u^(1/shape) boost below shape 1.
  double gamma(double shape) {
    if (shape < 1) return gamma(shape + 1) * std::pow(uniform_positive(), 1 / shape);
    const double d = shape - 1.0 / 3, c = 1 / std::sqrt(9 * d);
    for (;;) {
      double x = 0, v = 0;
      do {
        x = normal();
        v = 1 + c * x;
      } while (v <= 0);
      v = v * v * v;
      const double u = uniform_positive();
      if (std::log(u) < 0.5 * x * x + d - d * v + d * std::log(v)) return d * v;
    }
  }
  double beta(double a, double b) {
    const double x = gamma(a);
    return x / (x + gamma(b));
  }

 private:
  std::mt19937_64 engine_;  // its output sequence is fixed by the standard
};

// Customers of a BG/NBD world: rate lambda ~ Gamma(r, rate alpha), dropout
// probability p ~ Beta(a, b); after the first purchase (time 0) purchases
// arrive at rate lambda and after each repeat purchase the customer drops out
// with probability p. Observed up to T ~ Uniform(T_min, T_max). Spend per
// repeat purchase ~ Gamma(p_spend, rate nu), nu ~ Gamma(q, rate gamma).
inline std::vector<PurchaseSummary> simulate_customers(const BgNbdParams& bg, const GammaGammaParams& gg, int n,
                                                       double T_min, double T_max, std::uint64_t seed) {
  Rng rng(seed);
  std::vector<PurchaseSummary> out;
  out.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    const double lambda = rng.gamma(bg.r) / bg.alpha;
    const double p = rng.beta(bg.a, bg.b);
    const double nu = rng.gamma(gg.q) / gg.gamma;
    PurchaseSummary c;
    c.T = T_min + (T_max - T_min) * rng.uniform();
    double t = 0, spend = 0;
    for (;;) {
      t += rng.exponential(lambda);
      if (t > c.T) break;
      c.x += 1;
      c.t_x = t;
      spend += rng.gamma(gg.p) / nu;
      if (rng.uniform() < p) break;
    }
    c.mean_spend = c.x > 0 ? spend / c.x : 0;
    out.push_back(c);
  }
  return out;
}

}  // namespace rapport::testing
