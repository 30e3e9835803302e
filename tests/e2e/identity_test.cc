// Identity merges end to end (docs/design.md, "Identity"), against the real rapportd on loopback with P = 1
// and P = 2: merge and unmerge checked against an independent import of the relabeled stream (a second
// daemon), duplicates across merged ids, a kill -9 at each step of a merge and of an unmerge (before or
// after, exactly), erasure of a merged customer, the blocked values and the limits, and order independence
// with merges and unmerges interleaved at random points of a randomized stream.
#include "daemon/identity.h"

#include <gtest/gtest.h>
#include <simdjson.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "common/json_writer.h"
#include "daemon/config.h"
#include "daemon/customer_json.h"
#include "daemon/routes.h"
#include "storage/partitioned_store.h"
#include "storage/partitioner.h"
#include "tests/e2e/harness.h"

namespace rapport::test {
namespace {

constexpr char kIngestToken[] = "identity-ingest-5c2e7f3b90465d2a";
constexpr char kReadToken[] = "identity-read-8b7a1c6d80352e9f";
constexpr char kAdminToken[] = "identity-admin-1d8035e9f4b7a1c2";
constexpr std::int64_t kAsOfMs = 1704067200000;  // 2024-01-01: every customer rendered at one instant

std::string bearer(const std::string& token) { return "Authorization: Bearer " + token; }

// One generated event line and its customer.
struct Line {
  std::string text;
  std::string customer;
  std::string event_id;
};

std::string field_of(const std::string& line, const std::string& key) {
  const std::string tag = "\"" + key + "\":\"";
  const auto at = line.find(tag);
  if (at == std::string::npos) throw std::runtime_error("no " + key + " in " + line);
  const auto begin = at + tag.size();
  return line.substr(begin, line.find('"', begin) - begin);
}

// `rapportctl generate`: every event type over Zipf-skewed customers c0..c<customers-1>, with duplicates
// and late events.
std::vector<Line> generate(int customers, int events, int seed) {
  const auto gen = run_command({binary("rapportctl"), "generate", "--customers", std::to_string(customers), "--events",
                                std::to_string(events), "--seed", std::to_string(seed), "--end-ms", "1700000000000"});
  if (gen.exit_code != 0) throw std::runtime_error(gen.err);
  std::vector<Line> out;
  for (std::string& text : lines_of(gen.out)) {
    Line l;
    l.customer = field_of(text, "customer_id");
    l.event_id = field_of(text, "event_id");
    l.text = std::move(text);
    out.push_back(std::move(l));
  }
  return out;
}

// The line sent as `id` instead.
Line relabel(const Line& l, const std::string& id) {
  Line out = l;
  const std::string from = "\"customer_id\":\"" + l.customer + "\"";
  out.text.replace(out.text.find(from), from.size(), "\"customer_id\":\"" + id + "\"");
  out.customer = id;
  return out;
}

// The lines with every event of `merged` sent as `survivor` instead (the independent import of a merge).
std::vector<Line> relabel_all(const std::vector<Line>& in, const std::vector<std::string>& merged,
                              const std::string& survivor) {
  std::vector<Line> out;
  for (const Line& l : in) {
    out.push_back(std::find(merged.begin(), merged.end(), l.customer) != merged.end() ? relabel(l, survivor) : l);
  }
  return out;
}

// An identify event: `aliases` are the same person as `survivor`.
std::string identify_line(const std::string& event_id, const std::string& survivor,
                          const std::vector<std::string>& aliases) {
  JsonWriter w;
  w.begin_object().key("event_id").value(event_id).key("customer_id").value(survivor);
  w.key("ts").value("2023-05-01T12:00:00Z").key("type").value("identify").key("aliases").begin_array();
  for (const std::string& id : aliases) w.value(id);
  w.end_array().end_object();
  return w.take();
}

std::string ndjson(const std::vector<Line>& lines) {
  std::string out;
  for (const Line& l : lines) out += l.text + "\n";
  return out;
}

// Every customer of a stopped daemon's state dir, rendered with explain at kAsOfMs.
std::map<std::string, std::string> customers_of(const std::string& state_dir) {
  const Config config = default_config();
  PartitionedStoreOptions options = config.storage;
  options.directory = state_dir;
  options.read_only = true;
  auto store = PartitionedStore::open(options);
  if (!store.ok()) throw std::runtime_error(store.message());
  std::map<std::string, std::string> out;
  const Status visited = (*store)->for_each_customer([&](std::string_view id, const CustomerState& state) {
    JsonWriter w;
    write_customer_json(w, id, state, kAsOfMs, config.evaluate, nullptr, config.value, /*explain=*/true);
    out.emplace(std::string(id), w.str());
    return true;
  });
  if (!visited.ok()) throw std::runtime_error(visited.message());
  return out;
}

// Two renderings agree: integers (counts) and strings exactly, other numbers (money, scores) within 1e-9
// relative: the folds sum in another order.
void expect_same_json(simdjson::dom::element a, simdjson::dom::element b, const std::string& path, int& differ) {
  const auto fail = [&](const std::string& what) {
    if (++differ <= 5) ADD_FAILURE() << path << ": " << what;
  };
  if (a.type() != b.type()) {
    const bool numbers = (a.is_number() && b.is_number());
    if (!numbers) return fail("types differ");
  }
  switch (a.type()) {
    case simdjson::dom::element_type::OBJECT: {
      std::set<std::string> keys;
      const simdjson::dom::object oa = a.get_object().value(), ob = b.get_object().value();
      for (auto f : oa) keys.emplace(f.key);
      for (auto f : ob) keys.emplace(f.key);
      for (const std::string& k : keys) {
        simdjson::dom::element x, y;
        if (a[k].get(x) != simdjson::SUCCESS || b[k].get(y) != simdjson::SUCCESS) {
          fail("key " + k + " missing on one side");
          continue;
        }
        expect_same_json(x, y, path + "." + k, differ);
      }
      return;
    }
    case simdjson::dom::element_type::ARRAY: {
      const simdjson::dom::array x = a.get_array().value(), y = b.get_array().value();
      if (x.size() != y.size()) return fail("array sizes differ");
      for (std::size_t i = 0; i < x.size(); ++i) expect_same_json(x.at(i).value(), y.at(i).value(), path, differ);
      return;
    }
    case simdjson::dom::element_type::INT64:
    case simdjson::dom::element_type::UINT64:
    case simdjson::dom::element_type::DOUBLE: {
      const double x = a.get_double().value(), y = b.get_double().value();
      if (a.is_int64() && b.is_int64()) {
        if (a.get_int64().value() != b.get_int64().value()) fail("counts differ");
        return;
      }
      if (std::fabs(x - y) > 1e-9 * std::max(1.0, std::fabs(x))) {
        fail("numbers differ: " + std::to_string(x) + " vs " + std::to_string(y));
      }
      return;
    }
    default:
      if (simdjson::to_string(a) != simdjson::to_string(b)) fail("values differ");
  }
}

void expect_same_customers(const std::map<std::string, std::string>& got,
                           const std::map<std::string, std::string>& want) {
  std::vector<std::string> got_ids, want_ids;
  for (const auto& [id, _] : got) got_ids.push_back(id);
  for (const auto& [id, _] : want) want_ids.push_back(id);
  ASSERT_EQ(got_ids, want_ids);
  int differ = 0;
  for (const auto& [id, json] : want) {
    simdjson::dom::parser pa, pb;
    simdjson::dom::element a, b;
    ASSERT_EQ(pa.parse(got.at(id)).get(a), simdjson::SUCCESS);
    ASSERT_EQ(pb.parse(json).get(b), simdjson::SUCCESS);
    expect_same_json(a, b, id, differ);
  }
  EXPECT_EQ(differ, 0);
}

// A daemon with an ingest, a read and an admin token; stopped (SIGTERM) before its state dir is read.
class Node {
 public:
  Node(TempDir& dir, const std::string& name, int partitions, const std::string& extra_toml = "",
       std::vector<std::string> env = {})
      : state_(dir.file(name)) {
    config_ = dir.file(name + ".toml");
    write_config(partitions, extra_toml);
    start(std::move(env));
  }
  void write_config(int partitions, const std::string& extra_toml) {
    write_file(config_, "[storage]\npartitions = " + std::to_string(partitions) + "\n" + extra_toml +
                            "[[auth.tokens]]\ntoken = \"" + kIngestToken + "\"\nscopes = [\"ingest\"]\n" +
                            "[[auth.tokens]]\ntoken = \"" + kReadToken + "\"\nscopes = [\"read\"]\n" +
                            "[[auth.tokens]]\ntoken = \"" + kAdminToken + "\"\nscopes = [\"admin\"]\n");
  }
  // Rewrites the config and reloads it (SIGHUP), waiting for the reload's log line.
  void reload(int partitions, const std::string& extra_toml) {
    write_config(partitions, extra_toml);
    const auto before = count_reloads();
    daemon_->signal(SIGHUP);
    for (int i = 0; i < 800 && count_reloads() == before; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    ASSERT_GT(count_reloads(), before) << daemon_->log();
  }
  void start(std::vector<std::string> env = {}) {
    daemon_ = std::make_unique<Daemon>(state_, std::vector<std::string>{"--config", config_},
                                       Daemon::Systemd{std::move(env), {}, ""});
  }
  void stop() { ASSERT_EQ(daemon_->stop(SIGTERM), 0) << daemon_->log(); }
  int port() const { return daemon_->http_port(); }
  Daemon& daemon() { return *daemon_; }
  const std::string& state() const { return state_; }

  // Posts in chunks; returns (accepted, duplicates).
  std::pair<std::uint64_t, std::uint64_t> send(const std::vector<Line>& lines) {
    std::uint64_t accepted = 0, duplicates = 0;
    for (std::size_t i = 0; i < lines.size(); i += 500) {
      const std::vector<Line> chunk(lines.begin() + static_cast<std::ptrdiff_t>(i),
                                    lines.begin() + static_cast<std::ptrdiff_t>(std::min(lines.size(), i + 500)));
      const auto r = http(port(), "POST", "/v1/events", ndjson(chunk), "application/x-ndjson", {bearer(kIngestToken)});
      EXPECT_EQ(r.status, 200) << r.body;
      simdjson::dom::parser p;
      simdjson::dom::element doc;
      EXPECT_EQ(p.parse(r.body).get(doc), simdjson::SUCCESS) << r.body;
      accepted += doc["accepted"].get_uint64().value();
      duplicates += doc["duplicates"].get_uint64().value();
    }
    return {accepted, duplicates};
  }
  Client::Response merge(const std::string& survivor, const std::vector<std::string>& from,
                         const std::string& token = kAdminToken) {
    return post(customer_target(survivor) + ":merge", "from", from, token);
  }
  Client::Response unmerge(const std::string& survivor, const std::vector<std::string>& ids) {
    return post(customer_target(survivor) + ":unmerge", "ids", ids, kAdminToken);
  }
  Client::Response get(const std::string& target) { return http(port(), "GET", target, "", "", {bearer(kReadToken)}); }
  // Sends the lines over TCP after the auth line; the answers up to the ack of the last.
  std::vector<std::string> send_tcp(const std::vector<std::string>& lines) {
    Client c(daemon_->tcp_port());
    std::string out = "{\"auth\":\"" + std::string(kIngestToken) + "\"}\n";
    for (const std::string& l : lines) out += l + "\n";
    c.send(out);
    return c.read_until_ack(static_cast<int>(lines.size()));
  }

 private:
  Client::Response post(const std::string& target, const std::string& field, const std::vector<std::string>& ids,
                        const std::string& token) {
    JsonWriter w;
    w.begin_object().key(field).begin_array();
    for (const std::string& id : ids) w.value(id);
    w.end_array().end_object();
    return http(port(), "POST", target, w.take(), "application/json", {bearer(token)});
  }

  std::size_t count_reloads() {
    const std::string log = daemon_->log();
    std::size_t n = 0;
    for (auto at = log.find("configuration reloaded"); at != std::string::npos;
         at = log.find("configuration reloaded", at + 1)) {
      ++n;
    }
    return n;
  }

  std::string state_, config_;
  std::unique_ptr<Daemon> daemon_;
};

std::string string_at(const std::string& body, const char* key) {
  simdjson::dom::parser p;
  simdjson::dom::element doc;
  if (p.parse(body).get(doc) != simdjson::SUCCESS) return "<not json>";
  std::string_view v;
  if (doc[key].get_string().get(v) != simdjson::SUCCESS) return "<none>";
  return std::string(v);
}

std::vector<std::string> aliases_in(const std::string& body) {
  simdjson::dom::parser p;
  simdjson::dom::element doc;
  std::vector<std::string> out;
  if (p.parse(body).get(doc) != simdjson::SUCCESS) return out;
  simdjson::dom::array a;
  if (doc["aliases"].get_array().get(a) != simdjson::SUCCESS) return out;
  for (simdjson::dom::element e : a) {
    std::string_view v;
    if (e.get_string().get(v) == simdjson::SUCCESS) out.emplace_back(v);
  }
  return out;
}

// Two ids on different partitions of P = 2 (the same partition for P = 1): c<i> for the first and second
// hash bucket.
std::pair<std::string, std::string> split_pair(int customers) {
  for (int i = 0; i < customers; ++i) {
    for (int j = 0; j < customers; ++j) {
      const std::string a = "c" + std::to_string(i), b = "c" + std::to_string(j);
      if (partition_of(a, 2) != partition_of(b, 2)) return {a, b};
    }
  }
  throw std::runtime_error("no pair on different partitions");
}

class Identity : public ::testing::TestWithParam<int> {
 protected:
  int partitions() const { return GetParam(); }
  TempDir dir_;
};

INSTANTIATE_TEST_SUITE_P(Partitions, Identity, ::testing::Values(1, 2),
                         [](const auto& p) { return "P" + std::to_string(p.param); });

TEST_P(Identity, MergeAndUnmergeMatchAnIndependentImportOfTheRelabeledStream) {
  constexpr int kCustomers = 12;
  const auto [survivor, other] = split_pair(kCustomers);
  const std::string third = survivor == "c2" || other == "c2" ? "c3" : "c2";
  const std::vector<std::string> merged = {other, third};
  const auto lines = generate(kCustomers, 1500, 11);
  const std::vector<Line> before(lines.begin(), lines.begin() + 900), after(lines.begin() + 900, lines.end());
  // Events of the same ids sent before the merge under two of the merged ids (a CRM id and an email):
  // kept once by the survivor, given back to both by the unmerge.
  std::vector<Line> both;
  for (const Line& l : before) {
    if (l.customer == other && both.size() < 5) both.push_back(relabel(l, survivor));
  }
  ASSERT_EQ(both.size(), 5u);

  Node a(dir_, "a", partitions());
  a.send(before);
  a.send(both);
  const auto r = a.merge(survivor, merged);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(aliases_in(r.body), (std::vector<std::string>{std::min(other, third), std::max(other, third)}));
  a.send(after);  // events sent to the aliases go to the survivor now
  const auto alias = a.get(customer_target(other));
  ASSERT_EQ(alias.status, 200) << alias.body;
  EXPECT_EQ(string_at(alias.body, "customer_id"), survivor);
  EXPECT_EQ(string_at(alias.body, "resolved_from"), other);
  EXPECT_EQ(aliases_in(a.get(customer_target(survivor)).body).size(), 2u);
  a.stop();
  const auto merged_state = customers_of(a.state());

  // The independent import: every event of the merged ids sent as the survivor.
  const auto relabeled = [&](const std::vector<Line>& in) { return relabel_all(in, merged, survivor); };
  {
    Node b(dir_, "b", partitions());
    b.send(relabeled(before));
    b.send(both);
    b.send(relabeled(after));
    b.stop();
    expect_same_customers(merged_state, customers_of(b.state()));
  }

  // Unmerge: as if never merged. The rule for events sent to an alias while merged: they go back to the
  // alias, except an event the group already held (a duplicate then, never stored).
  a.start();
  const auto u = a.unmerge(survivor, merged);
  ASSERT_EQ(u.status, 200) << u.body;
  EXPECT_TRUE(aliases_in(u.body).empty()) << u.body;
  EXPECT_EQ(string_at(a.get(customer_target(other)).body, "customer_id"), other);
  a.stop();
  std::set<std::string> group_ids;
  for (const Line& l : before) {
    if (l.customer == survivor || std::find(merged.begin(), merged.end(), l.customer) != merged.end()) {
      group_ids.insert(l.event_id);
    }
  }
  std::vector<Line> expected_after;
  for (const Line& l : after) {
    const bool in_group = l.customer == survivor || std::find(merged.begin(), merged.end(), l.customer) != merged.end();
    if (in_group && !group_ids.insert(l.event_id).second) continue;  // a duplicate while merged
    expected_after.push_back(l);
  }
  Node c(dir_, "c", partitions());
  c.send(before);
  c.send(both);
  c.send(expected_after);
  c.stop();
  expect_same_customers(customers_of(a.state()), customers_of(c.state()));
}

TEST_P(Identity, AnEventAcknowledgedUnderEitherIdIsADuplicate) {
  const auto [survivor, other] = split_pair(8);
  const auto event = [&](const std::string& id, const std::string& event_id) {
    return Line{"{\"event_id\":\"" + event_id + "\",\"customer_id\":\"" + id +
                    "\",\"ts\":\"2023-05-01T12:00:00Z\",\"type\":\"purchase\",\"amount\":10}",
                id, event_id};
  };
  Node a(dir_, "a", partitions());
  EXPECT_EQ(a.send({event(survivor, "x"), event(other, "y")}), std::make_pair(std::uint64_t{2}, std::uint64_t{0}));
  ASSERT_EQ(a.merge(survivor, {other}).status, 200);
  {  // The feed: the merged id's tombstone, then the survivor's new state (both events), last.
    const auto feed = a.get("/v1/changes?limit=1000");
    ASSERT_EQ(feed.status, 200);
    const auto tombstone = feed.body.find("\"customer_id\":\"" + other + "\",\"deleted\":true");
    const auto item = feed.body.rfind("\"customer_id\":\"" + survivor + "\",\"customer\":{");
    ASSERT_NE(tombstone, std::string::npos) << feed.body;
    ASSERT_NE(item, std::string::npos) << feed.body;
    EXPECT_NE(feed.body.find("\"events\":2", item), std::string::npos) << feed.body;
  }
  // Both acknowledged events, under either id: duplicates.
  EXPECT_EQ(a.send({event(other, "x"), event(survivor, "y"), event(other, "y"), event(survivor, "x")}),
            std::make_pair(std::uint64_t{0}, std::uint64_t{4}));
  // A new event through the alias: accepted once, stored under the survivor with the id it was sent as.
  EXPECT_EQ(a.send({event(other, "z"), event(survivor, "z")}), std::make_pair(std::uint64_t{1}, std::uint64_t{1}));
  const auto events = a.get(customer_target(survivor, true));
  ASSERT_EQ(events.status, 200);
  EXPECT_NE(events.body.find(R"("event_id":"z","ts":"2023-05-01T12:00:00.000Z","type":"purchase","sent_as":")" + other +
                             "\""),
            std::string::npos)
      << events.body;
  EXPECT_EQ(a.get(customer_target(other, true)).body, events.body);  // the alias reads the survivor's timeline
  const auto batch = http(a.port(), "POST", "/v1/customers:batchGet", "{\"ids\":[\"" + other + "\",\"nobody\"]}",
                          "application/json", {bearer(kReadToken)});
  ASSERT_EQ(batch.status, 200) << batch.body;
  EXPECT_NE(batch.body.find("{\"customer_id\":\"" + survivor + "\""), std::string::npos) << batch.body;
  EXPECT_NE(
      batch.body.find("\"resolved_from\":\"" + other + "\",\"aliases\":[\"" + other + "\"]}],\"missing\":[\"nobody\"]"),
      std::string::npos)
      << batch.body;
  // Unmerged: y and z are the alias's again; x stays the survivor's.
  ASSERT_EQ(a.unmerge(survivor, {other}).status, 200);
  EXPECT_EQ(a.send({event(other, "y"), event(other, "z"), event(survivor, "x"), event(other, "x")}),
            std::make_pair(std::uint64_t{1}, std::uint64_t{3}));
}

TEST_P(Identity, ErasingAMergedCustomerErasesEveryIdOfIt) {
  const auto [survivor, other] = split_pair(8);
  const std::string third = "zz-third";
  const auto lines = generate(8, 300, 3);
  Node a(dir_, "a", partitions());
  a.send(lines);
  ASSERT_EQ(a.merge(survivor, {other, third}).status, 200);
  // Through an alias: the whole group goes.
  const auto r = http(a.port(), "DELETE", customer_target(other), "", "", {bearer(kAdminToken)});
  ASSERT_EQ(r.status, 200) << r.body;
  // The feed says so: tombstones for the survivor and the merged id (erased by the merge already).
  {
    const auto feed = a.get("/v1/changes?limit=1000");
    ASSERT_EQ(feed.status, 200);
    for (const std::string& id : {survivor, other}) {
      EXPECT_NE(feed.body.find("\"customer_id\":\"" + id + "\",\"deleted\":true"), std::string::npos)
          << id << " " << feed.body.substr(0, 2000);
    }
  }
  for (const std::string& id : {survivor, other, third}) {
    EXPECT_EQ(a.get(customer_target(id)).status, 404) << id;
    EXPECT_TRUE(aliases_in(a.get(customer_target(id) + "/aliases").body).empty()) << id;
  }
  // No dedup key is left: every event is new again, each id its own customer.
  std::vector<Line> group;
  for (const Line& l : lines) {
    if (l.customer == survivor || l.customer == other) group.push_back(l);
  }
  std::set<std::pair<std::string, std::string>> keys;
  for (const Line& l : group) keys.emplace(l.customer, l.event_id);
  EXPECT_EQ(a.send(group).first, keys.size());
  EXPECT_EQ(string_at(a.get(customer_target(other)).body, "customer_id"), other);
  a.stop();
  // Nothing of the group survives in storage but the events sent again.
  const auto state = customers_of(a.state());
  EXPECT_EQ(state.count(third), 0u);
}

TEST_P(Identity, BlockedValuesLimitsAndCyclesAreRefused) {
  Node a(dir_, "a", partitions(), "[identity]\nmax_aliases = 2\nblocked_ids = [\"guest\", \"null\"]\n");
  const auto expect_error = [&](const Client::Response& r, int status, const std::string& says) {
    EXPECT_EQ(r.status, status) << r.body;
    EXPECT_NE(string_at(r.body, "error").find(says), std::string::npos) << r.body;
  };
  expect_error(a.merge("a", {"guest"}), 422, "'guest' is blocked from merging ([identity] blocked_ids)");
  expect_error(a.merge("null", {"b"}), 422, "'null' is blocked");
  expect_error(a.merge("a", {""}), 422, "'' is blocked");
  ASSERT_EQ(a.merge("a", {"b", "c"}).status, 200);
  expect_error(a.merge("a", {"d"}), 422, "3 aliases, more than [identity] max_aliases = 2");
  expect_error(a.merge("b", {"a"}), 409, "would make a cycle");
  expect_error(a.merge("b", {"x"}), 409, "'b' is an alias of 'a'");
  expect_error(a.merge("a", {"a"}), 409, "into itself");
  expect_error(a.merge("x", {"b"}), 409, "'b' is already merged into 'a'");
  expect_error(a.unmerge("a", {"x"}), 409, "'x' is not an alias of 'a'");
  expect_error(a.unmerge("x", {"a"}), 404, "'x' has no aliases");
  EXPECT_EQ(a.merge("a", {"b"}).status, 200);  // already merged: nothing to do
  // Merging a merged customer flattens its group.
  ASSERT_EQ(a.merge("y", {"z"}).status, 200);
  const auto flat = a.merge("q", {"y"});
  ASSERT_EQ(flat.status, 200) << flat.body;
  EXPECT_EQ(aliases_in(flat.body), (std::vector<std::string>{"y", "z"}));
  EXPECT_EQ(string_at(a.get("/v1/customers/z/aliases").body, "customer_id"), "q");
  // Bad bodies, scopes.
  const auto raw = [&](const std::string& body, const std::string& token) {
    return http(a.port(), "POST", "/v1/customers/a:merge", body, "application/json", {bearer(token)});
  };
  expect_error(raw("{\"from\":\"b\"}", kAdminToken), 400, "the body needs an array \"from\"");
  expect_error(raw("{\"ids\":[\"b\"]}", kAdminToken), 400, "unknown field \"ids\"");
  expect_error(raw("{\"from\":[]}", kAdminToken), 400, "1 to 1000 ids");
  expect_error(raw("nope", kAdminToken), 400, "not JSON");
  EXPECT_EQ(raw("{\"from\":[\"k\"]}", kReadToken).status, 403);
  EXPECT_EQ(raw("{\"from\":[\"k\"]}", "").status, 401);
  EXPECT_EQ(raw(std::string(2 << 20, ' '), kAdminToken).status, 413);
  // None of the refusals changed a group.
  EXPECT_EQ(aliases_in(a.get("/v1/customers/a/aliases").body), (std::vector<std::string>{"b", "c"}));
}

// An identify event on TCP or HTTP merges as POST :merge does: acknowledged once recorded, the alias resolves to
// the survivor, a re-sent one is harmless, and the state matches the independent import of the relabeled stream.
TEST_P(Identity, IdentifyEventsOverTcpAndHttpMergeAsTheMergeRouteDoes) {
  constexpr int kCustomers = 12;
  const auto [survivor, other] = split_pair(kCustomers);
  const std::string third = survivor == "c2" || other == "c2" ? "c3" : "c2";
  const std::vector<std::string> merged = {other, third};
  const auto lines = generate(kCustomers, 1500, 11);
  const std::vector<Line> before(lines.begin(), lines.begin() + 900), after(lines.begin() + 900, lines.end());

  Node a(dir_, "a", partitions());
  a.send(before);
  const auto tcp = a.send_tcp({identify_line("identify-1", survivor, {other})});
  ASSERT_FALSE(tcp.empty());
  EXPECT_EQ(tcp.back(), "{\"ack\":1}");
  for (const std::string& answer : tcp) EXPECT_EQ(answer.find("error"), std::string::npos) << answer;
  // Acknowledged: the merge is recorded.
  const auto alias = a.get(customer_target(other));
  ASSERT_EQ(alias.status, 200) << alias.body;
  EXPECT_EQ(string_at(alias.body, "customer_id"), survivor);
  EXPECT_EQ(string_at(alias.body, "resolved_from"), other);

  const std::string over_http = identify_line("identify-2", survivor, {third}) + "\n";
  const std::string accepted =
      R"({"accepted":1,"duplicates":0,"errors":false,"rejected":[],"rejected_count":0,"rejected_by_reason":{}})";
  for (int sent = 0; sent < 2; ++sent) {  // sent again: merged already, harmless
    const auto r = http(a.port(), "POST", "/v1/events", over_http, "application/x-ndjson", {bearer(kIngestToken)});
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.body, accepted) << sent;
  }
  EXPECT_EQ(aliases_in(a.get(customer_target(survivor) + "/aliases").body),
            (std::vector<std::string>{std::min(other, third), std::max(other, third)}));
  a.send(after);  // events sent to the aliases go to the survivor now
  const auto metrics = http(a.port(), "GET", "/metrics").body;
  EXPECT_NE(metrics.find("rapport_identity_merges_total 2\n"), std::string::npos) << metrics;
  a.stop();

