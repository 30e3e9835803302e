// End-to-end: rapportd as systemd runs it — sd_notify on a test NOTIFY_SOCKET
// (READY, WATCHDOG, STOPPING) and socket activation with passed listeners.
#include <gtest/gtest.h>
#include <sys/un.h>

#include "tests/e2e/harness.h"

namespace rapport::test {
namespace {

// A datagram socket standing in for systemd's notification socket.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) : path_(path) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) throw std::runtime_error("bind " + path);
  }
  ~NotifySocket() {
    ::close(fd_);
    ::unlink(path_.c_str());
  }
  // Reads every datagram already queued, without waiting.
  std::string drain() {
    std::string all;
    char buf[4096];
    for (ssize_t n; (n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT)) > 0;) {
      all.append(buf, static_cast<std::size_t>(n)).append("|");
    }
    return all;
  }
  // Waits for a datagram containing `what`; returns everything received meanwhile.
  bool wait_for(const std::string& what, std::chrono::milliseconds timeout, std::string* seen = nullptr) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char buf[4096];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) continue;
      const std::string msg(buf, static_cast<std::size_t>(n));
      if (seen != nullptr) *seen += msg + "|";
      if (msg.find(what) != std::string::npos) return true;
    }
    return false;
  }

 private:
  std::string path_;
  int fd_ = -1;
};

TEST(Systemd, NotifiesReadyWatchdogAndStopping) {
  TempDir dir;
  // Unix socket paths are short: keep it under /tmp.
  const std::string path = "/tmp/rapport-notify-" + std::to_string(::getpid());
  NotifySocket notify(path);
  Daemon d(dir.file("state"), {}, Daemon::Systemd{{"NOTIFY_SOCKET=" + path, "WATCHDOG_USEC=400000"}, {}, ""});
  std::string seen;
  EXPECT_TRUE(notify.wait_for("READY=1", std::chrono::seconds(10), &seen)) << seen;
  // Pings at half the watchdog interval while the writer is healthy: several within a second.
  EXPECT_TRUE(notify.wait_for("WATCHDOG=1", std::chrono::seconds(2), &seen)) << seen;
  EXPECT_TRUE(notify.wait_for("WATCHDOG=1", std::chrono::seconds(2), &seen)) << seen;
  d.signal(SIGTERM);
  EXPECT_TRUE(notify.wait_for("STOPPING=1", std::chrono::seconds(10), &seen)) << seen;
  EXPECT_EQ(d.stop(SIGTERM), 0);
}

// Logged by rapportd at each watchdog tick while the writer holds work and makes no progress.
constexpr char kWithheld[] = "storage writer has made no progress; withholding the watchdog ping";

std::size_t count_of(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (auto pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + needle.size())) ++n;
  return n;
}

std::string purchase(int i) {
  return R"({"event_id":")" + std::to_string(i) +
         R"(","customer_id":"wd","ts":1700000000000,"type":"purchase",)"
         R"("amount":1})"
         "\n";
}

// WATCHDOG_USEC of the watchdog tests: a ping (or a warning) every second. Nothing below depends on
// how long a tick really takes: the tests count ticks by their pings and warnings.
constexpr char kWatchdogUsec[] = "WATCHDOG_USEC=2000000";

