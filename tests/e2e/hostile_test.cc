// Slow and hostile clients (DESIGN §8: "slow or idle clients cannot hold
// resources"): 1,000 slowloris and 1,000 idle connections do not keep a
// normal client from ingesting and querying within a few seconds, and the
// daemon closes them after read_timeout / idle_timeout; header (431), body
// (413) and line limits hold against oversized and never-ending input; the
// connection cap refuses extra connections cleanly (closed, counted in
// rapport_connections_refused_total) and service resumes when they go;
// half-closed and reset connections free their resources
// (rapport_connections_open and the process's fd count return to baseline).
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <mutex>
#include <random>

#include "tests/e2e/reliability.h"
#include "tests/support/peer_read.h"

namespace rapport::test::reliability {
namespace {

constexpr auto kReadTimeout = milliseconds(2000 * kTimeScale);
constexpr auto kIdleTimeout = milliseconds(4000 * kTimeScale);
// How long after a timeout the test waits for the server to have closed a connection.
constexpr auto kCloseSlack = milliseconds(3000 * kTimeScale);

// A raw client connection watched with poll.
struct Conn {
  int fd = -1;
  bool http = false;
  bool slow = false;    // slowloris: one byte every second
  std::string payload;  // what a slow connection dribbles out (never complete)
  std::size_t sent = 0;
  Clock::time_point first_byte{};
  Clock::time_point closed_at{};  // when the server closed it (zero = still open)
};

double open_connections(int http_port) {
  const std::string m = metrics_text(http_port);
  return metric(m, "rapport_connections_open", {"transport=\"tcp\""}).value_or(0) +
         metric(m, "rapport_connections_open", {"transport=\"http\""}).value_or(0);
}

// Polls until pred() or timeout; returns pred().
template <typename Pred>
bool eventually(Pred pred, milliseconds timeout, milliseconds step = milliseconds(100)) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(step);
  }
  return pred();
}

// A normal client's round trip: TCP ingest with ack, HTTP ingest, a query. Returns the slowest step.
milliseconds normal_client(const Rapportd& daemon, const std::string& tag, std::string& failure) {
  milliseconds slowest{0};
  auto time = [&](auto&& f) {
    const auto start = Clock::now();
    f();
    slowest = std::max(slowest, std::chrono::duration_cast<milliseconds>(Clock::now() - start));
  };
  time([&] {
    LineSocket s(daemon.tcp_port());
    std::string lines;
    for (int i = 0; i < 100; ++i) lines += unit_purchase(tag + "-t" + std::to_string(i), "normal-" + tag) + "\n";
    s.send(lines);
    std::optional<std::string> line;
    while ((line = s.read_line(std::chrono::seconds(10))) && *line != "{\"ack\":100}") {
    }
    if (!line) failure += "TCP ingest got no ack; ";
  });
  time([&] {
    const auto r = http(daemon.http_port(), "POST", "/v1/events", unit_purchase(tag + "-h", "normal-" + tag));
    if (r.status != 200) failure += "HTTP ingest " + std::to_string(r.status) + "; ";
  });
  time([&] {
    const auto r = http(daemon.http_port(), "GET", "/v1/customers/normal-" + tag);
    if (r.status != 200 || json_number(r.body, "/events").value_or(0) != 101) failure += "query: " + r.body + "; ";
  });
  return slowest;
}

class Hostile : public ::testing::Test {
 protected:
  void start(const std::string& ingest_config) {
    const std::string config = dir_.file("rapport.toml");
    write_file(config, "[ingest]\n" + ingest_config + "\n");
    daemon_ = std::make_unique<Rapportd>(dir_.file("state"), DaemonOptions{{"--config", config}, nullptr});
  }
  TempDir dir_;
  std::unique_ptr<Rapportd> daemon_;
};

