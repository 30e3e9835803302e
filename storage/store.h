// Store: Rapport's durable state in one LMDB environment. Hides LMDB.
//
// Named databases: `journal` (sequence -> event: the durable event log,
// appended by every apply_batch commit — the acknowledgement point),
// `customers` (customer_id -> CustomerState record, written at checkpoints),
// `events` (customer_id '\0' event_id -> journal sequence and time: dedup
// index and timeline, written at checkpoints), `meta` (key -> bytes),
// `deadletter` (sequence -> rejected item, bounded). Every stored value starts
// with a format-version byte.
//
// Events journaled since the last checkpoint live in memory as well (changed
// customer states, pending dedup keys and timelines); every read sees the
// checkpointed state plus those changes (read-your-writes). A checkpoint
// freezes them and writes them sorted, in slices of bounded size between
// batches (each customer's record with its events' index entries), so no
// acknowledgement waits for a whole checkpoint; open() replays the journal
// after the last completed checkpoint, skipping what a slice already wrote,
// so nothing acknowledged is lost or applied twice by a crash.
// See docs/design.md, "Storage".
//
// Thread safety: reads may run concurrently from any thread (each uses its
// own read-only transaction). Writes (apply_batch, erase_customer,
// checkpoint, checkpoint_step, put_meta, add_dead_letters) are serialised internally; Rapport
// calls them from one writer thread. Several processes may open the same
// directory (LMDB is multi-process; a writer first catches up with what
// other processes journaled); the map grows automatically when full.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/source_offset.h"
#include "common/status.h"
#include "scoring/customer_state.h"
#include "scoring/event.h"
#include "storage/outbox.h"

