// io_order_shim: an LD_PRELOAD library for tests/e2e/durability_order_test.cc.
// It records, in the order they happen, what a process does that matters for
// "an acknowledgement means the event is on disk":
//   A  accept/accept4 returned a connection (fd)
//   R  recv/read/readv/recvmsg/recvfrom on a socket returned bytes (the bytes)
//   S  send/write/writev/sendmsg/sendto on a socket is about to send bytes (the bytes)
//   W  a write to a file named data.mdb (LMDB's data file) returned: the marked
//      event ids found in the written bytes, and whether the descriptor is
//      O_DSYNC/O_SYNC (such a write returns only once it is on disk: a sync)
//   Y  fsync/fdatasync of data.mdb, or msync of a mapping of it, returned
//   (W and Y name the file by its inode, "@<inode>": a state dir has one data.mdb per partition)
// Each record carries two numbers from one process-wide counter: taken just
// before the call and just after it returns, so "Y ended before S began" means
// the sync had returned before the send was attempted.
//
// Environment: RAPPORT_IO_LOG (file to append records to; unset: pass through),
// RAPPORT_IO_MARK (event id prefix to look for in data.mdb writes) and
// RAPPORT_IO_MARK_LEN (length of a whole marked id, prefix included).
//
// Record: "<before> <after> <kind> <fd> <tid> <hex payload or ->\n", one write(2) each
// (O_APPEND), so records of different threads never interleave.
//
// Built without sanitizers; under an ASan/TSan rapportd the test preloads the
// sanitizer runtime first (it must be the first library), then this.
#undef _FORTIFY_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

std::atomic<std::uint64_t> g_counter{0};
std::atomic<int> g_log_fd{-2};  // -2: not opened yet, -1: logging off
thread_local int t_depth = 0;   // > 0 inside the shim (no recording of its own calls)

std::uint64_t tick() { return g_counter.fetch_add(1, std::memory_order_seq_cst) + 1; }

int log_fd() {
  int fd = g_log_fd.load(std::memory_order_acquire);
  if (fd != -2) return fd;
  const char* path = std::getenv("RAPPORT_IO_LOG");
  int opened = -1;
  if (path != nullptr && *path != '\0') opened = ::open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  int expected = -2;
  if (!g_log_fd.compare_exchange_strong(expected, opened)) {
    if (opened >= 0) ::close(opened);
    return expected;
  }
  return opened;
}

template <typename F>
F real(const char* name) {
  return reinterpret_cast<F>(::dlsym(RTLD_NEXT, name));
}

// Guards against recording the shim's own calls (and calls made by the real functions).
struct Inside {
  Inside() { ++t_depth; }
  ~Inside() { --t_depth; }
  Inside(const Inside&) = delete;
  Inside& operator=(const Inside&) = delete;
};
bool recording() { return t_depth == 0 && log_fd() >= 0; }

bool is_socket(int fd) {
  struct stat st;
  return ::fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

bool path_is_data_file(const char* path) {
  const std::size_t n = std::strlen(path);
  return n >= 9 && std::strcmp(path + n - 9, "/data.mdb") == 0;
}

bool is_data_file(int fd) {
  char link[64];
  std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  char target[4096];
  const ssize_t n = ::readlink(link, target, sizeof target - 1);
  if (n <= 0) return false;
  target[n] = '\0';
  return path_is_data_file(target);
}

// The inode of the data.mdb mapping that holds addr (/proc/self/maps), 0 if none.
unsigned long maps_data_file(const void* addr) {
  const int fd = ::open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  std::string maps;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::syscall(SYS_read, fd, buf, sizeof buf);
    if (n <= 0) break;
    maps.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  const auto a = reinterpret_cast<std::uintptr_t>(addr);
  std::size_t pos = 0;
  while (pos < maps.size()) {
    std::size_t end = maps.find('\n', pos);
    if (end == std::string::npos) end = maps.size();
    const std::string line = maps.substr(pos, end - pos);
    pos = end + 1;
    unsigned long lo = 0, hi = 0, inode = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx %*s %*s %*s %lu", &lo, &hi, &inode) != 3 || a < lo || a >= hi) continue;
    return line.size() >= 9 && line.compare(line.size() - 9, 9, "/data.mdb") == 0 ? inode : 0;
  }
  return 0;
}

// The inode of an open file (which data.mdb: one per partition).
unsigned long inode_of(int fd) {
  struct stat st {};
  return ::fstat(fd, &st) == 0 ? static_cast<unsigned long>(st.st_ino) : 0;
}

void append_hex(std::string& out, const void* data, std::size_t n) {
  static const char kHex[] = "0123456789abcdef";
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < n; ++i) {
    out.push_back(kHex[p[i] >> 4]);
    out.push_back(kHex[p[i] & 15]);
  }
}

void emit(std::uint64_t before, std::uint64_t after, char kind, int fd, const std::string& payload) {
  std::string rec = std::to_string(before) + ' ' + std::to_string(after) + ' ' + kind + ' ' + std::to_string(fd) + ' ' +
                    std::to_string(::syscall(SYS_gettid)) + ' ' + (payload.empty() ? "-" : payload) + '\n';
  const int lf = log_fd();
  std::size_t off = 0;
  while (off < rec.size()) {
    const long n = ::syscall(SYS_write, lf, rec.data() + off, rec.size() - off);
    if (n <= 0) break;
    off += static_cast<std::size_t>(n);
  }
}