  Node b(dir_, "b", partitions());
  b.send(relabel_all(before, merged, survivor));
  b.send(relabel_all(after, merged, survivor));
  b.stop();
  expect_same_customers(customers_of(a.state()), customers_of(b.state()));
}

// A refused identify (a blocked id, an id merged elsewhere) is a rejection with the merge's reason and a dead
// letter; the other items of the same submission are stored.
// [identity] identify_events = false: identify events are rejected with a message pointing at :merge (the rest
// stored); turned on by a reload, the same line merges.
TEST_P(Identity, IdentifyEventsCanBeTurnedOff) {
  Node a(dir_, "a", partitions(), "[identity]\nidentify_events = false\n");
  const std::string body = R"({"event_id":"e1","customer_id":"k2","ts":"2023-05-01T12:00:00Z","type":"purchase",)"
                           R"("amount":10})"
                           "\n" +
                           identify_line("i1", "k1", {"k2"}) + "\n";
  const auto off = http(a.port(), "POST", "/v1/events", body, "application/x-ndjson", {bearer(kIngestToken)});
  ASSERT_EQ(off.status, 200) << off.body;
  EXPECT_NE(off.body.find(R"("accepted":1,)"), std::string::npos) << off.body;
  EXPECT_NE(off.body.find(R"("reason":"identity_refused","error":"identify events are turned off on this rapportd)"),
            std::string::npos)
      << off.body;
  const auto k2 = a.get(customer_target("k2"));
  ASSERT_EQ(k2.status, 200) << k2.body;
  EXPECT_EQ(string_at(k2.body, "customer_id"), "k2");
  EXPECT_EQ(k2.body.find("resolved_from"), std::string::npos) << k2.body;

  a.reload(partitions(), "[identity]\nidentify_events = true\n");
  const auto on = http(a.port(), "POST", "/v1/events", identify_line("i2", "k1", {"k2"}) + "\n", "application/x-ndjson",
                       {bearer(kIngestToken)});
  ASSERT_EQ(on.status, 200) << on.body;
  EXPECT_NE(on.body.find(R"("accepted":1,)"), std::string::npos) << on.body;
  const auto merged = a.get(customer_target("k2"));
  ASSERT_EQ(merged.status, 200) << merged.body;
  EXPECT_EQ(string_at(merged.body, "customer_id"), "k1");
  EXPECT_EQ(string_at(merged.body, "resolved_from"), "k2");
  a.stop();
}

TEST_P(Identity, ARefusedIdentifyIsARejectionAndTheRestIsStored) {
  Node a(dir_, "a", partitions(), "[identity]\nblocked_ids = [\"guest\"]\n");
  const auto event = [](const std::string& id, const std::string& event_id) {
    return "{\"event_id\":\"" + event_id + "\",\"customer_id\":\"" + id +
           "\",\"ts\":\"2023-05-01T12:00:00Z\",\"type\":\"purchase\",\"amount\":10}";
  };
  const auto events_of = [&](const std::string& id) {
    const auto r = a.get(customer_target(id));
    simdjson::dom::parser p;
    simdjson::dom::element doc;
    std::int64_t n = -1;
    if (r.status != 200 || p.parse(r.body).get(doc) != simdjson::SUCCESS) return n;
    if (doc["events"].get_int64().get(n) != simdjson::SUCCESS) n = -1;
    return n;
  };
  const std::string body = event("h1", "e1") + "\n" + identify_line("i1", "h1", {"guest"}) + "\n" + event("h2", "e2") +
                           "\n" + identify_line("i2", "h2", {"h3"}) + "\n";
  const auto r = http(a.port(), "POST", "/v1/events", body, "application/x-ndjson", {bearer(kIngestToken)});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body,
            R"({"accepted":3,"duplicates":0,"errors":true,"rejected":[{"index":1,"reason":"identity_refused",)"
            R"x("error":"customer id 'guest' is blocked from merging ([identity] blocked_ids)"}],"rejected_count":1,)x"
            R"("rejected_by_reason":{"identity_refused":1}})");
  EXPECT_EQ(events_of("h1"), 1);
  EXPECT_EQ(events_of("h2"), 1);
  EXPECT_EQ(string_at(a.get(customer_target("h3")).body, "resolved_from"), "h3");
  EXPECT_EQ(a.get(customer_target("guest")).status, 404);

