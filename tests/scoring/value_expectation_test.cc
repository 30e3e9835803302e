// BG/NBD expectations against independent computations: the unconditional
// expectation E[X(t)] (FHL 2005 eq. 7) against numerical integration of its
// definition, and the conditional expectation and P(alive) for large x (where
// the textbook form overflows, Fader & Hardie's #NUM! note) against the
// untransformed formula summed in log space in long double.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "scoring/value_model.h"
#include "tests/scoring/value_test_support.h"

namespace rapport {
namespace {

using ld = long double;

const BgNbdParams kCdnowWeeks{0.243, 4.414, 0.793, 2.426};

// The BG/NBD expectations from their definition. A customer with rate lambda
// and dropout probability p who is alive expects (1 - e^(-lambda p t)) / p
// purchases in the next t. Given x repeat purchases in (0, T] and alive,
// lambda ~ Gamma(r + x, alpha + T) and p ~ Beta(a, b + x); over lambda that is
// (1 - ((alpha+T)/(alpha+T + p t))^(r+x)) / p, which is integrated over p by
// tanh-sinh quadrature in long double (it copes with the p^(a-1) and
// (1-p)^(b+x-1) endpoint singularities), then times P(alive). x = T = 0 is
// the unconditional E[X(t)].
ld integrated_expectation(const BgNbdParams& prm, const PurchaseSummary& c, double t, ld h) {
  const ld shape = ld(prm.r) + c.x, scale = ld(prm.alpha) + c.T, a = prm.a, b = ld(prm.b) + c.x;
  const ld log_beta = std::lgamma(a) + std::lgamma(b) - std::lgamma(a + b);
  const ld half_pi = std::acos(ld(-1)) / 2;
  ld sum = 0;
  for (ld s = -4.5; s <= 4.5; s += h) {
    const ld u = half_pi * std::sinh(s);
    // p = (1 + tanh u)/2 and 1 - p, each without cancellation; dp/ds.
    const ld p = 1 / (1 + std::exp(-2 * u));
    const ld q = 1 / (1 + std::exp(2 * u));
    const ld dp = half_pi * std::cosh(s) / (2 * std::cosh(u) * std::cosh(u));
    if (p <= 0 || q <= 0 || !std::isfinite(dp)) continue;
    const ld per_p = -std::expm1(-shape * std::log1p(p * t / scale)) / p;
    const ld density = std::exp((a - 1) * std::log(p) + (b - 1) * std::log(q) - log_beta);
    sum += per_p * density * dp;
  }
  ld alive = 1;
  if (c.x > 0) {
    alive = 1 / (1 + std::exp(std::log(ld(prm.a) / (b - 1)) + shape * std::log((scale) / (ld(prm.alpha) + c.t_x))));
  }
  return sum * h * alive;
}

TEST(BgNbdExpectation, UnconditionalMatchesNumericalIntegration) {
  const std::vector<BgNbdParams> worlds = {
      kCdnowWeeks,                       // the paper's (a < 1)
      {0.243, 4.414 * 7, 0.793, 2.426},  // the same in days
      {1.7, 12.0, 2.5, 4.0},             // a > 1
      {0.5, 3.0, 0.3, 0.5},              // b < 1: mass near p = 1; a + b - 1 < 0
      {0.5, 3.0, 0.4, 0.6},              // a + b = 1: 2F1(r, b; 0; z) has its pole
      {0.8, 2.0, 1.0, 3.0},              // a = 1, where (a+b-1)/(a-1) has its pole
  };
  for (const BgNbdParams& p : worlds) {
    for (double t : {0.5, 5.0, 39.0, 78.0, 365.0, 2000.0}) {
      SCOPED_TRACE("r=" + std::to_string(p.r) + " alpha=" + std::to_string(p.alpha) + " a=" + std::to_string(p.a) +
                   " b=" + std::to_string(p.b) + " t=" + std::to_string(t));
      const ld coarse = integrated_expectation(p, PurchaseSummary{}, t, 1.0L / 64);
      const ld fine = integrated_expectation(p, PurchaseSummary{}, t, 1.0L / 128);
      ASSERT_NEAR(static_cast<double>(coarse / fine), 1.0, 1e-12) << "quadrature not converged";
      const double got = unconditional_expected_transactions(p, t);
      EXPECT_NEAR(got / static_cast<double>(fine), 1.0, 1e-9) << got << " vs " << static_cast<double>(fine);
    }
  }
}

TEST(BgNbdExpectation, UnconditionalIsTheConditionalOfANewCustomerAndStartsAtRateROverAlpha) {
  for (double t : {1.0, 39.0, 500.0}) {
    EXPECT_NEAR(unconditional_expected_transactions(kCdnowWeeks, t),
                expected_transactions(kCdnowWeeks, PurchaseSummary{0, 0, 0, 0}, t), 1e-12);
  }
  // Everyone is alive at first: E[X(t)] ~ (r/alpha) t for small t; increasing; 0 at t <= 0.
  const double t = 1e-6;
  EXPECT_NEAR(unconditional_expected_transactions(kCdnowWeeks, t) / t, kCdnowWeeks.r / kCdnowWeeks.alpha, 1e-6);
  EXPECT_EQ(unconditional_expected_transactions(kCdnowWeeks, 0), 0.0);
  EXPECT_EQ(unconditional_expected_transactions(kCdnowWeeks, -3), 0.0);
  double previous = 0;
  for (double s = 1; s < 1000; s *= 1.5) {
    const double e = unconditional_expected_transactions(kCdnowWeeks, s);
    EXPECT_GT(e, previous);
    previous = e;
  }
}

// The paper's cumulative repeat-transaction forecast on CDNOW: each customer
// contributes E[X(t_end - first purchase)]. The model tracks the actual
// cumulative count (counted here from the log) at the end of the calibration
// period (week 39) and of the forecast period (week 78) within 5 %.
TEST(BgNbdExpectation, TracksCdnowCumulativeRepeatTransactions) {
  const auto states = testing::load_cdnow_states(/*master=*/false);
  ASSERT_EQ(states.size(), 2357u) << "CDNOW_sample.txt missing or unreadable under " << RAPPORT_CDNOW_DIR;
  for (const std::int64_t end_ms : {testing::kCdnowCalibrationEndMs, testing::kCdnowEndMs}) {
    double expected = 0, actual = 0;
    for (const auto& [id, state] : states) {
      const PurchaseHistory h = purchase_history_as_of(state, end_ms);
      ASSERT_GT(h.transactions, 0u);
      actual += h.x;
      expected += unconditional_expected_transactions(kCdnowWeeks, h.T_days / 7);
    }
    SCOPED_TRACE(end_ms);
    EXPECT_NEAR(expected / actual, 1.0, 0.05) << "expected " << expected << ", actual " << actual;
  }
}

// The textbook conditional expectation (FHL 2005 eq. 10), untransformed, with
// 2F1(r+x, b+x; a+b+x-1; z) summed term by term in log space in long double:
// no overflow, and a computation independent of the library's.
ld reference_expectation(const BgNbdParams& prm, const PurchaseSummary& c, double t) {
  const ld r = prm.r, alpha = prm.alpha, a = prm.a, b = prm.b, x = c.x;
  const ld z = t / (alpha + c.T + t);
  ld log_term = 0, log_sum = 0;  // k = 0: term 1
  for (int k = 0; k < 10'000'000; ++k) {
    const ld ratio = (r + x + k) * (b + x + k) * z / ((a + b + x - 1 + k) * (k + 1));
    log_term += std::log(ratio);
    const ld hi = std::max(log_sum, log_term), lo = std::min(log_sum, log_term);
    log_sum = hi + std::log1p(std::exp(lo - hi));
    if (ratio < 0.999L && log_term < log_sum - 60) break;
  }
  const ld log_product = (r + x) * std::log((alpha + c.T) / (alpha + c.T + t)) + log_sum;
  const ld head = (a + b + x - 1) / (a - 1);
  const ld tail = -std::expm1(log_product);
  ld denominator = 1;
  if (x > 0) denominator += std::exp(std::log(a / (b + x - 1)) + (r + x) * std::log((alpha + c.T) / (alpha + c.t_x)));
  return head * tail / denominator;
}

ld reference_p_alive(const BgNbdParams& prm, const PurchaseSummary& c) {
  const ld r = prm.r, alpha = prm.alpha, a = prm.a, b = prm.b, x = c.x;
  if (x == 0) return 1;
  const ld log_odds = std::log(a / (b + x - 1)) + (r + x) * std::log((alpha + c.T) / (alpha + c.t_x));
  return 1 / (1 + std::exp(log_odds));
}

// The textbook form in double, as the library computed it before: the power
// underflows to 0 and 2F1 overflows to infinity for large x.
double naive_expectation(const BgNbdParams& p, const PurchaseSummary& c, double t) {
  const double z = t / (p.alpha + c.T + t);
  double term = 1, sum = 1;
  for (int k = 0; k < 100000; ++k) {
    term *= (p.r + c.x + k) * (p.b + c.x + k) / ((p.a + p.b + c.x - 1 + k) * (k + 1.0)) * z;
    sum += term;
    if (std::abs(term) <= 1e-15 * std::abs(sum)) break;
  }
  const double tail = 1 - std::pow((p.alpha + c.T) / (p.alpha + c.T + t), p.r + c.x) * sum;
  const double denominator =
      1 + (c.x > 0 ? p.a / (p.b + c.x - 1) * std::pow((p.alpha + c.T) / (p.alpha + c.t_x), p.r + c.x) : 0.0);
  return (p.a + p.b + c.x - 1) / (p.a - 1) * tail / denominator;
}

TEST(BgNbdExpectation, LargeXStaysFiniteAndMatchesALogSpaceReference) {
  const BgNbdParams days{0.243, 4.414 * 7, 0.793, 2.426};
  struct Case {
    BgNbdParams params;
    PurchaseSummary customer;
    double t;
  };
  const std::vector<Case> cases = {
      {kCdnowWeeks, {500, 38, 39, 0}, 200},           // 500 repeat purchases, 4-year horizon (weeks)
      {kCdnowWeeks, {480, 30, 39, 0}, 156},           // a gap since the last purchase: P(alive) near 0
      {days, {520, 700, 730, 0}, 3650},               // days, ten-year horizon
      {days, {2000, 1800, 1825, 0}, 365},             // very large x, one-year horizon
      {kCdnowWeeks, {2, 30.43, 38.86, 0}, 39},        // the paper's customer (1.226)
      {kCdnowWeeks, {0, 0, 38.86, 0}, 39},            // no repeat purchase
      {{0.8, 2.0, 1.0, 3.0}, {500, 38, 39, 0}, 200},  // a = 1
  };
  bool naive_failed_somewhere = false;
  for (const Case& c : cases) {
    SCOPED_TRACE("x=" + std::to_string(c.customer.x) + " t_x=" + std::to_string(c.customer.t_x) +
                 " T=" + std::to_string(c.customer.T) + " t=" + std::to_string(c.t));
    const double got = expected_transactions(c.params, c.customer, c.t);
    const double p_alive = probability_alive(c.params, c.customer);
    ASSERT_TRUE(std::isfinite(got));
    ASSERT_TRUE(std::isfinite(p_alive));
    EXPECT_GE(p_alive, 0.0);
    EXPECT_LE(p_alive, 1.0);
    // Two independent references: the textbook series in log space (it has a pole at a = 1) and the integral.
    const ld integrated = integrated_expectation(c.params, c.customer, c.t, 1.0L / 128);
    ASSERT_NEAR(static_cast<double>(integrated_expectation(c.params, c.customer, c.t, 1.0L / 64) / integrated), 1.0,
                1e-12)
        << "quadrature not converged";
    EXPECT_NEAR(got, static_cast<double>(integrated), 1e-9 * static_cast<double>(integrated));
    if (c.params.a != 1) {
      const ld series = reference_expectation(c.params, c.customer, c.t);
      EXPECT_NEAR(got, static_cast<double>(series), 1e-9 * static_cast<double>(series));
    }
    EXPECT_NEAR(p_alive, static_cast<double>(reference_p_alive(c.params, c.customer)), 1e-12);
    if (!std::isfinite(naive_expectation(c.params, c.customer, c.t))) naive_failed_somewhere = true;
  }
  // The cases do reach the overflow the guard is for.
  EXPECT_TRUE(naive_failed_somewhere);
  EXPECT_TRUE(std::isnan(naive_expectation(kCdnowWeeks, {500, 38, 39, 0}, 200)));
  EXPECT_NEAR(expected_transactions(kCdnowWeeks, {2, 30.43, 38.86, 0}, 39), 1.226, 0.001);
}

// Large a (degenerate fits end with a ~ 1e10): the series would need ~a z/(1-z)
// terms and its parts overflow, so it gave 0 (and took seconds per customer).
// The conditional and unconditional expectations follow the integral of their
// definition, and for a -> inf (dropout probability fixed at q = a/(a+b+x))
// the closed form (1 - (1 + q t/(alpha+T))^-(r+x)) / q.
TEST(BgNbdExpectation, LargeAMatchesTheIntegralAndTheFixedDropoutLimit) {
  const PurchaseSummary customer{5, 200, 300, 0};
  for (const double a : {300.0, 1000.0, 1e4}) {
    for (const double b_over_a : {100.0, 3.0, 0.3}) {
      const BgNbdParams p{2.0, 30.0, a, a * b_over_a};
      SCOPED_TRACE("a=" + std::to_string(a) + " b=" + std::to_string(p.b));
      for (const PurchaseSummary& c : {customer, PurchaseSummary{}}) {
        const double t = 365;
        const ld fine = integrated_expectation(p, c, t, 1.0L / 2048);  // Beta(a, b) is narrow: fine steps
        ASSERT_NEAR(static_cast<double>(integrated_expectation(p, c, t, 1.0L / 1024) / fine), 1.0, 1e-9)
            << "quadrature not converged";
        const double got = c.T == 0 ? unconditional_expected_transactions(p, t) : expected_transactions(p, c, t);
        EXPECT_NEAR(got / static_cast<double>(fine), 1.0, 1e-5) << got << " vs " << static_cast<double>(fine);
      }
    }
  }
  for (const double a : {1e7, 2e10}) {
    const BgNbdParams p{2.8e4, 2.2e5, a, a * 84};
    const double q = p.a / (p.a + p.b + customer.x);
    const double limit = -std::expm1(-(p.r + customer.x) * std::log1p(q * 365 / (p.alpha + customer.T))) / q;
    const double got = expected_transactions(p, customer, 365) / probability_alive(p, customer);
    EXPECT_NEAR(got / limit, 1.0, 1e-6) << "a=" << a << ": " << got << " vs " << limit;
  }
}

TEST(BgNbdExpectation, PAliveIsZeroOrOneNotNanForExtremeOdds) {
  EXPECT_EQ(probability_alive(kCdnowWeeks, {100000, 1, 1000, 0}), 0.0);  // long silent after many purchases
  EXPECT_NEAR(probability_alive(kCdnowWeeks, {100000, 1000, 1000, 0}), 1.0, 1e-4);
  EXPECT_EQ(expected_transactions(kCdnowWeeks, {100000, 1, 1000, 0}, 52), 0.0);
}

}  // namespace
}  // namespace rapport
