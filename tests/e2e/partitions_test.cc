// Partitions end to end: rapportd on P = 1, 2, 4, an old single-environment dir, the P mismatch error,
// and rapportctl migrate (everything moves, a running daemon is refused, a killed migrate is run again).
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "daemon/config.h"
#include "daemon/customer_json.h"
#include "storage/partitioned_store.h"
#include "storage/partitioner.h"
#include "tests/e2e/harness.h"

namespace rapport::test {
namespace {

constexpr std::int64_t kAsOfMs = 1704067200000;  // 2024-01-01

// What a state dir holds, read with rapportctl and the storage library: every customer's JSON at one instant,
// the dead letters, the stored model's tiers.
struct Snapshot {
  std::map<std::string, std::string> customers;
  std::string dead_letters, tiers;
  std::uint32_t partitions = 0;
  std::uint64_t events = 0;
};

Snapshot snapshot(const std::string& state_dir) {
  Snapshot s;
  {
    const Config config = default_config();
    PartitionedStoreOptions options = config.storage;
    options.directory = state_dir;
    options.read_only = true;
    auto store = PartitionedStore::open(options);
    if (!store.ok()) throw std::runtime_error(store.message());
    s.partitions = (*store)->partition_count();
    s.events = (*store)->stats().events;
    const Status visited = (*store)->for_each_customer([&](std::string_view id, const CustomerState& state) {
      JsonWriter w;
      write_customer_json(w, id, state, kAsOfMs, config.evaluate, nullptr, config.value, /*explain=*/true);
      s.customers.emplace(std::string(id), w.str());
      return true;
    });
    if (!visited.ok()) throw std::runtime_error(visited.message());
  }
  const auto letters = run_command({binary("rapportctl"), "deadletter", "list", "--state-dir", state_dir});
  if (letters.exit_code != 0) throw std::runtime_error(letters.err);
  s.dead_letters = letters.out;
  const auto tiers = run_command({binary("rapportctl"), "tiers", "--json", "--state-dir", state_dir});
  if (tiers.exit_code != 0) throw std::runtime_error(tiers.err);
  s.tiers = tiers.out;
  return s;
}

void expect_same_content(const Snapshot& before, const Snapshot& after) {
  EXPECT_EQ(after.events, before.events);
  EXPECT_EQ(after.dead_letters, before.dead_letters);
  EXPECT_EQ(after.tiers, before.tiers);
  ASSERT_EQ(after.customers.size(), before.customers.size());
  int differ = 0;
  for (const auto& [id, json] : before.customers) {
    const auto other = after.customers.find(id);
    if (other == after.customers.end() || other->second != json) {
      if (++differ <= 3) ADD_FAILURE() << id << " differs after the migration";
    }
  }
  EXPECT_EQ(differ, 0);
}

// A state dir of `partitions` partitions with generated events (customers x events), a rejected line
// (one dead letter) and a fitted, saved value model.
void fill(TempDir& dir, const std::string& state, int partitions, int customers, int events) {
  write_file(dir.file("p.toml"), "[storage]\npartitions = " + std::to_string(partitions) + "\n");
  const auto gen = run_command({binary("rapportctl"), "generate", "--model", "bgnbd", "--customers",
                                std::to_string(customers), "--seed", "5", "--end-ms", "1700000000000"});
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
  std::string text = gen.out;
  if (events > 0) {
    const auto more = run_command({binary("rapportctl"), "generate", "--customers", std::to_string(customers),
                                   "--events", std::to_string(events), "--seed", "6", "--end-ms", "1700000000000"});
    ASSERT_EQ(more.exit_code, 0) << more.err;
    text += more.out;
  }
  write_file(dir.file("events.ndjson"), text + "{\"not\":\"an event\"}\n");
  const auto imp = run_command({binary("rapportctl"), "import", dir.file("events.ndjson"), "--state-dir", state, "-c",
                                dir.file("p.toml"), "-q"});
  ASSERT_EQ(imp.exit_code, 1) << imp.err;  // 1: one line rejected (kept as a dead letter)
  const auto fit = run_command({binary("rapportctl"), "fit", "--save", "--state-dir", state});
  ASSERT_EQ(fit.exit_code, 0) << fit.err;
}

CommandResult migrate(const std::string& state, int partitions, const std::string& crash_hook = "") {
  std::vector<std::string> argv;
  if (!crash_hook.empty()) argv = {"/usr/bin/env", "RAPPORT_TEST_MIGRATE_CRASH=" + crash_hook};
  for (const std::string& a : {binary("rapportctl"), std::string("migrate"), std::string("--partitions"),
                               std::to_string(partitions), std::string("--state-dir"), state}) {
    argv.push_back(a);
  }
  return run_command(argv);
}

// rapportd on a state dir, expected to refuse to start: its exit code and stderr.
CommandResult start_refused(const std::string& state, std::vector<std::string> extra = {}) {
  std::vector<std::string> argv = {binary("rapportd"), "--state-dir", state,        "--http",
                                   "127.0.0.1:0",      "--tcp",       "127.0.0.1:0"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return run_command(argv);
}

double metric(int port, const std::string& name) {
  const auto r = http(port, "GET", "/metrics");
  for (const std::string& line : lines_of(r.body)) {
    if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
  }
  return -1;
}

class Migrate : public ::testing::TestWithParam<std::pair<int, int>> {};

TEST_P(Migrate, MovesEveryEventCustomerDeadLetterAndModelAndTheDaemonServesTheNewLayout) {
  const auto [from, to] = GetParam();
  TempDir dir;
  const std::string state = dir.file("state");
  fill(dir, state, from, 300, 3000);
  const Snapshot before = snapshot(state);
  ASSERT_EQ(before.partitions, static_cast<std::uint32_t>(from));
  ASSERT_EQ(before.customers.size(), 300u);

  const auto m = migrate(state, to);
  ASSERT_EQ(m.exit_code, 0) << m.err;
  EXPECT_NE(m.err.find("migrate: customers 300 / 300"), std::string::npos) << m.err;
  EXPECT_NE(m.out.find("migrated " + state + " to " + std::to_string(to) + " partition(s)"), std::string::npos)
      << m.out;
  const Snapshot after = snapshot(state);
  EXPECT_EQ(after.partitions, static_cast<std::uint32_t>(to));
  expect_same_content(before, after);
  EXPECT_FALSE(std::filesystem::exists(std::filesystem::path(state) / "migrate"));
  EXPECT_EQ(std::filesystem::exists(std::filesystem::path(state) / "partitions"), to > 1);

  // The old count is now a mismatch; with no setting rapportd takes the recorded layout.
  const auto refused = start_refused(state, {"--partitions", std::to_string(from)});
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_NE(refused.err.find("rapportctl migrate --partitions " + std::to_string(from)), std::string::npos)
      << refused.err;
  Daemon daemon(state);
  EXPECT_EQ(metric(daemon.http_port(), "rapport_partitions"), to);
  const std::string some = before.customers.begin()->first;
  EXPECT_EQ(http(daemon.http_port(), "GET", "/v1/customers/" + some).status, 200);
  const auto listed = http(daemon.http_port(), "GET", "/v1/customers?tier=unranked&limit=1000");
  EXPECT_EQ(listed.status, 200);
  EXPECT_EQ(daemon.stop(), 0);
}

// Merged customers survive a migration: the groups (partition 0's identity record) move with the layout, and
// every event keeps the id it was sent as, so an unmerge after the migration still gives each id its events.
TEST(MigrateIdentity, KeepsTheGroupsAndWhatAnUnmergeGivesBack) {
  TempDir dir;
  const std::string state = dir.file("state");
  const std::string events =
      "{\"customer_id\":\"crm-7\",\"event_id\":\"a1\",\"type\":\"purchase\",\"channel\":\"store\","
      "\"ts\":\"2023-05-01T10:00:00Z\",\"amount\":40}\n"
      "{\"customer_id\":\"mail-7\",\"event_id\":\"b1\",\"type\":\"purchase\",\"channel\":\"web\","
      "\"ts\":\"2023-06-01T10:00:00Z\",\"amount\":60}\n";
  {
    Daemon d(state, {"--partitions", "1"});
    ASSERT_EQ(http(d.http_port(), "POST", "/v1/events", events, "application/x-ndjson").status, 200);
    const auto merged =
        http(d.http_port(), "POST", "/v1/customers/crm-7:merge", "{\"from\":[\"mail-7\"]}", "application/json");
    ASSERT_EQ(merged.status, 200) << merged.body;
    EXPECT_EQ(d.stop(), 0);
  }
  const auto m = migrate(state, 2);
  ASSERT_EQ(m.exit_code, 0) << m.err;

  Daemon d(state);
  const auto alias = http(d.http_port(), "GET", "/v1/customers/mail-7");
  ASSERT_EQ(alias.status, 200) << alias.body;
  EXPECT_NE(alias.body.find("\"resolved_from\":\"mail-7\""), std::string::npos) << alias.body;
  EXPECT_NE(alias.body.find("\"customer_id\":\"crm-7\""), std::string::npos) << alias.body;
  const auto unmerged =
      http(d.http_port(), "POST", "/v1/customers/crm-7:unmerge", "{\"ids\":[\"mail-7\"]}", "application/json");
  ASSERT_EQ(unmerged.status, 200) << unmerged.body;
  const auto back = http(d.http_port(), "GET", "/v1/customers/mail-7/events");
  ASSERT_EQ(back.status, 200) << back.body;
  EXPECT_NE(back.body.find("\"event_id\":\"b1\""), std::string::npos) << back.body;
  EXPECT_EQ(back.body.find("\"event_id\":\"a1\""), std::string::npos) << back.body;
  const auto survivor = http(d.http_port(), "GET", "/v1/customers/crm-7/events");
  ASSERT_EQ(survivor.status, 200) << survivor.body;
  EXPECT_NE(survivor.body.find("\"event_id\":\"a1\""), std::string::npos) << survivor.body;
  EXPECT_EQ(survivor.body.find("\"event_id\":\"b1\""), std::string::npos) << survivor.body;
  EXPECT_EQ(d.stop(), 0);
}

INSTANTIATE_TEST_SUITE_P(Partitions, Migrate, ::testing::Values(std::pair(1, 4), std::pair(4, 2), std::pair(2, 1)),
                         [](const auto& param_info) {
                           return "From" + std::to_string(param_info.param.first) + "To" +
                                  std::to_string(param_info.param.second);
                         });

TEST(MigrateCrash, KilledMidCopyOrMidSwapItFinishesWhenRunAgainAndRapportdWaitsForIt) {
  TempDir dir;
  const std::string state = dir.file("state");
  fill(dir, state, 1, 400, 50'000);  // several batches of 20,000 events
  const Snapshot before = snapshot(state);

  const auto killed = migrate(state, 4, "batch:1");
  ASSERT_EQ(killed.exit_code, -SIGKILL) << killed.err;
  const auto waiting = start_refused(state);
  EXPECT_EQ(waiting.exit_code, 2);
  EXPECT_NE(waiting.err.find("unfinished `rapportctl migrate`"), std::string::npos) << waiting.err;
  const auto again = migrate(state, 4);
  ASSERT_EQ(again.exit_code, 0) << again.err;
  Snapshot after = snapshot(state);
  EXPECT_EQ(after.partitions, 4u);
  expect_same_content(before, after);

  for (int step = 1; step <= 4; ++step) {  // killed at each step of moving the new layout in
    const int target = step % 2 == 1 ? 2 : 4;
    const auto in_swap = migrate(state, target, "swap:" + std::to_string(step));
    ASSERT_EQ(in_swap.exit_code, -SIGKILL) << "step " << step << ": " << in_swap.err;
    EXPECT_EQ(start_refused(state).exit_code, 2) << "step " << step;
    const auto finished = migrate(state, target);
    ASSERT_EQ(finished.exit_code, 0) << "step " << step << ": " << finished.err;
    EXPECT_NE(finished.err.find("finishing the interrupted move"), std::string::npos) << finished.err;
    after = snapshot(state);
    EXPECT_EQ(after.partitions, static_cast<std::uint32_t>(target)) << "step " << step;
    expect_same_content(before, after);
  }
}

TEST(MigrateCrash, ARunningDaemonIsRefusedAndBadCountsAreUsageErrors) {
  TempDir dir;
  const std::string state = dir.file("state");
  Daemon daemon(state, {"--partitions", "2"});
  const auto busy = migrate(state, 4);
  EXPECT_EQ(busy.exit_code, 2);
  EXPECT_NE(busy.err.find("in use by a running process"), std::string::npos) << busy.err;
  EXPECT_EQ(daemon.stop(), 0);
  for (const char* bad : {"0", "65", "two"}) {
    const auto r = run_command({binary("rapportctl"), "migrate", "--partitions", bad, "--state-dir", state});
    EXPECT_EQ(r.exit_code, 2) << bad;
  }
  const auto none = run_command({binary("rapportctl"), "migrate", "--state-dir", state});
  EXPECT_EQ(none.exit_code, 2) << "--partitions is required";
  const auto same = migrate(state, 2);
  EXPECT_EQ(same.exit_code, 0);
  EXPECT_NE(same.out.find("nothing to do"), std::string::npos) << same.out;
  const auto missing = migrate(dir.file("nowhere"), 2);
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.err.find("no state dir"), std::string::npos) << missing.err;
}

TEST(PartitionsE2e, RestoreRefusesAPartialBackupAndAMismatchedConfig) {
  TempDir dir;
  const std::string state = dir.file("state");
  fill(dir, state, 4, 100, 0);
  const auto backup = run_command({binary("rapportctl"), "backup", dir.file("bk"), "--state-dir", state, "-q"});
  ASSERT_EQ(backup.exit_code, 0) << backup.err;
  EXPECT_TRUE(std::filesystem::exists(dir.file("bk/partitions/3/data.mdb")));
  write_file(dir.file("two.toml"), "[storage]\npartitions = 2\n");
  const auto mismatched = run_command(
      {binary("rapportctl"), "restore", dir.file("bk"), "--state-dir", dir.file("r1"), "-c", dir.file("two.toml")});
  EXPECT_EQ(mismatched.exit_code, 2);
  EXPECT_NE(mismatched.err.find("the backup has 4 partition(s)"), std::string::npos) << mismatched.err;
  const auto whole = run_command({binary("rapportctl"), "restore", dir.file("bk"), "--state-dir", dir.file("r2")});
  ASSERT_EQ(whole.exit_code, 0) << whole.err;
  expect_same_content(snapshot(state), snapshot(dir.file("r2")));
  std::filesystem::remove(dir.file("bk/partitions/2/data.mdb"));
  const auto partial = run_command({binary("rapportctl"), "restore", dir.file("bk"), "--state-dir", dir.file("r3")});
  EXPECT_EQ(partial.exit_code, 2);
  EXPECT_NE(partial.err.find("incomplete backup: partition 2 of 4"), std::string::npos) << partial.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("r3/data.mdb")));
}

TEST(PartitionsE2e, AnOldSingleEnvironmentDirOpensUnchangedAndAMismatchNamesMigrate) {
  TempDir dir;
  const std::string state = dir.file("state");
  {
    StoreOptions options;  // what the version before partitions wrote: one Store at the state dir
    options.directory = state;
    auto store = Store::open(options);
    ASSERT_TRUE(store.ok()) << store.message();
    Event e;
    e.customer_id.assign("old-customer");
    e.event_id.assign("1");
    e.ts_ms = 1700000000000;
    e.type = EventType::kPurchase;
    e.amount = 42;
    std::vector<EventOutcome> outcomes;
    ASSERT_TRUE((*store)->apply_batch(std::vector<Event>{e}, ApplyConfig{}, outcomes).ok());
  }
  const auto refused = start_refused(state, {"--partitions", "4"});
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_NE(refused.err.find("has 1 partition(s) but the config sets storage.partitions = 4"), std::string::npos)
      << refused.err;
  EXPECT_NE(refused.err.find("rapportctl migrate --partitions 4"), std::string::npos) << refused.err;
  EXPECT_FALSE(std::filesystem::exists(std::filesystem::path(state) / "partitions"));

  Daemon daemon(state);  // no setting: the dir's own layout (one partition)
  EXPECT_EQ(metric(daemon.http_port(), "rapport_partitions"), 1);
  const auto got = http(daemon.http_port(), "GET", "/v1/customers/old-customer");
  EXPECT_EQ(got.status, 200);
  EXPECT_NE(got.body.find("\"revenue\":42"), std::string::npos) << got.body;
  EXPECT_EQ(daemon.stop(), 0);
}

// Through the fronts: a TCP stream whose lines spread over P partitions is acknowledged line by line, reads
// route to the owner, the listing by id is one key order, erasure reaches the owner's partition.
class PartitionsServe : public ::testing::TestWithParam<int> {};

TEST_P(PartitionsServe, IngestReadsListingsAndErasureAcrossPartitions) {
  const int p = GetParam();
  TempDir dir;
  const std::string state = dir.file("state");
  Daemon daemon(state, {"--partitions", std::to_string(p)});
  std::string lines;
  std::vector<std::string> ids;
  for (int i = 0; i < 120; ++i) {
    ids.push_back("cust-" + std::to_string(i));
    lines += R"({"event_id":"e)" + std::to_string(i) + R"(","customer_id":"cust-)" + std::to_string(i % 60) +
             R"(","ts":"2024-01-10T10:00:00Z","type":"purchase","amount":10})" + "\n";
  }
  lines += "not json\n";
  Client tcp(daemon.tcp_port());
  tcp.send(lines);
  std::string acked;
  for (;;) {
    const auto l = tcp.read_line(std::chrono::seconds(30));
    ASSERT_TRUE(l.has_value()) << "no ack for line 121";
    if (*l == R"({"ack":121})") break;
  }
  ids.resize(60);
  std::sort(ids.begin(), ids.end());
  // Listing by id: every customer once, in key order, over pages (cursor = last id).
  std::vector<std::string> listed;
  std::string cursor;
  for (int page = 0; page < 10; ++page) {
    const auto r = http(daemon.http_port(), "GET",
                        "/v1/customers?tier=unranked&limit=25" + (cursor.empty() ? "" : "&cursor=" + cursor));
    ASSERT_EQ(r.status, 200) << r.body;
    for (std::size_t at = r.body.find("\"customer_id\":\""); at != std::string::npos;
         at = r.body.find("\"customer_id\":\"", at + 1)) {
      const auto start = at + 15;
      listed.push_back(r.body.substr(start, r.body.find('"', start) - start));
    }
    if (r.body.find("\"next_cursor\":null") != std::string::npos) break;
    cursor = listed.back();
  }
  EXPECT_EQ(listed, ids);
  const auto one = http(daemon.http_port(), "GET", "/v1/customers/cust-7");
  EXPECT_EQ(one.status, 200);
  EXPECT_NE(one.body.find("\"revenue\":20"), std::string::npos) << one.body;
  EXPECT_EQ(http(daemon.http_port(), "DELETE", "/v1/customers/cust-7").status, 200);
  EXPECT_EQ(http(daemon.http_port(), "GET", "/v1/customers/cust-7").status, 404);
  const auto letters = http(daemon.http_port(), "GET", "/v1/deadletter");
  EXPECT_NE(letters.body.find("not json"), std::string::npos) << letters.body;
  EXPECT_EQ(metric(daemon.http_port(), "rapport_partitions"), p);
  // Each partition's writer committed and has nothing queued; the totals are their sums.
  for (int k = 0; k < p; ++k) {
    const std::string label = "{partition=\"" + std::to_string(k) + "\"}";
    EXPECT_GE(metric(daemon.http_port(), "rapport_partition_commits_total" + label), 1) << k;
    EXPECT_EQ(metric(daemon.http_port(), "rapport_partition_queue_depth_events" + label), 0) << k;
  }
  EXPECT_EQ(metric(daemon.http_port(), "rapport_queue_depth_events"), 0);
  EXPECT_EQ(metric(daemon.http_port(), "rapport_queue_capacity_events"), 1e6 * p);
  EXPECT_EQ(daemon.stop(), 0);
  // Erased in its own partition.
  PartitionedStoreOptions options;
  options.directory = state;
  options.read_only = true;
  auto store = PartitionedStore::open(options);
  ASSERT_TRUE(store.ok()) << store.message();
  auto gone = (*store)->partition(partition_of("cust-7", static_cast<std::uint32_t>(p))).get_customer("cust-7");
  ASSERT_TRUE(gone.ok());
  EXPECT_FALSE(gone->has_value());
  EXPECT_EQ((*store)->stats().customers, 59u);
}

