// Kafka mode's e2e harness (tests/e2e/kafka_*_test.cc): the mock cluster's program, a known stream of
// events and what it should leave in every customer, polls for conditions with generous deadlines, the
// rapport_kafka_* metric readers, exact checks of every customer (on one instance, or on a group of
// instances, each customer asked of whichever instance owns it), and a fixture writing rapportd's
// Kafka config. Waits are for conditions; nothing asserts timing.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <ctime>
#include <functional>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "storage/partitioner.h"
#include "tests/e2e/harness.h"
#include "tests/support/kafka_mock.h"

namespace rapport::test {

using namespace std::chrono_literals;

inline constexpr const char* kTopic = "events";

inline std::string mock_program() { return binary("rapport-kafka-mock"); }

// The mock's topics for rapportd in Kafka mode: the input topic and its changes topic (the config's default
// "<topic>.changes"), with `partitions` partitions each.
inline std::vector<std::string> kafka_topics(int partitions) {
  return {std::string(kTopic) + ":" + std::to_string(partitions),
          std::string(kTopic) + ".changes:" + std::to_string(partitions)};
}

struct Expected {
  double revenue = 0;
  int events = 0;
};

// A known stream: purchases with whole amounts (sums are exact), unique event ids; every fifth record a
// structured CloudEvent (content-type header on every tenth, recognised by "specversion" otherwise).
class Stream {
 public:
  explicit Stream(int customers) : customers_(customers) {}

  // Produces `n` more events.
  void produce(KafkaProducer& producer, int n) {
    for (int i = 0; i < n; ++i, ++next_) {
      const std::string customer = "cust-" + std::to_string((next_ * 7919) % customers_);
      const std::string id = "ev-" + std::to_string(next_);
      const int amount = 1 + (next_ * 13) % 97;
      const std::int64_t ts_ms = 1704067200000 + static_cast<std::int64_t>(next_) * 1000;
      Expected& e = expected_[customer];
      e.revenue += amount;
      ++e.events;
      if (next_ % 5 == 0) {
        const std::string ce = R"({"specversion":"1.0","id":")" + id +
                               R"(","source":"/connectors/web","type":"com.acme.purchase","subject":")" + customer +
                               R"(","time":")" + rfc3339(ts_ms) + R"(","data":{"amount":)" + std::to_string(amount) +
                               "}}";
        if (next_ % 10 == 0) {
          producer.produce(kTopic, customer, ce, {{"content-type", "application/cloudevents+json"}});
        } else {
          producer.produce(kTopic, customer, ce);
        }
      } else {
        producer.produce(kTopic, customer,
                         R"({"customer_id":")" + customer + R"(","event_id":")" + id +
                             R"(","type":"purchase","channel":"web","amount":)" + std::to_string(amount) + R"(,"ts":)" +
                             std::to_string(ts_ms) + "}");
      }
    }
    producer.flush();
  }

  // The customer was erased: its events so far no longer count (later ones start it afresh).
  void erase(const std::string& customer) { expected_.erase(customer); }

  int produced() const { return next_; }
  const std::map<std::string, Expected>& expected() const { return expected_; }

 private:
  static std::string rfc3339(std::int64_t ms) {
    const std::time_t s = static_cast<std::time_t>(ms / 1000);
    std::tm tm{};
    gmtime_r(&s, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
  }
  int customers_;
  int next_ = 0;
  std::map<std::string, Expected> expected_;
};

inline bool eventually(const std::function<bool()>& pred, std::chrono::seconds deadline = 180s) {
  const auto end = std::chrono::steady_clock::now() + deadline;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(100ms);
  }
  return pred();
}

// The metric lines of /metrics that start with `prefix`.
inline std::vector<std::string> metric_lines(int port, const std::string& prefix) {
  std::vector<std::string> out;
  for (const std::string& line : lines_of(http(port, "GET", "/metrics").body)) {
    if (line.rfind(prefix, 0) == 0) out.push_back(line);
  }
  return out;
}

inline double metric(int port, const std::string& series) {
  const auto lines = metric_lines(port, series + " ");
  return lines.empty() ? -1 : std::stod(lines[0].substr(series.size() + 1));
}

// True once the daemon has read `records` records and every one of its `partitions` partitions has stored
// offsets up to the topic's end (lag 0).
inline bool caught_up(Daemon& d, int partitions, double records) {
  if (metric(d.http_port(), "rapport_kafka_records_total") < records) return false;
  const auto lags = metric_lines(d.http_port(), "rapport_kafka_consumer_lag{");
  if (static_cast<int>(lags.size()) != partitions) return false;
  for (const std::string& l : lags) {
    if (l.substr(l.rfind(' ') + 1) != "0") return false;
  }
  return true;
}

// A number after "key": in a JSON text (the customer answer is flat enough for this).
inline double json_number(const std::string& body, const std::string& key) {
  const auto pos = body.find("\"" + key + "\":");
  if (pos == std::string::npos) throw std::runtime_error("no " + key + " in " + body);
  return std::stod(body.substr(pos + key.size() + 3));
}

