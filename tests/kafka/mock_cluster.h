// An in-process librdkafka mock cluster (rdkafka_mock.h) for the tests of ingest/kafka, plus a
// plain producer of raw records to put exactly what a test needs into a topic.
#pragma once

#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <optional>
#include <string>
#include <string_view>

namespace rapport::kafka::test {

class MockCluster {
 public:
  explicit MockCluster(int brokers = 1) {
    char err[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err);
    owner_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (owner_ == nullptr) ADD_FAILURE() << err;
    cluster_ = rd_kafka_mock_cluster_new(owner_, brokers);
    if (cluster_ == nullptr) ADD_FAILURE() << "cannot start the mock cluster";
  }
  ~MockCluster() {
    if (producer_ != nullptr) {
      rd_kafka_flush(producer_, 10000);
      rd_kafka_destroy(producer_);
    }
    if (cluster_ != nullptr) rd_kafka_mock_cluster_destroy(cluster_);
    if (owner_ != nullptr) rd_kafka_destroy(owner_);
  }
  MockCluster(const MockCluster&) = delete;
  MockCluster& operator=(const MockCluster&) = delete;

  std::string bootstrap() const { return rd_kafka_mock_cluster_bootstraps(cluster_); }
  void create_topic(const std::string& topic, int partitions) {
    ASSERT_EQ(rd_kafka_mock_topic_create(cluster_, topic.c_str(), partitions, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
  }
  rd_kafka_mock_cluster_t* get() { return cluster_; }

  // Produces one record synchronously (value nullopt: a tombstone).
  void produce(const std::string& topic, int partition, std::string_view key, std::optional<std::string> value) {
    char err[512];
    if (producer_ == nullptr) {
      rd_kafka_conf_t* conf = rd_kafka_conf_new();
      rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap().c_str(), err, sizeof err);
      producer_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
      ASSERT_NE(producer_, nullptr) << err;
    }
    void* payload = value ? value->data() : nullptr;
    const std::size_t size = value ? value->size() : 0;
    ASSERT_EQ(
        rd_kafka_producev(producer_, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(partition),
                          RD_KAFKA_V_KEY(const_cast<char*>(key.data()), key.size()), RD_KAFKA_V_VALUE(payload, size),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
        RD_KAFKA_RESP_ERR_NO_ERROR);
    ASSERT_EQ(rd_kafka_flush(producer_, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
  }

 private:
  rd_kafka_t* owner_ = nullptr;
  rd_kafka_mock_cluster_t* cluster_ = nullptr;
  rd_kafka_t* producer_ = nullptr;
};

}  // namespace rapport::kafka::test