// Two processes on one partitioned state dir: rapportctl import beside the running daemon. The daemon reads
// what the import stored in every partition, and the same events sent over TCP are all duplicates.
TEST_P(PartitionsServe, ImportBesideTheRunningDaemonIsReadAndDeduplicated) {
  const int p = GetParam();
  TempDir dir;
  const std::string state = dir.file("state");
  Daemon daemon(state, {"--partitions", std::to_string(p)});
  std::string lines;
  for (int i = 0; i < 200; ++i) {
    lines += R"({"event_id":"m)" + std::to_string(i) + R"(","customer_id":"side-)" + std::to_string(i % 50) +
             R"(","ts":"2024-01-10T10:00:00Z","type":"purchase","amount":1})" + "\n";
  }
  write_file(dir.file("side.ndjson"), lines);
  const auto imp = run_command({binary("rapportctl"), "import", dir.file("side.ndjson"), "--state-dir", state, "-q"});
  ASSERT_EQ(imp.exit_code, 0) << imp.err;
  EXPECT_NE(imp.err.find("200 accepted, 0 duplicates"), std::string::npos) << imp.err;
  for (int c = 0; c < 50; ++c) {
    const auto r = http(daemon.http_port(), "GET", "/v1/customers/side-" + std::to_string(c));
    ASSERT_EQ(r.status, 200) << "side-" << c << ": " << r.body;
    EXPECT_NE(r.body.find("\"revenue\":4,"), std::string::npos) << r.body;
  }
  const auto again = http(daemon.http_port(), "POST", "/v1/events", lines, "application/x-ndjson");
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_NE(again.body.find("\"accepted\":0"), std::string::npos) << again.body;
  EXPECT_NE(again.body.find("\"duplicates\":200"), std::string::npos) << again.body;
  EXPECT_EQ(daemon.stop(), 0);
}

INSTANTIATE_TEST_SUITE_P(Partitions, PartitionsServe, ::testing::Values(1, 2, 4),
                         [](const auto& param_info) { return "P" + std::to_string(param_info.param); });

}  // namespace
}  // namespace rapport::test