TEST_F(Hostile, SlowlorisAndIdleConnectionsDoNotStarveNormalClients) {
  // 500 x {tcp, http} x {slow, idle} = 2,000 connections, fewer only if the hard fd limit forbids.
  const rlim_t fds = raise_fd_limit(8192);
  const int per_kind = static_cast<int>(std::min<rlim_t>(500, (fds - 200) / 4));
  if (per_kind < 500) {
    std::printf("[ hostile ] ulimit -n %ju: %d connections per kind\n", std::uintmax_t{fds}, per_kind);
  }
  ASSERT_GE(per_kind, 100) << "ulimit -n (hard) is too low for this test: " << fds;
  start("read_timeout_ms = " + std::to_string(kReadTimeout.count()) +
        "\nidle_timeout_ms = " + std::to_string(kIdleTimeout.count()));
  const int baseline_fds = fd_count(daemon_->pid());
  const double baseline_open = open_connections(daemon_->http_port());

  std::vector<Conn> conns;
  const std::string tcp_dribble = unit_purchase("never-finished", "slowloris");
  const std::string http_dribble = "POST /v1/events HTTP/1.1\r\nHost: x\r\nX-Slow: " + std::string(4000, 'a');
  for (int kind = 0; kind < 4; ++kind) {
    for (int i = 0; i < per_kind; ++i) {
      Conn c;
      c.http = kind % 2 == 1;
      c.slow = kind >= 2;
      c.payload = c.http ? http_dribble : tcp_dribble;
      c.fd = connect_loopback(c.http ? daemon_->http_port() : daemon_->tcp_port());
      ASSERT_GE(c.fd, 0) << "connection " << conns.size() << ": " << std::strerror(errno);
      ::fcntl(c.fd, F_SETFL, ::fcntl(c.fd, F_GETFL) | O_NONBLOCK);
      conns.push_back(std::move(c));
    }
  }
  const auto opened = Clock::now();

  // The server really holds them all at once (before any times out)...
  double peak = 0;
  EXPECT_TRUE(eventually([&] { return (peak = open_connections(daemon_->http_port())) >= 4 * per_kind; },
                         milliseconds(3000 * kTimeScale), milliseconds(50)))
      << "only " << peak << " connections open";

  // One thread drives all of them: a byte per second to each slow one, and notices server closes.
  std::atomic<bool> stop{false};
  std::mutex closed_mutex;  // guards Conn::closed_at while the driver runs (it writes, the test reads)
  const auto dribbling = Clock::now();
  std::thread driver([&] {
    std::vector<pollfd> polls(conns.size());
    auto next_tick = Clock::now();
    while (!stop) {
      const auto now = Clock::now();
      if (now >= next_tick) {
        for (Conn& c : conns) {
          if (!c.slow || c.closed_at != Clock::time_point{} || c.sent >= c.payload.size()) continue;
          if (::send(c.fd, c.payload.data() + c.sent, 1, MSG_NOSIGNAL) == 1) {
            if (c.sent++ == 0) c.first_byte = now;
          }
        }
        next_tick = now + milliseconds(1000);
      }
      for (std::size_t i = 0; i < conns.size(); ++i) {
        polls[i] = {conns[i].closed_at == Clock::time_point{} ? conns[i].fd : -1, POLLIN, 0};
      }
      if (::poll(polls.data(), polls.size(), 50) <= 0) continue;
      for (std::size_t i = 0; i < conns.size(); ++i) {
        if (polls[i].revents == 0) continue;
        char buf[4096];
        const ssize_t n = ::recv(conns[i].fd, buf, sizeof buf, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
          std::lock_guard lock(closed_mutex);
          conns[i].closed_at = Clock::now();
        }
      }
    }
  });
  JoinOnExit join_driver(stop, {&driver});

  // ...and a normal client still gets through quickly, twice while they are there.
  for (const std::string tag : {"a", "b"}) {
    std::string failure;
    const milliseconds slowest = normal_client(*daemon_, tag, failure);
    EXPECT_TRUE(failure.empty()) << failure;
    EXPECT_LT(slowest.count(), 3000 * kTimeScale) << "a normal client waited " << slowest.count() << " ms";
  }

  // The server closes the slow ones after read_timeout and the idle ones after idle_timeout.
  auto closed = [&](bool slow) {
    std::lock_guard lock(closed_mutex);
    return std::count_if(conns.begin(), conns.end(),
                         [&](const Conn& c) { return c.slow == slow && c.closed_at != Clock::time_point{}; });
  };
  std::this_thread::sleep_until(dribbling + kReadTimeout + kCloseSlack);
  EXPECT_EQ(closed(true), 2 * per_kind) << "slowloris connections still open "
                                        << kReadTimeout.count() + kCloseSlack.count() << " ms after they started";
  std::this_thread::sleep_until(opened + kIdleTimeout + kCloseSlack);
  EXPECT_EQ(closed(false), 2 * per_kind) << "idle connections still open " << (kIdleTimeout + kCloseSlack).count()
                                         << " ms after they opened";
  stop = true;
  driver.join();
  milliseconds latest_slow{0};
  for (const Conn& c : conns) {
    if (c.slow && c.closed_at != Clock::time_point{} && c.first_byte != Clock::time_point{}) {
      latest_slow = std::max(latest_slow, std::chrono::duration_cast<milliseconds>(c.closed_at - c.first_byte));
    }
    ::close(c.fd);
  }
  std::printf("[ hostile ] peak %.0f connections; slowloris closed at most %lld ms after their first byte\n", peak,
              static_cast<long long>(latest_slow.count()));

  // Everything they held is released.
  EXPECT_TRUE(eventually([&] { return open_connections(daemon_->http_port()) <= baseline_open; }, milliseconds(5000)))
      << open_connections(daemon_->http_port()) << " connections open, baseline " << baseline_open;
  EXPECT_TRUE(eventually([&] { return fd_count(daemon_->pid()) <= baseline_fds + 4; }, milliseconds(5000)))
      << fd_count(daemon_->pid()) << " fds open, baseline " << baseline_fds;
  std::string failure;
  normal_client(*daemon_, "c", failure);
  EXPECT_TRUE(failure.empty()) << failure;
  EXPECT_TRUE(daemon_->alive());
}

