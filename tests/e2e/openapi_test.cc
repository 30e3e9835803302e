// End-to-end: docs/openapi.json is served at GET /v1/openapi.json (no token) and the real answers of every
// route validate against it (tests/support/json_schema.h, strict: a field the daemon emits that the
// document lacks fails). Also the keyset paging of a customer's timeline across concurrent inserts.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <optional>
#include <set>

#include "common/clock.h"
#include "daemon/generator.h"
#include "tests/e2e/harness.h"
#include "tests/support/json_schema.h"

namespace rapport::test {
namespace {

constexpr char kAdminToken[] = "openapi-admin-token-3c9f1a";
constexpr char kReadToken[] = "openapi-read-token-8e2b7d";
constexpr std::int64_t kDayMs = 86'400'000;
constexpr std::int64_t kT0 = 1'700'000'000'000;  // 2023-11-14

std::string line(const std::string& id, const std::string& customer, std::int64_t ts, const std::string& type,
                 const std::string& extra = "") {
  return R"({"event_id":")" + id + R"(","customer_id":")" + customer + R"(","ts":)" + std::to_string(ts) +
         R"(,"type":")" + type + "\"" + extra + "}\n";
}

// A synthetic population (daemon/generator: enough repeat buyers for a fit) and one customer with a
// signal of every class.
std::string population() {
  GenerateOptions options;
  options.customers = 300;
  options.events = 3000;
  options.seed = 7;
  std::FILE* file = std::tmpfile();
  if (file == nullptr) throw std::runtime_error("tmpfile");
  generate_events(options, file);
  std::string body(static_cast<std::size_t>(std::ftell(file)), '\0');
  std::rewind(file);
  const std::size_t n = std::fread(body.data(), 1, body.size(), file);
  std::fclose(file);
  body.resize(n);
  body += line("r1", "rich", kT0, "survey", R"(,"csat":5,"nps":10,"channel":"email")");
  body += line("r2", "rich", kT0 + kDayMs, "review", R"(,"rating":2,"sentiment":-0.5)");
  body += line("r3", "rich", kT0 + 2 * kDayMs, "complaint", R"(,"channel":"phone","cost":3.5)");
  body += line("r4", "rich", kT0 + 3 * kDayMs, "purchase", R"(,"amount":80)");
  body += line("r5", "rich", kT0 + 30 * kDayMs, "purchase", R"(,"amount":40)");
  body += line("r6", "rich", kT0 + 31 * kDayMs, "refund", R"(,"amount":5)");
  body += line("r7", "rich", kT0 + 32 * kDayMs, "engagement");
  return body;
}

// A daemon with an all-scopes token and a read-only one.
class TokenDaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string config = dir_.file("rapport.toml");
    write_file(config, std::string("[[auth.tokens]]\ntoken = \"") + kAdminToken +
                           "\"\nscopes = [\"admin\", \"ingest\", \"read\"]\n[[auth.tokens]]\ntoken = \"" + kReadToken +
                           "\"\nscopes = [\"read\"]\n");
    daemon_ = std::make_unique<Daemon>(dir_.file("state"), std::vector<std::string>{"--config", config});
  }

  Client::Response call(const std::string& method, const std::string& target, const std::string& body = "",
                        const char* token = kAdminToken, const std::string& type = "application/json") {
    std::vector<std::string> headers;
    if (token != nullptr) headers.push_back(std::string("Authorization: Bearer ") + token);
    return http(daemon_->http_port(), method, target, body, type, headers);
  }

  TempDir dir_;
  std::unique_ptr<Daemon> daemon_;
};

class OpenApiTest : public TokenDaemonTest {
 protected:
  void SetUp() override {
    TokenDaemonTest::SetUp();
    const auto r = http(daemon_->http_port(), "GET", "/v1/openapi.json");
    ASSERT_EQ(r.status, 200) << r.body;
    document_text_ = r.body;
    ASSERT_EQ(parser_.parse(document_text_).get(document_), simdjson::SUCCESS) << "the served document is not JSON";
  }

  // The document's operations as ("METHOD /path", operation object).
  std::vector<std::pair<std::string, simdjson::dom::element>> operations() {
    std::vector<std::pair<std::string, simdjson::dom::element>> out;
    simdjson::dom::object paths, ops;
    EXPECT_EQ(document_["paths"].get_object().get(paths), simdjson::SUCCESS);
    for (const auto path : paths) {
      EXPECT_EQ(path.value.get_object().get(ops), simdjson::SUCCESS) << path.key;
      for (const auto op : ops) {
        std::string method(op.key);
        std::transform(method.begin(), method.end(), method.begin(), [](unsigned char c) { return std::toupper(c); });
        out.emplace_back(method + " " + std::string(path.key), op.value);
      }
    }
    return out;
  }

