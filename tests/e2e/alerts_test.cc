// Alert webhooks end to end: the real rapportd and a real HTTP receiver on loopback
// (tests/support/webhook_receiver.h). The signature, filters and threshold crossing, retries across a
// receiver outage, kill -9 with undelivered alerts, SIGHUP reload, 410 and dead-lettering.
// Every wait is for a condition with a generous deadline; no duration is asserted.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <chrono>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "daemon/alert_payload.h"
#include "tests/e2e/harness.h"
#include "tests/support/webhook_receiver.h"

namespace rapport::test {
namespace {

using namespace std::chrono_literals;
using Requests = std::vector<WebhookReceiver::Request>;

constexpr const char* kSecret = "whsec_e2e_secret_value";

std::string event(const std::string& id, const std::string& customer, const std::string& type,
                  const std::string& extra = "") {
  // Now (less a minute): scores decay with a 90-day half-life, so old events would barely move them.
  const long long ts =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count() -
      60'000;
  return R"({"event_id":")" + id + R"(","customer_id":")" + customer + R"(","ts":)" + std::to_string(ts) +
         R"(,"type":")" + type + "\"" + extra + "}\n";
}

std::string alert_toml(const std::string& name, const std::string& url, const std::string& conditions) {
  return "[[alerts]]\nname = \"" + name + "\"\nurl = \"" + url + "\"\nsecret = \"" + kSecret + "\"\n" + conditions +
         "\n";
}

// Fast retries for tests; one POST at a time per URL, so deliveries arrive in the order alerts fired.
std::string delivery_toml(const std::string& extra = "") {
  return "[alert_delivery]\nretry_initial_ms = 50\nretry_max_ms = 200\nmax_concurrency_per_url = 1\n" + extra + "\n";
}

struct Body {
  std::string id, alert, customer_id, event_id, at;
  bool event_id_null = false;
  std::string customer_customer_id;
  double satisfaction = -1;
};

Body parse_body(const std::string& json) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(json).get(doc) != simdjson::SUCCESS) throw std::runtime_error("not JSON: " + json);
  Body b;
  b.id = std::string(std::string_view(doc["id"]));
  b.alert = std::string(std::string_view(doc["alert"]));
  b.customer_id = std::string(std::string_view(doc["customer_id"]));
  b.event_id_null = doc["event_id"].is_null();
  if (!b.event_id_null) b.event_id = std::string(std::string_view(doc["event_id"]));
  b.at = std::string(std::string_view(doc["at"]));
  b.customer_customer_id = std::string(std::string_view(doc["customer"]["customer_id"]));
  b.satisfaction = double(doc["customer"]["satisfaction"]["score"]);
  return b;
}

std::vector<std::string> alerts_of(const Requests& requests) {
  std::vector<std::string> out;
  for (const auto& r : requests) out.push_back(parse_body(r.body).alert + ":" + parse_body(r.body).event_id);
  return out;
}

double satisfaction(int port, const std::string& customer) {
  const auto r = http(port, "GET", "/v1/customers/" + customer);
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (r.status != 200 || parser.parse(r.body).get(doc) != simdjson::SUCCESS) {
    throw std::runtime_error("GET customer: " + r.body);
  }
  return double(doc["satisfaction"]["score"]);
}

// The value of a metric series (the exact text before the value), or -1 when absent.
double metric(int port, const std::string& series) {
  const std::string body = http(port, "GET", "/metrics").body;
  const auto pos = body.find("\n" + series + " ");
  if (pos == std::string::npos) return -1;
  return std::stod(body.substr(pos + series.size() + 2));
}

bool eventually(const std::function<bool()>& pred, std::chrono::seconds deadline = 60s) {
  const auto end = std::chrono::steady_clock::now() + deadline;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return pred();
}

void post_events(int port, const std::string& body) {
  const auto r = http(port, "POST", "/v1/events", body, "application/x-ndjson");
  ASSERT_EQ(r.status, 200) << r.body;
}

class AlertsTest : public ::testing::Test {
 protected:
  std::string config(const std::string& text) {
    const std::string path = dir_.file("rapport.toml");
    write_file(path, text);
    return path;
  }
  TempDir dir_;
  WebhookReceiver receiver_;
};