// Reads one HTTP response from a raw socket (status only; nullopt if closed first).
std::optional<int> response_status(int fd, milliseconds timeout) {
  std::string got;
  const auto deadline = Clock::now() + timeout;
  while (got.find("\r\n") == std::string::npos) {
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return std::nullopt;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) return std::nullopt;
    char buf[4096];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return std::nullopt;
    got.append(buf, static_cast<std::size_t>(n));
  }
  if (got.rfind("HTTP/1.1 ", 0) != 0 || got.size() < 12) return std::nullopt;
  return std::stoi(got.substr(9, 3));
}

TEST_F(Hostile, ConnectionCapRefusesExtraConnectionsCleanlyAndServiceResumes) {
  start("max_connections = 50\nidle_timeout_ms = 60000");
  const int http_port = daemon_->http_port();
  const std::string before = metrics_text(http_port);
  const double refused_tcp_before =
      metric(before, "rapport_connections_refused_total", {"transport=\"tcp\""}).value_or(0);

  // TCP: 50 held, 20 more are closed at once without an answer.
  std::vector<int> held;
  for (int i = 0; i < 50; ++i) held.push_back(connect_loopback(daemon_->tcp_port()));
  ASSERT_TRUE(eventually(
      [&] {
        return metric(metrics_text(http_port), "rapport_connections_open", {"transport=\"tcp\""}).value_or(-1) == 50;
      },
      milliseconds(5000)));
  int closed_extra = 0;
  for (int i = 0; i < 20; ++i) {
    LineSocket extra(daemon_->tcp_port());
    extra.send(unit_purchase("over-cap-" + std::to_string(i), "cap") + "\n");
    const auto answer = extra.read_line(milliseconds(3000));
    EXPECT_FALSE(answer.has_value()) << "a connection over the cap was served: " << *answer;
    closed_extra += extra.eof() ? 1 : 0;
  }
  EXPECT_EQ(closed_extra, 20) << "connections over the cap were left hanging instead of closed";
  const std::string during = metrics_text(http_port);
  EXPECT_GE(metric(during, "rapport_connections_refused_total", {"transport=\"tcp\""}).value_or(0) - refused_tcp_before,
            20);
  EXPECT_EQ(metric(during, "rapport_connections_open", {"transport=\"tcp\""}).value_or(-1), 50);
  EXPECT_EQ(http(http_port, "GET", "/v1/customers/cap").status, 404) << "a refused connection's event was stored";

  // They go; service resumes.
  for (int fd : held) ::close(fd);
  held.clear();
  EXPECT_TRUE(eventually(
      [&] {
        return metric(metrics_text(http_port), "rapport_connections_open", {"transport=\"tcp\""}).value_or(-1) == 0;
      },
      milliseconds(5000)));
  {
    LineSocket normal(daemon_->tcp_port());
    normal.send(unit_purchase("after-cap", "cap") + "\n");
    EXPECT_EQ(normal.read_line(milliseconds(10000)).value_or("closed"), "{\"ack\":1}");
  }

  // HTTP: the same with the cap on the HTTP front. Each held connection completes one keep-alive
  // request first, which proves the daemon accepted it (and counts it) before the extras arrive.
  for (int i = 0; i < 50; ++i) {
    const int fd = connect_loopback(http_port);
    held.push_back(fd);
    const std::string request = "GET /healthz HTTP/1.1\r\nHost: rapport\r\n\r\n";
    ASSERT_EQ(::send(fd, request.data(), request.size(), MSG_NOSIGNAL), static_cast<ssize_t>(request.size()));
    ASSERT_EQ(response_status(fd, milliseconds(10000)).value_or(-1), 200) << "held connection " << i;
  }
  int refused_http = 0;
  for (int i = 0; i < 5; ++i) {
    try {
      const auto r = http(http_port, "GET", "/healthz");
      ADD_FAILURE() << "an HTTP connection over the cap was served: " << r.status;
    } catch (const std::exception&) {
      ++refused_http;
    }
  }
  EXPECT_EQ(refused_http, 5);
  for (int fd : held) ::close(fd);
  held.clear();
  EXPECT_TRUE(eventually(
      [&] {
        try {
          return http(http_port, "GET", "/healthz").status == 200;
        } catch (const std::exception&) {
          return false;
        }
      },
      milliseconds(5000)));
  const std::string after = metrics_text(http_port);
  EXPECT_GE(metric(after, "rapport_connections_refused_total", {"transport=\"http\""}).value_or(0), 5);
  EXPECT_EQ(json_number(http(http_port, "GET", "/v1/customers/cap").body, "/events").value_or(-1), 1);
}

