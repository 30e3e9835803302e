// Store on LMDB. See store.h for the contract.
//
// Locking:
//  - write_mutex_ serialises every write transaction (LMDB allows one writer
//    per environment anyway; the mutex keeps the scratch buffers private).
//  - resize_mutex_ protects the memory map: every transaction (read or
//    write) holds it shared for its whole life; changing the map size
//    (growth on MDB_MAP_FULL, or adopting another process's growth on
//    MDB_MAP_RESIZED) holds it exclusively, as mdb_env_set_mapsize requires
//    that no transaction of this process is active.
//  - gate_ makes the resize lock writer-preferring: shared lockers pass
//    through it briefly, the resizer holds it while waiting for the exclusive
//    lock, so a stream of readers cannot starve growth.
//  - Nested reads on one thread (a read inside a for_each_customer visitor)
//    do not lock again; a thread holding a read snapshot cannot grow the map
//    and gets an error instead of a deadlock.
#include "storage/store.h"

#include <errno.h>
#include <lmdb.h>
#include <sys/stat.h>

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <shared_mutex>
#include <system_error>
#include <unordered_map>
#include <utility>

namespace rapport {
namespace {

constexpr std::uint8_t kRecordVersion = 1;  // first byte of events, meta and deadletter values
constexpr int kFailed = -1;                 // body failed with a message of its own (not an LMDB code)
constexpr unsigned kMaxReaders = 256;
// Reserved meta key: next dead-letter sequence, so sequences never repeat even
// after every dead letter was removed.
constexpr std::string_view kDeadLetterNextKey = "storage.dead_letter_next_sequence";

// Presence bits of the optional event fields.
enum : std::uint8_t { kHasAmount = 1, kHasCost = 2, kHasSentiment = 4, kHasNps = 8, kHasCsat = 16, kHasRating = 32 };

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

// Checks the version byte of a stored value; returns the payload after it.
Status check_version(std::string_view value, std::string_view what) {
  if (value.empty()) return Status::Error(std::string(what) + " is empty (corrupt record)");
  auto version = static_cast<std::uint8_t>(value[0]);
  if (version != kRecordVersion) {
    return Status::Error(std::string(what) + " has unknown format version " + std::to_string(version) +
                         " (written by a newer Rapport?)");
  }
  return Status::Ok();
}

void encode_event(const Event& e, std::string& out) {
  out.clear();
  out.push_back(static_cast<char>(kRecordVersion));
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

Status decode_event(std::string_view customer_id, std::string_view event_id, std::string_view value,
                    TimelineEvent& out) {
  auto what = [&] { return "event record " + in_quotes(customer_id) + "/" + in_quotes(event_id); };
  if (Status s = check_version(value, what()); !s) return s;
  Reader r(value.substr(1));
  std::uint8_t type = 0, mask = 0, channel_len = 0;
  std::string_view channel;
  if (!r.i64(out.ts_ms) || !r.u8(type) || !r.u8(mask) || !r.u8(channel_len) || !r.bytes(channel_len, channel)) {
    return Status::Error(what() + " is truncated (corrupt record)");
  }
  if (type >= kEventTypeCount) return Status::Error(what() + " has unknown event type " + std::to_string(type));
  out.type = static_cast<EventType>(type);
  out.channel.assign(channel);
  out.event_id.assign(event_id);
  std::optional<double>* fields[] = {&out.amount, &out.cost, &out.sentiment, &out.nps, &out.csat, &out.rating};
  for (int i = 0; i < 6; ++i) {
    fields[i]->reset();
    if ((mask & (1u << i)) && !r.f64(*fields[i])) return Status::Error(what() + " is truncated (corrupt record)");
  }
  if (!r.done()) return Status::Error(what() + " has trailing bytes (corrupt record)");
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

 private:
  MDB_cursor* cursor_ = nullptr;
};

}  // namespace

struct Store::Impl {
  StoreOptions options;
  MDB_env* env = nullptr;
  MDB_dbi customers = 0, events = 0, meta = 0, deadletter = 0;
  bool empty = false;  // read-only open of an environment that has none of our databases

