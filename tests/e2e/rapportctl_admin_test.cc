// End-to-end tests of rapportctl's admin subcommands with the real binaries:
// top, tiers, fit, erase, deadletter list/replay, backup and restore, in
// state-dir mode and (where the API allows) against a running rapportd.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <set>
#include <thread>
#include <tuple>

#include "tests/e2e/harness.h"

namespace rapport::test {
namespace {

CommandResult ctl(std::vector<std::string> args) {
  args.insert(args.begin(), binary("rapportctl"));
  return run_command(args);
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string url_of(const Daemon& d) { return "http://127.0.0.1:" + std::to_string(d.http_port()); }

std::string event_line(const std::string& id, const std::string& customer, const std::string& type,
                       const std::string& extra = "", std::int64_t ts = 0) {
  if (ts == 0) ts = now_ms() - 86'400'000;
  return R"({"event_id":")" + id + R"(","customer_id":")" + customer + R"(","ts":)" + std::to_string(ts) +
         R"(,"type":")" + type + "\"" + extra + "}\n";
}

std::string purchase_line(const std::string& id, const std::string& customer, int amount) {
  return event_line(id, customer, "purchase", ",\"amount\":" + std::to_string(amount));
}

// Imports `content` into `state_dir` (optionally with a config) and returns the result.
CommandResult import_text(const TempDir& dir, const std::string& content, const std::string& state_dir,
                          const std::string& config = "") {
  const std::string file = dir.file("import-" + std::to_string(std::hash<std::string>{}(content)) + ".ndjson");
  write_file(file, content);
  std::vector<std::string> args = {"import", "-q", file, "--state-dir", state_dir};
  if (!config.empty()) {
    args.push_back("--config");
    args.push_back(config);
  }
  return ctl(args);
}

// A loopback port nothing listens on (bound, then released).
int closed_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// The (customer_id, value) pairs of `top --json` output, in order.
std::vector<std::pair<std::string, double>> top_rows(const std::string& json, const std::string& metric,
                                                     std::vector<std::string>* tiers = nullptr) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(json).get(doc) != simdjson::SUCCESS) throw std::runtime_error("not JSON: " + json);
  std::vector<std::pair<std::string, double>> rows;
  for (simdjson::dom::element c : doc["customers"].get_array()) {
    rows.emplace_back(std::string(std::string_view(c["customer_id"].get_string())), double(c[metric].get_double()));
    if (tiers != nullptr) tiers->emplace_back(std::string_view(c["tier"].get_string()));
  }
  return rows;
}

class RapportctlAdmin : public ::testing::Test {
 protected:
  std::string state() const { return dir_.file("state"); }
  TempDir dir_;
};

// --- top -----------------------------------------------------------------------

TEST_F(RapportctlAdmin, TopRanksByTheMetricDescendingAndFiltersByTier) {
  const std::string events = purchase_line("1", "alice", 100) + purchase_line("2", "bob", 300) +
                             purchase_line("3", "carol", 120) + purchase_line("4", "carol", 80) +
                             purchase_line("5", "dave", 50) + event_line("6", "erin", "engagement") +
                             event_line("7", "frank", "complaint", ",\"cost\":20");
  ASSERT_EQ(import_text(dir_, events, state()).exit_code, 0);

  const auto table = ctl({"top", "--by", "revenue", "-n", "3", "--state-dir", state()});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  const auto lines = lines_of(table.out);
  ASSERT_EQ(lines.size(), 4u) << table.out;
  EXPECT_EQ(lines[0].rfind("customer_id", 0), 0u) << lines[0];
  EXPECT_EQ(lines[1].rfind("bob ", 0), 0u) << table.out;
  EXPECT_NE(lines[1].find("300.0000"), std::string::npos) << lines[1];
  EXPECT_EQ(lines[2].rfind("carol ", 0), 0u) << table.out;  // 120 + 80
  EXPECT_EQ(lines[3].rfind("alice ", 0), 0u) << table.out;

  const auto json = ctl({"top", "--by", "revenue", "-n", "10", "--json", "--state-dir", state()});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  const auto rows = top_rows(json.out, "revenue");
  ASSERT_EQ(rows.size(), 6u) << json.out;
  const std::vector<std::string> order = {"bob", "carol", "alice", "dave", "erin", "frank"};  // ties by id
  for (std::size_t i = 0; i < order.size(); ++i) EXPECT_EQ(rows[i].first, order[i]) << json.out;
  EXPECT_EQ(rows[0].second, 300);
  EXPECT_EQ(rows[1].second, 200);

  // Frank cost more than he brought: a lead, and the only one.
  const auto leads = ctl({"top", "--by", "profit_12m", "--tier", "lead", "--json", "--state-dir", state()});
  ASSERT_EQ(leads.exit_code, 0) << leads.err;
  const auto lead_rows = top_rows(leads.out, "profit_12m");
  ASSERT_EQ(lead_rows.size(), 1u) << leads.out;
  EXPECT_EQ(lead_rows[0].first, "frank");
  EXPECT_EQ(lead_rows[0].second, -20);

  // Ranking by CLV needs a fitted model.
  const auto clv = ctl({"top", "--by", "clv", "--state-dir", state()});
  EXPECT_EQ(clv.exit_code, 2);
  EXPECT_NE(clv.err.find("rapportctl: no value model"), std::string::npos) << clv.err;
}

