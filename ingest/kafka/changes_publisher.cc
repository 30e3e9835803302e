#include "ingest/kafka/changes_publisher.h"

#include <librdkafka/rdkafka.h>

#include <atomic>
#include <mutex>

#include "ingest/kafka/snapshot_record.h"

namespace rapport::kafka {

struct ChangesPublisher::Impl {
  rd_kafka_t* rk = nullptr;
  std::string topic;
  std::atomic<std::uint64_t> enqueued{0}, delivered{0}, errors{0};
  mutable std::mutex error_mutex;
  std::string last_error;  // error_mutex

  void fail(std::string message) {
    errors.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard<std::mutex> lock(error_mutex);
    last_error = std::move(message);
  }

  static void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    auto* self = static_cast<Impl*>(opaque);
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      self->delivered.fetch_add(1, std::memory_order_relaxed);
    } else {
      self->fail("changes topic \"" + self->topic + "\" partition " + std::to_string(m->partition) +
                 ": delivery failed: " + rd_kafka_err2str(m->err));
    }
  }

  Status fatal_status() {
    char reason[512];
    if (rd_kafka_fatal_error(rk, reason, sizeof reason) == RD_KAFKA_RESP_ERR_NO_ERROR) return Status::Ok();
    return Status::Error("changes topic \"" + topic + "\": the idempotent producer failed for good: " + reason);
  }

  // Enqueues one record (value nullopt: a tombstone), waiting while the local queue is full.
  Status produce(std::int32_t partition, std::string_view key, const std::string* value,
                 std::chrono::milliseconds queue_timeout) {
    const auto deadline = std::chrono::steady_clock::now() + queue_timeout;
    for (;;) {
      void* payload = value != nullptr ? const_cast<char*>(value->data()) : nullptr;
      const std::size_t size = value != nullptr ? value->size() : 0;
      const rd_kafka_resp_err_t err =
          rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(partition),
                            RD_KAFKA_V_KEY(const_cast<char*>(key.data()), key.size()), RD_KAFKA_V_VALUE(payload, size),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        enqueued.fetch_add(1, std::memory_order_relaxed);
        rd_kafka_poll(rk, 0);  // serve delivery reports
        return Status::Ok();
      }
      if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL && std::chrono::steady_clock::now() < deadline) {
        rd_kafka_poll(rk, 100);
        continue;
      }
      std::string message = "changes topic \"" + topic + "\" partition " + std::to_string(partition) +
                            ": cannot enqueue: " + rd_kafka_err2str(err);
      if (err == RD_KAFKA_RESP_ERR__FATAL) {
        if (Status s = fatal_status(); !s) message = s.message();
      }
      fail(message);
      return Status::Error(std::move(message));
    }
  }
};

ChangesPublisher::ChangesPublisher(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ChangesPublisher::~ChangesPublisher() {
  rd_kafka_flush(impl_->rk, 10000);
  rd_kafka_destroy(impl_->rk);
}

Result<std::unique_ptr<ChangesPublisher>> ChangesPublisher::create(const ClientOptions& client, std::string topic) {
  if (client.brokers.empty()) return Status::Error("kafka: no brokers to publish the changes topic to");
  if (topic.empty()) return Status::Error("kafka: the changes topic is empty");
  auto impl = std::make_unique<Impl>();
  impl->topic = std::move(topic);
  // enable.idempotence is not overridable: exactly once, in order, per partition.
  auto rk = make_client(true, client, {{"enable.idempotence", "true"}}, [raw = impl.get()](rd_kafka_conf_t* conf) {
    rd_kafka_conf_set_dr_msg_cb(conf, &Impl::on_delivery);
    rd_kafka_conf_set_opaque(conf, raw);
  });
  if (!rk) return rk.status();
  impl->rk = *rk;
  return std::unique_ptr<ChangesPublisher>(new ChangesPublisher(std::move(impl)));
}

Status ChangesPublisher::publish(std::int32_t partition, std::span<const ChangedCustomer> changed,
                                 std::uint64_t input_offset) {
  if (Status s = impl_->fatal_status(); !s) return s;
  for (const ChangedCustomer& c : changed) {
    const std::string value = encode_snapshot(c.customer_id, *c.state, input_offset);
    if (Status s = impl_->produce(partition, c.customer_id, &value, queue_timeout); !s) return s;
  }
  const std::string position = encode_position(input_offset);
  return impl_->produce(partition, kPositionKey, &position, queue_timeout);
}

Status ChangesPublisher::publish_erasure(std::int32_t partition, std::string_view customer_id) {
  if (Status s = impl_->fatal_status(); !s) return s;
  return impl_->produce(partition, customer_id, nullptr, queue_timeout);
}

Status ChangesPublisher::flush(std::chrono::milliseconds timeout) {
  const std::uint64_t errors_before = impl_->errors.load();
  const rd_kafka_resp_err_t err = rd_kafka_flush(impl_->rk, static_cast<int>(timeout.count()));
  if (Status s = impl_->fatal_status(); !s) return s;
  if (err == RD_KAFKA_RESP_ERR__TIMED_OUT) {
    return Status::Error("changes topic \"" + impl_->topic + "\": " + std::to_string(rd_kafka_outq_len(impl_->rk)) +
                         " records still undelivered after " + std::to_string(timeout.count()) + " ms");
  }
  if (impl_->errors.load() != errors_before) {
    std::lock_guard<std::mutex> lock(impl_->error_mutex);
    return Status::Error(impl_->last_error);
  }
  return Status::Ok();
}

PublisherStats ChangesPublisher::stats() const {
  PublisherStats out;
  out.enqueued = impl_->enqueued.load();
  out.delivered = impl_->delivered.load();
  out.errors = impl_->errors.load();
  std::lock_guard<std::mutex> lock(impl_->error_mutex);
  out.last_error = impl_->last_error;
  return out;
}

}  // namespace rapport::kafka
