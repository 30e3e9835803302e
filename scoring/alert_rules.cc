#include "scoring/alert_rules.h"

#include <algorithm>
#include <cmath>

namespace rapport {
namespace {

constexpr std::size_t kMaxNameBytes = 64;

bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameBytes) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           c == '.';
  });
}

// Every set threshold holds for these scores.
bool thresholds_hold(const AlertRule& rule, const AlertScores& s) {
  if (rule.satisfaction_below && !(s.satisfaction < *rule.satisfaction_below)) return false;
  if (rule.churn_risk_above && !(s.churn_risk && *s.churn_risk > *rule.churn_risk_above)) return false;
  return true;
}

}  // namespace

Status validate_alert_rule(const AlertRule& rule) {
  if (!valid_name(rule.name)) {
    return Status::Error("'alerts.name' \"" + rule.name.substr(0, kMaxNameBytes) +
                         "\" must be 1 to 64 letters, digits, '_', '-' or '.'");
  }
  const std::string where = "alert \"" + rule.name + "\": ";
  if (rule.url.empty()) return Status::Error(where + "'alerts.url' must be set (http:// or https://)");
  if (rule.secret.empty()) return Status::Error(where + "'alerts.secret' must not be empty");
  if (rule.satisfaction_below && !(*rule.satisfaction_below >= 0 && *rule.satisfaction_below <= 100)) {
    return Status::Error(where + "'alerts.satisfaction_below' must be between 0 and 100");
  }
  if (rule.churn_risk_above && !(*rule.churn_risk_above >= 0 && *rule.churn_risk_above <= 1)) {
    return Status::Error(where + "'alerts.churn_risk_above' must be between 0 and 1");
  }
  if (rule.tier_changed && (!rule.event_types.empty() || !rule.channels.empty() || rule.has_threshold())) {
    return Status::Error(where +
                         "'alerts.tier_changed' fires at a fit, not on an event: it takes no event_types, channels, "
                         "satisfaction_below or churn_risk_above (split it into two alerts)");
  }
  for (const std::string& c : rule.channels) {
    if (c.empty() || c.size() > kMaxChannelBytes) {
      return Status::Error(where + "'alerts.channels' entries must be 1 to " + std::to_string(kMaxChannelBytes) +
                           " bytes");
    }
  }
  return Status::Ok();
}

Status validate_alert_rules(const std::vector<AlertRule>& rules) {
  for (std::size_t i = 0; i < rules.size(); ++i) {
    if (Status s = validate_alert_rule(rules[i]); !s.ok()) return s;
    for (std::size_t j = 0; j < i; ++j) {
      if (rules[j].name == rules[i].name) {
        return Status::Error("two alerts are named \"" + rules[i].name + "\": 'alerts.name' must be unique");
      }
    }
  }
  return Status::Ok();
}

bool alert_fires_on_event(const AlertRule& rule, const Event& event, Tier tier_at_arrival, const AlertScores& before,
                          const AlertScores& after) {
  if (rule.tier_changed) return false;
  if (!rule.event_types.empty() &&
      std::find(rule.event_types.begin(), rule.event_types.end(), event.type) == rule.event_types.end()) {
    return false;
  }
  if (!rule.channels.empty()) {
    const std::string_view label = event.channel.view();
    const std::string_view cls = channel_name(classify_channel(label));
    const bool match = std::any_of(rule.channels.begin(), rule.channels.end(),
                                   [&](const std::string& c) { return c == label || c == cls; });
    if (!match) return false;
  }
  if (!rule.tiers.empty() && std::find(rule.tiers.begin(), rule.tiers.end(), tier_at_arrival) == rule.tiers.end()) {
    return false;
  }
  if (!rule.has_threshold()) return true;
  return thresholds_hold(rule, after) && !thresholds_hold(rule, before);
}

bool alert_fires_on_tier_change(const AlertRule& rule, Tier before, Tier after) {
  if (!rule.tier_changed || before == after) return false;
  return rule.tiers.empty() || std::find(rule.tiers.begin(), rule.tiers.end(), after) != rule.tiers.end();
}

}  // namespace rapport