TEST_F(AlertsTest, DeliveryIsSignedAndCarriesTheCustomer) {
  const std::string path =
      config(alert_toml("complaints", receiver_.url(), "event_types = [\"complaint\"]") + delivery_toml());
  Daemon d(dir_.file("state"), {"--config", path});
  post_events(d.http_port(), event("e1", "sig-1", "complaint", R"(,"channel":"twitter")"));
  ASSERT_TRUE(receiver_.wait_for([](const Requests& r) { return !r.empty(); })) << d.log();
  const auto request = receiver_.requests().front();
  EXPECT_EQ(request.method, "POST");
  EXPECT_EQ(request.target, "/hook");
  EXPECT_EQ(request.headers.at("content-type"), "application/json");
  const Body body = parse_body(request.body);
  EXPECT_EQ(body.alert, "complaints");
  EXPECT_EQ(body.customer_id, "sig-1");
  EXPECT_EQ(body.event_id, "e1");
  EXPECT_EQ(body.customer_customer_id, "sig-1");
  EXPECT_LT(body.satisfaction, 50);           // the customer object after the complaint
  EXPECT_EQ(body.at.size(), 24u) << body.at;  // RFC 3339 with milliseconds
  EXPECT_EQ(request.headers.at("rapport-delivery"), body.id);
  // Rapport-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with the secret>.
  const std::string sig = request.headers.at("rapport-signature");
  ASSERT_EQ(sig.rfind("t=", 0), 0u) << sig;
  const auto comma = sig.find(",v1=");
  ASSERT_NE(comma, std::string::npos) << sig;
  const std::string t = sig.substr(2, comma - 2);
  const long long now =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  EXPECT_LE(std::llabs(std::stoll(t) - now), 600) << sig;  // a current timestamp (generous: clock only)
  EXPECT_EQ(sig.substr(comma + 4), hmac_sha256_hex(kSecret, t + "." + request.body));
  EXPECT_NE(sig.substr(comma + 4), hmac_sha256_hex("another secret", t + "." + request.body));
  // The secret is never logged.
  EXPECT_EQ(d.log().find(kSecret), std::string::npos);
  ASSERT_TRUE(eventually([&] { return metric(d.http_port(), R"(rapport_alert_outbox{area="pending"})") == 0; }));
  EXPECT_EQ(metric(d.http_port(), R"(rapport_alert_deliveries_total{alert="complaints",outcome="delivered"})"), 1);
}

TEST_F(AlertsTest, FiltersAndThresholdCrossing) {
  const std::string url = receiver_.url();
  const std::string path =
      config(alert_toml("twitter-complaints", url, "event_types = [\"complaint\"]\nchannels = [\"twitter\"]") +
             alert_toml("unhappy", url, "satisfaction_below = 45") +
             alert_toml("marker", url, "event_types = [\"referral\"]") + delivery_toml());
  Daemon d(dir_.file("state"), {"--config", path});
  const int port = d.http_port();
  // A complaint by email: not twitter; it takes satisfaction below 45: "unhappy" fires (crossing).
  post_events(port, event("c1", "th-1", "complaint", R"(,"channel":"email")"));
  ASSERT_LT(satisfaction(port, "th-1"), 45);
  // A complaint on twitter: "twitter-complaints" fires; satisfaction stays below 45: "unhappy" does not.
  post_events(port, event("c2", "th-1", "complaint", R"(,"channel":"twitter")"));
  ASSERT_LT(satisfaction(port, "th-1"), 45);
  // Good surveys bring it back above 45 (nothing fires), then a complaint crosses again.
  std::string surveys;
  for (int i = 0; i < 12; ++i) surveys += event("s" + std::to_string(i), "th-1", "survey", R"(,"csat":5)");
  post_events(port, surveys);
  ASSERT_GE(satisfaction(port, "th-1"), 45);
  int n = 3;
  while (satisfaction(port, "th-1") >= 45 && n < 40) {
    post_events(port, event("c" + std::to_string(n++), "th-1", "complaint", R"(,"channel":"phone")"));
  }
  ASSERT_LT(satisfaction(port, "th-1"), 45);
  const std::string crossing = "c" + std::to_string(n - 1);
  post_events(port, event("r1", "th-1", "referral"));
  // Deliveries arrive in firing order (one at a time per URL): the marker is last.
  ASSERT_TRUE(receiver_.wait_for([](const Requests& r) {
    return !r.empty() && r.back().body.find("\"alert\":\"marker\"") != std::string::npos;
  })) << d.log();
  EXPECT_EQ(alerts_of(receiver_.requests()),
            (std::vector<std::string>{"unhappy:c1", "twitter-complaints:c2", "unhappy:" + crossing, "marker:r1"}));
}

