// Checkpoints, written in slices between batches. See engine.h.
#include <algorithm>

#include "storage/engine.h"

namespace rapport {
namespace storage_internal {

// ---- checkpoints ----
//
// A checkpoint freezes the active overlay (new events go to a fresh one)
// and writes the frozen customers in key order, a slice per transaction,
// each customer's record together with its index entries: a stored record
// holds exactly the events the index holds for it. The last slice also
// records the journal position covered (storage.checkpoint_sequence).
// A crash between slices replays from the previous position; replay skips
// events the index already holds. Every slice bumps storage.generation, so
// readers (read_merged) and other processes notice the change.

bool Engine::checkpoint_due() const {
  if (active.pending_events == 0) return false;
  if (active.pending_events >= options.checkpoint_events) return true;
  return first_pending && std::chrono::steady_clock::now() - *first_pending >= options.checkpoint_interval;
}

// Freezes the active overlay: the checkpoint to write. op_mutex held, none in progress.
void Engine::begin_checkpoint() {
  std::vector<OverlayEntry> old;  // the last frozen overlay's entries, freed after the lock is released
  {
    std::unique_lock<std::shared_mutex> lock(overlay_mutex);
    old = frozen.clear();
    std::swap(active, frozen);
  }
  active.pending_index.clear(frozen.pending_events);
  first_pending.reset();
  slice_order.clear();
  slice_order.reserve(frozen.entries.size());
  slice_records_left = 0;
  for (std::uint32_t i = 0; i < frozen.entries.size(); ++i) {
    const OverlayEntry& entry = frozen.entries[i];
    if (!entry.state) continue;
    slice_order.push_back(KeyOrdered::of(frozen.customer_id(entry), i));
    slice_records_left += 1 + entry.count;
  }
  std::sort(slice_order.begin(), slice_order.end());
  slice_next = 0;
  frozen_seq = seen_seq;
  frozen_config_bytes = journal_config_bytes;
  checkpointing = true;
}

// Records (customers + events) the next slice may write: enough that the
// checkpoint in progress ends while the active overlay fills up to half of
// checkpoint_events at the size of the last batch; everything when that
// is near.
std::size_t Engine::slice_budget() const {
  constexpr std::size_t kMinSliceRecords = 4096;
  const std::size_t limit = std::max<std::size_t>(options.checkpoint_events, 1);
  const std::size_t room = active.pending_events < limit ? limit - active.pending_events : 0;
  const std::size_t slices_left = room / std::max<std::size_t>(last_batch_events, 1) / 2;
  if (slices_left <= 1) return SIZE_MAX;
  return std::max(kMinSliceRecords, (slice_records_left + slices_left - 1) / slices_left);
}

// Writes the next slice of the checkpoint in progress: at most `budget`
// records (at least one customer). op_mutex held.
Status Engine::checkpoint_slice(std::size_t budget) {
  for (int attempt = 0; checkpointing; ++attempt) {
    if (attempt > 0) {
      // Another process wrote: catch up (a rebuild drops the checkpoint in progress; the
      // slices already written stay valid).
      if (Status s = refresh(); !s) return s;
      if (!checkpointing) return Status::Ok();
    }
    std::vector<std::pair<std::string_view, std::uint32_t>> index;
    std::vector<FeedWrite> feed;
    std::size_t end = slice_next, written_bytes = 0;
    bool stale = false, last = false;
    const std::uint64_t next_generation = generation + 1;
    Status s = write([&](MDB_txn* txn, std::string& context) -> int {
      int rc = is_stale(txn, stale, context);
      if (rc != 0) return rc;
      if (stale) {
        context = "the journal keeps changing (another process is writing)";
        return kFailed;
      }
      // Cursors: a put next to the previous one searches only the current leaf page.
      Cursor customer_cursor, index_cursor;
      if ((rc = customer_cursor.open(txn, customers)) != 0 || (rc = index_cursor.open(txn, events)) != 0) {
        context = "cannot open cursors";
        return rc;
      }
      std::size_t records = 0;
      written_bytes = 0;
      feed.clear();
      for (end = slice_next; end < slice_order.size() && (records == 0 || records < budget); ++end) {
        const std::string_view id = slice_order[end].id;
        const std::uint32_t i = slice_order[end].entry;
        const OverlayEntry& entry = frozen.entries[i];
        if (!entry.state) continue;  // erased since the checkpoint began
        serialize_into(*entry.state, value);
        MDB_val k = to_val(id), v = to_val(value);
        if ((rc = customer_cursor.put(k, v, 0)) != 0) {
          context = "cannot write customer " + in_quotes(id);
          return rc;
        }
        index.clear();
        for (std::uint32_t p = entry.first; p != kNone; p = frozen.pending[p].next) {
          index.emplace_back(frozen.pending_key(frozen.pending[p]), p);
          written_bytes += frozen.pending[p].key_size + kIndexValueBytes + kEntryOverhead;
        }
        std::sort(index.begin(), index.end());
        for (const auto& [event_key, p] : index) {
          encode_index(frozen.pending[p].seq, frozen.pending[p].ts_ms, value);
          k = to_val(event_key);
          v = to_val(value);
          if ((rc = index_cursor.put(k, v, 0)) != 0) {
            context = "cannot write the index entry of an event of customer " + in_quotes(id);
            return rc;
          }
        }
        if (entry.last != kNone) feed.push_back(FeedWrite{id, frozen.pending[entry.last].seq, false});
        records += 1 + entry.count;
        written_bytes += entry.record_bytes;
      }
      if ((rc = put_changes(txn, feed, context)) != 0) return rc;  // the change feed's items
      last = end == slice_order.size();
      if (last) {
        if ((rc = put_meta_u64(txn, kCheckpointKey, frozen_seq, context)) != 0) return rc;
        if ((rc = put_meta_u64(txn, kJournalNextKey, next_seq, context)) != 0) return rc;
        value.assign(1, static_cast<char>(kRecordVersion));
        value += frozen_config_bytes;
        MDB_val k = to_val(kApplyConfigKey), v = to_val(value);
        if ((rc = mdb_put(txn, meta, &k, &v, 0)) != 0) {
          context = "cannot write meta " + in_quotes(kApplyConfigKey);
          return rc;
        }
      }
      if ((rc = put_meta_u64(txn, kGenerationKey, next_generation, context)) != 0) return rc;
      committing_generation.store(next_generation, std::memory_order_release);
      return 0;
    });
    if (stale && attempt < 100) continue;
    if (!s) {
      committing_generation.store(kNoGeneration, std::memory_order_release);
      return Status::Error("checkpoint failed: " + s.message());
    }
    std::vector<OverlayEntry> old;  // freed after the lock is released
    {
      std::unique_lock<std::shared_mutex> lock(overlay_mutex);
      generation = next_generation;
      for (std::size_t i = slice_next; i < end; ++i) {
        OverlayEntry& entry = frozen.entries[slice_order[i].entry];
        if (!entry.state) continue;
        entry.written = true;
        frozen.pending_events -= entry.count;
        if (!entry.in_db) --frozen.new_customers;
        slice_records_left -= 1 + entry.count;
      }
      frozen.checkpoint_bytes -= std::min(frozen.checkpoint_bytes, written_bytes);
      if (last) {
        old = frozen.clear();
        checkpoint_seq = frozen_seq;
        checkpointing = false;
      }
    }
    committing_generation.store(kNoGeneration, std::memory_order_release);
    slices_done.fetch_add(1, std::memory_order_relaxed);
    if (last) checkpoints_done.fetch_add(1, std::memory_order_relaxed);
    slice_next = end;
    if (last) {
      frozen.pending_index.clear();
      slice_order.clear();
      slice_next = slice_records_left = 0;
    }
    return Status::Ok();
  }
  return Status::Ok();
}

// Finishes the checkpoint in progress, then checkpoints everything else
// pending, each in one transaction. op_mutex held.
Status Engine::complete_checkpoint_locked() {
  if (options.read_only) return Status::Error("store opened read-only: " + in_quotes(options.directory));
  if (empty) return Status::Ok();
  for (int round = 0; round < 4; ++round) {
    if (checkpointing) {
      if (Status s = checkpoint_slice(SIZE_MAX); !s) return s;
      if (checkpointing) continue;  // not expected: one slice takes all
    }
    if (active.empty()) return Status::Ok();
    begin_checkpoint();
  }
  return checkpointing || !active.empty() ? Status::Error("checkpoint failed: the store keeps changing") : Status::Ok();
}

// Bounded progress: the next slice of the checkpoint in progress, or a new
// checkpoint's first slice if one is due (or begin_now and anything is
// pending). op_mutex held.
Status Engine::checkpoint_step_locked(bool begin_now) {
  if (options.read_only || empty) return Status::Ok();
  if (!checkpointing) {
    if (!(checkpoint_due() || (begin_now && !active.empty()))) return Status::Ok();
    begin_checkpoint();
  }
  return checkpoint_slice(slice_budget());
}

// Grows the map ahead of the next checkpoint, so that transaction (the
// largest one) does not run out of map half way and start over. Best effort.
void Engine::ensure_headroom() {
  MDB_envinfo info;
  if (mdb_env_info(env, &info) != 0) return;
  const std::size_t used = (info.me_last_pgno + 1) * page_size;
  const std::size_t need = used + 2 * (active.checkpoint_bytes + frozen.checkpoint_bytes) + 64 * page_size;
  std::size_t next = info.me_mapsize;
  while (next < need && next < options.max_map_bytes) {
    next = next > options.max_map_bytes / 2 ? options.max_map_bytes : next * 2;
  }
  if (next <= info.me_mapsize) return;
  (void)with_map_exclusive([&] {
    MDB_envinfo now;
    mdb_env_info(env, &now);
    if (now.me_mapsize < next && mdb_env_set_mapsize(env, next) != 0) return Status::Error("");
    return Status::Ok();
  });
}

}  // namespace storage_internal

using namespace storage_internal;

Status Store::checkpoint() {
  Impl& d = *impl_;
  std::lock_guard<std::mutex> op(d.op_mutex);
  return d.complete_checkpoint_locked();
}

Result<bool> Store::checkpoint_step(bool begin_now) {
  Impl& d = *impl_;
  std::lock_guard<std::mutex> op(d.op_mutex);
  if (Status s = d.checkpoint_step_locked(begin_now); !s) return s;
  return d.checkpointing;
}

}  // namespace rapport
