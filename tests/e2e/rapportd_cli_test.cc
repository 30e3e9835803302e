// rapportd as a program: exit codes and messages of usage and configuration errors, the log formats
// (timestamps, JSON lines, audit lines, debug steps) and the rapport_customers gauges.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <regex>
#include <set>

#include "daemon/generator.h"
#include "tests/e2e/harness.h"

namespace rapport::test {
namespace {

using namespace std::chrono_literals;

constexpr char kIngestToken[] = "cli-ingest-0123456789abcdef";
constexpr char kReadToken[] = "cli-read-0123456789abcdefgh";
constexpr char kAdminToken[] = "cli-admin-0123456789abcdefg";
constexpr char kWrongToken[] = "cli-wrong-0123456789abcdefg";

std::string tokens_toml() {
  return std::string("[[auth.tokens]]\ntoken = \"") + kIngestToken + "\"\nscopes = [\"ingest\"]\n" +
         "[[auth.tokens]]\ntoken = \"" + kReadToken + "\"\nscopes = [\"read\"]\n" + "[[auth.tokens]]\ntoken = \"" +
         kAdminToken + "\"\nscopes = [\"admin\"]\n";
}

std::string bearer(const std::string& token) { return "Authorization: Bearer " + token; }

std::string event(const std::string& id, const std::string& customer) {
  return R"({"event_id":")" + id + R"(","customer_id":")" + customer +
         R"(","ts":1700000000000,"type":"purchase","amount":12.5})";
}

CommandResult rapportd(std::vector<std::string> args) {
  args.insert(args.begin(), binary("rapportd"));
  return run_command(args);
}

