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
// Files (all of storage/; only store.h is seen outside it):
//   store.h          the public contract
//   engine.h         Store::Impl (Engine): overlays, writer and checkpoint state; locking of the overlays
//   env.h/.cc        the LMDB environment, transactions, map growth and the resize lock
//   codec.h/.cc      record layouts: journal, index, dead letters, ApplyConfig, meta keys
//   overlay.h        the in-memory overlays and the per-batch Delta
//   dedup_filter.h/.cc  the filter over the stored dedup keys (no index read for a new event)
//   journal.cc       apply_batch, replay, installing a committed delta
//   checkpoint.cc    checkpoints in slices
//   reads.cc         reads that merge the overlays with a snapshot
//   erase.cc         erase_customer
//   dead_letters.cc  dead letters
//   changes.cc       the change feed (items written by checkpoints and erasure; Store::changes)
//   store.cc         open, close, put_meta, backup
//
// Several processes: every journal/overlay write transaction first checks the
// generation and the last journal sequence; if another process wrote since,
// the overlay catches up from the journal (or is rebuilt after another
// process's checkpoint) before the write is retried.
#include "storage/store.h"

#include <lmdb.h>
#include <sys/stat.h>

#include <filesystem>

#include "storage/engine.h"

namespace rapport {

using namespace storage_internal;

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
  if ((rc = mdb_env_set_maxdbs(impl->env, 16)) != 0 ||
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
  const Named named[] = {{"customers", &impl->customers},    {"events", &impl->events},   {"meta", &impl->meta},
                         {"deadletter", &impl->deadletter},  {"journal", &impl->journal}, {"outbox", &impl->outbox},
                         {"outbox_dead", &impl->outbox_dead}};
  int missing = 0;
  const char* first_missing = nullptr;
  for (const Named& n : named) {
    rc = mdb_dbi_open(txn, n.name, options.read_only ? 0 : MDB_CREATE, n.dbi);
    if (rc == MDB_NOTFOUND && options.read_only && n.dbi == &impl->journal) {
      impl->has_journal = false;  // written before the journal existed
      continue;
    }
    if (rc == MDB_NOTFOUND && options.read_only && (n.dbi == &impl->outbox || n.dbi == &impl->outbox_dead)) {
      impl->has_outbox = false;  // written before alerts existed
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
  // The change feed (storage/changes.cc); a read-only open of a store written before it reads no items.
  if (missing == 0) {
    rc = mdb_dbi_open(txn, "changes", options.read_only ? 0 : MDB_CREATE, &impl->changes);
    if (rc == MDB_NOTFOUND && options.read_only) {
      impl->has_changes = false;
    } else if (rc != 0) {
      mdb_txn_abort(txn);
      return fail("cannot open LMDB database 'changes'", rc);
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

  if (!options.read_only) {
    if (Status s = impl->backfill_changes(); !s) return Status::Error("cannot build the change feed: " + s.message());
  }
  // Crash recovery: replay the journal after the last checkpoint into memory.
  if (Status s = impl->refresh(); !s) return Status::Error("cannot replay the journal: " + s.message());
  if (!options.read_only) impl->build_stored_keys();
  return std::unique_ptr<Store>(new Store(std::move(impl)));
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
