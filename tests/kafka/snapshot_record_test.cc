#include "ingest/kafka/snapshot_record.h"

#include <gtest/gtest.h>

#include "tests/kafka/state_fixture.h"

namespace rapport::kafka {
namespace {

using test::with_purchases;

TEST(SnapshotRecord, RoundTripsStateVersionAndOffset) {
  const CustomerState state = with_purchases(3, 12.5);
  const std::string value = encode_snapshot("zoë/1", state, 42);
  Result<Snapshot> back = decode_snapshot("zoë/1", value);
  ASSERT_TRUE(back) << back.message();
  EXPECT_EQ(back->customer_id, "zoë/1");
  EXPECT_EQ(back->version, 42u);
  EXPECT_EQ(back->input_offset, 42u);
  EXPECT_EQ(back->state, state);
  EXPECT_NE(value.find("\"event_count\":3"), std::string::npos) << value;
}

TEST(SnapshotRecord, PositionRoundTrips) {
  Result<std::uint64_t> back = decode_position(encode_position(1234567890123ull));
  ASSERT_TRUE(back) << back.message();
  EXPECT_EQ(*back, 1234567890123ull);
}

TEST(SnapshotRecord, PositionKeyIsNoCustomerId) {
  // Customer ids hold no NUL byte (scoring/event.h), the marker's key starts with one.
  EXPECT_EQ(kPositionKey.front(), '\0');
  EXPECT_EQ(kPositionKey.size(), 21u);
}

TEST(SnapshotRecord, RejectsBadValuesSayingWhy) {
  const std::string good = encode_snapshot("c1", with_purchases(1), 7);
  struct Case {
    std::string key, value, why;
  };
  std::string bad_hex = good;
  bad_hex.replace(bad_hex.find("\"state\":\"") + 9, 2, "zz");
  std::string truncated = good;
  truncated.replace(truncated.find("\"state\":\"") + 9, 4, "");
  std::string future = good;
  future.replace(future.find("\"format\":1"), 10, "\"format\":2");
  const Case cases[] = {
      {"c1", "not json", "not a JSON object"},
      {"c1", "[1,2]", "not a JSON object"},
      {"c2", good, "is not its key"},
      {"c1", bad_hex, "not hex"},
      {"c1", truncated, "state:"},
      {"c1", future, "format 2 is not 1"},
      {"c1", R"({"format":1,"customer_id":"c1","input_offset":1,"state":""})", "no integer \"version\""},
      {"c1", R"({"format":1,"customer_id":"c1","version":-1,"input_offset":1,"state":""})", "no integer \"version\""},
      {"c1", R"({"format":1,"version":1,"input_offset":1,"state":""})", "no string \"customer_id\""},
  };
  for (const Case& c : cases) {
    Result<Snapshot> r = decode_snapshot(c.key, c.value);
    ASSERT_FALSE(r) << c.value;
    EXPECT_NE(r.message().find(c.why), std::string::npos) << r.message();
    EXPECT_NE(r.message().find("customer \"" + c.key + "\""), std::string::npos) << r.message();
  }
  EXPECT_FALSE(decode_position("{}"));
  EXPECT_FALSE(decode_position(R"({"format":1})"));
  EXPECT_FALSE(decode_position(R"({"format":1,"input_offset":"3"})"));
  EXPECT_FALSE(decode_position(""));
}

}  // namespace
}  // namespace rapport::kafka
