#include "daemon/kafka_cluster.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "common/log.h"
#include "ingest/net/http_client.h"

namespace rapport {

namespace {
constexpr std::chrono::milliseconds kPollInterval{200};
constexpr std::chrono::milliseconds kPublishTimeout{5000};
}  // namespace

Result<std::string> advertised_http_address(const KafkaClusterOptions& options, std::string_view http_endpoint,
                                            bool tls, std::string_view machine) {
  if (!options.advertised_url.empty()) {
    std::string_view url = options.advertised_url;
    while (url.ends_with('/')) url.remove_suffix(1);
    auto parsed = parse_http_url(url);
    if (!parsed.ok()) return Status::Error("'kafka.advertised_url': " + parsed.message());
    if (!parsed->base_path.empty()) {
      return Status::Error("'kafka.advertised_url' \"" + options.advertised_url + "\" must not have a path");
    }
    return std::string(url);
  }
  const auto colon = http_endpoint.rfind(':');
  if (http_endpoint.empty() || colon == std::string_view::npos || colon == 0) {
    return Status::Error(
        "Kafka mode needs an HTTP address the other members can redirect to: enable the HTTP listener "
        "('server.http') or set 'kafka.advertised_url'");
  }
  std::string_view host = http_endpoint.substr(0, colon);
  const std::string_view port = http_endpoint.substr(colon + 1);
  // Bound to every address: the others reach this machine by its name.
  if (host == "0.0.0.0" || host == "[::]") host = machine;
  return std::string(tls ? "https://" : "http://") + std::string(host) + ":" + std::string(port);
}

KafkaCluster::KafkaCluster(const KafkaClusterOptions& options, std::string http_address, std::uint32_t partitions,
                           Assignment assignment, prometheus::Registry& registry)
    : instance_(options.instance),
      http_address_(std::move(http_address)),
      assignment_(std::move(assignment)),
      cluster_(std::make_shared<Cluster>(Member{options.instance, http_address_, {}}, partitions)) {
  members_ =
      &prometheus::BuildGauge()
           .Name("rapport_kafka_members")
           .Help("Members of the consumer group this instance knows of (itself included), from the members topic")
           .Register(registry)
           .Add({});
  unowned_ = &prometheus::BuildGauge()
                  .Name("rapport_kafka_unowned_partitions")
                  .Help("Partitions no member claims (rebalancing): their customers answer 503")
                  .Register(registry)
                  .Add({});
  auto& records = prometheus::BuildCounter()
                      .Name("rapport_kafka_member_records_total")
                      .Help(
                          "Member records: published by this instance (outcome published, error) and read but "
                          "not understood (bad) or of another process under this instance's name (conflict)")
                      .Register(registry);
  published_ = &records.Add({{"outcome", "published"}});
  publish_errors_ = &records.Add({{"outcome", "error"}});
  bad_records_ = &records.Add({{"outcome", "bad"}});
  conflicts_ = &records.Add({{"outcome", "conflict"}});
  members_->Set(1);
  unowned_->Set(partitions);
}

Result<std::unique_ptr<KafkaCluster>> KafkaCluster::start(const KafkaOptions& kafka, const KafkaClusterOptions& options,
                                                          std::string http_address, std::uint32_t partitions,
                                                          Assignment assignment, prometheus::Registry& registry) {
  std::unique_ptr<KafkaCluster> self(
      new KafkaCluster(options, std::move(http_address), partitions, std::move(assignment), registry));
  auto topic = kafka::MembersTopic::start(
      kafka::ClientOptions{kafka.brokers, kafka.properties}, options.members_topic,
      [raw = self.get()](std::string_view key, std::optional<std::string_view> value) { raw->on_record(key, value); });
  if (!topic.ok()) return Status::Error("members topic \"" + options.members_topic + "\": " + topic.message());
  self->topic_ = std::move(topic.value());
  self->thread_ = std::thread([raw = self.get()] { raw->run(); });
  const Member me = self->cluster_->self();
  log_info("kafka: member of the group",
           {{"instance", me.instance}, {"http_address", me.http_address}, {"members_topic", options.members_topic}});
  return self;
}

KafkaCluster::~KafkaCluster() { stop(); }

void KafkaCluster::on_record(std::string_view key, std::optional<std::string_view> value) {
  if (!value) {
    cluster_->remove(key);
    return;
  }
  auto member = decode_member(key, *value);
  if (!member.ok()) {
    bad_records_->Increment();
    log_warn("kafka: members topic: ignoring a record: " + member.message());
    return;
  }
  // Another live process publishing under this instance's name (after this one's own record came back):
  // the names are not unique, and each ignores the other's record as its own.
  if (member->instance == instance_) {
    if (member->http_address == http_address_) {
      own_read_back_ = true;
    } else if (own_read_back_) {
      conflicts_->Increment();
      if (!conflict_logged_) {
        conflict_logged_ = true;
        log_error("kafka: another member of the group publishes under this instance's name \"" + instance_ +
                  "\" (its address " + member->http_address + ", this one's " + http_address_ +
                  "): give each instance its own [kafka] instance, or their redirects go astray");
      }
    }
  }
  cluster_->update(*member);
}

void KafkaCluster::sync() {
  std::lock_guard sync_lock(sync_mutex_);
  const auto held = assignment_();
  std::vector<std::uint32_t> partitions;
  partitions.reserve(held.size());
  for (const auto& h : held) partitions.push_back(static_cast<std::uint32_t>(h.partition));
  std::sort(partitions.begin(), partitions.end());
  if (partitions != cluster_->self().partitions) {
    cluster_->set_own(partitions);
    {
      std::lock_guard lock(mutex_);
      publish_due_ = true;
    }
    wake_.notify_all();
  }
  for (const auto& h : held) cluster_->set_lag(static_cast<std::uint32_t>(h.partition), h.lag);
  members_->Set(static_cast<double>(cluster_->member_count()));
  unowned_->Set(cluster_->unowned_partitions());
}

bool KafkaCluster::publish_if_due() {
  {
    std::lock_guard lock(mutex_);
    if (!publish_due_) return true;
    publish_due_ = false;
  }
  const Member me = cluster_->self();
  if (Status s = topic_->publish(instance_, encode_member(me), kPublishTimeout); !s.ok()) {
    publish_errors_->Increment();
    log_warn("kafka: cannot publish this member's record (retrying): " + s.message());
    std::lock_guard lock(mutex_);
    publish_due_ = true;
    return false;
  }
  published_->Increment();
  std::string list;
  for (std::uint32_t p : me.partitions) list += (list.empty() ? "" : ",") + std::to_string(p);
  log_info("kafka: published this member's partitions", {{"instance", me.instance}, {"partitions", list}});
  return true;
}

void KafkaCluster::run() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    lock.unlock();
    sync();
    const bool published = publish_if_due();
    lock.lock();
    // A changed assignment is published at once; a failed publication is retried after the interval.
    wake_.wait_for(lock, kPollInterval, [&] { return stopping_ || (published && publish_due_); });
  }
}

void KafkaCluster::stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (!topic_) return;
  if (Status s = topic_->publish(instance_, std::nullopt, kPublishTimeout); !s.ok()) {
    publish_errors_->Increment();
    log_warn("kafka: cannot publish that this member left (the others learn it at the next rebalance): " + s.message());
  } else {
    published_->Increment();
  }
  topic_.reset();
}

}  // namespace rapport
