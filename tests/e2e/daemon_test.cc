// End-to-end tests of rapportd: the real binary on loopback port 0, real sockets.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <atomic>
#include <set>

#include "tests/e2e/harness.h"
#include "tests/e2e/reliability.h"

namespace rapport::test {
namespace {

std::string event(const std::string& id, const std::string& customer, const std::string& type = "engagement",
                  const std::string& extra = "") {
  return R"({"event_id":")" + id + R"(","customer_id":")" + customer + R"(","ts":1700000000000,"type":")" + type +
         "\"" + extra + "}";
}

std::string purchase(const std::string& id, const std::string& customer, double amount = 1) {
  return event(id, customer, "purchase", ",\"amount\":" + std::to_string(amount));
}

simdjson::dom::element parse(simdjson::dom::parser& parser, const std::string& json) {
  simdjson::dom::element doc;
  if (parser.parse(json).get(doc) != simdjson::SUCCESS) throw std::runtime_error("not JSON: " + json);
  return doc;
}

double number_at(const std::string& json, const char* pointer) {
  simdjson::dom::parser parser;
  double v = 0;
  if (parse(parser, json).at_pointer(pointer).get_double().get(v) != simdjson::SUCCESS) {
    throw std::runtime_error(std::string("no number at ") + pointer + " in " + json);
  }
  return v;
}

class DaemonTest : public ::testing::Test {
 protected:
  TempDir dir_;
};

TEST_F(DaemonTest, TcpAcksEveryLineAndReportsBadLinesMidStream) {
  Daemon d(dir_.file("state"));
  Client c(d.tcp_port());
  c.send(event("1", "tcp-a") + "\n" + event("2", "tcp-a") + "\n{\"event_id\": broken\n\n" + event("3", "tcp-a") + "\n" +
         event("4", "tcp-a", "teleport") + "\n" + event("5", "tcp-a") + "\n");
  const auto lines = c.read_until_ack(7);
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines.back(), "{\"ack\":7}");
  int errors = 0;
  for (const auto& l : lines) {
    if (l.find("\"error\"") == std::string::npos) continue;
    ++errors;
    EXPECT_TRUE(l.rfind("{\"line\":3,", 0) == 0 || l.rfind("{\"line\":6,", 0) == 0) << l;
  }
  EXPECT_EQ(errors, 2);
  const auto r = http(d.http_port(), "GET", "/v1/customers/tcp-a");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(number_at(r.body, "/events"), 4);
  // The connection is still usable after bad lines.
  c.send(event("6", "tcp-a") + "\n");
  EXPECT_EQ(c.read_until_ack(8).back(), "{\"ack\":8}");
}

TEST_F(DaemonTest, HttpIngestAcceptsEveryContentType) {
  Daemon d(dir_.file("state"));
  const int port = d.http_port();
  auto r = http(port, "POST", "/v1/events", event("n1", "h") + "\n" + event("n2", "h") + "\n", "application/x-ndjson");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(number_at(r.body, "/accepted"), 2);
  r = http(port, "POST", "/v1/events", "[" + event("j1", "h") + "," + event("j2", "h") + "]", "application/json");
  EXPECT_EQ(number_at(r.body, "/accepted"), 2) << r.body;
  r = http(port, "POST", "/v1/events", event("j3", "h"), "application/json; charset=utf-8");
  EXPECT_EQ(number_at(r.body, "/accepted"), 1) << r.body;
  const std::string ce = R"({"specversion":"1.0","id":"ce1","source":"/connectors/chat","type":"com.acme.support",)"
                         R"("subject":"h","time":"2023-11-14T22:13:20Z","data":{"sentiment":0.5}})";
  r = http(port, "POST", "/v1/events", ce, "application/cloudevents+json");
  EXPECT_EQ(number_at(r.body, "/accepted"), 1) << r.body;
  std::string batch = ce;
  batch.replace(batch.find("ce1"), 3, "ce2");
  r = http(port, "POST", "/v1/events", "[" + batch + "]", "application/cloudevents-batch+json");
  EXPECT_EQ(number_at(r.body, "/accepted"), 1) << r.body;
  r = http(port, "POST", "/v1/events", event("x", "h"), "text/plain");
  EXPECT_EQ(r.status, 415) << r.body;
  r = http(port, "POST", "/v1/events", event("n3", "h") + "\nnope\n" + event("n4", "h") + "\n", "application/x-ndjson");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(number_at(r.body, "/accepted"), 2) << r.body;
  EXPECT_EQ(number_at(r.body, "/rejected/0/index"), 1) << r.body;

  r = http(port, "GET", "/v1/customers/h");
  EXPECT_EQ(number_at(r.body, "/events"), 9) << r.body;
}

