// Store on LMDB. See store.h for the contract and docs/design.md ("Storage") for the design.
//
// Write path: apply_batch deduplicates each event against the keys pending in
// memory and the `events` index (a read), appends accepted events to the
// `journal` with MDB_APPEND and commits: that commit is the acknowledgement.
// Then the changed customer states and the new pending keys join the
// in-memory overlay. A checkpoint writes the overlay (customers sorted, each
// once) and the pending index entries (sorted) plus the last journal sequence
// applied in one transaction, then empties the overlay. open() replays the
// journal after that sequence. Journal entries are kept (the durable event
// log: timelines read event details from it); erase_customer deletes a
// customer's entries. Journal records of kind "apply config" record each
// change of the ApplyConfig, so replay applies every event exactly as it was
// applied at acknowledgement.
//
// Locking:
//  - op_mutex_ serialises the writers of the journal and the overlay
//    (apply_batch, erase_customer, checkpoint) for their whole run, including
//    the in-memory update after the commit.
//  - write_mutex serialises every write transaction (LMDB allows one writer
//    per environment anyway; the mutex keeps the scratch buffers private).
//  - resize_mutex protects the memory map: every transaction (read or
//    write) holds it shared for its whole life; changing the map size
//    (growth on MDB_MAP_FULL, or adopting another process's growth on
//    MDB_MAP_RESIZED) holds it exclusively, as mdb_env_set_mapsize requires
//    that no transaction of this process is active.
//  - gate makes the resize lock writer-preferring: shared lockers pass
//    through it briefly, the resizer holds it while waiting for the exclusive
//    lock, so a stream of readers cannot starve growth.
//  - Nested reads on one thread (a read inside a for_each_customer visitor)
//    do not lock again; a thread holding a read snapshot cannot grow the map
//    and gets an error instead of a deadlock.
//  - overlay_mutex guards the overlay. It is a leaf lock: whoever holds it
//    never waits for another lock or runs a transaction. The writer changes
//    the overlay (exclusively) only after its commit; readers copy what they
//    need (shared), release it, then read a snapshot. The `storage.generation`
//    meta value, bumped by every checkpoint and erasure, tells a reader whether
//    its copy and its snapshot fit together; if not (the writer committed but
//    has not updated the overlay yet) it copies again.
//
// Several processes: every journal/overlay write transaction first checks the
// generation and the last journal sequence; if another process wrote since,
// the overlay catches up from the journal (or is rebuilt after another
// process's checkpoint) before the write is retried.
#include "storage/store.h"

#include <errno.h>
#include <lmdb.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <shared_mutex>
#include <system_error>
#include <thread>
#include <utility>

#include "storage/key_order.h"

