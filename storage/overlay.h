// Internal to storage/. The in-memory overlays (changes journaled since the
// last checkpoint: customer states, pending events and their dedup keys) and
// the Delta a write transaction computes before it installs them.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "scoring/customer_state.h"

namespace rapport::storage_internal {

// Checkpoint size estimates (bytes beyond key and value per LMDB entry; customer record without day lists).
constexpr std::size_t kEntryOverhead = 16;
constexpr std::size_t kIndexValueBytes = 17;
constexpr std::size_t kStateBaseBytes = 224;

constexpr std::uint32_t kNone = UINT32_MAX;

inline std::uint64_t hash_key(std::string_view key) { return std::hash<std::string_view>{}(key); }

// Open-addressing hash index (linear probing) of ids whose key bytes live
// elsewhere: key_of(id) returns them. Stores each key's hash, so growing never
// reads keys. Cleared in place, keeping its capacity.
class KeyIndex {
 public:
  template <typename KeyOf>
  std::uint32_t find(std::string_view key, std::uint64_t hash, const KeyOf& key_of) const {
    if (slots_.empty()) return kNone;
    for (std::size_t i = hash & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.id == kEmpty) return kNone;
      if (s.id != kDeleted && s.hash == hash && key_of(s.id) == key) return s.id;
    }
  }
  // The key must be absent.
  void insert(std::uint32_t id, std::uint64_t hash) {
    if ((used_ + 1) * 2 > slots_.size()) grow();
    std::size_t i = hash & mask_;
    while (slots_[i].id != kEmpty) i = (i + 1) & mask_;
    slots_[i] = Slot{hash, id};
    ++used_;
    ++size_;
  }
  template <typename KeyOf>
  void erase(std::string_view key, std::uint64_t hash, const KeyOf& key_of) {
    if (slots_.empty()) return;
    for (std::size_t i = hash & mask_;; i = (i + 1) & mask_) {
      Slot& s = slots_[i];
      if (s.id == kEmpty) return;
      if (s.id != kDeleted && s.hash == hash && key_of(s.id) == key) {
        s.id = kDeleted;  // a tombstone until the next clear or growth
        --size_;
        return;
      }
    }
  }
  // Empties the index; keeps the capacity unless it is far beyond `expected` entries.
  void clear(std::size_t expected = 0) {
    if (slots_.size() > 64 && slots_.size() > 8 * std::max<std::size_t>(expected, size_)) {
      std::vector<Slot>().swap(slots_);
      mask_ = 0;
    } else {
      std::fill(slots_.begin(), slots_.end(), Slot{});
    }
    used_ = size_ = 0;
  }
  std::size_t size() const { return size_; }

 private:
  static constexpr std::uint32_t kEmpty = UINT32_MAX, kDeleted = UINT32_MAX - 1;
  struct Slot {
    std::uint64_t hash = 0;
    std::uint32_t id = kEmpty;
  };
  void grow() {
    std::vector<Slot> old;
    old.swap(slots_);
    std::size_t capacity = 64;
    while (capacity < 4 * (size_ + 1)) capacity *= 2;
    slots_.assign(capacity, Slot{});
    mask_ = capacity - 1;
    used_ = size_;
    for (const Slot& s : old) {
      if (s.id == kEmpty || s.id == kDeleted) continue;
      std::size_t i = s.hash & mask_;
      while (slots_[i].id != kEmpty) i = (i + 1) & mask_;
      slots_[i] = s;
    }
  }
  std::vector<Slot> slots_;
  std::size_t mask_ = 0;
  std::size_t used_ = 0;  // live entries and tombstones
  std::size_t size_ = 0;  // live entries
};

// Appends s to an arena; returns its offset.
inline std::uint64_t arena_append(std::string& arena, std::string_view s) {
  const std::uint64_t offset = arena.size();
  arena.append(s);
  return offset;
}

// An event journaled since the last checkpoint.
struct PendingEvent {
  std::uint64_t seq = 0;
  std::int64_t ts_ms = 0;
  std::uint64_t key = 0;       // offset in the pending arena of customer_id '\0' event_id
  std::uint32_t next = kNone;  // the customer's next pending event
  std::uint16_t key_size = 0;
};

// A customer changed since the last checkpoint.
struct OverlayEntry {
  std::shared_ptr<const CustomerState> state;  // nullptr: erased since
  std::uint64_t id = 0;                        // offset of the customer id in the customer arena
  std::uint32_t first = kNone, last = kNone;   // its pending events, in journal order
  std::uint32_t count = 0;
  std::uint32_t record_bytes = 0;  // checkpoint size estimate of the state record
  std::uint16_t id_size = 0;
  bool in_db = false;    // `customers` holds (or, for an entry taken over from the frozen overlay, will hold) a record
  bool written = false;  // frozen overlay: its checkpoint slice has been committed
};

