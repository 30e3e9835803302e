// End-to-end tests of what POST /v1/events answers and stores (README "Events"):
//  - the answer's exact shape (errors, reason, error, event_id, counts by reason);
//  - a body that fails as a whole is a 400 (dead-lettered once);
//  - one request's cost is bounded: a 4-million-item body of rejects gets a
//    small answer, at most 100 dead letters (earlier ones survive, the rest
//    counted), and rapportd's peak RSS grows by less than the stated bound;
//  - no token value is ever stored, logged or answered, whatever the client
//    sends over TCP or HTTP;
//  - ?deadletter=false (replay) answers without storing, and needs the admin scope.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <filesystem>
#include <string>
#include <vector>

#include "tests/e2e/harness.h"
#include "tests/e2e/reliability.h"
#include "tests/support/memory_measure.h"

namespace rapport::test {
namespace {

using reliability::json_number;
using reliability::metric;

// Distinctive, so that any leak is found by a plain substring search of bytes.
constexpr char kIngestToken[] = "ia-ingest-4c8e1a7f3b9d2605";
constexpr char kReadToken[] = "ia-read-9e2b6d0f4a8c1357";
constexpr char kAdminToken[] = "ia-admin-1f5a9c3e7b0d4862";
const char* const kAllTokens[] = {kIngestToken, kReadToken, kAdminToken};

// README: "at most the first 100 rejections are listed, at most 100 are dead-lettered per request".
constexpr std::size_t kListed = 100;
constexpr std::size_t kDeadLettersPerRequest = 100;
// README: "one request costs at most 24 × max_body_bytes of memory".
constexpr double kMemoryFactor = 24;

std::string event(const std::string& id, const std::string& customer = "ia-c") {
  return R"({"event_id":")" + id + R"(","customer_id":")" + customer +
         R"(","ts":1700000000000,"type":"purchase","amount":2})";
}

std::string bearer(const std::string& token) { return "Authorization: Bearer " + token; }

Client::Response post(int port, const std::string& body, const std::string& type, const std::string& token,
                      const std::string& query = "") {
  return http(port, "POST", "/v1/events" + query, body, type, {bearer(token)});
}

class IngestAnswersTest : public ::testing::Test {
 protected:
  // A daemon with the three tokens; `extra_toml` is appended to the config.
  std::unique_ptr<Daemon> start(const std::string& extra_toml = "") {
    const std::string config = dir_.file("rapport.toml");  // outside the state dir
    write_file(config, std::string("[[auth.tokens]]\ntoken = \"") + kIngestToken + "\"\nscopes = [\"ingest\"]\n" +
                           "[[auth.tokens]]\ntoken = \"" + kReadToken + "\"\nscopes = [\"read\"]\n" +
                           "[[auth.tokens]]\ntoken = \"" + kAdminToken + "\"\nscopes = [\"admin\"]\n" + extra_toml);
    return std::make_unique<Daemon>(state(), std::vector<std::string>{"--config", config});
  }
  std::string state() { return dir_.file("state"); }

  // Every dead letter, oldest first (admin token).
  simdjson::dom::array dead_letters(int port) {
    last_listing_ = http(port, "GET", "/v1/deadletter?limit=1000", "", "application/json", {bearer(kAdminToken)});
    EXPECT_EQ(last_listing_.status, 200) << last_listing_.body;
    simdjson::dom::array letters;
    EXPECT_EQ(parser_.parse(last_listing_.body)["dead_letters"].get_array().get(letters), simdjson::SUCCESS)
        << last_listing_.body;
    return letters;
  }
  double metric_value(int port, const std::string& name) {
    return metric(http(port, "GET", "/metrics", "", "application/json", {bearer(kReadToken)}).body, name).value_or(-1);
  }

  TempDir dir_;
  simdjson::dom::parser parser_;
  Client::Response last_listing_;
};

// ---------------------------------------------------------------------------
// The answer

