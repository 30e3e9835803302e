// rapportctl backup and restore: hot compacted copies of a state dir.
#include "daemon/ctl/backup.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <thread>
#include <utility>

namespace rapport {
namespace {

namespace fs = std::filesystem;

double megabytes(std::uintmax_t bytes) { return static_cast<double>(bytes) / 1e6; }

// Flushes a file or directory to disk.
bool sync_path(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

Result<std::uint64_t> dir_entries(const std::string& dir) {
  std::error_code ec;
  std::uint64_t n = 0;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) ++n;
  if (ec) return Status::Error("cannot list " + dir + ": " + ec.message());
  return n;
}

// Sum of the sizes of every partition's data.mdb under a state dir or backup (progress).
std::uintmax_t data_bytes(const std::string& dir, std::uint32_t partitions) {
  std::uintmax_t total = 0;
  for (std::uint32_t i = 0; i < partitions; ++i) {
    std::error_code ec;
    const std::uintmax_t size = fs::file_size(fs::path(partition_directory(dir, i)) / "data.mdb", ec);
    if (!ec) total += size;
  }
  return total;
}

// Removes the lock.mdb files a read-only open left in a backup's partitions (a backup is data files alone).
void remove_locks(const std::string& dir, std::uint32_t partitions) {
  std::error_code ec;
  for (std::uint32_t i = 0; i < partitions; ++i) fs::remove(fs::path(partition_directory(dir, i)) / "lock.mdb", ec);
}

// True if any partition of the state dir is open in some process.
bool any_partition_in_use(const std::string& dir) {
  if (state_dir_in_use(dir)) return true;
  std::error_code ec;
  const fs::path parts = fs::path(dir) / "partitions";
  for (auto it = fs::directory_iterator(parts, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    if (state_dir_in_use(it->path().string())) return true;
  }
  return false;
}

}  // namespace

// --- backup ---------------------------------------------------------------------

int ctl_backup(const CtlTarget& target, const std::string& destination, bool quiet) {
  if (!target.url.empty()) {
    return ctl_error("backup copies a state dir (hot, beside the running daemon): use --state-dir, not --url");
  }
  if (destination.empty()) return ctl_error("backup destination is empty");
  std::error_code ec;
  const bool existed = fs::exists(destination, ec);
  if (existed) {
    if (!fs::is_directory(destination, ec))
      return ctl_error("backup destination " + destination + " is not a directory");
    auto entries = dir_entries(destination);
    if (!entries.ok()) return ctl_error(entries.message());
    if (*entries > 0) return ctl_error("backup destination " + destination + " is not empty");
  }
  auto config = ctl_config(target);
  if (!config.ok()) return ctl_error(config.message());
  auto store = ctl_open_store(*config, /*read_only=*/true);
  if (!store.ok()) return ctl_error(store.message());
  const std::string& source = config->storage.directory;
  if (fs::weakly_canonical(source, ec) == fs::weakly_canonical(destination, ec)) {
    return ctl_error("backup destination is the state dir itself");
  }

  const std::uint32_t partitions = (*store)->partition_count();
  const StoreStats before = (*store)->stats();
  std::fprintf(stderr,
               "backing up %.1f MB (about %llu customers, %llu events, %u partition(s)) from %s to %s (compacting) "
               "...\n",
               megabytes(before.used_bytes), static_cast<unsigned long long>(before.customers),
               static_cast<unsigned long long>(before.events), partitions, source.c_str(), destination.c_str());
  const auto started = std::chrono::steady_clock::now();
  std::atomic<bool> done{false};
  Status result;
  std::thread copier([&] {
    result = (*store)->backup(destination);
    done.store(true, std::memory_order_release);
  });
  const bool show = !quiet && isatty(STDERR_FILENO);
  while (!done.load(std::memory_order_acquire)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    if (!show) continue;
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    std::fprintf(stderr, "\r  %.1f / %.1f MB written, %.1f s   ", megabytes(data_bytes(destination, partitions)),
                 megabytes(before.used_bytes), secs);
    std::fflush(stderr);
  }
  copier.join();
  if (show) std::fprintf(stderr, "\n");
  store->reset();
  if (!result.ok()) {
    // Leave no half-written backup behind.
    if (existed) {
      for (auto it = fs::directory_iterator(destination, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
        std::error_code ignored;
        fs::remove_all(it->path(), ignored);
      }
    } else {
      fs::remove_all(destination, ec);
    }
    return ctl_error(result.message());
  }
  for (std::uint32_t i = 0; i < partitions; ++i) {
    const std::string dir = partition_directory(destination, i);
    if (!sync_path((fs::path(dir) / "data.mdb").string()) || !sync_path(dir)) {
      return ctl_error("cannot flush the backup in " + dir + " to disk: " + std::strerror(errno));
    }
  }
  if (partitions > 1) sync_path((fs::path(destination) / "partitions").string());
  if (!sync_path((fs::path(destination) / kBackupManifest).string()) || !sync_path(destination)) {
    return ctl_error("cannot flush the backup in " + destination + " to disk: " + std::strerror(errno));
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  // Verify: the copy is complete, opens and holds the snapshot's customers and events.
  auto complete = check_backup_complete(destination);
  if (!complete.ok()) return ctl_error(complete.message());
  PartitionedStoreOptions verify_options;
  verify_options.directory = destination;
  verify_options.read_only = true;
  StoreStats copied;
  {
    auto copy = PartitionedStore::open(verify_options);
    if (!copy.ok()) return ctl_error("the backup in " + destination + " does not open: " + copy.message());
    copied = (*copy)->stats();
  }
  remove_locks(destination, partitions);
  std::printf("backup of %llu customers, %llu events written to %s in %.1f s (%.1f MB, %u partition(s))\n",
              static_cast<unsigned long long>(copied.customers), static_cast<unsigned long long>(copied.events),
              destination.c_str(), secs, megabytes(data_bytes(destination, partitions)), partitions);
  return kExitOk;
}

// --- restore --------------------------------------------------------------------

bool state_dir_in_use(const std::string& directory) {
  const std::string lock_file = (fs::path(directory) / "lock.mdb").string();
  const int fd = ::open(lock_file.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return false;
  // Every process with the environment open holds a shared fcntl lock on byte 0 of lock.mdb.
  struct flock probe {};
  probe.l_type = F_WRLCK;
  probe.l_whence = SEEK_SET;
  probe.l_start = 0;
  probe.l_len = 1;
  const bool in_use = ::fcntl(fd, F_GETLK, &probe) == 0 && probe.l_type != F_UNLCK;
  ::close(fd);
  return in_use;
}

bool state_dir_partitions_in_use(const std::string& directory) { return any_partition_in_use(directory); }

int ctl_restore(const CtlTarget& target, const std::string& source, bool force) {
  if (!target.url.empty()) return ctl_error("restore writes a state dir: use --state-dir, not --url");
  auto config = ctl_config(target);
  if (!config.ok()) return ctl_error(config.message());
  const std::string& dir = config->storage.directory;
  std::error_code ec;
  if (fs::weakly_canonical(source, ec) == fs::weakly_canonical(dir, ec)) {
    return ctl_error("the backup and the state dir are the same directory");
  }
  // Every partition the backup names must be there: a partial backup is refused.
  auto complete = check_backup_complete(source);
  if (!complete.ok()) return ctl_error(complete.message());
  const std::uint32_t partitions = *complete;
  if (config->storage.partitions && *config->storage.partitions != partitions) {
    return ctl_error("the backup has " + std::to_string(partitions) +
                     " partition(s) but the config sets "
                     "storage.partitions = " +
                     std::to_string(*config->storage.partitions) +
                     ": restore with a config that matches, then `rapportctl migrate --partitions " +
                     std::to_string(*config->storage.partitions) + "`");
  }

  // The backup must open as a Rapport store.
  StoreStats backup_stats;
  {
    std::vector<bool> had_lock;
    for (std::uint32_t i = 0; i < partitions; ++i) {
      had_lock.push_back(fs::exists(fs::path(partition_directory(source, i)) / "lock.mdb", ec));
    }
    PartitionedStoreOptions options;
    options.directory = source;
    options.read_only = true;
    {
      auto backup = PartitionedStore::open(options);
      if (!backup.ok()) return ctl_error(source + " is not a readable Rapport backup: " + backup.message());
      if ((*backup)->partition_count() != partitions) {
        return ctl_error(source + " is not a consistent backup: its manifest names " + std::to_string(partitions) +
                         " partition(s), its data " + std::to_string((*backup)->partition_count()));
      }
      backup_stats = (*backup)->stats();
    }
    for (std::uint32_t i = 0; i < partitions; ++i) {
      if (!had_lock[i]) fs::remove(fs::path(partition_directory(source, i)) / "lock.mdb", ec);
    }
  }

  // The target: never a state dir in use, and only an empty one unless --force.
  if (fs::exists(dir, ec)) {
    if (!fs::is_directory(dir, ec)) return ctl_error(dir + " exists and is not a directory");
    if (any_partition_in_use(dir)) {
      return ctl_error(dir + " is in use by a running process (rapportd?): stop it before restoring");
    }
    auto entries = dir_entries(dir);
    if (!entries.ok()) return ctl_error(entries.message());
    if (*entries > 0 && !force) {
      return ctl_error(dir + " already holds data: restore into an empty directory, or add --force to replace it");
    }
  } else {
    fs::create_directories(dir, ec);
    if (ec) return ctl_error("cannot create " + dir + ": " + ec.message());
    ::chmod(dir.c_str(), 0750);
  }

  std::fprintf(stderr, "restoring %.1f MB (%llu customers, %llu events, %u partition(s)) from %s into %s ...\n",
               megabytes(data_bytes(source, partitions)), static_cast<unsigned long long>(backup_stats.customers),
               static_cast<unsigned long long>(backup_stats.events), partitions, source.c_str(), dir.c_str());
  const auto started = std::chrono::steady_clock::now();
  // Stage every partition's copy beside its place first; move them into place only once all are on disk.
  for (std::uint32_t i = 0; i < partitions; ++i) {
    const fs::path from = fs::path(partition_directory(source, i)) / "data.mdb";
    const fs::path into = partition_directory(dir, i);
    fs::create_directories(into, ec);
    if (ec) return ctl_error("cannot create " + into.string() + ": " + ec.message());
    const fs::path staging = into / "data.mdb.restoring";
    fs::copy_file(from, staging, fs::copy_options::overwrite_existing, ec);
    if (ec) {
      fs::remove(staging, ec);
      return ctl_error("cannot copy " + from.string() + " to " + into.string() + ": " + ec.message());
    }
    ::chmod(staging.c_str(), 0640);
    if (!sync_path(staging.string())) {
      return ctl_error("cannot flush " + staging.string() + ": " + std::strerror(errno));
    }
  }
  // Replaced data: partitions beyond the backup's and an unfinished migration belong to the old state.
  if (partitions == 1) {
    fs::remove_all(fs::path(dir) / "partitions", ec);
  } else {
    for (auto it = fs::directory_iterator(fs::path(dir) / "partitions", ec); !ec && it != fs::directory_iterator();
         it.increment(ec)) {
      std::uint32_t index = 0;
      const std::string name = it->path().filename().string();
      const auto [end, err] = std::from_chars(name.data(), name.data() + name.size(), index);
      if (err != std::errc() || end != name.data() + name.size() || index >= partitions) {
        std::error_code ignored;
        fs::remove_all(it->path(), ignored);
      }
    }
  }
  fs::remove_all(fs::path(dir) / kMigrateDirName, ec);
  for (std::uint32_t i = 0; i < partitions; ++i) {
    const fs::path into = partition_directory(dir, i);
    fs::rename(into / "data.mdb.restoring", into / "data.mdb", ec);
    if (ec) return ctl_error("cannot move the restored data into place: " + ec.message());
    fs::remove(into / "lock.mdb", ec);  // a stale reader table belongs to the replaced data
    sync_path(into.string());
  }
  sync_path(dir);

  PartitionedStoreOptions check = config->storage;
  check.read_only = true;
  auto restored = PartitionedStore::open(check);
  if (!restored.ok()) return ctl_error("the restored state dir does not open: " + restored.message());
  const StoreStats stats = (*restored)->stats();
  restored->reset();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf("restored %llu customers, %llu events from %s into %s in %.1f s (%u partition(s))\n",
              static_cast<unsigned long long>(stats.customers), static_cast<unsigned long long>(stats.events),
              source.c_str(), dir.c_str(), secs, partitions);
  return kExitOk;
}

}  // namespace rapport
