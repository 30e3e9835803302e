// The value model fit on a large population: BG/NBD + Gamma-Gamma maximum
// likelihood over 1 M customers simulated from known parameters (target:
// under 10 s on one core), and the CLV pass a fit runs over every customer to
// set the tier thresholds.
//
// Two populations: "days" has whole-day t_x and T as rapportd passes them
// (many customers share values, so the reduced data is small); "continuous"
// has every time distinct (the worst case for the reduction).
#include <benchmark/benchmark.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "scoring/value_model.h"
#include "scoring/value_simulation.h"

namespace {

using namespace rapport;

// BG/NBD + Gamma-Gamma customers in days from scoring/value_simulation.h, the simulator behind
// `rapportctl generate --model bgnbd`, with its default parameters (the CDNOW estimates in days:
// r = 0.243, alpha = 30.9, a = 0.793, b = 2.426; spend p = 6.25, q = 3.74, gamma = 15.44) and
// first purchases spread over two years before "now"; whole_days floors t_x and T as rapportd does.
std::vector<PurchaseSummary> simulate(std::size_t n, bool whole_days) {
  std::vector<PurchaseSummary> out =
      simulate_customers(kCdnowBgNbdDays, kCdnowGammaGamma, static_cast<int>(n), 0, 730, 42);
  if (whole_days) {
    for (PurchaseSummary& c : out) {
      c.T = std::floor(c.T);
      c.t_x = std::floor(c.t_x);
    }
  }
  return out;
}

// Peak resident set size of the process so far, in MB (Linux reports ru_maxrss in KB).
double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

// Resident set size now, in MB.
double rss_mb() {
  long pages = 0, resident = 0;
  if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) / (1 << 20);
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
  const double rss_before = rss_mb();
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
  // Memory: the process's peak RSS (both 1 M populations are 32 MB each) and the input's size.
  state.counters["peak_rss_MB"] = peak_rss_mb();
  state.counters["fit_extra_MB"] = std::max(0.0, peak_rss_mb() - rss_before);  // if the fit set the peak
  state.counters["input_MB"] = static_cast<double>(data.size() * sizeof(PurchaseSummary)) / (1 << 20);
  state.counters["gg_iterations"] = gg_iterations;
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(data.size()));
}
BENCHMARK(BM_FitValueModel1M)->Arg(1)->Arg(0)->ArgName("whole_days")->Unit(benchmark::kSecond)->Iterations(1);

// The CLV pass of a fit (discounted, 365-day horizon) over the same 1 M customers.
void BM_CustomerValuePass1M(benchmark::State& state) {
  const auto& data = population(true);
  ValueModel model;
  model.fitted_at_ms = 1;
  model.bgnbd = kCdnowBgNbdDays;
  model.gamma_gamma = kCdnowGammaGamma;
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
