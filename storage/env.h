// Internal to storage/. The LMDB environment and its named databases, the
// resize lock (map growth without stopping the world), read and write
// transactions with their error messages, and small LMDB helpers.
//
// Locking:
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
#pragma once

#include <lmdb.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "storage/codec.h"
#include "storage/store.h"

namespace rapport::storage_internal {

// An I/O error with less than this much space left on the state dir's file system is reported as disk full.
constexpr std::uint64_t kDiskFullBytes = 1u << 20;
constexpr int kFailed = -1;  // body failed with a message of its own (not an LMDB code)
constexpr unsigned kMaxReaders = 256;

inline MDB_val to_val(std::string_view s) { return MDB_val{s.size(), const_cast<char*>(s.data())}; }
inline std::string_view to_view(const MDB_val& v) { return {static_cast<const char*>(v.mv_data), v.mv_size}; }

inline bool starts_with(const MDB_val& key, std::string_view prefix) {
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

struct Env {
  StoreOptions options;
  MDB_env* env = nullptr;
  MDB_dbi customers = 0, events = 0, meta = 0, deadletter = 0, journal = 0, changes = 0;
  bool empty = false;       // read-only open of an environment that has none of our databases
  bool has_journal = true;  // false: read-only open of a store written before the journal existed
  bool has_changes = true;  // false: read-only open of a store written before the change feed existed
  std::size_t page_size = 4096;

  std::mutex write_mutex;
  mutable std::mutex gate;
  mutable std::shared_mutex resize_mutex;

  // Writer scratch, guarded by write_mutex.
  std::string key, value;

  Env() = default;
  Env(const Env&) = delete;
  Env& operator=(const Env&) = delete;
  ~Env();

  // ---- the resize lock ----

  // Stores whose resize lock the current thread holds shared.
  static std::vector<const Env*>& held_by_this_thread();
  bool this_thread_holds_shared() const;

  // Shared hold of the resize lock for the life of one transaction; reentrant per thread.
  class SharedLock {
   public:
    explicit SharedLock(const Env& impl) : impl_(impl) { lock(); }
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
    const Env& impl_;
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
  Status adopt_map_size() const;
  // MDB_MAP_FULL: double the map, up to options.max_map_bytes.
  Status grow_map() const;

  // ---- messages ----

  // A write LMDB's file cannot take: the file system is full, or the file at the process's size limit.
  // LMDB reports a write cut short by either as EIO.
  std::string_view out_of_space(int rc) const;
  // "<out of space: >context in "<dir>": <LMDB message>".
  std::string describe(std::string_view context, int rc) const;

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

  // ---- meta values and the journal's end ----

  // A meta value holding one sequence number (big-endian); absent reads as 0.
  int get_meta_u64(MDB_txn* txn, std::string_view name, std::uint64_t& out, std::string& context) const;
  int put_meta_u64(MDB_txn* txn, std::string_view name, std::uint64_t v, std::string& context);
  // Last journal sequence (0 if the journal is empty).
  int journal_last(MDB_txn* txn, std::uint64_t& last, std::string& context) const;
};

}  // namespace rapport::storage_internal