TEST_F(Hostile, HeaderBodyAndLineLimitsHoldAgainstOversizedInput) {
  start("max_header_bytes = 4096\nmax_body_bytes = 65536\nmax_line_bytes = 1024");
  const int port = daemon_->http_port();

  // 431: one huge header, or many small ones adding up.
  EXPECT_EQ(http(port, "GET", "/healthz", "", "", {"X-Big: " + std::string(5000, 'x')}).status, 431);
  std::vector<std::string> many;
  for (int i = 0; i < 250; ++i) many.push_back("X-H" + std::to_string(i) + ": " + std::string(40, 'v'));
  EXPECT_EQ(http(port, "GET", "/healthz", "", "", many).status, 431);  // 12 KB of headers, 3x the limit

  // 413: a declared 1 GB body is refused from its headers, before any body byte is sent.
  {
    const int fd = connect_loopback(port);
    const std::string head =
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: "
        "1000000000\r\n\r\n";
    ASSERT_EQ(::send(fd, head.data(), head.size(), MSG_NOSIGNAL), static_cast<ssize_t>(head.size()));
    EXPECT_EQ(response_status(fd, milliseconds(5000)).value_or(-1), 413);
    ::close(fd);
  }
  // 413: a chunked body that never ends is cut off at the limit.
  {
    const int fd = connect_loopback(port);
    std::string head =
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
        "Transfer-Encoding: chunked\r\n\r\n";
    ::send(fd, head.data(), head.size(), MSG_NOSIGNAL);
    const std::string chunk = "2000\r\n" + std::string(0x2000, ' ') + "\r\n";
    for (int i = 0; i < 64; ++i) {
      if (::send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL) <= 0) break;
    }
    EXPECT_EQ(response_status(fd, milliseconds(5000)).value_or(-1), 413);
    ::close(fd);
  }
  // The limit is exact: max_body_bytes is accepted, one byte more is not.
  std::string body = unit_purchase("limit-body", "limits") + "\n";
  body += std::string(65536 - body.size() - 1, ' ') + "\n";
  ASSERT_EQ(body.size(), 65536u);
  const auto at_limit = http(port, "POST", "/v1/events", body, "application/x-ndjson");
  EXPECT_EQ(at_limit.status, 200) << at_limit.body;
  EXPECT_EQ(http(port, "POST", "/v1/events", body + " ", "application/x-ndjson").status, 413);

  // TCP: a 32 MiB line without a newline is rejected as soon as it is too long and skipped without being
  // buffered; the lines around it are ingested; lines of exactly max_line_bytes are fine.
  const double rss_before = metric(metrics_text(port), "process_resident_memory_bytes").value_or(0);
  LineSocket s(daemon_->tcp_port());
  std::string exact = unit_purchase("limit-exact", "limits");
  exact.insert(exact.size() - 1, ",\"pad\":\"" + std::string(1024 - exact.size() - 9, 'p') + "\"");
  ASSERT_EQ(exact.size(), 1024u);
  std::string over = exact;
  over.insert(over.size() - 2, "q");
  ASSERT_TRUE(s.send(unit_purchase("limit-1", "limits") + "\n"));
  const std::string block(1 << 20, 'z');
  for (int i = 0; i < 32; ++i) ASSERT_TRUE(s.send(block)) << "the daemon stopped reading a long line";
  ASSERT_TRUE(s.send("\n" + unit_purchase("limit-2", "limits") + "\n" + exact + "\n" + over + "\n"));
  std::vector<std::string> answers;
  while (auto line = s.read_line(milliseconds(20000))) {
    answers.push_back(*line);
    if (*line == "{\"ack\":5}") break;
  }
  ASSERT_FALSE(answers.empty());
  EXPECT_EQ(answers.back(), "{\"ack\":5}");
  int too_large = 0;
  for (const auto& a : answers) {
    if (a.find("\"error\"") == std::string::npos) continue;
    EXPECT_TRUE(a.rfind("{\"line\":2,", 0) == 0 || a.rfind("{\"line\":5,", 0) == 0) << a;
    EXPECT_NE(a.find("\"reason\":\"too_large\""), std::string::npos) << a;
    ++too_large;
  }
  EXPECT_EQ(too_large, 2);
  EXPECT_EQ(json_number(http(port, "GET", "/v1/customers/limits").body, "/events").value_or(-1), 4);
  const double rss_after = metric(metrics_text(port), "process_resident_memory_bytes").value_or(0);
  EXPECT_LT(rss_after - rss_before, 24.0 * (1 << 20)) << "the over-long line seems to have been buffered";
  EXPECT_EQ(http(port, "GET", "/healthz").status, 200);
}