  // The schema the document gives for this answer (route template, method, status, JSON content).
  std::optional<simdjson::dom::element> response_schema(const std::string& route, const std::string& method,
                                                        int status) {
    JsonSchemaChecker checker(document_);
    simdjson::dom::element operation, response, schema;
    std::string lower = method;
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
    if (document_["paths"][route][lower].get(operation) != simdjson::SUCCESS) {
      ADD_FAILURE() << "the document has no " << method << " " << route;
      return std::nullopt;
    }
    if (operation["responses"][std::to_string(status)].get(response) != simdjson::SUCCESS) {
      ADD_FAILURE() << "the document gives no " << status << " for " << method << " " << route;
      return std::nullopt;
    }
    std::string_view ref;
    if (response["$ref"].get_string().get(ref) == simdjson::SUCCESS) {
      EXPECT_EQ(checker.resolve(ref).get(response), simdjson::SUCCESS) << ref;
    }
    if (response["content"]["application/json"]["schema"].get(schema) != simdjson::SUCCESS) {
      ADD_FAILURE() << "no application/json schema for " << status << " of " << method << " " << route;
      return std::nullopt;
    }
    return schema;
  }

  std::vector<std::string> violations(const std::string& route, const std::string& method, const Client::Response& r) {
    const auto schema = response_schema(route, method, r.status);
    if (!schema) return {"no schema"};
    simdjson::dom::parser parser;
    simdjson::dom::element body;
    if (parser.parse(r.body).get(body) != simdjson::SUCCESS) return {"the body is not JSON: " + r.body};
    return JsonSchemaChecker(document_).validate(body, *schema);
  }

  // Checks the answer against the document and records the operation as exercised.
  void expect_documented(const std::string& route, const std::string& method, const Client::Response& r,
                         int want_status) {
    exercised_.insert(method + " " + route);
    EXPECT_EQ(r.status, want_status) << method << " " << route << ": " << r.body;
    const auto errors = violations(route, method, r);
    std::string all;
    for (const std::string& e : errors) all += "\n  " + e;
    EXPECT_TRUE(errors.empty()) << method << " " << route << " " << r.status << " disagrees with the document:" << all
                                << "\nbody: " << r.body;
  }

  std::string document_text_;
  simdjson::dom::parser parser_;
  simdjson::dom::element document_;
  std::set<std::string> exercised_;
};

TEST_F(OpenApiTest, TheServedDocumentIsTheRepositorysAndNeedsNoToken) {
  EXPECT_EQ(document_text_, read_file(std::string(RAPPORT_SOURCE_DIR) + "/docs/openapi.json"));
  std::string_view version;
  ASSERT_EQ(document_["openapi"].get_string().get(version), simdjson::SUCCESS);
  EXPECT_EQ(version, "3.1.0");
  // Every route needs a security requirement: a scope, or none for the public ones.
  std::set<std::string> public_routes;
  for (const auto& [name, op] : operations()) {
    simdjson::dom::array security;
    ASSERT_EQ(op["security"].get_array().get(security), simdjson::SUCCESS) << name;
    if (security.size() == 0) public_routes.insert(name.substr(name.find(' ') + 1));
  }
  EXPECT_EQ(public_routes, (std::set<std::string>{"/healthz", "/readyz", "/metrics", "/v1/openapi.json"}));
}

