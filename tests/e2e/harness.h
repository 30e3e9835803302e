// Test harness for end-to-end tests: starts the real rapportd / rapportctl
// binaries as child processes and talks to them over real loopback sockets.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/loopback_client.h"
#include "tests/support/temp_dir.h"

namespace rapport::test {

inline std::string binary(const std::string& name) { return std::string(RAPPORT_BINARY_DIR) + "/daemon/" + name; }

// The lines of `text`, without their '\n'.
inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

inline void write_file(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out << content;
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// In a forked child before exec: stdout to /dev/null, so that a daemon outliving its test (the test
// process died, e.g. on a sanitizer report) never holds ctest's output pipe open, which would hang ctest.
inline void detach_stdout() {
  const int null = ::open("/dev/null", O_WRONLY);
  if (null >= 0) {
    ::dup2(null, 1);
    if (null != 1) ::close(null);
  }
}

// Runs a command to completion, capturing stdout and stderr (stdin from `input_file` if given).
inline CommandResult run_command(const std::vector<std::string>& argv, const std::string& input_file = "") {
  TempDir tmp;
  const std::string out_path = tmp.file("out"), err_path = tmp.file("err");
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (!input_file.empty()) {
      const int in = ::open(input_file.c_str(), O_RDONLY);
      ::dup2(in, 0);
    }
    const int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(out, 1);
    ::dup2(err, 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  CommandResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  r.out = read_file(out_path);
  r.err = read_file(err_path);
  return r;
}

// A running rapportd. Binds port 0 on loopback and learns its ports from the log.
class Daemon {
 public:
  explicit Daemon(std::string state_dir, std::vector<std::string> extra = {})
      : state_dir_(std::move(state_dir)), extra_(std::move(extra)) {
    start();
  }
  // How systemd would start it: extra environment ("KEY=value"; WATCHDOG_PID is
  // added when WATCHDOG_USEC is given) and listening sockets passed as fds
  // 3, 4, ... with LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES.
  struct Systemd {
    std::vector<std::string> env;
    std::vector<int> listen_fds;
    std::string listen_fdnames;  // "http:tcp"
  };
  Daemon(std::string state_dir, std::vector<std::string> extra, Systemd systemd)
      : state_dir_(std::move(state_dir)), extra_(std::move(extra)), systemd_(std::move(systemd)) {
    start();
  }
  pid_t pid() const { return pid_; }
  ~Daemon() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (log_fd_ >= 0) ::close(log_fd_);
  }

  void start() {
    int pipefd[2];
    if (::pipe(pipefd) != 0) throw std::runtime_error("pipe");
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(pipefd[1], 2);
      ::close(pipefd[0]);
      detach_stdout();
      for (const std::string& kv : systemd_.env) ::putenv(const_cast<char*>(kv.c_str()));
      // systemd sets WATCHDOG_PID with WATCHDOG_USEC: the watchdog is this process's, not a child's.
      if (::getenv("WATCHDOG_USEC") != nullptr && ::getenv("WATCHDOG_PID") == nullptr) {
        ::setenv("WATCHDOG_PID", std::to_string(::getpid()).c_str(), 1);
      }
      if (!systemd_.listen_fds.empty()) {
        // Move the sockets out of the way first, then into place at 3, 4, ...
        std::vector<int> moved;
        for (int fd : systemd_.listen_fds) moved.push_back(::fcntl(fd, F_DUPFD, 100));
        for (std::size_t i = 0; i < moved.size(); ++i) ::dup2(moved[i], 3 + static_cast<int>(i));
        ::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1);
        ::setenv("LISTEN_FDS", std::to_string(moved.size()).c_str(), 1);
        ::setenv("LISTEN_FDNAMES", systemd_.listen_fdnames.c_str(), 1);
      }
      std::vector<std::string> argv = {binary("rapportd"), "--http",      "127.0.0.1:0", "--tcp",
                                       "127.0.0.1:0",      "--state-dir", state_dir_};
      argv.insert(argv.end(), extra_.begin(), extra_.end());
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    ::close(pipefd[1]);
    log_fd_ = pipefd[0];
    log_.clear();
    // Wait for "listening http=H tcp=T".
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < deadline) {
      read_log(200);
      const auto pos = log_.find("listening http=");
      if (pos != std::string::npos && log_.find('\n', pos) != std::string::npos) {
        std::istringstream line(log_.substr(pos + 15, log_.find('\n', pos) - pos - 15));
        std::string http, tcp;
        line >> http >> tcp;
        http_port_ = port_of(http);
        tcp_port_ = port_of(tcp.substr(4));  // "tcp=..."
        return;
      }
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error("rapportd exited during start-up: " + log_);
      }
    }
    throw std::runtime_error("rapportd did not report its listeners: " + log_);
  }

  // Sends a signal and waits for exit; returns the exit code (or -signal). Reads the log meanwhile (a
  // daemon blocked writing to a full pipe never exits). A daemon still running after `bound` is killed
  // (SIGKILL) and the result is -SIGKILL with a line in the log: a hung shutdown fails the test that
  // expected a clean exit instead of hanging the suite until ctest's timeout.
  int stop(int sig = SIGTERM, std::chrono::seconds bound = std::chrono::seconds(180)) {
    ::kill(pid_, sig);
    int status = 0;
    const auto deadline = std::chrono::steady_clock::now() + bound;
    for (;;) {
      const pid_t done = ::waitpid(pid_, &status, WNOHANG);
      if (done == pid_ || (done < 0 && errno != EINTR)) break;
      if (std::chrono::steady_clock::now() >= deadline) {
        log_ += "[harness] rapportd did not exit within " + std::to_string(bound.count()) + " s of signal " +
                std::to_string(sig) + ": killed\n";
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      read_log(50);
    }
    pid_ = -1;
    read_log(0);
    ::close(log_fd_);
    log_fd_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  }
  void signal(int sig) { ::kill(pid_, sig); }
  // Starts it again (stopping it with SIGTERM first if it still runs).
  void restart() {
    if (pid_ > 0) stop(SIGTERM);
    if (log_fd_ >= 0) ::close(log_fd_);
    log_fd_ = -1;
    start();
  }

  int http_port() const { return http_port_; }
  int tcp_port() const { return tcp_port_; }
  const std::string& log() {
    read_log(0);
    return log_;
  }

 private:
  static int port_of(const std::string& endpoint) { return std::stoi(endpoint.substr(endpoint.rfind(':') + 1)); }
  void read_log(int timeout_ms) {
    pollfd p{log_fd_, POLLIN, 0};
    while (::poll(&p, 1, timeout_ms) > 0) {
      char buf[4096];
      const ssize_t n = ::read(log_fd_, buf, sizeof buf);
      if (n <= 0) break;
      log_.append(buf, static_cast<std::size_t>(n));
      timeout_ms = 0;
    }
  }

  std::string state_dir_;
  std::vector<std::string> extra_;
  Systemd systemd_;
  pid_t pid_ = -1;
  int log_fd_ = -1;
  std::string log_;
  int http_port_ = 0;
  int tcp_port_ = 0;
};

// The loopback client, throwing when it cannot connect or send (what every e2e test wants).
class Client : public LoopbackClient {
 public:
  explicit Client(int port) : LoopbackClient(port) {
    if (!connected()) throw std::runtime_error("connect to port " + std::to_string(port) + " failed");
  }
  void send(std::string_view data) {
    if (!LoopbackClient::send(data)) throw std::runtime_error("send failed");
  }
};

// One HTTP request on a new connection.
inline Client::Response http(int port, const std::string& method, const std::string& target,
                             const std::string& body = "", const std::string& content_type = "application/json",
                             const std::vector<std::string>& headers = {}) {
  Client c(port);
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n";
  if (!body.empty() || method == "POST") {
    req += "Content-Type: " + content_type + "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  }
  for (const auto& h : headers) req += h + "\r\n";
  req += "\r\n" + body;
  c.send(req);
  auto r = c.read_response();
  if (!r) throw std::runtime_error("no HTTP response to " + method + " " + target);
  return *r;
}

}  // namespace rapport::test
