// POST /v1/customers:batchGet end to end, against the real rapportd on loopback: the answer in request
// order (customers as GET /v1/customers/{id} gives them, the unknown ids under "missing"), every bad body
// refused with a 400 that says what is wrong, the count (1000) and body (1 MiB) bounds exactly, the body
// bound and the token checked from the header before any body byte is read, and rapport-loadgen's
// batchget mode counting customers and misses.
#include <gtest/gtest.h>
#include <simdjson.h>

#include "common/json_writer.h"
#include "daemon/routes.h"
#include "tests/e2e/harness.h"

namespace rapport::test {
namespace {

constexpr char kIngestToken[] = "batch-ingest-5d2a8c1e7f3b9046";
constexpr char kReadToken[] = "batch-read-2e9f4b7a1c6d8035";
constexpr std::size_t kMaxBodyBytes = 1 << 20;

std::string bearer(const std::string& token) { return "Authorization: Bearer " + token; }

std::string purchase(const std::string& event_id, const std::string& customer, double amount) {
  JsonWriter w;
  w.begin_object()
      .field("event_id", event_id)
      .field("customer_id", customer)
      .field("ts", "2024-05-01T12:00:00Z")
      .field("type", "purchase")
      .field("amount", amount)
      .end_object();
  return w.take();
}

std::string ids_body(const std::vector<std::string>& ids) {
  JsonWriter w;
  w.begin_object().key("ids").begin_array();
  for (const auto& id : ids) w.value(id);
  w.end_array().end_object();
  return w.take();
}

class BatchGet : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string config = dir_.file("rapport.toml");
    write_file(config, std::string("[[auth.tokens]]\ntoken = \"") + kIngestToken + "\"\nscopes = [\"ingest\"]\n" +
                           "[[auth.tokens]]\ntoken = \"" + kReadToken + "\"\nscopes = [\"read\"]\n");
    daemon_ = std::make_unique<Daemon>(dir_.file("state"), std::vector<std::string>{"--config", config});
    std::string events;
    // "a/b c" needs escaping in a path, none in JSON; "q\"x" the other way round.
    const std::vector<std::pair<std::string, double>> customers = {
        {"alpha", 10}, {"beta", 20}, {"a/b c", 30}, {"q\"x", 40}};
    int n = 0;
    for (const auto& [id, amount] : customers) events += purchase("e" + std::to_string(n++), id, amount) + "\n";
    const auto r = http(port(), "POST", "/v1/events", events, "application/x-ndjson", {bearer(kIngestToken)});
    ASSERT_EQ(r.status, 200) << r.body;
  }
  int port() const { return daemon_->http_port(); }
  Client::Response post(const std::string& body) {
    return http(port(), "POST", "/v1/customers:batchGet", body, "application/json", {bearer(kReadToken)});
  }
  // Expects a 400 whose error message contains `says`.
  void expect_refused(const std::string& body, const std::string& says) {
    const auto r = post(body);
    EXPECT_EQ(r.status, 400) << body.substr(0, 100) << ": " << r.body;
    simdjson::dom::parser parser;
    std::string_view error;
    ASSERT_EQ(parser.parse(r.body)["error"].get_string().get(error), simdjson::SUCCESS) << r.body;
    EXPECT_NE(error.find(says), std::string_view::npos) << body.substr(0, 100) << ": " << error;
  }

  TempDir dir_;
  std::unique_ptr<Daemon> daemon_;
};

TEST_F(BatchGet, AnswersInRequestOrderWithTheSameObjectsAsGet) {
  const std::vector<std::string> asked = {"beta", "nobody", "q\"x", "alpha", "ghost/1", "a/b c", "beta"};
  const auto r = post(ids_body(asked));
  ASSERT_EQ(r.status, 200) << r.body;
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  ASSERT_EQ(parser.parse(r.body).get(doc), simdjson::SUCCESS) << r.body;
  simdjson::dom::array customers, missing;
  ASSERT_EQ(doc["customers"].get_array().get(customers), simdjson::SUCCESS) << r.body;
  ASSERT_EQ(doc["missing"].get_array().get(missing), simdjson::SUCCESS) << r.body;

  const std::vector<std::pair<std::string, double>> want = {
      {"beta", 20}, {"q\"x", 40}, {"alpha", 10}, {"a/b c", 30}, {"beta", 20}};
  ASSERT_EQ(customers.size(), want.size()) << r.body;
  std::size_t i = 0;
  for (simdjson::dom::element c : customers) {
    const auto& [id, revenue] = want[i++];
    EXPECT_EQ(std::string_view(c["customer_id"].get_string()), id) << r.body;
    EXPECT_EQ(double(c.at_pointer("/value/revenue").get_double()), revenue) << r.body;
    // The same members, in the same order, as the customer's own GET.
    const auto single = http(port(), "GET", customer_target(id), "", "", {bearer(kReadToken)});
    ASSERT_EQ(single.status, 200) << single.body;
    simdjson::dom::parser single_parser;
    simdjson::dom::object object;
    ASSERT_EQ(single_parser.parse(single.body).get_object().get(object), simdjson::SUCCESS) << single.body;
    std::vector<std::string_view> keys, batch_keys;
    for (const auto field : object) keys.push_back(field.key);
    for (const auto field : c.get_object()) batch_keys.push_back(field.key);
    EXPECT_EQ(batch_keys, keys) << id;
  }
  std::vector<std::string_view> missing_ids;
  for (simdjson::dom::element m : missing) missing_ids.push_back(m.get_string());
  EXPECT_EQ(missing_ids, (std::vector<std::string_view>{"nobody", "ghost/1"}));

  // No ids: an empty answer.
  const auto empty = post(R"({"ids":[]})");
  EXPECT_EQ(empty.status, 200) << empty.body;
  EXPECT_EQ(empty.body, R"({"customers":[],"missing":[]})");
}

