// Standard errors of the value-model fits from the observed information
// (bgnbd_standard_errors, gamma_gamma_standard_errors): a published case, the
// empirical spread of estimates over simulated worlds, and the errors.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "scoring/value_model.h"
#include "scoring/value_simulation.h"
#include "tests/scoring/value_test_support.h"

namespace rapport {
namespace {

// The BG/NBD fit of the CDNOW sample (2357 customers, weeks) and the standard errors the
// Python `lifetimes` package publishes for it in its documentation (BetaGeoFitter.summary,
// se(coef)): r 0.012557, alpha 0.378221, a 0.185719, b 0.705345 (they agree to 1e-4).
TEST(ValueStandardErrors, BgNbdMatchesThePublishedCdnowStandardErrors) {
  const auto states = testing::load_cdnow_states(/*master=*/false);
  ASSERT_EQ(states.size(), 2357u) << "CDNOW_sample.txt missing under " << RAPPORT_CDNOW_DIR;
  const auto data = testing::summaries_in_weeks(states, testing::kCdnowCalibrationEndMs);
  const auto fit = fit_bgnbd(data);
  ASSERT_TRUE(fit.ok()) << fit.message();
  const auto errors = bgnbd_standard_errors(fit->params, data);
  ASSERT_TRUE(errors.ok()) << errors.message();
  EXPECT_NEAR(errors->se.r / 0.012557, 1.0, 0.005);
  EXPECT_NEAR(errors->se.alpha / 0.378221, 1.0, 0.005);
  EXPECT_NEAR(errors->se.a / 0.185719, 1.0, 0.005);
  EXPECT_NEAR(errors->se.b / 0.705345, 1.0, 0.005);
  // The delta method: se of the parameter = parameter x se of its log.
  EXPECT_DOUBLE_EQ(errors->se.alpha, fit->params.alpha * errors->log_se.alpha);
}

// Over 40 simulated worlds of the same parameters, the standard deviation of the estimated
// log-parameters is what the standard errors say (the mean of their squares), within 30 %
// (the sampling error of a standard deviation from 40 draws is about 11 %).
TEST(ValueStandardErrors, AgreeWithTheSpreadOfEstimatesOverSimulatedWorlds) {
  const BgNbdParams bg{0.6, 4.0, 0.9, 2.8};
  const GammaGammaParams gg{6.0, 4.0, 16.0};
  constexpr int kWorlds = 40;
  std::vector<std::array<double, 7>> estimates, variances;
  for (int w = 0; w < kWorlds; ++w) {
    const auto data = simulate_customers(bg, gg, 1500, 26, 78, 1000 + static_cast<std::uint64_t>(w));
    const auto bg_fit = fit_bgnbd(data);
    const auto gg_fit = fit_gamma_gamma(data);
    ASSERT_TRUE(bg_fit.ok() && gg_fit.ok());
    const auto bg_se = bgnbd_standard_errors(bg_fit->params, data);
    const auto gg_se = gamma_gamma_standard_errors(gg_fit->params, data);
    ASSERT_TRUE(bg_se.ok()) << bg_se.message();
    ASSERT_TRUE(gg_se.ok()) << gg_se.message();
    const BgNbdParams& b = bg_fit->params;
    const GammaGammaParams& g = gg_fit->params;
    estimates.push_back({std::log(b.r), std::log(b.alpha), std::log(b.a), std::log(b.b), std::log(g.p), std::log(g.q),
                         std::log(g.gamma)});
    const BgNbdParams& bs = bg_se->log_se;
    const GammaGammaParams& gs = gg_se->log_se;
    variances.push_back(
        {bs.r * bs.r, bs.alpha * bs.alpha, bs.a * bs.a, bs.b * bs.b, gs.p * gs.p, gs.q * gs.q, gs.gamma * gs.gamma});
  }
  const char* names[] = {"r", "alpha", "a", "b", "p", "q", "gamma"};
  for (std::size_t i = 0; i < 7; ++i) {
    SCOPED_TRACE(names[i]);
    double mean = 0, predicted = 0;
    for (int w = 0; w < kWorlds; ++w) {
      mean += estimates[w][i] / kWorlds;
      predicted += variances[w][i] / kWorlds;
    }
    double spread = 0;
    for (int w = 0; w < kWorlds; ++w) spread += (estimates[w][i] - mean) * (estimates[w][i] - mean) / (kWorlds - 1);
    EXPECT_NEAR(std::sqrt(spread) / std::sqrt(predicted), 1.0, 0.3)
        << "empirical sd " << std::sqrt(spread) << ", standard error " << std::sqrt(predicted);
  }
}

TEST(ValueStandardErrors, ErrorsWhenTheDataDoNotIdentifyTheModelOrTheInputIsInvalid) {
  // Nobody came back: the likelihood does not depend on a and b, so the information is singular.
  std::vector<PurchaseSummary> singles;
  for (int i = 0; i < 100; ++i) singles.push_back({0, 0, 10.0 + i, 0});
  const auto singular = bgnbd_standard_errors({0.5, 10, 0.8, 2.5}, singles);
  ASSERT_FALSE(singular.ok());
  EXPECT_NE(singular.message().find("not positive definite"), std::string::npos) << singular.message();

  const auto data = simulate_customers({0.6, 4.0, 0.9, 2.8}, {6, 4, 16}, 500, 26, 78, 3);
  EXPECT_FALSE(bgnbd_standard_errors({0.6, -4.0, 0.9, 2.8}, data).ok());
  EXPECT_FALSE(gamma_gamma_standard_errors({6, 0, 16}, data).ok());
  EXPECT_TRUE(bgnbd_standard_errors({0.6, 4.0, 0.9, 2.8}, {}).status().not_ready());
  EXPECT_TRUE(gamma_gamma_standard_errors({6, 4, 16}, singles).status().not_ready());
}

}  // namespace
}  // namespace rapport
