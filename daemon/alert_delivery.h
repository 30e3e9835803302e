// AlertDelivery: empties the partitions' alerts outboxes (storage/outbox.h) by
// POSTing each entry to its alert's URL, signed (daemon/alert_payload.h).
//
// One dispatcher thread scans each partition's pending outbox (the oldest
// entries first, a bounded page per partition per round), hands entries that
// are due to a pool of delivery threads, at most max_per_url at once per URL,
// and records each outcome:
//   2xx      delivered: the entry is deleted in the partition's next commit (Store::queue_outbox_change),
//            or by a writer job when no batch comes first (LMDB has one writer per environment);
//   410      the alert is disabled (logged, metric) until the next reload or restart; its entries go dead;
//   other / transport error   retried after retry_initial * 2^(attempts-1), capped at retry_max, times a
//            jitter in [0.5, 1]; once retry_for has passed since this process first saw the entry (so a
//            restart or a replay gives it retry_for again) it is moved to the dead area.
// An entry whose alert is no longer configured is moved to the dead area.
// At-least-once: a crash between a receiver's 2xx and the delete repeats the delivery with the same id.
// Attempt counts live in memory: after a restart every pending entry is tried again at once.
// Thread safety: set_options from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "daemon/alert_metrics.h"
#include "daemon/alerts.h"
#include "daemon/config.h"
#include "daemon/partitioned_sink.h"
#include "storage/partitioned_store.h"

namespace rapport {

// The delivery id of an outbox entry: "<partition>-<sequence>" (unique per state dir), unless its record
// carries the id it had before rapportctl migrate moved it (AlertMessage::id).
std::string alert_delivery_id(std::uint32_t partition, std::uint64_t sequence);

class AlertDelivery {
 public:
  AlertDelivery(PartitionedStore& store, Writers& writers, Alerts& alerts, AlertMetrics& metrics,
                AlertDeliveryOptions options);
  ~AlertDelivery();  // stop()

  void start();
  // In-flight POSTs finish (bounded by the timeout); entries stay in the outbox. Then waits up to
  // `writer_wait` for every partition's writer to commit the deletes of what was delivered: a stuck
  // writer must not hold the shutdown up (those deliveries are sent again after a restart, same id).
  void stop(std::chrono::milliseconds writer_wait = std::chrono::seconds(10));
  void set_options(const AlertDeliveryOptions& options);
  // Forgets disabled alerts (a reload enables them again).
  void enable_all();
  // Wakes the dispatcher (something was written to an outbox).
  void wake();

 private:
  struct Key {
    std::uint32_t partition;
    std::uint64_t sequence;
    friend auto operator<=>(const Key&, const Key&) = default;
  };
  struct Tracked {
    int attempts = 0;
    std::chrono::steady_clock::time_point due{};
    bool busy = false;  // in flight, or done
    bool done = false;  // delivered or given up: its delete/move is queued for the partition's next commit
    std::optional<std::chrono::steady_clock::time_point> first;  // first seen by this process: retry_for counts from it
  };
  struct Job {
    Key key;
    std::string id;  // the delivery id (Rapport-Delivery)
    std::string url;
    std::string secret;
    std::string alert;
    std::string body;
    std::int64_t at_ms = 0;
  };

  void dispatch_loop();
  void worker_loop();
  void deliver(const Job& job);
  // Posts a writer job that deletes (delivered) or moves to the dead area (given up) an entry.
  void finish(const Key& key, bool delivered);
  void mark_busy(const Key& key);
  std::chrono::milliseconds backoff(int attempts);

  PartitionedStore& store_;
  Writers& writers_;
  Alerts& alerts_;
  AlertMetrics& metrics_;

  std::mutex mutex_;
  std::condition_variable dispatch_wake_, work_ready_;
  AlertDeliveryOptions options_;                             // guarded by mutex_
  std::map<Key, Tracked> tracked_;                           // guarded by mutex_
  std::map<std::string, std::size_t> per_url_;               // in flight per URL, guarded by mutex_
  std::set<std::string> disabled_;                           // alerts a 410 disabled, guarded by mutex_
  std::deque<Job> queue_;                                    // guarded by mutex_
  bool woken_ = false, stopping_ = false, started_ = false;  // guarded by mutex_
  std::uint64_t rng_ = 0x9e3779b97f4a7c15ull;                // jitter, guarded by mutex_
  std::unique_ptr<std::atomic<bool>[]> flush_posted_;        // per partition: a flush job is queued on its writer
  std::thread dispatcher_;
  std::vector<std::thread> workers_;
};

}  // namespace rapport
