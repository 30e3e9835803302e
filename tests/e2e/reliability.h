// Helpers shared by the reliability end-to-end tests (crash, disk full, map
// growth, corpus, hostile clients): a rapportd child process with hooks for
// resource limits and a log drained by a thread, a line-oriented socket, an
// at-least-once TCP sender that tracks which events are acknowledged, and
// small readers for JSON and Prometheus text.
#pragma once

#include <dirent.h>
#include <simdjson.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "tests/e2e/harness.h"

namespace rapport::test::reliability {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Sanitizer builds run everything several times slower: waits and latency bounds scale with this.
#if defined(__SANITIZE_THREAD__)
inline constexpr int kTimeScale = 4;
#else
inline constexpr int kTimeScale = 1;
#endif

// Sets `stop` and joins `threads` when leaving a scope, also when an assertion or exception leaves it early.
class JoinOnExit {
 public:
  JoinOnExit(std::atomic<bool>& stop, std::vector<std::thread*> threads) : stop_(stop), threads_(std::move(threads)) {}
  ~JoinOnExit() {
    stop_ = true;
    for (std::thread* t : threads_) {
      if (t->joinable()) t->join();
    }
  }
  JoinOnExit(const JoinOnExit&) = delete;
  JoinOnExit& operator=(const JoinOnExit&) = delete;

 private:
  std::atomic<bool>& stop_;
  std::vector<std::thread*> threads_;
};

// ---------------------------------------------------------------------------
// JSON and metrics

inline std::optional<double> json_number(const std::string& json, const char* pointer) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(json).get(doc) != simdjson::SUCCESS) return std::nullopt;
  double v = 0;
  if (doc.at_pointer(pointer).get_double().get(v) != simdjson::SUCCESS) {
    std::int64_t i = 0;
    if (doc.at_pointer(pointer).get_int64().get(i) != simdjson::SUCCESS) return std::nullopt;
    return static_cast<double>(i);
  }
  return v;
}

// Sum of every sample of `name` whose label set contains all of `labels`
// (each "key=\"value\""); nullopt when no sample matches.
inline std::optional<double> metric(const std::string& text, const std::string& name,
                                    const std::vector<std::string>& labels = {}) {
  std::optional<double> sum;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string_view line(text.data() + pos, end - pos);
    pos = end + 1;
    if (line.empty() || line[0] == '#') continue;
    if (line.substr(0, name.size()) != name) continue;
    const std::string_view rest = line.substr(name.size());
    if (rest.empty() || (rest[0] != '{' && rest[0] != ' ')) continue;
    std::string_view label_text;
    std::string_view value_text = rest;
    if (rest[0] == '{') {
      const std::size_t close = rest.find('}');
      if (close == std::string_view::npos) continue;
      label_text = rest.substr(1, close - 1);
      value_text = rest.substr(close + 1);
    }
    bool all = true;
    for (const auto& l : labels) all = all && label_text.find(l) != std::string_view::npos;
    if (!all) continue;
    while (!value_text.empty() && value_text[0] == ' ') value_text.remove_prefix(1);
    sum = sum.value_or(0) + std::strtod(std::string(value_text).c_str(), nullptr);
  }
  return sum;
}

inline int fd_count(pid_t pid) {
  int n = 0;
  DIR* dir = ::opendir(("/proc/" + std::to_string(pid) + "/fd").c_str());
  if (dir == nullptr) return -1;
  while (const dirent* e = ::readdir(dir)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(dir);
  return n;
}

// Raises the soft RLIMIT_NOFILE of this process to `want` (at most the hard limit); returns the new soft limit.
inline rlim_t raise_fd_limit(rlim_t want) {
  rlimit rl{};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < want) {
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY ? want : std::min(want, rl.rlim_max);
    ::setrlimit(RLIMIT_NOFILE, &rl);
    ::getrlimit(RLIMIT_NOFILE, &rl);
  }
  return rl.rlim_cur;
}

inline std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::string(v) : fallback;
}

