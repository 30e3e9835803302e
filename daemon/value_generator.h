// `rapportctl generate --model bgnbd`: synthetic customers who follow the value
// model, so that a fit on their events recovers known parameters and the demo's
// tiers, churn risks and P(alive) mean something.
//
// Each customer is a BG/NBD + Gamma-Gamma customer (scoring/value_simulation.h,
// the simulator the tests and the fit benchmark use): a first purchase at a time
// drawn uniformly over the span before end_ms, then repeat purchases at a rate
// lambda ~ Gamma(r, alpha) (per day) until, after any repeat purchase, the
// customer drops out with probability p ~ Beta(a, b); every purchase spends
// Gamma(p_spend, nu) with nu ~ Gamma(q, gamma). rapportd counts purchase days,
// so a purchase that would fall on the UTC day of the customer's previous one
// moves to the next day (and is dropped if that is after end_ms). Other interactions are
// interleaved while the customer is active (from the first purchase to the
// dropout, or end_ms), at the rates of kInteractionRates below times
// `interactions`; their sentiment, csat, nps and ratings, and the rates of
// complaints, referrals and refunds, follow a per-customer latent satisfaction
// that is lower for customers likely to drop out. Renewals are never generated
// (a renewal with an amount would be a transaction outside the model).
//
// The output is deterministic for a seed, written customer by customer (each
// customer's events in time order). The purchase process does not depend on
// `interactions`.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "common/status.h"
#include "daemon/generator.h"
#include "scoring/value_model.h"
#include "scoring/value_simulation.h"

namespace rapport {

// Interactions per active customer-day (times `interactions`).
struct InteractionRate {
  const char* type;
  double per_day;
};
inline constexpr InteractionRate kInteractionRates[] = {
    {"engagement", 1.0 / 30},  // web, app, email
    {"support", 1.0 / 150},    // sentiment
    {"social", 1.0 / 240},     // sentiment
    {"survey", 1.0 / 180},     // nps or csat
    {"complaint", 1.0 / 400},  // x e^(-0.8 s): dissatisfied customers complain more
    {"referral", 1.0 / 700},   // x e^(0.8 s)
};
// Per purchase: a review within two weeks with probability 0.15; a refund of part of it
// within a month with probability 0.03 e^(-0.6 s). After a dropout: a cancellation with
// probability 0.35, about two weeks later. (s = the latent satisfaction, about N(0, 1).)

struct ValueModelOptions {
  std::string model = "mix";  // "mix" (the default generator) or "bgnbd"
  BgNbdParams bgnbd = kCdnowBgNbdDays;
  GammaGammaParams spend = kCdnowGammaGamma;
  double interactions = 1.0;  // scale of the non-purchase rates (0 = purchases only)
  // Flags given that the chosen model does not use (an error).
  std::vector<std::string> mix_only_flags, bgnbd_only_flags;
};

// Per customer, one call: appends the customer's NDJSON lines.
class ValueModelGenerator {
 public:
  // `common`: customers, seed, end_ms (0 = now - 1 h) and span_days.
  ValueModelGenerator(const GenerateOptions& common, const ValueModelOptions& model);
  // Appends the next customer's lines; false once every customer is written.
  bool next_customer(std::string& out);
  std::uint64_t events() const { return events_; }
  std::uint64_t purchases() const { return purchases_; }
  std::int64_t end_ms() const { return end_ms_; }

 private:
  struct Pending {
    std::int64_t ts;
    std::string body;  // everything after "ts"
  };
  void emit(std::int64_t ts, std::string body);

  GenerateOptions common_;
  ValueModelOptions model_;
  Rng value_rng_, other_rng_;
  SimulatedCustomer sim_;
  std::vector<Pending> pending_;
  std::int64_t end_ms_ = 0, start_ms_ = 0;
  std::uint64_t customer_ = 0, serial_ = 0, events_ = 0, purchases_ = 0;
};

// Checks the options: positive parameters, a positive span, no flag of the other model.
Status check_generate_options(const GenerateOptions& common, const ValueModelOptions& model);

// `rapportctl generate`: the mix generator (generate_events) or the value model, to `out`;
// a one-line summary of a value-model run on `err`. Returns the exit code (2 = usage error).
int generate_command(const GenerateOptions& common, const ValueModelOptions& model, std::FILE* out, std::FILE* err);

}  // namespace rapport
