// Simulation of BG/NBD + Gamma-Gamma customers from known parameters: a
// portable random source with its own samplers (the std:: distributions are
// implementation-defined; these give the same draws everywhere), one
// customer's purchase process, and whole populations of purchase summaries.
// Used by `rapportctl generate --model bgnbd` (daemon/value_generator.cc), the
// value-model tests and the fit benchmark, so all three draw from the same process.
// Pure: no I/O, no clocks; header-only.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "scoring/value_model.h"

namespace rapport {

// The CDNOW estimates of Fader, Hardie & Lee (2005) and of the Gamma-Gamma
// spend model on the same data, in days: r = 0.243, alpha = 4.414 weeks x 7,
// a = 0.793, b = 2.426; p = 6.25, q = 3.74, gamma = 15.44.
inline constexpr BgNbdParams kCdnowBgNbdDays{0.243, 4.414 * 7, 0.793, 2.426};
inline constexpr GammaGammaParams kCdnowGammaGamma{6.25, 3.74, 15.44};

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
  // Poisson(mean) by counting exponential arrivals (for small means).
  int poisson(double mean) {
    int k = 0;
    for (double t = exponential(1.0); t < mean; t += exponential(1.0)) ++k;
    return k;
  }

 private:
  std::mt19937_64 engine_;  // its output sequence is fixed by the standard
};

// One customer of a BG/NBD + Gamma-Gamma world. Latent traits: purchase rate
// lambda ~ Gamma(r, rate alpha), dropout probability p ~ Beta(a, b), spend
// rate nu ~ Gamma(q, rate gamma). The first purchase is at time 0; repeat
// purchases arrive at rate lambda, and after each repeat purchase the customer
// drops out with probability p. Each repeat purchase spends Gamma(p_spend, rate nu).
struct SimulatedCustomer {
  double lambda = 0, dropout = 0, nu = 0;
  std::vector<double> times;   // repeat purchase times in (0, T]
  std::vector<double> spends;  // their amounts
  bool dropped = false;        // dropped out at the last repeat purchase (before T)
};

// Draws the customer's latent traits (clears the purchases).
inline void draw_customer_traits(Rng& rng, const BgNbdParams& bg, const GammaGammaParams& gg, SimulatedCustomer& c) {
  c.lambda = rng.gamma(bg.r) / bg.alpha;
  c.dropout = rng.beta(bg.a, bg.b);
  c.nu = rng.gamma(gg.q) / gg.gamma;
  c.times.clear();
  c.spends.clear();
  c.dropped = false;
}

// Runs the repeat purchases of a customer with traits drawn, up to T.
inline void simulate_purchases(Rng& rng, const GammaGammaParams& gg, double T, SimulatedCustomer& c) {
  double t = 0;
  for (;;) {
    t += rng.exponential(c.lambda);
    if (t > T) break;
    c.times.push_back(t);
    c.spends.push_back(rng.gamma(gg.p) / c.nu);
    if (rng.uniform() < c.dropout) {
      c.dropped = true;
      break;
    }
  }
}

// `n` customers observed for T ~ Uniform(T_min, T_max) after their first purchase.
inline std::vector<PurchaseSummary> simulate_customers(const BgNbdParams& bg, const GammaGammaParams& gg, int n,
                                                       double T_min, double T_max, std::uint64_t seed) {
  Rng rng(seed);
  std::vector<PurchaseSummary> out;
  out.reserve(static_cast<std::size_t>(n));
  SimulatedCustomer sim;
  for (int i = 0; i < n; ++i) {
    draw_customer_traits(rng, bg, gg, sim);
    PurchaseSummary c;
    c.T = T_min + (T_max - T_min) * rng.uniform();
    simulate_purchases(rng, gg, c.T, sim);
    double spend = 0;
    for (double s : sim.spends) spend += s;
    c.x = static_cast<double>(sim.times.size());
    c.t_x = sim.times.empty() ? 0 : sim.times.back();
    c.mean_spend = c.x > 0 ? spend / c.x : 0;
    out.push_back(c);
  }
  return out;
}

}  // namespace rapport
