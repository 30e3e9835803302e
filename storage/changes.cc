// The change feed (docs/design.md, "Change feed"). A customer's feed item is
// the journal sequence of its latest change: its last event, or its erasure
// (a tombstone, which takes a sequence of its own). Nothing is written on the
// acknowledgement path: changes since the last checkpoint are the overlays'
// entries (their last pending event); a checkpoint slice writes each
// customer's item with its record, erasure its tombstone with the erasure.
//
// The `changes` database holds three kinds of keys (values start with
// kRecordVersion):
//   'S' seq        -> kind (0 change, 1 tombstone) + customer id   the feed, in order
//   'C' customer   -> seq + kind                                  its current item
//   'D' seq        -> customer id                                 tombstones, oldest first
// ('S' sorts last, so new items, mostly later than every stored one, are appended.)
// so it grows with customers (plus at most options.feed_tombstones
// tombstones), not with events. Compacting a tombstone raises the floor
// (meta storage.feed_floor): cursors below it may have missed an erasure.
#include <algorithm>
#include <optional>
#include <span>
#include <vector>

#include "storage/engine.h"

namespace rapport {
namespace storage_internal {
namespace {

constexpr std::string_view kFeedFloorKey = "storage.feed_floor";
constexpr std::string_view kFeedTombstonesKey = "storage.feed_tombstones";
constexpr std::string_view kFeedVersionKey = "storage.feed_version";  // 1: every stored customer has an item
constexpr char kSeqTag = 'S', kCustomerTag = 'C', kTombstoneTag = 'D';
constexpr char kKindChange = 0, kKindTombstone = 1;

std::string seq_key(char tag, std::uint64_t seq) { return tag + sequence_key(seq); }
std::string customer_key(std::string_view id) {
  std::string k(1, kCustomerTag);
  k.append(id);
  return k;
}

int put(MDB_txn* txn, MDB_dbi dbi, std::string_view key, std::string_view value) {
  MDB_val k = to_val(key), v = to_val(value);
  return mdb_put(txn, dbi, &k, &v, 0);
}
int del(MDB_txn* txn, MDB_dbi dbi, std::string_view key) {
  MDB_val k = to_val(key);
  const int rc = mdb_del(txn, dbi, &k, nullptr);
  return rc == MDB_NOTFOUND ? 0 : rc;
}

}  // namespace

int Engine::put_changes(MDB_txn* txn, std::span<const FeedWrite> writes, std::string& context) {
  context = "cannot write the change feed";
  // The tombstone count is read only when a tombstone comes or goes.
  std::optional<std::uint64_t> tombstones;
  auto count_tombstones = [&](int change) {
    if (!tombstones) {
      std::uint64_t stored = 0;
      if (const int rc = get_meta_u64(txn, kFeedTombstonesKey, stored, context); rc != 0) return rc;
      context = "cannot write the change feed";
      tombstones = stored;
    }
    *tombstones = change < 0 && *tombstones == 0 ? 0 : *tombstones + change;
    return 0;
  };
  Cursor cursor;
  int rc = cursor.open(txn, changes);
  if (rc != 0) return rc;
  // 1. Each customer's current item ('C', in the callers' key order): one search, which inserts it for a
  // customer without one and otherwise leaves the cursor on it, to overwrite it in place.
  std::vector<std::pair<std::uint64_t, bool>> dropped;  // previous items: seq, was a tombstone
  std::string item, dbkey;
  for (const FeedWrite& w : writes) {
    item.assign(1, static_cast<char>(kRecordVersion));
    item += sequence_key(w.seq);
    item.push_back(w.tombstone ? kKindTombstone : kKindChange);
    dbkey = customer_key(w.id);
    MDB_val k = to_val(dbkey), v = to_val(item);
    rc = cursor.put(k, v, MDB_NOOVERWRITE);
    if (rc == MDB_KEYEXIST) {
      const std::string_view stored = to_view(v);
      if (stored.size() != 10 || static_cast<std::uint8_t>(stored[0]) != kRecordVersion) {
        context = "change feed record of customer " + in_quotes(w.id) + " is corrupt";
        return kFailed;
      }
      dropped.emplace_back(parse_sequence_key(stored.substr(1, 8)), stored[9] == kKindTombstone);
      MDB_val current = to_val(item);
      if ((rc = cursor.put(k, current, MDB_CURRENT)) != 0) return rc;
    } else if (rc != 0) {
      return rc;
    }
  }
  // 2. Their previous items go, 3. the new ones come: each in sequence order, for locality in the tree.
  std::sort(dropped.begin(), dropped.end());
  for (const auto& [previous, was_tombstone] : dropped) {
    if ((rc = del(txn, changes, seq_key(kSeqTag, previous))) != 0) return rc;
    if (was_tombstone) {
      if ((rc = del(txn, changes, seq_key(kTombstoneTag, previous))) != 0) return rc;
      if ((rc = count_tombstones(-1)) != 0) return rc;
    }
  }
  std::vector<std::uint32_t> by_seq(writes.size());
  for (std::uint32_t i = 0; i < by_seq.size(); ++i) by_seq[i] = i;
  std::sort(by_seq.begin(), by_seq.end(),
            [&](std::uint32_t x, std::uint32_t y) { return writes[x].seq < writes[y].seq; });
  // The last key of the database, if an item: items after it are appended (no search).
  std::uint64_t last_item = UINT64_MAX;
  {
    MDB_val k, v;
    rc = cursor.get(k, v, MDB_LAST);
    if (rc == MDB_NOTFOUND) {
      last_item = 0;
    } else if (rc != 0) {
      return rc;
    } else if (k.mv_size == 9 && static_cast<const char*>(k.mv_data)[0] == kSeqTag) {
      last_item = parse_sequence_key(to_view(k).substr(1));
    }
  }
  for (const std::uint32_t i : by_seq) {
    const FeedWrite& w = writes[i];
    item.assign(1, static_cast<char>(kRecordVersion));
    item.push_back(w.tombstone ? kKindTombstone : kKindChange);
    item.append(w.id);
    dbkey = seq_key(kSeqTag, w.seq);
    MDB_val k = to_val(dbkey), v = to_val(item);
    const bool append = last_item != UINT64_MAX && w.seq > last_item;
    if ((rc = cursor.put(k, v, append ? MDB_APPEND : 0)) != 0) return rc;
    if (append) last_item = w.seq;
    if (w.tombstone) {
      if ((rc = put(txn, changes, seq_key(kTombstoneTag, w.seq), w.id)) != 0) return rc;
      if ((rc = count_tombstones(+1)) != 0) return rc;
    }
  }
  if (!tombstones) return 0;
  // Compaction: drop the oldest tombstones beyond the bound; the floor rises to the last one dropped.
  if (*tombstones > options.feed_tombstones) {
    std::uint64_t floor = 0;
    if ((rc = get_meta_u64(txn, kFeedFloorKey, floor, context)) != 0) return rc;
    context = "cannot compact the change feed";
    Cursor oldest;
    if ((rc = oldest.open(txn, changes)) != 0) return rc;
    while (*tombstones > options.feed_tombstones) {
      const std::string first(1, kTombstoneTag);
      MDB_val tk = to_val(first), tv;
      rc = oldest.get(tk, tv, MDB_SET_RANGE);
      if (rc == MDB_NOTFOUND || (rc == 0 && !starts_with(tk, first))) break;
      if (rc != 0) return rc;
      const std::uint64_t old = parse_sequence_key(to_view(tk).substr(1));
      const std::string old_id(to_view(tv));
      if ((rc = oldest.del()) != 0) return rc;
      if ((rc = del(txn, changes, seq_key(kSeqTag, old))) != 0) return rc;
      // The customer's current item is this tombstone unless it changed since.
      const std::string old_ckey = customer_key(old_id);
      MDB_val ck = to_val(old_ckey), cv;
      rc = mdb_get(txn, changes, &ck, &cv);
      if (rc == 0 && to_view(cv).substr(1, 8) == sequence_key(old)) rc = del(txn, changes, old_ckey);
      if (rc != 0 && rc != MDB_NOTFOUND) return rc;
      floor = std::max(floor, old);
      --*tombstones;
    }
    if ((rc = put_meta_u64(txn, kFeedFloorKey, floor, context)) != 0) return rc;
  }
  return put_meta_u64(txn, kFeedTombstonesKey, *tombstones, context);
}

Status Engine::backfill_changes() {
  return write([&](MDB_txn* txn, std::string& context) -> int {
    std::uint64_t version = 0, next = 0, checkpoint = 0, last = 0;
    int rc = get_meta_u64(txn, kFeedVersionKey, version, context);
    if (rc != 0 || version >= 1) return rc;
    if ((rc = get_meta_u64(txn, kJournalNextKey, next, context)) != 0) return rc;
    if ((rc = get_meta_u64(txn, kCheckpointKey, checkpoint, context)) != 0) return rc;
    if ((rc = journal_last(txn, last, context)) != 0) return rc;
    next = std::max({next, last + 1, checkpoint + 1});
    // Customers with a record and no item yet, in key order, each at a sequence never used.
    Cursor cursor;
    if ((rc = cursor.open(txn, customers)) != 0) return rc;
    const std::uint64_t first = next;
    MDB_val k, v;
    for (rc = cursor.get(k, v, MDB_FIRST); rc == 0; rc = cursor.get(k, v, MDB_NEXT)) {
      const std::string id(to_view(k));
      const std::string ckey = customer_key(id);
      MDB_val ck = to_val(ckey), cv;
      const int found = mdb_get(txn, changes, &ck, &cv);
      if (found == 0) continue;
      if (found != MDB_NOTFOUND) return found;
      const FeedWrite write{id, next++, false};
      if ((rc = put_changes(txn, std::span(&write, 1), context)) != 0) return rc;
    }
    if (rc != MDB_NOTFOUND) {
      context = "cannot read the customers";
      return rc;
    }
    if (next != first) {
      // Another process that has the store open takes its next sequences after these: a new generation
      // makes it reload the journal's next sequence before it writes.
      std::uint64_t stored_generation = 0;
      if ((rc = put_meta_u64(txn, kJournalNextKey, next, context)) != 0) return rc;
      if ((rc = get_meta_u64(txn, kGenerationKey, stored_generation, context)) != 0) return rc;
      if ((rc = put_meta_u64(txn, kGenerationKey, stored_generation + 1, context)) != 0) return rc;
    }
    return put_meta_u64(txn, kFeedVersionKey, 1, context);
  });
}

}  // namespace storage_internal

using namespace storage_internal;

Result<ChangePage> Store::changes(std::uint64_t after, std::size_t limit) const {
  const Impl& d = *impl_;
  ChangePage page;
  if (d.empty || limit == 0 || after == UINT64_MAX) return page;
  struct Pending {
    std::uint64_t seq;
    std::string id;
    std::shared_ptr<const CustomerState> state;
  };
  const auto later = [](const Pending& x, const Pending& y) { return x.seq < y.seq; };
  // The overlays' `limit` earliest items after the cursor (a max-heap while copying): O(changed customers)
  // per call, but only `limit` of them copied.
  std::vector<Pending> pending;
  Status s = d.read_merged(
      [&] {
        pending.clear();
        auto consider = [&](const Overlay& overlay, const OverlayEntry& entry, bool frozen) {
          if (!entry.state || entry.last == kNone) return;
          const std::uint64_t seq = overlay.pending[entry.last].seq;
          if (seq <= after || (pending.size() == limit && seq >= pending.front().seq)) return;
          const std::string_view id = overlay.customer_id(entry);
          if (frozen && d.active.find_entry(id, hash_key(id)) != kNone) return;  // changed again since: later
          pending.push_back(Pending{seq, std::string(id), entry.state});
          std::push_heap(pending.begin(), pending.end(), later);
          if (pending.size() > limit) {
            std::pop_heap(pending.begin(), pending.end(), later);
            pending.pop_back();
          }
        };
        for (const OverlayEntry& entry : d.frozen.entries) consider(d.frozen, entry, true);
        for (const OverlayEntry& entry : d.active.entries) consider(d.active, entry, false);
      },
      [&](MDB_txn* txn, bool with_overlay) -> Status {
        page.items.clear();
        if (!with_overlay) pending.clear();
        std::sort(pending.begin(), pending.end(), later);
        // A stored item of a customer the overlays hold is superseded by the overlay's (later, or the
        // same when its slice is written). One whose overlay item was not copied (not among the `limit`
        // earliest, or installed since the copy) comes on a later page, at its later sequence.
        auto superseded = [&](std::string_view id) {
          if (!with_overlay) return false;
          std::shared_lock<std::shared_mutex> lock(d.overlay_mutex);
          return d.overlay_state(id, hash_key(id)) != nullptr;
        };
        std::string context;
        int rc = d.get_meta_u64(txn, kFeedFloorKey, page.floor, context);
        if (rc == kFailed) return Status::Error(context);
        if (rc != 0) return Status::Error(d.describe(context, rc));
        std::size_t next = 0;  // into pending
        Cursor cursor;
        rc = d.has_changes ? cursor.open(txn, d.changes) : MDB_NOTFOUND;
        const std::string start = seq_key(kSeqTag, after + 1);
        MDB_val k = to_val(start), v;
        if (rc == 0) rc = cursor.get(k, v, MDB_SET_RANGE);
        while (page.items.size() < limit) {
          if (rc != 0 && rc != MDB_NOTFOUND) return Status::Error(d.describe("cannot read the change feed", rc));
          const bool stored = rc == 0 && k.mv_size == 9 && static_cast<const char*>(k.mv_data)[0] == kSeqTag;
          const std::uint64_t stored_seq = stored ? parse_sequence_key(to_view(k).substr(1)) : 0;
          if (next < pending.size() && (!stored || pending[next].seq < stored_seq)) {
            Pending& p = pending[next++];
            page.items.push_back(Change{p.seq, std::move(p.id), *p.state});
            continue;
          }
          if (!stored) break;
          const std::string_view value = to_view(v);
          if (value.size() < 3 || static_cast<std::uint8_t>(value[0]) != kRecordVersion) {
            return Status::Error("change feed item " + std::to_string(stored_seq) + " is corrupt");
          }
          const bool tombstone = value[1] == kKindTombstone;
          const std::string_view id = value.substr(2);
          if (!superseded(id)) {
            Change change{stored_seq, std::string(id), std::nullopt};
            if (!tombstone) {
              MDB_val ck = to_val(id), cv;
              rc = mdb_get(txn, d.customers, &ck, &cv);
              if (rc != 0) {
                return Status::Error(d.describe("cannot read customer " + in_quotes(id) + " of the change feed", rc));
              }
              change.state.emplace();
              if (Status st = deserialize(to_view(cv), *change.state); !st) {
                return Status::Error("customer record " + in_quotes(id) + ": " + st.message());
              }
            }
            page.items.push_back(std::move(change));
          }
          rc = cursor.get(k, v, MDB_NEXT);
        }
        return Status::Ok();
      });
  if (!s) return s;
  return page;
}

}  // namespace rapport