TEST_F(AlertsTest, RetriesAcrossAReceiverOutage) {
  receiver_.answer(503);
  const std::string path = config(alert_toml("x", receiver_.url(), "event_types = [\"complaint\"]") + delivery_toml());
  Daemon d(dir_.file("state"), {"--config", path});
  post_events(d.http_port(), event("o1", "out-1", "complaint"));
  ASSERT_TRUE(receiver_.wait_for([](const Requests& r) { return r.size() >= 3; })) << d.log();
  receiver_.answer(200);
  ASSERT_TRUE(receiver_.wait_for([](const Requests& r) { return !r.empty() && r.back().answered == 200; })) << d.log();
  const auto requests = receiver_.requests();
  std::set<std::string> ids;
  for (const auto& r : requests) ids.insert(r.headers.at("rapport-delivery"));
  EXPECT_EQ(ids.size(), 1u);  // every retry is the same delivery
  EXPECT_EQ(parse_body(requests.front().body).id, parse_body(requests.back().body).id);
  EXPECT_EQ(parse_body(requests.front().body).event_id, "o1");
  EXPECT_EQ(parse_body(requests.back().body).event_id, "o1");
  ASSERT_TRUE(eventually([&] { return metric(d.http_port(), R"(rapport_alert_outbox{area="pending"})") == 0; }));
  EXPECT_GE(metric(d.http_port(), R"(rapport_alert_deliveries_total{alert="x",outcome="failed"})"), 2);
  EXPECT_EQ(metric(d.http_port(), R"(rapport_alert_deliveries_total{alert="x",outcome="delivered"})"), 1);
  EXPECT_NE(d.log().find("alert delivery failed; it will be retried"), std::string::npos);
}

TEST_F(AlertsTest, KillNineWithUndeliveredAlertsDeliversAllAfterRestart) {
  receiver_.answer(503);
  const std::string path = config(alert_toml("k", receiver_.url(), "event_types = [\"complaint\"]") + delivery_toml() +
                                  "[storage]\npartitions = 2\n");
  Daemon d(dir_.file("state"), {"--config", path});
  constexpr int kEvents = 20;
  std::string body;
  for (int i = 0; i < kEvents; ++i)
    body += event("k" + std::to_string(i), "kill-" + std::to_string(i % 7), "complaint");
  post_events(d.http_port(), body);  // acknowledged: committed with their alerts
  ASSERT_TRUE(receiver_.wait_for([](const Requests& r) { return !r.empty(); })) << d.log();
  EXPECT_EQ(d.stop(SIGKILL), -SIGKILL);
  receiver_.answer(200);
  d.start();
  std::map<std::string, std::string> event_by_id;  // delivery id -> event id, over every 2xx
  ASSERT_TRUE(receiver_.wait_for([&](const Requests& requests) {
    std::set<std::string> delivered;
    for (const auto& r : requests) {
      if (r.answered == 200) delivered.insert(parse_body(r.body).event_id);
    }
    return delivered.size() == kEvents;
  })) << d.log();
  for (const auto& r : receiver_.requests()) {
    const Body b = parse_body(r.body);
    EXPECT_EQ(r.headers.at("rapport-delivery"), b.id);
    // A repeat carries the id of the first attempt: one id, one event.
    auto [it, inserted] = event_by_id.emplace(b.id, b.event_id);
    EXPECT_EQ(it->second, b.event_id) << b.id;
  }
  EXPECT_EQ(event_by_id.size(), static_cast<std::size_t>(kEvents));
  ASSERT_TRUE(eventually([&] { return metric(d.http_port(), R"(rapport_alert_outbox{area="pending"})") == 0; }));
}