  // Over TCP: h3 is merged into h2 already.
  const auto tcp = a.send_tcp({event("t1", "e3"), identify_line("i3", "t1", {"h3"}), event("t1", "e4")});
  ASSERT_FALSE(tcp.empty());
  EXPECT_EQ(tcp.back(), "{\"ack\":3}");
  std::vector<std::string> errors;
  for (const std::string& answer : tcp) {
    if (answer.find("error") != std::string::npos) errors.push_back(answer);
  }
  EXPECT_EQ(errors, std::vector<std::string>{R"({"line":2,"error":"'h3' is already merged into 'h2': unmerge it )"
                                             R"(first, or merge 'h2' itself","reason":"identity_refused"})"});
  EXPECT_EQ(events_of("t1"), 2);
  EXPECT_EQ(aliases_in(a.get("/v1/customers/h2/aliases").body), std::vector<std::string>{"h3"});

  const auto letters = http(a.port(), "GET", "/v1/deadletter?limit=10", "", "", {bearer(kAdminToken)});
  ASSERT_EQ(letters.status, 200) << letters.body;
  EXPECT_NE(letters.body.find(R"("transport":"http","reason":"identity_refused","error":"customer id 'guest')"),
            std::string::npos)
      << letters.body;
  EXPECT_NE(letters.body.find(R"("transport":"tcp","reason":"identity_refused","error":"'h3' is already merged)"),
            std::string::npos)
      << letters.body;
  // Replaying dead letters (?deadletter=false): the refusal is answered but not stored again.
  const auto replay = http(a.port(), "POST", "/v1/events?deadletter=false", identify_line("i1", "h1", {"guest"}) + "\n",
                           "application/x-ndjson", {bearer(kAdminToken)});
  ASSERT_EQ(replay.status, 200) << replay.body;
  EXPECT_NE(replay.body.find(R"("rejected_by_reason":{"identity_refused":1})"), std::string::npos) << replay.body;
  const auto refused_letters = [&] {
    const std::string text = http(a.port(), "GET", "/v1/deadletter?limit=10", "", "", {bearer(kAdminToken)}).body;
    std::size_t n = 0;
    for (auto at = text.find("identity_refused"); at != std::string::npos; at = text.find("identity_refused", at + 1)) {
      ++n;
    }
    return n;
  };
  EXPECT_EQ(refused_letters(), 2u);
  const auto metrics = http(a.port(), "GET", "/metrics").body;
  for (const char* transport : {"http", "tcp"}) {
    EXPECT_NE(metrics.find(std::string("rapport_events_rejected_total{reason=\"identity_refused\",transport=\"") +
                           transport + (transport == std::string("http") ? "\"} 2\n" : "\"} 1\n")),
              std::string::npos)
        << transport;
  }
  EXPECT_NE(metrics.find("rapport_identity_merges_total 1\n"), std::string::npos);
}

