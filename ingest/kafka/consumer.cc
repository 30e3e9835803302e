#include "ingest/kafka/consumer.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>

#include "common/log.h"
#include "scoring/event.h"

namespace rapport {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::string_view kReserved[] = {"bootstrap.servers",
                                          "group.id",
                                          "enable.auto.commit",
                                          "enable.auto.offset.store",
                                          "partition.assignment.strategy",
                                          "enable.partition.eof",
                                          "auto.offset.reset"};

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Sets one property; the message names the key.
Status set_property(rd_kafka_conf_t* conf, const std::string& key, const std::string& value) {
  char error[512];
  if (rd_kafka_conf_set(conf, key.c_str(), value.c_str(), error, sizeof error) != RD_KAFKA_CONF_OK) {
    return Status::Error("[kafka.properties] " + key + ": " + error);
  }
  return Status::Ok();
}

// The consumer's configuration: the options, the pass-through properties, then the settings it relies on.
Result<rd_kafka_conf_t*> make_conf(const KafkaOptions& options) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  auto fail = [&](Status s) -> Result<rd_kafka_conf_t*> {
    rd_kafka_conf_destroy(conf);
    return s;
  };
  for (const auto& [key, value] : options.properties) {
    if (Status s = set_property(conf, key, value); !s) return fail(s);
  }
  const std::pair<std::string, std::string> own[] = {
      {"bootstrap.servers", options.brokers},
      {"group.id", options.group_id},
      {"enable.auto.commit", "false"},        // offsets live in LMDB; Kafka's are written for lag only
      {"enable.auto.offset.store", "false"},  // (explicit commits of the stored positions)
      {"partition.assignment.strategy", "cooperative-sticky"},
      {"enable.partition.eof", "false"},
      // A start offset the topic no longer holds (retention deleted it while this partition was behind or
      // unowned, or the topic was recreated) resumes at the earliest record retained: only what retention
      // deleted is lost. librdkafka's default ("latest") would skip everything still retained.
      {"auto.offset.reset", "earliest"},
  };
  for (const auto& [key, value] : own) {
    if (Status s = set_property(conf, key, value); !s) return fail(s);
  }
  return conf;
}

bool is_cloud_event(const rd_kafka_message_t* m, std::string_view value) {
  rd_kafka_headers_t* headers = nullptr;
  if (rd_kafka_message_headers(m, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR && headers != nullptr) {
    const void* v = nullptr;
    size_t size = 0;
    if (rd_kafka_header_get_last(headers, "content-type", &v, &size) == RD_KAFKA_RESP_ERR_NO_ERROR && v != nullptr) {
      const std::string_view type(static_cast<const char*>(v), size);
      if (type.rfind("application/cloudevents", 0) == 0) return true;
    }
  }
  return value.find("\"specversion\"") != std::string_view::npos;
}

// Collects the single item of a structured CloudEvent.
class OneItem final : public DecodeSink {
 public:
  void on_event(std::size_t, const Event& e) override {
    ok = true;
    event = e;
  }
  void on_reject(std::size_t, RejectReason r, std::string_view m) override {
    ok = false;
    reason = r;
    message.assign(m);
  }
  bool ok = false;
  Event event;
  RejectReason reason = RejectReason::kMalformedJson;
  std::string message;
};

}  // namespace

std::vector<std::string_view> kafka_reserved_properties() { return {std::begin(kReserved), std::end(kReserved)}; }

Status validate_kafka_options(const KafkaOptions& options) {
  if (!options.enabled()) return Status::Ok();
  if (options.topic.empty()) return Status::Error("[kafka] topic is required when kafka.brokers is set");
  if (options.group_id.empty()) return Status::Error("[kafka] group_id is required when kafka.brokers is set");
  if (options.max_chunk_records == 0) return Status::Error("[kafka] max_chunk_records must be at least 1");
  if (options.changes_topic == options.topic) {
    return Status::Error("[kafka] changes_topic must differ from the input topic " + options.topic);
  }
  for (const auto& [key, value] : options.properties) {
    for (std::string_view reserved : kReserved) {
      if (key == reserved) {
        return Status::Error("[kafka.properties] " + key +
                             " is set by rapportd (brokers, group_id and exactly-once offsets); remove it");
      }
    }
  }
  auto conf = make_conf(options);
  if (!conf.ok()) return conf.status();
  rd_kafka_conf_destroy(*conf);
  return Status::Ok();
}