TEST_F(AlertsTest, SighupReloadsTheRulesAndABadReloadKeepsThem) {
  const std::string url = receiver_.url();
  const std::string path = config(alert_toml("before", url, "event_types = [\"complaint\"]") + delivery_toml());
  Daemon d(dir_.file("state"), {"--config", path});
  const int port = d.http_port();
  post_events(port, event("h1", "hup-1", "complaint"));
  ASSERT_TRUE(receiver_.wait_for([](const Requests& r) { return r.size() == 1; })) << d.log();

  config(alert_toml("after", url, "event_types = [\"referral\"]") + delivery_toml());
  d.signal(SIGHUP);
  ASSERT_TRUE(eventually([&] { return d.log().find("configuration reloaded") != std::string::npos; })) << d.log();
  post_events(port, event("h2", "hup-1", "complaint") + event("h3", "hup-1", "referral"));
  ASSERT_TRUE(receiver_.wait_for([](const Requests& r) { return r.size() == 2; })) << d.log();
  EXPECT_EQ(alerts_of(receiver_.requests()), (std::vector<std::string>{"before:h1", "after:h3"}));

  // A reload with an empty secret fails with a clear message; the running rules stay.
  write_file(path, "[[alerts]]\nname = \"broken\"\nurl = \"" + url + "\"\nsecret = \"\"\n");
  d.signal(SIGHUP);
  ASSERT_TRUE(eventually([&] { return d.log().find("reload failed") != std::string::npos; })) << d.log();
  EXPECT_NE(d.log().find("'alerts.secret' must not be empty"), std::string::npos) << d.log();
  post_events(port, event("h4", "hup-1", "referral"));
  ASSERT_TRUE(receiver_.wait_for([](const Requests& r) { return r.size() == 3; })) << d.log();
  EXPECT_EQ(alerts_of(receiver_.requests()).back(), "after:h4");
}

TEST_F(AlertsTest, GoneDisablesTheAlertAndExpiredDeliveriesGoDead) {
  receiver_.answer(410);
  const std::string url = receiver_.url();
  const std::string path = config(alert_toml("gone", url, "event_types = [\"complaint\"]") +
                                  alert_toml("expiring", receiver_.url("/other"), "event_types = [\"referral\"]") +
                                  delivery_toml("retry_for_s = 0.2"));
  Daemon d(dir_.file("state"), {"--config", path});
  const int port = d.http_port();
  post_events(port, event("g1", "gone-1", "complaint"));
  ASSERT_TRUE(eventually([&] {
    return metric(port, R"(rapport_alert_deliveries_total{alert="gone",outcome="gone"})") == 1;
  })) << d.log();
  EXPECT_NE(d.log().find("alert disabled: its receiver answered 410 Gone"), std::string::npos) << d.log();
  // The disabled alert's next delivery is not sent: it goes to the dead area.
  post_events(port, event("g2", "gone-1", "complaint"));
  ASSERT_TRUE(eventually([&] {
    return metric(port, R"(rapport_alert_deliveries_total{alert="gone",outcome="dead"})") == 1;
  })) << d.log();
  // A delivery that keeps failing past retry_for goes dead too.
  receiver_.answer(500);
  post_events(port, event("x1", "gone-1", "referral"));
  ASSERT_TRUE(eventually([&] {
    return metric(port, R"(rapport_alert_deliveries_total{alert="expiring",outcome="dead"})") == 1;
  })) << d.log();
  // Dead: g1 (answered 410), g2 (its alert disabled) and x1 (expired).
  ASSERT_TRUE(eventually([&] { return metric(port, R"(rapport_alert_outbox{area="dead"})") == 3; })) << d.log();
  EXPECT_EQ(metric(port, R"(rapport_alert_outbox{area="pending"})"), 0);
  for (const auto& r : receiver_.requests()) EXPECT_NE(parse_body(r.body).event_id, "g2");

  // rapportctl alerts list shows them; replaying the expired one sends it again, with its id.
  const auto list = run_command({binary("rapportctl"), "alerts", "list", "--state-dir", dir_.file("state")});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  const auto lines = lines_of(list.out);
  ASSERT_EQ(lines.size(), 3u) << list.out;
  std::string expired_id;
  for (const std::string& line : lines) {
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    ASSERT_EQ(parser.parse(line).get(doc), simdjson::SUCCESS) << line;
    if (std::string_view(doc["alert"]) == "expiring") {
      expired_id = std::string(std::string_view(doc["id"]));
      EXPECT_EQ(std::string_view(doc["event_id"]), "x1");
    } else {
      EXPECT_EQ(std::string_view(doc["alert"]), "gone");
    }
  }
  ASSERT_FALSE(expired_id.empty()) << list.out;
  receiver_.answer(200);
  const auto replay =
      run_command({binary("rapportctl"), "alerts", "replay", expired_id, "--state-dir", dir_.file("state")});
  ASSERT_EQ(replay.exit_code, 0) << replay.err;
  EXPECT_NE(replay.out.find("replayed 1 dead alert deliveries"), std::string::npos) << replay.out;
  ASSERT_TRUE(receiver_.wait_for([&](const Requests& r) {
    return !r.empty() && r.back().answered == 200 && r.back().headers.at("rapport-delivery") == expired_id;
  })) << d.log();
  ASSERT_TRUE(eventually([&] { return metric(port, R"(rapport_alert_outbox{area="dead"})") == 2; })) << d.log();
  const auto bad =
      run_command({binary("rapportctl"), "alerts", "replay", "nonsense", "--state-dir", dir_.file("state")});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("is not a delivery id"), std::string::npos) << bad.err;
}