// A purchase of amount 1 (so a customer's revenue counts its distinct events).
inline std::string unit_purchase(const std::string& id, const std::string& customer) {
  return R"({"event_id":")" + id + R"(","customer_id":")" + customer +
         R"(","ts":1700000000000,"type":"purchase","amount":1,"channel":"web"})";
}

// ---------------------------------------------------------------------------
// rapportd as a child process

struct DaemonOptions {
  std::vector<std::string> args;      // extra command-line arguments (--config ...)
  std::function<void()> before_exec;  // runs in the child between fork and exec (rlimits)
};

// This process's environment with `extra` ("KEY=value") added, replacing variables of the same name.
inline std::vector<std::string> environment_with(const std::vector<std::string>& extra) {
  std::vector<std::string> out;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string_view kv(*e);
    const std::string_view key = kv.substr(0, kv.find('='));
    const bool replaced = std::any_of(extra.begin(), extra.end(), [&](const std::string& x) {
      return std::string_view(x).substr(0, x.find('=')) == key;
    });
    if (!replaced) out.emplace_back(kv);
  }
  out.insert(out.end(), extra.begin(), extra.end());
  return out;
}

class Rapportd {
 public:
  Rapportd(std::string state_dir, DaemonOptions options)
      : state_dir_(std::move(state_dir)), options_(std::move(options)) {
    start();
  }
  // With `env` ("KEY=value") added to (or replacing in) the daemon's environment.
  Rapportd(std::string state_dir, DaemonOptions options, std::vector<std::string> env)
      : state_dir_(std::move(state_dir)), options_(std::move(options)), env_(std::move(env)) {
    start();
  }
  ~Rapportd() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    join_log();
  }
  Rapportd(const Rapportd&) = delete;
  Rapportd& operator=(const Rapportd&) = delete;

  void set_options(DaemonOptions options) { options_ = std::move(options); }

  // Starts the daemon and waits until it reports its listeners (throws on failure).
  void start() {
    spawn();
    try {
      wait_listening();
    } catch (...) {
      stop(SIGKILL);  // never leave a half-started child (or a joinable log thread) behind
      throw;
    }
  }

  // Forks and execs rapportd without waiting for it to listen.
  void spawn() {
    int pipefd[2];
    if (::pipe2(pipefd, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
    std::vector<std::string> argv = {binary("rapportd"), "--http",      "127.0.0.1:0", "--tcp",
                                     "127.0.0.1:0",      "--state-dir", state_dir_};
    argv.insert(argv.end(), options_.args.begin(), options_.args.end());
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    std::vector<std::string> env = environment_with(env_);
    std::vector<char*> envp;
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(pipefd[1], 2);
      detach_stdout();
      ::close_range(3, ~0U, 0);  // no test sockets leak into the daemon
      if (options_.before_exec) options_.before_exec();
      ::execve(args[0], args.data(), envp.data());
      ::_exit(127);
    }
    ::close(pipefd[1]);
    {
      std::lock_guard lock(mutex_);
      log_.clear();
      log_closed_ = false;
    }
    const int fd = pipefd[0];
    log_thread_ = std::thread([this, fd] { drain_log(fd); });
  }

  // Waits until the spawned daemon reports its listeners (throws if it exits or takes too long).
  void wait_listening() {
    const auto deadline = Clock::now() + std::chrono::seconds(60);
    while (Clock::now() < deadline) {
      {
        std::lock_guard lock(mutex_);
        const auto pos = log_.find("listening http=");
        if (pos != std::string::npos && log_.find('\n', pos) != std::string::npos) {
          std::istringstream line(log_.substr(pos + 15, log_.find('\n', pos) - pos - 15));
          std::string http, tcp;
          line >> http >> tcp;
          http_port_ = std::stoi(http.substr(http.rfind(':') + 1));
          tcp_port_ = std::stoi(tcp.substr(tcp.rfind(':') + 1));
          return;
        }
      }
      if (!alive()) throw std::runtime_error("rapportd exited during start-up: " + log());
      std::this_thread::sleep_for(milliseconds(10));
    }
    throw std::runtime_error("rapportd did not report its listeners: " + log());
  }

  // Sends `sig` and waits for the exit; returns the exit code or -signal.
  int stop(int sig = SIGTERM, std::chrono::seconds timeout = std::chrono::seconds(60)) {
    if (pid_ <= 0) return exit_code_;
    ::kill(pid_, sig);
    const auto deadline = Clock::now() + timeout;
    int status = 0;
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (Clock::now() > deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        pid_ = -1;
        join_log();
        exit_code_ = -1000;  // hung
        return exit_code_;
      }
      std::this_thread::sleep_for(milliseconds(5));
    }
    pid_ = -1;
    join_log();
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
    return exit_code_;
  }

  void restart() {
    if (pid_ > 0) stop(SIGTERM);
    start();
  }
  void signal(int sig) {
    if (pid_ > 0) ::kill(pid_, sig);
  }

  // True while the process runs (reaps it if it has exited).
  bool alive() {
    if (pid_ <= 0) return false;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
      pid_ = -1;
      return false;
    }
    return true;
  }
  int exit_code() const { return exit_code_; }

  pid_t pid() const { return pid_; }
  int http_port() const { return http_port_; }
  int tcp_port() const { return tcp_port_; }
  std::string log() {
    std::lock_guard lock(mutex_);
    return log_;
  }
  // Waits until the log of the current run contains `needle`; false if the daemon's stderr closes
  // (it exited) or `timeout` passes first.
  bool wait_log(const std::string& needle, milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return log_changed_.wait_for(lock, timeout, [&] {
      return log_.find(needle) != std::string::npos || log_closed_;
    }) && log_.find(needle) != std::string::npos;
  }
  std::string log_tail(std::size_t bytes = 4000) {
    const std::string l = log();
    return l.size() <= bytes ? l : l.substr(l.size() - bytes);
  }

 private:
  void drain_log(int fd) {
    char buf[8192];
    for (;;) {
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      std::lock_guard lock(mutex_);
      log_.append(buf, static_cast<std::size_t>(n));
      if (log_.size() > (8u << 20)) log_.erase(0, log_.size() - (4u << 20));  // keep the newest
      log_changed_.notify_all();
    }
    ::close(fd);
    std::lock_guard lock(mutex_);
    log_closed_ = true;
    log_changed_.notify_all();
  }
  void join_log() {
    if (log_thread_.joinable()) log_thread_.join();
  }

  std::string state_dir_;
  DaemonOptions options_;
  std::vector<std::string> env_;
  pid_t pid_ = -1;
  int exit_code_ = 0;
  std::thread log_thread_;
  std::mutex mutex_;
  std::condition_variable log_changed_;
  std::string log_;          // guarded by mutex_
  bool log_closed_ = false;  // guarded by mutex_: the current run's stderr reached EOF
  int http_port_ = 0;
  int tcp_port_ = 0;
};