// Customer changes and pending events since a checkpoint position: the active
// overlay (events journaled since the last checkpoint began) or the frozen one
// (what the checkpoint in progress is writing). Entries and pending events
// are append-only until the overlay is cleared; erased customers' entries stay, dead.
struct Overlay {
  std::vector<OverlayEntry> entries;
  std::string customer_arena;  // their ids
  KeyIndex customer_index;     // id -> entry
  std::vector<PendingEvent> pending;
  std::string pending_arena;  // their keys: customer_id '\0' event_id
  KeyIndex pending_index;     // key -> pending event, for dedup: the writer's alone (not under overlay_mutex)
  // Counters of what is not in the stored databases yet (frozen: not yet written by a slice).
  std::size_t pending_events = 0;
  std::size_t new_customers = 0;     // entries without a `customers` record
  std::size_t checkpoint_bytes = 0;  // size estimate of their records

  std::string_view customer_id(const OverlayEntry& e) const {
    return std::string_view(customer_arena).substr(e.id, e.id_size);
  }
  std::string_view pending_key(const PendingEvent& e) const {
    return std::string_view(pending_arena).substr(e.key, e.key_size);
  }
  std::uint32_t find_entry(std::string_view id, std::uint64_t hash) const {
    return customer_index.find(id, hash, [&](std::uint32_t i) { return customer_id(entries[i]); });
  }
  bool is_pending(std::string_view event_key, std::uint64_t hash) const {
    return pending_index.find(event_key, hash, [&](std::uint32_t i) { return pending_key(pending[i]); }) != kNone;
  }
  bool empty() const { return entries.empty(); }
  // Empties the overlay but its dedup index (capacity kept); returns the
  // entries so that the caller frees their states outside any lock.
  std::vector<OverlayEntry> clear() {
    std::vector<OverlayEntry> old;
    old.swap(entries);
    entries.reserve(old.capacity());
    customer_arena.clear();
    customer_index.clear();
    pending.clear();
    pending_arena.clear();
    pending_events = new_customers = checkpoint_bytes = 0;
    return old;
  }
};

inline std::uint32_t estimate_record_bytes(std::string_view id, const CustomerState& s) {
  return static_cast<std::uint32_t>(
      id.size() + kEntryOverhead + kStateBaseBytes +
      12 * (s.purchase_days.size() + s.recent_cost_days.size() + s.recent_refund_days.size()));
}

// Changes computed inside a write (or replay) transaction, installed into the
// overlay only once it committed.
struct StateChange {
  std::shared_ptr<CustomerState> state;
  std::uint64_t id = 0;  // offset in Delta::customer_arena
  std::uint64_t hash = 0;
  std::uint32_t live = kNone;  // the overlay entry it replaces (kNone: customer new to the overlay)
  std::uint16_t id_size = 0;
  bool in_db = false;    // a `customers` record existed at the last checkpoint
  bool changed = false;  // an event was applied (else nothing to install)
};
struct NewEvent {
  std::uint64_t seq = 0;
  std::int64_t ts_ms = 0;
  std::uint64_t key = 0;  // offset in Delta::key_arena
  std::uint64_t hash = 0;
  std::uint32_t customer = 0;  // index in Delta::customers
  std::uint16_t key_size = 0;
};
struct Delta {
  std::vector<StateChange> customers;
  std::string customer_arena;
  KeyIndex customer_index;
  std::vector<NewEvent> events;
  std::string key_arena;
  KeyIndex key_index;
  bool rebuild = false;          // replaces the overlay (after another process's checkpoint, or at open)
  std::uint64_t generation = 0;  // rebuild: the stored generation and checkpoint sequence
  std::uint64_t checkpoint = 0;
  std::uint64_t last_seq = 0;  // highest journal sequence covered
  std::uint64_t next_seq = 0;  // next journal sequence to use
  bool config_changed = false;
  ApplyConfig config;
  std::string config_bytes;

  std::string_view customer_id(std::uint32_t i) const {
    return std::string_view(customer_arena).substr(customers[i].id, customers[i].id_size);
  }
  std::string_view key(std::uint32_t i) const {
    return std::string_view(key_arena).substr(events[i].key, events[i].key_size);
  }
  // Whether customer_id '\0' event_id is among the new events.
  bool has_key(std::string_view k, std::uint64_t hash) const {
    return key_index.find(k, hash, [&](std::uint32_t i) { return key(i); }) != kNone;
  }
  void add_event(std::string_view k, std::uint64_t hash, std::uint32_t customer, std::uint64_t seq,
                 std::int64_t ts_ms) {
    const auto i = static_cast<std::uint32_t>(events.size());
    events.push_back(
        NewEvent{seq, ts_ms, arena_append(key_arena, k), hash, customer, static_cast<std::uint16_t>(k.size())});
    key_index.insert(i, hash);
  }
  void clear() {
    customers.clear();
    customer_arena.clear();
    customer_index.clear(1 << 16);
    events.clear();
    key_arena.clear();
    key_index.clear(1 << 16);
    rebuild = false;
    generation = checkpoint = last_seq = next_seq = 0;
    config_changed = false;
  }
};

}  // namespace rapport::storage_internal