TEST_F(RapportctlAdmin, TopRejectsBadArguments) {
  ASSERT_EQ(import_text(dir_, purchase_line("1", "alice", 1), state()).exit_code, 0);
  const auto by = ctl({"top", "--by", "happiness", "--state-dir", state()});
  EXPECT_EQ(by.exit_code, 2);
  EXPECT_EQ(by.err.rfind("rapportctl: ", 0), 0u) << by.err;
  EXPECT_NE(by.err.find("--by"), std::string::npos) << by.err;
  EXPECT_EQ(ctl({"top", "-n", "0", "--state-dir", state()}).exit_code, 2);
  EXPECT_EQ(ctl({"top", "--tier", "bronze", "--state-dir", state()}).exit_code, 2);
  EXPECT_EQ(ctl({"top", "--by", "revenue", "--as-of", "yesterday", "--state-dir", state()}).exit_code, 2);
  const auto missing = ctl({"top", "--by", "revenue", "--state-dir", dir_.file("nowhere")});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_EQ(missing.err.rfind("rapportctl: ", 0), 0u) << missing.err;
}

// --- top --url -------------------------------------------------------------------

// The "customers" array of `top --json` output as (id, value, tier) triples, and the fields beside it.
struct TopJson {
  std::vector<std::tuple<std::string, double, std::string>> rows;
  std::string by, as_of;
  bool has_scanned = false;
};
TopJson parse_top(const std::string& json, const std::string& metric) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(json).get(doc) != simdjson::SUCCESS) throw std::runtime_error("not JSON: " + json);
  TopJson t;
  t.by = std::string(std::string_view(doc["by"].get_string()));
  t.as_of = std::string(std::string_view(doc["as_of"].get_string()));
  t.has_scanned = doc["scanned"].error() == simdjson::SUCCESS;
  for (simdjson::dom::element c : doc["customers"].get_array()) {
    t.rows.emplace_back(std::string(std::string_view(c["customer_id"].get_string())), double(c[metric].get_double()),
                        std::string(std::string_view(c["tier"].get_string())));
  }
  return t;
}

constexpr const char* kTopReadToken = "top-read-token-0123456789";

// "" when the texts are equal, else the first line where they differ (outputs run to thousands of lines).
std::string first_difference(const std::string& got, const std::string& want) {
  const auto a = lines_of(got), b = lines_of(want);
  for (std::size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
    const std::string l = i < a.size() ? a[i] : "<none>", r = i < b.size() ? b[i] : "<none>";
    if (l != r) return "line " + std::to_string(i + 1) + ": got '" + l + "', want '" + r + "'";
  }
  return got == want ? "" : "trailing whitespace";
}

