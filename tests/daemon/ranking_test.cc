// The one ranking of customers (GET /v1/customers?order= and rapportctl top) and the API's cursor codec.
#include "daemon/ranking.h"

#include <gtest/gtest.h>

#include <cmath>

#include "daemon/cursor.h"

namespace rapport {
namespace {

TEST(Ranking, TopNKeepsTheBestInOneTotalOrderAndContinuesAfterAPosition) {
  const std::vector<std::pair<double, std::string>> all = {{3, "c"}, {5, "a"}, {3, "a"}, {-INFINITY, "z"},
                                                           {9, "q"}, {3, "b"}, {1, "x"}};
  TopN<int> first(3);
  for (std::size_t i = 0; i < all.size(); ++i) first.offer(all[i].first, all[i].second, static_cast<int>(i));
  const auto page1 = first.take();
  ASSERT_EQ(page1.size(), 3u);
  EXPECT_EQ(page1[0].id, "q");
  EXPECT_EQ(page1[1].id, "a");
  EXPECT_EQ(page1[1].value, 5);
  EXPECT_EQ(page1[2].id, "a");  // 3, ties by id ascending
  EXPECT_EQ(page1[2].value, 3);
  EXPECT_EQ(page1[0].extra, 4);

  TopN<int> second(10, std::pair(page1.back().value, page1.back().id));
  for (const auto& [v, id] : all) second.offer(v, id, 0);
  std::vector<std::string> ids;
  for (const auto& r : second.take()) ids.push_back(r.id);
  EXPECT_EQ(ids, (std::vector<std::string>{"b", "c", "x", "z"}));
  EXPECT_FALSE(TopN<int>(0).wants(1, "a"));
}

TEST(Ranking, MetricsByNameAndTheirValues) {
  RankMetric m = RankMetric::kClv;
  for (const char* name : {"clv", "churn_risk", "p_alive", "profit_12m", "revenue", "satisfaction", "loyalty"}) {
    ASSERT_TRUE(parse_rank_metric(name, m)) << name;
    EXPECT_EQ(rank_metric_name(m), name);
  }
  EXPECT_FALSE(parse_rank_metric("CLV", m));
  EXPECT_TRUE(rank_metric_needs_model(RankMetric::kPAlive));
  EXPECT_FALSE(rank_metric_needs_model(RankMetric::kRevenue));
  CustomerAssessment a;
  a.value.clv = NAN;
  a.scores.revenue = 12;
  EXPECT_EQ(rank_value(RankMetric::kClv, a), -INFINITY);
  EXPECT_EQ(rank_value(RankMetric::kRevenue, a), 12);
}

TEST(Cursor, RoundTripsAndRejectsAnythingElse) {
  const std::uint64_t fields[] = {0x18bcfe56800, 7};
  const std::string text = encode_cursor("e1", fields, std::string("id\0.x", 5));
  std::uint64_t back[2] = {};
  std::string bytes;
  ASSERT_TRUE(decode_cursor(text, "e1", back, bytes, 128));
  EXPECT_EQ(back[0], fields[0]);
  EXPECT_EQ(back[1], 7u);
  EXPECT_EQ(bytes, std::string("id\0.x", 5));
  for (const std::string& bad :
       {std::string(""), std::string("e1"), std::string("e2") + text.substr(2), text.substr(0, text.size() - 1),
        text + "zz", std::string("e1.1.2"), std::string("e1.x.2.6162"), std::string("e1.11111111111111111.2.6162")}) {
    EXPECT_FALSE(decode_cursor(bad, "e1", back, bytes, 128)) << bad;
  }
  std::uint64_t one[1] = {};
  EXPECT_FALSE(decode_cursor(text, "e1", one, bytes, 128));  // wrong field count
  EXPECT_FALSE(decode_cursor(text, "e1", back, bytes, 2));   // id too long
}

}  // namespace
}  // namespace rapport
