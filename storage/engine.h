// Internal to storage/. Store::Impl: the environment (env.h) plus the
// overlays (overlay.h), the writer's state and the checkpoint in progress.
// Its members are defined by responsibility:
//   journal.cc       apply_batch: dedup, journal appends, installing a delta into the overlay, replay
//   checkpoint.cc    checkpoints in slices, map headroom
//   reads.cc         get_customer, customer_events, for_each_customer, get_meta, stats
//   erase.cc         erase_customer
//   dead_letters.cc  dead letters
//   changes.cc       the change feed: put_changes, backfill_changes, Store::changes
//   store.cc         open, close, put_meta, backup
//
// Locking (besides env.h's):
//  - op_mutex serialises the writers of the journal and the overlay
//    (apply_batch, erase_customer, checkpoint) for their whole run, including
//    the in-memory update after the commit.
//  - overlay_mutex guards the overlay. It is a leaf lock: whoever holds it
//    never waits for another lock or runs a transaction. The writer changes
//    the overlay (exclusively) only after its commit; readers copy what they
//    need (shared), release it, then read a snapshot. The `storage.generation`
//    meta value, bumped by every checkpoint and erasure, tells a reader whether
//    its copy and its snapshot fit together; if not (the writer committed but
//    has not updated the overlay yet) it copies again.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "storage/codec.h"
#include "storage/dedup_filter.h"
#include "storage/env.h"
#include "storage/key_order.h"
#include "storage/overlay.h"
#include "storage/store.h"

namespace rapport {
namespace storage_internal {

constexpr std::uint64_t kNoGeneration = UINT64_MAX;

struct Engine : Env {
  std::mutex op_mutex;

  // ---- the overlays: changes journaled since the last completed checkpoint ----
  // `active` takes new events; `frozen` holds what the checkpoint in progress
  // is writing, slice by slice (empty when none is). Changed only by the
  // writer holding op_mutex, under overlay_mutex exclusively; read by the
  // writer freely and by readers under it shared. A customer's current state
  // is its active entry, else its frozen one, else its stored record.
  mutable std::shared_mutex overlay_mutex;
  Overlay active, frozen;
  std::uint64_t generation = kNoGeneration;  // the stored generation the overlays are relative to
  std::uint64_t checkpoint_seq = 0;          // the completed checkpoint they are relative to
  std::uint64_t seen_seq = 0;                // highest journal sequence they cover
  std::uint64_t next_seq = 1;                // next journal sequence to append
  // The generation a checkpoint or erasure is committing: readers seeing it
  // wait for the overlay to catch up rather than mixing old and new.
  std::atomic<std::uint64_t> committing_generation{kNoGeneration};

  // Writer state (op_mutex).
  ApplyConfig journal_config;                                          // the ApplyConfig in effect at seen_seq
  std::string journal_config_bytes;                                    // encoded
  std::optional<std::chrono::steady_clock::time_point> first_pending;  // of the active overlay
  Delta delta;

  // The checkpoint in progress (op_mutex): the frozen overlay's live entries
  // in key order, written slice by slice from `slice_next`; the journal
  // position and config it covers. See checkpoint_slice().
  bool checkpointing = false;
  std::vector<KeyOrdered> slice_order;  // the frozen customers in key order: views into frozen.customer_arena
  std::size_t slice_next = 0;
  std::size_t slice_records_left = 0;  // customers + events not yet written
  std::uint64_t frozen_seq = 0, frozen_next_seq = 0;
  std::string frozen_config_bytes;
  std::size_t last_batch_events = 0;  // paces the slices (see slice_budget())
  std::atomic<std::uint64_t> checkpoints_done{0}, slices_done{0};

  // The hashes of the keys in `events` and of every key pending since, so
  // that a new event reads the index only on a filter hit (dedup_filter.h).
  // Usable only while stored_keys_ready: built at open (and again at the
  // next batch after another process checkpointed or erased, which may have
  // written keys this process never saw). The writer's alone (op_mutex).
  DedupFilter stored_keys;
  bool stored_keys_ready = false;

  // States the active overlay replaced that nobody else held, reused by
  // touch(): no allocation per changed customer per batch. Writer's alone.
  static constexpr std::size_t kMaxSpareStates = 1 << 16;
  std::vector<std::shared_ptr<CustomerState>> spare_states;