// rapportctl alerts list (--pending or the dead area) on a stopped state dir: event id -> delivery id.
std::map<std::string, std::string> listed(const std::string& state, bool pending) {
  std::vector<std::string> argv = {binary("rapportctl"), "alerts", "list", "--state-dir", state};
  if (pending) argv.push_back("--pending");
  const auto list = run_command(argv);
  if (list.exit_code != 0) throw std::runtime_error("alerts list: " + list.err);
  std::map<std::string, std::string> out;
  for (const std::string& line : lines_of(list.out)) {
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    if (parser.parse(line).get(doc) != simdjson::SUCCESS) throw std::runtime_error("not JSON: " + line);
    out[std::string(std::string_view(doc["event_id"]))] = std::string(std::string_view(doc["id"]));
  }
  return out;
}

// Pending deliveries (receiver down) and a dead one survive `rapportctl migrate` with their ids: after the
// move the daemon delivers every pending one under the id it had, the dead one replays under its id, and a
// delivery fired after the move never reuses an id a receiver has seen.
void migrate_keeps_the_outbox(const std::string& root, int from, int to) {
  SCOPED_TRACE("migrate " + std::to_string(from) + " -> " + std::to_string(to));
  WebhookReceiver receiver;
  const std::string state = root + "/state-" + std::to_string(from) + "-" + std::to_string(to);
  const std::string path = root + "/rapport-" + std::to_string(from) + "-" + std::to_string(to) + ".toml";
  write_file(path, alert_toml("m", receiver.url(), "event_types = [\"complaint\"]") + delivery_toml());
  constexpr int kPending = 12;
  std::map<std::string, std::string> pending_before, dead_before;
  {
    Daemon d(state, {"--config", path, "--partitions", std::to_string(from)});
    const int port = d.http_port();
    // One dead delivery: the receiver answers 410 (the alert is disabled; a reload enables it again).
    receiver.answer(410);
    post_events(port, event("dead-0", "mig-dead", "complaint"));
    ASSERT_TRUE(eventually([&] { return metric(port, R"(rapport_alert_outbox{area="dead"})") == 1; })) << d.log();
    receiver.answer(503);
    d.signal(SIGHUP);
    ASSERT_TRUE(eventually([&] { return d.log().find("configuration reloaded") != std::string::npos; })) << d.log();
    std::string body;
    for (int i = 0; i < kPending; ++i) body += event("p" + std::to_string(i), "mig-" + std::to_string(i), "complaint");
    post_events(port, body);
    ASSERT_TRUE(eventually([&] { return metric(port, R"(rapport_alert_outbox{area="pending"})") == kPending; }))
        << d.log();
    ASSERT_TRUE(receiver.wait_for([](const Requests& r) { return !r.empty() && r.back().answered == 503; })) << d.log();
    ASSERT_EQ(d.stop(), 0) << d.log();
  }
  pending_before = listed(state, true);
  dead_before = listed(state, false);
  ASSERT_EQ(pending_before.size(), static_cast<std::size_t>(kPending));
  ASSERT_EQ(dead_before.size(), 1u);

  const auto m =
      run_command({binary("rapportctl"), "migrate", "--partitions", std::to_string(to), "--state-dir", state});
  ASSERT_EQ(m.exit_code, 0) << m.err;
  // The same deliveries under the same ids, in the new layout.
  EXPECT_EQ(listed(state, true), pending_before);
  EXPECT_EQ(listed(state, false), dead_before);

  receiver.answer(200);
  const std::size_t seen_before = receiver.requests().size();
  Daemon d(state, {"--config", path, "--partitions", std::to_string(to)});
  const int port = d.http_port();
  ASSERT_TRUE(receiver.wait_for([&](const Requests& requests) {
    std::set<std::string> delivered;
    for (std::size_t i = seen_before; i < requests.size(); ++i) {
      if (requests[i].answered == 200) delivered.insert(parse_body(requests[i].body).event_id);
    }
    return delivered.size() == static_cast<std::size_t>(kPending);
  })) << d.log();
  const auto after = receiver.requests();
  for (std::size_t i = seen_before; i < after.size(); ++i) {
    const Body b = parse_body(after[i].body);
    ASSERT_EQ(pending_before.count(b.event_id), 1u) << b.event_id;
    EXPECT_EQ(after[i].headers.at("rapport-delivery"), pending_before.at(b.event_id)) << b.event_id;
    EXPECT_EQ(b.id, pending_before.at(b.event_id));
  }
  ASSERT_TRUE(eventually([&] { return metric(port, R"(rapport_alert_outbox{area="pending"})") == 0; })) << d.log();

  // The dead delivery replays by its original id and arrives with it.
  const std::string dead_id = dead_before.at("dead-0");
  const auto replay = run_command({binary("rapportctl"), "alerts", "replay", dead_id, "--state-dir", state});
  ASSERT_EQ(replay.exit_code, 0) << replay.err;
  EXPECT_NE(replay.out.find("replayed 1 dead alert deliveries"), std::string::npos) << replay.out;
  ASSERT_TRUE(receiver.wait_for([&](const Requests& r) {
    return !r.empty() && r.back().answered == 200 && r.back().headers.at("rapport-delivery") == dead_id;
  })) << d.log();

  // New alerts after the move get ids no receiver has seen before it.
  std::set<std::string> old_ids{dead_id};
  for (const auto& [event_id, id] : pending_before) old_ids.insert(id);
  std::string fresh;
  for (int i = 0; i < kPending; ++i) fresh += event("n" + std::to_string(i), "mig-" + std::to_string(i), "complaint");
  post_events(port, fresh);
  ASSERT_TRUE(receiver.wait_for([&](const Requests& requests) {
    std::size_t n = 0;
    for (const auto& r : requests) n += r.answered == 200 && parse_body(r.body).event_id[0] == 'n' ? 1 : 0;
    return n >= static_cast<std::size_t>(kPending);
  })) << d.log();
  for (const auto& r : receiver.requests()) {
    if (parse_body(r.body).event_id[0] != 'n') continue;
    EXPECT_EQ(old_ids.count(r.headers.at("rapport-delivery")), 0u) << r.headers.at("rapport-delivery");
  }
}

