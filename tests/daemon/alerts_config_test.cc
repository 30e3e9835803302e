// [[alerts]] in the config (daemon/config.cc): every key read, and bad tables refused with a message
// naming the key (never the secret).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "daemon/config.h"

namespace rapport {
namespace {

class AlertsConfigTest : public ::testing::Test {
 protected:
  Result<Config> load(const std::string& text) {
    path_ = std::filesystem::temp_directory_path() / ("rapport-alerts-config-" + std::to_string(::getpid()) + ".toml");
    std::ofstream(path_) << text;
    return load_config(path_.string());
  }
  std::string error(const std::string& text) {
    auto c = load(text);
    return c.ok() ? std::string("(loaded)") : c.status().message();
  }
  void TearDown() override { std::filesystem::remove(path_); }
  std::filesystem::path path_;
};

TEST_F(AlertsConfigTest, NoAlertsByDefault) {
  auto c = load("");
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->alerts.empty());
}

TEST_F(AlertsConfigTest, ReadsEveryKey) {
  auto c = load(R"(
[[alerts]]
name = "vip-complaints"
event_types = ["complaint", "social"]
channels = ["twitter", "kiosk-3"]
tiers = ["platinum", "gold"]
satisfaction_below = 40
churn_risk_above = 0.5
url = "https://hooks.example.com/rapport"
secret = "whsec_1"

[[alerts]]
name = "tier-moves"
tier_changed = true
tiers = ["lead"]
url = "http://127.0.0.1:9000/hook"
secret = "whsec_2"
)");
  ASSERT_TRUE(c.ok()) << c.status().message();
  ASSERT_EQ(c->alerts.size(), 2u);
  const AlertRule& a = c->alerts[0];
  EXPECT_EQ(a.name, "vip-complaints");
  EXPECT_EQ(a.event_types, (std::vector<EventType>{EventType::kComplaint, EventType::kSocial}));
  EXPECT_EQ(a.channels, (std::vector<std::string>{"twitter", "kiosk-3"}));
  EXPECT_EQ(a.tiers, (std::vector<Tier>{Tier::kPlatinum, Tier::kGold}));
  EXPECT_EQ(a.satisfaction_below, 40.0);
  EXPECT_EQ(a.churn_risk_above, 0.5);
  EXPECT_FALSE(a.tier_changed);
  EXPECT_EQ(a.url, "https://hooks.example.com/rapport");
  EXPECT_EQ(a.secret, "whsec_1");
  const AlertRule& b = c->alerts[1];
  EXPECT_TRUE(b.tier_changed);
  EXPECT_FALSE(b.has_threshold());
  EXPECT_EQ(b.tiers, (std::vector<Tier>{Tier::kLead}));
}

TEST_F(AlertsConfigTest, BadTablesAreRefusedNamingTheKey) {
  const std::string ok = "name = \"a\"\nurl = \"http://127.0.0.1:9/\"\nsecret = \"TOPSECRET\"\n";
  const auto has = [](const std::string& message, const std::string& part) {
    return message.find(part) != std::string::npos;
  };
  std::string m = error("[[alerts]]\n" + ok + "colour = \"red\"\n");
  EXPECT_TRUE(has(m, "unknown key 'alerts[0].colour'")) << m;
  m = error("[[alerts]]\n" + ok + "event_types = [\"purchse\"]\n");
  EXPECT_TRUE(has(m, "'alerts[0].event_types' must list event types")) << m;
  m = error("[[alerts]]\n" + ok + "tiers = [\"diamond\"]\n");
  EXPECT_TRUE(has(m, "'alerts[0].tiers' must list tiers")) << m;
  m = error("[[alerts]]\n" + ok + "channels = []\n");
  EXPECT_TRUE(has(m, "'alerts[0].channels' must not be empty")) << m;
  m = error("[[alerts]]\n" + ok + "satisfaction_below = 140\n");
  EXPECT_TRUE(has(m, "'alerts[0].satisfaction_below' must be between 0 and 100")) << m;
  m = error("[[alerts]]\n" + ok + "churn_risk_above = \"high\"\n");
  EXPECT_TRUE(has(m, "'alerts[0].churn_risk_above' must be a number")) << m;
  for (const char* url : {"mailto:ops@example.com", "ftp://x/", "http://", "http://user:pw@host/", "http://host:port/",
                          "http://host:123456/", "http://[::1/", "hooks.example.com/x", "http://h/x?token=1"}) {
    m = error("[[alerts]]\nname = \"a\"\nurl = \"" + std::string(url) + "\"\nsecret = \"TOPSECRET\"\n");
    EXPECT_TRUE(has(m, "alert \"a\": 'alerts.url'")) << url << ": " << m;
    EXPECT_FALSE(has(m, "TOPSECRET")) << m;
  }
  m = error("[[alerts]]\nname = \"a\"\nsecret = \"TOPSECRET\"\n");
  EXPECT_TRUE(has(m, "'alerts.url' must be set")) << m;
  m = error("[[alerts]]\nname = \"a\"\nurl = \"http://127.0.0.1:9/\"\nsecret = \"\"\n");
  EXPECT_TRUE(has(m, "'alerts.secret' must not be empty")) << m;
  m = error("[[alerts]]\nname = \"a\"\nurl = \"http://127.0.0.1:9/\"\n");  // no secret at all
  EXPECT_TRUE(has(m, "'alerts.secret' must not be empty")) << m;
  m = error("[[alerts]]\n" + ok + "[[alerts]]\n" + ok);
  EXPECT_TRUE(has(m, "must be unique")) << m;
  m = error("alerts = [1]\n");
  EXPECT_TRUE(has(m, "'alerts[0]' must be a table")) << m;
  m = error("[alerts]\nname = \"a\"\n");
  EXPECT_TRUE(has(m, "'alerts' must be an array")) << m;
  // A long unknown key may be the secret pasted in the wrong place: not named.
  m = error("[[alerts]]\n" + ok + "whsec_0123456789abcdef = 1\n");
  EXPECT_TRUE(has(m, "name not shown")) << m;
  EXPECT_FALSE(has(m, "whsec_0123456789abcdef")) << m;
  // Every message is prefixed with the file, as the other config errors are.
  EXPECT_TRUE(has(m, path_.string())) << m;
}

TEST_F(AlertsConfigTest, DeliverySettingsAndOutboxCapacity) {
  auto c = load(R"(
[storage]
outbox_capacity = 5000
[alert_delivery]
timeout_ms = 2500
retry_initial_ms = 200
retry_max_ms = 60000
retry_for_s = 3600
max_concurrency_per_url = 2
threads = 8
ca_file = "/etc/ssl/hooks-ca.pem"
)");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->storage.outbox_capacity, 5000u);
  const AlertDeliveryOptions& d = c->alert_delivery;
  EXPECT_EQ(d.timeout, std::chrono::milliseconds(2500));
  EXPECT_EQ(d.retry_initial, std::chrono::milliseconds(200));
  EXPECT_EQ(d.retry_max, std::chrono::milliseconds(60000));
  EXPECT_EQ(d.retry_for, std::chrono::milliseconds(3'600'000));
  EXPECT_EQ(d.max_per_url, 2u);
  EXPECT_EQ(d.threads, 8u);
  EXPECT_EQ(d.ca_file, "/etc/ssl/hooks-ca.pem");
  // Defaults: 1 s to 1 h for 24 h.
  auto defaults = load("");
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults->alert_delivery.retry_initial, std::chrono::milliseconds(1000));
  EXPECT_EQ(defaults->alert_delivery.retry_max, std::chrono::milliseconds(3'600'000));
  EXPECT_EQ(defaults->alert_delivery.retry_for, std::chrono::milliseconds(86'400'000));

