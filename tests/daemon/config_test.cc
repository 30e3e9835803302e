#include "daemon/config.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <utility>
#include <vector>

#include "common/json_writer.h"
#include "daemon/api.h"
#include "daemon/customer_json.h"

namespace rapport {
namespace {

class ConfigTest : public ::testing::Test {
 protected:
  std::string write(const std::string& text) {
    path_ = std::filesystem::temp_directory_path() / ("rapport-config-" + std::to_string(::getpid()) + ".toml");
    std::ofstream(path_) << text;
    return path_.string();
  }
  void TearDown() override { std::filesystem::remove(path_); }
  std::filesystem::path path_;
};

TEST_F(ConfigTest, EmptyPathGivesLoopbackDefaults) {
  auto c = load_config("");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->server.http_address, "127.0.0.1:8470");
  EXPECT_EQ(c->server.tcp_address, "127.0.0.1:8471");
  EXPECT_EQ(c->storage.directory, "./var/rapport");
  EXPECT_EQ(c->storage.durability, Durability::kFsync);
  EXPECT_TRUE(validate_config(*c).ok());
}

TEST_F(ConfigTest, ReadsEverySection) {
  auto c = load_config(write(R"(
[server]
http = "127.0.0.1:9000"
[storage]
durability = "async"
[ingest]
max_body_bytes = 2048
max_future_skew_ms = 1000
[[auth.tokens]]
token = "0123456789abcdef0"
scopes = ["read", "ingest"]
[scoring]
half_life_days = 30
[scoring.satisfaction_weights]
csat = 2.5
[scoring.default_cost]
phone = 9
[value]
margin = 0.5
[log]
level = "debug"
)"));
  ASSERT_TRUE(c.ok()) << c.message();
  EXPECT_EQ(c->server.http_address, "127.0.0.1:9000");
  EXPECT_EQ(c->storage.durability, Durability::kAsync);
  EXPECT_EQ(c->server.limits.max_body_bytes, 2048u);
  EXPECT_EQ(c->server.decode.max_future_skew_ms, 1000);
  ASSERT_EQ(c->tokens.size(), 1u);
  EXPECT_EQ(c->tokens[0].scopes, static_cast<std::uint8_t>(Scope::kRead) | static_cast<std::uint8_t>(Scope::kIngest));
  EXPECT_EQ(c->apply.half_life_days, 30);
  EXPECT_EQ(c->evaluate.half_life_days, 30);
  EXPECT_EQ(c->evaluate.weight_csat, 2.5);
  EXPECT_EQ(c->apply.default_cost[static_cast<int>(Channel::kPhone)], 9);
  EXPECT_EQ(c->value.margin, 0.5);
  EXPECT_EQ(c->log_level, "debug");
}

TEST_F(ConfigTest, LogFormatAndTimestampsAreReadAndChecked) {
  auto c = load_config(write("[log]\nformat = \"json\"\ntimestamps = \"off\"\n"));
  ASSERT_TRUE(c.ok()) << c.message();
  EXPECT_EQ(c->log_format, "json");
  EXPECT_EQ(c->log_timestamps, "off");
  const Config d = default_config();
  EXPECT_EQ(d.log_format, "text");
  EXPECT_EQ(d.log_timestamps, "auto");
  auto bad = load_config(write("[log]\nformat = \"xml\"\n"));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("'log.format' must be one of: text, json"), std::string::npos) << bad.message();
  bad = load_config(write("[log]\ntimestamps = true\n"));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("'log.timestamps' must be a string"), std::string::npos) << bad.message();
}

TEST_F(ConfigTest, IdentifyEventsAreOnByDefaultAndCanBeTurnedOff) {
  EXPECT_TRUE(default_config().identity.identify_events);
  auto c = load_config(write("[identity]\nidentify_events = false\n"));
  ASSERT_TRUE(c.ok()) << c.message();
  EXPECT_FALSE(c->identity.identify_events);
  auto bad = load_config(write("[identity]\nidentify_events = \"no\"\n"));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("identity.identify_events"), std::string::npos) << bad.message();
}

TEST_F(ConfigTest, UnknownKeyIsAnErrorNamingIt) {
  auto c = load_config(write("[server]\nhtp = \"127.0.0.1:1\"\n"));
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.message().find("unknown key 'server.htp'"), std::string::npos) << c.message();
}