// max_header_bytes bounds the whole header block, however the client's bytes are split into segments: here the
// first bytes arrive and are read alone, then the rest (7.9 KB of small fields against a 4 KiB limit).
TEST_F(Hostile, HeaderLimitHoldsWhateverTheSegmentation) {
  start("max_header_bytes = 4096");
  std::string request = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n";
  for (int i = 0; i < 160; ++i) request += "X-H" + std::to_string(i) + ": " + std::string(40, 'v') + "\r\n";
  request += "\r\n";
  ASSERT_GT(request.size(), 7900u);
  for (const std::size_t first : {std::size_t{0}, std::size_t{1}, std::size_t{2000}, std::size_t{4096}}) {
    const int fd = connect_loopback(daemon_->http_port());
    ASSERT_GE(fd, 0);
    if (first > 0) {
      ASSERT_EQ(::send(fd, request.data(), first, MSG_NOSIGNAL), static_cast<ssize_t>(first));
      ASSERT_TRUE(wait_until_peer_read(fd)) << "the daemon did not read the first " << first << " bytes";
    }
    ::send(fd, request.data() + first, request.size() - first, MSG_NOSIGNAL);
    EXPECT_EQ(response_status(fd, milliseconds(5000)).value_or(-1), 431)
        << request.size() << " bytes of header accepted with max_header_bytes = 4096, sent "
        << (first == 0 ? std::string("in one piece")
                       : "as " + std::to_string(first) + " bytes, read by the daemon, then the rest");
    ::close(fd);
  }
}

