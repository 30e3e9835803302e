// Reads: the overlays merged with a snapshot. See engine.h.
#include <algorithm>

#include "storage/engine.h"

namespace rapport {
namespace storage_internal {

// Reads journal entry `seq` (an event of customer_id/event_id) into out.
Status Engine::read_journal_event(MDB_txn* txn, std::uint64_t seq, std::string_view customer_id,
                                  std::string_view event_id, TimelineEvent& out) const {
  std::string what = "event " + in_quotes(customer_id) + "/" + in_quotes(event_id);
  char k_bytes[8];
  put_sequence(k_bytes, seq);
  MDB_val k{sizeof k_bytes, k_bytes}, v;
  int rc = has_journal ? mdb_get(txn, journal, &k, &v) : MDB_NOTFOUND;
  if (rc == MDB_NOTFOUND) {
    return Status::Error(what + " refers to journal record " + std::to_string(seq) + ", which is missing");
  }
  if (rc != 0) return Status::Error(describe("cannot read " + what, rc));
  JournalRecord record;
  if (Status s = decode_journal(seq, to_view(v), record); !s) return s;
  if (record.kind != kJournalEvent || record.customer_id != customer_id || record.event_id != event_id) {
    return Status::Error(what + " refers to journal record " + std::to_string(seq) + ", which holds another event");
  }
  to_timeline(record.fields, event_id, out);
  out.sent_as.assign(record.sent_as);
  return Status::Ok();
}

Status Engine::for_each_customer(const Store::Visitor& visit, std::optional<std::string_view> after) const {
  const Engine& d = *this;
  if (d.empty) return Status::Ok();
  std::vector<std::pair<std::string, std::shared_ptr<const CustomerState>>> changed;
  return d.read_merged(
      [&] {
        changed.clear();
        changed.reserve(d.active.entries.size() + d.frozen.entries.size());
        for (const OverlayEntry& entry : d.active.entries) {
          if (entry.state) changed.emplace_back(d.active.customer_id(entry), entry.state);
        }
        for (const OverlayEntry& entry : d.frozen.entries) {
          if (!entry.state) continue;
          const std::string_view id = d.frozen.customer_id(entry);
          if (d.active.find_entry(id, hash_key(id)) == kNone) changed.emplace_back(id, entry.state);
        }
      },
      [&](MDB_txn* txn, bool with_overlay) {
        if (!with_overlay) changed.clear();
        std::sort(changed.begin(), changed.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
        Cursor cursor;
        int rc = cursor.open(txn, d.customers);
        MDB_val k, v;
        std::size_t next = 0;  // into changed
        if (!after) {
          if (rc == 0) rc = cursor.get(k, v, MDB_FIRST);
        } else {
          // The first stored id >= after (MDB_SET_RANGE), stepping over `after` itself.
          next = static_cast<std::size_t>(
              std::upper_bound(changed.begin(), changed.end(), *after,
                               [](std::string_view id, const auto& entry) { return id < entry.first; }) -
              changed.begin());
          if (!after->empty()) {
            k = to_val(*after);
            if (rc == 0) rc = cursor.get(k, v, MDB_SET_RANGE);
            if (rc == 0 && to_view(k) == *after) rc = cursor.get(k, v, MDB_NEXT);
          } else {
            if (rc == 0) rc = cursor.get(k, v, MDB_FIRST);
          }
        }
        CustomerState state;
        for (;;) {
          if (rc != 0 && rc != MDB_NOTFOUND) return Status::Error(d.describe("cannot iterate customers", rc));
          const bool stored = rc == 0;
          if (!stored && next == changed.size()) return Status::Ok();
          std::string_view id = stored ? to_view(k) : std::string_view();
          if (next < changed.size() && (!stored || changed[next].first <= id)) {
            // A changed customer (new, or replacing its stored record).
            const bool replaces = stored && changed[next].first == id;
            const auto& [changed_id, changed_state] = changed[next++];
            if (!visit(changed_id, *changed_state)) return Status::Ok();
            if (replaces) rc = cursor.get(k, v, MDB_NEXT);
            continue;
          }
          if (Status st = deserialize(to_view(v), state); !st) {
            return Status::Error("customer record " + in_quotes(id) + ": " + st.message());
          }
          if (!visit(id, state)) return Status::Ok();
          rc = cursor.get(k, v, MDB_NEXT);
        }
      });
}

}  // namespace storage_internal

using namespace storage_internal;

Result<std::optional<CustomerState>> Store::get_customer(std::string_view customer_id) const {
  const Impl& d = *impl_;
  std::optional<CustomerState> result;
  if (d.empty || customer_id.empty()) return result;
  // A state changed since the checkpoint is the current one (the snapshot can only be older).
  {
    std::shared_lock<std::shared_mutex> lock(d.overlay_mutex);
    if (const auto* state = d.overlay_state(customer_id, hash_key(customer_id))) {
      result.emplace(**state);
      return result;
    }
  }
  Status s = d.read([&](MDB_txn* txn) {
    MDB_val k = to_val(customer_id), v;
    int rc = mdb_get(txn, d.customers, &k, &v);
    if (rc == MDB_NOTFOUND) return Status::Ok();
    if (rc != 0) return Status::Error(d.describe("cannot read customer " + in_quotes(customer_id), rc));
    result.emplace();
    if (Status st = deserialize(to_view(v), *result); !st) {
      return Status::Error("customer record " + in_quotes(customer_id) + ": " + st.message());
    }
    return Status::Ok();
  });
  if (!s) return s;
  return result;
}

Result<std::vector<TimelineEvent>> Store::customer_events(std::string_view customer_id,
                                                          const std::optional<TimelineKey>& after,
                                                          std::size_t limit) const {
  const Impl& d = *impl_;
  std::vector<TimelineEvent> result;
  if (d.empty || customer_id.empty() || limit == 0) return result;
  std::string prefix(customer_id);
  prefix.push_back('\0');
  struct Item {
    std::int64_t ts_ms = 0;
    std::string event_id;
    std::uint64_t seq = 0;  // journal record; 0: `event` is complete (old index format)
    TimelineEvent event;
  };
  std::vector<Item> pending, items;
  Status s = d.read_merged(
      [&] {
        pending.clear();
        const std::uint64_t hash = hash_key(customer_id);
        for (const Overlay* overlay : {&d.active, &d.frozen}) {
          if (const std::uint32_t i = overlay->find_entry(customer_id, hash); i != kNone) {
            for (std::uint32_t p = overlay->entries[i].first; p != kNone; p = overlay->pending[p].next) {
              const PendingEvent& e = overlay->pending[p];
              pending.push_back(Item{e.ts_ms, std::string(overlay->pending_key(e).substr(prefix.size())), e.seq, {}});
            }
          }
        }
      },
      [&](MDB_txn* txn, bool with_overlay) {
        items.clear();
        Cursor cursor;
        int rc = cursor.open(txn, d.events);
        MDB_val k = to_val(prefix), v;
        if (rc == 0) rc = cursor.get(k, v, MDB_SET_RANGE);
        IndexEntry entry;
        while (rc == 0 && starts_with(k, prefix)) {
          std::string_view event_id = to_view(k).substr(prefix.size());
          if (Status st = decode_index(customer_id, event_id, to_view(v), entry); !st) return st;
          Item& item = items.emplace_back();
          item.ts_ms = entry.ts_ms;
          item.event_id.assign(event_id);
          item.seq = entry.seq;
          if (entry.inline_event) item.event = std::move(*entry.inline_event);
          rc = cursor.get(k, v, MDB_NEXT);
        }
        if (rc != 0 && rc != MDB_NOTFOUND) {
          return Status::Error(d.describe("cannot read events of customer " + in_quotes(customer_id), rc));
        }
        if (with_overlay && !pending.empty()) {
          // A slice of the checkpoint in progress may have indexed some of the pending events already.
          items.insert(items.end(), pending.begin(), pending.end());
          std::sort(items.begin(), items.end(), [](const Item& a, const Item& b) { return a.event_id < b.event_id; });
          items.erase(std::unique(items.begin(), items.end(),
                                  [](const Item& a, const Item& b) { return a.event_id == b.event_id; }),
                      items.end());
        }
        auto newer = [](std::int64_t ts, std::string_view id, std::int64_t other_ts, std::string_view other_id) {
          if (ts != other_ts) return ts > other_ts;
          return id > other_id;
        };
        if (after) {
          std::erase_if(items,
                        [&](const Item& i) { return !newer(after->ts_ms, after->event_id, i.ts_ms, i.event_id); });
        }
        const std::size_t end = std::min(limit, items.size());
        std::partial_sort(
            items.begin(), items.begin() + static_cast<std::ptrdiff_t>(end), items.end(),
            [&](const Item& a, const Item& b) { return newer(a.ts_ms, a.event_id, b.ts_ms, b.event_id); });
        items.erase(items.begin() + static_cast<std::ptrdiff_t>(end), items.end());
        // Details of the page only, from the journal.
        for (Item& item : items) {
          if (item.seq == 0) continue;
          if (Status st = d.read_journal_event(txn, item.seq, customer_id, item.event_id, item.event); !st) return st;
        }
        return Status::Ok();
      });
  if (!s) return s;
  result.reserve(items.size());
  for (Item& item : items) result.push_back(std::move(item.event));
  return result;
}

Status Store::for_each_customer(const Visitor& visit) const { return impl_->for_each_customer(visit, std::nullopt); }

Status Store::for_each_customer(const Visitor& visit, std::string_view after) const {
  return impl_->for_each_customer(visit, after);
}

Result<std::optional<std::string>> Store::get_meta(std::string_view key) const {
  const Impl& d = *impl_;
  std::optional<std::string> result;
  if (d.empty || key.empty()) return result;
  Status s = d.read([&](MDB_txn* txn) {
    MDB_val k = to_val(key), v;
    int rc = mdb_get(txn, d.meta, &k, &v);
    if (rc == MDB_NOTFOUND) return Status::Ok();
    if (rc != 0) return Status::Error(d.describe("cannot read meta " + in_quotes(key), rc));
    std::string_view stored = to_view(v);
    if (Status st = check_version(stored, "meta record " + in_quotes(key)); !st) return st;
    result.emplace(stored.substr(1));
    return Status::Ok();
  });
  if (!s) return s;
  return result;
}

Result<std::optional<std::int64_t>> Store::source_offset(const std::string& topic, std::int32_t partition) const {
  const std::string key = source_offset_key(topic, partition);
  auto stored = get_meta(key);
  if (!stored.ok()) return stored.status();
  std::optional<std::int64_t> offset;
  if (!*stored) return offset;
  if ((*stored)->size() != 8) return Status::Error("meta record " + in_quotes(key) + " is corrupt");
  offset = static_cast<std::int64_t>(parse_sequence_key(**stored));
  return offset;
}

StoreStats Store::stats() const {
  const Impl& d = *impl_;
  StoreStats stats;
  std::size_t pending = 0, added = 0;
  std::uint64_t checkpoint = 0;
  bool in_progress = false;
  Status s = d.read_merged(
      [&] {
        in_progress = !d.frozen.empty();
        pending = d.pending_events();
        added = d.active.new_customers + d.frozen.new_customers;
        checkpoint = d.checkpoint_seq;
      },
      [&](MDB_txn* txn, bool with_overlay) {
        stats = StoreStats{};
        MDB_envinfo info;
        MDB_stat env_stat;
        mdb_env_info(d.env, &info);
        mdb_env_stat(d.env, &env_stat);
        stats.map_bytes = info.me_mapsize;
        stats.used_bytes = (info.me_last_pgno + 1) * env_stat.ms_psize;
        stats.readers = info.me_numreaders;
        unsigned max_readers = 0;
        mdb_env_get_maxreaders(d.env, &max_readers);
        stats.max_readers = max_readers;
        if (!d.empty) {
          MDB_stat st;
          if (mdb_stat(txn, d.customers, &st) == 0) stats.customers = st.ms_entries;
          if (mdb_stat(txn, d.events, &st) == 0) stats.events = st.ms_entries;
          if (d.has_journal && mdb_stat(txn, d.journal, &st) == 0) stats.journal_entries = st.ms_entries;
          if (mdb_stat(txn, d.deadletter, &st) == 0) stats.dead_letters = st.ms_entries;
          if (with_overlay) {
            stats.customers += added;
            stats.events += pending;
            stats.pending_events = pending;
            stats.checkpoint_sequence = checkpoint;
            stats.checkpoint_in_progress = in_progress;
          } else {
            std::string context;
            (void)d.get_meta_u64(txn, kCheckpointKey, stats.checkpoint_sequence, context);
          }
        }
        return Status::Ok();
      });
  (void)s;  // on failure the counters stay 0
  stats.checkpoints = d.checkpoints_done.load(std::memory_order_relaxed);
  stats.checkpoint_slices = d.slices_done.load(std::memory_order_relaxed);
  return stats;
}

}  // namespace rapport
