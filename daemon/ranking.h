// Ranking customers by one metric, shared by GET /v1/customers?order= and
// `rapportctl top`: the metrics, one customer's assessment at a time, and the
// top-n selection in one total order (higher value first, ties by customer id
// ascending), so pages and merges neither repeat nor skip a customer.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <queue>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "scoring/customer_state.h"
#include "scoring/value_model.h"

namespace rapport {

enum class RankMetric : std::uint8_t { kClv, kChurnRisk, kPAlive, kProfit12m, kRevenue, kSatisfaction, kLoyalty };

// "clv", "churn_risk", "p_alive", "profit_12m", "revenue", "satisfaction", "loyalty".
std::string_view rank_metric_name(RankMetric metric);
bool parse_rank_metric(std::string_view name, RankMetric& metric);
// Whether ranking by the metric needs a fitted value model (clv, churn_risk, p_alive).
bool rank_metric_needs_model(RankMetric metric);

// One customer evaluated at a time against a value model (null: none fitted; value fields then stay at
// their defaults and the tier is unranked or lead).
struct CustomerAssessment {
  Scores scores;
  CustomerValue value;
  Tier tier = Tier::kUnranked;
};
CustomerAssessment assess_customer(const CustomerState& state, std::int64_t now_ms, const EvaluateConfig& evaluate,
                                   const ValueModel* model, const ValueConfig& value);

// The metric's value in an assessment; NaN becomes -infinity so every value is ordered.
double rank_value(RankMetric metric, const CustomerAssessment& assessment);

// Higher value first, then id ascending: a total order.
bool ranks_before(double value, std::string_view id, double other_value, std::string_view other_id);

template <typename Extra>
struct RankedRow {
  double value = 0;
  std::string id;
  Extra extra{};
};

template <typename Extra>
bool ranks_before(const RankedRow<Extra>& a, const RankedRow<Extra>& b) {
  return ranks_before(a.value, a.id, b.value, b.id);
}

// The best `n` rows offered, optionally only those ranked strictly after a position (a page's last row).
template <typename Extra>
class TopN {
 public:
  explicit TopN(std::size_t n, std::optional<std::pair<double, std::string>> after = std::nullopt)
      : n_(n), after_(std::move(after)) {}

  // Whether a row with this value and id would be kept now (check before building its Extra).
  bool wants(double value, std::string_view id) const {
    if (n_ == 0) return false;
    if (after_ && !ranks_before(after_->first, after_->second, value, id)) return false;
    return best_.size() < n_ || ranks_before(value, id, best_.top().value, best_.top().id);
  }

  void offer(double value, std::string_view id, Extra extra) {
    if (!wants(value, id)) return;
    best_.push(RankedRow<Extra>{value, std::string(id), std::move(extra)});
    if (best_.size() > n_) best_.pop();
  }

  // The rows kept, best first; empties the selection.
  std::vector<RankedRow<Extra>> take() {
    std::vector<RankedRow<Extra>> rows;
    rows.reserve(best_.size());
    while (!best_.empty()) {
      rows.push_back(best_.top());
      best_.pop();
    }
    std::reverse(rows.begin(), rows.end());
    return rows;
  }

 private:
  struct Worse {
    bool operator()(const RankedRow<Extra>& a, const RankedRow<Extra>& b) const { return ranks_before(a, b); }
  };
  std::size_t n_;
  std::optional<std::pair<double, std::string>> after_;
  std::priority_queue<RankedRow<Extra>, std::vector<RankedRow<Extra>>, Worse> best_;  // top() = the worst kept
};

}  // namespace rapport