TEST_F(ConfigTest, WrongTypeAndRangeAreErrors) {
  auto c = load_config(write("[ingest]\nmax_body_bytes = \"big\"\n"));
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.message().find("'ingest.max_body_bytes' must be a number"), std::string::npos) << c.message();
  c = load_config(write("[value]\nmargin = 3\n"));
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.message().find("'value.margin' must be between 0 and 1"), std::string::npos) << c.message();
  c = load_config(write("[storage]\ndurability = \"sometimes\"\n"));
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.message().find("fsync, async"), std::string::npos) << c.message();
}

TEST_F(ConfigTest, CheckpointSettingsDefaultAndAreRead) {
  auto d = load_config("");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->storage.checkpoint_events, 1'000'000u);
  EXPECT_EQ(d->storage.checkpoint_interval, std::chrono::milliseconds(10'000));
  auto c = load_config(write("[storage]\ncheckpoint_events = 250000\ncheckpoint_interval_ms = 2500\n"));
  ASSERT_TRUE(c.ok()) << c.message();
  EXPECT_EQ(c->storage.checkpoint_events, 250'000u);
  EXPECT_EQ(c->storage.checkpoint_interval, std::chrono::milliseconds(2500));
  // The bounds themselves are accepted.
  c = load_config(write("[storage]\ncheckpoint_events = 1\ncheckpoint_interval_ms = 100\n"));
  ASSERT_TRUE(c.ok()) << c.message();
  EXPECT_EQ(c->storage.checkpoint_events, 1u);
  EXPECT_EQ(c->storage.checkpoint_interval, std::chrono::milliseconds(100));
  c = load_config(write("[storage]\ncheckpoint_events = 100000000\ncheckpoint_interval_ms = 604800000\n"));
  ASSERT_TRUE(c.ok()) << c.message();
  EXPECT_EQ(c->storage.checkpoint_events, 100'000'000u);
  EXPECT_EQ(c->storage.checkpoint_interval, std::chrono::hours(7 * 24));
  EXPECT_TRUE(validate_config(*c).ok());
}

TEST_F(ConfigTest, BadCheckpointSettingsAreErrorsNamingTheKey) {
  const std::pair<std::string, std::string> cases[] = {
      {"checkpoint_events = 0", "'storage.checkpoint_events' must be between 1 and 100000000"},
      {"checkpoint_events = -5", "'storage.checkpoint_events' must be between 1 and 100000000"},
      {"checkpoint_events = 100000001", "'storage.checkpoint_events' must be between 1 and 100000000"},
      {"checkpoint_events = \"1M\"", "'storage.checkpoint_events' must be a number"},
      {"checkpoint_interval_ms = 0", "'storage.checkpoint_interval_ms' must be between 100 and 604800000"},
      {"checkpoint_interval_ms = 10", "'storage.checkpoint_interval_ms' must be between 100 and 604800000"},
      {"checkpoint_interval_ms = 604800001", "'storage.checkpoint_interval_ms' must be between 100 and 604800000"},
      {"checkpoint_interval_ms = \"10s\"", "'storage.checkpoint_interval_ms' must be a number"},
      {"checkpoint_interval = 10000", "unknown key 'storage.checkpoint_interval'"},
  };
  for (const auto& [line, want] : cases) {
    auto c = load_config(write("[storage]\n" + line + "\n"));
    ASSERT_FALSE(c.ok()) << line;
    EXPECT_NE(c.message().find(want), std::string::npos) << line << ": " << c.message();
  }
}

TEST_F(ConfigTest, PartitionsAreUnsetByDefaultReadAndChecked) {
  auto d = load_config("");
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(d->storage.partitions.has_value()) << "unset: the state dir's layout, or one per core";
  for (int p : {1, 4, 64}) {
    auto c = load_config(write("[storage]\npartitions = " + std::to_string(p) + "\n"));
    ASSERT_TRUE(c.ok()) << c.message();
    EXPECT_EQ(c->storage.partitions, std::optional<std::uint32_t>(p));
  }
  const std::pair<std::string, std::string> cases[] = {
      {"partitions = 0", "'storage.partitions' must be between 1 and 64"},
      {"partitions = 65", "'storage.partitions' must be between 1 and 64"},
      {"partitions = 2.5", "'storage.partitions' must be a whole number"},
      {"partitions = \"4\"", "'storage.partitions' must be a number"},
  };
  for (const auto& [line, want] : cases) {
    auto c = load_config(write("[storage]\n" + line + "\n"));
    ASSERT_FALSE(c.ok()) << line;
    EXPECT_NE(c.message().find(want), std::string::npos) << line << ": " << c.message();
  }
}

TEST_F(ConfigTest, SyntaxErrorsGiveLineAndColumn) {
  auto c = load_config(write("[server]\nhttp = \n"));
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.message().find(":2:"), std::string::npos) << c.message();
}

TEST_F(ConfigTest, ShortTokensAndUnknownScopesAreRefused) {
  auto c = load_config(write("[[auth.tokens]]\ntoken = \"short\"\nscopes = [\"read\"]\n"));
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.message().find("at least 16"), std::string::npos);
  c = load_config(write("[[auth.tokens]]\ntoken = \"0123456789abcdef0\"\nscopes = [\"root\"]\n"));
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.message().find("scopes"), std::string::npos);
}