  std::mutex write_mutex;
  mutable std::mutex gate;
  mutable std::shared_mutex resize_mutex;

  // Writer scratch, guarded by write_mutex.
  std::unordered_map<std::string, CustomerState> touched;
  std::vector<std::pair<const std::string*, const CustomerState*>> touched_sorted;
  std::string key, value;

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

  std::string describe(std::string_view context, int rc) const {
    std::string msg;
    if (rc == ENOSPC || rc == EDQUOT) {
      msg = "disk full: ";
    } else if (rc == EFBIG) {
      msg = "file size limit reached: ";
    }
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

  // Loads a customer's state (fresh if absent) into state.
  int load_customer(MDB_txn* txn, std::string_view customer_id, CustomerState& state, std::string& context) const {
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
    return 0;
  }
};

Store::Store(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Store::~Store() = default;

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
                         {"deadletter", &impl->deadletter}};
  int missing = 0;
  const char* first_missing = nullptr;
  for (const Named& n : named) {
    rc = mdb_dbi_open(txn, n.name, options.read_only ? 0 : MDB_CREATE, n.dbi);
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
  if (events.empty() && dead_letters.empty() && !d.options.read_only) {
    outcomes.clear();
    return Status::Ok();
  }
  return d.write([&](MDB_txn* txn, std::string& context) -> int {
    outcomes.assign(events.size(), EventOutcome::kAccepted);
    d.touched.clear();
    int rc;
    for (std::size_t i = 0; i < events.size(); ++i) {
      const Event& e = events[i];
      std::string_view customer_id = e.customer_id.view();
      d.key.assign(customer_id);
      d.key.push_back('\0');
      d.key.append(e.event_id.view());
      encode_event(e, d.value);
      MDB_val k = to_val(d.key), v = to_val(d.value);
      rc = mdb_put(txn, d.events, &k, &v, MDB_NOOVERWRITE);
      if (rc == MDB_KEYEXIST) {
        outcomes[i] = EventOutcome::kDuplicate;
        continue;
      }
      if (rc != 0) {
        context = "cannot record event " + in_quotes(customer_id) + "/" + in_quotes(e.event_id.view());
        return rc;
      }
      d.key.resize(customer_id.size());
      auto [it, inserted] = d.touched.try_emplace(d.key);
      if (inserted && (rc = d.load_customer(txn, customer_id, it->second, context)) != 0) return rc;
      apply_event(it->second, e, config);
    }
    // Write each touched customer once, in key order (fewer distinct pages per commit).
    d.touched_sorted.clear();
    for (const auto& [id, state] : d.touched) d.touched_sorted.emplace_back(&id, &state);
    std::sort(d.touched_sorted.begin(), d.touched_sorted.end(),
              [](const auto& a, const auto& b) { return *a.first < *b.first; });
    for (const auto& [id, state] : d.touched_sorted) {
      serialize_into(*state, d.value);
      MDB_val k = to_val(*id), v = to_val(d.value);
      if ((rc = mdb_put(txn, d.customers, &k, &v, 0)) != 0) {
        context = "cannot write customer " + in_quotes(*id);
        return rc;
      }
    }
    d.touched.clear();
    return d.append_dead_letters(txn, dead_letters, context);
  });
}

Result<bool> Store::erase_customer(std::string_view customer_id) {
  if (customer_id.empty()) return Status::Error("customer id is empty");
  Impl& d = *impl_;
  bool existed = false;
  Status s = d.write([&](MDB_txn* txn, std::string& context) -> int {
    existed = false;
    context = "cannot erase customer " + in_quotes(customer_id);
    MDB_val k = to_val(customer_id);
    int rc = mdb_del(txn, d.customers, &k, nullptr);
    if (rc == 0) {
      existed = true;
    } else if (rc != MDB_NOTFOUND) {
      return rc;
    }
    std::string prefix(customer_id);
    prefix.push_back('\0');
    Cursor cursor;
    if ((rc = cursor.open(txn, d.events)) != 0) return rc;
    for (;;) {
      MDB_val key = to_val(prefix), v;
      rc = cursor.get(key, v, MDB_SET_RANGE);
      if (rc == MDB_NOTFOUND || (rc == 0 && !starts_with(key, prefix))) break;
      if (rc != 0) return rc;
      if ((rc = cursor.del()) != 0) return rc;
      existed = true;
    }
    return 0;
  });
  if (!s) return s;
  return existed;
}

Result<std::optional<CustomerState>> Store::get_customer(std::string_view customer_id) const {
  const Impl& d = *impl_;
  std::optional<CustomerState> result;
  if (d.empty || customer_id.empty()) return result;
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

Result<std::vector<TimelineEvent>> Store::customer_events(std::string_view customer_id, std::size_t offset,
                                                          std::size_t limit) const {
  const Impl& d = *impl_;
  std::vector<TimelineEvent> result;
  if (d.empty || customer_id.empty() || limit == 0) return result;
  std::string prefix(customer_id);
  prefix.push_back('\0');
  Status s = d.read([&](MDB_txn* txn) {
    Cursor cursor;
    int rc = cursor.open(txn, d.events);
    MDB_val k = to_val(prefix), v;
    if (rc == 0) rc = cursor.get(k, v, MDB_SET_RANGE);
    while (rc == 0 && starts_with(k, prefix)) {
      std::string_view event_id = to_view(k).substr(prefix.size());
      TimelineEvent& e = result.emplace_back();
      if (Status st = decode_event(customer_id, event_id, to_view(v), e); !st) return st;
      rc = cursor.get(k, v, MDB_NEXT);
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
      return Status::Error(d.describe("cannot read events of customer " + in_quotes(customer_id), rc));
    }
    return Status::Ok();
  });
  if (!s) return s;
  if (offset >= result.size()) return std::vector<TimelineEvent>{};
  auto newer = [](const TimelineEvent& a, const TimelineEvent& b) {
    if (a.ts_ms != b.ts_ms) return a.ts_ms > b.ts_ms;
    return a.event_id > b.event_id;
  };
  std::size_t end = offset + std::min(limit, result.size() - offset);
  std::partial_sort(result.begin(), result.begin() + static_cast<std::ptrdiff_t>(end), result.end(), newer);
  result.erase(result.begin() + static_cast<std::ptrdiff_t>(end), result.end());
  result.erase(result.begin(), result.begin() + static_cast<std::ptrdiff_t>(offset));
  return result;
}

Status Store::for_each_customer(
    const std::function<bool(std::string_view id, const CustomerState& state)>& visit) const {
  const Impl& d = *impl_;
  if (d.empty) return Status::Ok();
  return d.read([&](MDB_txn* txn) {
    Cursor cursor;
    int rc = cursor.open(txn, d.customers);
    MDB_val k, v;
    if (rc == 0) rc = cursor.get(k, v, MDB_FIRST);
    while (rc == 0) {
      std::string_view id = to_view(k);
      CustomerState state;
      if (Status st = deserialize(to_view(v), state); !st) {
        return Status::Error("customer record " + in_quotes(id) + ": " + st.message());
      }
      if (!visit(id, state)) return Status::Ok();
      rc = cursor.get(k, v, MDB_NEXT);
    }
    if (rc != MDB_NOTFOUND) return Status::Error(d.describe("cannot iterate customers", rc));
    return Status::Ok();
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

Status Store::remove_dead_letters(std::span<const std::uint64_t> sequences) {
  if (sequences.empty() && !impl_->options.read_only) return Status::Ok();
  Impl& d = *impl_;
  return d.write([&](MDB_txn* txn, std::string& context) -> int {
    context = "cannot remove dead letters";
    for (std::uint64_t seq : sequences) {
      std::string key = sequence_key(seq);
      MDB_val k = to_val(key);
      int rc = mdb_del(txn, d.deadletter, &k, nullptr);
      if (rc != 0 && rc != MDB_NOTFOUND) return rc;
    }
    return 0;
  });
}

StoreStats Store::stats() const {
  const Impl& d = *impl_;
  StoreStats stats;
  Status s = d.read([&](MDB_txn* txn) {
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
    }
    return Status::Ok();
  });
  (void)s;  // on failure the counters stay 0
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