TEST_F(AlertsTest, MigrateCarriesTheOutboxesKeepingDeliveryIds) {
  migrate_keeps_the_outbox(dir_.path(), 1, 2);
  migrate_keeps_the_outbox(dir_.path(), 2, 1);
}

// A purchase `days_ago` days before now.
std::string purchase(const std::string& id, const std::string& customer, int days_ago, double amount) {
  const long long ts =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count() -
      static_cast<long long>(days_ago) * 86'400'000LL - 60'000;
  return R"({"event_id":")" + id + R"(","customer_id":")" + customer + R"(","ts":)" + std::to_string(ts) +
         R"(,"type":"purchase","amount":)" + std::to_string(amount) + "}\n";
}

// A customer's history: purchases at the same days as X's, amounts scaled.
std::string history(const std::string& customer, double amount) {
  std::string out;
  const int days[] = {320, 240, 130, 60, 15};
  for (int i = 0; i < 5; ++i) out += purchase(customer + "-" + std::to_string(i), customer, days[i], amount + i);
  return out;
}

std::string tier_of(int port, const std::string& customer) {
  const auto r = http(port, "GET", "/v1/customers/" + customer);
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (r.status != 200 || parser.parse(r.body).get(doc) != simdjson::SUCCESS) {
    throw std::runtime_error("GET customer: " + r.body);
  }
  return std::string(std::string_view(doc["tier"]["name"]));
}