inline std::string metrics_text(int http_port) {
  const auto r = http(http_port, "GET", "/metrics");
  if (r.status != 200) throw std::runtime_error("GET /metrics: " + std::to_string(r.status));
  return r.body;
}

// ---------------------------------------------------------------------------
// Sockets

// A connected loopback socket (blocking) or -1.
inline int connect_loopback(int port, bool nonblocking = false) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 && errno != EINPROGRESS) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// A line-oriented TCP connection: send from one thread, read lines from another.
class LineSocket {
 public:
  explicit LineSocket(int port) : fd_(connect_loopback(port)) {
    if (fd_ < 0) throw std::runtime_error("connect to port " + std::to_string(port) + " failed");
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  ~LineSocket() {
    if (fd_ >= 0) ::close(fd_);
  }
  LineSocket(const LineSocket&) = delete;
  LineSocket& operator=(const LineSocket&) = delete;

  bool send(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }
  void shutdown_write() { ::shutdown(fd_, SHUT_WR); }
  // Unblocks a reader in another thread.
  void shutdown_both() { ::shutdown(fd_, SHUT_RDWR); }

  // The next line (without '\n'); nullopt on EOF, error or timeout (eof() tells which).
  std::optional<std::string> read_line(milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      const auto nl = buffer_.find('\n', scanned_);
      if (nl != std::string::npos) {
        std::string line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        scanned_ = 0;
        return line;
      }
      scanned_ = buffer_.size();
      const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
      if (left <= 0 || eof_) return std::nullopt;
      pollfd p{fd_, POLLIN, 0};
      const int r = ::poll(&p, 1, static_cast<int>(left));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return std::nullopt;
      char buf[65536];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        eof_ = true;
        return std::nullopt;
      }
      buffer_.append(buf, static_cast<std::size_t>(n));
    }
  }
  bool eof() const { return eof_; }
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
  std::string buffer_;
  std::size_t scanned_ = 0;
  bool eof_ = false;
};

