#include "ingest/kafka/restore.h"

#include <librdkafka/rdkafka.h>

#include <memory>
#include <vector>

#include "ingest/kafka/snapshot_record.h"

namespace rapport::kafka {
namespace {

struct Held {
  std::optional<CustomerState> state;
  std::uint64_t version = 0;
};

struct Folder {
  std::map<std::string, Held> held;                 // committed: a marker was read after them
  std::vector<std::pair<std::string, Held>> after;  // snapshots since the last marker
  RestoredPartition out;

  std::uint64_t version_of(const std::string& key) const {
    std::uint64_t v = 0;
    if (auto it = held.find(key); it != held.end()) v = it->second.version;
    for (const auto& [k, h] : after) {
      if (k == key && h.version > v) v = h.version;
    }
    return v;
  }

  void skip(std::string message) {
    ++out.undecodable;
    if (out.first_undecodable.empty()) out.first_undecodable = std::move(message);
  }

  void add(std::string_view key, const void* payload, std::size_t len, std::int64_t offset) {
    ++out.records;
    if (key == kPositionKey) {
      if (payload == nullptr) return;  // a marker is never erased; ignore a null one
      Result<std::uint64_t> position = decode_position({static_cast<const char*>(payload), len});
      if (!position) return skip("offset " + std::to_string(offset) + ": " + position.message());
      if (out.input_offset && *position < *out.input_offset) {
        ++out.stale;
        return;
      }
      for (auto& [k, h] : after) held[k] = std::move(h);
      after.clear();
      out.input_offset = *position;
      return;
    }
    const std::string id(key);
    if (payload == nullptr) {  // tombstone: erased (every record published before it was delivered)
      std::erase_if(after, [&](const auto& entry) { return entry.first == id; });
      Held& h = held[id];
      h.state.reset();
      return;
    }
    Result<Snapshot> snapshot = decode_snapshot(key, {static_cast<const char*>(payload), len});
    if (!snapshot) return skip("offset " + std::to_string(offset) + ": " + snapshot.message());
    if (snapshot->version < version_of(id)) {
      ++out.stale;
      return;
    }
    after.emplace_back(id, Held{std::move(snapshot->state), snapshot->version});
  }

  RestoredPartition finish() {
    out.incomplete = after.size();
    for (auto& [id, h] : held) out.customers.emplace(id, std::move(h.state));
    return std::move(out);
  }
};

struct ConsumerHandle {
  rd_kafka_t* rk = nullptr;
  ~ConsumerHandle() {
    if (rk != nullptr) {
      rd_kafka_consumer_close(rk);
      rd_kafka_destroy(rk);
    }
  }
};

}  // namespace

Result<RestoredPartition> restore_partition(const RestoreOptions& options,
                                            const std::function<void(const RestoreProgress&)>& progress) {
  const std::string where =
      "restore of changes topic \"" + options.topic + "\" partition " + std::to_string(options.partition);
  if (options.client.brokers.empty()) return Status::Error(where + ": no brokers");
  const auto deadline = std::chrono::steady_clock::now() + options.timeout;
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  Status s;
  auto set = [&](const std::string& name, const std::string& value) {
    if (s && rd_kafka_conf_set(conf, name.c_str(), value.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      s = Status::Error("kafka property \"" + name + "\" = \"" + value + "\": " + err);
    }
  };
  set("bootstrap.servers", options.client.brokers);
  for (const auto& [name, value] : options.client.properties) set(name, value);
  // This reader joins no group and commits nothing: it only reads partition p with assign().
  set("group.id", "rapport-restore");
  set("enable.auto.commit", "false");
  set("enable.auto.offset.store", "false");
  set("auto.offset.reset", "earliest");
  if (!s) {
    rd_kafka_conf_destroy(conf);
    return Status::Error(where + ": " + s.message());
  }
  ConsumerHandle consumer;
  consumer.rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  if (consumer.rk == nullptr) {
    rd_kafka_conf_destroy(conf);
    return Status::Error(where + ": cannot create a consumer: " + err);
  }
  const auto remaining_ms = [&] {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    return static_cast<int>(std::max<std::int64_t>(0, left.count()));
  };
  std::int64_t low = 0, high = 0;
  for (;;) {  // the first metadata round trip may fail while the cluster starts
    const rd_kafka_resp_err_t e =
        rd_kafka_query_watermark_offsets(consumer.rk, options.topic.c_str(), options.partition, &low, &high,
                                         std::max(1, std::min(remaining_ms(), 5000)));
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) break;
    if (remaining_ms() == 0) return Status::Error(where + ": cannot read its offsets: " + rd_kafka_err2str(e));
    rd_kafka_poll(consumer.rk, 200);
  }
  Folder folder;
  RestoreProgress p{options.partition, 0, static_cast<std::uint64_t>(high - low)};
  if (high > low) {
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, options.topic.c_str(), options.partition)->offset = low;
    const rd_kafka_resp_err_t e = rd_kafka_assign(consumer.rk, list);
    rd_kafka_topic_partition_list_destroy(list);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) return Status::Error(where + ": cannot assign: " + rd_kafka_err2str(e));
    std::int64_t next = low;
    while (next < high) {
      if (remaining_ms() == 0) {
        return Status::Error(where + ": timed out after " + std::to_string(options.timeout.count()) + " ms at offset " +
                             std::to_string(next) + " of " + std::to_string(high));
      }
      rd_kafka_message_t* m = rd_kafka_consumer_poll(consumer.rk, std::min(remaining_ms(), 500));
      if (m == nullptr) continue;
      std::unique_ptr<rd_kafka_message_t, void (*)(rd_kafka_message_t*)> guard(m, rd_kafka_message_destroy);
      if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) continue;
      if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        const std::string why = rd_kafka_message_errstr(m);
        if (m->err == RD_KAFKA_RESP_ERR__TRANSPORT || m->err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) continue;
        return Status::Error(where + ": " + why);
      }
      if (m->offset < next) continue;
      next = m->offset + 1;
      folder.add({static_cast<const char*>(m->key), m->key_len}, m->payload, m->len, m->offset);
      p.read = static_cast<std::uint64_t>(next - low);
      if (progress && options.progress_every > 0 && p.read % options.progress_every == 0) progress(p);
    }
  }
  if (progress) progress(p);
  return folder.finish();
}

}  // namespace rapport::kafka