TEST_F(IngestAnswersTest, BatchAnswerListsReasonErrorAndEventIdAndCountsByReason) {
  auto d = start();
  const int port = d->http_port();
  const std::string body = "[" + event("a-1") + "," + event("a-1") + "," +
                           R"({"event_id":"a-3","customer_id":"ia-c","ts":1700000000000,"type":"purchase"},)" + "1," +
                           R"({"event_id":"a-5","customer_id":"ia-c","ts":1714564800,"type":"engagement"},)" +
                           R"({"event_id":"a-6","customer_id":"ia-c","ts":"2024-05-01T12:00:00","type":"engagement"}])";
  auto r = post(port, body, "application/json", kIngestToken);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body,
            R"J({"accepted":1,"duplicates":1,"errors":true,"rejected":[)J"
            R"J({"index":2,"reason":"missing_field","error":"missing field \"amount\"","event_id":"a-3"},)J"
            R"J({"index":3,"reason":"not_an_object","error":"expected a JSON object, got a number"},)J"
            R"J({"index":4,"reason":"bad_timestamp","error":"\"ts\" 1714564800 looks like epoch seconds; )J"
            R"J(an integer \"ts\" is epoch milliseconds (multiply by 1000)","event_id":"a-5"},)J"
            R"J({"index":5,"reason":"bad_timestamp","error":"\"ts\" \"2024-05-01T12:00:00\" has no UTC offset: )J"
            "add Z or \u00b1hh:mm\",\"event_id\":\"a-6\"}],"
            R"J("rejected_count":4,"rejected_by_reason":{"not_an_object":1,"missing_field":1,"bad_timestamp":2}})J");

  // No rejection: errors false, empty list and counts. NDJSON indexes are line indexes.
  const std::string none =
      R"J({"accepted":1,"duplicates":0,"errors":false,"rejected":[],"rejected_count":0,"rejected_by_reason":{}})J";
  r = post(port, event("a-7") + "\n", "application/x-ndjson", kIngestToken);
  EXPECT_EQ(r.body, none);
  r = post(port, event("a-8") + "\n\n{broken\n", "application/x-ndjson", kIngestToken);
  EXPECT_EQ(
      r.body,
      R"J({"accepted":1,"duplicates":0,"errors":true,"rejected":[{"index":2,"reason":"malformed_json",)J"
      R"J("error":"malformed JSON (truncated)"}],"rejected_count":1,"rejected_by_reason":{"malformed_json":1}})J");
  r = post(port, "", "application/x-ndjson", kIngestToken);
  EXPECT_EQ(
      r.body,
      R"J({"accepted":0,"duplicates":0,"errors":false,"rejected":[],"rejected_count":0,"rejected_by_reason":{}})J");
  // A single object that is not a valid event is an item of the batch, not a failed body.
  r = post(port, R"({"event_id":"a-9"})", "application/json", kIngestToken);
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json_number(r.body, "/rejected_count"), 1) << r.body;
}

TEST_F(IngestAnswersTest, BodyThatFailsAsAWholeIs400AndDeadLetteredOnce) {
  auto d = start();
  const int port = d->http_port();
  const struct {
    std::string body;
    std::string type;
    std::string answer;
  } cases[] = {
      {"[" + event("w-1") + ",", "application/json",
       R"J({"error":"malformed JSON (truncated)","reason":"malformed_json"})J"},
      {"not json", "application/json",
       R"J({"error":"invalid literal (expected true, false or null)","reason":"malformed_json"})J"},
      {"\"a string\"", "application/json",
       R"J({"error":"expected a JSON object, got a string","reason":"not_an_object"})J"},
      {"{\"specversion\":", "application/cloudevents+json",
       R"J({"error":"malformed JSON (truncated)","reason":"malformed_json"})J"},
      {"{}", "application/cloudevents-batch+json",
       R"J({"error":"expected a JSON array, got an object","reason":"not_an_object"})J"},
  };
  std::size_t n = 0;
  for (const auto& c : cases) {
    const auto r = post(port, c.body, c.type, kIngestToken);
    EXPECT_EQ(r.status, 400) << c.body;
    EXPECT_EQ(r.body, c.answer) << c.body;
    ++n;
    const simdjson::dom::array letters = dead_letters(port);
    ASSERT_EQ(letters.size(), n) << last_listing_.body;
    std::string_view payload;
    ASSERT_EQ(letters.at(n - 1)["payload"].get_string().get(payload), simdjson::SUCCESS);
    EXPECT_EQ(payload, c.body);
  }
  // Nothing of a failed body is ingested.
  EXPECT_EQ(http(port, "GET", "/v1/customers/ia-c", "", "application/json", {bearer(kReadToken)}).status, 404);
}

