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

struct BgNbdFit {
  BgNbdParams params;
  double log_likelihood = 0;
  int iterations = 0;
};
struct GammaGammaFit {
  GammaGammaParams params;
  double log_likelihood = 0;
  int iterations = 0;
};

// Maximum-likelihood fits (Nelder-Mead over log-parameters, restarted until
// it stops improving). Fail with a message when the data cannot identify the
// model (too few customers or no repeat purchases).
Result<BgNbdFit> fit_bgnbd(std::span<const PurchaseSummary> customers);
Result<GammaGammaFit> fit_gamma_gamma(std::span<const PurchaseSummary> customers);

// Everything the daemon stores after a fit.
struct ValueModel {
  static constexpr std::uint8_t kFormatVersion = 1;
  BgNbdParams bgnbd;
  GammaGammaParams gamma_gamma;
  double bgnbd_log_likelihood = 0;
  double gamma_gamma_log_likelihood = 0;
  std::int64_t fitted_at_ms = 0;
  double fit_seconds = 0;
  std::uint64_t customers = 0;         // population size of the fit
  std::uint64_t repeat_customers = 0;  // customers with x > 0
  // Tier thresholds on CLV from the population at fit time.
  double platinum_min_clv = 0;
  double gold_min_clv = 0;
};

struct ValueConfig {
  double horizon_days = 365.0;         // CLV horizon
  double margin = 0.3;                 // share of spend that is profit
  double annual_discount_rate = 0.1;   // future transactions are discounted by (1 + rate)^-years
  double platinum_fraction = 0.05;     // top 5 % by CLV
  double gold_fraction = 0.15;         // next 15 %
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