struct KafkaConsumer::Impl {
  struct Completion {
    std::int32_t partition = 0;
    std::uint64_t epoch = 0;
    std::int64_t next_offset = 0;
    Status status;
  };
  // Shared with the submissions' completion callbacks, which may run after the consumer is gone.
  struct Inbox {
    std::mutex mutex;
    std::condition_variable arrived;  // a completion was added
    std::vector<Completion> completions;
  };

  // One assigned partition.
  struct Partition {
    std::uint64_t epoch = 0;                // of its assignment: completions of an older one are ignored
    std::optional<std::int64_t> stored;     // next offset stored in LMDB (nullopt: none yet)
    std::int64_t expected = -1;             // next offset to read (-1: whatever comes first)
    std::unique_ptr<Submission> chunk;      // records read, not yet handed to the writer
    std::vector<std::uint8_t> chunk_types;  // event types of chunk->events (outcome metrics)
    std::int64_t chunk_next = 0;            // offset after the chunk's last record
    bool in_flight = false;                 // a chunk is in the writer's hands
    bool paused = false;
    Clock::time_point retry_at{};  // after a failed commit: resume then
  };

  Impl(KafkaConsumer& o, KafkaOptions opts, DecodeOptions decode_options, KafkaPartitions& parts, FrontStats& st)
      : owner(o), options(std::move(opts)), decoder(without_identify(decode_options)), partitions(parts), stats(st) {}

  // Identify records are dead-lettered: a merge moves customers across partitions, which instances own apart.
  static DecodeOptions without_identify(DecodeOptions decode) {
    decode.identify = false;
    decode.identify_refusal = kIdentifyKafkaRefusal;
    return decode;
  }

  KafkaConsumer& owner;
  const KafkaOptions options;
  Decoder decoder;
  KafkaPartitions& partitions;
  FrontStats& stats;
  rd_kafka_t* rk = nullptr;
  std::thread thread;
  std::atomic<bool> stopping{false};
  std::shared_ptr<Inbox> inbox = std::make_shared<Inbox>();
  std::uint64_t next_epoch = 1;
  std::map<std::int32_t, Partition> held;  // consumer thread only
  mutable std::mutex lag_mutex;
  std::vector<PartitionLag> lags;  // guarded by lag_mutex
  Clock::time_point next_lag_update{};

  static void rebalance_cb(rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* list,
                           void* opaque) {
    static_cast<Impl*>(opaque)->rebalance(rk, err, list);
  }

