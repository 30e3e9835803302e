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
#include <vector>

#include "scoring/value_model.h"
#include "tests/scoring/value_simulation.h"

namespace {

using namespace rapport;

// BG/NBD + Gamma-Gamma customers in days (tests/scoring/value_simulation.h): first purchases
// spread over two years before "now", r = 0.25, alpha = 30 days, a = 0.8, b = 2.5, spend p = 6,
// q = 4, gamma = 16; whole_days floors t_x and T as rapportd does.
std::vector<PurchaseSummary> simulate(std::size_t n, bool whole_days) {
  std::vector<PurchaseSummary> out =
      testing::simulate_customers({0.25, 30.0, 0.8, 2.5}, {6.0, 4.0, 16.0}, static_cast<int>(n), 0, 730, 42);
  if (whole_days) {
    for (PurchaseSummary& c : out) {
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