// ---------------------------------------------------------------------------
// At-least-once TCP sending with ack tracking

// A growing list of unit purchases: event i is "<prefix>i" for customer "<prefix>c<i % customers>".
class EventBook {
 public:
  EventBook(std::string prefix, int customers) : prefix_(std::move(prefix)), customers_(customers) {}

  std::string customer(int c) const { return prefix_ + "c" + std::to_string(c); }
  int customer_of(std::size_t i) const { return static_cast<int>(i % static_cast<std::size_t>(customers_)); }
  int customers() const { return customers_; }
  std::string line(std::size_t i) const {
    return unit_purchase(prefix_ + std::to_string(i), customer(customer_of(i))) + "\n";
  }

  // Makes room for events [0, n).
  void ensure(std::size_t n) {
    std::lock_guard lock(mutex_);
    if (acked_.size() < n) acked_.resize(n, 0);
  }
  std::size_t size() const {
    std::lock_guard lock(mutex_);
    return acked_.size();
  }
  void mark_acked(std::size_t i) {
    std::lock_guard lock(mutex_);
    if (i < acked_.size()) acked_[i] = 1;
  }
  bool acked(std::size_t i) const {
    std::lock_guard lock(mutex_);
    return i < acked_.size() && acked_[i] != 0;
  }
  std::size_t acked_count() const {
    std::lock_guard lock(mutex_);
    return static_cast<std::size_t>(std::count(acked_.begin(), acked_.end(), 1));
  }
  std::vector<std::size_t> unacked() const {
    std::lock_guard lock(mutex_);
    std::vector<std::size_t> out;
    for (std::size_t i = 0; i < acked_.size(); ++i) {
      if (acked_[i] == 0) out.push_back(i);
    }
    return out;
  }
  // Per customer: events acknowledged, and events ever sent (the book's size).
  std::vector<int> acked_per_customer() const {
    std::lock_guard lock(mutex_);
    std::vector<int> out(static_cast<std::size_t>(customers_), 0);
    for (std::size_t i = 0; i < acked_.size(); ++i) out[static_cast<std::size_t>(customer_of(i))] += acked_[i];
    return out;
  }
  std::vector<int> sent_per_customer() const {
    std::lock_guard lock(mutex_);
    std::vector<int> out(static_cast<std::size_t>(customers_), 0);
    for (std::size_t i = 0; i < acked_.size(); ++i) ++out[static_cast<std::size_t>(customer_of(i))];
    return out;
  }

 private:
  std::string prefix_;
  int customers_;
  mutable std::mutex mutex_;
  std::vector<std::uint8_t> acked_;  // guarded by mutex_
};

// One TCP connection that sends events of an EventBook and marks them acked
// as {"ack":N} lines arrive, honouring refused ranges (those lines stay
// unacked, to be resent). A reader thread consumes the answers.
class AckingSession {
 public:
  AckingSession(int port, EventBook& book) : socket_(port), book_(book) {
    reader_ = std::thread([this] { read_loop(); });
  }
  ~AckingSession() { close(); }
  AckingSession(const AckingSession&) = delete;
  AckingSession& operator=(const AckingSession&) = delete;

