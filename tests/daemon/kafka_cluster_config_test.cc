// [kafka] members_topic, instance and advertised_url: defaults, validation (messages name the key), and the
// HTTP address a member advertises when advertised_url is not set.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "daemon/config.h"
#include "daemon/kafka_cluster.h"

namespace rapport {
namespace {

class KafkaClusterConfigTest : public ::testing::Test {
 protected:
  Result<Config> load(const std::string& text) {
    path_ = std::filesystem::temp_directory_path() /
            ("rapport-kafka-cluster-config-" + std::to_string(::getpid()) + ".toml");
    std::ofstream(path_) << text;
    return load_config(path_.string());
  }
  // The message of the first error of load_config then validate_config ("" when both pass).
  std::string error_of(const std::string& extra) {
    auto c = load(std::string(kBase) + extra);
    if (!c.ok()) return c.message();
    const Status s = validate_config(*c);
    return s.ok() ? "" : s.message();
  }
  void TearDown() override { std::filesystem::remove(path_); }
  static constexpr const char* kBase = "[kafka]\nbrokers = \"127.0.0.1:9092\"\ntopic = \"events\"\ngroup_id = \"g\"\n";
  std::filesystem::path path_;
};

TEST_F(KafkaClusterConfigTest, DefaultsToTopicDotMembersTheHostNameAndTheListener) {
  auto c = load(kBase);
  ASSERT_TRUE(c.ok()) << c.message();
  EXPECT_EQ(c->kafka_cluster.members_topic, "events.members");
  EXPECT_EQ(c->kafka_cluster.instance, host_name());
  EXPECT_FALSE(c->kafka_cluster.instance.empty());
  EXPECT_EQ(c->kafka_cluster.advertised_url, "");
  EXPECT_TRUE(validate_config(*c).ok());
}

TEST_F(KafkaClusterConfigTest, ParsesTheKeys) {
  auto c = load(std::string(kBase) +
                "members_topic = \"rapport.members\"\ninstance = \"rapport-a\"\n"
                "advertised_url = \"https://rapport-a.internal:8470\"\n");
  ASSERT_TRUE(c.ok()) << c.message();
  EXPECT_EQ(c->kafka_cluster.members_topic, "rapport.members");
  EXPECT_EQ(c->kafka_cluster.instance, "rapport-a");
  EXPECT_EQ(c->kafka_cluster.advertised_url, "https://rapport-a.internal:8470");
  EXPECT_TRUE(validate_config(*c).ok());
}

TEST_F(KafkaClusterConfigTest, RejectsBadValuesNamingTheKey) {
  const std::string topic = error_of("members_topic = \"members topic\"\n");
  EXPECT_NE(topic.find("'kafka.members_topic' \"members topic\" is not a Kafka topic name"), std::string::npos)
      << topic;
  const std::string same = error_of("members_topic = \"events\"\n");
  EXPECT_NE(same.find("'kafka.members_topic' must not be the input topic"), std::string::npos) << same;
  const std::string changes = error_of("members_topic = \"events.changes\"\n");
  EXPECT_NE(changes.find("must not be the input topic or the changes topic \"events.changes\""), std::string::npos)
      << changes;
  const std::string stats = error_of("members_topic = \"events.stats\"\n");
  EXPECT_NE(stats.find("'kafka.members_topic' must not be the stats topic \"events.stats\""), std::string::npos)
      << stats;
  const std::string instance = error_of("instance = \"a b\"\n");
  EXPECT_NE(instance.find("'kafka.instance' \"a b\" must be 1 to 200 of"), std::string::npos) << instance;
  const std::string long_instance = error_of("instance = \"" + std::string(201, 'x') + "\"\n");
  EXPECT_NE(long_instance.find("'kafka.instance'"), std::string::npos) << long_instance;
  const std::string scheme = error_of("advertised_url = \"ftp://host:8470\"\n");
  EXPECT_NE(scheme.find("'kafka.advertised_url': URL must look like http://HOST:PORT"), std::string::npos) << scheme;
  const std::string path = error_of("advertised_url = \"http://host:8470/rapport\"\n");
  EXPECT_NE(path.find("'kafka.advertised_url' \"http://host:8470/rapport\" must be http[s]://HOST:PORT without a path"),
            std::string::npos)
      << path;
  const std::string port = error_of("advertised_url = \"http://host:99999\"\n");
  EXPECT_NE(port.find("'kafka.advertised_url': URL has a bad port"), std::string::npos) << port;
  const std::string type = error_of("instance = 7\n");
  EXPECT_NE(type.find("'kafka.instance' must be a string"), std::string::npos) << type;
}

TEST_F(KafkaClusterConfigTest, TheKeysAreNotCheckedOutsideKafkaMode) {
  auto c = load("[kafka]\ninstance = \"a b\"\n");
  ASSERT_TRUE(c.ok()) << c.message();
  EXPECT_TRUE(validate_config(*c).ok());
}

TEST(AdvertisedHttpAddress, IsTheConfiguredUrlWithoutATrailingSlash) {
  KafkaClusterOptions o;
  o.advertised_url = "https://rapport-a.internal:8470/";
  auto a = advertised_http_address(o, "127.0.0.1:40000", false, "box");
  ASSERT_TRUE(a.ok()) << a.message();
  EXPECT_EQ(*a, "https://rapport-a.internal:8470");
}

TEST(AdvertisedHttpAddress, IsTheBoundListenerOtherwise) {
  const KafkaClusterOptions o;
  EXPECT_EQ(*advertised_http_address(o, "127.0.0.1:40123", false, "box"), "http://127.0.0.1:40123");
  EXPECT_EQ(*advertised_http_address(o, "127.0.0.1:40123", true, "box"), "https://127.0.0.1:40123");
  EXPECT_EQ(*advertised_http_address(o, "[::1]:8470", false, "box"), "http://[::1]:8470");
  // Bound to every address: the host name, with the port actually bound.
  EXPECT_EQ(*advertised_http_address(o, "0.0.0.0:39001", false, "box"), "http://box:39001");
  EXPECT_EQ(*advertised_http_address(o, "[::]:8470", true, "box"), "https://box:8470");
}

TEST(AdvertisedHttpAddress, NeedsAListenerOrAUrl) {
  const KafkaClusterOptions o;
  auto none = advertised_http_address(o, "", false, "box");
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.message().find("set 'kafka.advertised_url'"), std::string::npos) << none.message();
  KafkaClusterOptions bad;
  bad.advertised_url = "http://host:1/path";
  EXPECT_FALSE(advertised_http_address(bad, "127.0.0.1:1", false, "box").ok());
}

}  // namespace
}  // namespace rapport