// ---------------------------------------------------------------------------
// Bounded cost: 12.2

std::size_t status_kib(pid_t pid, const std::string& field) {
  std::istringstream in(read_file("/proc/" + std::to_string(pid) + "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stoul(line.substr(field.size() + 1));
  }
  ADD_FAILURE() << field << " not in /proc/" << pid << "/status";
  return 0;
}

TEST_F(IngestAnswersTest, FourMillionRejectsCostABoundedAnswerMemoryAndDeadLetterShare) {
  measure_memory_without_asan_quarantine();
  constexpr std::size_t kMaxBody = 8u << 20;
  auto d = start("[ingest]\nmax_body_bytes = " + std::to_string(kMaxBody) + "\n");
  const int port = d->http_port();

  // Earlier dead letters, which must survive.
  std::string earlier;
  for (int i = 0; i < 50; ++i) earlier += "{earlier-" + std::to_string(i) + "\n";
  ASSERT_EQ(post(port, earlier, "application/x-ndjson", kIngestToken).status, 200);
  ASSERT_EQ(dead_letters(port).size(), 50u);

  constexpr std::size_t kItems = 4'000'000;
  std::string body = "[";
  body.reserve(2 * kItems + 1);
  for (std::size_t i = 0; i < kItems; ++i) body += i == 0 ? "1" : ",1";
  body += "]";
  ASSERT_LE(body.size(), kMaxBody);

  const std::size_t rss_before_kib = status_kib(d->pid(), "VmRSS");
  Client c(port);
  c.send("POST /v1/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + bearer(kIngestToken) +
         "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n");
  c.send(body);
  const auto r = c.read_response(std::chrono::seconds(120));
  ASSERT_TRUE(r.has_value()) << "no answer";
  const std::size_t peak_kib = status_kib(d->pid(), "VmHWM");  // the peak over the process's life
  ASSERT_EQ(r->status, 200) << r->body.substr(0, 300);

  // The answer: the first 100 listed, everything counted.
  EXPECT_LT(r->body.size(), 16u * 1024) << "the answer is " << r->body.size() << " bytes";
  simdjson::dom::element doc;
  ASSERT_EQ(parser_.parse(r->body).get(doc), simdjson::SUCCESS);
  simdjson::dom::array listed;
  ASSERT_EQ(doc["rejected"].get_array().get(listed), simdjson::SUCCESS);
  EXPECT_EQ(listed.size(), kListed);
  EXPECT_EQ(json_number(r->body, "/rejected/99/index"), 99);
  EXPECT_EQ(json_number(r->body, "/rejected_count"), static_cast<double>(kItems));
  EXPECT_EQ(json_number(r->body, "/rejected_by_reason/not_an_object"), static_cast<double>(kItems));
  EXPECT_EQ(json_number(r->body, "/accepted"), 0);

  // Memory: the stated bound per request.
  const double grown = (static_cast<double>(peak_kib) - static_cast<double>(rss_before_kib)) * 1024;
  EXPECT_LT(grown, kMemoryFactor * kMaxBody * kInstrumentedMemoryFactor)
      << "peak RSS grew by " << grown / (1 << 20) << " MiB";

  // Dead letters: the earlier 50 are still there, plus at most 100 of this request; the rest counted.
  const simdjson::dom::array letters = dead_letters(port);
  ASSERT_EQ(letters.size(), 50 + kDeadLettersPerRequest);
  std::string_view payload;
  ASSERT_EQ(letters.at(0)["payload"].get_string().get(payload), simdjson::SUCCESS);
  EXPECT_EQ(payload, "{earlier-0");
  EXPECT_EQ(metric_value(port, "rapport_dead_letters_dropped_total"),
            static_cast<double>(kItems - kDeadLettersPerRequest));
  EXPECT_EQ(metric_value(port, "rapport_events_rejected_total"), static_cast<double>(kItems + 50));
}

// The same bound holds when every item is a (minimal) valid event: decoded events cost more per body byte.
TEST_F(IngestAnswersTest, AFullBodyOfValidEventsStaysWithinTheSameBound) {
  measure_memory_without_asan_quarantine();
  constexpr std::size_t kMaxBody = 8u << 20;
  auto d = start("[ingest]\nmax_body_bytes = " + std::to_string(kMaxBody) + "\n");
  const int port = d->http_port();
  std::string body = "[";
  std::size_t n = 0;
  for (;;) {
    const std::string item =
        R"({"event_id":")" + std::to_string(n) + R"(","customer_id":"m","ts":100000000000,)" + R"("type":"social"})";
    if (body.size() + item.size() + 2 > kMaxBody) break;
    body += (n++ ? "," : "") + item;
  }
  body += "]";
  const std::size_t rss_before_kib = status_kib(d->pid(), "VmRSS");
  Client c(port);
  c.send("POST /v1/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + bearer(kIngestToken) +
         "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n");
  c.send(body);
  const auto r = c.read_response(std::chrono::seconds(300));
  ASSERT_TRUE(r.has_value()) << "no answer";
  const std::size_t peak_kib = status_kib(d->pid(), "VmHWM");
  ASSERT_EQ(r->status, 200) << r->body.substr(0, 300);
  EXPECT_EQ(json_number(r->body, "/accepted"), static_cast<double>(n)) << r->body.substr(0, 300);
  const double grown = (static_cast<double>(peak_kib) - static_cast<double>(rss_before_kib)) * 1024;
  EXPECT_LT(grown, kMemoryFactor * kMaxBody * kInstrumentedMemoryFactor)
      << "peak RSS grew by " << grown / (1 << 20) << " MiB for " << n << " events";
}

// ---------------------------------------------------------------------------
// Tokens: 12.4

TEST_F(IngestAnswersTest, NoTokenValueIsEverStoredLoggedOrAnswered) {
  auto d = start();
  const int port = d->http_port();
  std::vector<std::string> answers;
  std::size_t expect_redacted = 0;

  // Every way a token can end up in an item that is rejected (or accepted with an unknown field).
  std::vector<std::string> hostile;
  for (const char* t : kAllTokens) {
    const std::string token(t);
    hostile.push_back("{\"auth\":\"" + token + "\",}");
    hostile.push_back("{\"auth\":\"" + token + "\",\"customer_id\":\"z\"}");
    hostile.push_back("\xEF\xBB\xBF{\"auth\":\"" + token + "\"}");
    hostile.push_back("{\"auth\":\"" + token + "\"}");
    hostile.push_back("{ \"auth\" : \"" + token + "\"");
    hostile.push_back("{\"Authorization\":\"Bearer " + token + "\",\"event_id\":\"x\"}");
    hostile.push_back("{\"\\u0061uth\":\"" + token + "\"}");
  }
  std::string hostile_lines;
  for (const std::string& h : hostile) hostile_lines += h + "\n";
  // A valid event with an auth field: accepted, the unknown field is not kept.
  const std::string valid_with_auth = R"({"event_id":"tok-ok","customer_id":"tok-c","ts":1700000000000,)"
                                      R"("type":"engagement","auth":")" +
                                      std::string(kAdminToken) + "\"}";

  // TCP: after a good auth line, every hostile line.
  {
    Client c(d->tcp_port());
    c.send("{\"auth\":\"" + std::string(kIngestToken) + "\"}\n" + hostile_lines + valid_with_auth + "\n");
    const auto lines = c.read_until_ack(static_cast<int>(hostile.size()) + 1, std::chrono::seconds(30));
    for (const auto& l : lines) answers.push_back(l);
    ASSERT_FALSE(lines.empty());
    EXPECT_EQ(lines.back(), "{\"ack\":" + std::to_string(hostile.size() + 1) + "}");
    expect_redacted += hostile.size();
  }
  // TCP: hostile first lines (refused, nothing stored).
  for (const std::string& first : {hostile[0], hostile[2], hostile[4]}) {
    Client c(d->tcp_port());
    c.send(first + "\n" + hostile[1] + "\n");
    answers.push_back(c.read_all(std::chrono::seconds(10)));
  }
  // HTTP: NDJSON, JSON array, single objects, CloudEvents, and whole bodies that fail.
  auto keep = [&](const Client::Response& r) {
    answers.push_back(r.body);
    for (const auto& [name, value] : r.headers) answers.push_back(name + ": " + value);
    return r.status;
  };
  EXPECT_EQ(keep(post(port, hostile_lines, "application/x-ndjson", kIngestToken)), 200);
  expect_redacted += hostile.size();
  std::string array = "[";
  for (std::size_t i = 0; i < hostile.size(); i += 7) array += (i ? "," : "") + hostile[i + 1];
  array += "," + valid_with_auth + "]";
  EXPECT_EQ(keep(post(port, array, "application/json", kIngestToken)), 200);
  expect_redacted += 3;
  EXPECT_EQ(keep(post(port, hostile[1], "application/json", kIngestToken)), 200);
  ++expect_redacted;
  EXPECT_EQ(keep(post(port, hostile[0], "application/json", kIngestToken)), 400);  // malformed as a whole
  ++expect_redacted;
  EXPECT_EQ(keep(post(port, "[" + hostile[3] + ",", "application/json", kIngestToken)), 400);
  ++expect_redacted;
  EXPECT_EQ(keep(post(port, R"({"specversion":"1.0","auth":")" + std::string(kReadToken) + "\"}",
                      "application/cloudevents+json", kIngestToken)),
            200);
  ++expect_redacted;
  // Tokens in the wrong places of the request itself.
  EXPECT_EQ(keep(http(port, "POST", "/v1/events", hostile_lines, "application/x-ndjson",
                      {bearer(std::string(kIngestToken) + "x")})),
            401);
  EXPECT_EQ(keep(post(port, event("q-1"), "application/json", kReadToken)), 403);

  // Every hostile item is dead-lettered, redacted.
  const simdjson::dom::array letters = dead_letters(port);
  answers.push_back(last_listing_.body);
  EXPECT_EQ(letters.size(), expect_redacted) << last_listing_.body.substr(0, 2000);
  for (simdjson::dom::element letter : letters) {
    std::string_view payload;
    ASSERT_EQ(letter["payload"].get_string().get(payload), simdjson::SUCCESS);
    EXPECT_EQ(payload, "{\"auth\":\"<redacted>\"}");
  }
  answers.push_back(http(port, "GET", "/metrics", "", "application/json", {bearer(kReadToken)}).body);
  answers.push_back(http(port, "GET", "/v1/customers/tok-c/events", "", "application/json", {bearer(kReadToken)}).body);
  ASSERT_EQ(d->stop(SIGTERM), 0);
  const std::string log = d->log();

  for (const char* token : kAllTokens) {
    for (const std::string& a : answers) EXPECT_EQ(a.find(token), std::string::npos) << token << " answered: " << a;
    EXPECT_EQ(log.find(token), std::string::npos) << token << " in the log";
    for (const auto& entry : std::filesystem::recursive_directory_iterator(state())) {
      if (!entry.is_regular_file()) continue;
      EXPECT_EQ(read_file(entry.path().string()).find(token), std::string::npos)
          << token << " stored in " << entry.path();
    }
  }
}

