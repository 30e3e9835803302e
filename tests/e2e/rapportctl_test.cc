// End-to-end tests of rapportctl: generate, import, get.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "daemon/config.h"
#include "daemon/customer_json.h"
#include "storage/store.h"
#include "tests/e2e/harness.h"

namespace rapport::test {
namespace {

// Every customer's JSON with explanations (as `rapportctl get --explain` prints it, default config, no
// value model) evaluated at `as_of_ms`, read from the state dir.
std::map<std::string, std::string> customers_as_of(const std::string& state_dir, std::int64_t as_of_ms) {
  const Config config = default_config();
  StoreOptions options = config.storage;
  options.directory = state_dir;
  options.read_only = true;
  auto store = Store::open(options);
  if (!store.ok()) throw std::runtime_error(store.message());
  std::map<std::string, std::string> out;
  const Status visited = (*store)->for_each_customer([&](std::string_view id, const CustomerState& state) {
    JsonWriter w;
    write_customer_json(w, id, state, as_of_ms, config.evaluate, nullptr, config.value, /*explain=*/true);
    out.emplace(std::string(id), w.str());
    return true;
  });
  if (!visited.ok()) throw std::runtime_error(visited.message());
  return out;
}

TEST(Rapportctl, GenerateIsDeterministicAndCoversEveryType) {
  const auto a = run_command({binary("rapportctl"), "generate", "--customers", "50", "--events", "2000", "--seed", "7",
                              "--end-ms", "1700000000000"});
  const auto b = run_command({binary("rapportctl"), "generate", "--customers", "50", "--events", "2000", "--seed", "7",
                              "--end-ms", "1700000000000"});
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
  EXPECT_EQ(lines_of(a.out).size(), 2000u);
  for (const char* type : {"purchase", "refund", "support", "complaint", "survey", "review", "social", "referral",
                           "engagement", "renewal", "cancellation"}) {
    EXPECT_NE(a.out.find(std::string("\"type\":\"") + type + "\""), std::string::npos) << type;
  }
}

TEST(Rapportctl, ImportThenGetReadsScores) {
  TempDir dir;
  const std::string events = dir.file("events.ndjson");
  write_file(events,
             R"({"event_id":"1","customer_id":"alice","ts":"2024-01-10T10:00:00Z","type":"purchase","amount":40})"
             "\n"
             R"({"event_id":"2","customer_id":"alice","ts":"2024-02-10T10:00:00Z","type":"purchase","amount":60})"
             "\n"
             R"({"event_id":"3","customer_id":"alice","ts":"2024-02-11T10:00:00Z","type":"survey","csat":5})"
             "\n");
  const auto imp = run_command({binary("rapportctl"), "import", events, "--state-dir", dir.file("state")});
  ASSERT_EQ(imp.exit_code, 0) << imp.err;
  EXPECT_NE(imp.err.find("3 accepted, 0 duplicates, 0 rejected"), std::string::npos) << imp.err;
  const auto get = run_command({binary("rapportctl"), "get", "alice", "--state-dir", dir.file("state"), "--explain"});
  ASSERT_EQ(get.exit_code, 0) << get.err;
  EXPECT_NE(get.out.find("\"customer_id\":\"alice\""), std::string::npos) << get.out;
  EXPECT_NE(get.out.find("\"revenue\":100"), std::string::npos) << get.out;
  EXPECT_NE(get.out.find("\"transactions\":2"), std::string::npos) << get.out;
  const auto missing = run_command({binary("rapportctl"), "get", "bob", "--state-dir", dir.file("state")});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("unknown customer"), std::string::npos);
}

TEST(Rapportctl, ImportReportsRejectedLinesWithLineNumbersAndKeepsTheRest) {
  TempDir dir;
  const std::string events = dir.file("events.ndjson");
  write_file(events, R"({"event_id":"1","customer_id":"c","ts":1700000000000,"type":"engagement"})"
                     "\n"
                     "{not json\n"
                     "\n"
                     R"({"event_id":"2","customer_id":"c","ts":1700000000000,"type":"teleport"})"
                     "\n"
                     R"({"event_id":"3","customer_id":"c","ts":1700000000000,"type":"engagement"})"
                     "\n");
  const auto imp = run_command({binary("rapportctl"), "import", events, "--state-dir", dir.file("state")});
  EXPECT_EQ(imp.exit_code, 1) << imp.err;
  EXPECT_NE(imp.err.find("2 accepted, 0 duplicates, 2 rejected"), std::string::npos) << imp.err;
  EXPECT_NE(imp.err.find("events.ndjson:2: malformed_json"), std::string::npos) << imp.err;
  EXPECT_NE(imp.err.find("events.ndjson:4: unknown_type"), std::string::npos) << imp.err;
}

TEST(Rapportctl, ShuffledImportGivesIdenticalScoresAndReimportIsAllDuplicates) {
  TempDir dir;
  const auto gen = run_command({binary("rapportctl"), "generate", "--customers", "200", "--events", "20000", "--seed",
                                "3", "--end-ms", "1700000000000"});
  ASSERT_EQ(gen.exit_code, 0);
  auto lines = lines_of(gen.out);
  std::mt19937 rng(11);
  std::shuffle(lines.begin(), lines.end(), rng);
  std::string shuffled;
  for (const auto& l : lines) shuffled += l + "\n";
  write_file(dir.file("a.ndjson"), gen.out);
  write_file(dir.file("b.ndjson"), shuffled);

  const auto a = run_command({binary("rapportctl"), "import", dir.file("a.ndjson"), "--state-dir", dir.file("sa")});
  const auto b =
      run_command({binary("rapportctl"), "import", "-", "--state-dir", dir.file("sb")}, dir.file("b.ndjson"));
  ASSERT_EQ(a.exit_code, 0) << a.err;
  ASSERT_EQ(b.exit_code, 0) << b.err;
  // Same accepted / duplicate split whatever the order.
  const auto summary = [](const std::string& err) { return err.substr(err.find("s):") + 3); };
  EXPECT_EQ(summary(a.err), summary(b.err));
  EXPECT_NE(a.err.find("duplicates"), std::string::npos);

  // Identical scores, evaluated at one instant (as_of) so that decay cannot move them between the two
  // readings: rapportctl's ranking at --as-of, then every customer's full JSON (what `get --explain` prints),
  // rendered from each stored state at the same as_of.
  const std::string as_of = "2024-01-01T00:00:00Z";
  for (const char* by : {"satisfaction", "loyalty", "revenue", "profit_12m"}) {
    const std::vector<std::string> top = {
        binary("rapportctl"), "top", "--by", by, "--as-of", as_of, "-n", "500", "--json", "--state-dir"};
    auto top_a = top, top_b = top;
    top_a.push_back(dir.file("sa"));
    top_b.push_back(dir.file("sb"));
    const auto ta = run_command(top_a);
    const auto tb = run_command(top_b);
    ASSERT_EQ(ta.exit_code, 0) << ta.err;
    ASSERT_EQ(tb.exit_code, 0) << tb.err;
    EXPECT_NE(ta.out.find("\"as_of\":\"" + as_of.substr(0, 19)), std::string::npos) << ta.out;
    EXPECT_EQ(ta.out, tb.out) << "top --by " << by;
  }
  constexpr std::int64_t kAsOfMs = 1704067200000;  // as_of
  const auto ja = customers_as_of(dir.file("sa"), kAsOfMs);
  const auto jb = customers_as_of(dir.file("sb"), kAsOfMs);
  EXPECT_EQ(ja.size(), 200u);
  ASSERT_EQ(ja.size(), jb.size());
  int differ = 0;
  for (const auto& [id, json] : ja) {
    const auto other = jb.find(id);
    if (other == jb.end() || other->second != json) {
      if (++differ <= 3)
        ADD_FAILURE() << id << " differs:\n" << json << "\n" << (other == jb.end() ? "(missing)" : other->second);
    }
  }
  EXPECT_EQ(differ, 0);

  const auto again = run_command({binary("rapportctl"), "import", dir.file("a.ndjson"), "--state-dir", dir.file("sa")});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_NE(again.err.find(": 0 accepted, 20000 duplicates, 0 rejected"), std::string::npos) << again.err;
}

}  // namespace
}  // namespace rapport::test