// The marked event ids in `data`, as hex, comma separated.
void find_marks(const void* data, std::size_t n, std::string& out) {
  const char* prefix = std::getenv("RAPPORT_IO_MARK");
  const char* len_text = std::getenv("RAPPORT_IO_MARK_LEN");
  if (prefix == nullptr || *prefix == '\0' || len_text == nullptr) return;
  const std::size_t plen = std::strlen(prefix);
  const std::size_t id_len = static_cast<std::size_t>(std::atoi(len_text));
  if (id_len < plen) return;
  const auto* p = static_cast<const char*>(data);
  const char* end = p + n;
  while (static_cast<std::size_t>(end - p) >= id_len) {
    const void* hit = ::memmem(p, static_cast<std::size_t>(end - p), prefix, plen);
    if (hit == nullptr) break;
    const char* h = static_cast<const char*>(hit);
    if (static_cast<std::size_t>(end - h) < id_len) break;
    if (!out.empty() && out.back() != ':') out.push_back(',');
    append_hex(out, h, id_len);
    p = h + id_len;
  }
}

bool durable_fd(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  return flags >= 0 && (flags & (O_DSYNC | O_SYNC)) != 0;
}

// A write of `iov` to fd, already classified. Returns the result of `call`.
template <typename Call>
ssize_t record_write(int fd, const struct iovec* iov, int iovcnt, Call call) {
  if (!recording()) return call();
  Inside inside;
  if (is_socket(fd)) {
    const std::uint64_t before = tick();
    const ssize_t r = call();
    const std::uint64_t after = tick();
    if (r > 0) {
      std::string payload;
      std::size_t left = static_cast<std::size_t>(r);
      for (int i = 0; i < iovcnt && left > 0; ++i) {
        const std::size_t k = iov[i].iov_len < left ? iov[i].iov_len : left;
        append_hex(payload, iov[i].iov_base, k);
        left -= k;
      }
      emit(before, after, 'S', fd, payload);
    }
    return r;
  }
  if (is_data_file(fd)) {
    const bool dsync = durable_fd(fd);
    const std::uint64_t before = tick();
    const ssize_t r = call();
    const std::uint64_t after = tick();
    std::string payload = std::string(dsync ? "dsync" : "plain") + "@" + std::to_string(inode_of(fd)) + ":";
    for (int i = 0; i < iovcnt; ++i) find_marks(iov[i].iov_base, iov[i].iov_len, payload);
    if (r >= 0) emit(before, after, 'W', fd, payload);
    return r;
  }
  return call();
}

template <typename Call>
ssize_t record_read(int fd, const struct iovec* iov, int iovcnt, Call call) {
  if (!recording()) return call();
  Inside inside;
  if (!is_socket(fd)) return call();
  const std::uint64_t before = tick();
  const ssize_t r = call();
  const std::uint64_t after = tick();
  if (r > 0) {
    std::string payload;
    std::size_t left = static_cast<std::size_t>(r);
    for (int i = 0; i < iovcnt && left > 0; ++i) {
      const std::size_t k = iov[i].iov_len < left ? iov[i].iov_len : left;
      append_hex(payload, iov[i].iov_base, k);
      left -= k;
    }
    emit(before, after, 'R', fd, payload);
  }
  return r;
}

template <typename Call>
int record_sync(int fd, const char* what, Call call) {
  if (!recording()) return call();
  Inside inside;
  if (!is_data_file(fd)) return call();
  const std::uint64_t before = tick();
  const int r = call();
  const std::uint64_t after = tick();
  if (r == 0) {
    std::string payload;
    append_hex(payload, what, std::strlen(what));
    emit(before, after, 'Y', fd, payload + "@" + std::to_string(inode_of(fd)));
  }
  return r;
}

}  // namespace