std::size_t count_of(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto pos = text.find(what); pos != std::string::npos; pos = text.find(what, pos + 1)) ++n;
  return n;
}

// A real fit that moves a customer to another tier fires its tier_changed alert (rapportd's main loop sees
// the new model and compares every customer's tier under both): the top spender of the first population is
// platinum; the second fit's population has twenty bigger spenders with the same purchase times, so the
// same customer, unchanged, drops out of platinum.
TEST_F(AlertsTest, AFitThatMovesACustomerToAnotherTierFiresTierChanged) {
  const std::string path = config(alert_toml("moves", receiver_.url(), "tier_changed = true") + delivery_toml() +
                                  "[value]\nplatinum_fraction = 0.2\ngold_fraction = 0.3\nfit_interval_s = 0\n");
  Daemon d(dir_.file("state"), {"--config", path});
  const int port = d.http_port();
  std::string body = history("tx-top", 200);
  for (int i = 0; i < 11; ++i) {
    const std::string c = "tx-small-" + std::to_string(i);
    body += purchase(c + "-a", c, 300 - 20 * i, 10 + i) + purchase(c + "-b", c, 100 - 5 * i, 12 + i);
    if (i % 3 == 0) body += purchase(c + "-c", c, 20 + i, 15 + i);
  }
  post_events(port, body);
  const auto fit1 = http(port, "POST", "/v1/model:fit");
  ASSERT_EQ(fit1.status, 200) << fit1.body;
  ASSERT_EQ(tier_of(port, "tx-top"), "platinum");
  // The daemon's clock picks the model up (no previous model: nothing fires).
  ASSERT_TRUE(eventually([&] { return count_of(d.log(), "alerts evaluate with the new value model") >= 1; }))
      << d.log();

  std::string whales;
  for (int i = 0; i < 20; ++i) whales += history("tx-whale-" + std::to_string(i), 2000 + 10 * i);
  post_events(port, whales);
  const auto fit2 = http(port, "POST", "/v1/model:fit");
  ASSERT_EQ(fit2.status, 200) << fit2.body;
  const std::string now_tier = tier_of(port, "tx-top");
  ASSERT_NE(now_tier, "platinum");
  ASSERT_TRUE(receiver_.wait_for([](const Requests& requests) {
    for (const auto& r : requests) {
      if (parse_body(r.body).customer_id == "tx-top") return true;
    }
    return false;
  })) << d.log();
  // Let every delivery of this fit arrive (one at a time per URL), then count.
  ASSERT_TRUE(eventually([&] { return metric(port, R"(rapport_alert_outbox{area="pending"})") == 0; })) << d.log();
  std::vector<std::string> mine;
  for (const auto& r : receiver_.requests()) {
    const Body b = parse_body(r.body);
    EXPECT_EQ(b.alert, "moves");
    EXPECT_TRUE(b.event_id_null) << r.body;  // a tier change has no event
    if (b.customer_id == "tx-top") mine.push_back(r.body);
  }
  ASSERT_EQ(mine.size(), 1u);
  EXPECT_EQ(parse_body(mine[0]).customer_customer_id, "tx-top");
  // The customer object shows the tier it moved to.
  EXPECT_NE(mine[0].find("\"tier\":{\"name\":\"" + now_tier + "\""), std::string::npos) << mine[0];
}

}  // namespace
}  // namespace rapport::test