namespace rapport {
namespace {

constexpr std::uint8_t kRecordVersion = 1;  // first byte of journal, meta and deadletter values (and old events values)
constexpr std::uint8_t kIndexVersion = 2;   // first byte of events values: journal sequence + ts
// An I/O error with less than this much space left on the state dir's file system is reported as disk full.
constexpr std::uint64_t kDiskFullBytes = 1u << 20;
constexpr int kFailed = -1;  // body failed with a message of its own (not an LMDB code)
constexpr unsigned kMaxReaders = 256;
constexpr std::uint64_t kNoGeneration = UINT64_MAX;
// Reserved meta keys. Next dead-letter sequence, so sequences never repeat even
// after every dead letter was removed.
constexpr std::string_view kDeadLetterNextKey = "storage.dead_letter_next_sequence";
// Last journal sequence applied to `customers` and `events`.
constexpr std::string_view kCheckpointKey = "storage.checkpoint_sequence";
// Bumped by every checkpoint and erasure (changes other than journal appends).
constexpr std::string_view kGenerationKey = "storage.generation";
// Lower bound of the next journal sequence (erasure may delete the last entries).
constexpr std::string_view kJournalNextKey = "storage.journal_next_sequence";
// The ApplyConfig in effect at the checkpoint sequence.
constexpr std::string_view kApplyConfigKey = "storage.apply_config";

// Journal record kinds (second byte of a journal value).
enum : std::uint8_t { kJournalEvent = 0, kJournalApplyConfig = 1 };

// Presence bits of the optional event fields.
enum : std::uint8_t { kHasAmount = 1, kHasCost = 2, kHasSentiment = 4, kHasNps = 8, kHasCsat = 16, kHasRating = 32 };

// Checkpoint size estimates (bytes beyond key and value per LMDB entry; customer record without day lists).
constexpr std::size_t kEntryOverhead = 16;
constexpr std::size_t kIndexValueBytes = 17;
constexpr std::size_t kStateBaseBytes = 224;

MDB_val to_val(std::string_view s) { return MDB_val{s.size(), const_cast<char*>(s.data())}; }
std::string_view to_view(const MDB_val& v) { return {static_cast<const char*>(v.mv_data), v.mv_size}; }

std::string in_quotes(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  out += s;
  out += '"';
  return out;
}

std::string format_bytes(std::size_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(bytes);
  int unit = 0;
  while (v >= 1024.0 && unit < 5) {
    v /= 1024.0;
    ++unit;
  }
  char buf[48];
  if (unit == 0) {
    std::snprintf(buf, sizeof buf, "%zu B", bytes);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f %s", v, kUnits[unit]);
  }
  return buf;
}

// ---- little-endian / big-endian encoding ----

void put_u32(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put_u64(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put_f64(std::string& out, double v) { put_u64(out, std::bit_cast<std::uint64_t>(v)); }
void put_str(std::string& out, std::string_view s) {
  put_u32(out, static_cast<std::uint32_t>(s.size()));
  out.append(s);
}

std::string sequence_key(std::uint64_t seq) {
  std::string key(8, '\0');
  for (int i = 0; i < 8; ++i) key[i] = static_cast<char>((seq >> (8 * (7 - i))) & 0xff);
  return key;
}
std::uint64_t parse_sequence_key(std::string_view key) {
  std::uint64_t seq = 0;
  for (unsigned char c : key.substr(0, 8)) seq = (seq << 8) | c;
  return seq;
}

// Bounds-checked reader over a stored value.
class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}
  bool u8(std::uint8_t& v) {
    if (data_.empty()) return false;
    v = static_cast<std::uint8_t>(data_[0]);
    data_.remove_prefix(1);
    return true;
  }
  bool u32(std::uint32_t& v) {
    if (data_.size() < 4) return false;
    v = 0;
    for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(data_[i]);
    data_.remove_prefix(4);
    return true;
  }
  bool u64(std::uint64_t& v) {
    if (data_.size() < 8) return false;
    v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(data_[i]);
    data_.remove_prefix(8);
    return true;
  }
  bool i64(std::int64_t& v) {
    std::uint64_t u;
    if (!u64(u)) return false;
    v = static_cast<std::int64_t>(u);
    return true;
  }
  bool f64(std::optional<double>& v) {
    std::uint64_t u;
    if (!u64(u)) return false;
    v = std::bit_cast<double>(u);
    return true;
  }
  bool bytes(std::size_t n, std::string_view& v) {
    if (data_.size() < n) return false;
    v = data_.substr(0, n);
    data_.remove_prefix(n);
    return true;
  }
  bool str(std::string& v) {
    std::uint32_t n;
    std::string_view s;
    if (!u32(n) || !bytes(n, s)) return false;
    v.assign(s);
    return true;
  }
  bool done() const { return data_.empty(); }

 private:
  std::string_view data_;
};

void put_sequence(char (&out)[8], std::uint64_t seq) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((seq >> (8 * (7 - i))) & 0xff);
}

// Checks the version byte of a stored value; returns the payload after it.
Status check_version(std::string_view value, std::string_view what, std::uint8_t expected = kRecordVersion) {
  if (value.empty()) return Status::Error(std::string(what) + " is empty (corrupt record)");
  auto version = static_cast<std::uint8_t>(value[0]);
  if (version != expected) {
    return Status::Error(std::string(what) + " has unknown format version " + std::to_string(version) +
                         " (written by a newer Rapport?)");
  }
  return Status::Ok();
}

// ---- events ----

// The stored fields of an event (after any ids): ts, type, presence mask,
// channel, then the present optional numbers.
void put_event_fields(const Event& e, std::string& out) {
  put_u64(out, static_cast<std::uint64_t>(e.ts_ms));
  out.push_back(static_cast<char>(e.type));
  std::uint8_t mask = (e.amount ? kHasAmount : 0) | (e.cost ? kHasCost : 0) | (e.sentiment ? kHasSentiment : 0) |
                      (e.nps ? kHasNps : 0) | (e.csat ? kHasCsat : 0) | (e.rating ? kHasRating : 0);
  out.push_back(static_cast<char>(mask));
  out.push_back(static_cast<char>(e.channel.size()));  // <= kMaxChannelBytes
  out.append(e.channel.view());
  for (const std::optional<double>* f : {&e.amount, &e.cost, &e.sentiment, &e.nps, &e.csat, &e.rating}) {
    if (*f) put_f64(out, **f);
  }
}

struct EventFields {
  std::int64_t ts_ms = 0;
  EventType type = EventType::kPurchase;
  std::string_view channel;
  std::optional<double> amount, cost, sentiment, nps, csat, rating;
};

Status read_event_fields(Reader& r, const std::string& what, EventFields& out) {
  std::uint8_t type = 0, mask = 0, channel_len = 0;
  if (!r.i64(out.ts_ms) || !r.u8(type) || !r.u8(mask) || !r.u8(channel_len) || !r.bytes(channel_len, out.channel)) {
    return Status::Error(what + " is truncated (corrupt record)");
  }
  if (type >= kEventTypeCount) return Status::Error(what + " has unknown event type " + std::to_string(type));
  out.type = static_cast<EventType>(type);
  std::optional<double>* fields[] = {&out.amount, &out.cost, &out.sentiment, &out.nps, &out.csat, &out.rating};
  for (int i = 0; i < 6; ++i) {
    fields[i]->reset();
    if ((mask & (1u << i)) && !r.f64(*fields[i])) return Status::Error(what + " is truncated (corrupt record)");
  }
  if (!r.done()) return Status::Error(what + " has trailing bytes (corrupt record)");
  return Status::Ok();
}

void to_timeline(const EventFields& f, std::string_view event_id, TimelineEvent& out) {
  out.event_id.assign(event_id);
  out.ts_ms = f.ts_ms;
  out.type = f.type;
  out.channel.assign(f.channel);
  out.amount = f.amount;
  out.cost = f.cost;
  out.sentiment = f.sentiment;
  out.nps = f.nps;
  out.csat = f.csat;
  out.rating = f.rating;
}

// The ApplyConfig as stored: half-life, then the default cost per channel.
void encode_apply_config(const ApplyConfig& c, std::string& out) {
  out.clear();
  put_f64(out, c.half_life_days);
  for (double cost : c.default_cost) put_f64(out, cost);
}

bool decode_apply_config(std::string_view bytes, ApplyConfig& out) {
  Reader r(bytes);
  std::optional<double> v;
  if (!r.f64(v)) return false;
  out.half_life_days = *v;
  for (double& cost : out.default_cost) {
    if (!r.f64(v)) return false;
    cost = *v;
  }
  return r.done();
}

// Journal value: version, kind, then for an event: customer id, event id
// (each a length byte and the bytes) and the event fields; for an apply
// config: the encoded ApplyConfig.
void encode_journal_event(const Event& e, std::string& out) {
  out.clear();
  out.push_back(static_cast<char>(kRecordVersion));
  out.push_back(static_cast<char>(kJournalEvent));
  out.push_back(static_cast<char>(e.customer_id.size()));  // <= kMaxIdBytes
  out.append(e.customer_id.view());
  out.push_back(static_cast<char>(e.event_id.size()));
  out.append(e.event_id.view());
  put_event_fields(e, out);
}

struct JournalRecord {
  std::uint8_t kind = kJournalEvent;
  std::string_view customer_id, event_id;
  EventFields fields;
  ApplyConfig config;
};

Status decode_journal(std::uint64_t seq, std::string_view value, JournalRecord& out) {
  std::string what = "journal record " + std::to_string(seq);
  if (Status s = check_version(value, what); !s) return s;
  Reader r(value.substr(1));
  if (!r.u8(out.kind)) return Status::Error(what + " is truncated (corrupt record)");
  if (out.kind == kJournalApplyConfig) {
    std::string_view rest;
    r.bytes(value.size() - 2, rest);
    if (!decode_apply_config(rest, out.config)) return Status::Error(what + " is truncated (corrupt record)");
    return Status::Ok();
  }
  if (out.kind != kJournalEvent) return Status::Error(what + " has unknown kind " + std::to_string(out.kind));
  std::uint8_t n = 0;
  if (!r.u8(n) || !r.bytes(n, out.customer_id) || !r.u8(n) || !r.bytes(n, out.event_id) || out.customer_id.empty() ||
      out.event_id.empty()) {
    return Status::Error(what + " is truncated (corrupt record)");
  }
  return read_event_fields(r, what, out.fields);
}

void to_event(const JournalRecord& j, Event& e) {
  e.customer_id.assign(j.customer_id);
  e.event_id.assign(j.event_id);
  e.channel.assign(j.fields.channel);
  e.ts_ms = j.fields.ts_ms;
  e.type = j.fields.type;
  e.amount = j.fields.amount;
  e.cost = j.fields.cost;
  e.sentiment = j.fields.sentiment;
  e.nps = j.fields.nps;
  e.csat = j.fields.csat;
  e.rating = j.fields.rating;
}

// `events` values. Version 2 (written at checkpoints): journal sequence and
// ts (the timeline sorts without reading the journal). Version 1 (written by
// Rapport before the journal): the event fields themselves.
struct IndexEntry {
  std::uint64_t seq = 0;  // 0: version 1, `inline_event` holds the event
  std::int64_t ts_ms = 0;
  std::optional<TimelineEvent> inline_event;
};

void encode_index(std::uint64_t seq, std::int64_t ts_ms, std::string& out) {
  out.clear();
  out.push_back(static_cast<char>(kIndexVersion));
  put_u64(out, seq);
  put_u64(out, static_cast<std::uint64_t>(ts_ms));
}

Status decode_index(std::string_view customer_id, std::string_view event_id, std::string_view value, IndexEntry& out) {
  std::string what = "event record " + in_quotes(customer_id) + "/" + in_quotes(event_id);
  if (!value.empty() && static_cast<std::uint8_t>(value[0]) == kIndexVersion) {
    Reader r(value.substr(1));
    if (!r.u64(out.seq) || !r.i64(out.ts_ms) || !r.done() || out.seq == 0) {
      return Status::Error(what + " is truncated (corrupt record)");
    }
    return Status::Ok();
  }
  if (Status s = check_version(value, what); !s) return s;
  Reader r(value.substr(1));
  EventFields f;
  if (Status s = read_event_fields(r, what, f); !s) return s;
  out.seq = 0;
  out.ts_ms = f.ts_ms;
  to_timeline(f, event_id, out.inline_event.emplace());
  return Status::Ok();
}

void encode_dead_letter(const DeadLetter& d, std::string& out) {
  out.clear();
  out.push_back(static_cast<char>(kRecordVersion));
  put_u64(out, static_cast<std::uint64_t>(d.received_ms));
  put_str(out, d.transport);
  put_str(out, d.reason);
  put_str(out, d.message);
  put_str(out, d.payload);
}

Status decode_dead_letter(std::uint64_t seq, std::string_view value, DeadLetter& out) {
  std::string what = "dead letter " + std::to_string(seq);
  if (Status s = check_version(value, what); !s) return s;
  Reader r(value.substr(1));
  if (!r.i64(out.received_ms) || !r.str(out.transport) || !r.str(out.reason) || !r.str(out.message) ||
      !r.str(out.payload) || !r.done()) {
    return Status::Error(what + " is truncated (corrupt record)");
  }
  return Status::Ok();
}

bool starts_with(const MDB_val& key, std::string_view prefix) {
  return key.mv_size >= prefix.size() && std::memcmp(key.mv_data, prefix.data(), prefix.size()) == 0;
}

// Cursor RAII.
class Cursor {
 public:
  Cursor() = default;
  Cursor(const Cursor&) = delete;
  Cursor& operator=(const Cursor&) = delete;
  ~Cursor() {
    if (cursor_) mdb_cursor_close(cursor_);
  }
  int open(MDB_txn* txn, MDB_dbi dbi) { return mdb_cursor_open(txn, dbi, &cursor_); }
  int get(MDB_val& key, MDB_val& value, MDB_cursor_op op) { return mdb_cursor_get(cursor_, &key, &value, op); }
  int del() { return mdb_cursor_del(cursor_, 0); }
  int put(MDB_val& key, MDB_val& value, unsigned flags) { return mdb_cursor_put(cursor_, &key, &value, flags); }

