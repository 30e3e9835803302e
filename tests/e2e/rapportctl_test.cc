// End-to-end tests of rapportctl: generate, import, get.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "tests/e2e/harness.h"

namespace rapport::test {
namespace {

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

// --model bgnbd: the same bytes for the same flags, the model's flags take effect (purchases
// only with --interactions 0; another --r, other customers), a summary on stderr, and the
// flags of the other model are usage errors that name them.
TEST(Rapportctl, GenerateValueModelFlags) {
  const std::vector<std::string> base = {binary("rapportctl"), "generate",     "--model", "bgnbd",
                                         "--customers",        "200",          "--seed",  "4",
                                         "--end-ms",           "1700000000000"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> argv = base;
    argv.insert(argv.end(), extra.begin(), extra.end());
    return run_command(argv);
  };
  const auto a = with({});
  const auto b = with({});
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
  EXPECT_NE(a.err.find("generated 200 customers"), std::string::npos) << a.err;
  EXPECT_NE(a.out.find("\"customer_id\":\"c199\""), std::string::npos);
  EXPECT_NE(a.out.find("\"type\":\"support\""), std::string::npos);

  const auto purchases_only = with({"--interactions", "0", "--span-days", "365"});
  ASSERT_EQ(purchases_only.exit_code, 0) << purchases_only.err;
  for (const std::string& line : lines_of(purchases_only.out)) {
    ASSERT_NE(line.find("\"type\":\"purchase\""), std::string::npos) << line;
  }
  const auto other_r =
      with({"--r", "2", "--alpha", "20", "--a", "1", "--b", "3", "--p", "5", "--q", "4", "--gamma", "10"});
  ASSERT_EQ(other_r.exit_code, 0) << other_r.err;
  EXPECT_NE(other_r.out, a.out);

  const auto events = with({"--events", "100"});
  EXPECT_EQ(events.exit_code, 2);
  EXPECT_TRUE(events.out.empty());
  EXPECT_NE(events.err.find("--events is for --model mix only"), std::string::npos) << events.err;
  const auto mix_r = run_command({binary("rapportctl"), "generate", "--events", "10", "--r", "0.5"});
  EXPECT_EQ(mix_r.exit_code, 2);
  EXPECT_NE(mix_r.err.find("--r is for --model bgnbd only"), std::string::npos) << mix_r.err;
  const auto bad = with({"--b", "0"});
  EXPECT_EQ(bad.exit_code, 2);
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

  // Identical scores for a sample of customers (evaluated at the same instant is not possible
  // across processes, so compare everything but the timestamps that depend on "now").
  int compared = 0;
  for (int c = 0; c < 200; c += 7) {
    const std::string id = "c" + std::to_string(c);
    const auto ga = run_command({binary("rapportctl"), "get", id, "--state-dir", dir.file("sa")});
    const auto gb = run_command({binary("rapportctl"), "get", id, "--state-dir", dir.file("sb")});
    EXPECT_EQ(ga.exit_code, gb.exit_code);
    if (ga.exit_code == 0) {
      EXPECT_EQ(ga.out, gb.out) << id;
      ++compared;
    }
  }
  EXPECT_GT(compared, 10);

  const auto again = run_command({binary("rapportctl"), "import", dir.file("a.ndjson"), "--state-dir", dir.file("sa")});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_NE(again.err.find(": 0 accepted, 20000 duplicates, 0 rejected"), std::string::npos) << again.err;
}

}  // namespace
}  // namespace rapport::test