  void rebalance(rd_kafka_t* handle, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* list) {
    owner.rebalances_.fetch_add(1, std::memory_order_relaxed);
    const bool cooperative = std::string_view(rd_kafka_rebalance_protocol(handle)) == "COOPERATIVE";
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      // Start each partition at the offset its owner's state reflects, after the owner took it over (a
      // restore when it comes from another instance): "seek" through the assignment.
      rd_kafka_topic_partition_list_t* assign = rd_kafka_topic_partition_list_new(list->cnt);
      for (int i = 0; i < list->cnt; ++i) {
        const rd_kafka_topic_partition_t& tp = list->elems[i];
        auto stored = partitions.take_over(tp.topic, tp.partition);
        if (!stored.ok()) {
          log_error("kafka: partition " + std::to_string(tp.partition) + " not consumed: " + stored.message());
          continue;
        }
        Partition& p = held[tp.partition];
        p = Partition{};
        p.epoch = next_epoch++;
        p.stored = *stored;
        p.expected = stored->value_or(-1);
        rd_kafka_topic_partition_list_add(assign, tp.topic, tp.partition)->offset =
            stored->value_or(RD_KAFKA_OFFSET_BEGINNING);
        log_info("kafka: assigned",
                 {{"topic", std::string(tp.topic)},
                  {"partition", static_cast<std::int64_t>(tp.partition)},
                  {"offset", stored->has_value() ? std::to_string(**stored) : std::string("beginning")}});
      }
      rd_kafka_error_t* error = nullptr;
      if (cooperative) {
        error = rd_kafka_incremental_assign(handle, assign);
      } else {
        // An eager assignor (set through the properties) hands over the whole assignment.
        const rd_kafka_resp_err_t e = rd_kafka_assign(handle, assign);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) error = rd_kafka_error_new(e, "%s", rd_kafka_err2str(e));
      }
      if (error != nullptr) {
        log_error(std::string("kafka: assign failed: ") + rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
      }
      rd_kafka_topic_partition_list_destroy(assign);
    } else {
      // Revoked (or lost): forget what was read and not handed over; wait for the chunk in a writer's
      // hands (it commits with its offset, and its owner publishes it), then let the owner let it go.
      for (int i = 0; i < list->cnt; ++i) {
        const std::int32_t partition = list->elems[i].partition;
        if (const auto found = held.find(partition); found != held.end()) wait_in_flight(partition, found->second);
        partitions.let_go(options.topic, partition);
        held.erase(partition);
        log_info("kafka: revoked", {{"partition", static_cast<std::int64_t>(partition)}});
      }
      if (cooperative) {
        if (rd_kafka_error_t* error = rd_kafka_incremental_unassign(handle, list); error != nullptr) {
          log_error(std::string("kafka: unassign failed: ") + rd_kafka_error_string(error));
          rd_kafka_error_destroy(error);
        }
      } else {
        held.clear();
        rd_kafka_assign(handle, nullptr);
      }
      std::lock_guard lock(lag_mutex);
      std::erase_if(lags, [&](const PartitionLag& l) { return !held.contains(l.partition); });
    }
  }

  // Waits until the chunk of `partition` in a writer's hands (if any) has completed. Completions of other
  // partitions stay in the inbox for take_completions. Bounded: a writer that takes longer is logged.
  void wait_in_flight(std::int32_t partition, Partition& p) {
    if (!p.in_flight) return;
    const auto deadline = Clock::now() + std::chrono::seconds(120);
    std::unique_lock lock(inbox->mutex);
    for (;;) {
      auto& all = inbox->completions;
      const auto mine = std::find_if(
          all.begin(), all.end(), [&](const Completion& c) { return c.partition == partition && c.epoch == p.epoch; });
      if (mine != all.end()) {
        if (mine->status.ok()) p.stored = mine->next_offset;
        all.erase(mine);
        p.in_flight = false;
        return;
      }
      if (inbox->arrived.wait_until(lock, deadline) == std::cv_status::timeout) {
        log_warn("kafka: partition " + std::to_string(partition) +
                 " revoked while its chunk is still in the writer's hands after 120 s");
        return;
      }
    }
  }

  void pause(std::int32_t partition, Partition& p, bool paused) {
    if (p.paused == paused) return;
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, options.topic.c_str(), partition);
    const rd_kafka_resp_err_t err = paused ? rd_kafka_pause_partitions(rk, list) : rd_kafka_resume_partitions(rk, list);
    rd_kafka_topic_partition_list_destroy(list);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) p.paused = paused;
  }

  void reject(Submission& s, std::uint32_t index, RejectReason reason, const std::string& where,
              std::string_view message, std::string_view payload) {
    stats.rejected(Transport::kKafka, reason).Increment();
    owner.bad_records_.fetch_add(1, std::memory_order_relaxed);
    Rejection r;
    r.index = index;
    r.reason = reason;
    r.message = where + ": " + std::string(message);
    r.payload = dead_letter_payload(payload, kMaxPayloadBytes);
    s.rejections.push_back(std::move(r));
  }

  void on_record(const rd_kafka_message_t* m) {
    const auto found = held.find(m->partition);
    if (found == held.end()) return;  // not (or no longer) ours
    Partition& p = found->second;
    if (p.expected >= 0 && m->offset < p.expected) return;  // already read (a redelivery after a rewind)
    p.expected = m->offset + 1;
    if (!p.chunk) {
      p.chunk = std::make_unique<Submission>();
      p.chunk->transport = Transport::kKafka;
      p.chunk->received_at = Clock::now();
      p.chunk_types.clear();
    }
    Submission& s = *p.chunk;
    p.chunk_next = m->offset + 1;
    owner.records_.fetch_add(1, std::memory_order_relaxed);
    stats.received(Transport::kKafka).Increment();
    const auto index = static_cast<std::uint32_t>(s.events.size() + s.rejections.size());
    const std::string where = "topic " + options.topic + " partition " + std::to_string(m->partition) + " offset " +
                              std::to_string(m->offset);
    const std::string_view value(static_cast<const char*>(m->payload), m->payload == nullptr ? 0 : m->len);
    Event event;
    if (value.empty()) {
      reject(s, index, RejectReason::kMissingField, where, "the record has no value (one event per record)", value);
      return;
    }
    if (is_cloud_event(m, value)) {
      OneItem item;
      decoder.decode_body(value, BodyFormat::kCloudEvent, now_ms(), item);
      if (!item.ok) return reject(s, index, item.reason, where, item.message, value);
      event = std::move(item.event);
    } else {
      RejectReason reason = RejectReason::kMalformedJson;
      std::string_view message;
      if (!decoder.decode_line(value, now_ms(), event, reason, message)) {
        return reject(s, index, reason, where, message, value);
      }
    }
    const std::uint32_t owner_partition = partitions.partition_of(event.customer_id.view());
    if (owner_partition != static_cast<std::uint32_t>(m->partition)) {
      return reject(s, index, RejectReason::kOutOfRange, where,
                    "customer_id " + std::string(event.customer_id.view()) + " belongs to partition " +
                        std::to_string(owner_partition) +
                        ": key each record by its customer_id and use the default (murmur2) partitioner",
                    value);
    }
    p.chunk_types.push_back(static_cast<std::uint8_t>(event.type));
    s.events.push_back(std::move(event));
    s.event_index.push_back(index);
  }

  // Hands each partition's chunk to its writer when none is in flight; pauses partitions whose chunk is full.
  void hand_over() {
    const auto now = Clock::now();
    for (auto& [partition, p] : held) {
      if (p.retry_at != Clock::time_point{}) {
        if (now < p.retry_at) continue;
        p.retry_at = {};
        pause(partition, p, false);
      }
      if (!p.chunk) continue;
      const std::size_t n = p.chunk->events.size() + p.chunk->rejections.size();
      if (!p.in_flight && submit(partition, p)) {
        pause(partition, p, false);
        continue;
      }
      if (n >= options.max_chunk_records) pause(partition, p, true);
    }
  }

  bool submit(std::int32_t partition, Partition& p) {
    Submission& s = *p.chunk;
    s.source = SourceOffset{options.topic, partition, p.chunk_next};
    const std::uint64_t epoch = p.epoch;
    const std::int64_t next = p.chunk_next;
    auto types = std::make_shared<std::vector<std::uint8_t>>(p.chunk_types);
    std::vector<std::uint8_t> channels;
    channels.reserve(s.events.size());
    for (const Event& e : s.events) channels.push_back(static_cast<std::uint8_t>(classify_channel(e.channel.view())));
    s.done = [box = inbox, &st = stats, partition, epoch, next, types,
              channels = std::move(channels)](SubmissionResult&& result) {
      if (result.status.ok()) {
        for (std::size_t i = 0; i < result.outcomes.size() && i < types->size(); ++i) {
          const auto type = static_cast<EventType>((*types)[i]);
          if (result.outcomes[i] == Outcome::kAccepted) {
            st.accepted(Transport::kKafka, type).Increment();
            st.by_channel(static_cast<Channel>(channels[i])).Increment();
          } else {
            st.duplicate(Transport::kKafka, type).Increment();
          }
        }
      }
      {
        std::lock_guard lock(box->mutex);
        box->completions.push_back(Completion{partition, epoch, next, result.status});
      }
      box->arrived.notify_all();
    };
    if (!partitions.try_submit(static_cast<std::uint32_t>(partition), p.chunk)) {
      s.done = nullptr;
      return false;
    }
    p.chunk.reset();
    p.in_flight = true;
    return true;
  }

  void take_completions() {
    std::vector<Completion> done;
    {
      std::lock_guard lock(inbox->mutex);
      done.swap(inbox->completions);
    }
    for (Completion& c : done) {
      const auto found = held.find(c.partition);
      if (found == held.end() || found->second.epoch != c.epoch) continue;  // revoked since
      Partition& p = found->second;
      p.in_flight = false;
      if (c.status.ok()) {
        p.stored = c.next_offset;
        commit_to_kafka(c.partition, c.next_offset);
        continue;
      }
      // Nothing of the chunk was stored: read again from the stored offset, after a pause.
      stats.refused(Transport::kKafka).Increment();
      log_warn("kafka: partition " + std::to_string(c.partition) + ": " + c.status.message() + " (read again from " +
               (p.stored ? "offset " + std::to_string(*p.stored) : std::string("the beginning")) + " in 1 s)");
      p.chunk.reset();
      p.expected = p.stored.value_or(-1);
      rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
      rd_kafka_topic_partition_list_add(list, options.topic.c_str(), c.partition)->offset =
          p.stored.value_or(RD_KAFKA_OFFSET_BEGINNING);
      if (rd_kafka_error_t* error = rd_kafka_seek_partitions(rk, list, 5000); error != nullptr) {
        log_error(std::string("kafka: seek failed: ") + rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
      }
      rd_kafka_topic_partition_list_destroy(list);
      pause(c.partition, p, true);
      p.retry_at = Clock::now() + std::chrono::seconds(1);
    }
  }

  // Lag monitoring only: Kafka's committed offset follows the stored one (never read back).
  void commit_to_kafka(std::int32_t partition, std::int64_t next) {
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, options.topic.c_str(), partition)->offset = next;
    (void)rd_kafka_commit(rk, list, /*async=*/1);
    rd_kafka_topic_partition_list_destroy(list);
  }

  void update_lag() {
    const auto now = Clock::now();
    if (now < next_lag_update) return;
    next_lag_update = now + std::chrono::milliseconds(500);
    std::vector<PartitionLag> fresh;
    for (const auto& [partition, p] : held) {
      std::int64_t low = 0, high = 0;
      if (rd_kafka_get_watermark_offsets(rk, options.topic.c_str(), partition, &low, &high) !=
              RD_KAFKA_RESP_ERR_NO_ERROR ||
          high < 0) {
        continue;  // no fetch response yet
      }
      const std::int64_t from = p.stored ? *p.stored : std::max<std::int64_t>(low, 0);
      fresh.push_back(PartitionLag{partition, std::max<std::int64_t>(high - from, 0)});
    }
    std::lock_guard lock(lag_mutex);
    lags = std::move(fresh);
  }

  void run() {
    while (!stopping.load(std::memory_order_acquire)) {
      // Short waits while a chunk is being committed or waits to be handed over: its completion is
      // noticed here, not by librdkafka, and the next chunk should follow it promptly.
      bool busy = false;
      for (const auto& [partition, p] : held) busy = busy || p.in_flight || p.chunk != nullptr;
      rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, busy ? 2 : 100);
      // Take what is already there without waiting, up to a chunk's worth.
      for (std::size_t n = 0; m != nullptr; ++n) {
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
          on_record(m);
        } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
          log_warn(std::string("kafka: ") + rd_kafka_message_errstr(m));
        }
        rd_kafka_message_destroy(m);
        if (n >= options.max_chunk_records) break;
        m = rd_kafka_consumer_poll(rk, 0);
      }
      take_completions();
      hand_over();
      update_lag();
    }
  }
};