TEST_F(DaemonTest, DuplicatesAreAcknowledgedAndChangeNothing) {
  Daemon d(dir_.file("state"));
  auto r = http(d.http_port(), "POST", "/v1/events", purchase("p1", "dup", 10), "application/json");
  EXPECT_EQ(number_at(r.body, "/accepted"), 1);
  r = http(d.http_port(), "POST", "/v1/events", purchase("p1", "dup", 10), "application/json");
  EXPECT_EQ(number_at(r.body, "/accepted"), 0) << r.body;
  EXPECT_EQ(number_at(r.body, "/duplicates"), 1) << r.body;
  r = http(d.http_port(), "GET", "/v1/customers/dup");
  EXPECT_EQ(number_at(r.body, "/value/revenue"), 10) << r.body;
}

TEST_F(DaemonTest, QueriesCustomerBatchAndTimeline) {
  Daemon d(dir_.file("state"));
  std::string body;
  for (int i = 0; i < 5; ++i) {
    body += R"({"event_id":"t)" + std::to_string(i) + R"(","customer_id":"q","ts":)" +
            std::to_string(1700000000000 + i * 1000) + R"(,"type":"purchase","amount":2})" + "\n";
  }
  body += event("o1", "other") + "\n";
  ASSERT_EQ(http(d.http_port(), "POST", "/v1/events", body, "application/x-ndjson").status, 200);

  EXPECT_EQ(http(d.http_port(), "GET", "/v1/customers/nobody").status, 404);
  auto r = http(d.http_port(), "GET", "/v1/customers/q?explain=true");
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("\"components\""), std::string::npos) << r.body;
  EXPECT_EQ(number_at(r.body, "/value/revenue"), 10);

  r = http(d.http_port(), "POST", "/v1/customers:batchGet", R"({"ids":["q","other","nobody"]})");
  ASSERT_EQ(r.status, 200) << r.body;
  simdjson::dom::parser parser;
  auto doc = parse(parser, r.body);
  EXPECT_EQ(doc["customers"].get_array().size(), 2u);
  EXPECT_EQ(std::string_view(doc["missing"].at(0).get_string()), "nobody");
  EXPECT_EQ(http(d.http_port(), "POST", "/v1/customers:batchGet", "{\"ids\":3}").status, 400);

  r = http(d.http_port(), "GET", "/v1/customers/q/events?limit=2");
  ASSERT_EQ(r.status, 200) << r.body;
  auto page = parse(parser, r.body);
  EXPECT_EQ(std::string_view(page["events"].at(0)["event_id"].get_string()), "t4");  // newest first
  EXPECT_EQ(std::string_view(page["events"].at(1)["event_id"].get_string()), "t3");
  const std::string cursor(std::string_view(page["next_cursor"].get_string()));
  r = http(d.http_port(), "GET", "/v1/customers/q/events?limit=10&cursor=" + cursor);
  auto rest = parse(parser, r.body);
  EXPECT_EQ(rest["events"].get_array().size(), 3u);
  EXPECT_TRUE(rest["next_cursor"].is_null());
  EXPECT_EQ(http(d.http_port(), "GET", "/v1/customers/q/events?limit=zero").status, 400);
  EXPECT_EQ(http(d.http_port(), "GET", "/v1/nothing").status, 404);
  EXPECT_EQ(http(d.http_port(), "PUT", "/v1/customers/q").status, 405);
  EXPECT_EQ(http(d.http_port(), "GET", "/healthz").status, 200);
  EXPECT_EQ(http(d.http_port(), "GET", "/readyz").status, 200);
}