 private:
  MDB_cursor* cursor_ = nullptr;
};

constexpr std::uint32_t kNone = UINT32_MAX;

std::uint64_t hash_key(std::string_view key) { return std::hash<std::string_view>{}(key); }

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
std::uint64_t arena_append(std::string& arena, std::string_view s) {
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

std::uint32_t estimate_record_bytes(std::string_view id, const CustomerState& s) {
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

}  // namespace

struct Store::Impl {
  StoreOptions options;
  MDB_env* env = nullptr;
  MDB_dbi customers = 0, events = 0, meta = 0, deadletter = 0, journal = 0;
  bool empty = false;       // read-only open of an environment that has none of our databases
  bool has_journal = true;  // false: read-only open of a store written before the journal existed
  std::size_t page_size = 4096;

  std::mutex op_mutex;
  std::mutex write_mutex;
  mutable std::mutex gate;
  mutable std::shared_mutex resize_mutex;

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

  // Writer scratch, guarded by write_mutex.
  std::string key, value;

  Impl() { encode_apply_config(journal_config, journal_config_bytes); }

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
  ~Impl() {
    if (env) mdb_env_close(env);
  }

  // ---- the resize lock ----

  // Stores whose resize lock the current thread holds shared.
  static std::vector<const Impl*>& held_by_this_thread() {
    thread_local std::vector<const Impl*> held;
    return held;
  }
  bool this_thread_holds_shared() const {
    auto& held = held_by_this_thread();
    return std::find(held.begin(), held.end(), this) != held.end();
  }

  // Shared hold of the resize lock for the life of one transaction; reentrant per thread.
  class SharedLock {
   public:
    explicit SharedLock(const Impl& impl) : impl_(impl) { lock(); }
    ~SharedLock() { unlock(); }
    SharedLock(const SharedLock&) = delete;
    SharedLock& operator=(const SharedLock&) = delete;
    void lock() {
      if (impl_.this_thread_holds_shared()) {
        nested_ = true;
      } else {
        std::lock_guard<std::mutex> gate(impl_.gate);
        impl_.resize_mutex.lock_shared();
        held_by_this_thread().push_back(&impl_);
        nested_ = false;
      }
      locked_ = true;
    }
    void unlock() {
      if (!locked_) return;
      locked_ = false;
      if (nested_) return;
      auto& held = held_by_this_thread();
      held.erase(std::find(held.begin(), held.end(), &impl_));
      impl_.resize_mutex.unlock_shared();
    }
    bool nested() const { return nested_; }

   private:
    const Impl& impl_;
    bool locked_ = false;
    bool nested_ = false;
  };

  // Runs fn() with the map exclusively locked (no transaction of this process active).
  template <typename Fn>
  Status with_map_exclusive(Fn&& fn) const {
    if (this_thread_holds_shared()) {
      return Status::Error("cannot resize the LMDB map of " + in_quotes(options.directory) +
                           " while this thread holds a read snapshot of it");
    }
    std::lock_guard<std::mutex> gate_lock(gate);
    std::unique_lock<std::shared_mutex> lock(resize_mutex);
    return fn();
  }

  // Another process grew the map: adopt its size.
  Status adopt_map_size() const {
    return with_map_exclusive([&] {
      int rc = mdb_env_set_mapsize(env, 0);
      if (rc != 0) return Status::Error(describe("cannot adopt the grown LMDB map size", rc));
      return Status::Ok();
    });
  }

  // MDB_MAP_FULL: double the map, up to options.max_map_bytes.
  Status grow_map() const {
    return with_map_exclusive([&] {
      MDB_envinfo info;
      mdb_env_info(env, &info);
      std::size_t current = info.me_mapsize;
      if (current >= options.max_map_bytes) {
        return Status::Error("storage full: map size limit " + format_bytes(options.max_map_bytes) + " reached in " +
                             in_quotes(options.directory) + " (raise the store's max map size)");
      }
      std::size_t next = current > options.max_map_bytes / 2 ? options.max_map_bytes : current * 2;
      int rc = mdb_env_set_mapsize(env, next);
      if (rc != 0) return Status::Error(describe("cannot grow the LMDB map to " + format_bytes(next), rc));
      return Status::Ok();
    });
  }

  // ---- messages ----

  // A write LMDB's file cannot take: the file system is full, or the file at the process's size limit.
  // LMDB reports a write cut short by either as EIO.
  std::string_view out_of_space(int rc) const {
    if (rc == ENOSPC || rc == EDQUOT) return "disk full";
    if (rc == EFBIG) return "file size limit reached";
    if (rc != EIO) return {};
    struct statvfs fs {};
    if (::statvfs(options.directory.c_str(), &fs) == 0 &&
        static_cast<std::uint64_t>(fs.f_bavail) * fs.f_frsize < kDiskFullBytes) {
      return "disk full";
    }
    rlimit limit{};
    struct stat data {};
    if (::getrlimit(RLIMIT_FSIZE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY &&
        ::stat((std::filesystem::path(options.directory) / "data.mdb").c_str(), &data) == 0 &&
        static_cast<rlim_t>(data.st_size) + page_size > limit.rlim_cur) {
      return "file size limit reached";
    }
    return {};
  }

  std::string describe(std::string_view context, int rc) const {
    std::string msg(out_of_space(rc));
    if (!msg.empty()) msg += ": ";
    msg += context;
    msg += " in ";
    msg += in_quotes(options.directory);
    msg += ": ";
    msg += mdb_strerror(rc);
    return msg;
  }

  // ---- transactions ----

  // Runs body(txn) -> Status in a read-only transaction.
  template <typename Body>
  Status read(Body&& body) const {
    SharedLock lock(*this);
    MDB_txn* txn = nullptr;
    for (;;) {
      int rc = mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn);
      if (rc == MDB_MAP_RESIZED && !lock.nested()) {
        lock.unlock();
        if (Status s = adopt_map_size(); !s) return s;
        lock.lock();
        continue;
      }
      if (rc != 0) return Status::Error(describe("cannot begin a read transaction", rc));
      break;
    }
    Status s = body(txn);
    mdb_txn_abort(txn);
    return s;
  }

  // Runs body(txn, context) -> int in one write transaction and commits it.
  // body returns 0, an LMDB/errno code (context then says what was being
  // done), or kFailed (context is then the whole message). On MDB_MAP_FULL the
  // transaction is aborted, the map grown and body run again from scratch.
  template <typename Body>
  Status write(Body&& body) {
    if (options.read_only) return Status::Error("store opened read-only: " + in_quotes(options.directory));
    std::lock_guard<std::mutex> writer(write_mutex);
    for (;;) {
      SharedLock lock(*this);
      MDB_txn* txn = nullptr;
      int rc = mdb_txn_begin(env, nullptr, 0, &txn);
      if (rc == MDB_MAP_RESIZED) {
        lock.unlock();
        if (Status s = adopt_map_size(); !s) return s;
        continue;
      }
      if (rc != 0) return Status::Error(describe("cannot begin a write transaction", rc));
      std::string context;
      rc = body(txn, context);
      if (rc == 0) {
        rc = mdb_txn_commit(txn);  // frees txn whatever the outcome
        if (rc != 0) context = "cannot commit";
      } else {
        mdb_txn_abort(txn);
      }
      if (rc == 0) return Status::Ok();
      lock.unlock();
      if (rc == MDB_MAP_FULL) {
        if (Status s = grow_map(); !s) return s;
        continue;
      }
      if (rc == kFailed) return Status::Error(std::move(context));
      return Status::Error(describe(context, rc));
    }
  }

  // ---- shared pieces of write bodies ----

  int append_dead_letters(MDB_txn* txn, std::span<const DeadLetter> letters, std::string& context) {
    if (letters.empty()) return 0;
    context = "cannot append dead letters";
    // Next sequence: the stored high-water mark, else the last key + 1.
    std::uint64_t next = 1;
    MDB_val k = to_val(kDeadLetterNextKey), v;
    int rc = mdb_get(txn, meta, &k, &v);
    if (rc == 0) {
      std::string_view stored = to_view(v);
      if (stored.size() != 9 || static_cast<std::uint8_t>(stored[0]) != kRecordVersion) {
        context = "meta record " + in_quotes(kDeadLetterNextKey) + " is corrupt";
        return kFailed;
      }
      next = parse_sequence_key(stored.substr(1));
    } else if (rc != MDB_NOTFOUND) {
      return rc;
    }
    Cursor cursor;
    if ((rc = cursor.open(txn, deadletter)) != 0) return rc;
    rc = cursor.get(k, v, MDB_LAST);
    if (rc == 0) {
      next = std::max(next, parse_sequence_key(to_view(k)) + 1);
    } else if (rc != MDB_NOTFOUND) {
      return rc;
    }
    for (const DeadLetter& letter : letters) {
      key = sequence_key(next++);
      encode_dead_letter(letter, value);
      k = to_val(key);
      v = to_val(value);
      if ((rc = mdb_put(txn, deadletter, &k, &v, MDB_APPEND)) != 0) return rc;
    }
    value.assign(1, static_cast<char>(kRecordVersion));
    value += sequence_key(next);
    k = to_val(kDeadLetterNextKey);
    v = to_val(value);
    if ((rc = mdb_put(txn, meta, &k, &v, 0)) != 0) return rc;
    // Trim the oldest beyond capacity.
    MDB_stat st;
    if ((rc = mdb_stat(txn, deadletter, &st)) != 0) return rc;
    for (std::size_t n = st.ms_entries; n > options.dead_letter_capacity; --n) {
      if ((rc = cursor.get(k, v, MDB_FIRST)) != 0) return rc;
      if ((rc = cursor.del()) != 0) return rc;
    }
    return 0;
  }

  // Loads a customer's state (fresh if absent) into state; found says whether it was stored.
  int load_customer(MDB_txn* txn, std::string_view customer_id, CustomerState& state, bool& found,
                    std::string& context) const {
    found = false;
    MDB_val k = to_val(customer_id), v;
    int rc = mdb_get(txn, customers, &k, &v);
    if (rc == MDB_NOTFOUND) return 0;
    if (rc != 0) {
      context = "cannot read customer " + in_quotes(customer_id);
      return rc;
    }
    if (Status s = deserialize(to_view(v), state); !s) {
      context = "customer record " + in_quotes(customer_id) + ": " + s.message();
      return kFailed;
    }
    found = true;
    return 0;
  }

  // A meta value holding one sequence number (big-endian); absent reads as 0.
  int get_meta_u64(MDB_txn* txn, std::string_view name, std::uint64_t& out, std::string& context) const {
    out = 0;
    MDB_val k = to_val(name), v;
    int rc = mdb_get(txn, meta, &k, &v);
    if (rc == MDB_NOTFOUND) return 0;
    if (rc != 0) {
      context = "cannot read meta " + in_quotes(name);
      return rc;
    }
    std::string_view stored = to_view(v);
    if (stored.size() != 9 || static_cast<std::uint8_t>(stored[0]) != kRecordVersion) {
      context = "meta record " + in_quotes(name) + " is corrupt";
      return kFailed;
    }
    out = parse_sequence_key(stored.substr(1));
    return 0;
  }

  int put_meta_u64(MDB_txn* txn, std::string_view name, std::uint64_t v, std::string& context) {
    value.assign(1, static_cast<char>(kRecordVersion));
    value += sequence_key(v);
    MDB_val k = to_val(name), val = to_val(value);
    int rc = mdb_put(txn, meta, &k, &val, 0);
    if (rc != 0) context = "cannot write meta " + in_quotes(name);
    return rc;
  }

  // Last journal sequence (0 if the journal is empty).
  int journal_last(MDB_txn* txn, std::uint64_t& last, std::string& context) const {
    last = 0;
    if (!has_journal) return 0;
    Cursor cursor;
    MDB_val k, v;
    int rc = cursor.open(txn, journal);
    if (rc == 0) rc = cursor.get(k, v, MDB_LAST);
    if (rc == MDB_NOTFOUND) return 0;
    if (rc != 0) {
      context = "cannot read the journal";
      return rc;
    }
    last = parse_sequence_key(to_view(k));
    return 0;
  }

  // True if another process wrote the journal, checkpointed or erased since
  // the overlay was last brought up to date.
  int is_stale(MDB_txn* txn, bool& stale, std::string& context) const {
    std::uint64_t stored_generation = 0, last = 0;
    int rc = get_meta_u64(txn, kGenerationKey, stored_generation, context);
    if (rc == 0) rc = journal_last(txn, last, context);
    stale = stored_generation != generation || last > seen_seq;
    return rc;
  }

  // The batch's (or replay's) new state of a customer, starting from the
  // overlay (use_overlay) or the stored record; returns its index in delta.customers.
  int touch(MDB_txn* txn, std::string_view id, bool use_overlay, std::uint32_t& change, std::string& context) {
    const std::uint64_t hash = hash_key(id);
    change = delta.customer_index.find(id, hash, [&](std::uint32_t i) { return delta.customer_id(i); });
    if (change != kNone) return 0;
    StateChange fresh;
    fresh.hash = hash;
    const std::uint32_t live = use_overlay ? active.find_entry(id, hash) : kNone;
    const std::uint32_t held = use_overlay && live == kNone ? frozen.find_entry(id, hash) : kNone;
    if (live != kNone) {
      fresh.live = live;
      fresh.in_db = active.entries[live].in_db;
      fresh.state = std::make_shared<CustomerState>(*active.entries[live].state);
    } else if (held != kNone) {
      // The checkpoint in progress writes (or wrote) its record: the stored index may hold its events.
      fresh.in_db = true;
      fresh.state = std::make_shared<CustomerState>(*frozen.entries[held].state);
    } else {
      fresh.state = std::make_shared<CustomerState>();
      if (int rc = load_customer(txn, id, *fresh.state, fresh.in_db, context); rc != 0) return rc;
    }
    fresh.id = arena_append(delta.customer_arena, id);
    fresh.id_size = static_cast<std::uint16_t>(id.size());
    change = static_cast<std::uint32_t>(delta.customers.size());
    delta.customers.push_back(std::move(fresh));
    delta.customer_index.insert(change, hash);
    return 0;
  }

  // Appends with a cursor kept at the end of the journal (no descent from the root per record).
  int append_journal(Cursor& cursor, std::uint64_t seq, std::string_view record, std::string& context) {
    char k_bytes[8];
    put_sequence(k_bytes, seq);
    MDB_val k{sizeof k_bytes, k_bytes}, v = to_val(record);
    int rc = cursor.put(k, v, MDB_APPEND);
    if (rc != 0) context = "cannot append to the journal";
    return rc;
  }

  // ---- the overlays ----

  // Forgets both overlays and any checkpoint in progress (under
  // overlay_mutex, exclusively); returns the entries so that the caller
  // frees them after releasing the lock.
  std::vector<OverlayEntry> clear_overlays_locked() {
    std::vector<OverlayEntry> old = active.clear();
    std::vector<OverlayEntry> old_frozen = frozen.clear();
    old.insert(old.end(), std::make_move_iterator(old_frozen.begin()), std::make_move_iterator(old_frozen.end()));
    checkpointing = false;
    slice_order.clear();
    slice_next = slice_records_left = 0;
    return old;
  }

  // Moves a committed delta into the active overlay.
  void install(Delta& d) {
    std::vector<OverlayEntry> old;  // freed after the lock is released
    std::vector<std::uint32_t> installed(d.customers.size());
    const auto first_new = static_cast<std::uint32_t>(d.rebuild ? 0 : active.pending.size());
    {
      std::unique_lock<std::shared_mutex> lock(overlay_mutex);
      if (d.rebuild) {
        old = clear_overlays_locked();
        generation = d.generation;
        checkpoint_seq = d.checkpoint;
        seen_seq = d.checkpoint;
        next_seq = 1;
      }
      for (std::size_t c = 0; c < d.customers.size(); ++c) {
        StateChange& change = d.customers[c];
        if (!change.changed) continue;
        std::uint32_t index = change.live;
        if (index == kNone) {
          index = static_cast<std::uint32_t>(active.entries.size());
          OverlayEntry& entry = active.entries.emplace_back();
          entry.id = arena_append(active.customer_arena, d.customer_id(static_cast<std::uint32_t>(c)));
          entry.id_size = change.id_size;
          entry.in_db = change.in_db;
          if (!change.in_db) ++active.new_customers;
          active.customer_index.insert(index, change.hash);
        }
        OverlayEntry& entry = active.entries[index];
        active.checkpoint_bytes -= entry.record_bytes;
        entry.record_bytes = estimate_record_bytes(active.customer_id(entry), *change.state);
        active.checkpoint_bytes += entry.record_bytes;
        entry.state = std::move(change.state);
        installed[c] = index;
      }
      for (std::uint32_t i = 0; i < d.events.size(); ++i) {
        const NewEvent& e = d.events[i];
        const auto p = static_cast<std::uint32_t>(active.pending.size());
        active.pending.push_back(
            PendingEvent{e.seq, e.ts_ms, arena_append(active.pending_arena, d.key(i)), kNone, e.key_size});
        OverlayEntry& entry = active.entries[installed[e.customer]];
        if (entry.last == kNone) {
          entry.first = p;
        } else {
          active.pending[entry.last].next = p;
        }
        entry.last = p;
        ++entry.count;
        active.checkpoint_bytes += e.key_size + kIndexValueBytes + kEntryOverhead;
      }
      active.pending_events += d.events.size();
      seen_seq = std::max(seen_seq, d.last_seq);
      next_seq = std::max(next_seq, d.next_seq);
    }
    // The dedup indexes are the writer's alone.
    if (d.rebuild) {
      active.pending_index.clear(d.events.size());
      frozen.pending_index.clear();
    }
    for (std::uint32_t i = 0; i < d.events.size(); ++i) active.pending_index.insert(first_new + i, d.events[i].hash);
    if (d.config_changed) {
      journal_config = d.config;
      journal_config_bytes = d.config_bytes;
    }
    if (active.pending_events > 0 && !first_pending) first_pending = std::chrono::steady_clock::now();
    if (active.pending_events == 0) first_pending.reset();
    d.clear();
  }

  // Brings the overlay up to date with the stored journal: replays entries
  // after seen_seq, or rebuilds it from the checkpoint if the stored
  // generation differs (open, or another process checkpointed or erased).
  Status refresh() {
    delta.clear();
    Status s = read([&](MDB_txn* txn) -> Status {
      std::string context;
      std::uint64_t stored_generation = 0, checkpoint = 0, next_floor = 0, last = 0;
      int rc = get_meta_u64(txn, kGenerationKey, stored_generation, context);
      if (rc == 0) rc = get_meta_u64(txn, kCheckpointKey, checkpoint, context);
      if (rc == 0) rc = get_meta_u64(txn, kJournalNextKey, next_floor, context);
      if (rc == 0) rc = journal_last(txn, last, context);
      const bool rebuild = stored_generation != generation;
      if (rc == 0 && !rebuild && last <= seen_seq) return Status::Ok();
      delta.rebuild = rebuild;
      delta.generation = stored_generation;
      delta.checkpoint = checkpoint;
      delta.config = journal_config;
      if (rc == 0 && rebuild) {
        // The config in effect at the checkpoint.
        delta.config = ApplyConfig{};
        MDB_val k = to_val(kApplyConfigKey), v;
        rc = mdb_get(txn, meta, &k, &v);
        if (rc == MDB_NOTFOUND) {
          rc = 0;
        } else if (rc == 0) {
          std::string_view stored = to_view(v);
          if (stored.empty() || static_cast<std::uint8_t>(stored[0]) != kRecordVersion ||
              !decode_apply_config(stored.substr(1), delta.config)) {
            return Status::Error("meta record " + in_quotes(kApplyConfigKey) + " is corrupt");
          }
        } else {
          context = "cannot read meta " + in_quotes(kApplyConfigKey);
        }
      }
      if (rc == 0) rc = replay(txn, rebuild ? checkpoint : seen_seq, context);
      if (rc == kFailed) return Status::Error(std::move(context));
      if (rc != 0) return Status::Error(describe(context, rc));
      delta.last_seq = std::max(last, checkpoint);
      delta.next_seq = std::max({last + 1, next_floor, checkpoint + 1});
      return Status::Ok();
    });
    if (!s) {
      delta.clear();
      return s;
    }
    if (delta.rebuild || delta.last_seq > seen_seq) {
      encode_apply_config(delta.config, delta.config_bytes);
      delta.config_changed = true;
      install(delta);
    }
    return Status::Ok();
  }

  // Applies the journal entries after `after` to delta.
  int replay(MDB_txn* txn, std::uint64_t after, std::string& context) {
    if (!has_journal) return 0;
    Cursor cursor;
    int rc = cursor.open(txn, journal);
    std::string start = sequence_key(after + 1);
    MDB_val k = to_val(start), v;
    if (rc == 0) rc = cursor.get(k, v, MDB_SET_RANGE);
    JournalRecord record;
    Event event;
    std::string event_key;
    while (rc == 0) {
      const std::uint64_t seq = parse_sequence_key(to_view(k));
      if (Status s = decode_journal(seq, to_view(v), record); !s) {
        context = s.message();
        return kFailed;
      }
      if (record.kind == kJournalApplyConfig) {
        delta.config = record.config;
      } else {
        event_key.assign(record.customer_id);
        event_key.push_back('\0');
        event_key.append(record.event_id);
        const std::uint64_t hash = hash_key(event_key);
        // Deduplicated before it was journaled; a repeat here would be a bug, so it is not applied twice.
        if (!delta.has_key(event_key, hash) && (delta.rebuild || !is_pending(event_key, hash))) {
          std::uint32_t change = kNone;
          if ((rc = touch(txn, record.customer_id, !delta.rebuild, change, context)) != 0) return rc;
          bool indexed = false;
          if (delta.customers[change].in_db) {
            // A slice of an unfinished checkpoint already wrote it into the stored record.
            MDB_val ik = to_val(event_key), iv;
            rc = mdb_get(txn, events, &ik, &iv);
            if (rc != 0 && rc != MDB_NOTFOUND) {
              context = "cannot look up event " + in_quotes(record.customer_id) + "/" + in_quotes(record.event_id);
              return rc;
            }
            indexed = rc == 0;
          }
          if (!indexed) {
            to_event(record, event);
            apply_event(*delta.customers[change].state, event, delta.config);
            delta.customers[change].changed = true;
            delta.add_event(event_key, hash, change, seq, event.ts_ms);
          }
        }
      }
      rc = cursor.get(k, v, MDB_NEXT);
    }
    if (rc != MDB_NOTFOUND) {
      context = "cannot read the journal";
      return rc;
    }
    return 0;
  }

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

  bool checkpoint_due() const {
    if (active.pending_events == 0) return false;
    if (active.pending_events >= options.checkpoint_events) return true;
    return first_pending && std::chrono::steady_clock::now() - *first_pending >= options.checkpoint_interval;
  }

  // Freezes the active overlay: the checkpoint to write. op_mutex held, none in progress.
  void begin_checkpoint() {
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
  std::size_t slice_budget() const {
    constexpr std::size_t kMinSliceRecords = 4096;
    const std::size_t limit = std::max<std::size_t>(options.checkpoint_events, 1);
    const std::size_t room = active.pending_events < limit ? limit - active.pending_events : 0;
    const std::size_t slices_left = room / std::max<std::size_t>(last_batch_events, 1) / 2;
    if (slices_left <= 1) return SIZE_MAX;
    return std::max(kMinSliceRecords, (slice_records_left + slices_left - 1) / slices_left);
  }

  // Writes the next slice of the checkpoint in progress: at most `budget`
  // records (at least one customer). op_mutex held.
  Status checkpoint_slice(std::size_t budget) {
    for (int attempt = 0; checkpointing; ++attempt) {
      if (attempt > 0) {
        // Another process wrote: catch up (a rebuild drops the checkpoint in progress; the
        // slices already written stay valid).
        if (Status s = refresh(); !s) return s;
        if (!checkpointing) return Status::Ok();
      }
      std::vector<std::pair<std::string_view, std::uint32_t>> index;
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
          records += 1 + entry.count;
          written_bytes += entry.record_bytes;
        }
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
  Status complete_checkpoint_locked() {
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
    return checkpointing || !active.empty() ? Status::Error("checkpoint failed: the store keeps changing")
                                            : Status::Ok();
  }

  // Bounded progress: the next slice of the checkpoint in progress, or a new
  // checkpoint's first slice if one is due (or begin_now and anything is
  // pending). op_mutex held.
  Status checkpoint_step_locked(bool begin_now) {
    if (options.read_only || empty) return Status::Ok();
    if (!checkpointing) {
      if (!(checkpoint_due() || (begin_now && !active.empty()))) return Status::Ok();
      begin_checkpoint();
    }
    return checkpoint_slice(slice_budget());
  }

  // Grows the map ahead of the next checkpoint, so that transaction (the
  // largest one) does not run out of map half way and start over. Best effort.
  void ensure_headroom() {
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

  // ---- reads that combine the overlay with a snapshot ----

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
  Status for_each_customer(const Visitor& visit, std::optional<std::string_view> after) const;

  // Reads journal entry `seq` (an event of customer_id/event_id) into out.
  Status read_journal_event(MDB_txn* txn, std::uint64_t seq, std::string_view customer_id, std::string_view event_id,
                            TimelineEvent& out) const {
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
    return Status::Ok();
  }
};

Store::Store(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Store::~Store() {
  Impl& d = *impl_;
  if (d.options.checkpoint_on_close && !d.options.read_only && !d.empty) {
    std::lock_guard<std::mutex> op(d.op_mutex);
    (void)d.complete_checkpoint_locked();  // on failure the journal holds everything; the next open replays it
  }
}

const StoreOptions& Store::options() const { return impl_->options; }

Result<std::unique_ptr<Store>> Store::open(const StoreOptions& options) {
  const std::string dir = options.directory;
  if (dir.empty()) return Status::Error("store directory is empty");
  if (options.initial_map_bytes == 0) return Status::Error("store initial map size must be > 0");

  std::error_code ec;
  if (options.read_only) {
    if (!std::filesystem::is_directory(dir, ec)) {
      return Status::Error("cannot open store read-only: directory " + in_quotes(dir) + " does not exist");
    }
  } else if (!std::filesystem::exists(dir, ec)) {
    std::filesystem::create_directories(dir, ec);
    if (ec) return Status::Error("cannot create store directory " + in_quotes(dir) + ": " + ec.message());
    ::chmod(dir.c_str(), 0750);
  }

  auto impl = std::make_unique<Impl>();
  impl->options = options;
  auto fail = [&](std::string_view what, int rc) {
    return Status::Error(std::string(what) + " in " + in_quotes(dir) + ": " + mdb_strerror(rc));
  };
  int rc = mdb_env_create(&impl->env);
  if (rc != 0) {
    impl->env = nullptr;
    return fail("cannot create LMDB environment", rc);
  }
  if ((rc = mdb_env_set_maxdbs(impl->env, 8)) != 0 ||
      (rc = mdb_env_set_mapsize(impl->env, options.initial_map_bytes)) != 0 ||
      (rc = mdb_env_set_maxreaders(impl->env, kMaxReaders)) != 0) {
    return fail("cannot configure LMDB environment", rc);
  }
  unsigned flags = MDB_NOTLS;
  if (options.read_only) flags |= MDB_RDONLY;
  if (options.durability == Durability::kAsync) flags |= MDB_NOSYNC;
  if ((rc = mdb_env_open(impl->env, dir.c_str(), flags, 0640)) != 0) return fail("cannot open LMDB environment", rc);

  // Keep the larger of the configured size and the size the environment already grew to.
  if ((rc = mdb_env_set_mapsize(impl->env, 0)) != 0) return fail("cannot read LMDB map size", rc);
  MDB_envinfo info;
  mdb_env_info(impl->env, &info);
  if (info.me_mapsize < options.initial_map_bytes &&
      (rc = mdb_env_set_mapsize(impl->env, options.initial_map_bytes)) != 0) {
    return fail("cannot set LMDB map size", rc);
  }

  // Open the named databases once; the handles stay valid for the environment's life.
  MDB_txn* txn = nullptr;
  if ((rc = mdb_txn_begin(impl->env, nullptr, options.read_only ? MDB_RDONLY : 0, &txn)) != 0) {
    return fail("cannot begin transaction", rc);
  }
  struct Named {
    const char* name;
    MDB_dbi* dbi;
  };
  const Named named[] = {{"customers", &impl->customers},
                         {"events", &impl->events},
                         {"meta", &impl->meta},
                         {"deadletter", &impl->deadletter},
                         {"journal", &impl->journal}};
  int missing = 0;
  const char* first_missing = nullptr;
  for (const Named& n : named) {
    rc = mdb_dbi_open(txn, n.name, options.read_only ? 0 : MDB_CREATE, n.dbi);
    if (rc == MDB_NOTFOUND && options.read_only && n.dbi == &impl->journal) {
      impl->has_journal = false;  // written before the journal existed
      continue;
    }
    if (rc == MDB_NOTFOUND && options.read_only) {
      if (!first_missing) first_missing = n.name;
      ++missing;
      continue;
    }
    if (rc != 0) {
      mdb_txn_abort(txn);
      return fail(std::string("cannot open LMDB database '") + n.name + "'", rc);
    }
  }
  if (missing > 0) {
    MDB_stat main_stat{};
    MDB_dbi main_dbi;
    bool env_empty = mdb_dbi_open(txn, nullptr, 0, &main_dbi) == 0 && mdb_stat(txn, main_dbi, &main_stat) == 0 &&
                     main_stat.ms_entries == 0;
    mdb_txn_abort(txn);
    if (!env_empty) {
      return Status::Error(in_quotes(dir) + " is not a Rapport store: LMDB database '" + first_missing +
                           "' is missing");
    }
    impl->empty = true;
    return std::unique_ptr<Store>(new Store(std::move(impl)));
  }
  if ((rc = mdb_txn_commit(txn)) != 0) return fail("cannot create LMDB databases", rc);
  MDB_stat env_stat;
  if (mdb_env_stat(impl->env, &env_stat) == 0) impl->page_size = env_stat.ms_psize;

  // Crash recovery: replay the journal after the last checkpoint into memory.
  if (Status s = impl->refresh(); !s) return Status::Error("cannot replay the journal: " + s.message());
  return std::unique_ptr<Store>(new Store(std::move(impl)));
}

Status Store::apply_batch(std::span<const Event> events, const ApplyConfig& config, std::vector<EventOutcome>& outcomes,
                          std::span<const DeadLetter> dead_letters) {
  for (std::size_t i = 0; i < events.size(); ++i) {
    if (events[i].customer_id.empty() || events[i].event_id.empty()) {
      return Status::Error("event " + std::to_string(i) + " of the batch has an empty customer_id or event_id");
    }
  }
  Impl& d = *impl_;
  if (d.options.read_only) return Status::Error("store opened read-only: " + in_quotes(d.options.directory));
  if (events.empty() && dead_letters.empty()) {
    outcomes.clear();
    return Status::Ok();
  }
  std::lock_guard<std::mutex> op(d.op_mutex);
  // Memory stays bounded: past twice the checkpoint size, a checkpoint must succeed first.
  if (d.pending_events() >= 2 * std::max<std::size_t>(d.options.checkpoint_events, 1)) {
    if (Status s = d.complete_checkpoint_locked(); !s) return s;
  }
  std::string config_bytes;
  encode_apply_config(config, config_bytes);
  std::string journal_record;
  for (int attempt = 0;; ++attempt) {
    if (attempt > 0) {
      if (Status s = d.refresh(); !s) return s;
    }
    bool stale = false;
    Status s = d.write([&](MDB_txn* txn, std::string& context) -> int {
      d.delta.clear();
      outcomes.assign(events.size(), EventOutcome::kAccepted);
      int rc = d.is_stale(txn, stale, context);
      if (rc != 0) return rc;
      if (stale) {
        context = "the journal keeps changing (another process is writing)";
        return kFailed;
      }
      std::uint64_t seq = d.next_seq;
      Cursor journal_cursor;
      if ((rc = journal_cursor.open(txn, d.journal)) != 0) {
        context = "cannot append to the journal";
        return rc;
      }
      d.delta.config = config;
      if (config_bytes != d.journal_config_bytes && !events.empty()) {
        // Replay must apply the following events with this config.
        d.delta.config_changed = true;
        d.delta.config_bytes = config_bytes;
        journal_record.assign(1, static_cast<char>(kRecordVersion));
        journal_record.push_back(static_cast<char>(kJournalApplyConfig));
        journal_record += config_bytes;
        if ((rc = d.append_journal(journal_cursor, seq++, journal_record, context)) != 0) return rc;
      }
      for (std::size_t i = 0; i < events.size(); ++i) {
        const Event& e = events[i];
        std::string_view customer_id = e.customer_id.view();
        d.key.assign(customer_id);
        d.key.push_back('\0');
        d.key.append(e.event_id.view());
        const std::uint64_t hash = hash_key(d.key);
        // Duplicate: earlier in this batch, pending since the checkpoint, or in the index.
        if (d.delta.has_key(d.key, hash) || d.is_pending(d.key, hash)) {
          outcomes[i] = EventOutcome::kDuplicate;
          continue;
        }
        std::uint32_t change = kNone;
        if ((rc = d.touch(txn, customer_id, true, change, context)) != 0) return rc;
        StateChange& customer = d.delta.customers[change];
        // Only a customer with a stored record can have indexed events.
        if (customer.in_db) {
          MDB_val k = to_val(d.key), v;
          rc = mdb_get(txn, d.events, &k, &v);
          if (rc == 0) {
            outcomes[i] = EventOutcome::kDuplicate;
            continue;
          }
          if (rc != MDB_NOTFOUND) {
            context = "cannot look up event " + in_quotes(customer_id) + "/" + in_quotes(e.event_id.view());
            return rc;
          }
        }
        apply_event(*customer.state, e, config);
        customer.changed = true;
        encode_journal_event(e, journal_record);
        if ((rc = d.append_journal(journal_cursor, seq, journal_record, context)) != 0) {
          context = "cannot journal event " + in_quotes(customer_id) + "/" + in_quotes(e.event_id.view());
          return rc;
        }
        d.delta.add_event(d.key, hash, change, seq, e.ts_ms);
        ++seq;
      }
      d.delta.next_seq = seq;
      d.delta.last_seq = seq - 1;
      return d.append_dead_letters(txn, dead_letters, context);
    });
    if (stale && attempt < 100) continue;
    if (!s) {
      d.delta.clear();
      return s;
    }
    break;
  }
  d.install(d.delta);
  d.ensure_headroom();
  d.last_batch_events = events.size();
  if (d.options.checkpoint_in_apply_batch) (void)d.checkpoint_step_locked(false);  // on failure: retried later
  return Status::Ok();
}

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
      auto delete_journal = [&](std::uint64_t seq) {
        char k_bytes[8];
        put_sequence(k_bytes, seq);
        MDB_val jk{sizeof k_bytes, k_bytes};
        int del = mdb_del(txn, d.journal, &jk, nullptr);
        return del == MDB_NOTFOUND ? 0 : del;
      };
      // Checkpointed events: index entries and their journal records.
      std::string prefix(customer_id);
      prefix.push_back('\0');
      Cursor cursor;
      if ((rc = cursor.open(txn, d.events)) != 0) return rc;
      for (;;) {
        MDB_val key = to_val(prefix), v;
        rc = cursor.get(key, v, MDB_SET_RANGE);
        if (rc == MDB_NOTFOUND || (rc == 0 && !starts_with(key, prefix))) break;
        if (rc != 0) return rc;
        std::string_view stored = to_view(v);
        if (stored.size() == 17 && static_cast<std::uint8_t>(stored[0]) == kIndexVersion) {
          Reader r(stored.substr(1));
          std::uint64_t seq = 0;
          r.u64(seq);
          if ((rc = delete_journal(seq)) != 0) return rc;
        }
        if ((rc = cursor.del()) != 0) return rc;
        existed = true;
      }
      // Pending events: their journal records (replay must not bring them back).
      for (const Overlay* overlay : {&d.active, &d.frozen}) {
        if (const std::uint32_t i = overlay->find_entry(customer_id, hash_key(customer_id)); i != kNone) {
          existed = true;
          for (std::uint32_t p = overlay->entries[i].first; p != kNone; p = overlay->pending[p].next) {
            if ((rc = delete_journal(overlay->pending[p].seq)) != 0) return rc;
          }
        }
      }
      if (!existed) return 0;  // nothing changed: no new generation
      // Sequences of deleted records are never reused.
      if ((rc = d.put_meta_u64(txn, kJournalNextKey, d.next_seq, context)) != 0) return rc;
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
    }
    d.committing_generation.store(kNoGeneration, std::memory_order_release);
    if (d.active.pending_events == 0) d.first_pending.reset();
  }
  return existed;
}

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

Status Store::Impl::for_each_customer(const Visitor& visit, std::optional<std::string_view> after) const {
  const Impl& d = *this;
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

Status Store::put_meta(std::string_view key, std::string_view value) {
  if (key.empty()) return Status::Error("meta key is empty");
  Impl& d = *impl_;
  return d.write([&](MDB_txn* txn, std::string& context) -> int {
    context = "cannot write meta " + in_quotes(key);
    d.value.assign(1, static_cast<char>(kRecordVersion));
    d.value.append(value);
    MDB_val k = to_val(key), v = to_val(d.value);
    return mdb_put(txn, d.meta, &k, &v, 0);
  });
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

Status Store::add_dead_letters(std::span<const DeadLetter> letters) {
  if (letters.empty() && !impl_->options.read_only) return Status::Ok();
  Impl& d = *impl_;
  return d.write(
      [&](MDB_txn* txn, std::string& context) -> int { return d.append_dead_letters(txn, letters, context); });
}

Result<std::vector<StoredDeadLetter>> Store::dead_letters(std::uint64_t after, std::size_t limit) const {
  const Impl& d = *impl_;
  std::vector<StoredDeadLetter> result;
  if (d.empty || limit == 0 || after == UINT64_MAX) return result;
  Status s = d.read([&](MDB_txn* txn) {
    Cursor cursor;
    int rc = cursor.open(txn, d.deadletter);
    std::string start = sequence_key(after + 1);
    MDB_val k = to_val(start), v;
    if (rc == 0) rc = cursor.get(k, v, MDB_SET_RANGE);
    while (rc == 0 && result.size() < limit) {
      StoredDeadLetter& item = result.emplace_back();
      item.sequence = parse_sequence_key(to_view(k));
      if (Status st = decode_dead_letter(item.sequence, to_view(v), item.letter); !st) return st;
      rc = cursor.get(k, v, MDB_NEXT);
    }
    if (rc != 0 && rc != MDB_NOTFOUND) return Status::Error(d.describe("cannot read dead letters", rc));
    return Status::Ok();
  });
  if (!s) return s;
  return result;
}

Result<std::size_t> Store::remove_dead_letters(std::span<const std::uint64_t> sequences) {
  if (sequences.empty() && !impl_->options.read_only) return std::size_t{0};
  Impl& d = *impl_;
  std::size_t removed = 0;
  Status s = d.write([&](MDB_txn* txn, std::string& context) -> int {
    context = "cannot remove dead letters";
    removed = 0;
    for (std::uint64_t seq : sequences) {
      std::string key = sequence_key(seq);
      MDB_val k = to_val(key);
      int rc = mdb_del(txn, d.deadletter, &k, nullptr);
      if (rc == 0) ++removed;
      if (rc != 0 && rc != MDB_NOTFOUND) return rc;
    }
    return 0;
  });
  if (!s) return s;
  return removed;
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

Status Store::backup(const std::string& destination_directory) const {
  const Impl& d = *impl_;
  const std::string& dest = destination_directory;
  if (dest.empty()) return Status::Error("backup directory is empty");
  std::error_code ec;
  if (std::filesystem::exists(dest, ec)) {
    if (!std::filesystem::is_directory(dest, ec)) {
      return Status::Error("backup destination " + in_quotes(dest) + " is not a directory");
    }
    if (!std::filesystem::is_empty(dest, ec) || ec) {
      return Status::Error("backup destination " + in_quotes(dest) + " is not empty");
    }
  } else {
    std::filesystem::create_directories(dest, ec);
    if (ec) return Status::Error("cannot create backup directory " + in_quotes(dest) + ": " + ec.message());
    ::chmod(dest.c_str(), 0750);
  }
  for (;;) {
    Impl::SharedLock lock(d);
    int rc = mdb_env_copy2(d.env, dest.c_str(), MDB_CP_COMPACT);
    if (rc == MDB_MAP_RESIZED && !lock.nested()) {
      lock.unlock();
      if (Status s = d.adopt_map_size(); !s) return s;
      continue;
    }
    if (rc != 0) {
      return Status::Error("cannot back up " + in_quotes(d.options.directory) + " to " + in_quotes(dest) + ": " +
                           mdb_strerror(rc));
    }
    return Status::Ok();
  }
}

}  // namespace rapport
