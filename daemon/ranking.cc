#include "daemon/ranking.h"

#include <cmath>

#include "daemon/value_service.h"

namespace rapport {
namespace {

constexpr std::pair<std::string_view, RankMetric> kMetrics[] = {
    {"clv", RankMetric::kClv},         {"churn_risk", RankMetric::kChurnRisk},
    {"p_alive", RankMetric::kPAlive},  {"profit_12m", RankMetric::kProfit12m},
    {"revenue", RankMetric::kRevenue}, {"satisfaction", RankMetric::kSatisfaction},
    {"loyalty", RankMetric::kLoyalty},
};

}  // namespace

std::string_view rank_metric_name(RankMetric metric) {
  for (const auto& [name, m] : kMetrics) {
    if (m == metric) return name;
  }
  return "?";
}

bool parse_rank_metric(std::string_view name, RankMetric& metric) {
  for (const auto& [n, m] : kMetrics) {
    if (n == name) {
      metric = m;
      return true;
    }
  }
  return false;
}

bool rank_metric_needs_model(RankMetric metric) {
  return metric == RankMetric::kClv || metric == RankMetric::kChurnRisk || metric == RankMetric::kPAlive;
}

CustomerAssessment assess_customer(const CustomerState& state, std::int64_t now_ms,
                                   const EvaluateConfig& evaluate_config, const ValueModel* model,
                                   const ValueConfig& value) {
  CustomerAssessment a;
  a.scores = evaluate(state, now_ms, evaluate_config);
  if (model != nullptr && a.scores.transactions > 0)
    a.value = customer_value(*model, value, purchase_summary(a.scores));
  a.tier = classify_tier(model, a.value.clv, a.scores.profit_12m);
  return a;
}

double rank_value(RankMetric metric, const CustomerAssessment& a) {
  double v = 0;
  switch (metric) {
    case RankMetric::kClv:
      v = a.value.clv;
      break;
    case RankMetric::kChurnRisk:
      v = a.value.churn_risk;
      break;
    case RankMetric::kPAlive:
      v = a.value.p_alive;
      break;
    case RankMetric::kProfit12m:
      v = a.scores.profit_12m;
      break;
    case RankMetric::kRevenue:
      v = a.scores.revenue;
      break;
    case RankMetric::kSatisfaction:
      v = a.scores.satisfaction;
      break;
    case RankMetric::kLoyalty:
      v = a.scores.loyalty;
      break;
  }
  return std::isnan(v) ? -INFINITY : v;
}

bool ranks_before(double value, std::string_view id, double other_value, std::string_view other_id) {
  if (value != other_value) return value > other_value;
  return id < other_id;
}

}  // namespace rapport