  std::string m = error("[alert_delivery]\nretry_initial_ms = 5000\nretry_max_ms = 1000\n");
  EXPECT_NE(m.find("'alert_delivery.retry_max_ms' at least"), std::string::npos) << m;
  m = error("[alert_delivery]\ntimeout_ms = 0\n");
  EXPECT_NE(m.find("'alert_delivery.timeout_ms'"), std::string::npos) << m;
  m = error("[alert_delivery]\nthreads = 0\n");
  EXPECT_NE(m.find("'alert_delivery.threads' must be between 1 and 256"), std::string::npos) << m;
  m = error("[alert_delivery]\nretries = 3\n");
  EXPECT_NE(m.find("unknown key 'alert_delivery.retries'"), std::string::npos) << m;
  m = error("[storage]\noutbox_capacity = 0\n");
  EXPECT_NE(m.find("'storage.outbox_capacity' must be between 1"), std::string::npos) << m;
}

TEST_F(AlertsConfigTest, KeysAreListed) {
  const auto keys = config_keys();
  for (const char* key :
       {"alerts", "alerts.name", "alerts.event_types", "alerts.channels", "alerts.tiers", "alerts.satisfaction_below",
        "alerts.churn_risk_above", "alerts.tier_changed", "alerts.url", "alerts.secret"}) {
    EXPECT_TRUE(std::binary_search(keys.begin(), keys.end(), key)) << key;
  }
}

}  // namespace
}  // namespace rapport