TEST_F(BatchGet, BadBodiesGetA400ThatSaysWhatIsWrong) {
  expect_refused("", "not JSON");
  expect_refused("ids=alpha", "not JSON");
  expect_refused(R"({"ids":["alpha"])", "not JSON");
  expect_refused(R"(["alpha"])", "must be a JSON object");
  expect_refused(R"({"id":["alpha"]})", "unknown field \"id\"; the only field is \"ids\"");
  expect_refused(R"({"ids":["alpha"],"explain":true})", "unknown field \"explain\"");
  expect_refused(R"({})", "needs an array \"ids\"");
  expect_refused(R"({"ids":"alpha"})", "needs an array \"ids\"");
  expect_refused(R"({"ids":["alpha",3]})", "ids[1] must be a string of 1 to 128 bytes");
  expect_refused(R"({"ids":["alpha",null]})", "ids[1]");
  expect_refused(R"({"ids":[""]})", "ids[0] must be a string of 1 to 128 bytes");
  // A bad id anywhere refuses the whole request, even after good ones; 128 bytes is still an id.
  expect_refused(ids_body({"alpha", "beta", std::string(129, 'x')}), "ids[2]");
  EXPECT_EQ(post(ids_body({std::string(128, 'x')})).status, 200);
}

TEST_F(BatchGet, AtMost1000Ids) {
  std::vector<std::string> ids;
  for (int i = 0; i < 1000; ++i) ids.push_back("id-" + std::to_string(i));
  ids[500] = "alpha";
  const auto r = post(ids_body(ids));
  ASSERT_EQ(r.status, 200) << r.body.substr(0, 200);
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  ASSERT_EQ(parser.parse(r.body).get(doc), simdjson::SUCCESS);
  EXPECT_EQ(doc["customers"].get_array().size(), 1u);
  EXPECT_EQ(doc["missing"].get_array().size(), 999u);

  ids.push_back("one-too-many");
  expect_refused(ids_body(ids), "\"ids\" has 1001 entries, more than 1000");
}

// The body bound is the route's own (1 MiB, below the front's 16 MiB): exactly 1 MiB is served, one byte more
// is refused; an announced larger body from the header, before any of it is read.
TEST_F(BatchGet, BodyOfMoreThan1MiBIsRefused) {
  const std::string ids = R"({"ids":["alpha"]})";
  std::string exact = ids + std::string(kMaxBodyBytes - ids.size(), ' ');
  EXPECT_EQ(post(exact).status, 200);
  const auto over = post(exact + " ");
  EXPECT_EQ(over.status, 413) << over.body;

  Client c(port());
  c.send("POST /v1/customers:batchGet HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + bearer(kReadToken) +
         "\r\nContent-Length: " + std::to_string(kMaxBodyBytes + 1) + "\r\n\r\n");
  const auto r = c.read_response();
  ASSERT_TRUE(r.has_value()) << "no answer before the body";
  EXPECT_EQ(r->status, 413) << r->body;
  EXPECT_NE(r->body.find("1048576"), std::string::npos) << r->body;
  EXPECT_TRUE(c.closed_by_peer()) << "the announced body is never read: the connection closes";

  // Chunked, so nothing is announced: refused once the bound is passed.
  Client chunked(port());
  const std::string chunk(kMaxBodyBytes / 4, ' ');
  std::ostringstream size;
  size << std::hex << chunk.size();
  std::string request = "POST /v1/customers:batchGet HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
                        bearer(kReadToken) + "\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 5; ++i) request += size.str() + "\r\n" + chunk + "\r\n";
  request += "0\r\n\r\n";
  static_cast<LoopbackClient&>(chunked).send(request);  // the server may stop reading part way
  const auto rc = chunked.read_response();
  ASSERT_TRUE(rc.has_value());
  EXPECT_EQ(rc->status, 413) << rc->body;
}

// No token, a wrong one or one without the read scope: answered from the header, the body never read.
TEST_F(BatchGet, TokenAndScopeAreCheckedBeforeTheBody) {
  for (const auto& [auth, status] : std::vector<std::pair<std::string, int>>{
           {"", 401}, {bearer("batch-wrong-00000000000000") + "\r\n", 401}, {bearer(kIngestToken) + "\r\n", 403}}) {
    Client c(port());
    c.send("POST /v1/customers:batchGet HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + auth +
           "Content-Length: 1000\r\n\r\n");
    const auto r = c.read_response();
    ASSERT_TRUE(r.has_value()) << auth << ": no answer before the body";
    EXPECT_EQ(r->status, status) << auth << ": " << r->body;
    EXPECT_EQ(r->headers.count("www-authenticate"), 1u) << auth;
    EXPECT_TRUE(c.closed_by_peer()) << auth << ": the announced body is never read: the connection closes";
  }
}