// Each identify is a merge, run while every writer waits: one HTTP request holds at most 100; later ones are
// rejected (the request's other items are stored).
TEST_P(Identity, OneRequestHoldsAtMostAHundredIdentifyEvents) {
  Node a(dir_, "a", partitions());
  std::string body;
  for (int i = 0; i < 101; ++i) body += identify_line("i" + std::to_string(i), "m", {"m-alias"}) + "\n";
  body += R"({"event_id":"e","customer_id":"m-alias","ts":"2023-05-01T12:00:00Z","type":"complaint"})"
          "\n";
  const auto r = http(a.port(), "POST", "/v1/events", body, "application/x-ndjson", {bearer(kIngestToken)});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, R"({"accepted":101,"duplicates":0,"errors":true,"rejected":[{"index":100,"reason":)"
                    R"("identity_refused","error":"more than 100 identify events in one request: send the rest in )"
                    R"(another request"}],"rejected_count":1,"rejected_by_reason":{"identity_refused":1}})");
  const auto m = a.get(customer_target("m-alias"));
  ASSERT_EQ(m.status, 200) << m.body;
  EXPECT_EQ(string_at(m.body, "customer_id"), "m");
}

TEST_P(Identity, RapportctlMergesUnmergesAndListsAliasesAndMetricsCountThem) {
  Node a(dir_, "a", partitions());
  const std::string url = "http://127.0.0.1:" + std::to_string(a.port());
  const auto ctl = [&](std::vector<std::string> args, const std::string& token) {
    args.insert(args.begin(), binary("rapportctl"));
    args.insert(args.end(), {"--url", url, "--token", token});
    return run_command(args);
  };
  auto r = ctl({"merge", "crm-1", "mail-1", "phone-1"}, kAdminToken);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "{\"customer_id\":\"crm-1\",\"aliases\":[\"mail-1\",\"phone-1\"]}\n");
  r = ctl({"aliases", "phone-1"}, kReadToken);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "{\"customer_id\":\"crm-1\",\"aliases\":[\"mail-1\",\"phone-1\"],\"resolved_from\":\"phone-1\"}\n");
  r = ctl({"merge", "crm-1", "anonymous"}, kAdminToken);  // a clear refusal, exit 2
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("HTTP 422: customer id 'anonymous' is blocked from merging ([identity] blocked_ids)"),
            std::string::npos)
      << r.err;
  r = ctl({"merge", "crm-1", "x"}, kReadToken);  // the admin scope
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("HTTP 403"), std::string::npos) << r.err;
  r = ctl({"unmerge", "crm-1", "mail-1"}, kAdminToken);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "{\"customer_id\":\"crm-1\",\"aliases\":[\"phone-1\"]}\n");
  r = ctl({"unmerge", "nobody", "mail-1"}, kAdminToken);
  EXPECT_EQ(r.exit_code, 1) << r.err;  // 404: not a survivor
  const auto no_url = run_command({binary("rapportctl"), "aliases", "x"});
  EXPECT_EQ(no_url.exit_code, 2);
  EXPECT_NE(no_url.err.find("needs --url"), std::string::npos) << no_url.err;

  const auto metrics = http(a.port(), "GET", "/metrics").body;
  EXPECT_NE(metrics.find("rapport_identity_merges_total 1\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("rapport_identity_unmerges_total 1\n"), std::string::npos);
  EXPECT_NE(metrics.find("rapport_identity_aliases_count 2\n"), std::string::npos);  // one per merge and unmerge
  EXPECT_NE(metrics.find("rapport_identity_aliases_bucket{le=\"1\"} 1\n"), std::string::npos);  // after the unmerge
  EXPECT_NE(metrics.find("rapport_identity_aliases_bucket{le=\"2\"} 2\n"), std::string::npos);
}

TEST_P(Identity, RapportctlImportAndEraseOnAStateDirKnowTheGroups) {
  Node a(dir_, "a", partitions());
  const auto event = [](const std::string& id, const std::string& event_id) {
    return "{\"event_id\":\"" + event_id + "\",\"customer_id\":\"" + id +
           "\",\"ts\":\"2023-05-01T12:00:00Z\",\"type\":\"purchase\",\"amount\":10}\n";
  };
  a.send({Line{event("crm-1", "x"), "crm-1", "x"}});
  ASSERT_EQ(a.merge("crm-1", {"mail-1"}).status, 200);
  a.stop();
  const std::string file = dir_.file("events.ndjson");
  write_file(file, event("mail-1", "y") + event("mail-1", "x"));  // a new event, and one crm-1 holds
  const auto imported = run_command({binary("rapportctl"), "import", file, "--state-dir", a.state(), "-q"});
  ASSERT_EQ(imported.exit_code, 0) << imported.err;
  EXPECT_NE(imported.err.find("1 accepted, 1 duplicates"), std::string::npos) << imported.err;
  const auto state = customers_of(a.state());
  EXPECT_EQ(state.count("mail-1"), 0u);
  EXPECT_NE(state.at("crm-1").find("\"events\":2"), std::string::npos) << state.at("crm-1");
  const auto erase = run_command({binary("rapportctl"), "erase", "mail-1", "--state-dir", a.state()});
  EXPECT_EQ(erase.exit_code, 2);
  EXPECT_NE(erase.err.find("mail-1 is merged (with crm-1): erase it with --url"), std::string::npos) << erase.err;
  a.start();
  const auto events = a.get(customer_target("crm-1", true));
  EXPECT_NE(events.body.find(
                "\"event_id\":\"y\",\"ts\":\"2023-05-01T12:00:00.000Z\",\"type\":\"purchase\",\"sent_as\":\"mail-1\""),
            std::string::npos)
      << events.body;
}

// rapportctl import writes a state dir without the identity service: it rejects identify lines, saying where
// they merge, and imports the rest.
TEST(IdentityImport, RapportctlImportRejectsIdentifyLines) {
  TempDir dir;
  const std::string file = dir.file("events.ndjson");
  write_file(file, identify_line("i-1", "crm-1", {"mail-1"}) + "\n" +
                       R"({"event_id":"x","customer_id":"mail-1","ts":"2023-05-01T12:00:00Z","type":"complaint"})" +
                       "\n");
  const auto imported = run_command({binary("rapportctl"), "import", file, "--state-dir", dir.file("state"), "-q"});
  EXPECT_EQ(imported.exit_code, 1) << imported.err;  // partly done: a line was rejected
  EXPECT_NE(imported.err.find("1 accepted, 0 duplicates, 1 rejected"), std::string::npos) << imported.err;
  EXPECT_NE(imported.err.find(
                ":1: identity_refused: identify events are not accepted on this input: send them to rapportd over TCP "
                "or HTTP, or use POST /v1/customers/{id}:merge"),
            std::string::npos)
      << imported.err;
}

// A kill -9 at each step of a merge, then of an unmerge: after a restart, exactly the state before or after.
class IdentityCrash : public ::testing::TestWithParam<std::string> {
 protected:
  TempDir dir_;
};

INSTANTIATE_TEST_SUITE_P(Steps, IdentityCrash,
                         ::testing::Values("parked", "recorded", "applied", "erased", "committed"),
                         [](const auto& p) { return p.param; });

TEST_P(IdentityCrash, AKillAtAnyStepLeavesTheStateBeforeOrAfter) {
  const std::string step = GetParam();
  const bool after = step != "parked";  // from "recorded" on, the restart completes the operation
  const auto [survivor, other] = split_pair(8);
  const auto lines = generate(8, 600, 5);
  std::vector<Line> dup;  // the same event under both ids: a shadow to give back
  for (const Line& l : lines) {
    if (l.customer == other && dup.empty()) dup.push_back(relabel(l, survivor));
  }
  const auto run = [&](const std::string& name, bool crash_merge, bool crash_unmerge) {
    Node n(dir_, name, 2, "",
           crash_merge ? std::vector<std::string>{std::string(kIdentityCrashEnv) + "=" + step}
                       : std::vector<std::string>{});
    n.send(lines);
    n.send(dup);
    const auto merge_status = [&] {
      try {
        return n.merge(survivor, {other}).status;
      } catch (const std::runtime_error&) {
        return -1;  // killed before answering
      }
    }();
    if (crash_merge) {
      EXPECT_EQ(merge_status, -1);
      EXPECT_EQ(n.daemon().stop(SIGKILL), -SIGKILL);
      n.start();
      EXPECT_EQ(string_at(n.get(customer_target(other)).body, "customer_id"), after ? survivor : other);
      n.stop();
      return customers_of(n.state());
    }
    EXPECT_EQ(merge_status, 200);
    n.start(crash_unmerge ? std::vector<std::string>{std::string(kIdentityCrashEnv) + "=" + step}
                          : std::vector<std::string>{});
    int unmerge_status = -1;
    try {
      unmerge_status = n.unmerge(survivor, {other}).status;
    } catch (const std::runtime_error&) {
    }
    if (crash_unmerge) {
      EXPECT_EQ(unmerge_status, -1);
      EXPECT_EQ(n.daemon().stop(SIGKILL), -SIGKILL);
      n.start();
      EXPECT_EQ(string_at(n.get(customer_target(other)).body, "customer_id"), after ? other : survivor);
    } else {
      EXPECT_EQ(unmerge_status, 200);
    }
    n.stop();
    return customers_of(n.state());
  };
  // The reference: the same operations, nothing killed (before: no merge at all).
  Node before_node(dir_, "before", 2);
  before_node.send(lines);
  before_node.send(dup);
  before_node.stop();
  const auto before_state = customers_of(before_node.state());
  const auto unmerged = run("reference", false, false);
  expect_same_customers(unmerged, before_state);  // (unmerge restores the state before the merge)

  Node m(dir_, "reference-merged", 2);
  m.send(lines);
  m.send(dup);
  ASSERT_EQ(m.merge(survivor, {other}).status, 200);
  m.stop();
  const auto merged_state = customers_of(m.state());

  // Killed during the merge: before = not merged, after = merged.
  expect_same_customers(run("killed-merge", true, false), after ? merged_state : before_state);
  // Killed during the unmerge: before = merged, after = unmerged.
  expect_same_customers(run("killed-unmerge", false, true), after ? before_state : merged_state);
}

// Order independence: a randomized stream with merges and unmerges at random points, P = 1 and 2, twice in
// different orders: the end state is the independent import of the stream relabeled by the final groups.
TEST_P(Identity, MergesInterleavedAnywhereInARandomizedStreamGiveTheSameState) {
  constexpr int kCustomers = 10;
  auto lines = generate(kCustomers, 1200, 21);
  // Unique event ids only (the generator repeats a few lines): with no duplicate across ids, the end
  // state depends on the final groups alone.
  {
    std::set<std::string> seen;
    std::erase_if(lines, [&](const Line& l) { return !seen.insert(l.event_id).second; });
  }
  // Operations on the groups: {survivor, ids, unmerge?}.
  struct Op {
    std::string survivor;
    std::vector<std::string> ids;
    bool unmerge = false;
  };
  const std::vector<Op> ops = {{"c0", {"c1", "c2"}, false}, {"c3", {"c4"}, false}, {"c0", {"c2"}, true},
                               {"c5", {"c3"}, false},       {"c0", {"c6"}, false}, {"c5", {"c4"}, true},
                               {"c7", {"c2"}, false}};
  // The final groups: c0 <- c1, c6; c5 <- c3; c7 <- c2 (c4 given back).
  const std::map<std::string, std::string> final_survivor = {{"c1", "c0"}, {"c6", "c0"}, {"c3", "c5"}, {"c2", "c7"}};
  std::vector<std::map<std::string, std::string>> states;
  for (int seed : {1, 2}) {
    std::mt19937 rng(static_cast<unsigned>(seed));
    std::vector<Line> order = lines;
    std::shuffle(order.begin(), order.end(), rng);
    // The ops keep their order; each after a random prefix of the stream.
    std::vector<std::size_t> at;
    for (std::size_t i = 0; i < ops.size(); ++i) at.push_back(rng() % (order.size() + 1));
    std::sort(at.begin(), at.end());
    Node n(dir_, "run" + std::to_string(seed), GetParam());
    std::size_t sent = 0;
    for (std::size_t i = 0; i < ops.size(); ++i) {
      n.send(std::vector<Line>(order.begin() + static_cast<std::ptrdiff_t>(sent),
                               order.begin() + static_cast<std::ptrdiff_t>(at[i])));
      sent = at[i];
      const auto r = ops[i].unmerge ? n.unmerge(ops[i].survivor, ops[i].ids) : n.merge(ops[i].survivor, ops[i].ids);
      ASSERT_EQ(r.status, 200) << r.body;
    }
    n.send(std::vector<Line>(order.begin() + static_cast<std::ptrdiff_t>(sent), order.end()));
    for (const auto& [alias, survivor] : final_survivor) {
      EXPECT_EQ(string_at(n.get(customer_target(alias)).body, "customer_id"), survivor) << alias;
    }
    n.stop();
    states.push_back(customers_of(n.state()));
  }
  std::vector<Line> relabeled;
  for (const Line& l : lines) {
    const auto it = final_survivor.find(l.customer);
    relabeled.push_back(it == final_survivor.end() ? l : relabel(l, it->second));
  }
  Node ref(dir_, "reference", GetParam());
  ref.send(relabeled);
  ref.stop();
  const auto want = customers_of(ref.state());
  expect_same_customers(states[0], want);
  expect_same_customers(states[1], want);
}

}  // namespace
}  // namespace rapport::test
