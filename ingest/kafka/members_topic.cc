#include "ingest/kafka/members_topic.h"

#include <librdkafka/rdkafka.h>

#include <atomic>
#include <thread>

namespace rapport::kafka {
namespace {

Result<rd_kafka_t*> make_client(rd_kafka_type_t type, const ClientOptions& client,
                                std::initializer_list<std::pair<const char*, const char*>> fixed) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  auto set = [&](const std::string& name, const std::string& value) -> Status {
    if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      return Status::Error("kafka property \"" + name + "\" = \"" + value + "\": " + err);
    }
    return Status::Ok();
  };
  Status s = set("bootstrap.servers", client.brokers);
  for (const auto& [name, value] : client.properties) {
    if (s) s = set(name, value);
  }
  for (const auto& [name, value] : fixed) {
    if (s) s = set(name, value);
  }
  if (!s) {
    rd_kafka_conf_destroy(conf);
    return s;
  }
  rd_kafka_t* rk = rd_kafka_new(type, conf, err, sizeof err);
  if (rk == nullptr) {
    rd_kafka_conf_destroy(conf);
    return Status::Error(std::string("kafka: cannot create a client: ") + err);
  }
  return rk;
}

}  // namespace

struct MembersTopic::Impl {
  std::string topic;
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
        const std::string_view key(static_cast<const char*>(m->key), m->key_len);
        std::optional<std::string_view> value;
        if (m->payload != nullptr) value = std::string_view(static_cast<const char*>(m->payload), m->len);
        on_record(key, value);
      }
      rd_kafka_message_destroy(m);
    }
  }
};

MembersTopic::MembersTopic(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
MembersTopic::~MembersTopic() = default;

Result<std::unique_ptr<MembersTopic>> MembersTopic::start(const ClientOptions& client, std::string topic,
                                                          OnRecord on_record) {
  if (client.brokers.empty()) return Status::Error("kafka: no brokers for the members topic");
  if (topic.empty()) return Status::Error("kafka: the members topic is empty");
  auto impl = std::make_unique<Impl>();
  impl->topic = std::move(topic);
  impl->on_record = std::move(on_record);
  auto producer = make_client(RD_KAFKA_PRODUCER, client, {{"enable.idempotence", "true"}});
  if (!producer) return producer.status();
  impl->producer = *producer;
  // No group: the follower reads every partition with assign() and commits nothing.
  auto consumer = make_client(
      RD_KAFKA_CONSUMER, client,
      {{"group.id", "rapport-members"}, {"enable.auto.commit", "false"}, {"enable.auto.offset.store", "false"}});
  if (!consumer) return consumer.status();
  impl->consumer = *consumer;
  impl->follower = std::thread([raw = impl.get()] { raw->follow(); });
  return std::unique_ptr<MembersTopic>(new MembersTopic(std::move(impl)));
}

Status MembersTopic::publish(std::string_view instance, const std::optional<std::string>& value,
                             std::chrono::milliseconds timeout) {
  if (instance.empty()) return Status::Error("kafka: a member record needs an instance name");
  void* payload = value ? const_cast<char*>(value->data()) : nullptr;
  const std::size_t size = value ? value->size() : 0;
  const rd_kafka_resp_err_t err =
      rd_kafka_producev(impl_->producer, RD_KAFKA_V_TOPIC(impl_->topic.c_str()),
                        RD_KAFKA_V_KEY(const_cast<char*>(instance.data()), instance.size()),
                        RD_KAFKA_V_VALUE(payload, size), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Status::Error("members topic \"" + impl_->topic + "\": cannot enqueue: " + rd_kafka_err2str(err));
  }
  if (rd_kafka_flush(impl_->producer, static_cast<int>(timeout.count())) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Status::Error("members topic \"" + impl_->topic + "\": not delivered within " +
                         std::to_string(timeout.count()) + " ms");
  }
  return Status::Ok();
}

}  // namespace rapport::kafka