// rapportctl top --url (GET /v1/customers?tier=&order= paged and merged over the tiers) prints exactly what the
// state-dir scan prints, table and JSON, for one tier and for all, for N below, within and beyond a page (1000).
TEST_F(RapportctlAdmin, TopOverUrlPrintsWhatTheStateDirScanPrints) {
  const auto gen = ctl({"generate", "--customers", "5000", "--events", "40000", "--seed", "3"});
  ASSERT_EQ(gen.exit_code, 0);
  write_file(dir_.file("gen.ndjson"), gen.out);
  ASSERT_EQ(ctl({"import", "-q", "--async", dir_.file("gen.ndjson"), "--state-dir", state()}).exit_code, 0);
  ASSERT_EQ(ctl({"fit", "--save", "--state-dir", state()}).exit_code, 0);  // rapportd loads it at start
  const auto tiers = ctl({"tiers", "--json", "--state-dir", state()});
  ASSERT_EQ(tiers.exit_code, 0) << tiers.err;
  simdjson::dom::parser tiers_parser;
  const simdjson::dom::element counts = tiers_parser.parse(tiers.out)["counts"];
  std::map<std::string, std::uint64_t> count;
  std::uint64_t total = 0;
  for (const char* t : {"platinum", "gold", "iron", "lead", "unranked"}) total += count[t] = counts[t].get_uint64();
  ASSERT_GT(count["iron"], 1500u) << "iron must span pages of 1000: " << tiers.out;
  ASSERT_GT(count["lead"], 10u) << tiers.out;  // leads rank anywhere by CLV: the merge interleaves tiers

  const std::string config = dir_.file("tokens.toml");
  write_file(config, std::string("[[auth.tokens]]\ntoken = \"") + kTopReadToken + "\"\nscopes = [\"read\"]\n");
  Daemon d(state(), {"--config", config});
  const std::vector<std::string> url = {"--url", url_of(d), "--token", kTopReadToken};

  // The route carries each item's exact sort key beside the rounded metric.
  const auto page = http(d.http_port(), "GET", "/v1/customers?tier=iron&order=churn_risk&limit=3", "",
                         "application/json", {std::string("Authorization: Bearer ") + kTopReadToken});
  ASSERT_EQ(page.status, 200) << page.body;
  EXPECT_NE(page.body.find("\"order_value\":"), std::string::npos) << page.body;
  {
    simdjson::dom::parser parser;
    const simdjson::dom::element first = parser.parse(page.body)["customers"].at(0);
    EXPECT_EQ(std::round(double(first["order_value"].get_double()) * 1e4) / 1e4,
              double(first["churn_risk"].get_double()))
        << page.body;
  }

  for (const std::string by : {"clv", "churn_risk"}) {
    for (const std::string tier : {"", "iron", "lead", "platinum"}) {
      for (const std::size_t n : {std::size_t{7}, std::size_t{1500}, std::size_t{100'000}}) {
        SCOPED_TRACE(by + " tier '" + tier + "' n " + std::to_string(n));
        std::vector<std::string> args = {"top", "--by", by, "-n", std::to_string(n)};
        if (!tier.empty()) args.insert(args.end(), {"--tier", tier});
        std::vector<std::string> dir_args = args, url_args = args;
        dir_args.insert(dir_args.end(), {"--state-dir", state()});
        url_args.insert(url_args.end(), url.begin(), url.end());
        const auto by_dir = ctl(dir_args);
        const auto by_url = ctl(url_args);
        ASSERT_EQ(by_dir.exit_code, 0) << by_dir.err;
        ASSERT_EQ(by_url.exit_code, 0) << by_url.err;
        EXPECT_EQ(first_difference(by_url.out, by_dir.out), "");  // the table, byte for byte
        const std::size_t in_scope = tier.empty() ? total : count[tier];
        EXPECT_EQ(lines_of(by_url.out).size(), 1 + std::min<std::size_t>(n, in_scope));

        dir_args.push_back("--json");
        url_args.push_back("--json");
        const auto json_dir = ctl(dir_args);
        const auto json_url = ctl(url_args);
        ASSERT_EQ(json_dir.exit_code, 0) << json_dir.err;
        ASSERT_EQ(json_url.exit_code, 0) << json_url.err;
        const TopJson from_dir = parse_top(json_dir.out, by), from_url = parse_top(json_url.out, by);
        EXPECT_EQ(from_url.rows.size(), from_dir.rows.size());
        for (std::size_t i = 0; i < std::min(from_url.rows.size(), from_dir.rows.size()); ++i) {
          if (from_url.rows[i] != from_dir.rows[i]) {
            ADD_FAILURE() << "JSON row " << i << ": got " << std::get<0>(from_url.rows[i]) << " "
                          << std::get<1>(from_url.rows[i]) << " " << std::get<2>(from_url.rows[i]) << ", want "
                          << std::get<0>(from_dir.rows[i]) << " " << std::get<1>(from_dir.rows[i]) << " "
                          << std::get<2>(from_dir.rows[i]);
            break;
          }
        }
        EXPECT_EQ(from_url.by, by);
        EXPECT_EQ(from_url.as_of.substr(0, 10), from_dir.as_of.substr(0, 10)) << json_url.out;
        EXPECT_TRUE(from_dir.has_scanned);
        EXPECT_FALSE(from_url.has_scanned);  // the daemon does not say how many it scanned
        if (tier == "iron" && n > 1000) {
          EXPECT_GT(from_url.rows.size(), 1000u);  // more than one page of one tier
        }
        if (tier.empty() && n == 1500) {  // several tiers in the merged top
          std::set<std::string> seen_tiers;
          for (const auto& row : from_url.rows) seen_tiers.insert(std::get<2>(row));
          EXPECT_GE(seen_tiers.size(), 3u);
        }
      }
    }
  }
}

TEST_F(RapportctlAdmin, TopOverUrlRefusesWhatOnlyTheStateDirOffers) {
  const auto gen = ctl({"generate", "--customers", "200", "--events", "10000", "--seed", "9"});
  ASSERT_EQ(gen.exit_code, 0);
  write_file(dir_.file("gen.ndjson"), gen.out);
  ASSERT_EQ(ctl({"import", "-q", "--async", dir_.file("gen.ndjson"), "--state-dir", state()}).exit_code, 0);
  const std::string config = dir_.file("tokens.toml");
  write_file(config, std::string("[[auth.tokens]]\ntoken = \"") + kTopReadToken + "\"\nscopes = [\"read\"]\n");
  Daemon d(state(), {"--config", config});
  const std::string url = url_of(d);

  // Before any fit: clv and churn_risk need the daemon's model.
  const auto unfitted = ctl({"top", "--by", "clv", "--url", url, "--token", kTopReadToken});
  EXPECT_EQ(unfitted.exit_code, 2);
  EXPECT_NE(unfitted.err.find("rapportctl: the daemon at " + url + " has no value model yet to rank by clv"),
            std::string::npos)
      << unfitted.err;
  EXPECT_NE(unfitted.err.find("rapportctl fit --url"), std::string::npos) << unfitted.err;
  // Satisfaction needs none (every customer is unranked then), and agrees with the state dir.
  const auto satisfaction = ctl({"top", "--by", "satisfaction", "-n", "5", "--url", url, "--token", kTopReadToken});
  ASSERT_EQ(satisfaction.exit_code, 0) << satisfaction.err;
  EXPECT_EQ(lines_of(satisfaction.out).size(), 6u) << satisfaction.out;
  EXPECT_NE(satisfaction.out.find("unranked"), std::string::npos) << satisfaction.out;

  // Metrics the route does not rank by, and --as-of, are usage errors pointing at --state-dir; nothing is asked.
  for (const std::string by : {"p_alive", "profit_12m", "revenue"}) {
    SCOPED_TRACE(by);
    const auto r = ctl({"top", "--by", by, "--url", url, "--token", kTopReadToken});
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_EQ(r.out, "");
    EXPECT_NE(r.err.find("rapportctl: top --by " + by + " is not available with --url"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("use --state-dir for p_alive, profit_12m and revenue"), std::string::npos) << r.err;
    // ... even when no daemon listens.
    const auto closed = ctl({"top", "--by", by, "--url", "http://127.0.0.1:" + std::to_string(closed_port())});
    EXPECT_EQ(closed.exit_code, 2);
    EXPECT_NE(closed.err.find("use --state-dir"), std::string::npos) << closed.err;
  }
  const auto as_of =
      ctl({"top", "--by", "satisfaction", "--as-of", "2024-01-01", "--url", url, "--token", kTopReadToken});
  EXPECT_EQ(as_of.exit_code, 2);
  EXPECT_NE(as_of.err.find("rapportctl: top --as-of is not available with --url"), std::string::npos) << as_of.err;
  EXPECT_NE(as_of.err.find("use --state-dir"), std::string::npos) << as_of.err;
  EXPECT_EQ(ctl({"top", "--by", "happiness", "--url", url}).exit_code, 2);
  EXPECT_EQ(ctl({"top", "--url", url, "--state-dir", state()}).exit_code, 2);  // one or the other

  // A missing token is a clear error naming --token; a closed port a clear connection error.
  const auto anonymous = ctl({"top", "--by", "satisfaction", "--url", url});
  EXPECT_EQ(anonymous.exit_code, 2);
  EXPECT_NE(anonymous.err.find("HTTP 401"), std::string::npos) << anonymous.err;
  EXPECT_NE(anonymous.err.find("--token"), std::string::npos) << anonymous.err;
  const auto closed = ctl({"top", "--by", "loyalty", "--url", "http://127.0.0.1:" + std::to_string(closed_port())});
  EXPECT_EQ(closed.exit_code, 2);
  EXPECT_NE(closed.err.find("connection refused"), std::string::npos) << closed.err;
}

// --- fit and tiers -------------------------------------------------------------

TEST_F(RapportctlAdmin, FitSaveThenTiersCountEveryCustomerAndTopAgrees) {
  const auto gen =
      ctl({"generate", "--customers", "300", "--events", "20000", "--seed", "5", "--end-ms", "1700000000000"});
  ASSERT_EQ(gen.exit_code, 0);
  std::set<std::string> customers;
  {
    simdjson::dom::parser parser;
    for (const auto& line : lines_of(gen.out)) {
      simdjson::dom::element doc;
      ASSERT_EQ(parser.parse(line).get(doc), simdjson::SUCCESS) << line;
      customers.emplace(std::string_view(doc["customer_id"].get_string()));
    }
  }
  write_file(dir_.file("gen.ndjson"), gen.out);
  ASSERT_EQ(ctl({"import", "-q", "--async", dir_.file("gen.ndjson"), "--state-dir", state()}).exit_code, 0);

  const auto before = ctl({"tiers", "--state-dir", state()});
  EXPECT_EQ(before.exit_code, 1) << before.out;
  EXPECT_NE(before.err.find("no value model"), std::string::npos) << before.err;

  const std::string as_of = "2023-11-15T00:00:00Z";
  const auto dry = ctl({"fit", "--as-of", as_of, "--state-dir", state()});
  ASSERT_EQ(dry.exit_code, 0) << dry.err;
  EXPECT_NE(dry.out.find("\"bgnbd\""), std::string::npos) << dry.out;
  EXPECT_NE(dry.err.find("not saved"), std::string::npos) << dry.err;
  EXPECT_EQ(ctl({"tiers", "--state-dir", state()}).exit_code, 1);  // nothing stored without --save

  const auto fit = ctl({"fit", "--as-of", as_of, "--save", "--state-dir", state()});
  ASSERT_EQ(fit.exit_code, 0) << fit.err;
  simdjson::dom::parser parser;
  simdjson::dom::element model;
  ASSERT_EQ(parser.parse(fit.out).get(model), simdjson::SUCCESS) << fit.out;
  EXPECT_EQ(std::string_view(model["as_of"].get_string()), "2023-11-15T00:00:00.000Z");
  EXPECT_GT(std::string_view(model["fitted_at"].get_string()), "2023-11-15");  // when the fit ran
  EXPECT_EQ(std::uint64_t(model["customers"].get_uint64()), customers.size());
  EXPECT_GT(double(model["bgnbd"]["r"].get_double()), 0);

  const auto tiers = ctl({"tiers", "--json", "--state-dir", state()});
  ASSERT_EQ(tiers.exit_code, 0) << tiers.err;
  simdjson::dom::parser tiers_parser;
  simdjson::dom::element doc;
  ASSERT_EQ(tiers_parser.parse(tiers.out).get(doc), simdjson::SUCCESS) << tiers.out;
  std::map<std::string, std::uint64_t> counts;
  std::uint64_t total = 0;
  for (const char* t : {"platinum", "gold", "iron", "lead", "unranked"}) {
    counts[t] = doc["counts"][t].get_uint64();
    total += counts[t];
  }
  EXPECT_EQ(total, customers.size()) << tiers.out;
  EXPECT_GT(counts["platinum"], 0u) << tiers.out;
  EXPECT_GT(counts["gold"], counts["platinum"]) << tiers.out;
  EXPECT_EQ(counts["unranked"], 0u) << tiers.out;

  const auto table = ctl({"tiers", "--state-dir", state()});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find("total"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find(std::to_string(customers.size())), std::string::npos) << table.out;

  // Ranking every customer by CLV as of the fit gives the same tiers the fit counted.
  const auto top = ctl({"top", "--by", "clv", "-n", "100000", "--json", "--as-of", as_of, "--state-dir", state()});
  ASSERT_EQ(top.exit_code, 0) << top.err;
  std::vector<std::string> tier_of;
  const auto rows = top_rows(top.out, "clv", &tier_of);
  ASSERT_EQ(rows.size(), customers.size());
  EXPECT_EQ(tier_of.front(), "platinum");
  for (std::size_t i = 1; i < rows.size(); ++i) EXPECT_GE(rows[i - 1].second, rows[i].second);
  std::map<std::string, std::uint64_t> ranked;
  for (const auto& t : tier_of) ++ranked[t];
  for (const char* t : {"platinum", "gold", "iron", "lead"}) EXPECT_EQ(ranked[t], counts[t]) << t;
}

// --as-of works over --url too (POST /v1/model:fit {"as_of": …}) and gives the fit a state dir gives;
// bad and future dates are clear errors in both modes.
TEST_F(RapportctlAdmin, FitAsOfOverUrlMatchesTheStateDirAndBadDatesAreRejected) {
  const auto gen =
      ctl({"generate", "--customers", "200", "--events", "10000", "--seed", "9", "--end-ms", "1700000000000"});
  ASSERT_EQ(gen.exit_code, 0);
  write_file(dir_.file("gen.ndjson"), gen.out);
  ASSERT_EQ(ctl({"import", "-q", "--async", dir_.file("gen.ndjson"), "--state-dir", state()}).exit_code, 0);
  const std::string as_of = "2023-10-01";  // before the generated history ends: later events are ignored
  const auto dir_fit = ctl({"fit", "--as-of", as_of, "--state-dir", state()});
  ASSERT_EQ(dir_fit.exit_code, 0) << dir_fit.err;

  Daemon d(state());
  const auto url_fit = ctl({"fit", "--as-of", as_of, "--url", url_of(d)});
  ASSERT_EQ(url_fit.exit_code, 0) << url_fit.err;
  simdjson::dom::parser p1, p2;
  simdjson::dom::element by_url, by_dir;
  ASSERT_EQ(p1.parse(url_fit.out).get(by_url), simdjson::SUCCESS) << url_fit.out;
  ASSERT_EQ(p2.parse(dir_fit.out).get(by_dir), simdjson::SUCCESS) << dir_fit.out;
  EXPECT_EQ(std::string_view(by_url["as_of"].get_string()), "2023-10-01T00:00:00.000Z");
  for (const char* p : {"r", "alpha", "a", "b", "log_likelihood", "customers"}) {
    EXPECT_EQ(double(by_url["bgnbd"][p].get_double()), double(by_dir["bgnbd"][p].get_double())) << p;
  }
  for (const char* p : {"p", "q", "gamma", "customers"}) {
    EXPECT_EQ(double(by_url["gamma_gamma"][p].get_double()), double(by_dir["gamma_gamma"][p].get_double())) << p;
  }
  EXPECT_EQ(std::uint64_t(by_url["customers"].get_uint64()), std::uint64_t(by_dir["customers"].get_uint64()));
  // The daemon keeps it as its model.
  const auto model = http(d.http_port(), "GET", "/v1/model");
  ASSERT_EQ(model.status, 200);
  EXPECT_NE(model.body.find(R"("as_of":"2023-10-01T00:00:00.000Z")"), std::string::npos) << model.body;

  // Bad dates: refused before anything is sent (url) or opened (dir), with the same message.
  for (const std::string& mode : {std::string("--url"), std::string("--state-dir")}) {
    SCOPED_TRACE(mode);
    const std::string where = mode == "--url" ? url_of(d) : state();
    const auto bad = ctl({"fit", "--as-of", "2024-02-30", mode, where});
    EXPECT_EQ(bad.exit_code, 2);
    EXPECT_NE(bad.err.find("'2024-02-30' is not a date: use YYYY-MM-DD"), std::string::npos) << bad.err;
    const auto future = ctl({"fit", "--as-of", "2999-01-01", mode, where});
    EXPECT_EQ(future.exit_code, 2);
    EXPECT_NE(future.err.find("is in the future"), std::string::npos) << future.err;
  }
  // A closed port is a clear connection error, not a usage error.
  const auto closed = ctl({"fit", "--as-of", as_of, "--url", "http://127.0.0.1:" + std::to_string(closed_port())});
  EXPECT_EQ(closed.exit_code, 2);
  EXPECT_EQ(closed.err.find("--as-of is not supported"), std::string::npos) << closed.err;
}

TEST_F(RapportctlAdmin, FitWithTooLittleDataFailsClearly) {
  ASSERT_EQ(import_text(dir_, purchase_line("1", "alice", 5), state()).exit_code, 0);
  const auto tiny = ctl({"fit", "--state-dir", state()});
  EXPECT_EQ(tiny.exit_code, 2);
  EXPECT_NE(tiny.err.find("rapportctl: fit failed"), std::string::npos) << tiny.err;
}

TEST_F(RapportctlAdmin, FitAndTiersOverUrl) {
  const auto gen = ctl({"generate", "--customers", "200", "--events", "10000", "--seed", "9"});
  ASSERT_EQ(gen.exit_code, 0);
  write_file(dir_.file("gen.ndjson"), gen.out);
  ASSERT_EQ(ctl({"import", "-q", "--async", dir_.file("gen.ndjson"), "--state-dir", state()}).exit_code, 0);
  Daemon d(state());
  const auto before = ctl({"tiers", "--url", url_of(d)});
  EXPECT_EQ(before.exit_code, 1) << before.err;  // 404 before the first fit
  const auto fit = ctl({"fit", "--url", url_of(d)});
  ASSERT_EQ(fit.exit_code, 0) << fit.err;
  EXPECT_NE(fit.out.find("\"gamma_gamma\""), std::string::npos) << fit.out;
  const auto tiers = ctl({"tiers", "--url", url_of(d)});
  ASSERT_EQ(tiers.exit_code, 0) << tiers.err;
  EXPECT_NE(tiers.out.find("platinum"), std::string::npos) << tiers.out;
  EXPECT_NE(tiers.out.find("total"), std::string::npos) << tiers.out;
}

// --- erase and get --url ---------------------------------------------------------

TEST_F(RapportctlAdmin, EraseOnAStateDir) {
  ASSERT_EQ(import_text(dir_, purchase_line("1", "alice", 10) + purchase_line("2", "bob", 20), state()).exit_code, 0);
  const auto erased = ctl({"erase", "alice", "--state-dir", state()});
  ASSERT_EQ(erased.exit_code, 0) << erased.err;
  EXPECT_NE(erased.out.find("erased customer alice"), std::string::npos) << erased.out;
  EXPECT_EQ(ctl({"get", "alice", "--state-dir", state()}).exit_code, 1);
  EXPECT_EQ(ctl({"get", "bob", "--state-dir", state()}).exit_code, 0);
  const auto again = ctl({"erase", "alice", "--state-dir", state()});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.err.find("rapportctl: unknown customer: alice"), std::string::npos) << again.err;
  // Erased means forgotten: the same event id is accepted again, not a duplicate.
  const auto reimport = import_text(dir_, purchase_line("1", "alice", 10), state());
  EXPECT_NE(reimport.err.find("1 accepted"), std::string::npos) << reimport.err;
}

TEST_F(RapportctlAdmin, GetAndEraseOverUrl) {
  Daemon d(state());
  ASSERT_EQ(http(d.http_port(), "POST", "/v1/events", purchase_line("1", "x/y z", 7) + purchase_line("2", "bob", 3),
                 "application/x-ndjson")
                .status,
            200);
  const auto get = ctl({"get", "x/y z", "--url", url_of(d), "--explain"});  // the id is percent-encoded
  ASSERT_EQ(get.exit_code, 0) << get.err;
  EXPECT_NE(get.out.find("\"customer_id\":\"x/y z\""), std::string::npos) << get.out;
  EXPECT_NE(get.out.find("\"components\""), std::string::npos) << get.out;
  EXPECT_EQ(ctl({"get", "nobody", "--url", url_of(d)}).exit_code, 1);

  const auto erased = ctl({"erase", "x/y z", "--url", url_of(d)});
  ASSERT_EQ(erased.exit_code, 0) << erased.err;
  EXPECT_EQ(http(d.http_port(), "GET", "/v1/customers/x%2Fy%20z").status, 404);
  EXPECT_EQ(http(d.http_port(), "GET", "/v1/customers/bob").status, 200);
  const auto again = ctl({"erase", "x/y z", "--url", url_of(d)});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.err.find("unknown customer"), std::string::npos) << again.err;
}

TEST_F(RapportctlAdmin, UrlToAClosedPortIsAClearFatalError) {
  const std::string url = "http://127.0.0.1:" + std::to_string(closed_port());
  for (const std::vector<std::string>& args : {std::vector<std::string>{"get", "alice", "--url", url},
                                               {"erase", "alice", "--url", url},
                                               {"tiers", "--url", url},
                                               {"deadletter", "list", "--url", url}}) {
    const auto r = ctl(args);
    EXPECT_EQ(r.exit_code, 2) << args[0];
    EXPECT_EQ(r.err.rfind("rapportctl: ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find("connection refused"), std::string::npos) << r.err;
  }
  const auto bad = ctl({"get", "alice", "--url", "ftp://example"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("http://"), std::string::npos) << bad.err;
  EXPECT_EQ(ctl({"get", "alice", "--url", url, "--state-dir", state()}).exit_code, 2);  // one or the other
}

// --- dead letters ------------------------------------------------------------------

TEST_F(RapportctlAdmin, DeadLetterListAndReplayKeepsTheUnfixable) {
  // A line from the future (refused with no skew allowed) and a line that is not JSON.
  write_file(dir_.file("strict.toml"), "[ingest]\nmax_future_skew_ms = 0\n");
  write_file(dir_.file("lenient.toml"), "[ingest]\nmax_future_skew_ms = 86400000\n");
  const std::int64_t soon = now_ms() + 3'600'000;
  const std::string future = event_line("f1", "tardis", "engagement", "", soon);
  const auto imp =
      import_text(dir_, purchase_line("1", "alice", 5) + "{not json\n" + future, state(), dir_.file("strict.toml"));
  ASSERT_EQ(imp.exit_code, 1) << imp.err;

  const auto list = ctl({"deadletter", "list", "--state-dir", state()});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  auto letters = lines_of(list.out);
  ASSERT_EQ(letters.size(), 2u) << list.out;
  EXPECT_NE(letters[0].find("\"reason\":\"malformed_json\""), std::string::npos) << letters[0];
  EXPECT_NE(letters[0].find("\"payload\":\"{not json\""), std::string::npos) << letters[0];
  EXPECT_NE(letters[1].find("\"reason\":\"future_timestamp\""), std::string::npos) << letters[1];
  EXPECT_NE(letters[1].find("\"transport\":\"import\""), std::string::npos) << letters[1];
  const auto limited = ctl({"deadletter", "list", "--limit", "1", "--state-dir", state()});
  EXPECT_EQ(lines_of(limited.out).size(), 1u) << limited.out;
  const std::string first_seq = letters[0].substr(12, letters[0].find(',') - 12);
  const auto after = ctl({"deadletter", "list", "--after", first_seq, "--state-dir", state()});
  ASSERT_EQ(lines_of(after.out).size(), 1u) << after.out;
  EXPECT_NE(after.out.find("future_timestamp"), std::string::npos) << after.out;

  // Replayed with the lenient config: the future event goes in, the broken line stays and is reported.
  const auto replay = ctl({"deadletter", "replay", "--state-dir", state(), "--config", dir_.file("lenient.toml")});
  EXPECT_EQ(replay.exit_code, 1) << replay.out << replay.err;
  EXPECT_NE(replay.out.find("replayed 2 dead letters: 1 accepted, 0 duplicates, 1 still invalid"), std::string::npos)
      << replay.out;
  EXPECT_NE(replay.err.find("still invalid, kept: malformed_json"), std::string::npos) << replay.err;
  EXPECT_EQ(ctl({"get", "tardis", "--state-dir", state()}).exit_code, 0);
  letters = lines_of(ctl({"deadletter", "list", "--state-dir", state()}).out);
  ASSERT_EQ(letters.size(), 1u);
  EXPECT_NE(letters[0].find("malformed_json"), std::string::npos) << letters[0];

  // Replaying again changes nothing.
  const auto again = ctl({"deadletter", "replay", "--state-dir", state()});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.out.find("0 accepted, 0 duplicates, 1 still invalid"), std::string::npos) << again.out;
  EXPECT_EQ(lines_of(ctl({"deadletter", "list", "--state-dir", state()}).out).size(), 1u);
}

TEST_F(RapportctlAdmin, DeadLetterListAndReplayOverUrl) {
  // Rejected under a strict config (a line from the future, and one that is not JSON), then replayed
  // against a daemon running with a lenient one, over HTTP only.
  write_file(dir_.file("strict.toml"), "[ingest]\nmax_future_skew_ms = 0\n");
  write_file(dir_.file("lenient.toml"), "[ingest]\nmax_future_skew_ms = 86400000\n");
  const std::string future = event_line("f1", "tardis", "engagement", "", now_ms() + 3'600'000);
  ASSERT_EQ(import_text(dir_, "{broken\n" + future, state(), dir_.file("strict.toml")).exit_code, 1);
  Daemon d(state(), {"--config", dir_.file("lenient.toml")});
  const auto list = ctl({"deadletter", "list", "--url", url_of(d)});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  ASSERT_EQ(lines_of(list.out).size(), 2u) << list.out;
  EXPECT_NE(list.out.find("{broken"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("future_timestamp"), std::string::npos) << list.out;

  const std::string broken = lines_of(list.out)[0];
  ASSERT_NE(broken.find("{broken"), std::string::npos) << broken;

  const auto replay = ctl({"deadletter", "replay", "--url", url_of(d)});
  EXPECT_EQ(replay.exit_code, 1) << replay.err;
  EXPECT_NE(replay.out.find("replayed 2 dead letters: 1 accepted, 0 duplicates, 1 still invalid"), std::string::npos)
      << replay.out;
  EXPECT_NE(replay.err.find("malformed_json"), std::string::npos) << replay.err;
  EXPECT_EQ(ctl({"get", "tardis", "--url", url_of(d)}).exit_code, 0);
  // The replayed letter is gone from the daemon's store; the broken line is kept as the one letter it was: the
  // replay (POST /v1/events?deadletter=false) does not store a second dead letter for it. Replaying it again
  // changes nothing either.
  auto after = lines_of(ctl({"deadletter", "list", "--url", url_of(d)}).out);
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after[0], broken);
  const auto again = ctl({"deadletter", "replay", "--url", url_of(d)});
  EXPECT_EQ(again.exit_code, 1) << again.err;
  EXPECT_NE(again.out.find("replayed 1 dead letters: 0 accepted, 0 duplicates, 1 still invalid"), std::string::npos)
      << again.out;
  after = lines_of(ctl({"deadletter", "list", "--url", url_of(d)}).out);
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after[0], broken);

  // --url and --state-dir are one or the other.
  EXPECT_EQ(ctl({"deadletter", "replay", "--url", url_of(d), "--state-dir", state()}).exit_code, 2);
}

// --- backup and restore ----------------------------------------------------------------

// Reads TCP lines until an ack covering `line` arrives; false on error or timeout.
bool wait_for_ack(Client& c, long line) {
  while (auto l = c.read_line()) {
    if (l->rfind("{\"ack\":", 0) == 0 && std::stol(l->substr(7)) >= line) return true;
    if (l->find("\"error\"") != std::string::npos && l->rfind("{\"line\":", 0) != 0) return false;
  }
  return false;
}

TEST_F(RapportctlAdmin, BackupUnderLoadHoldsEveryAckedEventAndRestores) {
  constexpr int kCustomers = 40;
  constexpr long kChunk = 250;
  Daemon d(state());
  std::atomic<long> acked{0};
  std::atomic<bool> stop{false};
  std::atomic<bool> failed{false};
  const std::int64_t ts = now_ms() - 3'600'000;
  std::thread streamer([&] {
    try {
      Client c(d.tcp_port());
      long sent = 0;
      while (!stop.load() && sent < 400'000) {
        std::string chunk;
        for (long i = 0; i < kChunk; ++i) {
          ++sent;
          chunk += R"({"event_id":"e)" + std::to_string(sent) + R"(","customer_id":"k)" +
                   std::to_string(sent % kCustomers) + R"(","ts":)" + std::to_string(ts) +
                   R"(,"type":"purchase","amount":1})" + "\n";
        }
        c.send(chunk);
        if (!wait_for_ack(c, sent)) {
          failed = true;
          return;
        }
        acked = sent;
      }
    } catch (const std::exception&) {
      failed = true;
    }
  });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (acked.load() < 5000 && !failed.load() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const long acked_before = acked.load();
  const auto backup = ctl({"backup", dir_.file("backup"), "--state-dir", state()});
  const long acked_after = acked.load();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  stop = true;
  streamer.join();
  ASSERT_FALSE(failed.load());
  ASSERT_GE(acked_before, 5000);
  ASSERT_EQ(backup.exit_code, 0) << backup.err;
  EXPECT_NE(backup.err.find("backing up "), std::string::npos) << backup.err;
  EXPECT_NE(backup.out.find("backup of "), std::string::npos) << backup.out;
  EXPECT_NE(backup.out.find(" events written to " + dir_.file("backup") + " in "), std::string::npos) << backup.out;
  EXPECT_EQ(d.stop(), 0) << d.log();

  // Restore into a new state dir, then every event acked before the backup began must be there.
  const std::string restored = dir_.file("restored");
  const auto restore = ctl({"restore", dir_.file("backup"), "--state-dir", restored});
  ASSERT_EQ(restore.exit_code, 0) << restore.err;
  EXPECT_NE(restore.out.find("restored 40 customers"), std::string::npos) << restore.out;

  const auto top = ctl({"top", "--by", "revenue", "-n", "1000", "--json", "--state-dir", restored});
  ASSERT_EQ(top.exit_code, 0) << top.err;
  const auto rows = top_rows(top.out, "revenue");
  ASSERT_EQ(rows.size(), static_cast<std::size_t>(kCustomers)) << top.out;
  std::map<std::string, long> revenue;
  double total = 0;
  for (const auto& [id, v] : rows) {
    revenue[id] = static_cast<long>(v);
    total += v;
  }
  for (int k = 0; k < kCustomers; ++k) {
    // Lines 1..acked_before with line % kCustomers == k.
    const long expected = acked_before / kCustomers + (k != 0 && k <= acked_before % kCustomers ? 1 : 0);
    EXPECT_GE(revenue["k" + std::to_string(k)], expected) << "customer k" << k;
  }
  EXPECT_GE(total, static_cast<double>(acked_before));
  EXPECT_LE(total, static_cast<double>(acked.load()) + kChunk) << "acked after the backup: " << acked_after;
  EXPECT_GT(acked.load(), acked_before) << "the stream must go on during the backup";
  const auto get = ctl({"get", "k1", "--state-dir", restored});
  EXPECT_EQ(get.exit_code, 0) << get.err;
}

TEST_F(RapportctlAdmin, BackupRefusesANonEmptyDestination) {
  ASSERT_EQ(import_text(dir_, purchase_line("1", "alice", 1), state()).exit_code, 0);
  std::filesystem::create_directories(dir_.file("dest"));
  write_file(dir_.file("dest/keep.txt"), "precious");
  const auto r = ctl({"backup", dir_.file("dest"), "--state-dir", state()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("rapportctl: backup destination"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("not empty"), std::string::npos) << r.err;
  EXPECT_EQ(read_file(dir_.file("dest/keep.txt")), "precious");
  EXPECT_FALSE(std::filesystem::exists(dir_.file("dest/data.mdb")));
  // An existing empty directory is fine.
  std::filesystem::create_directories(dir_.file("empty"));
  EXPECT_EQ(ctl({"backup", dir_.file("empty"), "--state-dir", state()}).exit_code, 0);
  EXPECT_EQ(ctl({"backup", dir_.file("x"), "--url", "http://127.0.0.1:1"}).exit_code, 2);  // a state-dir command
}

TEST_F(RapportctlAdmin, RestoreRefusesDataAndARunningDaemonUnlessForcedWhenStopped) {
  ASSERT_EQ(import_text(dir_, purchase_line("1", "alice", 1), state()).exit_code, 0);
  ASSERT_EQ(ctl({"backup", dir_.file("backup"), "--state-dir", state()}).exit_code, 0);
  const std::string other = dir_.file("other");
  ASSERT_EQ(import_text(dir_, purchase_line("9", "zed", 1), other).exit_code, 0);

  const auto refused = ctl({"restore", dir_.file("backup"), "--state-dir", other});
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_NE(refused.err.find("already holds data"), std::string::npos) << refused.err;
  EXPECT_EQ(ctl({"get", "zed", "--state-dir", other}).exit_code, 0);

  {
    Daemon d(other);
    const auto busy = ctl({"restore", dir_.file("backup"), "--state-dir", other, "--force"});
    EXPECT_EQ(busy.exit_code, 2);
    EXPECT_NE(busy.err.find("in use"), std::string::npos) << busy.err;
    EXPECT_EQ(d.stop(), 0);
  }
  const auto forced = ctl({"restore", dir_.file("backup"), "--state-dir", other, "--force"});
  ASSERT_EQ(forced.exit_code, 0) << forced.err;
  EXPECT_EQ(ctl({"get", "alice", "--state-dir", other}).exit_code, 0);
  EXPECT_EQ(ctl({"get", "zed", "--state-dir", other}).exit_code, 1);

  const auto not_backup = ctl({"restore", dir_.file("nothing"), "--state-dir", dir_.file("new")});
  EXPECT_EQ(not_backup.exit_code, 2);
  EXPECT_NE(not_backup.err.find("is not a backup"), std::string::npos) << not_backup.err;
}

}  // namespace
}  // namespace rapport::test
