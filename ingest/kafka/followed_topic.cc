#include "ingest/kafka/followed_topic.h"

#include <librdkafka/rdkafka.h>

#include <atomic>
#include <thread>

namespace rapport::kafka {

struct FollowedTopic::Impl {
  std::string topic, what;
  OnRecord on_record;
  rd_kafka_t* producer = nullptr;
  rd_kafka_t* consumer = nullptr;
  std::atomic<bool> stopping{false};
  std::thread follower;

  ~Impl() {
    stopping = true;
    if (follower.joinable()) follower.join();
    if (consumer != nullptr) {
      rd_kafka_consumer_close(consumer);
      rd_kafka_destroy(consumer);
    }
    if (producer != nullptr) {
      rd_kafka_flush(producer, 5000);
      rd_kafka_destroy(producer);
    }
  }

  // Assigns every partition of the topic from its start (retrying while the topic's metadata is not there yet).
  bool assign_all() {
    while (!stopping) {
      rd_kafka_topic_t* t = rd_kafka_topic_new(consumer, topic.c_str(), nullptr);
      const rd_kafka_metadata_t* md = nullptr;
      const rd_kafka_resp_err_t e = rd_kafka_metadata(consumer, 0, t, &md, 2000);
      rd_kafka_topic_destroy(t);
      if (e == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
          md->topics[0].partition_cnt > 0) {
        rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
        for (int i = 0; i < md->topics[0].partition_cnt; ++i) {
          rd_kafka_topic_partition_list_add(list, topic.c_str(), md->topics[0].partitions[i].id)->offset =
              RD_KAFKA_OFFSET_BEGINNING;
        }
        rd_kafka_metadata_destroy(md);
        const rd_kafka_resp_err_t a = rd_kafka_assign(consumer, list);
        rd_kafka_topic_partition_list_destroy(list);
        if (a == RD_KAFKA_RESP_ERR_NO_ERROR) return true;
      } else if (md != nullptr) {
        rd_kafka_metadata_destroy(md);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return false;
  }

  void follow() {
    if (!assign_all()) return;
    while (!stopping) {
      rd_kafka_message_t* m = rd_kafka_consumer_poll(consumer, 200);
      if (m == nullptr) continue;
      if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        Record r;
        r.key = std::string_view(static_cast<const char*>(m->key), m->key_len);
        if (m->payload != nullptr) r.value = std::string_view(static_cast<const char*>(m->payload), m->len);
        r.timestamp_ms = rd_kafka_message_timestamp(m, nullptr);
        on_record(r);
      }
      rd_kafka_message_destroy(m);
    }
  }
};

FollowedTopic::FollowedTopic(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
FollowedTopic::~FollowedTopic() = default;

Result<std::unique_ptr<FollowedTopic>> FollowedTopic::start(const ClientOptions& client, std::string topic,
                                                            std::string what, OnRecord on_record) {
  if (client.brokers.empty()) return Status::Error("kafka: no brokers for the " + what);
  if (topic.empty()) return Status::Error("kafka: the " + what + " is empty");
  auto impl = std::make_unique<Impl>();
  impl->topic = std::move(topic);
  impl->what = std::move(what);
  impl->on_record = std::move(on_record);
  auto producer = make_client(true, client, {{"enable.idempotence", "true"}});
  if (!producer) return producer.status();
  impl->producer = *producer;
  // No group: the follower reads every partition with assign() and commits nothing.
  auto consumer = make_client(
      false, client,
      {{"group.id", "rapport-followers"}, {"enable.auto.commit", "false"}, {"enable.auto.offset.store", "false"}});
  if (!consumer) return consumer.status();
  impl->consumer = *consumer;
  impl->follower = std::thread([raw = impl.get()] { raw->follow(); });
  return std::unique_ptr<FollowedTopic>(new FollowedTopic(std::move(impl)));
}

Status FollowedTopic::publish(std::span<const std::pair<std::string, std::optional<std::string>>> records,
                              std::chrono::milliseconds timeout) {
  const std::string name = impl_->what + " \"" + impl_->topic + "\"";
  for (const auto& [key, value] : records) {
    void* payload = value ? const_cast<char*>(value->data()) : nullptr;
    const std::size_t size = value ? value->size() : 0;
    const rd_kafka_resp_err_t err =
        rd_kafka_producev(impl_->producer, RD_KAFKA_V_TOPIC(impl_->topic.c_str()),
                          RD_KAFKA_V_KEY(const_cast<char*>(key.data()), key.size()), RD_KAFKA_V_VALUE(payload, size),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return Status::Error(name + ": cannot enqueue: " + rd_kafka_err2str(err));
  }
  if (rd_kafka_flush(impl_->producer, static_cast<int>(timeout.count())) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Status::Error(name + ": not delivered within " + std::to_string(timeout.count()) + " ms");
  }
  return Status::Ok();
}

}  // namespace rapport::kafka
