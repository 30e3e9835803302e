// Value model: BG/NBD (Fader, Hardie & Lee 2005) for repeat transactions and
// P(alive), Gamma-Gamma for spend per transaction, customer lifetime value,
// maximum-likelihood fitting of the population parameters, and the customer
// pyramid tiers.
//
// Pure functions over plain structs; the time unit is whatever the caller
// uses consistently for x, t_x, T and horizons (Rapport uses days; the CDNOW
// tests use weeks). Thread safety: plain values, no shared state.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace rapport {

// One customer's purchase history as the models see it.
struct PurchaseSummary {
  double x = 0;           // repeat transactions (distinct purchase days - 1)
  double t_x = 0;         // time of the last transaction since the first
  double T = 0;           // time since the first transaction
  double mean_spend = 0;  // mean spend of the repeat transactions (used when x > 0)
};

struct BgNbdParams {
  double r = 0, alpha = 0, a = 0, b = 0;
};

struct GammaGammaParams {
  double p = 0, q = 0, gamma = 0;
};

// BG/NBD log-likelihood of one customer and of a population.
double bgnbd_log_likelihood(const BgNbdParams& params, const PurchaseSummary& customer);
double bgnbd_log_likelihood(const BgNbdParams& params, std::span<const PurchaseSummary> customers);

// Expected number of transactions in the next `horizon`, given the history
// (FHL 2005 eq. 10). Evaluated through Euler's transformation of its 2F1,
// (1-z)^(r+x) 2F1(r+x, b+x; a+b+x-1; z) = (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z),
// as Fader & Hardie's note "Overcoming the BG/NBD model's #NUM! error problem"
// (2013) suggests: the untransformed factors overflow and underflow for large x
// (0 x inf), the transformed series converges fast and stays near 1. The
// factors 1/(a-1) and 1/(a+b+x-1) are folded into the series, so neither a = 1
// nor a + b = 1 is a singularity.
// NaN only if the series does not converge (z within ~1e-7 of 1).
double expected_transactions(const BgNbdParams& params, const PurchaseSummary& customer, double horizon);
// Expected number of repeat transactions of a randomly chosen customer in the
// first `t` after their first purchase (the unconditional expectation, FHL 2005
// eq. 7: (a+b-1)/(a-1) [1 - (alpha/(alpha+t))^r 2F1(r, b; a+b-1; t/(alpha+t))]),
// evaluated the same stable way.
double unconditional_expected_transactions(const BgNbdParams& params, double t);
// Probability that the customer is still alive (1 when x == 0); the odds are
// computed in log space, so large x gives 0 or 1, never NaN.
double probability_alive(const BgNbdParams& params, const PurchaseSummary& customer);

// Gamma-Gamma log-likelihood of the repeat customers (x > 0) in `customers`.
double gamma_gamma_log_likelihood(const GammaGammaParams& params, std::span<const PurchaseSummary> customers);
// Expected spend per transaction (the population mean when x == 0).
double expected_spend(const GammaGammaParams& params, const PurchaseSummary& customer);

// Bounds of one fit: every log-parameter within +-kFitLogBound (e^30 ~ 1e13), at
// most kMaxFitEvaluations evaluations of the objective. Degenerate data (say,
// every customer buying on the same even schedule) have their likelihood
// maximum at infinity; such a fit ends at the box or the budget, not converged.
inline constexpr double kFitLogBound = 30.0;
inline constexpr int kMaxFitEvaluations = 3000;

struct BgNbdFit {
  BgNbdParams params;
  double log_likelihood = 0;
  int iterations = 0;           // optimizer iterations (quasi-Newton, plus Nelder-Mead when it had to take over)
  bool converged = false;       // the gradient vanished (or the simplex collapsed) before the iteration limit
  std::uint64_t customers = 0;  // customers the fit used
  int evaluations = 0;          // objective evaluations (at most kMaxFitEvaluations)
  bool at_bound = false;        // a log-parameter ended at the edge of +-kFitLogBound (then not converged)
};
struct GammaGammaFit {
  GammaGammaParams params;
  double log_likelihood = 0;
  int iterations = 0;
  bool converged = false;
  std::uint64_t customers = 0;  // repeat customers with a positive mean spend
  int evaluations = 0;
  bool at_bound = false;
};

// The least data that identifies the model: BG/NBD needs kMinFitCustomers customers who bought,
// kMinFitRepeaters of them with repeat purchases; Gamma-Gamma needs kMinFitRepeaters repeat
// customers with a positive mean spend. FitReadiness counts what a population has.
inline constexpr std::uint64_t kMinFitCustomers = 10;
inline constexpr std::uint64_t kMinFitRepeaters = 2;
struct FitReadiness {
  std::uint64_t customers = 0;  // valid buyers
  std::uint64_t repeaters = 0;  // of them, with at least one repeat transaction
  std::uint64_t repeaters_with_spend = 0;
  bool ready() const {
    return customers >= kMinFitCustomers && repeaters >= kMinFitRepeaters && repeaters_with_spend >= kMinFitRepeaters;
  }
};
FitReadiness fit_readiness(std::span<const PurchaseSummary> customers);

