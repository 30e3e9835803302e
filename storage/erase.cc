// Erasure of a customer: stored record, index entries, journal records and overlay entries. See engine.h.
#include "storage/engine.h"

namespace rapport {

using namespace storage_internal;

namespace storage_internal {

int Engine::delete_journal_entry(MDB_txn* txn, std::uint64_t seq) {
  char k_bytes[8];
  put_sequence(k_bytes, seq);
  MDB_val jk{sizeof k_bytes, k_bytes};
  const int del = mdb_del(txn, journal, &jk, nullptr);
  return del == MDB_NOTFOUND ? 0 : del;
}

int Engine::delete_stored_events(MDB_txn* txn, std::string_view customer_id, bool& found, std::string& context) {
  context = "cannot delete the events of customer " + in_quotes(customer_id);
  std::string prefix(customer_id);
  prefix.push_back('\0');
  Cursor cursor;
  int rc = cursor.open(txn, events);
  if (rc != 0) return rc;
  for (;;) {
    MDB_val k = to_val(prefix), v;
    rc = cursor.get(k, v, MDB_SET_RANGE);
    if (rc == MDB_NOTFOUND || (rc == 0 && !starts_with(k, prefix))) return 0;
    if (rc != 0) return rc;
    std::string_view stored = to_view(v);
    if (stored.size() == 17 && static_cast<std::uint8_t>(stored[0]) == kIndexVersion) {
      Reader r(stored.substr(1));
      std::uint64_t seq = 0;
      r.u64(seq);
      if ((rc = delete_journal_entry(txn, seq)) != 0) return rc;
    }
    if ((rc = cursor.del()) != 0) return rc;
    found = true;
  }
}

}  // namespace storage_internal

Result<bool> Store::erase_customer(std::string_view customer_id) {
  if (customer_id.empty()) return Status::Error("customer id is empty");
  Impl& d = *impl_;
  if (d.options.read_only) return Status::Error("store opened read-only: " + in_quotes(d.options.directory));
  std::lock_guard<std::mutex> op(d.op_mutex);
  bool existed = false;
  std::uint64_t next_generation = 0;
  for (int attempt = 0;; ++attempt) {
    if (attempt > 0) {
      if (Status s = d.refresh(); !s) return s;
    }
    next_generation = d.generation + 1;
    bool stale = false;
    Status s = d.write([&](MDB_txn* txn, std::string& context) -> int {
      existed = false;
      int rc = d.is_stale(txn, stale, context);
      if (rc != 0) return rc;
      if (stale) {
        context = "the journal keeps changing (another process is writing)";
        return kFailed;
      }
      context = "cannot erase customer " + in_quotes(customer_id);
      MDB_val k = to_val(customer_id);
      rc = mdb_del(txn, d.customers, &k, nullptr);
      if (rc == 0) {
        existed = true;
      } else if (rc != MDB_NOTFOUND) {
        return rc;
      }
      // Checkpointed events: index entries and their journal records.
      if ((rc = d.delete_stored_events(txn, customer_id, existed, context)) != 0) return rc;
      context = "cannot erase customer " + in_quotes(customer_id);
      // Pending events: their journal records (replay must not bring them back).
      for (const Overlay* overlay : {&d.active, &d.frozen}) {
        if (const std::uint32_t i = overlay->find_entry(customer_id, hash_key(customer_id)); i != kNone) {
          existed = true;
          for (std::uint32_t p = overlay->entries[i].first; p != kNone; p = overlay->pending[p].next) {
            if ((rc = d.delete_journal_entry(txn, overlay->pending[p].seq)) != 0) return rc;
          }
        }
      }
      if (!existed) return 0;  // nothing changed: no new generation
      // The feed's tombstone takes the next sequence. Sequences of deleted records are never reused.
      const Engine::FeedWrite tombstone{customer_id, d.next_seq, true};
      if ((rc = d.put_changes(txn, std::span(&tombstone, 1), context)) != 0) return rc;
      if ((rc = d.put_meta_u64(txn, kJournalNextKey, d.next_seq + 1, context)) != 0) return rc;
      if ((rc = d.put_meta_u64(txn, kGenerationKey, next_generation, context)) != 0) return rc;
      d.committing_generation.store(next_generation, std::memory_order_release);
      return 0;
    });
    if (stale && attempt < 100) continue;
    if (!s) {
      d.committing_generation.store(kNoGeneration, std::memory_order_release);
      return s;
    }
    break;
  }
  if (existed) {
    std::shared_ptr<const CustomerState> removed[2];  // freed after the lock is released
    const std::uint64_t hash = hash_key(customer_id);
    Overlay* overlays[2] = {&d.active, &d.frozen};
    std::uint32_t found[2];
    for (int o = 0; o < 2; ++o) {
      Overlay& overlay = *overlays[o];
      found[o] = overlay.find_entry(customer_id, hash);
      if (found[o] == kNone) continue;
      // The dedup indexes are the writer's alone.
      for (std::uint32_t p = overlay.entries[found[o]].first; p != kNone; p = overlay.pending[p].next) {
        const std::string_view key = overlay.pending_key(overlay.pending[p]);
        overlay.pending_index.erase(key, hash_key(key),
                                    [&](std::uint32_t j) { return overlay.pending_key(overlay.pending[j]); });
      }
    }
    {
      std::unique_lock<std::shared_mutex> lock(d.overlay_mutex);
      for (int o = 0; o < 2; ++o) {
        if (found[o] == kNone) continue;
        // The entry stays, dead, until the overlay is cleared; its pending events are unlinked.
        Overlay& overlay = *overlays[o];
        OverlayEntry& entry = overlay.entries[found[o]];
        removed[o] = std::move(entry.state);
        overlay.customer_index.erase(customer_id, hash,
                                     [&](std::uint32_t j) { return overlay.customer_id(overlay.entries[j]); });
        if (!entry.written) {  // else a checkpoint slice already moved it out of the counters
          for (std::uint32_t p = entry.first; p != kNone; p = overlay.pending[p].next) {
            overlay.checkpoint_bytes -= overlay.pending[p].key_size + kIndexValueBytes + kEntryOverhead;
          }
          overlay.pending_events -= entry.count;
          overlay.checkpoint_bytes -= entry.record_bytes;
          if (!entry.in_db) --overlay.new_customers;
          if (o == 1) d.slice_records_left -= 1 + entry.count;
        }
        entry.first = entry.last = kNone;
        entry.count = entry.record_bytes = 0;
      }
      d.generation = next_generation;
      ++d.next_seq;  // the tombstone's
    }
    d.committing_generation.store(kNoGeneration, std::memory_order_release);
    if (d.active.pending_events == 0) d.first_pending.reset();
  }
  return existed;
}

}  // namespace rapport