TEST_F(DaemonTest, DeadLettersAreListedCountedAndRemovedOverHttp) {
  Daemon d(dir_.file("state"));
  const int port = d.http_port();
  auto r = http(port, "POST", "/v1/events", "{broken\n" + purchase("e1", "dl", 5) + "\n[]\n", "application/x-ndjson");
  ASSERT_EQ(r.status, 200) << r.body;
  const auto count = [&] { return reliability::metric(http(port, "GET", "/metrics").body, "rapport_dead_letters"); };
  EXPECT_EQ(count(), 2.0);
  r = http(port, "GET", "/v1/deadletter");
  ASSERT_EQ(r.status, 200) << r.body;
  const auto first = static_cast<std::uint64_t>(number_at(r.body, "/dead_letters/0/sequence"));
  const auto second = static_cast<std::uint64_t>(number_at(r.body, "/dead_letters/1/sequence"));

  // Removed by sequence: a sequence that is not there counts nothing.
  const std::string json = "application/json";
  r = http(port, "POST", "/v1/deadletter:remove", "{\"sequences\":[" + std::to_string(first) + ",987654]}", json);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(number_at(r.body, "/removed"), 1) << r.body;
  r = http(port, "GET", "/v1/deadletter");
  EXPECT_EQ(number_at(r.body, "/dead_letters/0/sequence"), static_cast<double>(second)) << r.body;
  EXPECT_EQ(r.body.find("{broken"), std::string::npos) << r.body;
  EXPECT_EQ(count(), 1.0);

  // Bad requests change nothing.
  for (const std::string& bad : {std::string("not json"), std::string("{}"), std::string("{\"sequences\":[]}"),
                                 std::string("{\"sequences\":[-1]}"), std::string("{\"sequences\":[\"1\"]}"),
                                 std::string("{\"sequences\":7}")}) {
    r = http(port, "POST", "/v1/deadletter:remove", bad, json);
    EXPECT_EQ(r.status, 400) << bad << " -> " << r.body;
    EXPECT_NE(r.body.find("sequences"), std::string::npos) << r.body;
  }
  std::string too_many = "{\"sequences\":[";
  for (int i = 0; i < 1001; ++i) too_many += (i ? "," : "") + std::to_string(second);
  EXPECT_EQ(http(port, "POST", "/v1/deadletter:remove", too_many + "]}", json).status, 400);
  EXPECT_EQ(http(port, "GET", "/v1/deadletter:remove").status, 405);
  EXPECT_EQ(count(), 1.0);
}

TEST_F(DaemonTest, ErasureRemovesStateAndLaterEventsStartFresh) {
  Daemon d(dir_.file("state"));
  ASSERT_EQ(http(d.http_port(), "POST", "/v1/events", purchase("e1", "gone", 5), "application/json").status, 200);
  auto r = http(d.http_port(), "DELETE", "/v1/customers/gone");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(http(d.http_port(), "GET", "/v1/customers/gone").status, 404);
  EXPECT_EQ(http(d.http_port(), "DELETE", "/v1/customers/gone").status, 404);
  // The same event id is new again after erasure.
  r = http(d.http_port(), "POST", "/v1/events", purchase("e1", "gone", 7), "application/json");
  EXPECT_EQ(number_at(r.body, "/accepted"), 1) << r.body;
  r = http(d.http_port(), "GET", "/v1/customers/gone");
  EXPECT_EQ(number_at(r.body, "/value/revenue"), 7) << r.body;
}

TEST_F(DaemonTest, AuthRejectsMissingWrongAndUnderScopedTokens) {
  const std::string config = dir_.file("rapport.toml");
  write_file(config, R"(
[[auth.tokens]]
token = "ingest-token-0123456789"
scopes = ["ingest"]
[[auth.tokens]]
token = "read-token-0123456789ab"
scopes = ["read"]
[[auth.tokens]]
token = "admin-token-0123456789a"
scopes = ["admin"]
)");
  Daemon d(dir_.file("state"), {"--config", config});
  const int port = d.http_port();
  auto r = http(port, "POST", "/v1/events", event("a1", "sec"));
  EXPECT_EQ(r.status, 401);
  EXPECT_NE(r.headers["www-authenticate"].find("Bearer"), std::string::npos);
  r = http(port, "POST", "/v1/events", event("a1", "sec"), "application/json",
           {"Authorization: Bearer wrong-token-000000000"});
  EXPECT_EQ(r.status, 401);
  r = http(port, "POST", "/v1/events", event("a1", "sec"), "application/json",
           {"Authorization: Bearer read-token-0123456789ab"});
  EXPECT_EQ(r.status, 403);
  r = http(port, "POST", "/v1/events", event("a1", "sec"), "application/json",
           {"Authorization: Bearer ingest-token-0123456789"});
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(http(port, "GET", "/v1/customers/sec").status, 401);
  EXPECT_EQ(http(port, "GET", "/v1/customers/sec", "", "", {"Authorization: Bearer ingest-token-0123456789"}).status,
            403);
  EXPECT_EQ(http(port, "GET", "/v1/customers/sec", "", "", {"Authorization: Bearer read-token-0123456789ab"}).status,
            200);
  EXPECT_EQ(http(port, "DELETE", "/v1/customers/sec", "", "", {"Authorization: Bearer read-token-0123456789ab"}).status,
            403);
  EXPECT_EQ(http(port, "DELETE", "/v1/customers/sec", "", "", {"Authorization: Bearer admin-token-0123456789a"}).status,
            200);

  Client bad(d.tcp_port());
  bad.send(event("t1", "sec") + "\n");
  EXPECT_NE(bad.read_all().find("unauthorized"), std::string::npos);
  Client good(d.tcp_port());
  good.send("{\"auth\":\"ingest-token-0123456789\"}\n" + event("t2", "sec") + "\n");
  EXPECT_EQ(good.read_line().value_or(""), "{\"auth\":\"ok\"}");
  EXPECT_EQ(good.read_until_ack(1).back(), "{\"ack\":1}");
  // Tokens never appear in the log.
  EXPECT_EQ(d.log().find("0123456789"), std::string::npos) << d.log();
}