namespace rapport {

enum class Durability : std::uint8_t {
  kFsync,  // default: a commit returns after the data is on disk
  kAsync,  // MDB_NOSYNC: faster, a machine crash may lose the last commits (not a process crash)
};

struct StoreOptions {
  std::string directory;  // created if missing
  Durability durability = Durability::kFsync;
  std::size_t initial_map_bytes = 1ull << 30;  // grown by doubling on MDB_MAP_FULL
  std::size_t max_map_bytes = 1ull << 40;      // growth stops here (then writes fail cleanly)
  std::size_t dead_letter_capacity = 10000;    // oldest dropped beyond this
  std::size_t outbox_capacity = 1000000;       // alerts outbox: oldest pending delivery dropped beyond this
  bool read_only = false;                      // open for reading only (inspection tools)
  // Begin a checkpoint (apply the journal to `customers` and `events`) once
  // this many events are pending, or once the oldest pending event is older
  // than checkpoint_interval (checked at checkpoint_step). Bounds memory:
  // past twice this many pending events, apply_batch first completes a
  // checkpoint in one go.
  std::size_t checkpoint_events = 1000000;
  std::chrono::milliseconds checkpoint_interval{10000};
  // apply_batch calls checkpoint_step() itself after each commit. The daemon
  // turns this off and calls checkpoint_step() after it has acknowledged the
  // batch, so no acknowledgement waits for a checkpoint slice.
  bool checkpoint_in_apply_batch = true;
  // Checkpoint when the Store is destroyed. False leaves pending events to
  // journal replay at the next open (crash-recovery tests, benchmarks).
  bool checkpoint_on_close = true;
  // Change feed: erasure tombstones kept; beyond this the oldest are
  // compacted and a cursor older than them answers "gone" (Store::changes).
  std::size_t feed_tombstones = 100000;
};

enum class EventOutcome : std::uint8_t { kAccepted, kDuplicate };

// A rejected item kept for operators to list and replay.
struct DeadLetter {
  std::int64_t received_ms = 0;
  std::string transport;  // "tcp", "http", "import"
  std::string reason;     // reject reason label
  std::string message;
  std::string payload;  // the raw item, truncated to 4 KiB
};

struct StoredDeadLetter {
  std::uint64_t sequence = 0;
  DeadLetter letter;
};

// One event of a customer's timeline, as stored.
struct TimelineEvent {
  std::string event_id;
  std::int64_t ts_ms = 0;
  EventType type = EventType::kPurchase;
  std::string channel;
  std::optional<double> amount, cost, sentiment, nps, csat, rating;
  std::string sent_as;  // the id it was sent with when stored under a merge's survivor; empty: this customer's
};

// A position in a customer's timeline (newest first: by ts descending, then
// event_id descending): the key of the last event of a page.
struct TimelineKey {
  TimelineKey(std::int64_t ts, std::string id) : ts_ms(ts), event_id(std::move(id)) {}
  std::int64_t ts_ms;
  std::string event_id;
};

// One item of the change feed (docs/design.md, "Change feed"): a customer's
// latest change, at the journal sequence of its last event or of its erasure.
struct Change {
  std::uint64_t seq = 0;
  std::string customer_id;
  std::optional<CustomerState> state;  // nullopt: a tombstone (the customer was erased)
};

struct ChangePage {
  std::vector<Change> items;  // seq ascending, all > after
  // Highest sequence of a compacted tombstone (0: none): a cursor 0 < after < floor is gone.
  std::uint64_t floor = 0;
};

// One customer of a restore (Store::restore_customers): its state, or null when it was erased.
struct RestoredCustomer {
  std::string_view customer_id;
  const CustomerState* state = nullptr;
};

struct StoreStats {
  std::size_t map_bytes = 0;   // current map size
  std::size_t used_bytes = 0;  // pages in use * page size
  std::size_t readers = 0;     // reader slots in use
  std::size_t max_readers = 0;
  std::uint64_t customers = 0;            // customers stored (checkpointed, plus new since)
  std::uint64_t events = 0;               // events stored (checkpointed, plus pending)
  std::uint64_t pending_events = 0;       // journaled, not yet written by a checkpoint
  std::uint64_t checkpoint_sequence = 0;  // last journal sequence applied by a checkpoint
  std::uint64_t journal_entries = 0;      // entries in `journal`
  std::uint64_t dead_letters = 0;         // entries in `deadletter`
  bool checkpoint_in_progress = false;
  std::uint64_t checkpoints = 0;        // completed by this Store since it was opened
  std::uint64_t checkpoint_slices = 0;  // slice transactions committed by this Store since it was opened
};

class Store {
 public:
  // Opens (creating if needed) the environment in options.directory.
  static Result<std::unique_ptr<Store>> open(const StoreOptions& options);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Applies a batch in one write transaction: all or nothing. For each
  // event, in order: if (customer_id, event_id) is already stored or earlier
  // in this batch, outcomes[i] = kDuplicate and nothing changes; otherwise
  // the event is appended to the journal and applied to its customer's state
  // (visible to reads once this returns). Dead letters are appended in the
  // same transaction. On error nothing was written and the message says why
  // (e.g. disk full). May write a checkpoint slice afterwards (see
  // StoreOptions); a failed slice does not fail the batch, which is already durable.
  // `sources`: positions in external logs (Kafka topic partitions) this batch
  // covers, stored in `meta` in the same transaction (read with
  // source_offset): offsets kept outside Kafka, committed with their events.
  Status apply_batch(std::span<const Event> events, const ApplyConfig& config, std::vector<EventOutcome>& outcomes,
                     std::span<const DeadLetter> dead_letters = {}, std::span<const SourceOffset> sources = {});

  // The next offset of a topic partition stored by apply_batch; nullopt if none was stored.
  Result<std::optional<std::int64_t>> source_offset(const std::string& topic, std::int32_t partition) const;

  // Erases a customer's state, events and dedup keys. Returns whether the
  // customer existed. Later events for the same id start fresh.
  Result<bool> erase_customer(std::string_view customer_id);

  // A partition's state moving between instances (docs/design.md, "Kafka"): completes any checkpoint,
  // then in one transaction sets each listed customer's state (null: erases it), removing the events
  // and dedup keys stored for it before (a restored state carries neither: its timeline starts empty),
  // gives each a change feed item, and writes the meta pairs (e.g. the input offset the states
  // reflect): all or nothing. Customer ids must be distinct, 1..kMaxIdBytes bytes, without NUL.
  Status restore_customers(std::span<const RestoredCustomer> customers,
                           std::span<const std::pair<std::string_view, std::string_view>> meta = {});

  // Completes the checkpoint in progress, then writes every other pending
  // change to `customers` and `events`, in one transaction each. Run on
  // destruction too.
  Status checkpoint();

