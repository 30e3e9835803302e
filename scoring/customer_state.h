// CustomerState: everything Rapport keeps per customer, updated in O(1) per
// event, and its evaluation into scores at a given time.
//
// Pure functions over plain structs: no I/O, no clocks, no globals.
// Order independence: applying the same set of events in any order yields the
// same state up to floating-point rounding (decayed sums are kept relative to
// a fixed epoch, money in integer units, purchase days as a set).
// Thread safety: plain values; callers synchronise.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "scoring/event.h"

namespace rapport {

// Money is kept in integer units of 1/10000 of the account currency so sums
// are exact and order independent.
inline constexpr double kMoneyUnitsPerCurrency = 10000.0;

// Parameters applied when an event is applied (ingest time).
struct ApplyConfig {
  double half_life_days = 90.0;  // decay of satisfaction and loyalty signals
  // Default cost to serve per interaction when the event carries no `cost`,
  // indexed by Channel; applies to support and complaint events only.
  std::array<double, kChannelCount> default_cost{};
};

// Parameters applied at evaluation (query) time: changing them re-weights
// every customer at once without reprocessing.
struct EvaluateConfig {
  double half_life_days = 90.0;  // must match ApplyConfig::half_life_days
  double prior_weight = 2.0;     // neutral pseudo-signals in the satisfaction mean
  // Satisfaction class weights.
  double weight_csat = 1.0;
  double weight_nps = 1.0;
  double weight_rating = 1.0;
  double weight_sentiment = 1.0;
  double weight_complaint = 1.5;
  double weight_refund = 1.0;
  // Loyalty component weights (cognitive, affective, conative, action).
  std::array<double, 4> loyalty_weights{0.15, 0.2, 0.25, 0.4};
  double stage_threshold = 0.5;  // a loyalty stage is reached at this component level
};

enum class LoyaltyStage : std::uint8_t { kNone, kCognitive, kAffective, kConative, kAction };
std::string_view loyalty_stage_name(LoyaltyStage stage);  // "none", "cognitive", ...

struct PurchaseDay {
  std::int32_t day = 0;     // days since 1970-01-01 (UTC)
  std::int64_t amount = 0;  // money units spent that day
  friend bool operator==(const PurchaseDay&, const PurchaseDay&) = default;
};

// Satisfaction signal classes; each keeps its own accumulator so class
// weights apply at evaluation time.
enum class SignalClass : std::uint8_t { kCsat, kNps, kRating, kSentiment, kComplaint, kRefund };
inline constexpr int kSignalClassCount = 6;

// Decayed sums are kept relative to `decay_ref_day` (the latest event time
// seen, in fractional days since 1970-01-01): an event at day t contributes
// w * 2^((t - decay_ref_day) / half_life). When a later event moves the
// reference forward every sum is rescaled, so the result does not depend on
// arrival order (up to floating-point rounding) and never overflows.
struct CustomerState {
  static constexpr std::uint8_t kFormatVersion = 1;
  std::int64_t first_seen_ms = 0;
  std::int64_t last_seen_ms = 0;
  std::uint32_t event_count = 0;
  std::array<std::uint32_t, kEventTypeCount> type_counts{};

  double decay_ref_day = 0.0;
  std::array<double, kSignalClassCount> signal_weight{};  // decayed number of signals per class
  std::array<double, kSignalClassCount> signal_sum{};     // decayed sum of signal values in [-1, 1]
  double engagement = 0.0;                                // decayed count of interactions (cognitive loyalty)
  double intention_positive = 0.0;  // decayed promoters (nps >= 9), referrals, renewals (conative)
  double intention_negative = 0.0;  // decayed detractors (nps <= 6), cancellations

  // Money, in units (see kMoneyUnitsPerCurrency). Lifetime totals, plus per
  // day for the last 366 days before the latest event (12-month figures).
  std::int64_t refunds_total = 0;
  std::int64_t cost_total = 0;
  std::vector<PurchaseDay> recent_refund_days;  // sorted by day, distinct
  std::vector<PurchaseDay> recent_cost_days;    // sorted by day, distinct
  std::vector<PurchaseDay> purchase_days;       // every purchase day: sorted by day, distinct

