#include "daemon/customer_json.h"

#include <cmath>
#include <ctime>

namespace rapport {
namespace {

// Scores are reported rounded to 4 decimals: stable output whatever the event order.
double round4(double v) { return std::round(v * 1e4) / 1e4; }

}  // namespace

void write_customer_json(JsonWriter& out, std::string_view customer_id, const CustomerState& state, std::int64_t now_ms,
                         const EvaluateConfig& config, const ValueModel* model, const ValueConfig& value,
                         bool explain) {
  const Scores s = evaluate(state, now_ms, config);
  const bool fitted = model != nullptr && model->fitted_at_ms != 0;
  const bool buyer = s.transactions > 0;
  const CustomerValue v =
      fitted && buyer ? customer_value(*model, value, PurchaseSummary{s.x, s.t_x_days, s.T_days, s.mean_repeat_spend})
                      : CustomerValue{};
  const Tier tier = classify_tier(model, v.clv, s.profit_12m);
  out.begin_object();
  out.field("customer_id", customer_id);
  out.key("satisfaction")
      .begin_object()
      .field("score", round4(s.satisfaction))
      .field("confidence", round4(s.satisfaction_confidence));
  if (explain) {
    const SatisfactionExplanation e = explain_satisfaction(state, now_ms, config);
    out.field("neutral", 50.0)
        .field("prior_weight", e.prior_weight)
        .field("half_life_days", config.half_life_days)
        .key("classes")
        .begin_object();
    for (int c = 0; c < kSignalClassCount; ++c) {
      const SatisfactionTerm& t = e.classes[c];
      out.key(signal_class_name(static_cast<SignalClass>(c)))
          .begin_object()
          .field("class_weight", t.class_weight)
          .field("decayed_signals", round4(t.decayed_signals))
          .field("mean_signal", round4(t.mean_signal))
          .field("contribution", round4(t.contribution))
          .end_object();
    }
    out.end_object();
  }
  out.end_object();
  out.key("loyalty")
      .begin_object()
      .field("score", round4(s.loyalty))
      .field("stage", loyalty_stage_name(s.stage))
      .field("attitudinal", round4(s.loyalty_attitudinal))
      .field("behavioural", round4(s.loyalty_behavioural));
  if (explain) {
    const LoyaltyExplanation e = explain_loyalty(s, config);
    const auto name = [](int i) { return loyalty_stage_name(static_cast<LoyaltyStage>(i + 1)); };
    out.key("components").begin_object();
    for (int i = 0; i < 4; ++i) out.field(name(i), round4(e.components[i]));
    out.end_object().key("weights").begin_object();
    for (int i = 0; i < 4; ++i) out.field(name(i), config.loyalty_weights[i]);
    out.end_object().key("contributions").begin_object();
    for (int i = 0; i < 4; ++i) out.field(name(i), round4(e.contributions[i]));
    out.end_object().field("stage_threshold", config.stage_threshold);
    if (e.blocking >= 0) {
      out.field("next_stage", name(e.blocking))
          .key("blocked_by")
          .begin_object()
          .field("component", name(e.blocking))
          .field("value", round4(e.components[e.blocking]))
          .field("threshold", config.stage_threshold)
          .end_object();
    } else {
      out.key("next_stage").null().key("blocked_by").null();
    }
  }
  out.end_object();
  out.key("value")
      .begin_object()
      .field("revenue", round4(s.revenue))
      .field("cost_to_serve", round4(s.cost_to_serve))
      .field("profit", round4(s.profit))
      .field("revenue_12m", round4(s.revenue_12m))
      .field("cost_12m", round4(s.cost_12m))
      .field("profit_12m", round4(s.profit_12m))
      .field("transactions", static_cast<std::uint64_t>(s.transactions));
  if (fitted) {
    out.field("clv", round4(v.clv))
        .field("expected_transactions", round4(v.expected_transactions))
        .field("expected_spend", round4(v.expected_spend))
        .field("p_alive", round4(v.p_alive))
        .field("churn_risk", round4(v.churn_risk));
  } else {
    out.key("clv").null().key("expected_transactions").null().key("expected_spend").null();
    out.key("p_alive").null().key("churn_risk").null();
    out.field("unavailable_reason",
              "no value model fitted yet: POST /v1/model:fit, or wait for the scheduled fit ([value] fit_interval_s)");
  }
  if (explain) {
    out.key("model_inputs")
        .begin_object()
        .field("x", s.x)
        .field("t_x_days", round4(s.t_x_days))
        .field("T_days", round4(s.T_days))
        .field("mean_repeat_spend", round4(s.mean_repeat_spend))
        .field("measured_at", format_rfc3339(now_ms))
        .end_object();
    if (fitted) {
      out.key("model")
          .begin_object()
          .field("r", model->bgnbd.r)
          .field("alpha", model->bgnbd.alpha)
          .field("a", model->bgnbd.a)
          .field("b", model->bgnbd.b)
          .field("p", model->gamma_gamma.p)
          .field("q", model->gamma_gamma.q)
          .field("gamma", model->gamma_gamma.gamma)
          .field("fitted_at", format_rfc3339(model->fitted_at_ms))
          .field("as_of", format_rfc3339(model->as_of_ms))
          .end_object();
    }
    out.field("horizon_days", value.horizon_days)
        .field("margin", value.margin)
        .field("annual_discount_rate", value.annual_discount_rate);
  }
  out.end_object();
  out.key("tier").begin_object().field("name", tier_name(tier));
  if (explain) {
    out.field("rule", tier == Tier::kLead       ? "profit over the last 12 months is below zero"
                      : tier == Tier::kUnranked ? "no value model fitted yet"
                                                : "CLV against the population thresholds of the last fit");
    if (fitted) {
      out.field("platinum_min_clv", round4(model->platinum_min_clv)).field("gold_min_clv", round4(model->gold_min_clv));
    }
  }
  out.end_object();
  out.field("events", static_cast<std::uint64_t>(s.events));
  out.field("first_seen", format_rfc3339(s.first_seen_ms));
  out.field("last_seen", format_rfc3339(s.last_seen_ms));
  if (explain) out.field("evaluated_at", format_rfc3339(now_ms));
  out.end_object();
}

}  // namespace rapport