// Every customer of the stream has exactly its revenue and event count in the answer `answer(id)` gives
// (GET /v1/customers/{id} somewhere); customers in `erased` answer 404. `where` names it in failures.
template <typename Answer>
void expect_exact_answers(Answer answer, const Stream& stream, const std::set<std::string>& erased = {},
                          const std::string& where = "") {
  int wrong = 0;
  for (const auto& [id, e] : stream.expected()) {
    const auto r = answer(id);
    if (erased.contains(id)) {
      if (r.status != 404 && ++wrong <= 5) ADD_FAILURE() << id << " was erased: HTTP " << r.status << " " << r.body;
      continue;
    }
    if (r.status != 200) {
      if (++wrong <= 5) ADD_FAILURE() << id << ": HTTP " << r.status << " " << r.body;
      continue;
    }
    const double revenue = json_number(r.body, "revenue");
    const double events = json_number(r.body, "events");
    if (revenue != e.revenue || events != e.events) {
      if (++wrong <= 5) {
        ADD_FAILURE() << id << ": revenue " << revenue << " events " << events << ", the stream has " << e.revenue
                      << " and " << e.events;
      }
    }
  }
  EXPECT_EQ(wrong, 0) << "customers whose state differs from the stream" << where;
}

// Every customer of the stream has exactly its revenue and event count.
inline void expect_exact(int port, const Stream& stream) {
  expect_exact_answers([&](const std::string& id) { return http(port, "GET", "/v1/customers/" + id); }, stream);
}

// ---- a group of instances ----

// The partitions an instance holds: those of its rapport_kafka_consumer_lag series, with their lag.
inline std::map<int, double> held_partitions(int port) {
  std::map<int, double> out;
  for (const std::string& l : metric_lines(port, "rapport_kafka_consumer_lag{")) {
    const auto at = l.find("partition=\"");
    if (at == std::string::npos) continue;
    out[std::stoi(l.substr(at + 11))] = std::stod(l.substr(l.rfind(' ') + 1));
  }
  return out;
}

// True once every one of the topic's `partitions` partitions is held by exactly one of `daemons` with
// its offsets stored up to the topic's end (lag 0).
inline bool group_caught_up(const std::vector<Daemon*>& daemons, int partitions) {
  std::map<int, int> holders;
  for (Daemon* d : daemons) {
    for (const auto& [partition, lag] : held_partitions(d->http_port())) {
      if (lag != 0) return false;
      ++holders[partition];
    }
  }
  if (static_cast<int>(holders.size()) != partitions) return false;
  for (const auto& [partition, n] : holders) {
    if (n != 1 || partition < 0 || partition >= partitions) return false;
  }
  return true;
}

// The answer for customer `id` from the instance that owns its partition (by the lag series, which list
// exactly the held partitions); a 307 (a redirect to the owner) is followed to the port of its Location.
inline Client::Response owner_answer(const std::vector<Daemon*>& daemons, int partitions, const std::string& id) {
  const int partition = static_cast<int>(partition_of(id, static_cast<std::uint32_t>(partitions)));
  int port = -1;
  for (Daemon* d : daemons) {
    if (held_partitions(d->http_port()).contains(partition)) port = d->http_port();
  }
  if (port < 0) {
    Client::Response none;
    none.body = "no instance holds partition " + std::to_string(partition);
    return none;
  }
  auto r = http(port, "GET", "/v1/customers/" + id);
  for (int hops = 0; r.status == 307 && hops < 3; ++hops) {
    const std::string location = r.headers["location"];
    const auto colon = location.find(':', location.find("//") + 2);
    if (colon == std::string::npos) break;
    r = http(std::stoi(location.substr(colon + 1)), "GET", "/v1/customers/" + id);
  }
  return r;
}

// Every customer of the stream has exactly its revenue and event count on the instance that owns it.
inline void expect_exact(const std::vector<Daemon*>& daemons, int partitions, const Stream& stream) {
  expect_exact_answers([&](const std::string& id) { return owner_answer(daemons, partitions, id); }, stream);
}

class KafkaDaemon : public ::testing::Test {
 protected:
  // rapportd's config for `partitions` partitions consuming kTopic from the mock; each config names its own
  // instance (members of one group must have distinct names; the default, the host name, is one for all).
  std::string config(const KafkaMock& mock, int partitions, const std::string& extra = "") {
    const std::string n = std::to_string(configs_++);
    const std::string path = dir_.file("rapport-" + n + ".toml");
    write_file(path, "[storage]\npartitions = " + std::to_string(partitions) + "\n[kafka]\nbrokers = \"" +
                         mock.bootstrap() + "\"\ntopic = \"" + kTopic + "\"\ngroup_id = \"rapport-test\"\n" +
                         "instance = \"test-" + n + "\"\n" + extra +
                         "[kafka.properties]\n\"session.timeout.ms\" = 6000\n\"heartbeat.interval.ms\" = 500\n");
    return path;
  }
  std::string state() { return dir_.file("state"); }
  // The state dir of one instance of a group.
  std::string state(const std::string& instance) { return dir_.file("state-" + instance); }
  TempDir dir_;
  int configs_ = 0;
};

}  // namespace rapport::test
