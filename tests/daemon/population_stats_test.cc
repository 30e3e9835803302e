// The stats record (daemon/population_stats.h) and the stats table of KafkaFit (daemon/kafka_fit.h):
// exact round trips, every malformed record refused with a reason, skipped records counted, and joining.
#include "daemon/population_stats.h"

#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <random>

#include "common/clock.h"
#include "daemon/kafka_fit.h"

namespace rapport {
namespace {

PopulationStats sample_stats() {
  PopulationStats s;
  s.customers = 9;
  s.non_buyer_leads = 2;
  s.buyers[BuyerTuple{0, 0, 12, 0, -0.0f}] = 2;
  s.buyers[BuyerTuple{3, 40, 365, 0.1 + 0.2, -12.345f}] = 1;
  s.buyers[BuyerTuple{1, 7, 8, 1e-300, std::numeric_limits<float>::denorm_min()}] = 1;
  s.buyers[BuyerTuple{2, 5, 6, std::numeric_limits<double>::infinity(), 3.25f}] = 1;
  s.buyers[BuyerTuple{2, 5, 6, 2.0 / 3.0, 1e30f}] = 1;
  return s;
}

TEST(StatsRecordTest, RoundTripsExactlyInChunks) {
  const PopulationStats stats = sample_stats();
  const auto records = encode_stats_records(1'700'000'000'000, 2, 3, "abc-1", stats, 2);
  ASSERT_EQ(records.size(), 3u);  // 5 tuples, 2 per record
  PopulationStats back;
  for (std::uint32_t i = 0; i < records.size(); ++i) {
    EXPECT_EQ(records[i].first, "1700000000000/2/" + std::to_string(i));
    auto r = decode_stats_record(records[i].second);
    ASSERT_TRUE(r.ok()) << r.message() << " in " << records[i].second;
    EXPECT_EQ(r->as_of_ms, 1'700'000'000'000);
    EXPECT_EQ(r->partition, 2u);
    EXPECT_EQ(r->partitions, 3u);
    EXPECT_EQ(r->publication, "abc-1");
    EXPECT_EQ(r->chunk, i);
    EXPECT_EQ(r->chunks, 3u);
    EXPECT_EQ(r->stats.customers, 9u);
    EXPECT_EQ(r->stats.non_buyer_leads, 2u);
    for (const auto& [t, n] : r->stats.buyers) back.buyers[t] += n;
  }
  back.customers = 9;
  back.non_buyer_leads = 2;
  EXPECT_EQ(back, stats);  // bit for bit: -0, denormals, infinity, 0.1 + 0.2
  EXPECT_TRUE(std::signbit(back.buyers.begin()->first.profit_12m));
  // No buyers: still one record, so that the partition counts as published.
  PopulationStats empty;
  empty.customers = 4;
  empty.non_buyer_leads = 4;
  const auto none = encode_stats_records(5, 0, 1, "x", empty);
  ASSERT_EQ(none.size(), 1u);
  auto r = decode_stats_record(none[0].second);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(r->stats, empty);
}

TEST(StatsRecordTest, RefusesMalformedRecordsWithAReason) {
  const std::string ok = encode_stats_records(10, 0, 2, "p", sample_stats())[0].second;
  ASSERT_TRUE(decode_stats_record(ok).ok());
  const auto with = [&](const std::string& from, const std::string& to) {
    std::string v = ok;
    const auto pos = v.find(from);
    EXPECT_NE(pos, std::string::npos) << from;
    return v.replace(pos, from.size(), to);
  };
  const std::pair<std::string, std::string> cases[] = {
      {"", "not a JSON object"},
      {"[1,2]", "not a JSON object"},
      {"{\"format\":1", "not a JSON object"},
      {with("\"format\":1", "\"format\":2"), "\"format\" must be 1"},
      {with("\"as_of\":10", "\"as_of\":\"10\""), "\"as_of\""},
      {with("\"partition\":0", "\"partition\":2"), "\"partition\" must be below"},
      {with("\"partitions\":2", "\"partitions\":0"), "\"partition\" must be below"},
      {with("\"chunk\":0", "\"chunk\":1"), "\"chunk\" must be below"},
      {with("\"publication\":\"p\"", "\"publication\":\"\""), "\"publication\""},
      {with("\"non_buyer_leads\":2", "\"non_buyer_leads\":10"), "at most customers"},
      {with("\"customers\":9", "\"customers\":3"), "more buyers than"},
      {with("\"buyers\":[", "\"buyers\":{\"a\":[}"), "not a JSON object"},
      {with("\"buyers\":[", "\"buyers\":7,\"x\":["), "\"buyers\" must be an array"},
      {with("\"buyers\":[[", "\"buyers\":[[1,"), "each buyer must be"},
      {with("\"buyers\":[[0,", "\"buyers\":[[\"many\","), "must be numbers"},
      {with(",1]]}", ",0]]}"), "count must be a positive integer"},
  };
  for (const auto& [value, reason] : cases) {
    auto r = decode_stats_record(value);
    ASSERT_FALSE(r.ok()) << value;
    EXPECT_NE(r.message().find(reason), std::string::npos) << r.message() << " for " << value;
  }
  // The same tuple twice in one record.
  PopulationStats one;
  one.customers = 4;
  one.buyers[BuyerTuple{1, 2, 3, 4, 5}] = 1;
  std::string v = encode_stats_records(1, 0, 1, "p", one)[0].second;
  v.replace(v.find("]]}"), 3, "],[1,2,3,4,5,1]]}");
  auto twice = decode_stats_record(v);
  ASSERT_FALSE(twice.ok());
  EXPECT_NE(twice.message().find("listed twice"), std::string::npos) << twice.message();
}

TEST(StatsRecordTest, InconsistentStatsAreNotFitted) {
  PopulationStats s = sample_stats();
  s.customers = 3;  // fewer than the buyers
  auto fit = fit_population_stats(s, ValueConfig{}, 0);
  ASSERT_FALSE(fit.ok());
  EXPECT_NE(fit.message().find("inconsistent population stats"), std::string::npos) << fit.message();
}

class KafkaFitTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(RAPPORT_BINARY_DIR) / "test-tmp" /
           ("kfit-" + std::to_string(::getpid()) + "-" + std::to_string(std::random_device{}()));
    PartitionedStoreOptions options;
    options.directory = dir_.string();
    options.partitions = 2;
    auto store = PartitionedStore::open(options);
    ASSERT_TRUE(store.ok()) << store.message();
    store_ = std::move(store.value());
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  double counter(const std::string& name, const std::string& outcome = "") {
    for (const auto& family : registry_.Collect()) {
      if (family.name != name) continue;
      for (const auto& m : family.metric) {
        if (outcome.empty() || (!m.label.empty() && m.label[0].value == outcome)) return m.counter.value;
      }
    }
    return -1;
  }
  std::filesystem::path dir_;
  std::unique_ptr<PartitionedStore> store_;
  prometheus::Registry registry_;
};

TEST_F(KafkaFitTableTest, SkipsAndCountsUndecodableRecordsAndJoinsRecentSlotsOnce) {
  std::vector<std::int64_t> joined;
  KafkaFit fit(*store_, registry_, std::chrono::seconds(30), nullptr,
               [&](std::int64_t as_of) { joined.push_back(as_of); });
  // Not started (the follower would call on_record): collect refuses, and start needs brokers.
  EXPECT_FALSE(fit.collect(1, EvaluateConfig{}).ok());
  auto started = fit.start(kafka::ClientOptions{"", {}}, "events.stats");
  ASSERT_FALSE(started.ok());
  EXPECT_NE(started.message().find("no brokers for the stats topic"), std::string::npos) << started.message();

  const std::int64_t now = wall_ms();
  const auto record = [&](std::int64_t as_of, std::uint32_t partition, std::uint32_t partitions) {
    return encode_stats_records(as_of, partition, partitions, "z-1", sample_stats())[0].second;
  };
  const auto feed = [&](const std::string& key, const std::string& value, std::int64_t ts) {
    fit.on_record(kafka::FollowedTopic::Record{key, std::string_view(value), ts});
  };
  EXPECT_EQ(counter("rapport_kafka_stats_skipped_total"), 0);
  feed("junk", "not json", now);
  feed("1/0/0", record(1, 0, 3), now);  // a topic of 3 partitions: not this instance's
  EXPECT_EQ(counter("rapport_kafka_stats_skipped_total"), 2);
  fit.on_record(kafka::FollowedTopic::Record{"1/0/0", std::nullopt, now});  // a tombstone: nothing
  EXPECT_EQ(counter("rapport_kafka_stats_skipped_total"), 2);
  EXPECT_TRUE(joined.empty());
  // A recent record of a new as_of: joined once, whatever else arrives for it.
  feed("7/0/0", record(7, 0, 2), now);
  feed("7/1/0", record(7, 1, 2), now);
  EXPECT_EQ(joined, (std::vector<std::int64_t>{7}));
  // A record older than the timeout is history (read at start): not joined.
  feed("8/0/0", record(8, 0, 2), now - 31'000);
  EXPECT_EQ(joined, (std::vector<std::int64_t>{7}));
  EXPECT_EQ(counter("rapport_kafka_stats_skipped_total"), 2);
}

}  // namespace
}  // namespace rapport
