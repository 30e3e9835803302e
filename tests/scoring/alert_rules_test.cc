// Alert rules (scoring/alert_rules.h): filters, threshold crossing (not "while beyond"),
// tier changes, and the validation of bad rules.
#include "scoring/alert_rules.h"

#include <gtest/gtest.h>

namespace rapport {
namespace {

AlertRule rule(std::string name = "a") {
  AlertRule r;
  r.name = std::move(name);
  r.url = "http://127.0.0.1:9000/hook";
  r.secret = "s3cret";
  return r;
}

Event event(EventType type, std::string_view channel = "") {
  Event e;
  e.event_id.assign("e1");
  e.customer_id.assign("c1");
  e.channel.assign(channel);
  e.type = type;
  return e;
}

AlertScores scores(double satisfaction, std::optional<double> churn = std::nullopt) {
  return AlertScores{satisfaction, churn};
}

TEST(AlertRulesTest, FiltersOnlyFireOnEveryMatchingEvent) {
  AlertRule r = rule();
  r.event_types = {EventType::kComplaint, EventType::kSocial};
  r.channels = {"twitter"};
  r.tiers = {Tier::kPlatinum};
  const Event e = event(EventType::kComplaint, "twitter");
  EXPECT_TRUE(alert_fires_on_event(r, e, Tier::kPlatinum, scores(50), scores(50)));
  EXPECT_TRUE(alert_fires_on_event(r, e, Tier::kPlatinum, scores(10), scores(5)));  // every event, no crossing needed
  EXPECT_FALSE(
      alert_fires_on_event(r, event(EventType::kPurchase, "twitter"), Tier::kPlatinum, scores(50), scores(50)));
  EXPECT_FALSE(alert_fires_on_event(r, event(EventType::kComplaint, "email"), Tier::kPlatinum, scores(50), scores(50)));
  EXPECT_FALSE(alert_fires_on_event(r, e, Tier::kGold, scores(50), scores(50)));
}

TEST(AlertRulesTest, ChannelMatchesTheLabelOrItsClass) {
  AlertRule r = rule();
  r.channels = {"twitter", "call-centre-7"};
  EXPECT_TRUE(alert_fires_on_event(r, event(EventType::kSupport, "twitter"), Tier::kIron, scores(50), scores(50)));
  EXPECT_TRUE(
      alert_fires_on_event(r, event(EventType::kSupport, "call-centre-7"), Tier::kIron, scores(50), scores(50)));
  EXPECT_FALSE(alert_fires_on_event(r, event(EventType::kSupport, "phone"), Tier::kIron, scores(50), scores(50)));
  EXPECT_FALSE(alert_fires_on_event(r, event(EventType::kSupport, ""), Tier::kIron, scores(50), scores(50)));
  r.channels = {"other"};  // the class of every label that is not a known channel
  EXPECT_TRUE(alert_fires_on_event(r, event(EventType::kSupport, "kiosk"), Tier::kIron, scores(50), scores(50)));
  EXPECT_FALSE(alert_fires_on_event(r, event(EventType::kSupport, "email"), Tier::kIron, scores(50), scores(50)));
}

TEST(AlertRulesTest, NoFilterMatchesEveryEvent) {
  const AlertRule r = rule();
  EXPECT_TRUE(alert_fires_on_event(r, event(EventType::kPurchase), Tier::kUnranked, scores(50), scores(50)));
}

TEST(AlertRulesTest, SatisfactionBelowFiresOnlyWhenThisEventCrosses) {
  AlertRule r = rule();
  r.satisfaction_below = 40;
  const Event e = event(EventType::kComplaint);
  EXPECT_TRUE(alert_fires_on_event(r, e, Tier::kIron, scores(45), scores(35)));     // crosses
  EXPECT_FALSE(alert_fires_on_event(r, e, Tier::kIron, scores(35), scores(30)));    // already below
  EXPECT_FALSE(alert_fires_on_event(r, e, Tier::kIron, scores(45), scores(41)));    // not below yet
  EXPECT_FALSE(alert_fires_on_event(r, e, Tier::kIron, scores(35), scores(45)));    // recovers
  EXPECT_TRUE(alert_fires_on_event(r, e, Tier::kIron, scores(40), scores(39.99)));  // 40 is not below 40
  // After recovering, a new fall fires again.
  EXPECT_TRUE(alert_fires_on_event(r, e, Tier::kIron, scores(45), scores(20)));
}

TEST(AlertRulesTest, ChurnRiskAboveFiresOnlyWhenThisEventCrosses) {
  AlertRule r = rule();
  r.churn_risk_above = 0.5;
  const Event e = event(EventType::kPurchase);
  EXPECT_TRUE(alert_fires_on_event(r, e, Tier::kIron, scores(50, 0.4), scores(50, 0.6)));
  EXPECT_TRUE(alert_fires_on_event(r, e, Tier::kIron, scores(50), scores(50, 0.6)));  // no churn risk before
  EXPECT_FALSE(alert_fires_on_event(r, e, Tier::kIron, scores(50, 0.6), scores(50, 0.7)));
  EXPECT_FALSE(alert_fires_on_event(r, e, Tier::kIron, scores(50, 0.5), scores(50, 0.5)));  // not above
  EXPECT_FALSE(alert_fires_on_event(r, e, Tier::kIron, scores(50, 0.4), scores(50)));       // no model: never
}

TEST(AlertRulesTest, BothThresholdsFireWhenTheConjunctionBecomesTrue) {
  AlertRule r = rule();
  r.satisfaction_below = 40;
  r.churn_risk_above = 0.5;
  const Event e = event(EventType::kComplaint);
  EXPECT_FALSE(alert_fires_on_event(r, e, Tier::kIron, scores(45, 0.6), scores(35, 0.4)));  // churn not above
  EXPECT_TRUE(alert_fires_on_event(r, e, Tier::kIron, scores(45, 0.6), scores(35, 0.6)));
  EXPECT_TRUE(alert_fires_on_event(r, e, Tier::kIron, scores(35, 0.4), scores(35, 0.6)));  // second one crosses
  EXPECT_FALSE(alert_fires_on_event(r, e, Tier::kIron, scores(35, 0.6), scores(30, 0.7)));
}

TEST(AlertRulesTest, ThresholdsStillApplyTheFilters) {
  AlertRule r = rule();
  r.satisfaction_below = 40;
  r.event_types = {EventType::kSocial};
  EXPECT_FALSE(alert_fires_on_event(r, event(EventType::kComplaint), Tier::kIron, scores(45), scores(35)));
  EXPECT_TRUE(alert_fires_on_event(r, event(EventType::kSocial), Tier::kIron, scores(45), scores(35)));
}

TEST(AlertRulesTest, TierChanged) {
  AlertRule r = rule();
  r.tier_changed = true;
  EXPECT_TRUE(alert_fires_on_tier_change(r, Tier::kGold, Tier::kPlatinum));
  EXPECT_TRUE(alert_fires_on_tier_change(r, Tier::kUnranked, Tier::kLead));
  EXPECT_FALSE(alert_fires_on_tier_change(r, Tier::kGold, Tier::kGold));
  r.tiers = {Tier::kLead};  // only moves into lead
  EXPECT_FALSE(alert_fires_on_tier_change(r, Tier::kGold, Tier::kPlatinum));
  EXPECT_TRUE(alert_fires_on_tier_change(r, Tier::kGold, Tier::kLead));
  // A tier-change rule never fires on an event, an event rule never on a fit.
  EXPECT_FALSE(alert_fires_on_event(r, event(EventType::kPurchase), Tier::kLead, scores(50), scores(50)));
  EXPECT_FALSE(alert_fires_on_tier_change(rule(), Tier::kGold, Tier::kLead));
}

TEST(AlertRulesTest, ValidRulesPass) {
  AlertRule r = rule("vip-complaints_2.0");
  r.url = "https://hooks.example.com:8443/rapport";
  EXPECT_TRUE(validate_alert_rule(r).ok());
  EXPECT_TRUE(validate_alert_rules({rule("a"), rule("b")}).ok());
}

TEST(AlertRulesTest, BadRulesAreRefusedWithTheKeyAndNeverTheSecret) {
  const auto error = [](const AlertRule& r) { return validate_alert_rule(r).message(); };
  AlertRule r = rule("");
  EXPECT_NE(error(r).find("'alerts.name'"), std::string::npos);
  r = rule("has space");
  EXPECT_NE(error(r).find("'alerts.name'"), std::string::npos);
  r = rule();
  r.url.clear();
  EXPECT_NE(error(r).find("'alerts.url' must be set"), std::string::npos);
  r = rule();
  r.secret.clear();
  EXPECT_NE(error(r).find("'alerts.secret' must not be empty"), std::string::npos);
  r = rule();
  r.satisfaction_below = 101;
  EXPECT_NE(error(r).find("'alerts.satisfaction_below'"), std::string::npos);
  r = rule();
  r.churn_risk_above = -0.1;
  EXPECT_NE(error(r).find("'alerts.churn_risk_above'"), std::string::npos);
  r = rule();
  r.tier_changed = true;
  r.event_types = {EventType::kPurchase};
  EXPECT_NE(error(r).find("'alerts.tier_changed'"), std::string::npos);
  r = rule();
  r.tier_changed = true;
  r.satisfaction_below = 30;
  EXPECT_NE(error(r).find("'alerts.tier_changed'"), std::string::npos);
  r = rule();
  r.channels = {""};
  EXPECT_NE(error(r).find("'alerts.channels'"), std::string::npos);
  // The secret never appears in a message.
  r = rule();
  r.secret = "TOPSECRETVALUE";
  r.churn_risk_above = 7;
  EXPECT_EQ(error(r).find("TOPSECRETVALUE"), std::string::npos);
  const Status dup = validate_alert_rules({rule("x"), rule("y"), rule("x")});
  EXPECT_FALSE(dup.ok());
  EXPECT_NE(dup.message().find("\"x\""), std::string::npos);
}

}  // namespace
}  // namespace rapport
