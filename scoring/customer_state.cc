#include "scoring/customer_state.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <type_traits>

namespace rapport {
namespace {

constexpr double kMsPerDay = 86'400'000.0;
constexpr std::int64_t kMsPerDayInt = 86'400'000;
constexpr std::int32_t kRecentWindowDays = 366;  // keeps every day a 12-month window can need

// Loyalty saturation constants: how many decayed signals make a component 1 - 1/2.
constexpr double kEngagementHalfSaturation = 3.0;
constexpr double kIntentionHalfSaturation = 2.0;
constexpr double kRepeatHalfSaturation = 2.0;

std::int32_t day_of(std::int64_t ts_ms) {
  // Floor division: timestamps before 1970 are rejected by the decoder, but keep this exact anyway.
  std::int64_t d = ts_ms / kMsPerDayInt;
  if (ts_ms % kMsPerDayInt < 0) --d;
  return static_cast<std::int32_t>(d);
}

std::int64_t to_units(double amount) { return std::llround(amount * kMoneyUnitsPerCurrency); }
double to_currency(std::int64_t units) { return static_cast<double>(units) / kMoneyUnitsPerCurrency; }

// Adds `amount` to `day` in a sorted, distinct day list.
void add_to_day(std::vector<PurchaseDay>& days, std::int32_t day, std::int64_t amount) {
  auto it =
      std::lower_bound(days.begin(), days.end(), day, [](const PurchaseDay& p, std::int32_t d) { return p.day < d; });
  if (it != days.end() && it->day == day) {
    it->amount += amount;
  } else {
    days.insert(it, PurchaseDay{day, amount});
  }
}

void trim_before(std::vector<PurchaseDay>& days, std::int32_t first_kept_day) {
  auto it = std::lower_bound(days.begin(), days.end(), first_kept_day,
                             [](const PurchaseDay& p, std::int32_t d) { return p.day < d; });
  days.erase(days.begin(), it);
}

// Signal value in [-1, 1] for each rating scale.
double csat_signal(double csat) { return (csat - 3.0) / 2.0; }
double nps_signal(double nps) { return (nps - 5.0) / 5.0; }
double rating_signal(double rating) { return (rating - 3.0) / 2.0; }

void add_signal(CustomerState& s, SignalClass c, double value, double weight) {
  const auto i = static_cast<std::size_t>(c);
  s.signal_weight[i] += weight;
  s.signal_sum[i] += weight * value;
}

// Moves the decay reference forward to `day`, rescaling every decayed sum.
void advance_reference(CustomerState& s, double day, double half_life_days) {
  const double factor = std::exp2((s.decay_ref_day - day) / half_life_days);
  for (double& w : s.signal_weight) w *= factor;
  for (double& v : s.signal_sum) v *= factor;
  s.engagement *= factor;
  s.intention_positive *= factor;
  s.intention_negative *= factor;
  s.decay_ref_day = day;
}

double saturate(double amount, double half_saturation) {
  return amount <= 0.0 ? 0.0 : 1.0 - std::exp2(-amount / half_saturation);
}

}  // namespace

std::string_view loyalty_stage_name(LoyaltyStage stage) {
  switch (stage) {
    case LoyaltyStage::kNone:
      return "none";
    case LoyaltyStage::kCognitive:
      return "cognitive";
    case LoyaltyStage::kAffective:
      return "affective";
    case LoyaltyStage::kConative:
      return "conative";
    case LoyaltyStage::kAction:
      return "action";
  }
  return "none";
}

void apply_event(CustomerState& s, const Event& e, const ApplyConfig& config) {
  const double half_life = config.half_life_days > 0 ? config.half_life_days : 90.0;
  const double event_day = static_cast<double>(e.ts_ms) / kMsPerDay;
  const std::int32_t day = day_of(e.ts_ms);

  if (s.event_count == 0) {
    s.first_seen_ms = s.last_seen_ms = e.ts_ms;
    s.decay_ref_day = event_day;
  } else {
    s.first_seen_ms = std::min(s.first_seen_ms, e.ts_ms);
    s.last_seen_ms = std::max(s.last_seen_ms, e.ts_ms);
  }
  ++s.event_count;
  ++s.type_counts[static_cast<std::size_t>(e.type)];

  if (event_day > s.decay_ref_day) advance_reference(s, event_day, half_life);
  const double w = std::exp2((event_day - s.decay_ref_day) / half_life);  // <= 1

  // Satisfaction signals.
  if (e.csat) add_signal(s, SignalClass::kCsat, csat_signal(*e.csat), w);
  if (e.nps) add_signal(s, SignalClass::kNps, nps_signal(*e.nps), w);
  if (e.rating) add_signal(s, SignalClass::kRating, rating_signal(*e.rating), w);
  if (e.sentiment) add_signal(s, SignalClass::kSentiment, *e.sentiment, w);
  if (e.type == EventType::kComplaint) add_signal(s, SignalClass::kComplaint, -1.0, w);
  if (e.type == EventType::kRefund) add_signal(s, SignalClass::kRefund, -0.5, w);

  // Loyalty: every interaction is engagement; intention from NPS and explicit acts.
  s.engagement += w;
  if (e.nps && *e.nps >= 9.0) s.intention_positive += w;
  if (e.nps && *e.nps <= 6.0) s.intention_negative += w;
  if (e.type == EventType::kReferral || e.type == EventType::kRenewal) s.intention_positive += w;
  if (e.type == EventType::kCancellation) s.intention_negative += w;

  // Money. A renewal that carries an amount is a transaction like a purchase.
  const std::int32_t latest_day = day_of(s.last_seen_ms);
  const std::int32_t first_recent_day = latest_day - kRecentWindowDays;
  if ((e.type == EventType::kPurchase || e.type == EventType::kRenewal) && e.amount) {
    add_to_day(s.purchase_days, day, to_units(*e.amount));
  }
  if (e.type == EventType::kRefund && e.amount) {
    const std::int64_t units = to_units(*e.amount);
    s.refunds_total += units;
    if (day >= first_recent_day) add_to_day(s.recent_refund_days, day, units);
  }
  std::int64_t cost_units = 0;
  if (e.cost) {
    cost_units = to_units(*e.cost);
  } else if (e.type == EventType::kSupport || e.type == EventType::kComplaint) {
    cost_units = to_units(config.default_cost[static_cast<std::size_t>(classify_channel(e.channel.view()))]);
  }
  if (cost_units != 0) {
    s.cost_total += cost_units;
    if (day >= first_recent_day) add_to_day(s.recent_cost_days, day, cost_units);
  }
  trim_before(s.recent_refund_days, first_recent_day);
  trim_before(s.recent_cost_days, first_recent_day);
}

namespace {

// Points per loyalty component: 100 x weight x component / sum of the (non-negative) weights.
std::array<double, 4> loyalty_contributions(const std::array<double, 4>& components, const EvaluateConfig& config) {
  double total_weight = 0.0;
  for (const double w : config.loyalty_weights) total_weight += std::max(w, 0.0);
  std::array<double, 4> points{};
  if (total_weight <= 0) return points;
  for (int i = 0; i < 4; ++i)
    points[i] = 100.0 * std::max(config.loyalty_weights[i], 0.0) * components[i] / total_weight;
  return points;
}

}  // namespace

std::string_view signal_class_name(SignalClass c) {
  static constexpr std::array<std::string_view, kSignalClassCount> kNames = {"csat",      "nps",       "rating",
                                                                             "sentiment", "complaint", "refund"};
  const auto i = static_cast<std::size_t>(c);
  return i < kNames.size() ? kNames[i] : std::string_view("?");
}

SatisfactionExplanation explain_satisfaction(const CustomerState& s, std::int64_t now_ms,
                                             const EvaluateConfig& config) {
  SatisfactionExplanation out;
  out.prior_weight = std::max(config.prior_weight, 0.0);
  const std::array<double, kSignalClassCount> class_weight = {
      config.weight_csat,      config.weight_nps,       config.weight_rating,
      config.weight_sentiment, config.weight_complaint, config.weight_refund,
  };
  for (int c = 0; c < kSignalClassCount; ++c) out.classes[c].class_weight = class_weight[c];
  if (s.event_count == 0) return out;
  const double half_life = config.half_life_days > 0 ? config.half_life_days : 90.0;
  const double decay = std::exp2((s.decay_ref_day - static_cast<double>(now_ms) / kMsPerDay) / half_life);
  double sum = 0.0;
  for (int c = 0; c < kSignalClassCount; ++c) {
    SatisfactionTerm& term = out.classes[c];
    term.decayed_signals = s.signal_weight[c] * decay;
    term.mean_signal = s.signal_weight[c] > 0 ? s.signal_sum[c] / s.signal_weight[c] : 0.0;
    out.confidence += class_weight[c] * s.signal_weight[c] * decay;
    sum += class_weight[c] * s.signal_sum[c] * decay;
  }
  if (out.confidence <= 0) return out;
  const double denominator = out.prior_weight + out.confidence;
  for (int c = 0; c < kSignalClassCount; ++c) {
    out.classes[c].contribution = 50.0 * class_weight[c] * s.signal_sum[c] * decay / denominator;
  }
  out.score = std::clamp(50.0 + 50.0 * (sum / denominator), 0.0, 100.0);
  return out;
}

LoyaltyExplanation explain_loyalty(const Scores& scores, const EvaluateConfig& config) {
  LoyaltyExplanation out;
  out.components = {scores.loyalty_cognitive, scores.loyalty_affective, scores.loyalty_conative, scores.loyalty_action};
  out.contributions = loyalty_contributions(out.components, config);
  const int stage = static_cast<int>(scores.stage);
  out.blocking = stage < 4 ? stage : -1;
  return out;
}

Scores evaluate(const CustomerState& s, std::int64_t now_ms, const EvaluateConfig& config) {
  Scores out;
  out.events = s.event_count;
  out.first_seen_ms = s.first_seen_ms;
  out.last_seen_ms = s.last_seen_ms;
  if (s.event_count == 0) return out;

  const double half_life = config.half_life_days > 0 ? config.half_life_days : 90.0;
  const double now_day = static_cast<double>(now_ms) / kMsPerDay;
  const double decay = std::exp2((s.decay_ref_day - now_day) / half_life);

  // Satisfaction: weighted decayed mean with a neutral prior.
  const SatisfactionExplanation satisfaction = explain_satisfaction(s, now_ms, config);
  out.satisfaction = satisfaction.score;
  out.satisfaction_confidence = satisfaction.confidence;

  // Value basics.
  const std::int32_t today = day_of(now_ms);
  std::int64_t purchases = 0, purchases_12m = 0;
  std::uint32_t repeats_12m = 0;
  for (std::size_t i = 0; i < s.purchase_days.size(); ++i) {
    const PurchaseDay& p = s.purchase_days[i];
    purchases += p.amount;
    if (p.day > today - 365 && p.day <= today) {
      purchases_12m += p.amount;
      if (i > 0) ++repeats_12m;
    }
  }
  std::int64_t refunds_12m = 0, cost_12m = 0;
  for (const PurchaseDay& d : s.recent_refund_days) {
    if (d.day > today - 365 && d.day <= today) refunds_12m += d.amount;
  }
  for (const PurchaseDay& d : s.recent_cost_days) {
    if (d.day > today - 365 && d.day <= today) cost_12m += d.amount;
  }
  out.revenue = to_currency(purchases - s.refunds_total);
  out.cost_to_serve = to_currency(s.cost_total);
  out.profit = to_currency(purchases - s.refunds_total - s.cost_total);
  out.revenue_12m = to_currency(purchases_12m - refunds_12m);
  out.cost_12m = to_currency(cost_12m);
  out.profit_12m = to_currency(purchases_12m - refunds_12m - cost_12m);

  out.transactions = static_cast<std::uint32_t>(s.purchase_days.size());
  if (!s.purchase_days.empty()) {
    const std::int32_t first = s.purchase_days.front().day;
    const std::int32_t last = s.purchase_days.back().day;
    out.x = static_cast<double>(s.purchase_days.size() - 1);
    out.t_x_days = static_cast<double>(last - first);
    out.T_days = std::max(static_cast<double>(today - first), out.t_x_days);
    if (s.purchase_days.size() > 1) {
      out.mean_repeat_spend = to_currency(purchases - s.purchase_days.front().amount) / out.x;
    }
  }

  // Loyalty (Oliver): components in [0, 1].
  out.loyalty_cognitive = saturate(s.engagement * decay, kEngagementHalfSaturation);
  out.loyalty_affective = std::clamp((out.satisfaction - 50.0) / 40.0, 0.0, 1.0);
  out.loyalty_conative = saturate((s.intention_positive - s.intention_negative) * decay, kIntentionHalfSaturation);
  if (!s.purchase_days.empty()) {
    const double since_last = std::max(0.0, now_day - static_cast<double>(s.purchase_days.back().day) - 1.0);
    out.loyalty_action = saturate(repeats_12m, kRepeatHalfSaturation) * std::exp2(-since_last / half_life);
  }
  const std::array<double, 4> components = {out.loyalty_cognitive, out.loyalty_affective, out.loyalty_conative,
                                            out.loyalty_action};
  double total_weight = 0.0, loyalty = 0.0;
  for (int i = 0; i < 4; ++i) {
    total_weight += std::max(config.loyalty_weights[i], 0.0);
    loyalty += std::max(config.loyalty_weights[i], 0.0) * components[i];
  }
  out.loyalty = total_weight > 0 ? 100.0 * loyalty / total_weight : 0.0;
  out.loyalty_attitudinal = (components[0] + components[1] + components[2]) / 3.0;
  out.loyalty_behavioural = components[3];
  int stage = 0;
  while (stage < 4 && components[stage] >= config.stage_threshold) ++stage;
  out.stage = static_cast<LoyaltyStage>(stage);
  return out;
}

PurchaseHistory purchase_history_as_of(const CustomerState& s, std::int64_t as_of_ms) {
  PurchaseHistory out;
  const std::int32_t today = day_of(as_of_ms);
  const auto end = std::upper_bound(s.purchase_days.begin(), s.purchase_days.end(), today,
                                    [](std::int32_t day, const PurchaseDay& p) { return day < p.day; });
  const auto n = static_cast<std::size_t>(end - s.purchase_days.begin());
  out.transactions = static_cast<std::uint32_t>(n);
  if (n == 0) return out;
  const std::int32_t first = s.purchase_days.front().day;
  const std::int32_t last = s.purchase_days[n - 1].day;
  out.x = static_cast<double>(n - 1);
  out.t_x_days = static_cast<double>(last - first);
  out.T_days = static_cast<double>(today - first);
  if (n > 1) {
    std::int64_t repeat = 0;
    for (std::size_t i = 1; i < n; ++i) repeat += s.purchase_days[i].amount;
    out.mean_repeat_spend = to_currency(repeat) / out.x;
  }
  return out;
}

// ---- Serialization: version byte, then fixed-width little-endian fields. ----

namespace {

static_assert(std::endian::native == std::endian::little, "serialization assumes a little-endian host");

template <typename T>
void put(std::string& out, const T& v) {
  static_assert(std::is_trivially_copyable_v<T>);
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}

void put_days(std::string& out, const std::vector<PurchaseDay>& days) {
  put(out, static_cast<std::uint32_t>(days.size()));
  for (const PurchaseDay& d : days) {
    put(out, d.day);
    put(out, d.amount);
  }
}

class Reader {
 public:
  explicit Reader(std::string_view bytes) : bytes_(bytes) {}
  template <typename T>
  bool get(T& v) {
    if (bytes_.size() - pos_ < sizeof(T)) return false;
    std::memcpy(&v, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  bool get_days(std::vector<PurchaseDay>& days) {
    std::uint32_t n = 0;
    if (!get(n)) return false;
    if (n > (bytes_.size() - pos_) / (sizeof(std::int32_t) + sizeof(std::int64_t))) return false;
    days.resize(n);
    for (PurchaseDay& d : days) {
      if (!get(d.day) || !get(d.amount)) return false;
    }
    return true;
  }
  bool at_end() const { return pos_ == bytes_.size(); }

 private:
  std::string_view bytes_;
  std::size_t pos_ = 0;
};

}  // namespace

void serialize_into(const CustomerState& s, std::string& out) {
  out.clear();
  put(out, CustomerState::kFormatVersion);
  put(out, s.first_seen_ms);
  put(out, s.last_seen_ms);
  put(out, s.event_count);
  put(out, s.type_counts);
  put(out, s.decay_ref_day);
  put(out, s.signal_weight);
  put(out, s.signal_sum);
  put(out, s.engagement);
  put(out, s.intention_positive);
  put(out, s.intention_negative);
  put(out, s.refunds_total);
  put(out, s.cost_total);
  put_days(out, s.recent_refund_days);
  put_days(out, s.recent_cost_days);
  put_days(out, s.purchase_days);
}

std::string serialize(const CustomerState& state) {
  std::string out;
  serialize_into(state, out);
  return out;
}

Status deserialize(std::string_view bytes, CustomerState& s) {
  if (bytes.empty()) return Status::Error("customer record is empty");
  const auto version = static_cast<std::uint8_t>(bytes[0]);
  if (version != CustomerState::kFormatVersion) {
    return Status::Error("customer record has format version " + std::to_string(version) +
                         "; this build reads version " + std::to_string(CustomerState::kFormatVersion));
  }
  Reader r(bytes.substr(1));
  CustomerState t;
  const bool ok = r.get(t.first_seen_ms) && r.get(t.last_seen_ms) && r.get(t.event_count) && r.get(t.type_counts) &&
                  r.get(t.decay_ref_day) && r.get(t.signal_weight) && r.get(t.signal_sum) && r.get(t.engagement) &&
                  r.get(t.intention_positive) && r.get(t.intention_negative) && r.get(t.refunds_total) &&
                  r.get(t.cost_total) && r.get_days(t.recent_refund_days) && r.get_days(t.recent_cost_days) &&
                  r.get_days(t.purchase_days);
  if (!ok) return Status::Error("customer record is truncated (" + std::to_string(bytes.size()) + " bytes)");
  if (!r.at_end()) return Status::Error("customer record has trailing bytes");
  s = std::move(t);
  return Status::Ok();
}

}  // namespace rapport