  // Bounded checkpoint progress: writes the next slice of the checkpoint in
  // progress, or begins one and writes its first slice if one is due (or if
  // begin_now and anything is pending). Slices are sized so a checkpoint ends
  // well before the next is due at the current batch size. Returns whether
  // a checkpoint is still in progress.
  Result<bool> checkpoint_step(bool begin_now = false);

  Result<std::optional<CustomerState>> get_customer(std::string_view customer_id) const;

  // A customer's events, newest first (by ts, then event_id, both descending),
  // at most `limit`, starting strictly after `after` (from the newest when
  // nullopt). A keyset position, not an offset: events stored between two
  // calls neither repeat nor hide the events that follow `after`.
  Result<std::vector<TimelineEvent>> customer_events(std::string_view customer_id,
                                                     const std::optional<TimelineKey>& after, std::size_t limit) const;

  // Returns false to stop a visit early.
  using Visitor = std::function<bool(std::string_view id, const CustomerState& state)>;

  // Visits every customer in key order (bytes, then length) inside one read
  // snapshot, changes not yet checkpointed included; stops early if the
  // visitor returns false.
  Status for_each_customer(const Visitor& visit) const;
  // The same, starting strictly after the customer id `after` (which need not
  // be stored): a keyset position, so listings can resume or be merged.
  Status for_each_customer(const Visitor& visit, std::string_view after) const;

  // The change feed: each customer whose latest change (event or erasure)
  // has a sequence > after, once, in sequence order, at most `limit` items,
  // each with its state in the same snapshot. A customer changing again
  // moves to the end. Sequences only grow: a cursor never misses a change.
  Result<ChangePage> changes(std::uint64_t after, std::size_t limit) const;

  Status put_meta(std::string_view key, std::string_view value);
  Result<std::optional<std::string>> get_meta(std::string_view key) const;

  Status add_dead_letters(std::span<const DeadLetter> letters);
  // Oldest first, starting after sequence `after`, at most `limit`.
  Result<std::vector<StoredDeadLetter>> dead_letters(std::uint64_t after, std::size_t limit) const;
  // Removes the dead letters with these sequences; returns how many were there.
  Result<std::size_t> remove_dead_letters(std::span<const std::uint64_t> sequences);

  // Alerts outbox (storage/outbox.h). The observer (nullptr: none) applies from the next apply_batch.
  void set_outbox_observer(std::shared_ptr<OutboxObserver> observer);
  // Appends pending entries in one transaction (alerts not fired by an event: tier changes).
  Status add_outbox(std::span<const std::string> payloads);
  // rapportctl migrate: appends pending and dead entries in one transaction, numbered from at least
  // next_at_least (which also raises the sequence high-water mark: later entries never reuse a lower number).
  Status import_outbox(std::span<const std::string> pending, std::span<const std::string> dead,
                       std::uint64_t next_at_least);
  // One past the highest sequence this Store has given an entry (1 when none).
  Result<std::uint64_t> outbox_next_sequence() const;
  // Oldest first, starting after sequence `after`, at most `limit`.
  Result<std::vector<OutboxEntry>> outbox(OutboxArea area, std::uint64_t after, std::size_t limit) const;
  // Deletes entries of `area`; returns how many were there.
  Result<std::size_t> remove_outbox(OutboxArea area, std::span<const std::uint64_t> sequences);
  // Moves entries from `from` to the other area, keeping their sequence; returns how many moved.
  Result<std::size_t> move_outbox(OutboxArea from, std::span<const std::uint64_t> sequences);
  Result<OutboxStats> outbox_stats() const;
  // Queues a pending entry to delete (delivered = true) or to move to the dead area; the change is
  // written inside the next apply_batch's transaction (no commit of its own under load) or by
  // flush_outbox_changes(), whichever runs first. Any thread. A crash before then loses the change:
  // the entry stays pending (at-least-once).
  void queue_outbox_change(std::uint64_t sequence, bool delivered);
  // Writes the queued changes in one transaction (none when the queue is empty); returns how many.
  Result<std::size_t> flush_outbox_changes();

  StoreStats stats() const;
  const StoreOptions& options() const;

  // Hot, compacted copy of the environment into an empty directory. It holds
  // the journal too: opening the copy replays events not yet checkpointed.
  Status backup(const std::string& destination_directory) const;

 private:
  struct Impl;
  explicit Store(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace rapport
