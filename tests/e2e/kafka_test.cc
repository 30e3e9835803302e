// Kafka mode end to end: rapport-kafka-mock (librdkafka's mock cluster) and the real rapportd consuming from
// it as a consumer group member. Each scenario produces a known stream and checks at the end that every
// customer's revenue and event count equal the stream exactly: nothing lost, nothing doubled.
// Waits are for conditions with generous deadlines (a loaded 2-core machine); nothing asserts timing.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "storage/partitioner.h"
#include "tests/e2e/kafka_harness.h"

namespace rapport::test {
namespace {

// The mock prints a loopback bootstrap address, and the test producer partitions keyed records exactly as
// storage/partitioner.h does (Kafka's Java default partitioner), so Kafka partition k is engine partition k.
TEST(KafkaMock, PrintsBootstrapAndProducerPartitionsLikeTheEngine) {
  KafkaMock mock(mock_program(), {"events:4"});
  EXPECT_EQ(mock.bootstrap().rfind("127.0.0.1:", 0), 0u) << mock.bootstrap();
  KafkaProducer producer(mock.bootstrap());
  for (int i = 0; i < 200; ++i) producer.produce("events", "customer-" + std::to_string(i), "{}");
  producer.flush();
  ASSERT_EQ(producer.partitions().size(), 200u);
  std::vector<int> seen(4, 0);
  for (std::size_t i = 0; i < producer.keys().size(); ++i) {
    EXPECT_EQ(static_cast<std::uint32_t>(producer.partitions()[i]), partition_of(producer.keys()[i], 4))
        << producer.keys()[i];
    ++seen[static_cast<std::size_t>(producer.partitions()[i])];
  }
  for (int p = 0; p < 4; ++p) EXPECT_GT(seen[static_cast<std::size_t>(p)], 0) << "partition " << p;
  EXPECT_EQ(mock.stop(), 0);
}

TEST(KafkaMock, RejectsABadTopicSpec) {
  const auto r = run_command({mock_program(), "--topic", "events:0"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("PARTITIONS must be a whole number"), std::string::npos) << r.err;
  const auto help = run_command({mock_program(), "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("bootstrap address"), std::string::npos);
}

// ---- rapportd in Kafka mode ----

TEST_F(KafkaDaemon, OneInstanceStoresTheStreamExactly) {
  KafkaMock mock(mock_program(), kafka_topics(3));
  Daemon d(state(), {"--config", config(mock, 3)});
  KafkaProducer producer(mock.bootstrap());
  Stream stream(150);
  stream.produce(producer, 3000);
  ASSERT_TRUE(eventually([&] { return caught_up(d, 3, stream.produced()); })) << d.log();
  expect_exact(d.http_port(), stream);
  EXPECT_EQ(metric(d.http_port(), "rapport_events_received_total{transport=\"kafka\"}"), 3000);
  EXPECT_EQ(metric(d.http_port(), "rapport_kafka_bad_records_total"), 0);
  EXPECT_GE(metric(d.http_port(), "rapport_kafka_rebalances_total"), 1);
  EXPECT_EQ(d.stop(), 0);
}

TEST_F(KafkaDaemon, ARestartResumesFromTheStoredOffsets) {
  KafkaMock mock(mock_program(), kafka_topics(2));
  const std::string cfg = config(mock, 2);
  Daemon d(state(), {"--config", cfg});
  KafkaProducer producer(mock.bootstrap());
  Stream stream(80);
  stream.produce(producer, 1200);
  ASSERT_TRUE(eventually([&] { return caught_up(d, 2, 1200); })) << d.log();
  ASSERT_EQ(d.stop(), 0);
  // Produced while the instance is down: the restarted instance reads exactly these, nothing before them.
  stream.produce(producer, 800);
  d.start();
  ASSERT_TRUE(eventually([&] { return caught_up(d, 2, 800); })) << d.log();
  // Only the new records are read (the whole topic is 2000): a chunk dropped by an unexpected rebalance on a
  // loaded machine may be read twice, so this checks "not from the beginning", not an exact count.
  const double read = metric(d.http_port(), "rapport_kafka_records_total");
  EXPECT_GE(read, 800);
  EXPECT_LT(read, 2000) << "read again what was already stored";
  EXPECT_NE(d.log().find("offset="), std::string::npos);
  EXPECT_EQ(d.log().find("offset=beginning"), std::string::npos) << d.log();
  expect_exact(d.http_port(), stream);
}

TEST_F(KafkaDaemon, BadRecordsAreDeadLetteredWithTheirPositionAndTheRestContinues) {
  KafkaMock mock(mock_program(), kafka_topics(2));
  Daemon d(state(), {"--config", config(mock, 2)});
  KafkaProducer producer(mock.bootstrap());
  Stream stream(40);
  stream.produce(producer, 300);
  // Bad records among good ones: not JSON, a missing field, no value, a customer keyed to the wrong partition.
  std::string wrong_customer;
  for (int i = 0; wrong_customer.empty(); ++i) {
    if (partition_of("stray-" + std::to_string(i), 2) == 1) wrong_customer = "stray-" + std::to_string(i);
  }
  std::string key_for_0;
  for (int i = 0; key_for_0.empty(); ++i) {
    if (partition_of("k" + std::to_string(i), 2) == 0) key_for_0 = "k" + std::to_string(i);
  }
  producer.produce(kTopic, "cust-1", "this is not json");
  producer.produce(kTopic, "cust-2", R"({"customer_id":"cust-2","type":"purchase","amount":5})");
  producer.produce(kTopic, "cust-3", "");
  producer.produce(kTopic, key_for_0,
                   R"({"customer_id":")" + wrong_customer +
                       R"(","event_id":"stray","type":"purchase","amount":5,"ts":1704067200000})");
  producer.flush();
  stream.produce(producer, 300);
  ASSERT_TRUE(eventually([&] { return caught_up(d, 2, 604); })) << d.log();
  expect_exact(d.http_port(), stream);
  EXPECT_EQ(http(d.http_port(), "GET", "/v1/customers/" + wrong_customer).status, 404);
  EXPECT_EQ(metric(d.http_port(), "rapport_kafka_bad_records_total"), 4);
  EXPECT_EQ(metric(d.http_port(), "rapport_events_rejected_total{reason=\"malformed_json\",transport=\"kafka\"}"), 1);
  // Every bad record is a dead letter naming its topic, partition and offset.
  std::string letters;
  ASSERT_TRUE(eventually([&] {
    letters = http(d.http_port(), "GET", "/v1/deadletter?limit=100").body;
    std::size_t n = 0;
    for (auto pos = letters.find("\"transport\":\"kafka\""); pos != std::string::npos;
         pos = letters.find("\"transport\":\"kafka\"", pos + 1)) {
      ++n;
    }
    return n == 4;
  })) << letters;
  EXPECT_NE(letters.find("topic events partition " + std::to_string(partition_of("cust-1", 2)) + " offset "),
            std::string::npos)
      << letters;
  EXPECT_NE(letters.find("\"payload\":\"this is not json\""), std::string::npos) << letters;
  EXPECT_NE(letters.find("belongs to partition 1"), std::string::npos) << letters;
  EXPECT_NE(letters.find("the record has no value"), std::string::npos) << letters;
}

TEST_F(KafkaDaemon, KillNineMidStreamLosesAndDoublesNothing) {
  KafkaMock mock(mock_program(), kafka_topics(2));
  const std::string cfg = config(mock, 2, "max_chunk_records = 50\n");
  Daemon d(state(), {"--config", cfg});
  KafkaProducer producer(mock.bootstrap());
  Stream stream(120);
  stream.produce(producer, 4000);
  // Killed while it is consuming: some records read, not all stored.
  ASSERT_TRUE(eventually([&] { return metric(d.http_port(), "rapport_kafka_records_total") >= 500; })) << d.log();
  EXPECT_EQ(d.stop(SIGKILL), -SIGKILL);
  stream.produce(producer, 1000);
  d.start();
  ASSERT_TRUE(eventually([&] { return caught_up(d, 2, 1); })) << d.log();
  expect_exact(d.http_port(), stream);
}

TEST_F(KafkaDaemon, AReloadSaysKafkaSettingsChangeOnlyOnRestart) {
  KafkaMock mock(mock_program(), kafka_topics(1));
  const std::string cfg = config(mock, 1);
  Daemon d(state(), {"--config", cfg});
  std::string text = read_file(cfg);
  text.replace(text.find("rapport-test"), 12, "other-group");
  write_file(cfg, text);
  d.signal(SIGHUP);
  ASSERT_TRUE(eventually([&] { return d.log().find("configuration reloaded") != std::string::npos; }, 60s)) << d.log();
  EXPECT_NE(d.log().find("[kafka] change only on restart"), std::string::npos) << d.log();
}

// Identity merges move customers across partitions, which the group's instances own separately: in Kafka
// mode :merge and :unmerge answer 409 with that reason, and nothing is merged.
TEST_F(KafkaDaemon, MergeAndUnmergeAnswer409InKafkaMode) {
  KafkaMock mock(mock_program(), kafka_topics(2));
  Daemon d(state(), {"--config", config(mock, 2)});
  const auto merge = http(d.http_port(), "POST", "/v1/customers/alice:merge", R"({"from":["bob"]})");
  EXPECT_EQ(merge.status, 409) << merge.body;
  EXPECT_NE(merge.body.find("not available in Kafka mode"), std::string::npos) << merge.body;
  const auto unmerge = http(d.http_port(), "POST", "/v1/customers/alice:unmerge", R"({"ids":["bob"]})");
  EXPECT_EQ(unmerge.status, 409) << unmerge.body;
  EXPECT_NE(unmerge.body.find("not available in Kafka mode"), std::string::npos) << unmerge.body;
  const auto aliases = http(d.http_port(), "GET", "/v1/customers/alice/aliases");
  EXPECT_EQ(aliases.body.find("bob"), std::string::npos) << aliases.body;
  EXPECT_EQ(d.stop(), 0);
}

// Nor identify events: a record is dead-lettered with that reason, and one sent over HTTP is rejected with it.
TEST_F(KafkaDaemon, IdentifyEventsAreRefusedInKafkaMode) {
  KafkaMock mock(mock_program(), kafka_topics(1));
  Daemon d(state(), {"--config", config(mock, 1)});
  const std::string identify =
      R"({"event_id":"i-1","customer_id":"alice","ts":1704067200000,"type":"identify","aliases":["bob"]})";
  KafkaProducer producer(mock.bootstrap());
  producer.produce(kTopic, "alice", identify);
  producer.flush();
  std::string letters;
  ASSERT_TRUE(eventually([&] {
    letters = http(d.http_port(), "GET", "/v1/deadletter?limit=100").body;
    return letters.find("\"transport\":\"kafka\"") != std::string::npos;
  })) << letters;
  EXPECT_NE(letters.find(R"("reason":"identity_refused","error":"topic events partition 0 offset 0: identify events )"
                         R"(are not available in Kafka mode)"),
            std::string::npos)
      << letters;
  const auto r = http(d.http_port(), "POST", "/v1/events", identify + "\n", "application/x-ndjson");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find(R"("reason":"identity_refused","error":"identify events are not available in Kafka mode)"),
            std::string::npos)
      << r.body;
  EXPECT_EQ(http(d.http_port(), "GET", "/v1/customers/alice/aliases").body.find("bob"), std::string::npos);
  EXPECT_EQ(d.stop(), 0);
}

TEST_F(KafkaDaemon, RefusesATopicWithAnotherPartitionCount) {
  KafkaMock mock(mock_program(), kafka_topics(3));
  try {
    Daemon d(state(), {"--config", config(mock, 2)});
    ADD_FAILURE() << "rapportd started: " << d.log();
  } catch (const std::runtime_error& e) {
    const std::string log = e.what();
    EXPECT_NE(log.find("topic events has 3 partitions and the state dir 2: set [storage] partitions = 3"),
              std::string::npos)
        << log;
  }
}

}  // namespace
}  // namespace rapport::test
