// Store::restore_customers: a partition's state restored from elsewhere (the Kafka changes topic). See store.h.
#include <algorithm>
#include <vector>

#include "storage/engine.h"

namespace rapport {

using namespace storage_internal;

Status Store::restore_customers(std::span<const RestoredCustomer> customers,
                                std::span<const std::pair<std::string_view, std::string_view>> meta) {
  Impl& d = *impl_;
  if (d.options.read_only) return Status::Error("store opened read-only: " + in_quotes(d.options.directory));
  std::vector<RestoredCustomer> sorted(customers.begin(), customers.end());
  std::sort(sorted.begin(), sorted.end(), [](const RestoredCustomer& a, const RestoredCustomer& b) {
    return a.customer_id < b.customer_id;  // LMDB key order (storage/key_order.h)
  });
  for (std::size_t i = 0; i < sorted.size(); ++i) {
    const std::string_view id = sorted[i].customer_id;
    if (id.empty() || id.size() > kMaxIdBytes || id.find('\0') != std::string_view::npos) {
      return Status::Error("cannot restore customer " + in_quotes(id) + ": an id is 1.." + std::to_string(kMaxIdBytes) +
                           " bytes without NUL");
    }
    if (i > 0 && id == sorted[i - 1].customer_id) {
      return Status::Error("cannot restore customer " + in_quotes(id) + ": listed twice");
    }
  }
  for (const auto& [key, value] : meta) {
    if (key.empty()) return Status::Error("meta key is empty");
  }
  std::lock_guard<std::mutex> op(d.op_mutex);
  if (Status s = d.complete_checkpoint_locked(); !s) return s;  // the overlays are empty from here on
  std::uint64_t next_generation = 0, next_seq = 0;
  for (int attempt = 0;; ++attempt) {
    if (attempt > 0) {
      if (Status s = d.refresh(); !s) return s;
      if (Status s = d.complete_checkpoint_locked(); !s) return s;
    }
    next_generation = d.generation + 1;
    next_seq = d.next_seq;
    bool stale = false;
    Status s = d.write([&](MDB_txn* txn, std::string& context) -> int {
      int rc = d.is_stale(txn, stale, context);
      if (rc != 0) return rc;
      if (stale) {
        context = "the journal keeps changing (another process is writing)";
        return kFailed;
      }
      next_seq = d.next_seq;
      std::vector<Engine::FeedWrite> feed;
      feed.reserve(sorted.size());
      std::string value;
      for (const RestoredCustomer& c : sorted) {
        bool found = false;
        if ((rc = d.delete_stored_events(txn, c.customer_id, found, context)) != 0) return rc;
        context = "cannot restore customer " + in_quotes(c.customer_id);
        MDB_val k = to_val(c.customer_id);
        if (c.state != nullptr) {
          serialize_into(*c.state, value);
          MDB_val v = to_val(value);
          if ((rc = mdb_put(txn, d.customers, &k, &v, 0)) != 0) return rc;
        } else if ((rc = mdb_del(txn, d.customers, &k, nullptr)) != 0 && rc != MDB_NOTFOUND) {
          return rc;
        }
        feed.push_back(Engine::FeedWrite{c.customer_id, next_seq++, c.state == nullptr});
      }
      if ((rc = d.put_changes(txn, feed, context)) != 0) return rc;
      for (const auto& [key, bytes] : meta) {
        context = "cannot write meta " + in_quotes(key);
        value.assign(1, static_cast<char>(kRecordVersion));
        value.append(bytes);
        MDB_val k = to_val(key), v = to_val(value);
        if ((rc = mdb_put(txn, d.meta, &k, &v, 0)) != 0) return rc;
      }
      if ((rc = d.put_meta_u64(txn, kJournalNextKey, next_seq, context)) != 0) return rc;
      if ((rc = d.put_meta_u64(txn, kGenerationKey, next_generation, context)) != 0) return rc;
      d.committing_generation.store(next_generation, std::memory_order_release);
      return 0;
    });
    if (stale && attempt < 100) continue;
    if (!s) {
      d.committing_generation.store(kNoGeneration, std::memory_order_release);
      return Status::Error("restore failed: " + s.message());
    }
    break;
  }
  {
    std::unique_lock<std::shared_mutex> lock(d.overlay_mutex);
    d.generation = next_generation;
    d.next_seq = next_seq;
  }
  d.committing_generation.store(kNoGeneration, std::memory_order_release);
  return Status::Ok();
}

}  // namespace rapport
