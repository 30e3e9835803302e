// End-to-end tests of rapportctl: generate, import, get.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <random>
#include <regex>
#include <utility>

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
  PartitionedStoreOptions options = config.storage;
  options.directory = state_dir;
  options.read_only = true;
  auto store = PartitionedStore::open(options);  // every partition, in key order
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

// The shuffled copy goes into a state dir of P partitions, the original into one of 1: scores depend
// neither on the order of events nor on how customers are partitioned.
class RapportctlPartitions : public ::testing::TestWithParam<int> {};

TEST_P(RapportctlPartitions, ShuffledImportGivesIdenticalScoresAndReimportIsAllDuplicates) {
  TempDir dir;
  write_file(dir.file("one.toml"), "[storage]\npartitions = 1\n");
  write_file(dir.file("p.toml"), "[storage]\npartitions = " + std::to_string(GetParam()) + "\n");
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

  const auto a = run_command({binary("rapportctl"), "import", dir.file("a.ndjson"), "--state-dir", dir.file("sa"), "-c",
                              dir.file("one.toml")});
  const auto b =
      run_command({binary("rapportctl"), "import", "-", "--state-dir", dir.file("sb"), "-c", dir.file("p.toml")},
                  dir.file("b.ndjson"));
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

  const auto again = run_command({binary("rapportctl"), "import", dir.file("a.ndjson"), "--state-dir", dir.file("sb")});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_NE(again.err.find(": 0 accepted, 20000 duplicates, 0 rejected"), std::string::npos) << again.err;
}

INSTANTIATE_TEST_SUITE_P(Partitions, RapportctlPartitions, ::testing::Values(1, 2, 4),
                         [](const auto& param_info) { return "P" + std::to_string(param_info.param); });

// A file that cannot be opened is a clear error and nothing else: no summary, exit 2. With several files, every
// one is opened before anything is imported, so one bad name imports nothing (fix the list, run it again).
TEST(Rapportctl, ImportOfAFileThatCannotBeOpenedImportsNothing) {
  TempDir dir;
  const std::string state = dir.file("state");
  const std::string missing = dir.file("missing.ndjson");
  const auto alone = run_command({binary("rapportctl"), "import", missing, "--state-dir", state});
  EXPECT_EQ(alone.exit_code, 2);
  EXPECT_EQ(alone.err, "rapportctl: cannot open " + missing + ": No such file or directory\n");
  EXPECT_EQ(alone.out, "");
  EXPECT_FALSE(std::filesystem::exists(state));  // not even the state dir was made

  write_file(dir.file("a.ndjson"), R"({"event_id":"1","customer_id":"alice","ts":1700000000000,"type":"engagement"})"
                                   "\n");
  write_file(dir.file("b.ndjson"), R"({"event_id":"2","customer_id":"bob","ts":1700000000000,"type":"engagement"})"
                                   "\n");
  ASSERT_EQ(run_command({binary("rapportctl"), "import", dir.file("a.ndjson"), "--state-dir", state}).exit_code, 0);
  // b is fine, the other two are not: both are named, b is not imported.
  const auto some =
      run_command({binary("rapportctl"), "import", dir.file("b.ndjson"), missing, dir.path(), "--state-dir", state});
  EXPECT_EQ(some.exit_code, 2);
  EXPECT_EQ(some.err, "rapportctl: cannot open " + missing + ": No such file or directory\n" +
                          "rapportctl: cannot open " + dir.path() + ": Is a directory\n");
  EXPECT_EQ(run_command({binary("rapportctl"), "get", "bob", "--state-dir", state}).exit_code, 1);
  EXPECT_EQ(run_command({binary("rapportctl"), "get", "alice", "--state-dir", state}).exit_code, 0);
}

// --- line framing: rapportctl import and the TCP front frame lines alike, however the bytes arrive ----------

std::string engagement(const std::string& id) {
  return R"({"event_id":")" + id + R"(","customer_id":"framing","ts":1700000000000,"type":"engagement"})";
}
// The event, padded with JSON whitespace to exactly `bytes` bytes.
std::string padded(const std::string& id, std::size_t bytes) {
  std::string line = engagement(id);
  line.insert(line.size() - 1, bytes - line.size(), ' ');
  return line;
}

// (line, reason) of each rejection.
using Rejections = std::vector<std::pair<long, std::string>>;

// The rejections and the final ack of a TCP exchange: sends each piece, and after each waits for the ack that
// covers its last complete line (so the daemon's next read starts where the next piece does).
std::pair<Rejections, long> send_tcp(int port, const std::vector<std::string>& pieces) {
  Client c(port);
  Rejections rejections;
  long ack = 0;
  simdjson::dom::parser parser;
  const auto read_until = [&](long newlines) {
    while (ack < newlines || newlines < 0) {
      const auto line = c.read_line();
      if (!line) return;
      simdjson::dom::element doc;
      if (parser.parse(*line).get(doc) != simdjson::SUCCESS) throw std::runtime_error("not JSON: " + *line);
      std::int64_t n = 0;
      std::string_view reason;
      if (doc["ack"].get_int64().get(n) == simdjson::SUCCESS) {
        ack = n;
      } else if (doc["line"].get_int64().get(n) == simdjson::SUCCESS &&
                 doc["reason"].get_string().get(reason) == simdjson::SUCCESS) {
        rejections.emplace_back(n, std::string(reason));
      } else {
        throw std::runtime_error("unexpected answer: " + *line);
      }
    }
  };
  long newlines = 0;
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    c.send(pieces[i]);
    newlines += std::count(pieces[i].begin(), pieces[i].end(), '\n');
    if (i + 1 < pieces.size()) read_until(newlines);
  }
  c.shutdown_write();
  read_until(-1);  // to EOF
  return {rejections, ack};
}

