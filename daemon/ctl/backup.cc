// rapportctl backup and restore: hot compacted copies of a state dir.
#include "daemon/ctl/backup.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
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

  const StoreStats before = (*store)->stats();
  std::fprintf(stderr, "backing up %.1f MB (about %llu customers, %llu events) from %s to %s (compacting) ...\n",
               megabytes(before.used_bytes), static_cast<unsigned long long>(before.customers),
               static_cast<unsigned long long>(before.events), source.c_str(), destination.c_str());
  const auto started = std::chrono::steady_clock::now();
  std::atomic<bool> done{false};
  Status result;
  std::thread copier([&] {
    result = (*store)->backup(destination);
    done.store(true, std::memory_order_release);
  });
  const bool show = !quiet && isatty(STDERR_FILENO);
  const std::string data_file = (fs::path(destination) / "data.mdb").string();
  while (!done.load(std::memory_order_acquire)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    if (!show) continue;
    const std::uintmax_t size = fs::file_size(data_file, ec);
    if (ec) continue;
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    std::fprintf(stderr, "\r  %.1f / %.1f MB written, %.1f s   ", megabytes(size), megabytes(before.used_bytes), secs);
    std::fflush(stderr);
  }
  copier.join();
  if (show) std::fprintf(stderr, "\n");
  store->reset();
  if (!result.ok()) {
    // Leave no half-written backup behind.
    if (existed) {
      fs::remove(data_file, ec);
      fs::remove(fs::path(destination) / "lock.mdb", ec);
    } else {
      fs::remove_all(destination, ec);
    }
    return ctl_error(result.message());
  }
  if (!sync_path(data_file) || !sync_path(destination)) {
    return ctl_error("cannot flush the backup in " + destination + " to disk: " + std::strerror(errno));
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  // Verify: the copy opens and holds the snapshot's customers and events.
  StoreOptions verify_options;
  verify_options.directory = destination;
  verify_options.read_only = true;
  StoreStats copied;
  {
    auto copy = Store::open(verify_options);
    if (!copy.ok()) return ctl_error("the backup in " + destination + " does not open: " + copy.message());
    copied = (*copy)->stats();
  }
  fs::remove(fs::path(destination) / "lock.mdb", ec);  // created by the check; a backup is data.mdb alone
  const std::uintmax_t size = fs::file_size(data_file, ec);
  std::printf("backup of %llu customers, %llu events written to %s in %.1f s (%.1f MB)\n",
              static_cast<unsigned long long>(copied.customers), static_cast<unsigned long long>(copied.events),
              destination.c_str(), secs, megabytes(ec ? 0 : size));
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

int ctl_restore(const CtlTarget& target, const std::string& source, bool force) {
  if (!target.url.empty()) return ctl_error("restore writes a state dir: use --state-dir, not --url");
  auto config = ctl_config(target);
  if (!config.ok()) return ctl_error(config.message());
  const std::string& dir = config->storage.directory;
  std::error_code ec;
  const fs::path source_data = fs::path(source) / "data.mdb";
  if (!fs::is_regular_file(source_data, ec)) {
    return ctl_error(source + " is not a backup: it has no data.mdb (make one with `rapportctl backup`)");
  }
  if (fs::weakly_canonical(source, ec) == fs::weakly_canonical(dir, ec)) {
    return ctl_error("the backup and the state dir are the same directory");
  }

  // The backup must open as a Rapport store.
  StoreStats backup_stats;
  {
    const bool had_lock = fs::exists(fs::path(source) / "lock.mdb", ec);
    StoreOptions options;
    options.directory = source;
    options.read_only = true;
    {
      auto backup = Store::open(options);
      if (!backup.ok()) return ctl_error(source + " is not a readable Rapport backup: " + backup.message());
      backup_stats = (*backup)->stats();
    }
    if (!had_lock) fs::remove(fs::path(source) / "lock.mdb", ec);
  }

  // The target: never a state dir in use, and only an empty one unless --force.
  if (fs::exists(dir, ec)) {
    if (!fs::is_directory(dir, ec)) return ctl_error(dir + " exists and is not a directory");
    if (state_dir_in_use(dir)) {
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

  const std::uintmax_t bytes = fs::file_size(source_data, ec);
  std::fprintf(stderr, "restoring %.1f MB (%llu customers, %llu events) from %s into %s ...\n",
               megabytes(ec ? 0 : bytes), static_cast<unsigned long long>(backup_stats.customers),
               static_cast<unsigned long long>(backup_stats.events), source.c_str(), dir.c_str());
  const auto started = std::chrono::steady_clock::now();
  const fs::path target_data = fs::path(dir) / "data.mdb";
  const fs::path staging = fs::path(dir) / "data.mdb.restoring";
  fs::copy_file(source_data, staging, fs::copy_options::overwrite_existing, ec);
  if (ec) {
    fs::remove(staging, ec);
    return ctl_error("cannot copy " + source_data.string() + " to " + dir + ": " + ec.message());
  }
  ::chmod(staging.c_str(), 0640);
  if (!sync_path(staging.string())) return ctl_error("cannot flush " + staging.string() + ": " + std::strerror(errno));
  fs::rename(staging, target_data, ec);
  if (ec) return ctl_error("cannot move the restored data into place: " + ec.message());
  fs::remove(fs::path(dir) / "lock.mdb", ec);  // a stale reader table belongs to the replaced data
  sync_path(dir);

  StoreOptions check = config->storage;
  check.read_only = true;
  auto restored = Store::open(check);
  if (!restored.ok()) return ctl_error("the restored state dir does not open: " + restored.message());
  const StoreStats stats = (*restored)->stats();
  restored->reset();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf("restored %llu customers, %llu events from %s into %s in %.1f s\n",
              static_cast<unsigned long long>(stats.customers), static_cast<unsigned long long>(stats.events),
              source.c_str(), dir.c_str(), secs);
  return kExitOk;
}

}  // namespace rapport