// rapport-loadgen --mode batchget: every id asked is answered as a customer or a miss; the count is customers.
TEST_F(BatchGet, LoadgenBatchGetModeCountsCustomersAndMisses) {
  const std::string file = dir_.file("events.ndjson");
  // 3 known customers and one unknown, cycled: 50 ids asked in requests of 7.
  write_file(file, purchase("x1", "alpha", 1) + "\n" + purchase("x2", "beta", 1) + "\n" + purchase("x3", "nobody", 1) +
                       "\n" + purchase("x4", "a/b c", 1) + "\n");
  const auto r = run_command({RAPPORT_LOADGEN, "--mode", "batchget", "--http", "127.0.0.1:" + std::to_string(port()),
                              "--file", file, "-n", "4", "-c", "1", "--batch", "7", "--requests", "50", "--token",
                              kReadToken, "--json", "-q"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  ASSERT_EQ(parser.parse(r.out).get(doc), simdjson::SUCCESS) << r.out;
  EXPECT_EQ(std::uint64_t(doc["events"].get_uint64()), 50u) << r.out;
  EXPECT_EQ(std::uint64_t(doc["misses"].get_uint64()), 12u) << r.out;   // ids 2, 6, ..., 46 of 0..49
  EXPECT_EQ(std::uint64_t(doc["requests"].get_uint64()), 8u) << r.out;  // 7 x 7 + 1
  EXPECT_EQ(std::uint64_t(doc["errors"].get_uint64()), 0u) << r.out;

  // More than 1000 ids per request is refused before anything is sent.
  const auto too_many =
      run_command({RAPPORT_LOADGEN, "--mode", "batchget", "--http", "127.0.0.1:" + std::to_string(port()), "--file",
                   file, "-n", "4", "--batch", "1001", "-q"});
  EXPECT_EQ(too_many.exit_code, 2) << too_many.err;
  EXPECT_NE(too_many.err.find("at most 1000 ids"), std::string::npos) << too_many.err;
}

// rapportctl get with several ids: one line per known customer in the order given, the unknown ones named on
// stderr and exit 1; with --url in one POST /v1/customers:batchGet (the route's request counter moves by one).
TEST_F(BatchGet, RapportctlGetTakesSeveralIds) {
  const auto batch_requests = [&] {
    double n = 0;
    for (const std::string& line : lines_of(http(port(), "GET", "/metrics").body)) {
      if (line.rfind("rapport_http_requests_total{", 0) == 0 &&
          line.find("route=\"customers_batch_get\"") != std::string::npos) {
        n += std::stod(line.substr(line.rfind(' ') + 1));
      }
    }
    return n;
  };
  const std::string url = "http://127.0.0.1:" + std::to_string(port());
  const double before = batch_requests();
  const std::vector<std::vector<std::string>> modes = {{"--url", url, "--token", kReadToken},
                                                       {"--state-dir", dir_.file("state")}};
  for (const auto& mode : modes) {
    std::vector<std::string> argv = {binary("rapportctl"), "get", "a/b c", "nobody", "alpha", "q\"x"};
    argv.insert(argv.end(), mode.begin(), mode.end());
    const auto r = run_command(argv);
    EXPECT_EQ(r.exit_code, 1) << mode[0] << ": " << r.err;
    EXPECT_NE(r.err.find("unknown customer: nobody"), std::string::npos) << mode[0] << ": " << r.err;
    const auto lines = lines_of(r.out);
    ASSERT_EQ(lines.size(), 3u) << mode[0] << ": " << r.out;
    const std::vector<std::pair<std::string, double>> want = {{"a/b c", 30}, {"alpha", 10}, {"q\"x", 40}};
    for (std::size_t i = 0; i < want.size(); ++i) {
      simdjson::dom::parser parser;
      simdjson::dom::element doc;
      ASSERT_EQ(parser.parse(lines[i]).get(doc), simdjson::SUCCESS) << lines[i];
      EXPECT_EQ(std::string_view(doc["customer_id"].get_string()), want[i].first) << mode[0];
      EXPECT_EQ(double(doc.at_pointer("/value/revenue").get_double()), want[i].second) << mode[0];
    }
    // All known: exit 0.
    argv = {binary("rapportctl"), "get", "beta", "alpha"};
    argv.insert(argv.end(), mode.begin(), mode.end());
    const auto all = run_command(argv);
    EXPECT_EQ(all.exit_code, 0) << mode[0] << ": " << all.err;
    EXPECT_EQ(lines_of(all.out).size(), 2u) << all.out;
  }
  EXPECT_EQ(batch_requests() - before, 2) << "one batchGet per rapportctl get --url with several ids";
}

}  // namespace
}  // namespace rapport::test
