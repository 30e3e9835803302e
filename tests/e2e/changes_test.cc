// GET /v1/changes end to end, against the real rapportd on loopback: the
// long-poll parks (off the io threads), wakes on an event and times out with an
// empty answer; bad parameters are 400, a cursor of another partition count is
// 410 with the oldest cursor; and the feed property: a client following the
// feed from the start through a randomized stream of events and erasures, with
// restarts (SIGTERM and kill -9), ends with exactly the state GET
// /v1/customers/{id} gives, erased customers absent.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <future>
#include <map>
#include <random>
#include <set>

#include "common/json_writer.h"
#include "daemon/routes.h"
#include "tests/e2e/harness.h"
#include "tests/e2e/reliability.h"

namespace rapport::test {
namespace {

constexpr char kIngestToken[] = "feed-ingest-8c1e7f3b90465d2a";
constexpr char kReadToken[] = "feed-read-4b7a1c6d80352e9f";
constexpr char kAdminToken[] = "feed-admin-6d8035e9f4b7a1c2";

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

// What the test compares of a customer: time-independent scores.
struct Seen {
  double revenue = 0;
  std::uint64_t transactions = 0;
  friend bool operator==(const Seen&, const Seen&) = default;
};
std::ostream& operator<<(std::ostream& os, const Seen& s) {
  return os << "{revenue " << s.revenue << ", transactions " << s.transactions << "}";
}
Seen seen(simdjson::dom::element customer) {
  Seen s;
  EXPECT_EQ(customer["value"]["revenue"].get_double().get(s.revenue), simdjson::SUCCESS);
  EXPECT_EQ(customer["value"]["transactions"].get_uint64().get(s.transactions), simdjson::SUCCESS);
  return s;
}

class Changes : public ::testing::TestWithParam<int> {
 protected:
  void start(int partitions, const std::string& storage = "") {
    const std::string config = dir_.file("rapport.toml");
    write_file(config, "[storage]\npartitions = " + std::to_string(partitions) + "\n" + storage +
                           "[[auth.tokens]]\ntoken = \"" + kIngestToken + "\"\nscopes = [\"ingest\"]\n" +
                           "[[auth.tokens]]\ntoken = \"" + kReadToken + "\"\nscopes = [\"read\"]\n" +
                           "[[auth.tokens]]\ntoken = \"" + kAdminToken + "\"\nscopes = [\"admin\"]\n");
    daemon_ = std::make_unique<Daemon>(dir_.file("state"), std::vector<std::string>{"--config", config});
  }
  int port() const { return daemon_->http_port(); }
  Client::Response get(const std::string& target) { return http(port(), "GET", target, "", "", {bearer(kReadToken)}); }
  void post_events(const std::string& ndjson) {
    const auto r = http(port(), "POST", "/v1/events", ndjson, "application/x-ndjson", {bearer(kIngestToken)});
    ASSERT_EQ(r.status, 200) << r.body;
  }
  // Follows the feed from `cursor` until a page is not full, applying it to `state`.
  void follow(std::string& cursor, std::map<std::string, Seen>& state, int limit) {
    for (;;) {
      const auto r = get("/v1/changes?limit=" + std::to_string(limit) + (cursor.empty() ? "" : "&after=" + cursor));
      ASSERT_EQ(r.status, 200) << r.body;
      simdjson::dom::parser parser;
      simdjson::dom::element doc;
      ASSERT_EQ(parser.parse(r.body).get(doc), simdjson::SUCCESS) << r.body;
      std::string_view next;
      ASSERT_EQ(doc["next_cursor"].get_string().get(next), simdjson::SUCCESS) << r.body;
      cursor = std::string(next);
      simdjson::dom::array items;
      ASSERT_EQ(doc["items"].get_array().get(items), simdjson::SUCCESS) << r.body;
      std::size_t n = 0;
      for (simdjson::dom::element item : items) {
        ++n;
        std::string_view id;
        ASSERT_EQ(item["customer_id"].get_string().get(id), simdjson::SUCCESS);
        bool deleted = false;
        if (item["deleted"].get_bool().get(deleted) == simdjson::SUCCESS && deleted) {
          state.erase(std::string(id));
        } else {
          simdjson::dom::element customer;
          ASSERT_EQ(item["customer"].get(customer), simdjson::SUCCESS) << r.body;
          state[std::string(id)] = seen(customer);
        }
      }
      if (n < static_cast<std::size_t>(limit)) return;
    }
  }

