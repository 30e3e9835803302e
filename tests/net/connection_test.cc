// The fronts' connection lifecycle: the TCP write deadline tracks progress
// (a slow but steady reader keeps its connection, one that stops reading is
// cut off), and --log-level debug names every connection opened and closed.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/log.h"
#include "ingest/net/server.h"
#include "tests/support/counting_stats.h"
#include "tests/support/loopback_client.h"

namespace rapport {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Stores nothing and accepts every event at once.
class ImmediateSink final : public IngestSink {
 public:
  bool try_submit(std::unique_ptr<Submission>& submission) override {
    SubmissionResult result;
    result.outcomes.assign(submission->events.size(), Outcome::kAccepted);
    auto done = std::move(submission->done);
    submission.reset();
    done(std::move(result));  // the front posts the answer to its own strand
    return true;
  }
  bool accepting() const override { return true; }
};

class NotFoundHandler final : public HttpHandler {
 public:
  RouteAccess access(std::string_view /*method*/, std::string_view /*raw_target*/) const override { return {}; }
  HttpRoute handle(HttpRequest&& /*request*/, HttpRespond respond) override {
    HttpResponse r;
    r.status = 404;
    r.body = R"({"error":"no such route"})";
    respond(std::move(r));
    return HttpRoute::kOther;
  }
};

int port_of(const std::string& endpoint) { return std::stoi(endpoint.substr(endpoint.rfind(':') + 1)); }

// A raw loopback connection whose reader paces itself.
int connect_to(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Sends everything unless the connection fails first.
void send_all(int fd, const std::string& data) {
  std::size_t sent = 0;
  while (sent < data.size()) {
    const ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return;
    sent += static_cast<std::size_t>(n);
  }
}

// `n` one-byte lines that are not JSON: each is answered with a rejection line
// about 50 times its size, so the answers outgrow every kernel buffer.
std::string bad_lines(int n) {
  std::string out;
  out.reserve(static_cast<std::size_t>(n) * 2);
  for (int i = 0; i < n; ++i) out += "x\n";
  return out;
}

class ConnectionTest : public ::testing::Test {
 protected:
  void start(std::chrono::milliseconds idle_timeout, std::shared_ptr<const TokenSet> tokens = nullptr) {
    ServerOptions o;
    o.http_address = "127.0.0.1:0";
    o.tcp_address = "127.0.0.1:0";
    o.io_threads = 2;
    o.limits.idle_timeout = idle_timeout;
    auto server = NetworkServer::start(o, handler_, sink_, stats_, std::move(tokens));
    ASSERT_TRUE(server.ok()) << server.message();
    server_ = std::move(server.value());
  }
  int tcp_port() const { return port_of(server_->tcp_endpoint()); }
  int http_port() const { return port_of(server_->http_endpoint()); }
  // Bounded wait until `n` connections of `t` are open.
  bool open_count_is(Transport t, double n) {
    for (int i = 0; i < 3000; ++i) {
      if (stats_.connections_open(t).Value() == n) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
  bool all_closed(Transport t) { return open_count_is(t, 0); }

  test::CountingStats stats_;
  ImmediateSink sink_;
  NotFoundHandler handler_;
  std::unique_ptr<NetworkServer> server_;  // last: stopped first
};

// The reader takes several idle timeouts to read the answers (the kernel
// buffers stay full, so single writes last longer than the timeout), but it
// never stops: the deadline runs from its last progress, not from the start
// of a write, and it receives every answer.
TEST_F(ConnectionTest, TcpSlowButSteadyReaderKeepsItsConnectionAndGetsEveryAnswer) {
  constexpr auto kIdle = 1000ms;
  constexpr int kLines = 100'000;
  start(kIdle);
  const int fd = connect_to(tcp_port());
  ASSERT_GE(fd, 0);
  const std::string input = bad_lines(kLines);
  std::thread writer([&] { send_all(fd, input); });

  const auto slow_until = Clock::now() + 3 * kIdle;  // slow for three idle timeouts, then as fast as it can
  const auto give_up = Clock::now() + 120s;
  std::string partial;
  int rejections = 0;
  int last_ack = 0;
  bool eof = false;
  std::vector<char> buf(8 * 1024);
  while (last_ack < kLines && !eof && Clock::now() < give_up) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 1000) <= 0) continue;
    const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
    if (n <= 0) {
      eof = true;
      break;
    }
    partial.append(buf.data(), static_cast<std::size_t>(n));
    std::size_t start = 0;
    for (std::size_t nl = partial.find('\n'); nl != std::string::npos; nl = partial.find('\n', start)) {
      const std::string_view line(partial.data() + start, nl - start);
      if (line.rfind("{\"line\":", 0) == 0) ++rejections;
      if (line.rfind("{\"ack\":", 0) == 0) last_ack = std::stoi(std::string(line.substr(7)));
      start = nl + 1;
    }
    partial.erase(0, start);
    if (Clock::now() < slow_until) std::this_thread::sleep_for(20ms);  // 8 KiB per 20 ms: slow, but steady
  }
  ::shutdown(fd, SHUT_RDWR);
  writer.join();
  ::close(fd);
  EXPECT_FALSE(eof) << "the server closed the connection of a client that was still reading";
  EXPECT_EQ(last_ack, kLines);
  EXPECT_EQ(rejections, kLines);
}

// A client that sends but never reads its answers is cut off: the deadline
// still closes a connection that makes no progress at all.
TEST_F(ConnectionTest, TcpClientThatStopsReadingIsCutOffAfterTheIdleTimeout) {
  start(300ms);
  const int fd = connect_to(tcp_port());
  ASSERT_GE(fd, 0);
  const std::string input = bad_lines(100'000);
  std::thread writer([&] { send_all(fd, input); });  // ends when everything is sent or the server closes
  EXPECT_TRUE(open_count_is(Transport::kTcp, 1)) << "the server never accepted the connection";
  EXPECT_TRUE(all_closed(Transport::kTcp)) << "the connection of a client that never reads stayed open";
  ::shutdown(fd, SHUT_RDWR);
  writer.join();
  ::close(fd);
}

// --log-level debug: one line when a connection opens and one when it closes,
// with the transport, the peer address, the duration and what was served.
// Never the token or the payload.
TEST_F(ConnectionTest, DebugLogNamesEveryConnectionOpenedAndClosedWithoutTokensOrPayloads) {
  const std::string token = "debug-log-token-6c1f0b";
  auto tokens = std::make_shared<const TokenSet>(std::vector<TokenGrant>{
      {token, static_cast<std::uint8_t>(static_cast<unsigned>(Scope::kIngest) | static_cast<unsigned>(Scope::kRead))}});
  set_log_level(LogLevel::kDebug);
  ::testing::internal::CaptureStderr();
  start(10s, tokens);
  {
    test::LoopbackClient c(tcp_port());
    ASSERT_TRUE(c.send("{\"auth\":\"" + token + "\"}\n"));
    ASSERT_TRUE(c.send(R"({"event_id":"payload-e1","customer_id":"payload-c1","ts":1700000000000,"type":"engagement"})"
                       "\n\n"));
    EXPECT_FALSE(c.read_until_ack(2).empty());
    c.shutdown_write();
    EXPECT_TRUE(c.closed_by_peer());
  }
  {
    test::LoopbackClient c(http_port());
    const std::string get = "GET /v1/payload-path HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token + "\r\n\r\n";
    ASSERT_TRUE(c.send(get + get.substr(0, get.size() - 2) + "Connection: close\r\n\r\n"));
    EXPECT_TRUE(c.read_response().has_value());
    EXPECT_TRUE(c.read_response().has_value());
    EXPECT_TRUE(c.closed_by_peer());
  }
  const bool closed = all_closed(Transport::kTcp) && all_closed(Transport::kHttp);
  server_->shutdown(1s);
  const std::string log = ::testing::internal::GetCapturedStderr();
  set_log_level(LogLevel::kInfo);
  ASSERT_TRUE(closed);

  EXPECT_NE(log.find("debug: tcp connection 1 opened from 127.0.0.1:"), std::string::npos) << log;
  EXPECT_NE(log.find("debug: http connection 2 opened from 127.0.0.1:"), std::string::npos) << log;
  // The TCP connection served two lines (the auth line is not numbered), the HTTP one two requests.
  const auto tcp_closed = log.find("debug: tcp connection 1 from 127.0.0.1:");
  ASSERT_NE(tcp_closed, std::string::npos) << log;
  const std::string tcp_line = log.substr(tcp_closed, log.find('\n', tcp_closed) - tcp_closed);
  EXPECT_NE(tcp_line.find(" closed after "), std::string::npos) << tcp_line;
  EXPECT_NE(tcp_line.find(" ms, 2 lines"), std::string::npos) << tcp_line;
  const auto http_closed = log.find("debug: http connection 2 from 127.0.0.1:");
  ASSERT_NE(http_closed, std::string::npos) << log;
  const std::string http_line = log.substr(http_closed, log.find('\n', http_closed) - http_closed);
  EXPECT_NE(http_line.find(" ms, 2 requests"), std::string::npos) << http_line;
  EXPECT_EQ(log.find(token), std::string::npos) << log;
  EXPECT_EQ(log.find("payload-"), std::string::npos) << log;
}

// At the default level the connection lines are not written.
TEST_F(ConnectionTest, InfoLevelDoesNotLogConnections) {
  set_log_level(LogLevel::kInfo);
  ::testing::internal::CaptureStderr();
  start(10s);
  {
    test::LoopbackClient c(tcp_port());
    ASSERT_TRUE(c.send("\n"));
    EXPECT_FALSE(c.read_until_ack(1).empty());
  }
  const bool closed = all_closed(Transport::kTcp);
  server_->shutdown(1s);
  const std::string log = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(closed);
  EXPECT_EQ(log.find("connection 1"), std::string::npos) << log;
}

}  // namespace
}  // namespace rapport
