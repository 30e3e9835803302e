// Test support for Kafka mode: a running rapport-kafka-mock (librdkafka's mock cluster on loopback) and a small
// librdkafka producer that partitions like Kafka's Java client (murmur2 of the key: storage/partitioner.h).
// Header-only; link PkgConfig::RDKAFKA. Thread safety: one thread per object.
#pragma once

#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace rapport::test {

// rapport-kafka-mock as a child process: `program` is its path, `topics` "name:partitions" specs.
// The constructor waits for the bootstrap address; the destructor stops it with SIGTERM.
class KafkaMock {
 public:
  KafkaMock(const std::string& program, const std::vector<std::string>& topics, int brokers = 1) {
    int out[2];
    if (::pipe(out) != 0) throw std::runtime_error("pipe");
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(out[1], 1);
      ::close(out[0]);
      ::close(out[1]);
      std::vector<std::string> argv = {program, "--brokers", std::to_string(brokers)};
      for (const auto& t : topics) {
        argv.push_back("--topic");
        argv.push_back(t);
      }
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    ::close(out[1]);
    // The first line on stdout is the bootstrap address (generous deadline: a loaded machine).
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    std::string text;
    while (text.find('\n') == std::string::npos && std::chrono::steady_clock::now() < deadline) {
      pollfd p{out[0], POLLIN, 0};
      if (::poll(&p, 1, 200) <= 0) continue;
      char buf[512];
      const ssize_t n = ::read(out[0], buf, sizeof buf);
      if (n <= 0) break;
      text.append(buf, static_cast<std::size_t>(n));
    }
    ::close(out[0]);
    if (text.find('\n') == std::string::npos) {
      stop();
      throw std::runtime_error("rapport-kafka-mock did not print its bootstrap address");
    }
    bootstrap_ = text.substr(0, text.find('\n'));
  }
  ~KafkaMock() { stop(); }
  KafkaMock(const KafkaMock&) = delete;
  KafkaMock& operator=(const KafkaMock&) = delete;

  const std::string& bootstrap() const { return bootstrap_; }
  pid_t pid() const { return pid_; }

  // SIGTERM and wait; returns the exit code (or -signal), -1 if it was not running.
  int stop() {
    if (pid_ <= 0) return -1;
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  }

 private:
  pid_t pid_ = -1;
  std::string bootstrap_;
};

// A producer with Kafka's default (Java-compatible) partitioner for keyed records: murmur2_random.
// produce() queues a record; flush() waits until every queued record is acknowledged and throws on any
// delivery failure. partitions() holds the partition each acknowledged record went to, in delivery order.
class KafkaProducer {
 public:
  explicit KafkaProducer(const std::string& bootstrap) {
    char error[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    const std::pair<const char*, const char*> settings[] = {{"bootstrap.servers", bootstrap.c_str()},
                                                            {"partitioner", "murmur2_random"},
                                                            {"enable.idempotence", "true"},
                                                            {"linger.ms", "5"},
                                                            {"log_level", "3"}};
    for (const auto& [k, v] : settings) {
      if (rd_kafka_conf_set(conf, k, v, error, sizeof error) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        throw std::runtime_error(std::string("producer config ") + k + ": " + error);
      }
    }
    rd_kafka_conf_set_opaque(conf, this);
    rd_kafka_conf_set_dr_msg_cb(conf, &KafkaProducer::on_delivery);
    rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, error, sizeof error);
    if (rk_ == nullptr) throw std::runtime_error(std::string("producer: ") + error);
  }
  ~KafkaProducer() {
    if (rk_ != nullptr) {
      rd_kafka_flush(rk_, 10000);
      rd_kafka_destroy(rk_);
    }
  }
  KafkaProducer(const KafkaProducer&) = delete;
  KafkaProducer& operator=(const KafkaProducer&) = delete;

  // key empty: no key. headers: (name, value) pairs, e.g. {"content-type", "application/cloudevents+json"}.
  void produce(const std::string& topic, const std::string& key, const std::string& value,
               const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    rd_kafka_headers_t* hdrs = nullptr;
    if (!headers.empty()) {
      hdrs = rd_kafka_headers_new(headers.size());
      for (const auto& [n, v] : headers)
        rd_kafka_header_add(hdrs, n.data(), -1, v.data(), static_cast<ssize_t>(v.size()));
    }
    for (;;) {
      const rd_kafka_resp_err_t err = rd_kafka_producev(
          rk_, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
          RD_KAFKA_V_KEY(key.empty() ? nullptr : const_cast<char*>(key.data()), key.size()),
          RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()), RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return;
      if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        rd_kafka_poll(rk_, 100);
        continue;
      }
      if (hdrs != nullptr) rd_kafka_headers_destroy(hdrs);
      throw std::runtime_error(std::string("produce: ") + rd_kafka_err2str(err));
    }
  }

  void flush() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (rd_kafka_outq_len(rk_) > 0 && std::chrono::steady_clock::now() < deadline) rd_kafka_flush(rk_, 1000);
    if (rd_kafka_outq_len(rk_) > 0) throw std::runtime_error("producer: records still queued after 120 s");
    if (!failure_.empty()) throw std::runtime_error("producer: delivery failed: " + failure_);
  }

  const std::vector<std::int32_t>& partitions() const { return partitions_; }
  const std::vector<std::string>& keys() const { return keys_; }

 private:
  static void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    auto* self = static_cast<KafkaProducer*>(opaque);
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (self->failure_.empty()) self->failure_ = rd_kafka_err2str(m->err);
      return;
    }
    self->partitions_.push_back(m->partition);
    self->keys_.push_back(m->key != nullptr ? std::string(static_cast<const char*>(m->key), m->key_len) : "");
  }

  rd_kafka_t* rk_ = nullptr;
  std::string failure_;
  std::vector<std::int32_t> partitions_;
  std::vector<std::string> keys_;
};

}  // namespace rapport::test