  Engine() { encode_apply_config(journal_config, journal_config_bytes); }

  // A customer's latest overlay state (active, else frozen), or nullptr if neither holds it.
  const std::shared_ptr<const CustomerState>* overlay_state(std::string_view id, std::uint64_t hash) const {
    if (const std::uint32_t i = active.find_entry(id, hash); i != kNone) return &active.entries[i].state;
    if (const std::uint32_t i = frozen.find_entry(id, hash); i != kNone) return &frozen.entries[i].state;
    return nullptr;
  }
  bool is_pending(std::string_view event_key, std::uint64_t hash) const {
    return active.is_pending(event_key, hash) || frozen.is_pending(event_key, hash);
  }
  std::size_t pending_events() const { return active.pending_events + frozen.pending_events; }

  // ---- journal.cc: the write path ----

  // Loads a customer's state (fresh if absent) into state; found says whether it was stored.
  int load_customer(MDB_txn* txn, std::string_view customer_id, CustomerState& state, bool& found,
                    std::string& context) const;
  // True if another process wrote the journal, checkpointed or erased since
  // the overlay was last brought up to date.
  int is_stale(MDB_txn* txn, bool& stale, std::string& context) const;
  // The batch's (or replay's) new state of a customer, starting from the
  // overlay (use_overlay) or the stored record; returns its index in delta.customers.
  int touch(MDB_txn* txn, std::string_view id, bool use_overlay, std::uint32_t& change, std::string& context);
  // A spare state (its contents are stale: the caller assigns them), else a new one.
  std::shared_ptr<CustomerState> take_state();
  // Appends with a cursor kept at the end of the journal (no descent from the root per record).
  int append_journal(Cursor& cursor, std::uint64_t seq, std::string_view record, std::string& context);
  // Forgets both overlays and any checkpoint in progress (under overlay_mutex,
  // exclusively); returns the entries so that the caller frees them after
  // releasing the lock.
  std::vector<OverlayEntry> clear_overlays_locked();
  // Moves a committed delta into the active overlay.
  void install(Delta& d);
  // Brings the overlay up to date with the stored journal: replays entries
  // after seen_seq, or rebuilds it from the checkpoint if the stored
  // generation differs (open, or another process checkpointed or erased).
  Status refresh();
  // Applies the journal entries after `after` to delta.
  int replay(MDB_txn* txn, std::uint64_t after, std::string& context);
  // Builds stored_keys from `events` and the overlays' pending keys. On a
  // read error the filter stays unusable (every lookup reads the index).
  void build_stored_keys();

  // ---- erase.cc ----

  // Deletes journal entry `seq` (absent: not an error).
  int delete_journal_entry(MDB_txn* txn, std::uint64_t seq);
  // Deletes a customer's checkpointed events: their index entries and journal records. Sets found if any.
  int delete_stored_events(MDB_txn* txn, std::string_view customer_id, bool& found, std::string& context);

  // ---- checkpoint.cc ----

  bool checkpoint_due() const;
  // Freezes the active overlay: the checkpoint to write. op_mutex held, none in progress.
  void begin_checkpoint();
  // Records (customers + events) the next slice may write.
  std::size_t slice_budget() const;
  // Writes the next slice of the checkpoint in progress: at most `budget`
  // records (at least one customer). op_mutex held.
  Status checkpoint_slice(std::size_t budget);
  // Finishes the checkpoint in progress, then checkpoints everything else
  // pending, each in one transaction. op_mutex held.
  Status complete_checkpoint_locked();
  // Bounded progress (Store::checkpoint_step). op_mutex held.
  Status checkpoint_step_locked(bool begin_now);
  // Grows the map ahead of the next checkpoint. Best effort.
  void ensure_headroom();

  // ---- changes.cc (the change feed) ----

  // Makes each write's seq its customer's feed item (a tombstone if
  // `tombstone`), removing the customer's previous one; compacts the oldest
  // tombstones beyond options.feed_tombstones. Writes in customer key order
  // (or few). Called by checkpoint slices and erasure.
  struct FeedWrite {
    std::string_view id;
    std::uint64_t seq = 0;
    bool tombstone = false;
  };
  int put_changes(MDB_txn* txn, std::span<const FeedWrite> writes, std::string& context);
  // At open, once per store (meta storage.feed_version): gives every customer stored before the change
  // feed existed an item at a fresh sequence, so that following the feed from the start sees it.
  Status backfill_changes();