// SO_LINGER 0: close() sends a reset instead of a FIN.
void reset_close(int fd) {
  const linger l{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  ::close(fd);
}

TEST_F(Hostile, HalfClosedAndResetConnectionsFreeTheirResources) {
  constexpr int kEach = 100;
  raise_fd_limit(4096);
  start("read_timeout_ms = 5000\nidle_timeout_ms = 30000");
  const int port = daemon_->http_port();
  const double baseline_open = open_connections(port);
  const int baseline_fds = fd_count(daemon_->pid());
  std::vector<int> half_closed;

  // TCP, half-closed after an unterminated last line: it is still ingested and acked, then the server closes.
  for (int i = 0; i < kEach; ++i) {
    const int fd = connect_loopback(daemon_->tcp_port());
    const std::string line = unit_purchase("half-" + std::to_string(i), "half-closed");
    ::send(fd, line.data(), line.size(), MSG_NOSIGNAL);
    ::shutdown(fd, SHUT_WR);
    half_closed.push_back(fd);
  }
  // TCP, reset mid-line, and reset right after a burst of lines whose acks nobody reads.
  std::string burst;
  for (int k = 0; k < 1000; ++k) burst += unit_purchase("burst-" + std::to_string(k), "reset-burst") + "\n";
  for (int i = 0; i < kEach; ++i) {
    int fd = connect_loopback(daemon_->tcp_port());
    ::send(fd, "{\"event_id\":\"x", 14, MSG_NOSIGNAL);
    reset_close(fd);
    fd = connect_loopback(daemon_->tcp_port());
    ::send(fd, burst.data(), burst.size(), MSG_NOSIGNAL);
    reset_close(fd);
  }
  // HTTP, half-closed after a complete request: answered, then closed.
  const std::string get = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
  const std::string post_body = unit_purchase("http-reset", "reset-http");
  const std::string post = "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
                           std::to_string(post_body.size()) + "\r\n\r\n" + post_body;
  std::vector<int> http_half;
  for (int i = 0; i < kEach; ++i) {
    const int fd = connect_loopback(port);
    ::send(fd, get.data(), get.size(), MSG_NOSIGNAL);
    ::shutdown(fd, SHUT_WR);
    http_half.push_back(fd);
  }
  // HTTP, reset mid-headers, and reset before reading the answer to an ingest.
  for (int i = 0; i < kEach; ++i) {
    int fd = connect_loopback(port);
    ::send(fd, "GET /heal", 9, MSG_NOSIGNAL);
    reset_close(fd);
    fd = connect_loopback(port);
    ::send(fd, post.data(), post.size(), MSG_NOSIGNAL);
    reset_close(fd);
  }

  // The half-closed ones got their answers and the server's FIN.
  int tcp_answered = 0;
  for (int fd : half_closed) {
    std::string got;
    const auto deadline = Clock::now() + milliseconds(10000);
    for (;;) {
      pollfd p{fd, POLLIN, 0};
      const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
      if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) break;
      char buf[512];
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      got.append(buf, static_cast<std::size_t>(n));
    }
    tcp_answered += got == "{\"ack\":1}\n" ? 1 : 0;
    ::close(fd);
  }
  EXPECT_EQ(tcp_answered, kEach) << "half-closed TCP connections did not get their ack";
  int http_answered = 0;
  for (int fd : http_half) {
    http_answered += response_status(fd, milliseconds(10000)).value_or(-1) == 200 ? 1 : 0;
    ::close(fd);
  }
  EXPECT_EQ(http_answered, kEach) << "half-closed HTTP connections did not get their answer";
  EXPECT_EQ(json_number(http(port, "GET", "/v1/customers/half-closed").body, "/events").value_or(-1), kEach);

  // Nothing is left behind on the server.
  EXPECT_TRUE(eventually([&] { return open_connections(port) <= baseline_open; }, milliseconds(10000)))
      << open_connections(port) << " connections open, baseline " << baseline_open;
  EXPECT_TRUE(eventually([&] { return fd_count(daemon_->pid()) <= baseline_fds + 4; }, milliseconds(10000)))
      << fd_count(daemon_->pid()) << " fds open, baseline " << baseline_fds;
  EXPECT_EQ(http(port, "GET", "/healthz").status, 200);
  EXPECT_TRUE(daemon_->alive());
}

}  // namespace
}  // namespace rapport::test::reliability
