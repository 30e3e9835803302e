// Degenerate data whose likelihood maximum lies at infinity (every customer
// buying on the same even schedule): the fits stop within their evaluation
// budget and the log-parameter box, report that they did not converge, and
// return finite parameters whose customer values are finite. Before the
// bounds the fallback simplex restarted without end (10 000-15 000
// iterations; with the customer values, a minute per model fit in rapportd).
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "scoring/value_model.h"

namespace rapport {
namespace {

// 40 customers buying every week from their first day until a common last
// purchase season, first days 5 days apart, all observed 30 days after their
// schedule ends: x, t_x and T move together (a, b -> inf in the BG/NBD fit).
std::vector<PurchaseSummary> staggered_weekly() {
  std::vector<PurchaseSummary> out;
  for (int i = 0; i < 40; ++i) {
    const double x = std::floor((365.0 - i * 5) / 7);
    out.push_back({x, 7 * x, 365.0 - i * 5 + 30, 30});
  }
  return out;
}

// 40 identical customers (10 repeat purchases 7 days apart, same spend): the
// Gamma-Gamma spend heterogeneity and the BG/NBD dropout collapse (a -> 0).
std::vector<PurchaseSummary> identical() { return std::vector<PurchaseSummary>(40, {10, 70, 80, 25}); }

void expect_bounded(int iterations, int evaluations, bool converged, bool at_bound, const std::vector<double>& params) {
  EXPECT_GT(evaluations, 0);
  EXPECT_LE(evaluations, kMaxFitEvaluations + 8);  // a simplex step under way completes
  EXPECT_LE(iterations, kMaxFitEvaluations);
  EXPECT_FALSE(converged);  // the maximum is at infinity: no fit can converge
  bool near_edge = false;
  for (const double v : params) {
    ASSERT_TRUE(std::isfinite(v) && v > 0) << v;
    EXPECT_LE(std::abs(std::log(v)), kFitLogBound + 1e-9) << v;
    near_edge = near_edge || std::abs(std::log(v)) > kFitLogBound - 0.5;
  }
  EXPECT_EQ(at_bound, near_edge);
}

TEST(ValueDegenerateFit, EvenlySpacedPurchasesStopWithinTheBudget) {
  for (const auto& [name, data] :
       {std::pair{"staggered weekly", staggered_weekly()}, std::pair{"identical", identical()}}) {
    SCOPED_TRACE(name);
    const auto bg = fit_bgnbd(data);
    ASSERT_TRUE(bg.ok()) << bg.message();
    expect_bounded(bg->iterations, bg->evaluations, bg->converged, bg->at_bound,
                   {bg->params.r, bg->params.alpha, bg->params.a, bg->params.b});
    ASSERT_TRUE(std::isfinite(bg->log_likelihood));
    // The reported LL is the model's at the estimate (lgamma near b ~ 1e12 is ~4e13, rounded to ~1e-2).
    EXPECT_NEAR(bg->log_likelihood, bgnbd_log_likelihood(bg->params, data), 1e-3 * std::abs(bg->log_likelihood));

    const auto gg = fit_gamma_gamma(data);
    ASSERT_TRUE(gg.ok()) << gg.message();
    expect_bounded(gg->iterations, gg->evaluations, gg->converged, gg->at_bound,
                   {gg->params.p, gg->params.q, gg->params.gamma});
    ASSERT_TRUE(std::isfinite(gg->log_likelihood));

    // The model these fits make still values every customer.
    ValueModel model;
    model.bgnbd = bg->params;
    model.gamma_gamma = gg->params;
    model.fitted_at_ms = 1;
    for (const PurchaseSummary& c : data) {
      const CustomerValue v = customer_value(model, ValueConfig{}, c);
      ASSERT_TRUE(std::isfinite(v.expected_transactions));
      EXPECT_GT(v.expected_transactions, 0);
      EXPECT_GT(v.clv, 0);
    }
  }
}

// The identical customers drive a (BG/NBD) and q (Gamma-Gamma) out of the box:
// the fits end on its edge and say so.
TEST(ValueDegenerateFit, IdenticalCustomersEndAtTheBoxAndSaySo) {
  const auto bg = fit_bgnbd(identical());
  ASSERT_TRUE(bg.ok()) << bg.message();
  EXPECT_TRUE(bg->at_bound);
  EXPECT_FALSE(bg->converged);
  const auto gg = fit_gamma_gamma(identical());
  ASSERT_TRUE(gg.ok()) << gg.message();
  EXPECT_TRUE(gg->at_bound);
  EXPECT_FALSE(gg->converged);
}

}  // namespace
}  // namespace rapport
