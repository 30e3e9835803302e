// AlertRule: one `[[alerts]]` table of the config, and its pure evaluation.
//
// A rule fires on an accepted event (an event alert) or on a fit that moves a
// customer to another tier (a tier-change alert, `tier_changed = true`).
// Event alerts: every filter that is set must match (event type, channel,
// the customer's tier when the event arrives); then, if no threshold is set,
// the rule fires on every matching event; if thresholds are set, it fires
// only when this event makes the threshold condition become true (all set
// thresholds hold after the event, not all held before): crossing, not
// "while beyond". See docs/design.md, "Alerts".
//
// Pure functions over plain values: no I/O, no clocks. Thread safety: plain values.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "scoring/event.h"
#include "scoring/value_model.h"

namespace rapport {

struct AlertRule {
  std::string name;                          // unique among the rules; [A-Za-z0-9_.-], 1..64 bytes
  std::vector<EventType> event_types;        // empty: any type
  std::vector<std::string> channels;         // empty: any channel; an entry matches the label or its class name
  std::vector<Tier> tiers;                   // empty: any tier (tier-change alerts: the new tier)
  std::optional<double> satisfaction_below;  // 0..100
  std::optional<double> churn_risk_above;    // 0..1
  bool tier_changed = false;
  std::string url;     // http:// or https:// (its form is checked by the daemon's config: parse_http_url)
  std::string secret;  // HMAC key of Rapport-Signature; never logged

  bool has_threshold() const { return satisfaction_below.has_value() || churn_risk_above.has_value(); }
  friend bool operator==(const AlertRule&, const AlertRule&) = default;
};

// The scores an alert threshold looks at, for one customer at one moment.
struct AlertScores {
  double satisfaction = 50.0;
  std::optional<double> churn_risk;  // nullopt: no value model yet, or the customer has no purchase
};

// Checks one rule on its own (name, url set, secret, ranges, and
// that a tier-change rule has no event filter or threshold). The message names
// the rule and the key, and never contains the secret.
Status validate_alert_rule(const AlertRule& rule);

// Checks every rule and that names are unique.
Status validate_alert_rules(const std::vector<AlertRule>& rules);

// Whether an event alert fires for this accepted event. `before` and `after`
// are the customer's scores just before and just after the event (for a
// customer's first event, `before` is the empty state's: satisfaction 50, no
// churn risk, so a first event that lands beyond a threshold fires).
bool alert_fires_on_event(const AlertRule& rule, const Event& event, Tier tier_at_arrival, const AlertScores& before,
                          const AlertScores& after);

// Whether a tier-change alert fires for a customer whose tier went from
// `before` (the previous fit's tier) to `after` (this fit's tier).
bool alert_fires_on_tier_change(const AlertRule& rule, Tier before, Tier after);

}  // namespace rapport
