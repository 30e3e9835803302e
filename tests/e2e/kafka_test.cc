// Kafka mode end to end: rapport-kafka-mock (librdkafka's mock cluster) and rapportd consuming from it.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "storage/partitioner.h"
#include "tests/e2e/harness.h"
#include "tests/support/kafka_mock.h"

namespace rapport::test {
namespace {

std::string mock_program() { return binary("rapport-kafka-mock"); }

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

}  // namespace
}  // namespace rapport::test