TEST(Systemd, WatchdogStopsWhileTheWriterIsStuckAndTheDaemonKeepsServing) {
  TempDir dir;
  const std::string path = "/tmp/rapport-notify-stall-" + std::to_string(::getpid());
  NotifySocket notify(path);
  const std::string config = dir.file("rapport.toml");
  write_file(config, "[daemon]\nshutdown_timeout_ms = 1000\n");  // the stalled ack is not waited for long
  Daemon d(dir.file("state"), {"--config", config, "--durability", "async"},
           Daemon::Systemd{{"NOTIFY_SOCKET=" + path, kWatchdogUsec, "RAPPORT_TEST_STALL_WRITER_AFTER=2"}, {}, ""});
  EXPECT_NE(d.log().find("test hook RAPPORT_TEST_STALL_WRITER_AFTER=2"), std::string::npos) << d.log();
  std::string seen;
  ASSERT_TRUE(notify.wait_for("READY=1", std::chrono::seconds(30), &seen)) << seen;
  ASSERT_TRUE(notify.wait_for("WATCHDOG=1", std::chrono::seconds(30), &seen)) << seen;  // healthy so far

  // Two commits go through; the writer takes the third batch and is stuck with it.
  Client c(d.tcp_port());
  for (int i = 1; i <= 2; ++i) {
    c.send(purchase(i));
    ASSERT_EQ(c.read_line().value_or("(none)"), "{\"ack\":" + std::to_string(i) + "}");
  }
  c.send(purchase(3));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(90);
  while (count_of(d.log(), kWithheld) == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_GE(count_of(d.log(), kWithheld), 1u) << d.log();
  EXPECT_NE(d.log().find("test hook: the storage writer is stalled after 2 commits"), std::string::npos) << d.log();

  // Pings sent before the stall was noticed are already queued: drop them. From here on, three more
  // ticks (each logs the warning again) must pass without a single WATCHDOG=1.
  notify.drain();
  const std::size_t warned = count_of(d.log(), kWithheld);
  std::string after;
  while (count_of(d.log(), kWithheld) < warned + 3 && std::chrono::steady_clock::now() < deadline) {
    notify.wait_for("WATCHDOG=1", std::chrono::milliseconds(100), &after);
  }
  after += notify.drain();
  ASSERT_GE(count_of(d.log(), kWithheld), warned + 3) << d.log();
  EXPECT_EQ(after.find("WATCHDOG=1"), std::string::npos) << after;

  // The rest of the daemon serves on: health, reads, and the TCP connection stays open (unacked).
  EXPECT_EQ(http(d.http_port(), "GET", "/healthz").status, 200);
  EXPECT_EQ(http(d.http_port(), "GET", "/v1/customers/wd").status, 200);
  EXPECT_FALSE(c.read_line(std::chrono::milliseconds(200)).has_value()) << "the stalled batch was acknowledged";

  // Shutdown releases the stuck writer: a clean exit.
  d.signal(SIGTERM);
  EXPECT_TRUE(notify.wait_for("STOPPING=1", std::chrono::seconds(30), &seen)) << seen;
  EXPECT_EQ(d.stop(SIGTERM), 0) << d.log();
}

TEST(Systemd, WatchdogKeepsPingingWhileTheWriterMakesProgress) {
  TempDir dir;
  const std::string path = "/tmp/rapport-notify-flow-" + std::to_string(::getpid());
  NotifySocket notify(path);
  Daemon d(dir.file("state"), {"--durability", "async"},
           Daemon::Systemd{{"NOTIFY_SOCKET=" + path, kWatchdogUsec}, {}, ""});
  std::string seen;
  ASSERT_TRUE(notify.wait_for("READY=1", std::chrono::seconds(30), &seen)) << seen;
  // The same traffic as above, and more: every commit acknowledged, and a ping after each.
  Client c(d.tcp_port());
  for (int i = 1; i <= 5; ++i) {
    c.send(purchase(i));
    ASSERT_EQ(c.read_line().value_or("(none)"), "{\"ack\":" + std::to_string(i) + "}");
    notify.drain();  // a ping counts only once this commit is acknowledged
    EXPECT_TRUE(notify.wait_for("WATCHDOG=1", std::chrono::seconds(30), &seen)) << "after ack " << i << ": " << seen;
  }
  EXPECT_EQ(count_of(d.log(), kWithheld), 0u) << d.log();
  EXPECT_EQ(d.stop(SIGTERM), 0);
}

int listening_socket(int* port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 64) != 0) {
    throw std::runtime_error("listen");
  }
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  *port = ntohs(addr.sin_port);
  return fd;
}

TEST(Systemd, AdoptsListenersPassedBySocketActivation) {
  TempDir dir;
  int http_port = 0, tcp_port = 0;
  const int http_fd = listening_socket(&http_port);
  const int tcp_fd = listening_socket(&tcp_port);
  Daemon d(dir.file("state"), {}, Daemon::Systemd{{}, {http_fd, tcp_fd}, "http:tcp"});
  ::close(http_fd);
  ::close(tcp_fd);
  // The daemon serves on the passed sockets, not on ports of its own.
  EXPECT_EQ(d.http_port(), http_port);
  EXPECT_EQ(d.tcp_port(), tcp_port);
  EXPECT_NE(d.log().find("adopted 2 listener(s) from systemd"), std::string::npos) << d.log();
  EXPECT_EQ(http(http_port, "GET", "/healthz").status, 200);
  Client c(tcp_port);
  c.send(R"({"event_id":"1","customer_id":"sock","ts":1700000000000,"type":"engagement"})"
         "\n");
  EXPECT_EQ(c.read_line().value_or(""), "{\"ack\":1}");
  EXPECT_EQ(http(http_port, "GET", "/v1/customers/sock").status, 200);
}

TEST(Systemd, UnitFilesPassVerifyAndSecurityChecks) {
  const std::string units = std::string(RAPPORT_SOURCE_DIR) + "/systemd/";
  const auto verify =
      run_command({"/bin/sh", "-c",
                   "cd " + units +
                       " && SYSTEMD_LOG_LEVEL=warning systemd-analyze verify "
                       "--man=no --recursive-errors=no rapportd.socket rapportd-tcp.socket "
                       "rapportd.service 2>&1 | grep -v 'rapportd: No such file\\|is not executable' ; true"});
  EXPECT_EQ(verify.out, "") << verify.out << verify.err;
  const auto security = run_command(
      {"/usr/bin/systemd-analyze", "security", "--offline=true", "--threshold=20", units + "rapportd.service"});
  EXPECT_EQ(security.exit_code, 0) << security.out << security.err;
}

}  // namespace
}  // namespace rapport::test