TEST_F(OpenApiTest, EveryRouteAnswersAsTheDocumentSays) {
  expect_documented("/healthz", "GET", call("GET", "/healthz", "", nullptr), 200);
  expect_documented("/readyz", "GET", call("GET", "/readyz", "", nullptr), 200);
  {
    const auto r = call("GET", "/metrics", "", nullptr);
    exercised_.insert("GET /metrics");
    EXPECT_EQ(r.status, 200);
    simdjson::dom::element content;
    EXPECT_EQ(
        document_["paths"]["/metrics"]["get"]["responses"]["200"]["content"][r.headers.at("content-type")].get(content),
        simdjson::SUCCESS)
        << "undocumented content type " << r.headers.at("content-type");
  }
  exercised_.insert("GET /v1/openapi.json");

  // Ingest: a batch with a rejection (and its event_id), one without, and a body that fails as a whole.
  exercised_.insert("POST /v1/events");
  expect_documented(
      "/v1/events", "POST",
      call("POST", "/v1/events",
           population() + "{\"event_id\":broken\n" +
               R"({"event_id":"known","customer_id":"z","ts":"2024-05-01T12:00:00","type":"survey"})" + "\n",
           kAdminToken, "application/x-ndjson"),
      200);
  expect_documented("/v1/events", "POST",
                    call("POST", "/v1/events", line("z", "z", kT0, "engagement"), kAdminToken, "application/x-ndjson"),
                    200);
  expect_documented("/v1/events", "POST", call("POST", "/v1/events", "[1,", kAdminToken, "application/json"), 400);
  expect_documented("/v1/events", "POST", call("POST", "/v1/events", "x", kAdminToken, "text/csv"), 415);
  expect_documented("/v1/events", "POST", call("POST", "/v1/events", line("z", "z", kT0, "engagement"), nullptr), 401);
  expect_documented("/v1/events", "POST", call("POST", "/v1/events", line("z", "z", kT0, "engagement"), kReadToken),
                    403);

  // Before the first fit.
  expect_documented("/v1/customers/{id}", "GET", call("GET", "/v1/customers/rich"), 200);
  expect_documented("/v1/customers/{id}", "GET", call("GET", "/v1/customers/rich?explain=true"), 200);
  expect_documented("/v1/customers/{id}", "GET", call("GET", "/v1/customers/nobody"), 404);
  expect_documented("/v1/customers/{id}", "GET", call("GET", "/v1/customers/rich", "", nullptr), 401);
  // A method a route lacks: the 405 every operation documents.
  expect_documented("/v1/customers/{id}", "GET", call("PUT", "/v1/customers/rich"), 405);
  expect_documented("/v1/tiers", "GET", call("GET", "/v1/tiers"), 404);
  expect_documented("/v1/model", "GET", call("GET", "/v1/model"), 404);
  expect_documented("/v1/customers", "GET", call("GET", "/v1/customers?tier=unranked&limit=3"), 200);
  expect_documented("/v1/customers", "GET", call("GET", "/v1/customers?tier=unranked&order=clv"), 409);

  // Fit, then everything that needs a model.
  expect_documented("/v1/model:fit", "POST", call("POST", "/v1/model:fit", R"({"as_of":"tomorrow"})"), 400);
  expect_documented("/v1/model:fit", "POST", call("POST", "/v1/model:fit", "", kReadToken), 403);
  expect_documented("/v1/model:fit", "POST", call("POST", "/v1/model:fit"), 200);
  {
    // A backtest over the generated population (730 days up to an hour ago): 300 days of holdout.
    const std::string d1 = format_rfc3339(wall_ms() - 300 * kDayMs).substr(0, 10);
    const std::string d2 = format_rfc3339(wall_ms() - kDayMs).substr(0, 10);
    const std::string body = R"({"calibration_end":")" + d1 + R"(","holdout_end":")" + d2 + "\"}";
    expect_documented("/v1/model:backtest", "POST", call("POST", "/v1/model:backtest", body), 200);
    expect_documented("/v1/model:backtest", "POST", call("POST", "/v1/model:backtest", body, kReadToken), 403);
    expect_documented(
        "/v1/model:backtest", "POST",
        call("POST", "/v1/model:backtest", R"({"calibration_end":")" + d2 + R"(","holdout_end":")" + d1 + "\"}"), 400);
    expect_documented(
        "/v1/model:backtest", "POST",
        call("POST", "/v1/model:backtest", R"({"calibration_end":"1990-01-01","holdout_end":"1991-01-01"})"), 422);
  }
  expect_documented("/v1/model", "GET", call("GET", "/v1/model", "", kReadToken), 200);
  expect_documented("/v1/tiers", "GET", call("GET", "/v1/tiers"), 200);
  expect_documented("/v1/customers/{id}", "GET", call("GET", "/v1/customers/rich?explain=true"), 200);
  expect_documented("/v1/customers/{id}", "GET", call("GET", "/v1/customers/c16?explain=1"), 200);
  for (const char* order : {"clv", "satisfaction", "loyalty", "churn_risk"}) {
    const auto r = call("GET", std::string("/v1/customers?tier=iron&limit=2&order=") + order);
    expect_documented("/v1/customers", "GET", r, 200);
    EXPECT_NE(r.body.find("\"next_cursor\":\"o1."), std::string::npos) << r.body;
  }
  expect_documented("/v1/customers", "GET", call("GET", "/v1/customers?tier=iron&limit=2"), 200);
  expect_documented("/v1/customers", "GET", call("GET", "/v1/customers?tier=copper"), 400);
  expect_documented("/v1/customers:batchGet", "POST",
                    call("POST", "/v1/customers:batchGet", R"({"ids":["rich","c16","nobody"]})"), 200);
  expect_documented("/v1/customers:batchGet", "POST", call("POST", "/v1/customers:batchGet", R"({"ids":3})"), 400);
  expect_documented("/v1/customers:batchGet", "POST",
                    call("POST", "/v1/customers:batchGet", R"({"ids":[]})" + std::string(1 << 20, ' ')), 413);

  const auto page = call("GET", "/v1/customers/rich/events?limit=3");
  expect_documented("/v1/customers/{id}/events", "GET", page, 200);
  expect_documented("/v1/customers/{id}/events", "GET", call("GET", "/v1/customers/rich/events?cursor=12"), 400);
  expect_documented("/v1/customers/{id}/events", "GET", call("GET", "/v1/customers/nobody/events"), 404);

  const auto letters = call("GET", "/v1/deadletter?limit=10");
  expect_documented("/v1/deadletter", "GET", letters, 200);
  EXPECT_NE(letters.body.find("malformed_json"), std::string::npos) << letters.body;
  expect_documented("/v1/deadletter", "GET", call("GET", "/v1/deadletter", "", kReadToken), 403);
  expect_documented("/v1/deadletter:remove", "POST", call("POST", "/v1/deadletter:remove", R"({"sequences":[1]})"),
                    200);
  expect_documented("/v1/deadletter:remove", "POST", call("POST", "/v1/deadletter:remove", R"({"sequences":[]})"), 400);

  // Identity: merge, read through an alias, unmerge, erase a merged customer.
  const std::string merge = "/v1/customers/{id}:merge", unmerge = "/v1/customers/{id}:unmerge";
  expect_documented(merge, "POST", call("POST", "/v1/customers/rich:merge", R"({"from":["c16","c6","c7"]})"), 200);
  expect_documented(merge, "POST", call("POST", "/v1/customers/rich:merge", R"({"from":3})"), 400);
  expect_documented(merge, "POST", call("POST", "/v1/customers/rich:merge", R"({"from":["c8"]})", nullptr), 401);
  expect_documented(merge, "POST", call("POST", "/v1/customers/rich:merge", R"({"from":["c8"]})", kReadToken), 403);
  expect_documented(merge, "POST", call("POST", "/v1/customers/c6:merge", R"({"from":["c8"]})"), 409);
  expect_documented(merge, "POST", call("POST", "/v1/customers/rich:merge", R"({"from":["anonymous"]})"), 422);
  expect_documented(merge, "POST",
                    call("POST", "/v1/customers/rich:merge", R"({"from":[]})" + std::string(1 << 20, ' ')), 413);
  {
    const auto alias = call("GET", "/v1/customers/c16?explain=true", "", kReadToken);
    expect_documented("/v1/customers/{id}", "GET", alias, 200);
    EXPECT_NE(alias.body.find("\"resolved_from\":\"c16\""), std::string::npos) << alias.body;
    const auto events = call("GET", "/v1/customers/c16/events?limit=1000");
    expect_documented("/v1/customers/{id}/events", "GET", events, 200);
    EXPECT_NE(events.body.find("\"sent_as\":\"c16\""), std::string::npos) << events.body;
  }
  expect_documented("/v1/customers/{id}/aliases", "GET", call("GET", "/v1/customers/c6/aliases", "", kReadToken), 200);
  expect_documented("/v1/customers/{id}/aliases", "GET", call("GET", "/v1/customers/nobody/aliases"), 200);
  expect_documented("/v1/customers/{id}/aliases", "GET", call("GET", "/v1/customers/c6/aliases", "", nullptr), 401);
  expect_documented(unmerge, "POST", call("POST", "/v1/customers/rich:unmerge", R"({"ids":["c7"]})"), 200);
  expect_documented(unmerge, "POST", call("POST", "/v1/customers/rich:unmerge", R"({"ids":["c7"]})"), 409);
  expect_documented(unmerge, "POST", call("POST", "/v1/customers/c7:unmerge", R"({"ids":["c8"]})"), 404);
  expect_documented(unmerge, "POST", call("POST", "/v1/customers/rich:unmerge", R"({"id":["c16"]})"), 400);
  expect_documented(unmerge, "POST", call("POST", "/v1/customers/rich:unmerge", R"({"ids":["c16"]})", nullptr), 401);
  expect_documented(unmerge, "POST", call("POST", "/v1/customers/rich:unmerge", R"({"ids":["c16"]})", kReadToken), 403);
  {
    const auto erased = call("DELETE", "/v1/customers/c6");  // an alias: the whole group
    expect_documented("/v1/customers/{id}", "DELETE", erased, 200);
    EXPECT_NE(erased.body.find(R"("ids":["rich","c16","c6"])"), std::string::npos) << erased.body;
  }

  expect_documented("/v1/customers/{id}", "DELETE", call("DELETE", "/v1/customers/c118", "", kReadToken), 403);
  expect_documented("/v1/customers/{id}", "DELETE", call("DELETE", "/v1/customers/c118"), 200);
  expect_documented("/v1/customers/{id}", "DELETE", call("DELETE", "/v1/customers/c118"), 404);

  const auto feed = call("GET", "/v1/changes?limit=1000");
  expect_documented("/v1/changes", "GET", feed, 200);
  EXPECT_NE(feed.body.find("\"deleted\":true"), std::string::npos) << feed.body;  // c118's tombstone
  expect_documented("/v1/changes", "GET", call("GET", "/v1/changes?limit=0"), 400);
  std::string other_partitions = "f1.";  // a cursor for 65 partitions, more than any state dir has
  for (int i = 0; i < 65; ++i) other_partitions += "0.";
  expect_documented("/v1/changes", "GET", call("GET", "/v1/changes?after=" + other_partitions + "41"), 410);

  // Outside Kafka mode there is no cluster (its 200 and the 307 redirects: tests/daemon/cluster_test.cc).
  expect_documented("/v1/cluster", "GET", call("GET", "/v1/cluster"), 404);

  // Every operation of the document was exercised, and nothing outside it.
  std::set<std::string> documented;
  for (const auto& [name, op] : operations()) documented.insert(name);
  EXPECT_EQ(exercised_, documented);
}