// ---------------------------------------------------------------------------
// Replay: ?deadletter=false

TEST_F(IngestAnswersTest, DeadletterFalseAnswersWithoutStoringAndNeedsAdmin) {
  auto d = start();
  const int port = d->http_port();
  const std::string body = event("r-1") + "\n{bad-1\n";
  // The ingest scope is not enough; nothing is ingested.
  auto r = post(port, body, "application/x-ndjson", kIngestToken, "?deadletter=false");
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_NE(r.body.find("admin"), std::string::npos) << r.body;
  EXPECT_EQ(http(port, "GET", "/v1/customers/ia-c", "", "application/json", {bearer(kReadToken)}).status, 404);
  // ... and it is refused from the header alone: a 1 MiB body is announced, none of it sent.
  {
    Client c(port);
    c.send("POST /v1/events?deadletter=false HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
           std::string(kIngestToken) + "\r\nContent-Type: application/x-ndjson\r\nContent-Length: 1048576\r\n\r\n");
    const auto early = c.read_response();
    ASSERT_TRUE(early) << "no answer before the body";
    EXPECT_EQ(early->status, 403) << early->body;
  }

  // Admin: answered as usual, the event stored, the rejection not.
  r = post(port, body, "application/x-ndjson", kAdminToken, "?deadletter=false");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, R"J({"accepted":1,"duplicates":0,"errors":true,"rejected":[{"index":1,"reason":"malformed_json",)J"
                    R"J("error":"malformed JSON (truncated)"}],"rejected_count":1,)J"
                    R"J("rejected_by_reason":{"malformed_json":1}})J");
  EXPECT_EQ(dead_letters(port).size(), 0u);
  // Only rejects (nothing to store), and a body that fails as a whole: still not stored.
  r = post(port, "{bad-2\n", "application/x-ndjson", kAdminToken, "?deadletter=false");
  EXPECT_EQ(json_number(r.body, "/rejected_count"), 1) << r.body;
  r = post(port, "[1,", "application/json", kAdminToken, "?deadletter=false");
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(dead_letters(port).size(), 0u);
  EXPECT_EQ(metric_value(port, "rapport_dead_letters_dropped_total"), 0);

  // deadletter=true (the default) stores them, with any ingest token.
  r = post(port, "{bad-3\n", "application/x-ndjson", kIngestToken, "?deadletter=true");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(dead_letters(port).size(), 1u);

  // Unknown or malformed query parameters: 400, nothing stored.
  for (const std::string query :
       {"?foo=1", "?deadletter=no", "?deadletter", "?deadletter=false&deadletter=true", "?deadletter=true&x=y"}) {
    r = post(port, "{bad-4\n", "application/x-ndjson", kAdminToken, query);
    EXPECT_EQ(r.status, 400) << query << ": " << r.body;
  }
  EXPECT_EQ(dead_letters(port).size(), 1u);
}

TEST_F(IngestAnswersTest, DeadletterFalseNeedsNoTokenWhenNoneIsConfigured) {
  Daemon d(state());
  auto r = http(d.http_port(), "POST", "/v1/events?deadletter=false", "{bad\n", "application/x-ndjson");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json_number(r.body, "/rejected_count"), 1) << r.body;
  r = http(d.http_port(), "GET", "/v1/deadletter");
  EXPECT_EQ(r.body.find("{bad"), std::string::npos) << r.body;
}

}  // namespace
}  // namespace rapport::test
