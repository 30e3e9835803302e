// The value-model fit over every partition in Kafka mode (daemon/kafka_fit.h; docs/design.md, "Kafka group"):
// two rapportd instances of one consumer group, each holding some of the input's partitions, fit through the
// stats topic and both arrive at the model one ordinary rapportd fits over the whole stream at the same as_of.
// A partition whose stats never come skips the fit (the previous model stays); an undecodable stats record is
// skipped and counted. Waits are for conditions with generous deadlines; nothing asserts timing.
#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "tests/e2e/cdnow.h"
#include "tests/e2e/harness.h"
#include "tests/support/kafka_mock.h"

namespace rapport::test {
namespace {

using namespace std::chrono_literals;

constexpr const char* kTopic = "events";
constexpr const char* kStatsTopic = "events.stats";
constexpr const char* kGroup = "rapport-fit-test";

bool eventually(const std::function<bool()>& pred, std::chrono::seconds deadline = 180s) {
  const auto end = std::chrono::steady_clock::now() + deadline;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(100ms);
  }
  return pred();
}

std::vector<std::string> metric_lines(int port, const std::string& prefix) {
  std::vector<std::string> out;
  for (const std::string& line : lines_of(http(port, "GET", "/metrics").body)) {
    if (line.rfind(prefix, 0) == 0) out.push_back(line);
  }
  return out;
}

double metric(int port, const std::string& series) {
  const auto lines = metric_lines(port, series + " ");
  return lines.empty() ? -1 : std::stod(lines[0].substr(series.size() + 1));
}

// The partitions a daemon holds (its rapport_kafka_consumer_lag series) and whether all are at lag 0.
std::vector<std::string> held(Daemon& d, bool* caught_up = nullptr) {
  std::vector<std::string> out;
  if (caught_up != nullptr) *caught_up = true;
  for (const std::string& l : metric_lines(d.http_port(), "rapport_kafka_consumer_lag{")) {
    out.push_back(l.substr(0, l.find('}')));
    if (caught_up != nullptr && l.substr(l.rfind(' ') + 1) != "0") *caught_up = false;
  }
  return out;
}

// A model answer without what differs between fits of the same model (when and how long it ran).
std::string model_without_timing(std::string body) {
  body = std::regex_replace(body, std::regex(R"("fitted_at":"[^"]*",?)"), "");
  return std::regex_replace(body, std::regex(R"("fit_seconds":[^,}]*,?)"), "");
}

// The CDNOW purchase log at its real dates (every purchase), one record per event keyed by customer_id.
struct CdnowStream {
  std::vector<std::pair<std::string, std::string>> records;  // (customer_id, NDJSON event)
  std::string ndjson;
  std::size_t customers = 0;
  // all_dates: at their real dates; else the calibration purchases shifted so that 1997-09-30 is today.
  explicit CdnowStream(bool all_dates = true) {
    ndjson = cdnow_ndjson(customers, all_dates);
    for (const std::string& line : lines_of(ndjson)) {
      const auto at = line.find(R"("customer_id":")") + 15;
      records.emplace_back(line.substr(at, line.find('"', at) - at), line);
    }
  }
  void produce(KafkaProducer& producer) const {
    for (const auto& [key, value] : records) producer.produce(kTopic, key, value);
    producer.flush();
  }
};

// A plain consumer group member on the input topic that never publishes stats (a member whose rapportd is
// gone but whose session has not ended): it takes partitions from the rapportd instances.
class SilentMember {
 public:
  explicit SilentMember(const std::string& bootstrap) {
    char error[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    const std::pair<const char*, const char*> settings[] = {{"bootstrap.servers", bootstrap.c_str()},
                                                            {"group.id", kGroup},
                                                            {"partition.assignment.strategy", "cooperative-sticky"},
                                                            {"enable.auto.commit", "false"},
                                                            {"session.timeout.ms", "6000"},
                                                            {"heartbeat.interval.ms", "500"},
                                                            {"log_level", "3"}};
    for (const auto& [k, v] : settings) {
      if (rd_kafka_conf_set(conf, k, v, error, sizeof error) != RD_KAFKA_CONF_OK) {
        throw std::runtime_error(std::string("consumer config ") + k + ": " + error);
      }
    }
    rk_ = rd_kafka_new(RD_KAFKA_CONSUMER, conf, error, sizeof error);
    if (rk_ == nullptr) throw std::runtime_error(std::string("consumer: ") + error);
    rd_kafka_poll_set_consumer(rk_);
    rd_kafka_topic_partition_list_t* topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, kTopic, RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(rk_, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    thread_ = std::thread([this] {
      while (!stop_) {
        if (rd_kafka_message_t* m = rd_kafka_consumer_poll(rk_, 100)) rd_kafka_message_destroy(m);
      }
    });
  }
  ~SilentMember() {
    stop_ = true;
    thread_.join();
    rd_kafka_consumer_close(rk_);
    rd_kafka_destroy(rk_);
  }

 private:
  rd_kafka_t* rk_ = nullptr;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

class KafkaFit : public ::testing::Test {
 protected:
  // A Kafka-mode rapportd config: `partitions` partitions, no scheduled fits, the stats timeout given.
  std::string config(const KafkaMock& mock, int partitions, int stats_timeout_s, int fit_interval_s = 0) {
    const std::string n = std::to_string(configs_++);
    const std::string path = dir_.file("rapport-" + n + ".toml");
    write_file(path, "[storage]\npartitions = " + std::to_string(partitions) +
                         "\n[value]\nfit_interval_s = " + std::to_string(fit_interval_s) + "\n[kafka]\nbrokers = \"" +
                         mock.bootstrap() + "\"\ntopic = \"" + kTopic + "\"\ngroup_id = \"" + kGroup +
                         "\"\ninstance = \"fit-" + n + "\"\nstats_timeout_s = " + std::to_string(stats_timeout_s) +
                         "\n[kafka.properties]\n\"session.timeout.ms\" = 6000\n\"heartbeat.interval.ms\" = 500\n");
    return path;
  }
  TempDir dir_;
  int configs_ = 0;
};

TEST_F(KafkaFit, TwoInstancesFitTheModelOfOneDaemonThatHoldsTheWholeStream) {
  KafkaMock mock(binary("rapport-kafka-mock"), {"events:3", "events.changes:3", "events.stats:1"});
  Daemon a(dir_.file("a"), {"--config", config(mock, 3, 120)});
  Daemon b(dir_.file("b"), {"--config", config(mock, 3, 120)});
  // Both members hold partitions before the stream comes (no partition changes hands mid-stream).
  ASSERT_TRUE(eventually([&] {
    const auto ha = held(a), hb = held(b);
    return !ha.empty() && !hb.empty() && ha.size() + hb.size() == 3;
  })) << a.log()
      << b.log();
  const CdnowStream stream;
  KafkaProducer producer(mock.bootstrap());
  stream.produce(producer);
  ASSERT_TRUE(eventually([&] {
    bool a_done = false, b_done = false;
    const auto ha = held(a, &a_done), hb = held(b, &b_done);
    return a_done && b_done && ha.size() + hb.size() == 3 &&
           metric(a.http_port(), "rapport_kafka_records_total") +
                   metric(b.http_port(), "rapport_kafka_records_total") ==
               static_cast<double>(stream.records.size());
  })) << a.log()
      << b.log();

  // The reference: one ordinary rapportd with the whole stream, fitted as of the end of CDNOW's calibration.
  Daemon one(dir_.file("one"));
  const auto ingest = http(one.http_port(), "POST", "/v1/events", stream.ndjson, "application/x-ndjson");
  ASSERT_EQ(ingest.status, 200) << ingest.body;
  const std::string as_of = R"({"as_of":"1997-09-30"})";
  const auto reference = http(one.http_port(), "POST", "/v1/model:fit", as_of);
  ASSERT_EQ(reference.status, 200) << reference.body;

  // A fit asked of A: A publishes its partitions' stats, B joins with its own, both fit the merge.
  const auto fit_a = http(a.http_port(), "POST", "/v1/model:fit", as_of);
  ASSERT_EQ(fit_a.status, 200) << fit_a.body << a.log();
  EXPECT_EQ(model_without_timing(fit_a.body), model_without_timing(reference.body));
  ASSERT_TRUE(eventually([&] {
    const auto m = http(b.http_port(), "GET", "/v1/model");
    return m.status == 200 && model_without_timing(m.body) == model_without_timing(reference.body);
  })) << http(b.http_port(), "GET", "/v1/model").body
      << "\nexpected " << reference.body << b.log();
  // Asked of B as well: the stats are in, so B answers the same model.
  const auto fit_b = http(b.http_port(), "POST", "/v1/model:fit", as_of);
  ASSERT_EQ(fit_b.status, 200) << fit_b.body;
  EXPECT_EQ(model_without_timing(fit_b.body), model_without_timing(reference.body));
  EXPECT_EQ(model_without_timing(http(a.http_port(), "GET", "/v1/model").body), model_without_timing(reference.body));
  // A fit as of an earlier date answers its model, but the newer one stays current on every instance (the
  // newest as_of wins, whatever order fits end in).
  const auto older = http(a.http_port(), "POST", "/v1/model:fit", R"({"as_of":"1997-06-30"})");
  ASSERT_EQ(older.status, 200) << older.body << a.log();
  EXPECT_NE(older.body.find(R"("as_of":"1997-06-30)"), std::string::npos) << older.body;
  EXPECT_EQ(model_without_timing(http(a.http_port(), "GET", "/v1/model").body), model_without_timing(reference.body));
  EXPECT_EQ(model_without_timing(http(b.http_port(), "GET", "/v1/model").body), model_without_timing(reference.body));
  // Every partition's stats were published once (A and B each published only the partitions they hold).
  EXPECT_GE(metric(a.http_port(), "rapport_kafka_stats_published_total"), 1);
  EXPECT_GE(metric(b.http_port(), "rapport_kafka_stats_published_total"), 1);
  EXPECT_EQ(metric(a.http_port(), "rapport_kafka_fit_slots_total{outcome=\"collected\"}"), 2);
  EXPECT_EQ(metric(a.http_port(), "rapport_kafka_fit_slots_total{outcome=\"skipped\"}"), 0);
}

TEST_F(KafkaFit, AMissingPartitionSkipsTheFitAndABadStatsRecordIsCounted) {
  KafkaMock mock(binary("rapport-kafka-mock"), {"events:2", "events.changes:2", "events.stats:1"});
  Daemon d(dir_.file("d"), {"--config", config(mock, 2, 3)});
  const CdnowStream stream;
  KafkaProducer producer(mock.bootstrap());
  stream.produce(producer);
  ASSERT_TRUE(eventually([&] {
    bool done = false;
    return held(d, &done).size() == 2 && done;
  })) << d.log();
  // Holding every partition, the instance fits alone.
  const auto first = http(d.http_port(), "POST", "/v1/model:fit", R"({"as_of":"1997-09-30"})");
  ASSERT_EQ(first.status, 200) << first.body << d.log();

  // An undecodable stats record: skipped and counted, nothing else happens.
  producer.produce(kStatsTopic, "1/0/0", "this is not a stats record");
  producer.flush();
  ASSERT_TRUE(eventually([&] { return metric(d.http_port(), "rapport_kafka_stats_skipped_total") == 1; })) << d.log();

  // A member that never publishes stats takes a partition: a fit cannot see every customer, so it is skipped.
  SilentMember silent(mock.bootstrap());
  ASSERT_TRUE(eventually([&] { return held(d).size() == 1; })) << d.log();
  const auto skipped = http(d.http_port(), "POST", "/v1/model:fit", R"({"as_of":"1998-01-31"})");
  EXPECT_EQ(skipped.status, 422) << skipped.body;
  EXPECT_NE(skipped.body.find("skipped: no stats for partition(s)"), std::string::npos) << skipped.body;
  EXPECT_EQ(metric(d.http_port(), "rapport_kafka_fit_slots_total{outcome=\"skipped\"}"), 1);
  EXPECT_NE(d.log().find("skipped: no stats for partition(s)"), std::string::npos) << d.log();
  // The previous model stays.
  const auto model = http(d.http_port(), "GET", "/v1/model");
  ASSERT_EQ(model.status, 200);
  EXPECT_EQ(model_without_timing(model.body), model_without_timing(first.body));
}

// Scheduled fits: every instance fits at the start of each UTC slot of fit_interval_s, as of that start, so
// both arrive at the same model without being asked.
TEST_F(KafkaFit, ScheduledFitsAreAsOfTheSameUtcSlotOnEveryInstance) {
  KafkaMock mock(binary("rapport-kafka-mock"), {"events:2", "events.changes:2", "events.stats:1"});
  Daemon a(dir_.file("a"), {"--config", config(mock, 2, 120, 5)});
  Daemon b(dir_.file("b"), {"--config", config(mock, 2, 120, 5)});
  ASSERT_TRUE(eventually([&] { return held(a).size() == 1 && held(b).size() == 1; })) << a.log() << b.log();
  const CdnowStream stream(/*all_dates=*/false);
  KafkaProducer producer(mock.bootstrap());
  stream.produce(producer);
  // Each instance fits on its own clock, so at one moment the two may hold the models of different
  // slots: collect every model each one answers, by as_of, until one slot has a model on both.
  auto as_of_of = [](const std::string& body) {
    const auto at = body.find("\"as_of\":\"");
    return at == std::string::npos ? std::string() : body.substr(at + 9, body.find('"', at + 9) - at - 9);
  };
  std::map<std::string, std::string> seen_a, seen_b;  // as_of -> model without timing
  std::string model_a, model_b;
  ASSERT_TRUE(eventually([&] {
    for (auto [port, seen] : {std::pair{a.http_port(), &seen_a}, std::pair{b.http_port(), &seen_b}}) {
      const auto m = http(port, "GET", "/v1/model");
      if (m.status == 200 && m.body.find("\"customers\":" + std::to_string(stream.customers)) != std::string::npos) {
        (*seen)[as_of_of(m.body)] = model_without_timing(m.body);
      }
    }
    for (const auto& [as_of, model] : seen_a) {
      const auto other = seen_b.find(as_of);
      if (other != seen_b.end()) {
        model_a = model;
        model_b = other->second;
        return true;
      }
    }
    return false;
  })) << a.log()
      << b.log();
  EXPECT_EQ(model_a, model_b);
  // As of a slot start: a whole multiple of 5 s ("…:SS.000Z" or "…:SSZ" with SS % 5 == 0).
  const auto at = model_a.find("\"as_of\":\"");
  ASSERT_NE(at, std::string::npos) << model_a;
  const std::string as_of = model_a.substr(at + 9, model_a.find('"', at + 9) - at - 9);
  EXPECT_EQ(std::stoi(as_of.substr(17, 2)) % 5, 0) << as_of;
  EXPECT_TRUE(as_of.size() == 20 || as_of.substr(19, 4) == ".000") << as_of;
  EXPECT_GE(metric(a.http_port(), "rapport_kafka_fit_slots_total{outcome=\"collected\"}"), 1);
  EXPECT_GE(metric(b.http_port(), "rapport_kafka_fit_slots_total{outcome=\"collected\"}"), 1);
}

}  // namespace
}  // namespace rapport::test