// Maximum-likelihood fits over log-parameters: BFGS with analytic gradients
// (the log-likelihoods are summed over distinct (x, t_x, T) and distinct x, so
// one evaluation costs about one exp and one log1p per repeat customer), and
// Nelder-Mead from BFGS's best point when BFGS does not converge. Fail with
// Status::NotReady when the data cannot identify the model yet (below the
// minimums above) and with an error when the fit itself fails. Customers with
// non-finite or inconsistent values are skipped.
Result<BgNbdFit> fit_bgnbd(std::span<const PurchaseSummary> customers);
Result<GammaGammaFit> fit_gamma_gamma(std::span<const PurchaseSummary> customers);

// Standard errors of maximum-likelihood estimates from the observed information: the
// Hessian of the negative log-likelihood over log-parameters at `estimate` (central
// differences of the analytic gradient), inverted; `log_se` are the standard errors of the
// log-parameters, `se` those of the parameters by the delta method (se = parameter x log_se).
// Over the customers the fit of the same name uses. An error when the information is not
// positive definite (`estimate` is not a maximum, or the data do not identify the model).
struct BgNbdStandardErrors {
  BgNbdParams se, log_se;
};
struct GammaGammaStandardErrors {
  GammaGammaParams se, log_se;
};
Result<BgNbdStandardErrors> bgnbd_standard_errors(const BgNbdParams& estimate,
                                                  std::span<const PurchaseSummary> customers);
Result<GammaGammaStandardErrors> gamma_gamma_standard_errors(const GammaGammaParams& estimate,
                                                             std::span<const PurchaseSummary> customers);

// Everything the daemon stores after a fit.
struct ValueModel {
  // 2 adds as_of, the per-model customer counts, iterations, convergence and
  // the tier fractions; records of version 1 are still read (see `version`).
  static constexpr std::uint8_t kFormatVersion = 2;
  BgNbdParams bgnbd;
  GammaGammaParams gamma_gamma;
  double bgnbd_log_likelihood = 0;
  double gamma_gamma_log_likelihood = 0;
  std::int64_t fitted_at_ms = 0;  // when the fit ran (0 = no model)
  std::int64_t as_of_ms = 0;      // the time T and t_x were measured at; later events were ignored
  double fit_seconds = 0;
  std::uint64_t customers = 0;         // population size of the fit
  std::uint64_t repeat_customers = 0;  // customers with x > 0
  // Tier thresholds on CLV from the population at fit time.
  double platinum_min_clv = 0;
  double gold_min_clv = 0;
  // Version 2 fields (unknown in version-1 records: `version` says which).
  std::uint64_t bgnbd_customers = 0;        // customers with a purchase (the BG/NBD population)
  std::uint64_t gamma_gamma_customers = 0;  // repeat customers with a positive mean spend
  std::int32_t bgnbd_iterations = 0, gamma_gamma_iterations = 0;
  bool bgnbd_converged = false, gamma_gamma_converged = false;
  double platinum_fraction = 0, gold_fraction = 0;  // the tier shares the thresholds were set with
  std::uint8_t version = kFormatVersion;            // format of the record this model was read from
};

struct ValueConfig {
  double horizon_days = 365.0;        // CLV horizon
  double margin = 0.3;                // share of spend that is profit
  double annual_discount_rate = 0.1;  // future transactions are discounted by (1 + rate)^-years
  double platinum_fraction = 0.05;    // top 5 % by CLV
  double gold_fraction = 0.15;        // next 15 %
};

struct CustomerValue {
  double expected_transactions = 0;
  double p_alive = 1;
  double churn_risk = 0;
  double expected_spend = 0;
  double clv = 0;  // margin x discounted expected transactions over the horizon x expected spend
};

// Per-customer value at query time. `customer` is in days.
CustomerValue customer_value(const ValueModel& model, const ValueConfig& config, const PurchaseSummary& customer);

enum class Tier : std::uint8_t { kPlatinum, kGold, kIron, kLead, kUnranked };
inline constexpr int kTierCount = 5;
std::string_view tier_name(Tier tier);  // "platinum", "gold", "iron", "lead", "unranked"
bool parse_tier(std::string_view name, Tier& tier);

// Lead when the last 12 months cost more than they brought; otherwise by CLV
// against the model's thresholds. Unranked while no model has been fitted.
Tier classify_tier(const ValueModel* model, double clv, double profit_12m);

// Sets the thresholds so that the top `platinum_fraction` of `clvs` are
// platinum and the next `gold_fraction` gold (clvs of non-lead customers; reordered).
void set_tier_thresholds(ValueModel& model, const ValueConfig& config, std::vector<double>& clvs);

// Versioned binary form for the meta store.
std::string serialize(const ValueModel& model);
Status deserialize(std::string_view bytes, ValueModel& model);

}  // namespace rapport