  // Sends events (in order); false once the connection is broken.
  bool send(const std::vector<std::size_t>& events) {
    std::string chunk;
    {
      std::lock_guard lock(mutex_);
      for (std::size_t i : events) {
        line_event_.push_back(i);
        chunk += book_.line(i);
      }
    }
    return socket_.send(chunk);
  }
  // Sends raw text that is not an event (counts `lines` line numbers, none acked as events).
  bool send_raw(const std::string& text, std::size_t lines) {
    {
      std::lock_guard lock(mutex_);
      for (std::size_t k = 0; k < lines; ++k) line_event_.push_back(kNoEvent);
    }
    return socket_.send(text);
  }

  std::size_t lines_sent() const {
    std::lock_guard lock(mutex_);
    return line_event_.size();
  }
  std::size_t last_ack() const {
    std::lock_guard lock(mutex_);
    return last_ack_;
  }
  // Lines answered (acked or refused) so far.
  std::size_t answered() const {
    std::lock_guard lock(mutex_);
    return std::max(last_ack_, last_refused_);
  }
  std::vector<std::pair<std::size_t, std::size_t>> refused_ranges() const {
    std::lock_guard lock(mutex_);
    return refused_;
  }
  std::vector<std::size_t> refused_events() const {
    std::lock_guard lock(mutex_);
    std::vector<std::size_t> out;
    for (const auto& [a, b] : refused_) {
      for (std::size_t l = a; l <= b && l <= line_event_.size(); ++l) {
        if (line_event_[l - 1] != kNoEvent) out.push_back(line_event_[l - 1]);
      }
    }
    return out;
  }
  std::vector<std::string> refusal_messages() const {
    std::lock_guard lock(mutex_);
    return refusal_messages_;
  }
  std::vector<std::string> other_lines() const {
    std::lock_guard lock(mutex_);
    return other_;
  }
  bool closed_by_peer() const { return peer_closed_.load(); }

  // Waits until every line sent so far is answered (acked or refused); false on timeout or close.
  bool wait_answered(milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] {
      return std::max(last_ack_, last_refused_) >= line_event_.size() || peer_closed_.load();
    }) && std::max(last_ack_, last_refused_) >= line_event_.size();
  }
  // Waits until ack >= n (or a refusal covers up to n).
  bool wait_for_answer(std::size_t n, milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] {
      return std::max(last_ack_, last_refused_) >= n || peer_closed_.load();
    }) && std::max(last_ack_, last_refused_) >= n;
  }
  bool wait_refusal(milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return !refused_.empty() || peer_closed_.load(); }) &&
           !refused_.empty();
  }

  void close() {
    if (!reader_.joinable()) return;
    stop_ = true;
    socket_.shutdown_both();
    reader_.join();
  }

 private:
  static constexpr std::size_t kNoEvent = static_cast<std::size_t>(-1);

  static std::size_t field(const std::string& line, const char* key) {
    const auto pos = line.find(key);
    if (pos == std::string::npos) return 0;
    return std::stoul(line.substr(pos + std::strlen(key)));
  }

  void read_loop() {
    while (!stop_) {
      auto line = socket_.read_line(milliseconds(200));
      if (!line) {
        if (socket_.eof()) break;
        continue;
      }
      std::lock_guard lock(mutex_);
      if (line->rfind("{\"ack\":", 0) == 0) {
        const std::size_t n = std::stoul(line->substr(7));
        for (std::size_t l = last_ack_ + 1; l <= n && l <= line_event_.size(); ++l) {
          if (is_refused(l)) continue;
          if (line_event_[l - 1] != kNoEvent) book_.mark_acked(line_event_[l - 1]);
        }
        last_ack_ = std::max(last_ack_, n);
      } else if (line->find("\"from_line\"") != std::string::npos) {
        const std::size_t a = field(*line, "\"from_line\":");
        const std::size_t b = field(*line, "\"to_line\":");
        refused_.emplace_back(a, b);
        refusal_messages_.push_back(*line);
        last_refused_ = std::max(last_refused_, b);
      } else {
        other_.push_back(*line);
      }
      changed_.notify_all();
    }
    peer_closed_ = true;
    std::lock_guard lock(mutex_);
    changed_.notify_all();
  }

  bool is_refused(std::size_t l) const {
    for (const auto& [a, b] : refused_) {
      if (l >= a && l <= b) return true;
    }
    return false;
  }

  LineSocket socket_;
  EventBook& book_;
  std::thread reader_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> peer_closed_{false};
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::size_t> line_event_;  // line k (1-based) -> event index; guarded by mutex_
  std::size_t last_ack_ = 0;
  std::size_t last_refused_ = 0;
  std::vector<std::pair<std::size_t, std::size_t>> refused_;
  std::vector<std::string> refusal_messages_;
  std::vector<std::string> other_;
};