extern "C" {

ssize_t write(int fd, const void* buf, size_t n) {
  static auto fn = real<ssize_t (*)(int, const void*, size_t)>("write");
  const struct iovec v { const_cast<void*>(buf), n };
  return record_write(fd, &v, 1, [&] { return fn(fd, buf, n); });
}

ssize_t writev(int fd, const struct iovec* iov, int iovcnt) {
  static auto fn = real<ssize_t (*)(int, const struct iovec*, int)>("writev");
  return record_write(fd, iov, iovcnt, [&] { return fn(fd, iov, iovcnt); });
}

ssize_t pwrite(int fd, const void* buf, size_t n, off_t offset) {
  static auto fn = real<ssize_t (*)(int, const void*, size_t, off_t)>("pwrite");
  const struct iovec v { const_cast<void*>(buf), n };
  return record_write(fd, &v, 1, [&] { return fn(fd, buf, n, offset); });
}

ssize_t pwrite64(int fd, const void* buf, size_t n, off64_t offset) {
  static auto fn = real<ssize_t (*)(int, const void*, size_t, off64_t)>("pwrite64");
  const struct iovec v { const_cast<void*>(buf), n };
  return record_write(fd, &v, 1, [&] { return fn(fd, buf, n, offset); });
}

ssize_t pwritev(int fd, const struct iovec* iov, int iovcnt, off_t offset) {
  static auto fn = real<ssize_t (*)(int, const struct iovec*, int, off_t)>("pwritev");
  return record_write(fd, iov, iovcnt, [&] { return fn(fd, iov, iovcnt, offset); });
}

ssize_t send(int fd, const void* buf, size_t n, int flags) {
  static auto fn = real<ssize_t (*)(int, const void*, size_t, int)>("send");
  const struct iovec v { const_cast<void*>(buf), n };
  return record_write(fd, &v, 1, [&] { return fn(fd, buf, n, flags); });
}

ssize_t sendto(int fd, const void* buf, size_t n, int flags, const struct sockaddr* addr, socklen_t addrlen) {
  static auto fn = real<ssize_t (*)(int, const void*, size_t, int, const struct sockaddr*, socklen_t)>("sendto");
  const struct iovec v { const_cast<void*>(buf), n };
  return record_write(fd, &v, 1, [&] { return fn(fd, buf, n, flags, addr, addrlen); });
}

ssize_t sendmsg(int fd, const struct msghdr* msg, int flags) {
  static auto fn = real<ssize_t (*)(int, const struct msghdr*, int)>("sendmsg");
  return record_write(fd, msg->msg_iov, static_cast<int>(msg->msg_iovlen), [&] { return fn(fd, msg, flags); });
}

ssize_t read(int fd, void* buf, size_t n) {
  static auto fn = real<ssize_t (*)(int, void*, size_t)>("read");
  const struct iovec v { buf, n };
  return record_read(fd, &v, 1, [&] { return fn(fd, buf, n); });
}

ssize_t readv(int fd, const struct iovec* iov, int iovcnt) {
  static auto fn = real<ssize_t (*)(int, const struct iovec*, int)>("readv");
  return record_read(fd, iov, iovcnt, [&] { return fn(fd, iov, iovcnt); });
}

ssize_t recv(int fd, void* buf, size_t n, int flags) {
  static auto fn = real<ssize_t (*)(int, void*, size_t, int)>("recv");
  const struct iovec v { buf, n };
  return record_read(fd, &v, 1, [&] { return fn(fd, buf, n, flags); });
}

ssize_t recvfrom(int fd, void* buf, size_t n, int flags, struct sockaddr* addr, socklen_t* addrlen) {
  static auto fn = real<ssize_t (*)(int, void*, size_t, int, struct sockaddr*, socklen_t*)>("recvfrom");
  const struct iovec v { buf, n };
  return record_read(fd, &v, 1, [&] { return fn(fd, buf, n, flags, addr, addrlen); });
}

ssize_t recvmsg(int fd, struct msghdr* msg, int flags) {
  static auto fn = real<ssize_t (*)(int, struct msghdr*, int)>("recvmsg");
  return record_read(fd, msg->msg_iov, static_cast<int>(msg->msg_iovlen), [&] { return fn(fd, msg, flags); });
}

int accept(int fd, struct sockaddr* addr, socklen_t* addrlen) {
  static auto fn = real<int (*)(int, struct sockaddr*, socklen_t*)>("accept");
  if (!recording()) return fn(fd, addr, addrlen);
  Inside inside;
  const std::uint64_t before = tick();
  const int r = fn(fd, addr, addrlen);
  if (r >= 0) emit(before, tick(), 'A', r, "");
  return r;
}

int accept4(int fd, struct sockaddr* addr, socklen_t* addrlen, int flags) {
  static auto fn = real<int (*)(int, struct sockaddr*, socklen_t*, int)>("accept4");
  if (!recording()) return fn(fd, addr, addrlen, flags);
  Inside inside;
  const std::uint64_t before = tick();
  const int r = fn(fd, addr, addrlen, flags);
  if (r >= 0) emit(before, tick(), 'A', r, "");
  return r;
}

int fsync(int fd) {
  static auto fn = real<int (*)(int)>("fsync");
  return record_sync(fd, "fsync", [&] { return fn(fd); });
}

int fdatasync(int fd) {
  static auto fn = real<int (*)(int)>("fdatasync");
  return record_sync(fd, "fdatasync", [&] { return fn(fd); });
}

int msync(void* addr, size_t len, int flags) {
  static auto fn = real<int (*)(void*, size_t, int)>("msync");
  if (!recording()) return fn(addr, len, flags);
  Inside inside;
  const unsigned long inode = maps_data_file(addr);
  if (inode == 0) return fn(addr, len, flags);
  const std::uint64_t before = tick();
  const int r = fn(addr, len, flags);
  const std::uint64_t after = tick();
  if (r == 0 && (flags & MS_SYNC) != 0) {
    std::string payload;
    append_hex(payload, "msync", 5);
    emit(before, after, 'Y', -1, payload + "@" + std::to_string(inode));
  }
  return r;
}

}  // extern "C"
