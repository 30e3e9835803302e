// The LMDB environment: see env.h.
#include "storage/env.h"

#include <errno.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <filesystem>

namespace rapport::storage_internal {

Env::~Env() {
  if (env) mdb_env_close(env);
}

// Stores whose resize lock the current thread holds shared.
std::vector<const Env*>& Env::held_by_this_thread() {
  thread_local std::vector<const Env*> held;
  return held;
}

bool Env::this_thread_holds_shared() const {
  auto& held = held_by_this_thread();
  return std::find(held.begin(), held.end(), this) != held.end();
}

// Another process grew the map: adopt its size.
Status Env::adopt_map_size() const {
  return with_map_exclusive([&] {
    int rc = mdb_env_set_mapsize(env, 0);
    if (rc != 0) return Status::Error(describe("cannot adopt the grown LMDB map size", rc));
    return Status::Ok();
  });
}

// MDB_MAP_FULL: double the map, up to options.max_map_bytes.
Status Env::grow_map() const {
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

// A write LMDB's file cannot take: the file system is full, or the file at the process's size limit.
// LMDB reports a write cut short by either as EIO.
std::string_view Env::out_of_space(int rc) const {
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

std::string Env::describe(std::string_view context, int rc) const {
  std::string msg(out_of_space(rc));
  if (!msg.empty()) msg += ": ";
  msg += context;
  msg += " in ";
  msg += in_quotes(options.directory);
  msg += ": ";
  msg += mdb_strerror(rc);
  return msg;
}

// A meta value holding one sequence number (big-endian); absent reads as 0.
int Env::get_meta_u64(MDB_txn* txn, std::string_view name, std::uint64_t& out, std::string& context) const {
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

int Env::put_meta_u64(MDB_txn* txn, std::string_view name, std::uint64_t v, std::string& context) {
  value.assign(1, static_cast<char>(kRecordVersion));
  value += sequence_key(v);
  MDB_val k = to_val(name), val = to_val(value);
  int rc = mdb_put(txn, meta, &k, &val, 0);
  if (rc != 0) context = "cannot write meta " + in_quotes(name);
  return rc;
}

// Last journal sequence (0 if the journal is empty).
int Env::journal_last(MDB_txn* txn, std::uint64_t& last, std::string& context) const {
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

}  // namespace rapport::storage_internal