// Revenue and event count of every customer of `book`, from one batchGet (missing customers count 0).
struct CustomerTotals {
  std::vector<double> revenue;
  std::vector<double> events;
};
inline CustomerTotals customer_totals(int http_port, const EventBook& book) {
  CustomerTotals out;
  out.revenue.assign(static_cast<std::size_t>(book.customers()), 0);
  out.events.assign(static_cast<std::size_t>(book.customers()), 0);
  for (int first = 0; first < book.customers(); first += 1000) {
    const int last = std::min(book.customers(), first + 1000);
    std::string body = "{\"ids\":[";
    for (int c = first; c < last; ++c) body += (c > first ? ",\"" : "\"") + book.customer(c) + "\"";
    body += "]}";
    const auto r = http(http_port, "POST", "/v1/customers:batchGet", body);
    if (r.status != 200) throw std::runtime_error("batchGet: " + std::to_string(r.status) + " " + r.body);
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    if (parser.parse(r.body).get(doc) != simdjson::SUCCESS) throw std::runtime_error("batchGet: not JSON");
    simdjson::dom::array customers;
    if (doc["customers"].get_array().get(customers) != simdjson::SUCCESS) throw std::runtime_error("no customers");
    for (simdjson::dom::element c : customers) {
      std::string_view id;
      if (c["customer_id"].get_string().get(id) != simdjson::SUCCESS) continue;
      const std::string prefix = book.customer(0);
      const std::string stem = prefix.substr(0, prefix.size() - 1);  // "<prefix>c"
      if (id.substr(0, stem.size()) != stem) continue;
      const int k = std::stoi(std::string(id.substr(stem.size())));
      if (k < 0 || k >= book.customers()) continue;
      double revenue = 0;
      if (c.at_pointer("/value/revenue").get_double().get(revenue) != simdjson::SUCCESS) revenue = -1;
      std::int64_t events = 0;
      if (c["events"].get_int64().get(events) != simdjson::SUCCESS) {
        double d = 0;
        if (c["events"].get_double().get(d) != simdjson::SUCCESS) d = -1;
        events = static_cast<std::int64_t>(d);
      }
      out.revenue[static_cast<std::size_t>(k)] = revenue;
      out.events[static_cast<std::size_t>(k)] = static_cast<double>(events);
    }
  }
  return out;
}

// Every event id of a customer's timeline (paged through /v1/customers/{id}/events).
inline std::vector<std::string> timeline_ids(int http_port, const std::string& customer) {
  std::vector<std::string> ids;
  std::string cursor;
  for (int page = 0; page < 10000; ++page) {
    const auto r =
        http(http_port, "GET",
             "/v1/customers/" + customer + "/events?limit=1000" + (cursor.empty() ? "" : "&cursor=" + cursor));
    if (r.status == 404) return ids;
    if (r.status != 200) throw std::runtime_error("timeline: " + std::to_string(r.status) + " " + r.body);
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    if (parser.parse(r.body).get(doc) != simdjson::SUCCESS) throw std::runtime_error("timeline: not JSON");
    simdjson::dom::array events;
    if (doc["events"].get_array().get(events) != simdjson::SUCCESS) throw std::runtime_error("timeline: no events");
    for (simdjson::dom::element e : events) {
      std::string_view id;
      if (e["event_id"].get_string().get(id) == simdjson::SUCCESS) ids.emplace_back(id);
    }
    std::string_view next;
    if (doc["next_cursor"].get_string().get(next) != simdjson::SUCCESS) break;
    cursor = std::string(next);
  }
  return ids;
}

}  // namespace rapport::test::reliability