// Strictness, against the real document and a real answer: one field the document lacks fails.
TEST_F(OpenApiTest, AFieldTheDocumentLacksFailsValidation) {
  ASSERT_EQ(call("POST", "/v1/events", population(), kAdminToken, "application/x-ndjson").status, 200);
  auto r = call("GET", "/v1/customers/rich?explain=true");
  ASSERT_EQ(r.status, 200);
  EXPECT_TRUE(violations("/v1/customers/{id}", "GET", r).empty());
  const auto at = r.body.find("\"loyalty\":{");
  ASSERT_NE(at, std::string::npos);
  r.body.insert(at + 11, "\"undocumented\":1,");
  const auto errors = violations("/v1/customers/{id}", "GET", r);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], "$.loyalty.undocumented: not in the document");
}

// The timeline pages with a keyset cursor: events stored between two pages, one newer than all and one
// among those already read, neither repeat an event on the next page nor hide one that existed.
TEST_F(TokenDaemonTest, TimelinePagesNeitherRepeatNorSkipWhenEventsArriveBetweenPages) {
  std::string body;
  for (int i = 0; i < 6; ++i) body += line("t" + std::to_string(i), "q", kT0 + i * 1000, "engagement");
  ASSERT_EQ(call("POST", "/v1/events", body, kAdminToken, "application/x-ndjson").status, 200);

  const auto ids_of = [](const std::string& json, std::string& next) {
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    std::vector<std::string> ids;
    if (parser.parse(json).get(doc) != simdjson::SUCCESS) return ids;
    for (simdjson::dom::element e : doc["events"].get_array()) ids.emplace_back(std::string_view(e["event_id"]));
    next = doc["next_cursor"].is_null() ? "" : std::string(std::string_view(doc["next_cursor"]));
    return ids;
  };
  std::string cursor;
  auto r = call("GET", "/v1/customers/q/events?limit=2");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(ids_of(r.body, cursor), (std::vector<std::string>{"t5", "t4"}));
  ASSERT_FALSE(cursor.empty());

  ASSERT_EQ(call("POST", "/v1/events",
                 line("newest", "q", kT0 + 60'000, "engagement") + line("middle", "q", kT0 + 4500, "engagement"),
                 kAdminToken, "application/x-ndjson")
                .status,
            200);
  std::vector<std::string> rest;
  for (int pages = 0; !cursor.empty() && pages < 10; ++pages) {
    r = call("GET", "/v1/customers/q/events?limit=2&cursor=" + cursor);
    ASSERT_EQ(r.status, 200) << r.body;
    for (auto& id : ids_of(r.body, cursor)) rest.push_back(id);
  }
  EXPECT_EQ(rest, (std::vector<std::string>{"t3", "t2", "t1", "t0"}));

  // A cursor is opaque: anything but a next_cursor of this route is refused.
  for (const char* bad : {"2", "e1", "e1.zz.7431", "o1.clv.1.2.3.71", "e1.1f4.743"}) {
    EXPECT_EQ(call("GET", std::string("/v1/customers/q/events?cursor=") + bad).status, 400) << bad;
  }
}

}  // namespace
}  // namespace rapport::test
