// [kafka] and [kafka.properties]: parsed, passed through, validated against librdkafka (messages name the key).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>

#include "daemon/config.h"

namespace rapport {
namespace {

class KafkaConfigTest : public ::testing::Test {
 protected:
  Result<Config> load(const std::string& text) {
    path_ = std::filesystem::temp_directory_path() / ("rapport-kafka-config-" + std::to_string(::getpid()) + ".toml");
    std::ofstream(path_) << text;
    return load_config(path_.string());
  }
  // The message of the first error of load_config then validate_config ("" when both pass).
  std::string error_of(const std::string& text) {
    auto c = load(text);
    if (!c.ok()) return c.message();
    const Status s = validate_config(*c);
    return s.ok() ? "" : s.message();
  }
  void TearDown() override { std::filesystem::remove(path_); }
  std::filesystem::path path_;
};

constexpr const char* kBase = "[kafka]\nbrokers = \"127.0.0.1:9092\"\ntopic = \"events\"\ngroup_id = \"rapport\"\n";

TEST_F(KafkaConfigTest, OffByDefault) {
  auto c = load("");
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(default_config().kafka.enabled());
}

TEST_F(KafkaConfigTest, ParsesTheSectionAndPassesPropertiesThroughAsText) {
  auto c = load(std::string(kBase) +
                "max_chunk_records = 100\n[kafka.properties]\n\"session.timeout.ms\" = 6000\n"
                "\"check.crcs\" = true\n\"client.id\" = \"rapportd-a\"\n");
  ASSERT_TRUE(c.ok()) << c.message();
  EXPECT_TRUE(c->kafka.enabled());
  EXPECT_EQ(c->kafka.brokers, "127.0.0.1:9092");
  EXPECT_EQ(c->kafka.topic, "events");
  EXPECT_EQ(c->kafka.group_id, "rapport");
  EXPECT_EQ(c->kafka.max_chunk_records, 100u);
  auto has = [&](const std::string& k, const std::string& v) {
    return std::find(c->kafka.properties.begin(), c->kafka.properties.end(), std::make_pair(k, v)) !=
           c->kafka.properties.end();
  };
  EXPECT_TRUE(has("session.timeout.ms", "6000"));
  EXPECT_TRUE(has("check.crcs", "true"));
  EXPECT_TRUE(has("client.id", "rapportd-a"));
  EXPECT_TRUE(validate_config(*c).ok());
}

TEST_F(KafkaConfigTest, RejectsMissingTopicOrGroup) {
  EXPECT_NE(error_of("[kafka]\nbrokers = \"b:9092\"\ngroup_id = \"g\"\n").find("[kafka] topic is required"),
            std::string::npos);
  EXPECT_NE(error_of("[kafka]\nbrokers = \"b:9092\"\ntopic = \"t\"\n").find("[kafka] group_id is required"),
            std::string::npos);
}

TEST_F(KafkaConfigTest, RejectsBadProperties) {
  const std::string unknown = error_of(std::string(kBase) + "[kafka.properties]\n\"no.such.property\" = \"1\"\n");
  EXPECT_NE(unknown.find("[kafka.properties] no.such.property"), std::string::npos) << unknown;
  const std::string bad_value =
      error_of(std::string(kBase) + "[kafka.properties]\n\"session.timeout.ms\" = \"soon\"\n");
  EXPECT_NE(bad_value.find("session.timeout.ms"), std::string::npos) << bad_value;
  const std::string reserved = error_of(std::string(kBase) + "[kafka.properties]\n\"enable.auto.commit\" = true\n");
  EXPECT_NE(reserved.find("enable.auto.commit is set by rapportd"), std::string::npos) << reserved;
  const std::string array = error_of(std::string(kBase) + "[kafka.properties]\n\"client.id\" = [1]\n");
  EXPECT_NE(array.find("'kafka.properties.client.id' must be a string, an integer or a boolean"), std::string::npos)
      << array;
  const std::string unknown_key = error_of(std::string(kBase) + "topics = \"x\"\n");
  EXPECT_NE(unknown_key.find("unknown key 'kafka.topics'"), std::string::npos) << unknown_key;
}

// The changes topic defaults to "<topic>.changes" and a new owner restores from it; both can be set.
TEST_F(KafkaConfigTest, ChangesTopicAndRestoreDefaultAndParse) {
  auto defaults = load(kBase);
  ASSERT_TRUE(defaults.ok()) << defaults.message();
  EXPECT_EQ(defaults->kafka.changes_topic, "events.changes");
  EXPECT_EQ(defaults->kafka.restore, RestoreMode::kChanges);
  EXPECT_EQ(error_of(kBase), "");

  auto set = load(std::string(kBase) + "changes_topic = \"rapport-state\"\nrestore = \"input\"\n");
  ASSERT_TRUE(set.ok()) << set.message();
  EXPECT_EQ(set->kafka.changes_topic, "rapport-state");
  EXPECT_EQ(set->kafka.restore, RestoreMode::kInput);

  // "" names the default.
  auto empty = load(std::string(kBase) + "changes_topic = \"\"\n");
  ASSERT_TRUE(empty.ok()) << empty.message();
  EXPECT_EQ(empty->kafka.changes_topic, "events.changes");
}

TEST_F(KafkaConfigTest, RejectsBadChangesTopicOrRestore) {
  const std::string bad_mode = error_of(std::string(kBase) + "restore = \"snapshot\"\n");
  EXPECT_NE(bad_mode.find("'kafka.restore' must be one of: changes, input"), std::string::npos) << bad_mode;
  const std::string same = error_of(std::string(kBase) + "changes_topic = \"events\"\n");
  EXPECT_NE(same.find("[kafka] changes_topic must differ from the input topic events"), std::string::npos) << same;
  const std::string not_string = error_of(std::string(kBase) + "changes_topic = 3\n");
  EXPECT_NE(not_string.find("'kafka.changes_topic' must be a string"), std::string::npos) << not_string;
}

TEST_F(KafkaConfigTest, KeysAreListed) {
  const auto keys = config_keys();
  for (const char* key : {"kafka", "kafka.brokers", "kafka.topic", "kafka.group_id", "kafka.properties",
                          "kafka.max_chunk_records", "kafka.changes_topic", "kafka.restore"}) {
    EXPECT_TRUE(std::binary_search(keys.begin(), keys.end(), key)) << key;
  }
}

// The stats topic of the fit over every partition (daemon/kafka_fit.h): "<topic>.stats" unless set, never the
// input topic; the collection timeout in seconds.
TEST_F(KafkaConfigTest, StatsTopicAndTimeout) {
  auto defaults = load(kBase);
  ASSERT_TRUE(defaults.ok()) << defaults.message();
  EXPECT_EQ(defaults->kafka_fit.stats_topic, "events.stats");
  EXPECT_EQ(defaults->kafka_fit.stats_timeout, std::chrono::seconds(120));
  auto set = load(std::string(kBase) + "stats_topic = \"rapport-fit\"\nstats_timeout_s = 15\n");
  ASSERT_TRUE(set.ok()) << set.message();
  EXPECT_EQ(set->kafka_fit.stats_topic, "rapport-fit");
  EXPECT_EQ(set->kafka_fit.stats_timeout, std::chrono::seconds(15));
  EXPECT_TRUE(validate_config(*set).ok());
  const std::string same = error_of(std::string(kBase) + "stats_topic = \"events\"\n");
  EXPECT_NE(same.find("[kafka] stats_topic must not be the input topic"), std::string::npos) << same;
  const std::string zero = error_of(std::string(kBase) + "stats_timeout_s = 0\n");
  EXPECT_NE(zero.find("stats_timeout_s"), std::string::npos) << zero;
  const std::string text = error_of(std::string(kBase) + "stats_timeout_s = \"soon\"\n");
  EXPECT_NE(text.find("stats_timeout_s"), std::string::npos) << text;
  const auto keys = config_keys();
  for (const char* key : {"kafka.stats_topic", "kafka.stats_timeout_s"}) {
    EXPECT_TRUE(std::binary_search(keys.begin(), keys.end(), key)) << key;
  }
}

}  // namespace
}  // namespace rapport