// Waits (polling the log, no timing assertion) until `needle` appears or a generous deadline passes.
bool log_shows(Daemon& d, const std::string& needle) {
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (d.log().find(needle) != std::string::npos) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

class RapportdCliTest : public ::testing::Test {
 protected:
  std::string write_config(const std::string& name, const std::string& content) {
    const std::string path = dir_.file(name);
    write_file(path, content);
    return path;
  }
  TempDir dir_;
};

// ---------------------------------------------------------------------------
// Usage and configuration errors: exit 2, "rapportd: <message>" on stderr.

void expect_usage_error(const CommandResult& r, const std::string& says) {
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(r.err.rfind("rapportd: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find(says), std::string::npos) << r.err;
}

TEST_F(RapportdCliTest, UnknownFlagExits2WithAPrefixedMessage) {
  expect_usage_error(rapportd({"--bogus"}), "--bogus");
  expect_usage_error(rapportd({"--io-threads", "many"}), "--io-threads");
  expect_usage_error(rapportd({"--log-format", "xml"}), "--log-format");
  expect_usage_error(rapportd({"--log-timestamps", "sometimes"}), "--log-timestamps");
  expect_usage_error(rapportd({"stray-argument"}), "stray-argument");
}

TEST_F(RapportdCliTest, MissingConfigFileExits2NamingIt) {
  const std::string missing = dir_.file("no-such.toml");
  expect_usage_error(rapportd({"--config", missing}), missing);
  expect_usage_error(rapportd({"--config", missing, "--check-config"}), missing);
}

TEST_F(RapportdCliTest, BadConfigValueExits2NamingTheKey) {
  const std::string unknown = write_config("unknown.toml", "[value]\nfit_interval = 60\n");
  const std::string range = write_config("range.toml", "[value]\nfit_interval_s = -1\n");
  const std::string format = write_config("format.toml", "[log]\nformat = \"xml\"\n");
  for (bool check_only : {false, true}) {
    std::vector<std::string> extra = {"--http",      "127.0.0.1:0", "--tcp",
                                      "127.0.0.1:0", "--state-dir", dir_.file("state")};
    if (check_only) extra.push_back("--check-config");
    auto with = [&](const std::string& config) {
      std::vector<std::string> args = {"--config", config};
      args.insert(args.end(), extra.begin(), extra.end());
      return rapportd(args);
    };
    expect_usage_error(with(unknown), "unknown key 'value.fit_interval'");
    expect_usage_error(with(range), "'value.fit_interval_s' must be between 0 and");
    expect_usage_error(with(format), "'log.format' must be one of: text, json");
  }
  EXPECT_FALSE(std::filesystem::exists(dir_.file("state")));  // nothing was started
}

TEST_F(RapportdCliTest, HelpAndVersionExit0OnStdout) {
  const auto help = rapportd({"--help"});
  EXPECT_EQ(help.exit_code, 0) << help.err;
  for (const char* option : {"--log-format", "--log-timestamps", "--log-level", "Exit codes"}) {
    EXPECT_NE(help.out.find(option), std::string::npos) << option << "\n" << help.out;
  }
  const auto version = rapportd({"--version"});
  EXPECT_EQ(version.exit_code, 0) << version.err;
  EXPECT_EQ(version.out.rfind("rapportd ", 0), 0u) << version.out;
  const auto ok = rapportd(
      {"--config", write_config("ok.toml", "[log]\nformat = \"json\"\ntimestamps = \"off\"\n"), "--check-config"});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
}

// ---------------------------------------------------------------------------
// Logs

const std::regex kRfc3339Ms(R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)");

TEST_F(RapportdCliTest, TextLogLinesStartWithAnRfc3339UtcTimestamp) {
  Daemon d(dir_.file("state"));
  const auto lines = lines_of(d.log());
  ASSERT_FALSE(lines.empty());
  for (const std::string& line : lines) {
    EXPECT_TRUE(std::regex_search(line, kRfc3339Ms)) << line;
  }
  EXPECT_NE(lines[0].find("Z info: rapportd "), std::string::npos) << lines[0];

  Daemon off(dir_.file("state-off"), {"--log-timestamps", "off"});
  const auto plain = lines_of(off.log());
  ASSERT_FALSE(plain.empty());
  EXPECT_EQ(plain[0].rfind("info: rapportd ", 0), 0u) << plain[0];
}

// Every stderr line of --log-format json is one JSON object with ts, level and msg; authentication
// failures and erasures write audit lines that name the transport, the peer and the credential, never the
// token, and an erasure's line does not name the customer.
TEST_F(RapportdCliTest, JsonLogLinesParseAndAuditLinesNeverHoldTheTokenOrTheErasedId) {
  const std::string erased_id = "erase-me-4711";
  Daemon d(dir_.file("state"),
           {"--config", write_config("rapport.toml", tokens_toml()), "--log-format", "json", "--log-level", "debug"});
  const int port = d.http_port();
  // Authentication failures: HTTP API (wrong token, missing token, wrong scope), HTTP ingest, TCP ingest.
  EXPECT_EQ(http(port, "GET", "/v1/customers/" + erased_id, "", "", {bearer(kWrongToken)}).status, 401);
  EXPECT_EQ(http(port, "GET", "/v1/tiers").status, 401);
  EXPECT_EQ(http(port, "DELETE", "/v1/customers/" + erased_id, "", "", {bearer(kReadToken)}).status, 403);
  EXPECT_EQ(
      http(port, "POST", "/v1/events", event("e0", erased_id), "application/x-ndjson", {bearer(kReadToken)}).status,
      403);
  EXPECT_EQ(
      http(port, "POST", "/v1/events", event("e0", erased_id), "application/x-ndjson", {bearer(kWrongToken)}).status,
      401);
  {
    Client tcp(d.tcp_port());
    tcp.send(std::string("{\"auth\":\"") + kWrongToken + "\"}\n");
    EXPECT_NE(tcp.read_all().find("unauthorized"), std::string::npos);
  }
  // An erasure.
  ASSERT_EQ(
      http(port, "POST", "/v1/events", event("e1", erased_id), "application/x-ndjson", {bearer(kIngestToken)}).status,
      200);
  ASSERT_EQ(http(port, "DELETE", "/v1/customers/" + erased_id, "", "", {bearer(kAdminToken)}).status, 200);
  ASSERT_TRUE(log_shows(d, "\"msg\":\"erasure\""));
  d.stop();

  simdjson::dom::parser parser;
  int auth_failures = 0, http_failures = 0, tcp_failures = 0, erasures = 0;
  const auto lines = lines_of(d.log());
  ASSERT_GT(lines.size(), 3u);
  for (const std::string& line : lines) {
    simdjson::dom::element doc;
    ASSERT_EQ(parser.parse(line).get(doc), simdjson::SUCCESS) << "not JSON: " << line;
    std::string_view ts, level, msg;
    ASSERT_EQ(doc["ts"].get_string().get(ts), simdjson::SUCCESS) << line;
    EXPECT_TRUE(std::regex_search(std::string(ts), kRfc3339Ms)) << line;
    ASSERT_EQ(doc["level"].get_string().get(level), simdjson::SUCCESS) << line;
    ASSERT_EQ(doc["msg"].get_string().get(msg), simdjson::SUCCESS) << line;
    for (const char* token : {kIngestToken, kReadToken, kAdminToken, kWrongToken}) {
      EXPECT_EQ(line.find(std::string(token).substr(0, 12)), std::string::npos) << "a token in the log: " << line;
    }
    if (level != "audit") continue;
    std::string_view transport, peer, credential;
    EXPECT_EQ(doc["transport"].get_string().get(transport), simdjson::SUCCESS) << line;
    EXPECT_EQ(doc["peer"].get_string().get(peer), simdjson::SUCCESS) << line;
    EXPECT_EQ(peer.rfind("127.0.0.1:", 0), 0u) << line;
    EXPECT_EQ(doc["credential"].get_string().get(credential), simdjson::SUCCESS) << line;
    if (msg == "auth_failure") {
      ++auth_failures;
      http_failures += transport == "http";
      tcp_failures += transport == "tcp";
    } else if (msg == "erasure") {
      ++erasures;
      EXPECT_EQ(credential, "auth.tokens[2] (admin)") << line;
      EXPECT_EQ(line.find(erased_id), std::string::npos) << "the erased customer's id in the audit line: " << line;
    }
  }
  EXPECT_EQ(auth_failures, 6);
  EXPECT_EQ(http_failures, 5);
  EXPECT_EQ(tcp_failures, 1);
  EXPECT_EQ(erasures, 1);
  const std::string log = d.log();
  EXPECT_NE(log.find(R"j("credential":"auth.tokens[1] (read)")j"), std::string::npos) << log;  // the 403s
  EXPECT_NE(log.find(R"("credential":"unknown token")"), std::string::npos) << log;
  EXPECT_NE(log.find(R"("credential":"no token")"), std::string::npos) << log;
}

// --log-level debug: the checkpoint's steps, fits and reloads.
TEST_F(RapportdCliTest, DebugLogsCheckpointStepsFitsAndReloads) {
  const std::string config = write_config("rapport.toml", "[storage]\ncheckpoint_events = 1\n");
  Daemon d(dir_.file("state"), {"--config", config, "--log-level", "debug"});
  std::string body;
  for (int i = 0; i < 20; ++i) body += event("d" + std::to_string(i), "debug-" + std::to_string(i % 4)) + "\n";
  ASSERT_EQ(http(d.http_port(), "POST", "/v1/events", body, "application/x-ndjson").status, 200);
  ASSERT_TRUE(log_shows(d, "debug: checkpoint end")) << d.log();
  const std::string log = d.log();
  EXPECT_NE(log.find("debug: checkpoint begin pending_events="), std::string::npos) << log;
  EXPECT_NE(log.find("debug: checkpoint slice slice=1 ms="), std::string::npos) << log;
  EXPECT_TRUE(std::regex_search(
      log, std::regex(R"(debug: checkpoint end slices=\d+ customers=\d+ events=\d+ pending_events=\d+ ms=)")))
      << log;

  http(d.http_port(), "POST", "/v1/model:fit");
  EXPECT_TRUE(log_shows(d, "debug: value model fit starting")) << d.log();
  d.signal(SIGHUP);
  EXPECT_TRUE(log_shows(d, "debug: SIGHUP: reloading " + config)) << d.log();
  EXPECT_TRUE(log_shows(d, "info: configuration reloaded")) << d.log();

  Daemon quiet(dir_.file("state-quiet"), {"--config", config});
  ASSERT_EQ(http(quiet.http_port(), "POST", "/v1/events", body, "application/x-ndjson").status, 200);
  EXPECT_EQ(quiet.stop(), 0);
  EXPECT_EQ(quiet.log().find("debug:"), std::string::npos) << quiet.log();
}

// ---------------------------------------------------------------------------
// rapport_customers{tier}: the tiers add up to the number of customers, before and after a fit.

double customers_total(int port, double* unranked) {
  const auto r = http(port, "GET", "/metrics");
  if (r.status != 200) throw std::runtime_error("GET /metrics: " + std::to_string(r.status));
  std::istringstream in(r.body);
  double sum = 0;
  int series = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("rapport_customers{", 0) != 0) continue;
    const double v = std::stod(line.substr(line.find("} ") + 2));
    sum += v;
    ++series;
    if (line.find("tier=\"unranked\"") != std::string::npos) *unranked = v;
  }
  if (series != 5) throw std::runtime_error("expected 5 rapport_customers series in " + r.body);
  return sum;
}

TEST_F(RapportdCliTest, CustomerGaugesAddUpToTheCustomerCountBeforeAndAfterAFit) {
  Daemon d(dir_.file("state"));
  GenerateOptions options;
  options.customers = 300;
  options.events = 6000;
  options.seed = 7;
  EventGenerator generator(options);
  std::string body;
  for (std::uint64_t i = 0; i < options.events; ++i) generator.next(body);
  std::set<std::string> ids;
  simdjson::dom::parser parser;
  for (const std::string& line : lines_of(body)) {
    std::string_view id;
    simdjson::dom::element doc;
    if (parser.parse(line).get(doc) == simdjson::SUCCESS && doc["customer_id"].get_string().get(id) == 0) {
      ids.emplace(id);
    }
  }
  ASSERT_GT(ids.size(), 100u);
  ASSERT_EQ(http(d.http_port(), "POST", "/v1/events", body, "application/x-ndjson").status, 200);

  double unranked = -1;
  EXPECT_EQ(customers_total(d.http_port(), &unranked), static_cast<double>(ids.size()));
  EXPECT_EQ(unranked, static_cast<double>(ids.size()));  // no fit yet: all unranked

  const auto fit = http(d.http_port(), "POST", "/v1/model:fit");
  ASSERT_EQ(fit.status, 200) << fit.body;
  EXPECT_EQ(customers_total(d.http_port(), &unranked), static_cast<double>(ids.size()));
  EXPECT_EQ(unranked, 0);

  // Customers who arrive after the fit are unranked until the next one.
  std::string later;
  for (int i = 0; i < 3; ++i) later += event("late-" + std::to_string(i), "after-fit-" + std::to_string(i)) + "\n";
  ASSERT_EQ(http(d.http_port(), "POST", "/v1/events", later, "application/x-ndjson").status, 200);
  EXPECT_EQ(customers_total(d.http_port(), &unranked), static_cast<double>(ids.size() + 3));
  EXPECT_EQ(unranked, 3);
}

}  // namespace
}  // namespace rapport::test