TEST_F(DaemonTest, NonLoopbackWithoutTokensIsRefusedAtStart) {
  const auto r = run_command(
      {binary("rapportd"), "--http", "0.0.0.0:0", "--tcp", "127.0.0.1:0", "--state-dir", dir_.file("state")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("without authentication"), std::string::npos) << r.err;
}

TEST_F(DaemonTest, BodyHeaderAndLineLimitsAnswerCleanly) {
  const std::string config = dir_.file("rapport.toml");
  write_file(config, "[ingest]\nmax_body_bytes = 1024\nmax_line_bytes = 512\n");
  Daemon d(dir_.file("state"), {"--config", config});
  auto r = http(d.http_port(), "POST", "/v1/events", std::string(4096, ' '), "application/x-ndjson");
  EXPECT_EQ(r.status, 413);
  r = http(d.http_port(), "GET", "/healthz", "", "", {"X-Big: " + std::string(9000, 'x')});
  EXPECT_EQ(r.status, 431);
  Client c(d.tcp_port());
  c.send(std::string(2000, 'x') + "\n" + event("ok", "lim") + "\n");
  const auto lines = c.read_until_ack(2);
  ASSERT_GE(lines.size(), 2u);
  EXPECT_EQ(lines.front().rfind("{\"line\":1,", 0), 0u) << lines.front();
  EXPECT_EQ(number_at(http(d.http_port(), "GET", "/v1/customers/lim").body, "/events"), 1);
}

TEST_F(DaemonTest, RestartKeepsData) {
  {
    Daemon d(dir_.file("state"));
    ASSERT_EQ(http(d.http_port(), "POST", "/v1/events", purchase("r1", "keep", 3), "application/json").status, 200);
    EXPECT_EQ(d.stop(SIGTERM), 0);
  }
  Daemon again(dir_.file("state"));
  const auto r = http(again.http_port(), "GET", "/v1/customers/keep");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(number_at(r.body, "/value/revenue"), 3);
}

TEST_F(DaemonTest, SigtermDrainsAndAcksWhatWasRead) {
  Daemon d(dir_.file("state"));
  Client c(d.tcp_port());
  std::string batch;
  for (int i = 0; i < 20000; ++i) batch += purchase("s" + std::to_string(i), "drain" + std::to_string(i % 10)) + "\n";
  c.send(batch);
  // Wait for the first ack so the daemon is known to be reading, then ask it to stop.
  ASSERT_TRUE(c.read_line().has_value());
  d.signal(SIGTERM);
  int last_ack = 0;
  while (auto line = c.read_line()) {
    if (line->rfind("{\"ack\":", 0) == 0) last_ack = std::stoi(line->substr(7));
  }
  EXPECT_EQ(d.stop(SIGTERM), 0) << d.log();
  EXPECT_GT(last_ack, 0);
  Daemon again(dir_.file("state"));
  double stored = 0;
  for (int k = 0; k < 10; ++k) {
    const auto r = http(again.http_port(), "GET", "/v1/customers/drain" + std::to_string(k));
    if (r.status == 200) stored += number_at(r.body, "/value/revenue");
  }
  // Every acknowledged line is stored (amount 1 each); nothing beyond what was read.
  EXPECT_GE(stored, last_ack);
  EXPECT_LE(stored, 20000);
}

TEST_F(DaemonTest, KillNineUnderLoadLosesNoAcknowledgedEvent) {
  Daemon d(dir_.file("state"));
  constexpr int kCustomers = 20;
  constexpr int kEvents = 60000;
  std::atomic<int> acked_line{0};  // written by the reader thread, read by the sender
  {
    Client c(d.tcp_port());
    std::atomic<bool> done{false};
    std::thread reader([&] {
      while (auto line = c.read_line(std::chrono::seconds(5))) {
        if (line->rfind("{\"ack\":", 0) == 0) acked_line = std::stoi(line->substr(7));
        if (done) break;
      }
    });
    std::string chunk;
    try {
      for (int i = 0; i < kEvents; ++i) {
        chunk += purchase("k" + std::to_string(i), "kill" + std::to_string(i % kCustomers)) + "\n";
        if (chunk.size() > 64 * 1024) {
          c.send(chunk);
          chunk.clear();
          if (i > kEvents / 3 && acked_line > 0) break;
        }
      }
    } catch (const std::exception&) {
    }
    d.stop(SIGKILL);
    done = true;
    reader.join();
  }
  const int acked = acked_line.load();
  ASSERT_GT(acked, 0);
  d.restart();
  // Acked lines are exactly lines 1..acked, i.e. events k0..k(acked-1); each adds 1 to revenue.
  double stored = 0;
  for (int k = 0; k < kCustomers; ++k) {
    const auto r = http(d.http_port(), "GET", "/v1/customers/kill" + std::to_string(k));
    if (r.status == 200) stored += number_at(r.body, "/value/revenue");
  }
  EXPECT_GE(stored, acked);
  // Resending everything (at-least-once) converges to exactly one copy of each event.
  Client c(d.tcp_port());
  std::string all;
  for (int i = 0; i < kEvents; ++i)
    all += purchase("k" + std::to_string(i), "kill" + std::to_string(i % kCustomers)) + "\n";
  c.send(all);
  c.read_until_ack(kEvents);
  stored = 0;
  for (int k = 0; k < kCustomers; ++k) {
    stored += number_at(http(d.http_port(), "GET", "/v1/customers/kill" + std::to_string(k)).body, "/value/revenue");
  }
  EXPECT_EQ(stored, kEvents);
}

TEST_F(DaemonTest, MetricsPassPromtoolAndCountIngest) {
  Daemon d(dir_.file("state"));
  ASSERT_EQ(http(d.http_port(), "POST", "/v1/events", event("m1", "met") + "\nbad\n", "application/x-ndjson").status,
            200);
  const auto r = http(d.http_port(), "GET", "/metrics");
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.headers.at("content-type").find("version=0.0.4"), std::string::npos);
  EXPECT_NE(r.body.find(R"(rapport_events_accepted_total{transport="http",type="engagement"} 1)"), std::string::npos)
      << r.body;
  EXPECT_NE(r.body.find(R"(rapport_events_rejected_total{reason="malformed_json",transport="http"} 1)"),
            std::string::npos);
  EXPECT_NE(r.body.find("rapport_commit_duration_seconds_bucket"), std::string::npos);
  EXPECT_NE(r.body.find("process_resident_memory_bytes"), std::string::npos);
  EXPECT_EQ(r.body.find("met\""), std::string::npos);  // never a customer id
  write_file(dir_.file("metrics.txt"), r.body);
  const auto check = run_command({"/bin/sh", "-c", "promtool check metrics < " + dir_.file("metrics.txt")});
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
}