  // ---- dead_letters.cc ----

  int append_dead_letters(MDB_txn* txn, std::span<const DeadLetter> letters, std::string& context);

  // ---- outbox.cc (alerts) ----

  MDB_dbi outbox = 0, outbox_dead = 0;
  bool has_outbox = true;                           // false: read-only open of a store from before alerts
  std::shared_ptr<OutboxObserver> outbox_observer;  // op_mutex
  std::vector<std::string> outbox_payloads;         // fired in the batch being written (op_mutex)
  std::atomic<std::uint64_t> outbox_dropped{0};
  // Appends entries to `area` (sequences from at least min_next), then drops the oldest pending entries beyond
  // options.outbox_capacity.
  int append_outbox(MDB_txn* txn, std::span<const std::string> payloads, std::string& context,
                    OutboxArea area = OutboxArea::kPending, std::uint64_t min_next = 0);
  // Store::queue_outbox_change: (sequence, delivered) waiting for the next write transaction.
  std::mutex outbox_queue_mutex;
  std::vector<std::pair<std::uint64_t, bool>> outbox_queue;  // outbox_queue_mutex
  std::vector<std::pair<std::uint64_t, bool>> take_outbox_changes();
  void requeue_outbox_changes(std::vector<std::pair<std::uint64_t, bool>>& queued);  // after a failed write
  int apply_outbox_changes(MDB_txn* txn, std::span<const std::pair<std::uint64_t, bool>> queued, std::string& context);

  // ---- reads.cc ----

  // Runs copy() under the overlay lock, then body(txn, with_overlay) in a
  // read transaction: with_overlay says whether the copy belongs with that
  // snapshot (false: the snapshot already holds everything the copy has).
  template <typename Copy, typename Body>
  Status read_merged(Copy&& copy, Body&& body) const {
    for (;;) {
      std::uint64_t copied_generation = 0, copied_checkpoint = 0;
      {
        std::shared_lock<std::shared_mutex> lock(overlay_mutex);
        copied_generation = generation;
        copied_checkpoint = checkpoint_seq;
        copy();
      }
      bool retry = false;
      Status s = read([&](MDB_txn* txn) -> Status {
        std::string context;
        std::uint64_t stored = 0;
        int rc = get_meta_u64(txn, kGenerationKey, stored, context);
        bool with_overlay = true;
        if (rc == 0 && stored != copied_generation) {
          // This process's writer committed `stored` and is about to update the
          // overlay, or already has. (In this order: it clears
          // committing_generation only after updating the overlay.)
          const bool committing = stored == committing_generation.load(std::memory_order_acquire);
          std::uint64_t current = 0;
          {
            std::shared_lock<std::shared_mutex> lock(overlay_mutex);
            current = generation;
          }
          if (committing || current != copied_generation) {
            retry = true;
            return Status::Ok();
          }
          // Another process checkpointed or erased since this one last wrote:
          // after a checkpoint the snapshot holds all the copy has.
          std::uint64_t checkpoint = 0;
          rc = get_meta_u64(txn, kCheckpointKey, checkpoint, context);
          with_overlay = checkpoint == copied_checkpoint;
        }
        if (rc == kFailed) return Status::Error(std::move(context));
        if (rc != 0) return Status::Error(describe(context, rc));
        return body(txn, with_overlay);
      });
      if (!s || !retry) return s;
      std::this_thread::yield();
    }
  }

  // Store::for_each_customer: from the first customer, or strictly after `after`.
  Status for_each_customer(const Store::Visitor& visit, std::optional<std::string_view> after) const;
  // Reads journal entry `seq` (an event of customer_id/event_id) into out.
  Status read_journal_event(MDB_txn* txn, std::uint64_t seq, std::string_view customer_id, std::string_view event_id,
                            TimelineEvent& out) const;
};

}  // namespace storage_internal

struct Store::Impl : storage_internal::Engine {};

}  // namespace rapport