TEST_F(ConfigTest, NonLoopbackWithoutTokensIsRefused) {
  Config c = default_config();
  c.server.http_address = "0.0.0.0:8470";
  Status s = validate_config(c);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("without authentication"), std::string::npos);
  c.tokens.push_back(TokenGrant{"0123456789abcdef0", static_cast<std::uint8_t>(Scope::kAdmin)});
  EXPECT_TRUE(validate_config(c).ok());
  EXPECT_TRUE(is_loopback_address("127.0.0.1:1"));
  EXPECT_TRUE(is_loopback_address("[::1]:1"));
  EXPECT_TRUE(is_loopback_address("localhost:1"));
  EXPECT_FALSE(is_loopback_address("10.0.0.1:1"));
}

TEST(TokenSet, ChecksScopesAndAdminGrantsAll) {
  TokenSet open;
  EXPECT_EQ(open.check("", Scope::kAdmin), AuthResult::kAllowed);
  TokenSet set({{"reader-token-000000", static_cast<std::uint8_t>(Scope::kRead)},
                {"admin-token-0000000", static_cast<std::uint8_t>(Scope::kAdmin)}});
  EXPECT_EQ(set.check("", Scope::kRead), AuthResult::kMissing);
  EXPECT_EQ(set.check("nope", Scope::kRead), AuthResult::kInvalid);
  EXPECT_EQ(set.check("reader-token-00000", Scope::kRead), AuthResult::kInvalid);  // prefix is not a match
  EXPECT_EQ(set.check("reader-token-000000", Scope::kRead), AuthResult::kAllowed);
  EXPECT_EQ(set.check("reader-token-000000", Scope::kIngest), AuthResult::kForbidden);
  EXPECT_EQ(set.check("admin-token-0000000", Scope::kIngest), AuthResult::kAllowed);
  EXPECT_EQ(TokenSet::parse_scopes("read, ingest"), 3);
  EXPECT_EQ(TokenSet::parse_scopes("read,bogus"), 0);
}

TEST(JsonWriter, EscapesAndNestsCorrectly) {
  JsonWriter w;
  w.begin_object().field("a", "q\"\\\n\x01").key("list").begin_array().value(1).value(2.5).null().end_array();
  w.key("o").begin_object().field("nan", std::nan("")).end_object().end_object();
  EXPECT_EQ(w.str(), R"({"a":"q\"\\\n\u0001","list":[1,2.5,null],"o":{"nan":null}})");
}