TEST_F(DaemonTest, SighupReloadsTokensWithoutDroppingConnections) {
  const std::string config = dir_.file("rapport.toml");
  write_file(config, "[ingest]\nmax_future_skew_ms = 300000\n");
  Daemon d(dir_.file("state"), {"--config", config});
  Client keep(d.tcp_port());
  keep.send(event("h1", "hup") + "\n");
  EXPECT_EQ(keep.read_until_ack(1).back(), "{\"ack\":1}");
  write_file(config, "[[auth.tokens]]\ntoken = \"reloaded-token-0123456\"\nscopes = [\"read\"]\n");
  d.signal(SIGHUP);
  // Wait for the reload to be logged rather than sleeping a fixed time.
  for (int i = 0; i < 200 && d.log().find("configuration reloaded") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  ASSERT_NE(d.log().find("configuration reloaded"), std::string::npos) << d.log();
  EXPECT_EQ(http(d.http_port(), "GET", "/v1/customers/hup").status, 401);
  EXPECT_EQ(
      http(d.http_port(), "GET", "/v1/customers/hup", "", "", {"Authorization: Bearer reloaded-token-0123456"}).status,
      200);
  // The connection opened before the reload still works.
  keep.send(event("h2", "hup") + "\n");
  EXPECT_EQ(keep.read_until_ack(2).back(), "{\"ack\":2}");
}

}  // namespace
}  // namespace rapport::test
