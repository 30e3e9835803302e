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
  Daemon d(dir.file("state"), {},
           Daemon::Systemd{{"NOTIFY_SOCKET=" + path, "WATCHDOG_USEC=400000"}, {}, ""});
  std::string seen;
  EXPECT_TRUE(notify.wait_for("READY=1", std::chrono::seconds(10), &seen)) << seen;
  // Pings at half the watchdog interval while the writer is healthy: several within a second.
  EXPECT_TRUE(notify.wait_for("WATCHDOG=1", std::chrono::seconds(2), &seen)) << seen;
  EXPECT_TRUE(notify.wait_for("WATCHDOG=1", std::chrono::seconds(2), &seen)) << seen;
  d.signal(SIGTERM);
  EXPECT_TRUE(notify.wait_for("STOPPING=1", std::chrono::seconds(10), &seen)) << seen;
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
  c.send(R"({"event_id":"1","customer_id":"sock","ts":1700000000000,"type":"engagement"})" "\n");
  EXPECT_EQ(c.read_line().value_or(""), "{\"ack\":1}");
  EXPECT_EQ(http(http_port, "GET", "/v1/customers/sock").status, 200);
}

TEST(Systemd, UnitFilesPassVerifyAndSecurityChecks) {
  const std::string units = std::string(RAPPORT_SOURCE_DIR) + "/systemd/";
  const auto verify = run_command({"/bin/sh", "-c",
                                   "cd " + units + " && SYSTEMD_LOG_LEVEL=warning systemd-analyze verify "
                                   "--man=no --recursive-errors=no rapportd.socket rapportd-tcp.socket "
                                   "rapportd.service 2>&1 | grep -v 'rapportd: No such file\\|is not executable' ; true"});
  EXPECT_EQ(verify.out, "") << verify.out << verify.err;
  const auto security =
      run_command({"/usr/bin/systemd-analyze", "security", "--offline=true", "--threshold=20", units + "rapportd.service"});
  EXPECT_EQ(security.exit_code, 0) << security.out << security.err;
}

}  // namespace
}  // namespace rapport::test
