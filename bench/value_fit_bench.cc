// The value model fit on a large population: BG/NBD + Gamma-Gamma maximum
// likelihood over 1 M customers simulated from known parameters (target:
// under 10 s on one core), and the CLV pass a fit runs over every customer to
// set the tier thresholds.
//
// Two populations: "days" has whole-day t_x and T as rapportd passes them
// (many customers share values, so the reduced data is small); "continuous"
// has every time distinct (the worst case for the reduction).
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "scoring/value_model.h"

namespace {

using namespace rapport;

// Portable samplers over mt19937_64 (the same draws on every library).
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : engine_(seed) {}
  double uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }
  double positive() {
    double u = 0;
    while (u == 0) u = uniform();
    return u;
  }
  double normal() { return std::sqrt(-2 * std::log(positive())) * std::cos(2 * M_PI * uniform()); }
  double gamma(double shape) {  // Marsaglia & Tsang, rate 1
    if (shape < 1) return gamma(shape + 1) * std::pow(positive(), 1 / shape);
    const double d = shape - 1.0 / 3, c = 1 / std::sqrt(9 * d);
    for (;;) {
      double x = 0, v = 0;
      do {
        x = normal();
        v = 1 + c * x;
      } while (v <= 0);
      v = v * v * v;
      if (std::log(positive()) < 0.5 * x * x + d - d * v + d * std::log(v)) return d * v;
    }
  }

 private:
  std::mt19937_64 engine_;
};

// BG/NBD + Gamma-Gamma customers in days: first purchases spread over two
// years before "now", r = 0.25, alpha = 30 days, a = 0.8, b = 2.5, spend p = 6, q = 4, gamma = 16.
std::vector<PurchaseSummary> simulate(std::size_t n, bool whole_days) {
  const BgNbdParams bg{0.25, 30.0, 0.8, 2.5};
  const GammaGammaParams gg{6.0, 4.0, 16.0};
  Rng rng(42);
  std::vector<PurchaseSummary> out(n);
  for (PurchaseSummary& c : out) {
    const double lambda = rng.gamma(bg.r) / bg.alpha;
    const double ga = rng.gamma(bg.a);
    const double p = ga / (ga + rng.gamma(bg.b));
    const double nu = rng.gamma(gg.q) / gg.gamma;
    c.T = 730 * rng.uniform();
    double t = 0, spend = 0;
    for (;;) {
      t += -std::log(rng.positive()) / lambda;
      if (t > c.T) break;
      c.x += 1;
      c.t_x = t;
      spend += rng.gamma(gg.p) / nu;
      if (rng.uniform() < p) break;
    }
    c.mean_spend = c.x > 0 ? spend / c.x : 0;
    if (whole_days) {
      c.T = std::floor(c.T);
      c.t_x = std::floor(c.t_x);
    }
  }
  return out;
}

const std::vector<PurchaseSummary>& population(bool whole_days) {
  static const std::vector<PurchaseSummary> days = simulate(1'000'000, true);
  static const std::vector<PurchaseSummary> continuous = simulate(1'000'000, false);
  return whole_days ? days : continuous;
}

// One iteration = both fits over 1 M customers (argument: 1 = whole days, 0 = continuous times).
void BM_FitValueModel1M(benchmark::State& state) {
  const auto& data = population(state.range(0) == 1);
  int bg_iterations = 0, gg_iterations = 0;
  for (auto _ : state) {
    auto bg = fit_bgnbd(data);
    auto gg = fit_gamma_gamma(data);
    if (!bg.ok() || !gg.ok() || !bg->converged || !gg->converged) {
      state.SkipWithError("fit failed or did not converge");
      return;
    }
    bg_iterations = bg->iterations;
    gg_iterations = gg->iterations;
    state.counters["r"] = bg->params.r;
    state.counters["alpha"] = bg->params.alpha;
    state.counters["a"] = bg->params.a;
    state.counters["b"] = bg->params.b;
    state.counters["p"] = gg->params.p;
    state.counters["q"] = gg->params.q;
    state.counters["gamma"] = gg->params.gamma;
    benchmark::DoNotOptimize(bg);
    benchmark::DoNotOptimize(gg);
  }
  state.counters["bg_iterations"] = bg_iterations;
  state.counters["gg_iterations"] = gg_iterations;
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(data.size()));
}
BENCHMARK(BM_FitValueModel1M)->Arg(1)->Arg(0)->ArgName("whole_days")->Unit(benchmark::kSecond)->Iterations(1);

// The CLV pass of a fit (discounted, 365-day horizon) over the same 1 M customers.
void BM_CustomerValuePass1M(benchmark::State& state) {
  const auto& data = population(true);
  ValueModel model;
  model.fitted_at_ms = 1;
  model.bgnbd = {0.25, 30.0, 0.8, 2.5};
  model.gamma_gamma = {6.0, 4.0, 16.0};
  const ValueConfig config;
  for (auto _ : state) {
    double total = 0;
    for (const PurchaseSummary& c : data) total += customer_value(model, config, c).clv;
    benchmark::DoNotOptimize(total);
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(data.size()));
}
BENCHMARK(BM_CustomerValuePass1M)->Unit(benchmark::kSecond)->Iterations(1);

}  // namespace
