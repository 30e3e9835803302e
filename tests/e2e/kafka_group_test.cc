// Kafka mode with several rapportd instances in one consumer group (docs/design.md, "Kafka group"): state
// follows its partition through the changes topic. Each scenario produces a known stream and checks at the
// end that every customer's revenue and event count equal the stream exactly, asking each customer of
// the instance that owns it. Waits are for conditions with generous deadlines; nothing asserts timing.
#include <gtest/gtest.h>

#include <csignal>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ingest/kafka/restore.h"
#include "tests/e2e/kafka_harness.h"

namespace rapport::test {
namespace {

using KafkaGroup = KafkaDaemon;

// Partitions taken over from the changes topic (rapport_kafka_restores_total{source="changes"}).
double restored_from_changes(Daemon& d) {
  return std::max(0.0, metric(d.http_port(), "rapport_kafka_restores_total{source=\"changes\"}"));
}

// Records of the given partitions that the producer wrote.
double records_in(const KafkaProducer& producer, const std::map<int, double>& partitions) {
  double n = 0;
  for (const int p : producer.partitions()) n += partitions.contains(p) ? 1 : 0;
  return n;
}

// A third instance joins two mid-stream: it restores the partition it is given from the changes topic
// (it does not replay that partition's input from the beginning), and the group ends with every customer
// exactly as the stream.
TEST_F(KafkaGroup, GrowingFromTwoToThreeInstancesMidStream) {
  KafkaMock mock(mock_program(), kafka_topics(3));
  const std::string cfg = config(mock, 3, "max_chunk_records = 100\n");
  Daemon a(state("a"), {"--config", cfg});
  Daemon b(state("b"), {"--config", cfg});
  KafkaProducer producer(mock.bootstrap());
  Stream stream(90);
  stream.produce(producer, 1500);
  ASSERT_TRUE(eventually([&] { return group_caught_up({&a, &b}, 3); })) << a.log() << b.log();

  Daemon c(state("c"), {"--config", cfg});
  stream.produce(producer, 1500);
  // Three members and three partitions: each ends with one (cooperative-sticky moves one to c). Every
  // record was read by some instance (a lag of 0 alone may predate the last records).
  const auto read = [](Daemon& d) { return metric(d.http_port(), "rapport_kafka_records_total"); };
  ASSERT_TRUE(eventually([&] {
    return read(a) + read(b) + read(c) >= 3000 && group_caught_up({&a, &b, &c}, 3) &&
           held_partitions(c.http_port()).size() == 1 && held_partitions(a.http_port()).size() == 1 &&
           held_partitions(b.http_port()).size() == 1;
  })) << a.log()
      << b.log() << c.log();
  expect_exact({&a, &b, &c}, 3, stream);
  // c took its partition over from the changes topic: it read that partition's records after the restored
  // position only, not all of them.
  EXPECT_GE(restored_from_changes(c), 1) << c.log();
  const auto held = held_partitions(c.http_port());
  EXPECT_LT(metric(c.http_port(), "rapport_kafka_records_total"), records_in(producer, held)) << c.log();
  EXPECT_NE(c.log().find("kafka: partition taken over"), std::string::npos) << c.log();
  // The old owner published its commits' snapshots, and nothing failed.
  EXPECT_GT(metric(a.http_port(), "rapport_kafka_changes_produced_total{outcome=\"delivered\"}") +
                metric(b.http_port(), "rapport_kafka_changes_produced_total{outcome=\"delivered\"}"),
            0);
  for (Daemon* d : {&a, &b, &c}) {
    EXPECT_EQ(metric(d->http_port(), "rapport_kafka_changes_produced_total{outcome=\"error\"}"), 0) << d->log();
  }
}

// One of two instances is killed (SIGKILL) while it consumes: the survivor takes its partitions over from
// the changes topic (a commit whose publication the kill cut short counts from its last position marker:
// the survivor replays the input from there), and nothing is lost or doubled.
TEST_F(KafkaGroup, KillNineOfOneOfTwoInstancesMidStream) {
  KafkaMock mock(mock_program(), kafka_topics(2));
  const std::string cfg = config(mock, 2, "max_chunk_records = 50\n");
  Daemon a(state("a"), {"--config", cfg});
  Daemon b(state("b"), {"--config", cfg});
  ASSERT_TRUE(eventually([&] {
    return held_partitions(a.http_port()).size() == 1 && held_partitions(b.http_port()).size() == 1;
  })) << a.log()
      << b.log();
  KafkaProducer producer(mock.bootstrap());
  Stream stream(100);
  stream.produce(producer, 3000);
  // Killed while it is consuming: some of its records stored and published, not all.
  ASSERT_TRUE(eventually([&] { return metric(b.http_port(), "rapport_kafka_records_total") >= 300; })) << b.log();
  EXPECT_EQ(b.stop(SIGKILL), -SIGKILL);
  stream.produce(producer, 1000);
  ASSERT_TRUE(eventually([&] { return group_caught_up({&a}, 2); })) << a.log();
  expect_exact({&a}, 2, stream);
  EXPECT_GE(restored_from_changes(a), 1) << a.log();
}

// An erasure on the owner publishes the customer's tombstone to the changes topic; when the partition moves
// to another instance, that instance's restore applies it: the customer stays erased there.
TEST_F(KafkaGroup, ATombstoneAfterErasureFollowsThePartition) {
  KafkaMock mock(mock_program(), kafka_topics(2));
  const std::string cfg = config(mock, 2);
  auto a = std::make_unique<Daemon>(state("a"), std::vector<std::string>{"--config", cfg});
  auto b = std::make_unique<Daemon>(state("b"), std::vector<std::string>{"--config", cfg});
  KafkaProducer producer(mock.bootstrap());
  Stream stream(60);
  stream.produce(producer, 600);
  ASSERT_TRUE(eventually([&] {
    return group_caught_up({a.get(), b.get()}, 2) && held_partitions(a->http_port()).size() == 1;
  })) << a->log()
      << b->log();
  // A customer of a's partition, erased on a.
  const int partition = held_partitions(a->http_port()).begin()->first;
  std::string customer;
  for (const auto& [id, e] : stream.expected()) {
    if (static_cast<int>(partition_of(id, 2)) == partition) customer = id;
  }
  ASSERT_FALSE(customer.empty());
  const auto erased = http(a->http_port(), "DELETE", "/v1/customers/" + customer);
  ASSERT_EQ(erased.status, 200) << erased.body;
  stream.erase(customer);

  // The changes topic's last record for the customer is a tombstone (a null value).
  kafka::RestoreOptions read;
  read.client.brokers = mock.bootstrap();
  read.topic = std::string(kTopic) + ".changes";
  read.partition = partition;
  bool tombstone = false;
  ASSERT_TRUE(eventually([&] {
    auto r = kafka::restore_partition(read);
    if (!r) return false;
    const auto found = r->customers.find(customer);
    tombstone = found != r->customers.end() && !found->second.has_value();
    return tombstone;
  })) << "no tombstone for "
      << customer << " in the changes topic";

  // The partition moves to b: a leaves the group.
  ASSERT_EQ(a->stop(), 0);
  a.reset();
  ASSERT_TRUE(eventually([&] { return group_caught_up({b.get()}, 2); })) << b->log();
  // b took the partition over (from the changes topic, or, had b held it last, keeping its own state and
  // applying the topic's tombstones): either way the customer is gone there.
  EXPECT_NE(b->log().find("kafka: partition taken over partition=" + std::to_string(partition)), std::string::npos)
      << b->log();
  const auto gone = http(b->http_port(), "GET", "/v1/customers/" + customer);
  EXPECT_EQ(gone.status, 404) << gone.body;
  // The rest of the stream continues on b, every customer exact.
  const double before = metric(b->http_port(), "rapport_kafka_records_total");
  stream.produce(producer, 400);
  ASSERT_TRUE(eventually([&] {
    return metric(b->http_port(), "rapport_kafka_records_total") >= before + 400 && group_caught_up({b.get()}, 2);
  })) << b->log();
  expect_exact({b.get()}, 2, stream);
}

// The changes topic's partition p holds input partition p's customers: rapportd refuses to start when the
// two topics' partition counts differ, saying what to do.
TEST_F(KafkaGroup, RefusesAChangesTopicWithAnotherPartitionCount) {
  KafkaMock mock(mock_program(), {"events:2", "events.changes:3"});
  try {
    Daemon d(state("a"), {"--config", config(mock, 2)});
    ADD_FAILURE() << "rapportd started: " << d.log();
  } catch (const std::runtime_error& e) {
    const std::string log = e.what();
    EXPECT_NE(log.find("the changes topic events.changes has 3 partitions and the input topic events 2: create it "
                       "before rapportd starts, with 2 partitions and cleanup.policy=compact"),
              std::string::npos)
        << log;
  }
}

// In Kafka mode an erasure goes through the owner, which publishes the tombstone: rapportctl erase refuses
// to erase offline (the customer would come back with the partition's next restore) and says so.
TEST_F(KafkaGroup, RapportctlRefusesAnOfflineEraseInKafkaMode) {
  const std::string cfg = dir_.file("offline.toml");
  write_file(cfg,
             "[storage]\npartitions = 2\n[kafka]\nbrokers = \"127.0.0.1:9\"\ntopic = \"events\"\ngroup_id = \"g\"\n");
  const auto r = run_command({binary("rapportctl"), "erase", "cust-1", "--config", cfg, "--state-dir", state("a")});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("Kafka mode ([kafka] brokers is set): erase through rapportd with --url"), std::string::npos)
      << r.err;
}

}  // namespace
}  // namespace rapport::test
