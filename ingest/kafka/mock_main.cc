// rapport-kafka-mock: librdkafka's mock Kafka cluster (rdkafka_mock.h) on loopback, so that anyone can try
// rapportd's Kafka mode (and the e2e tests and bench can run it) without installing Kafka.
//
// Starts N mock brokers on 127.0.0.1 (ephemeral ports), creates the topics asked for with --topic
// NAME:PARTITIONS, prints the bootstrap address ("127.0.0.1:P1,127.0.0.1:P2,...") as the first line on
// stdout, then runs until SIGTERM or SIGINT. Limits of librdkafka 2.0.2's mock: no compaction, at most
// 100,000 messages or 5 MiB per partition (the oldest are dropped), no transaction markers, a slow first
// consumer-group join (clients should set a low session.timeout.ms).
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>
#include <vector>

namespace {

struct TopicSpec {
  std::string name;
  int partitions = 1;
};

bool parse_topic(const std::string& text, TopicSpec& out, std::string& error) {
  const auto colon = text.rfind(':');
  out.name = text.substr(0, colon);
  if (out.name.empty()) {
    error = "--topic " + text + ": expected NAME or NAME:PARTITIONS";
    return false;
  }
  if (colon == std::string::npos) return true;
  try {
    std::size_t used = 0;
    out.partitions = std::stoi(text.substr(colon + 1), &used);
    if (used != text.size() - colon - 1 || out.partitions < 1 || out.partitions > 1000) throw std::out_of_range("");
  } catch (const std::exception&) {
    error = "--topic " + text + ": PARTITIONS must be a whole number from 1 to 1000";
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "rapport-kafka-mock: librdkafka's mock Kafka cluster on loopback (a test bed for rapportd's Kafka mode).\n"
      "Prints the bootstrap address on stdout, then runs until SIGTERM/SIGINT. The mock keeps everything in\n"
      "memory: no compaction, at most 100,000 messages or 5 MiB per partition (the oldest are dropped),\n"
      "no transactions; consumers should use a low session.timeout.ms (e.g. 6000).",
      "rapport-kafka-mock"};
  int brokers = 1;
  std::vector<std::string> topics;
  app.add_option("--brokers", brokers, "Number of mock brokers (1-9)")->capture_default_str()->check(CLI::Range(1, 9));
  app.add_option("--topic", topics,
                 "Create topic NAME with PARTITIONS partitions (NAME:PARTITIONS, default 1 partition); repeatable. "
                 "Topics not created here are auto-created on first use with the mock's default partition count");
  CLI11_PARSE(app, argc, argv);

  std::vector<TopicSpec> specs;
  for (const std::string& t : topics) {
    TopicSpec spec;
    std::string error;
    if (!parse_topic(t, spec, error)) {
      std::fprintf(stderr, "rapport-kafka-mock: %s\n", error.c_str());
      return 2;
    }
    specs.push_back(spec);
  }

  // Block the stop signals before any thread starts, so that librdkafka's threads inherit the mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  char error[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  // The mock cluster needs a client handle for its book-keeping; a producer that never produces.
  if (rd_kafka_conf_set(conf, "log_level", "3", error, sizeof error) != RD_KAFKA_CONF_OK) {
    std::fprintf(stderr, "rapport-kafka-mock: %s\n", error);
    return 1;
  }
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, error, sizeof error);
  if (rk == nullptr) {
    std::fprintf(stderr, "rapport-kafka-mock: cannot create the client handle: %s\n", error);
    return 1;
  }
  rd_kafka_mock_cluster_t* cluster = rd_kafka_mock_cluster_new(rk, brokers);
  if (cluster == nullptr) {
    std::fprintf(stderr, "rapport-kafka-mock: cannot start the mock cluster\n");
    rd_kafka_destroy(rk);
    return 1;
  }
  for (const TopicSpec& spec : specs) {
    const rd_kafka_resp_err_t err =
        rd_kafka_mock_topic_create(cluster, spec.name.c_str(), spec.partitions, brokers < 3 ? brokers : 3);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      std::fprintf(stderr, "rapport-kafka-mock: cannot create topic %s: %s\n", spec.name.c_str(),
                   rd_kafka_err2str(err));
      rd_kafka_mock_cluster_destroy(cluster);
      rd_kafka_destroy(rk);
      return 1;
    }
  }
  std::printf("%s\n", rd_kafka_mock_cluster_bootstraps(cluster));
  std::fflush(stdout);

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);

  rd_kafka_mock_cluster_destroy(cluster);
  rd_kafka_destroy(rk);
  return 0;
}