  TempDir dir_;
  std::unique_ptr<Daemon> daemon_;
};

TEST_F(Changes, LongPollWakesOnAnEventAndTimesOutWithAnEmptyAnswer) {
  start(2);
  // Nothing yet: waits wait_ms, then answers empty with a cursor to continue from.
  auto r = get("/v1/changes?wait_ms=200");
  ASSERT_EQ(r.status, 200) << r.body;
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  ASSERT_EQ(parser.parse(r.body).get(doc), simdjson::SUCCESS);
  EXPECT_EQ(doc["items"].get_array().size(), 0u) << r.body;
  std::string_view cursor_view;
  ASSERT_EQ(doc["next_cursor"].get_string().get(cursor_view), simdjson::SUCCESS);
  const std::string cursor(cursor_view);
  // A long-poll of 30 s answers as soon as an event arrives: the client gives up after 20 s (http()).
  auto waiting = std::async(std::launch::async, [&] { return get("/v1/changes?wait_ms=30000&after=" + cursor); });
  // Parked (the gauge says so) before the event is sent, so the event must wake it.
  for (;;) {
    const auto parked = reliability::metric(http(port(), "GET", "/metrics").body, "rapport_feed_parked_requests");
    if (parked && *parked == 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  post_events(purchase("e1", "woken", 12.5) + "\n");
  r = waiting.get();
  ASSERT_EQ(r.status, 200) << r.body;
  ASSERT_EQ(parser.parse(r.body).get(doc), simdjson::SUCCESS);
  simdjson::dom::array items = doc["items"].get_array();
  ASSERT_EQ(items.size(), 1u) << r.body;
  EXPECT_EQ(std::string_view(items.at(0)["customer_id"].get_string()), "woken");
  EXPECT_EQ(seen(items.at(0)["customer"]), (Seen{12.5, 1}));
  const auto metrics = http(port(), "GET", "/metrics").body;
  EXPECT_EQ(reliability::metric(metrics, "rapport_feed_parked_requests"), 0.0);
}

TEST_F(Changes, AParkedLongPollIsAnsweredAtShutdown) {
  start(1);
  auto waiting = std::async(std::launch::async, [&] { return get("/v1/changes?wait_ms=30000"); });
  for (;;) {
    const auto parked = reliability::metric(http(port(), "GET", "/metrics").body, "rapport_feed_parked_requests");
    if (parked && *parked == 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // SIGTERM: the long-poll is answered (empty) at once rather than holding the drain up; the client gives
  // up after 20 s (http()).
  EXPECT_EQ(daemon_->stop(SIGTERM), 0);
  const auto r = waiting.get();
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("\"items\":[]"), std::string::npos) << r.body;
}

TEST_F(Changes, BadParametersAre400AndACursorOfAnotherPartitionCountIs410) {
  start(1);
  post_events(purchase("e1", "a", 1) + "\n");
  for (const std::string query : {"limit=0", "limit=1001", "limit=x", "wait_ms=30001", "wait_ms=-1", "after=nonsense",
                                  "after=f1.1.02", "after=c1.1.01"}) {
    const auto r = get("/v1/changes?" + query);
    EXPECT_EQ(r.status, 400) << query << ": " << r.body;
    EXPECT_NE(r.body.find("'after' a next_cursor of this route"), std::string::npos) << r.body;
  }
  // A cursor made for 2 partitions (f1.<p0>.<p1>.<count 2>).
  const auto r = get("/v1/changes?after=f1.5.7.02");
  EXPECT_EQ(r.status, 410) << r.body;
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  ASSERT_EQ(parser.parse(r.body).get(doc), simdjson::SUCCESS);
  std::string_view error, oldest;
  ASSERT_EQ(doc["error"].get_string().get(error), simdjson::SUCCESS);
  EXPECT_NE(error.find("made for 2 partitions; the state dir now has 1"), std::string_view::npos) << error;
  ASSERT_EQ(doc["oldest_cursor"].get_string().get(oldest), simdjson::SUCCESS);
  // The oldest cursor is valid and starts from the beginning.
  const auto again = get("/v1/changes?after=" + std::string(oldest));
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_NE(again.body.find("\"customer_id\":\"a\""), std::string::npos) << again.body;
  // The read scope is needed.
  EXPECT_EQ(http(port(), "GET", "/v1/changes", "", "", {bearer(kIngestToken)}).status, 403);
}

TEST_F(Changes, ACursorOlderThanTheRetainedTombstonesIs410WithTheOldestCursor) {
  start(1, "feed_tombstones = 1\n");
  post_events(purchase("e1", "a", 1) + "\n" + purchase("e2", "b", 2) + "\n");
  std::string cursor;
  std::map<std::string, Seen> state;
  follow(cursor, state, 10);
  ASSERT_EQ(state.size(), 2u);
  // Two erasures: only the last tombstone is kept, so `cursor` (before both) may have missed one.
  for (const char* id : {"a", "b"}) {
    const auto r = http(port(), "DELETE", customer_target(id), "", "", {bearer(kAdminToken)});
    ASSERT_EQ(r.status, 200) << r.body;
  }
  const auto r = get("/v1/changes?after=" + cursor);
  ASSERT_EQ(r.status, 410) << r.body;
  EXPECT_NE(r.body.find("older than the retained window"), std::string::npos) << r.body;
  simdjson::dom::parser parser;
  std::string_view oldest;
  ASSERT_EQ(parser.parse(r.body)["oldest_cursor"].get_string().get(oldest), simdjson::SUCCESS) << r.body;
  // Following again from the oldest cursor, with a fresh copy, gives the state: nobody.
  std::string again(oldest);
  std::map<std::string, Seen> fresh;
  follow(again, fresh, 10);
  EXPECT_TRUE(fresh.empty());
  // A cursor at or after the compacted tombstone is still valid.
  follow(again, fresh, 10);
  EXPECT_TRUE(fresh.empty());
}

TEST_F(Changes, RapportctlPrintsTheFeedAsNdjsonAndResumesAfterItsCursor) {
  start(2);
  post_events(purchase("e1", "a", 1) + "\n" + purchase("e2", "b", 2) + "\n");
  const std::string url = "http://127.0.0.1:" + std::to_string(port());
  auto r = run_command({binary("rapportctl"), "changes", "--url", url, "--token", kReadToken});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 2u) << r.out;
  std::set<std::string> ids;
  simdjson::dom::parser parser;
  for (const auto& line : lines) {
    simdjson::dom::element item;
    ASSERT_EQ(parser.parse(line).get(item), simdjson::SUCCESS) << line;
    ids.insert(std::string(item["customer_id"].get_string().value()));
    EXPECT_EQ(item["customer"]["customer_id"].get_string().value(), item["customer_id"].get_string().value());
  }
  EXPECT_EQ(ids, (std::set<std::string>{"a", "b"}));
  // stderr names the cursor to resume from: only what changed since then follows.
  const auto at = r.err.rfind("next_cursor ");
  ASSERT_NE(at, std::string::npos) << r.err;
  const std::string cursor = lines_of(r.err.substr(at + 12)).at(0);
  ASSERT_EQ(http(port(), "DELETE", customer_target("a"), "", "", {bearer(kAdminToken)}).status, 200);
  r = run_command({binary("rapportctl"), "changes", "--url", url, "--token", kReadToken, "--after", cursor});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 1u) << r.out;
  EXPECT_NE(lines[0].find(R"("customer_id":"a","deleted":true)"), std::string::npos) << lines[0];
  // A cursor the daemon refuses: exit 2 with its message.
  r = run_command({binary("rapportctl"), "changes", "--url", url, "--token", kReadToken, "--after", "bogus"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("'after' a next_cursor of this route"), std::string::npos) << r.err;
  r = run_command({binary("rapportctl"), "changes", "--url", url, "--token", kReadToken, "--after", "f1.1.01"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("made for 1 partitions"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--after f1.0.0.02"), std::string::npos) << r.err;
}

TEST_P(Changes, AFollowerEndsWithTheStateTheApiGives) {
  start(GetParam());
  std::mt19937 rng(7 + GetParam());
  std::vector<std::string> ids;
  for (int i = 0; i < 10; ++i) ids.push_back("c/" + std::to_string(i));  // '/' percent-encoded in paths
  std::map<std::string, Seen> follower;
  std::string cursor;
  int next_event = 0;
  for (int step = 0; step < 60; ++step) {
    const int op = std::uniform_int_distribution<int>(0, 99)(rng);
    if (op < 60) {
      std::string batch;
      const int n = std::uniform_int_distribution<int>(1, 6)(rng);
      for (int j = 0; j < n; ++j) {
        const auto& id = ids[std::uniform_int_distribution<std::size_t>(0, ids.size() - 1)(rng)];
        batch += purchase("e" + std::to_string(next_event), id, 1 + next_event % 5) + "\n";
        ++next_event;
      }
      post_events(batch);
    } else if (op < 75) {
      const auto& id = ids[std::uniform_int_distribution<std::size_t>(0, ids.size() - 1)(rng)];
      const auto r = http(port(), "DELETE", customer_target(id), "", "", {bearer(kAdminToken)});
      ASSERT_TRUE(r.status == 204 || r.status == 200 || r.status == 404) << r.status << " " << r.body;
    } else if (op < 80) {
      daemon_->stop(SIGKILL);  // acknowledged events are in the journal: replayed at the start
      daemon_->start();
    } else if (op < 83) {
      daemon_->restart();  // SIGTERM: a checkpoint at close
    } else {
      follow(cursor, follower, std::uniform_int_distribution<int>(1, 4)(rng));
      if (HasFatalFailure()) return;
    }
  }
  follow(cursor, follower, 3);
  // A fresh follower from the start agrees too.
  std::map<std::string, Seen> fresh;
  std::string fresh_cursor;
  follow(fresh_cursor, fresh, 1000);
  EXPECT_EQ(fresh, follower);
  std::map<std::string, Seen> truth;
  for (const auto& id : ids) {
    const auto r = get(customer_target(id));
    if (r.status == 404) continue;
    ASSERT_EQ(r.status, 200) << r.body;
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    ASSERT_EQ(parser.parse(r.body).get(doc), simdjson::SUCCESS);
    truth[id] = seen(doc);
  }
  EXPECT_FALSE(truth.empty());
  EXPECT_EQ(follower, truth);
}

INSTANTIATE_TEST_SUITE_P(Partitions, Changes, ::testing::Values(1, 2));

}  // namespace
}  // namespace rapport::test