KafkaConsumer::KafkaConsumer(KafkaOptions options, DecodeOptions decode, KafkaPartitions& partitions, FrontStats& stats)
    : impl_(std::make_unique<Impl>(*this, std::move(options), decode, partitions, stats)) {}

KafkaConsumer::~KafkaConsumer() { stop(); }

Status KafkaConsumer::start(std::chrono::milliseconds metadata_timeout) {
  Impl& d = *impl_;
  if (Status s = validate_kafka_options(d.options); !s) return s;
  auto conf = make_conf(d.options);
  if (!conf.ok()) return conf.status();
  rd_kafka_conf_set_opaque(*conf, &d);
  rd_kafka_conf_set_rebalance_cb(*conf, &Impl::rebalance_cb);
  char error[512];
  d.rk = rd_kafka_new(RD_KAFKA_CONSUMER, *conf, error, sizeof error);
  if (d.rk == nullptr) {
    rd_kafka_conf_destroy(*conf);
    return Status::Error(std::string("kafka: cannot create the consumer: ") + error);
  }
  auto fail = [&](std::string message) {
    rd_kafka_destroy(d.rk);
    d.rk = nullptr;
    return Status::Error(std::move(message));
  };
  // The topic must have exactly the engine's partitions (Kafka partition k is engine partition k).
  const auto deadline = Clock::now() + metadata_timeout;
  // A topic's partition count (-1 when unknown by the deadline; `why` then says why).
  auto partition_count = [&](const std::string& name, std::string& why) {
    int count = -1;
    why = "no answer from " + d.options.brokers;
    rd_kafka_topic_t* topic = rd_kafka_topic_new(d.rk, name.c_str(), nullptr);
    while (count < 0 && Clock::now() < deadline) {
      const rd_kafka_metadata_t* md = nullptr;
      const rd_kafka_resp_err_t err = rd_kafka_metadata(d.rk, 0, topic, &md, 5000);
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1) {
        if (md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR && md->topics[0].partition_cnt > 0) {
          count = md->topics[0].partition_cnt;
        } else {
          why = rd_kafka_err2str(md->topics[0].err);
        }
      } else if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        why = rd_kafka_err2str(err);
      }
      if (md != nullptr) rd_kafka_metadata_destroy(md);
      if (count < 0) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    rd_kafka_topic_destroy(topic);
    return count;
  };
  std::string why;
  const int topic_partitions = partition_count(d.options.topic, why);
  if (topic_partitions < 0) return fail("kafka: cannot read topic " + d.options.topic + "'s metadata: " + why);
  if (static_cast<std::uint32_t>(topic_partitions) != d.partitions.count()) {
    return fail("kafka: topic " + d.options.topic + " has " + std::to_string(topic_partitions) +
                " partitions and the state dir " + std::to_string(d.partitions.count()) +
                ": set [storage] partitions = " + std::to_string(topic_partitions) +
                " (Kafka partition k is engine partition k; rapportctl migrate --partitions " +
                std::to_string(topic_partitions) + " for an existing state dir)");
  }
  // The changes topic's partition p holds input partition p's customers: the same partition count.
  if (!d.options.changes_topic.empty()) {
    const int changes_partitions = partition_count(d.options.changes_topic, why);
    if (changes_partitions < 0) {
      return fail("kafka: cannot read the changes topic " + d.options.changes_topic + "'s metadata: " + why +
                  " (create it with " + std::to_string(topic_partitions) +
                  " partitions and cleanup.policy=compact, or set [kafka] changes_topic)");
    }
    if (changes_partitions != topic_partitions) {
      return fail("kafka: the changes topic " + d.options.changes_topic + " has " + std::to_string(changes_partitions) +
                  " partitions and the input topic " + d.options.topic + " " + std::to_string(topic_partitions) +
                  ": create it before rapportd starts, with " + std::to_string(topic_partitions) +
                  " partitions and cleanup.policy=compact");
    }
  }
  rd_kafka_poll_set_consumer(d.rk);
  rd_kafka_topic_partition_list_t* subscription = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(subscription, d.options.topic.c_str(), RD_KAFKA_PARTITION_UA);
  const rd_kafka_resp_err_t err = rd_kafka_subscribe(d.rk, subscription);
  rd_kafka_topic_partition_list_destroy(subscription);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return fail("kafka: cannot subscribe to " + d.options.topic + ": " + rd_kafka_err2str(err));
  }
  log_info("kafka: consuming",
           {{"topic", d.options.topic}, {"group", d.options.group_id}, {"partitions", std::int64_t{topic_partitions}}});
  d.thread = std::thread([&d] { d.run(); });
  return Status::Ok();
}

void KafkaConsumer::stop() {
  Impl& d = *impl_;
  if (d.rk == nullptr) return;
  d.stopping.store(true, std::memory_order_release);
  if (d.thread.joinable()) d.thread.join();
  // Leaves the group (the revoke runs the rebalance callback here); chunks not handed over are dropped:
  // their records are read again from the stored offsets.
  (void)rd_kafka_consumer_close(d.rk);
  rd_kafka_destroy(d.rk);
  d.rk = nullptr;
}

std::vector<KafkaConsumer::PartitionLag> KafkaConsumer::lag() const {
  std::lock_guard lock(impl_->lag_mutex);
  return impl_->lags;
}

}  // namespace rapport