  friend bool operator==(const CustomerState&, const CustomerState&) = default;
};

// Apply one (already validated, not duplicate) event. O(1) except for the
// sorted purchase-day set, which is O(distinct purchase days) on a purchase.
void apply_event(CustomerState& state, const Event& event, const ApplyConfig& config);

struct Scores {
  // Satisfaction 0..100 (50 = neutral) and the effective decayed signal weight behind it.
  double satisfaction = 50.0;
  double satisfaction_confidence = 0.0;
  // Loyalty 0..100, components 0..1, stage.
  double loyalty = 0.0;
  double loyalty_cognitive = 0.0, loyalty_affective = 0.0, loyalty_conative = 0.0, loyalty_action = 0.0;
  double loyalty_attitudinal = 0.0;  // mean of the first three components
  double loyalty_behavioural = 0.0;  // the action component
  LoyaltyStage stage = LoyaltyStage::kNone;
  // Money in currency units.
  double revenue = 0.0, cost_to_serve = 0.0, profit = 0.0;
  double revenue_12m = 0.0, cost_12m = 0.0, profit_12m = 0.0;
  // Inputs of the value model (days): x = repeat transactions (distinct
  // purchase days - 1), t_x = last - first purchase day, T = now - first
  // purchase day, mean repeat spend (0 when x == 0), purchase days total.
  std::uint32_t transactions = 0;
  double x = 0.0, t_x_days = 0.0, T_days = 0.0, mean_repeat_spend = 0.0;
  std::uint32_t events = 0;
  std::int64_t first_seen_ms = 0, last_seen_ms = 0;
};

Scores evaluate(const CustomerState& state, std::int64_t now_ms, const EvaluateConfig& config);

std::string_view signal_class_name(SignalClass c);  // "csat", "nps", "rating", "sentiment", "complaint", "refund"

// The satisfaction score taken apart at `now_ms`: satisfaction = clamp(50 + sum of the classes'
// contributions, 0, 100) (the clamp never binds: signal values lie in [-1, 1]). `confidence` is
// the sum of the classes' effective weights, Scores::satisfaction_confidence.
struct SatisfactionTerm {
  double class_weight = 0;     // configured weight of the class
  double decayed_signals = 0;  // the class's signals, each decayed to now (2^(-age / half_life))
  double mean_signal = 0;      // their decayed mean value in [-1, 1]; 0 without signals
  double contribution = 0;     // points added to the neutral 50: 50 x class_weight x decayed sum / (prior + confidence)
};
struct SatisfactionExplanation {
  std::array<SatisfactionTerm, kSignalClassCount> classes{};  // indexed by SignalClass
  double prior_weight = 0;                                    // neutral pseudo-signals in the denominator
  double confidence = 0;                                      // sum of class_weight x decayed_signals
  double score = 50;
};
SatisfactionExplanation explain_satisfaction(const CustomerState& state, std::int64_t now_ms,
                                             const EvaluateConfig& config);

// The loyalty score taken apart: loyalty = sum of the components' contributions.
struct LoyaltyExplanation {
  std::array<double, 4> components{};     // cognitive, affective, conative, action, each 0..1
  std::array<double, 4> contributions{};  // points: 100 x weight x component / sum of weights
  // The component that keeps the customer from the next stage (index into components, the first below
  // the stage threshold); -1 at the last stage (action).
  int blocking = -1;
};
LoyaltyExplanation explain_loyalty(const Scores& scores, const EvaluateConfig& config);

// The value model's inputs as of `as_of_ms` counting only the purchase days up
// to and including its UTC day (later purchases are ignored, as a fit on
// history needs): the definitions of the Scores fields of the same names.
struct PurchaseHistory {
  std::uint32_t transactions = 0;  // purchase days up to as_of
  double x = 0.0, t_x_days = 0.0, T_days = 0.0, mean_repeat_spend = 0.0;
};
PurchaseHistory purchase_history_as_of(const CustomerState& state, std::int64_t as_of_ms);

// Versioned binary form (first byte = kFormatVersion). deserialize rejects
// unknown versions and truncated input with a message.
std::string serialize(const CustomerState& state);
void serialize_into(const CustomerState& state, std::string& out);  // reuses out's capacity
Status deserialize(std::string_view bytes, CustomerState& state);

}  // namespace rapport