// (reason, payload) of each dead letter, oldest first.
std::vector<std::pair<std::string, std::string>> dead_letters(const std::vector<std::string>& target) {
  std::vector<std::string> argv = {binary("rapportctl"), "deadletter", "list"};
  argv.insert(argv.end(), target.begin(), target.end());
  const auto list = run_command(argv);
  if (list.exit_code != 0) throw std::runtime_error(list.err);
  std::vector<std::pair<std::string, std::string>> out;
  simdjson::dom::parser parser;
  for (const std::string& l : lines_of(list.out)) {
    simdjson::dom::element doc = parser.parse(l);
    out.emplace_back(std::string(std::string_view(doc["reason"].get_string())),
                     std::string(std::string_view(doc["payload"].get_string())));
  }
  return out;
}

TEST(Rapportctl, ImportAndTcpFrameTheSameBytesAlikeInEveryChunking) {
  TempDir dir;
  const std::string config = dir.file("rapport.toml");
  write_file(config, "[ingest]\nmax_line_bytes = 256\n");
  const std::string big = R"({"event_id":"big","pad":")" + std::string(300, 'x') + "\"}";
  // Cut where the framers used to differ: inside a blank over-long line, inside one that is blank for more than the
  // limit and then is not, inside an over-long line, inside a line exactly at the limit.
  const std::vector<std::string> pieces = {
      engagement("e1") + "\n" + std::string(200, ' '),
      std::string(100, ' ') + "\n" + engagement("e2") + "\n" + std::string(150, ' '),
      std::string(150, ' ') + R"({"x":1})" + "\n" + engagement("e3") + "\n" + big.substr(0, 200),
      big.substr(200) + "\n" + engagement("e4") + "\n" + padded("e5", 256).substr(0, 100),
      padded("e5", 256).substr(100) + "\n" + padded("e6", 257) + "\n" + engagement("e7") + "\r\n" + "{not json\n" +
          "\n" + engagement("e8"),
  };
  std::string bytes;
  for (const std::string& p : pieces) bytes += p;
  // Line 2 is blank (300 spaces); 4 is blank for 300 bytes, then not; 6 is over long; 8 is exactly at the limit;
  // 9 one byte over; 10 ends in CR LF; 12 is empty; 13 has no newline.
  const Rejections expected = {{4, "too_large"}, {6, "too_large"}, {9, "too_large"}, {11, "malformed_json"}};

  write_file(dir.file("events.ndjson"), bytes);
  const auto imp = run_command({binary("rapportctl"), "import", "-q", dir.file("events.ndjson"), "--state-dir",
                                dir.file("imported"), "--config", config});
  EXPECT_EQ(imp.exit_code, 1) << imp.err;
  EXPECT_NE(imp.err.find(": 7 accepted, 0 duplicates, 4 rejected"), std::string::npos) << imp.err;
  Rejections imported;
  const std::regex error_line(R"(events\.ndjson:(\d+): (\w+): )");
  for (std::sregex_iterator it(imp.err.begin(), imp.err.end(), error_line), end; it != end; ++it) {
    imported.emplace_back(std::stol((*it)[1].str()), (*it)[2].str());
  }
  EXPECT_EQ(imported, expected) << imp.err;

  Daemon d(dir.file("daemon"), {"--config", config});
  const auto [piecewise, ack1] = send_tcp(d.tcp_port(), pieces);
  EXPECT_EQ(piecewise, expected);
  EXPECT_EQ(ack1, 13);
  const auto [whole, ack2] = send_tcp(d.tcp_port(), {bytes});
  EXPECT_EQ(whole, expected);
  EXPECT_EQ(ack2, 13);

  // The same dead letters (reason and payload: a too-large line keeps its first 256 bytes) from all three.
  const auto from_import = dead_letters({"--state-dir", dir.file("imported")});
  ASSERT_EQ(from_import.size(), 4u);
  EXPECT_EQ(from_import[0].second, std::string(256, ' '));
  EXPECT_EQ(from_import[1].second, big.substr(0, 256));
  EXPECT_EQ(from_import[2].second, padded("e6", 257).substr(0, 256));
  EXPECT_EQ(from_import[3].second, "{not json");
  const auto from_tcp = dead_letters({"--url", "http://127.0.0.1:" + std::to_string(d.http_port())});
  ASSERT_EQ(from_tcp.size(), 8u);
  EXPECT_EQ(std::vector(from_tcp.begin(), from_tcp.begin() + 4), from_import);
  EXPECT_EQ(std::vector(from_tcp.begin() + 4, from_tcp.end()), from_import);
}

}  // namespace
}  // namespace rapport::test