// Numbers are written exactly as printf's "%.10g" (and "%lld"/"%llu") would.
TEST(JsonWriter, NumbersMatchPrintfFormatting) {
  std::mt19937_64 rng(7);
  std::vector<double> doubles = {0.0,
                                 -0.0,
                                 1.0,
                                 -1.0,
                                 0.1,
                                 2.5,
                                 1e-300,
                                 5e-324,
                                 1e300,
                                 123456789012.0,
                                 1234567890.0,
                                 0.000012345678901,
                                 99.99999999949,
                                 99.9999999995,
                                 std::numeric_limits<double>::max(),
                                 std::numeric_limits<double>::min()};
  for (int i = 0; i < 20000; ++i) {
    doubles.push_back(std::bit_cast<double>(rng()));
    doubles.push_back(static_cast<double>(rng() % 1000000) / 100.0);
  }
  for (double d : doubles) {
    if (!std::isfinite(d)) continue;
    JsonWriter w;
    w.value(d);
    char expected[64];
    std::snprintf(expected, sizeof expected, "%.10g", d);
    ASSERT_EQ(w.str(), expected) << "bits " << std::bit_cast<std::uint64_t>(d);
  }
  for (std::int64_t i : {std::int64_t{0}, std::int64_t{-1}, std::numeric_limits<std::int64_t>::min(),
                         std::numeric_limits<std::int64_t>::max()}) {
    JsonWriter w;
    w.value(i);
    EXPECT_EQ(w.str(), std::to_string(i));
  }
  JsonWriter w;
  w.begin_array().value(std::numeric_limits<std::uint64_t>::max()).value(7u).value(-3).end_array();
  EXPECT_EQ(w.str(), "[18446744073709551615,7,-3]");
}

TEST(Api, QueryParamsArePercentDecoded) {
  EXPECT_EQ(query_param("a=1&explain=true", "explain"), "true");
  EXPECT_EQ(query_param("cursor=a%2Fb+c", "cursor"), "a/b c");
  EXPECT_EQ(query_param("x=1", "y"), "");
}

TEST(CustomerJson, FormatsTimestampsAsRfc3339) {
  EXPECT_EQ(format_rfc3339(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(format_rfc3339(1700000000123), "2023-11-14T22:13:20.123Z");
}

}  // namespace
}  // namespace rapport

namespace rapport {
namespace {
TEST(JsonWriter, ReplacesInvalidUtf8SoOutputStaysValid) {
  JsonWriter w;
  w.value(std::string_view("ok \xc3\xa9 bad \xff \xed\xa0\x80 cut \xe2\x82"));
  // Each invalid byte becomes U+FFFD (written as UTF-8).
  EXPECT_EQ(w.str(),
            "\"ok \xc3\xa9 bad \xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd cut \xef\xbf\xbd\xef\xbf\xbd\"");
}
}  // namespace
}  // namespace rapport

namespace rapport {
namespace {
// The shipped /etc/rapport/rapport.toml must load and spell out exactly the defaults.
TEST(ShippedConfig, LoadsAndEqualsTheDefaults) {
  auto c = load_config(std::string(RAPPORT_SOURCE_DIR) + "/daemon/rapport.toml");
  ASSERT_TRUE(c.ok()) << c.message();
  const Config d = default_config();
  EXPECT_EQ(c->server.http_address, d.server.http_address);
  EXPECT_EQ(c->server.tcp_address, d.server.tcp_address);
  EXPECT_EQ(c->storage.directory, d.storage.directory);
  EXPECT_EQ(c->storage.initial_map_bytes, d.storage.initial_map_bytes);
  EXPECT_EQ(c->storage.max_map_bytes, d.storage.max_map_bytes);
  EXPECT_EQ(c->storage.checkpoint_events, d.storage.checkpoint_events);
  EXPECT_EQ(c->storage.checkpoint_interval, d.storage.checkpoint_interval);
  EXPECT_EQ(c->server.limits.max_body_bytes, d.server.limits.max_body_bytes);
  EXPECT_EQ(c->server.limits.read_timeout, d.server.limits.read_timeout);
  EXPECT_EQ(c->server.decode.max_future_skew_ms, d.server.decode.max_future_skew_ms);
  EXPECT_EQ(c->writer.batch_max_events, d.writer.batch_max_events);
  EXPECT_EQ(c->evaluate.weight_complaint, d.evaluate.weight_complaint);
  EXPECT_EQ(c->evaluate.loyalty_weights, d.evaluate.loyalty_weights);
  EXPECT_EQ(c->evaluate.prior_weight, d.evaluate.prior_weight);
  EXPECT_EQ(c->apply.default_cost, d.apply.default_cost);
  EXPECT_EQ(c->value.fit_interval, d.value.fit_interval);
  EXPECT_EQ(c->shutdown_timeout, d.shutdown_timeout);
  EXPECT_EQ(c->log_level, d.log_level);
  EXPECT_EQ(c->log_format, d.log_format);
  EXPECT_EQ(c->log_timestamps, d.log_timestamps);
  EXPECT_TRUE(c->tokens.empty());
}
}  // namespace
}  // namespace rapport
