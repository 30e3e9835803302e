// NetworkServer tests: the real TCP and HTTP fronts on loopback port 0, with a
// fake IngestSink (commits on its own thread; can be made full, failing or
// held) and a fake HttpHandler. Clients are plain blocking POSIX sockets.
#include "ingest/net/server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/counting_stats.h"
#include "tests/support/loopback_client.h"
#include "tests/support/peer_read.h"

namespace rapport {
namespace {

using namespace std::chrono_literals;

std::string event(const std::string& id, const std::string& customer = "c", const std::string& type = "engagement") {
  return R"({"event_id":")" + id + R"(","customer_id":")" + customer + R"(","ts":1700000000000,"type":")" + type +
         "\"}";
}

// ---------------------------------------------------------------------------
// Fakes

// Commits on its own thread: an event is a duplicate if its (customer, id) was seen before.
class FakeSink final : public IngestSink {
 public:
  FakeSink() : worker_([this] { run(); }) {}
  ~FakeSink() override {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    changed_.notify_all();
    worker_.join();
  }

  bool try_submit(std::unique_ptr<Submission>& submission) override {
    std::lock_guard lock(mutex_);
    if (full_) {
      ++refusals_;
      changed_.notify_all();
      return false;
    }
    queue_.push_back(std::move(submission));
    ++submitted_;
    changed_.notify_all();
    return true;
  }
  bool accepting() const override { return accepting_.load(); }

  void set_full(bool full) {
    std::lock_guard lock(mutex_);
    full_ = full;
  }
  void set_failure(std::string message) {
    std::lock_guard lock(mutex_);
    failure_ = std::move(message);
  }
  // Held: submissions queue up; released: completed, in reverse order when `reverse`.
  void hold(bool held, bool reverse = false) {
    {
      std::lock_guard lock(mutex_);
      held_ = held;
      reverse_ = reverse;
    }
    changed_.notify_all();
  }
  void set_accepting(bool accepting) { accepting_ = accepting; }

  bool wait_submitted(std::size_t n, std::chrono::milliseconds timeout = 10s) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return submitted_ >= n; });
  }
  bool wait_refusals(std::size_t n, std::chrono::milliseconds timeout = 10s) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return refusals_ >= n; });
  }
  std::size_t submitted() {
    std::lock_guard lock(mutex_);
    return submitted_;
  }
  std::vector<std::string> event_ids() {
    std::lock_guard lock(mutex_);
    return event_ids_;
  }
  std::vector<std::uint32_t> event_indexes() {
    std::lock_guard lock(mutex_);
    return event_indexes_;
  }
  std::vector<Rejection> rejections() {
    std::lock_guard lock(mutex_);
    return rejections_;
  }

 private:
  void run() {
    std::unique_lock lock(mutex_);
    for (;;) {
      changed_.wait(lock, [&] { return stop_ || (!held_ && !queue_.empty()); });
      if (stop_) return;
      std::deque<std::unique_ptr<Submission>> batch;
      batch.swap(queue_);
      if (reverse_) std::reverse(batch.begin(), batch.end());
      for (auto& s : batch) {
        SubmissionResult result;
        if (!failure_.empty()) {
          result.status = Status::Error(failure_);
        } else {
          for (const Event& e : s->events) {
            const std::string key = std::string(e.customer_id.view()) + "/" + std::string(e.event_id.view());
            const bool fresh = seen_.insert(key).second;
            result.outcomes.push_back(fresh ? Outcome::kAccepted : Outcome::kDuplicate);
            event_ids_.emplace_back(e.event_id.view());
          }
          event_indexes_.insert(event_indexes_.end(), s->event_index.begin(), s->event_index.end());
          rejections_.insert(rejections_.end(), s->rejections.begin(), s->rejections.end());
        }
        auto done = std::move(s->done);
        s.reset();
        lock.unlock();
        done(std::move(result));
        lock.lock();
      }
    }
  }

  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<std::unique_ptr<Submission>> queue_;
  bool stop_ = false, full_ = false, held_ = false, reverse_ = false;
  std::string failure_;
  std::size_t submitted_ = 0, refusals_ = 0;
  std::set<std::string> seen_;
  std::vector<std::string> event_ids_;
  std::vector<std::uint32_t> event_indexes_;
  std::vector<Rejection> rejections_;
  std::atomic<bool> accepting_{true};
  std::thread worker_;  // last: starts after every member above exists
};

// Echoes the request as JSON; "/async" answers from another thread; "/drop" never answers.
class FakeHandler final : public HttpHandler {
 public:
  ~FakeHandler() override {
    for (auto& t : threads_) t.join();
  }
  // "/read..." needs the read scope, "/admin..." the admin scope, "/malformed" is refused with 400; the rest
  // needs no token. Counts the calls.
  RouteAccess access(std::string_view /*method*/, std::string_view raw_target) const override {
    ++access_calls_;
    RouteAccess a;
    if (raw_target.substr(0, 5) == "/read") a.scope = Scope::kRead;
    if (raw_target.substr(0, 6) == "/admin") a.scope = Scope::kAdmin;
    if (raw_target == "/malformed") {
      a.status = 400;
      a.error = "malformed";
    }
    return a;
  }
  int access_calls() const { return access_calls_.load(); }
  HttpRoute handle(HttpRequest&& request, HttpRespond respond) override {
    HttpResponse r;
    r.body = "method=" + request.method + " path=" + request.path + " query=" + request.query +
             " type=" + request.content_type + " bearer=" + request.bearer_token + " body=" + request.body;
    r.content_type = "text/plain";
    r.headers.emplace_back("X-Test", "yes");
    if (request.path == "/drop") return HttpRoute::kOther;
    if (request.path == "/async") {
      std::lock_guard lock(mutex_);
      threads_.emplace_back([respond = std::move(respond), r = std::move(r)]() mutable {
        std::this_thread::sleep_for(20ms);
        respond(std::move(r));
      });
      return HttpRoute{7};  // a handler route id, opaque to the server
    }
    respond(std::move(r));
    return HttpRoute{12};
  }

 private:
  std::mutex mutex_;
  std::vector<std::thread> threads_;
  mutable std::atomic<int> access_calls_{0};
};

// ---------------------------------------------------------------------------
// A blocking loopback client

using Client = test::LoopbackClient;

std::string http_request(const std::string& method, const std::string& target, const std::string& body = "",
                         const std::string& content_type = "", const std::vector<std::string>& headers = {},
                         bool close = true) {
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: localhost\r\n";
  if (close) req += "Connection: close\r\n";
  if (!content_type.empty()) req += "Content-Type: " + content_type + "\r\n";
  if (!body.empty() || method == "POST") req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  for (const auto& h : headers) req += h + "\r\n";
  return req + "\r\n" + body;
}

int port_of(const std::string& endpoint) { return std::stoi(endpoint.substr(endpoint.rfind(':') + 1)); }

// ---------------------------------------------------------------------------
// Fixture

class ServerTest : public ::testing::Test {
 protected:
  static ServerOptions loopback() {
    ServerOptions o;
    o.http_address = "127.0.0.1:0";
    o.tcp_address = "127.0.0.1:0";
    o.io_threads = 2;
    return o;
  }
  void start(ServerOptions options = loopback(), std::shared_ptr<const TokenSet> tokens = nullptr) {
    auto server = NetworkServer::start(options, handler_, sink_, metrics_, std::move(tokens));
    ASSERT_TRUE(server.ok()) << server.message();
    server_ = std::move(server.value());
  }
  int tcp_port() const { return port_of(server_->tcp_endpoint()); }
  int http_port() const { return port_of(server_->http_endpoint()); }
  Client::Response http(const std::string& request) {
    Client c(http_port());
    EXPECT_TRUE(c.send(request));
    auto r = c.read_response();
    EXPECT_TRUE(r.has_value()) << "no response to " << request.substr(0, 80);
    return r.value_or(Client::Response{});
  }

  test::CountingStats metrics_;
  FakeSink sink_;
  FakeHandler handler_;
  std::unique_ptr<NetworkServer> server_;  // last: stopped first
};

// ---------------------------------------------------------------------------
// TCP

TEST_F(ServerTest, TcpReportsBadLinesAndAcksEveryLineIncludingBlankOnes) {
  start();
  Client c(tcp_port());
  ASSERT_TRUE(c.send(event("1") + "\n{\"event_id\": broken\n\n   \n" + event("2") + "\n" + event("3", "c", "teleport") +
                     "\n" + event("4") + "\n"));
  const auto lines = c.read_until_ack(7);
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines.back(), "{\"ack\":7}");
  std::vector<std::string> errors;
  for (const auto& l : lines) {
    if (l.find("\"error\"") != std::string::npos) errors.push_back(l);
  }
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_EQ(errors[0].rfind("{\"line\":2,\"error\":\"", 0), 0u) << errors[0];
  EXPECT_NE(errors[0].find("\"reason\":\"malformed_json\""), std::string::npos) << errors[0];
  EXPECT_EQ(errors[1].rfind("{\"line\":6,", 0), 0u) << errors[1];
  EXPECT_NE(errors[1].find("unknown_type"), std::string::npos) << errors[1];
  EXPECT_EQ(sink_.event_ids(), (std::vector<std::string>{"1", "2", "4"}));
  EXPECT_EQ(sink_.event_indexes(), (std::vector<std::uint32_t>{1, 5, 7}));
  const auto rejections = sink_.rejections();
  ASSERT_EQ(rejections.size(), 2u);
  EXPECT_EQ(rejections[0].index, 2u);
  EXPECT_EQ(rejections[0].payload, "{\"event_id\": broken");
  EXPECT_EQ(metrics_.received(Transport::kTcp).Value(), 5);
  EXPECT_EQ(metrics_.rejected(Transport::kTcp, RejectReason::kMalformedJson).Value(), 1);
  EXPECT_EQ(metrics_.accepted(Transport::kTcp, EventType::kEngagement).Value(), 3);
  EXPECT_EQ(metrics_.by_channel(Channel::kOther).Value(), 3);
  // Still usable after bad lines.
  ASSERT_TRUE(c.send(event("5") + "\n"));
  EXPECT_EQ(c.read_until_ack(8).back(), "{\"ack\":8}");
}

TEST_F(ServerTest, TcpAnswersInSubmissionOrderEvenWhenCompletedOutOfOrder) {
  start();
  sink_.hold(true, /*reverse=*/true);
  Client c(tcp_port());
  for (int i = 1; i <= 3; ++i) {
    ASSERT_TRUE(c.send(event(std::to_string(i)) + "\n"));
    ASSERT_TRUE(sink_.wait_submitted(static_cast<std::size_t>(i)));  // one submission per line
  }
  ASSERT_TRUE(c.send("bad " + std::to_string(4) + "\n"));
  ASSERT_TRUE(sink_.wait_submitted(4));
  sink_.hold(false, /*reverse=*/true);
  std::vector<std::string> lines;
  for (int i = 0; i < 5; ++i) lines.push_back(c.read_line().value_or("<timeout>"));
  EXPECT_EQ(lines, (std::vector<std::string>{"{\"ack\":1}", "{\"ack\":2}", "{\"ack\":3}", lines[3], "{\"ack\":4}"}));
  EXPECT_EQ(lines[3].rfind("{\"line\":4,", 0), 0u) << lines[3];
}

TEST_F(ServerTest, TcpAcksManyLinesInOrder) {
  start();
  Client c(tcp_port());
  constexpr int kLines = 20000;
  std::thread sender([&] {
    std::string chunk;
    for (int i = 1; i <= kLines; ++i) {
      chunk += event("m" + std::to_string(i)) + "\n";
      if (chunk.size() > 3000) {
        c.send(chunk);
        chunk.clear();
      }
    }
    c.send(chunk);
  });
  int last = 0;
  bool ordered = true;
  while (last < kLines) {
    auto line = c.read_line();
    if (!line) break;
    ASSERT_EQ(line->rfind("{\"ack\":", 0), 0u) << *line;
    const int ack = std::stoi(line->substr(7));
    ordered = ordered && ack > last;
    last = ack;
  }
  sender.join();
  EXPECT_TRUE(ordered);
  EXPECT_EQ(last, kLines);
  EXPECT_EQ(sink_.event_ids().size(), static_cast<std::size_t>(kLines));
}

TEST_F(ServerTest, TcpRejectsOverlongLineSkipsItAndAcceptsTheNext) {
  ServerOptions o = loopback();
  o.limits.max_line_bytes = 100;
  o.decode.max_line_bytes = 100;
  start(o);
  Client c(tcp_port());
  // The long line arrives in pieces, so it spans several reads.
  const std::string long_line(20000, 'x');
  for (std::size_t i = 0; i < long_line.size(); i += 5000) {
    ASSERT_TRUE(c.send(long_line.substr(i, 5000)));
    std::this_thread::sleep_for(5ms);
  }
  ASSERT_TRUE(c.send("\n" + event("ok") + "\n"));
  const auto lines = c.read_until_ack(2);
  ASSERT_GE(lines.size(), 2u);
  EXPECT_EQ(lines.front(), "{\"line\":1,\"error\":\"line is longer than 100 bytes\",\"reason\":\"too_large\"}");
  EXPECT_EQ(lines.back(), "{\"ack\":2}");
  EXPECT_EQ(sink_.event_ids(), (std::vector<std::string>{"ok"}));
  const auto rejections = sink_.rejections();
  ASSERT_EQ(rejections.size(), 1u);
  EXPECT_EQ(rejections[0].reason, RejectReason::kTooLarge);
  EXPECT_LE(rejections[0].payload.size(), 4096u);
  EXPECT_EQ(metrics_.rejected(Transport::kTcp, RejectReason::kTooLarge).Value(), 1);
}

TEST_F(ServerTest, TcpPausesWhileTheSinkIsFullAndResumesWhenItHasRoom) {
  start();
  sink_.set_full(true);
  Client c(tcp_port());
  std::string lines;
  for (int i = 1; i <= 100; ++i) lines += event("f" + std::to_string(i)) + "\n";
  ASSERT_TRUE(c.send(lines));
  ASSERT_TRUE(sink_.wait_refusals(3));  // retried, not dropped
  EXPECT_FALSE(c.read_line(50ms).has_value());
  EXPECT_EQ(sink_.submitted(), 0u);
  sink_.set_full(false);
  EXPECT_EQ(c.read_until_ack(100).back(), "{\"ack\":100}");
  EXPECT_EQ(sink_.event_ids().size(), 100u);
}

TEST_F(ServerTest, TcpStorageFailureReportsTheRangeWithoutAckAndKeepsTheConnection) {
  start();
  sink_.set_failure("disk full");
  Client c(tcp_port());
  ASSERT_TRUE(c.send(event("s1") + "\n" + event("s2") + "\n"));
  EXPECT_EQ(c.read_line().value_or(""), "{\"error\":\"storage unavailable: disk full\",\"from_line\":1,\"to_line\":2}");
  EXPECT_EQ(metrics_.refused(Transport::kTcp).Value(), 2);
  sink_.set_failure("");
  ASSERT_TRUE(c.send(event("s3") + "\n"));
  EXPECT_EQ(c.read_line().value_or(""), "{\"ack\":3}");
}

TEST_F(ServerTest, TcpCountsAnUnterminatedLastLineAtEofAndClosesAfterTheAck) {
  start();
  Client c(tcp_port());
  ASSERT_TRUE(c.send(event("e1") + "\n" + event("e2")));
  c.shutdown_write();
  EXPECT_EQ(c.read_until_ack(2).back(), "{\"ack\":2}");
  EXPECT_TRUE(c.closed_by_peer());
  EXPECT_EQ(sink_.event_ids(), (std::vector<std::string>{"e1", "e2"}));
}

TEST_F(ServerTest, TcpRefusesConnectionsBeyondTheCap) {
  ServerOptions o = loopback();
  o.limits.max_connections = 2;
  start(o);
  Client a(tcp_port()), b(tcp_port());
  ASSERT_TRUE(a.send(event("a") + "\n"));
  ASSERT_TRUE(b.send(event("b") + "\n"));
  EXPECT_EQ(a.read_line().value_or(""), "{\"ack\":1}");
  EXPECT_EQ(b.read_line().value_or(""), "{\"ack\":1}");
  Client refused(tcp_port());
  EXPECT_TRUE(refused.closed_by_peer());
  EXPECT_EQ(metrics_.connections_refused(Transport::kTcp).Value(), 1);
  EXPECT_EQ(metrics_.connections_open(Transport::kTcp).Value(), 2);
}

TEST_F(ServerTest, TcpRequiresAnAuthLineWhenTokensAreConfigured) {
  auto tokens = std::make_shared<const TokenSet>(
      std::vector<TokenGrant>{{"ingest-token-0123456789", static_cast<std::uint8_t>(Scope::kIngest)},
                              {"read-token-0123456789ab", static_cast<std::uint8_t>(Scope::kRead)}});
  start(loopback(), tokens);
  Client anonymous(tcp_port());
  ASSERT_TRUE(anonymous.send(event("t1") + "\n"));
  EXPECT_NE(anonymous.read_line().value_or("").find("unauthorized"), std::string::npos);
  EXPECT_TRUE(anonymous.closed_by_peer());
  Client reader(tcp_port());
  ASSERT_TRUE(reader.send("{\"auth\":\"read-token-0123456789ab\"}\n"));
  EXPECT_NE(reader.read_line().value_or("").find("forbidden"), std::string::npos);
  Client good(tcp_port());
  ASSERT_TRUE(good.send("{\"auth\":\"ingest-token-0123456789\"}\n" + event("t2") + "\n"));
  EXPECT_EQ(good.read_line().value_or(""), "{\"auth\":\"ok\"}");
  EXPECT_EQ(good.read_line().value_or(""), "{\"ack\":1}");
  EXPECT_EQ(sink_.event_ids(), (std::vector<std::string>{"t2"}));
}

TEST_F(ServerTest, TcpClosesAPartialLineThatDoesNotCompleteInTime) {
  ServerOptions o = loopback();
  o.limits.read_timeout = 200ms;
  start(o);
  Client c(tcp_port());
  ASSERT_TRUE(c.send(event("p1") + "\n" + "{\"event_id\":"));
  EXPECT_EQ(c.read_line().value_or(""), "{\"ack\":1}");
  const auto started = std::chrono::steady_clock::now();
  EXPECT_TRUE(c.closed_by_peer(5s));
  EXPECT_LT(std::chrono::steady_clock::now() - started, 3s);
}

TEST_F(ServerTest, IdleConnectionsAreClosedAfterTheIdleTimeout) {
  ServerOptions o = loopback();
  o.limits.idle_timeout = 200ms;
  start(o);
  Client tcp(tcp_port()), http_client(http_port());
  ASSERT_TRUE(tcp.send(event("i1") + "\n"));
  EXPECT_EQ(tcp.read_line().value_or(""), "{\"ack\":1}");
  const auto started = std::chrono::steady_clock::now();
  EXPECT_TRUE(tcp.closed_by_peer(5s));
  EXPECT_TRUE(http_client.closed_by_peer(5s));
  EXPECT_LT(std::chrono::steady_clock::now() - started, 3s);
}

TEST_F(ServerTest, ReloadedLimitsApplyToOpenConnections) {
  start();
  Client c(tcp_port());
  ASSERT_TRUE(c.send(event("r1") + "\n"));
  EXPECT_EQ(c.read_line().value_or(""), "{\"ack\":1}");
  FrontLimits limits;
  limits.max_line_bytes = 50;
  DecodeOptions decode;
  decode.max_line_bytes = 50;
  server_->set_limits(limits, decode);
  ASSERT_TRUE(c.send(event("r2") + "\n"));
  const auto lines = c.read_until_ack(2);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], "{\"line\":2,\"error\":\"line is longer than 50 bytes\",\"reason\":\"too_large\"}");
}

TEST_F(ServerTest, ShutdownAnswersARequestInProgressWithConnectionClose) {
  start();
  Client c(http_port());
  ASSERT_TRUE(c.send(http_request("GET", "/async", "", "", {}, /*close=*/false)));
  std::this_thread::sleep_for(5ms);  // the request is in the handler (which answers after 20 ms)
  auto stopped = std::async(std::launch::async, [&] { server_->shutdown(10s); });
  auto r = c.read_response();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->headers["connection"], "close");
  EXPECT_TRUE(c.closed_by_peer());
  EXPECT_EQ(stopped.wait_for(10s), std::future_status::ready);
}

TEST_F(ServerTest, ShutdownDrainsAcksOfSubmittedLinesThenCloses) {
  start();
  sink_.hold(true);
  Client c(tcp_port());
  ASSERT_TRUE(c.send(event("d1") + "\n" + event("d2") + "\n"));
  ASSERT_TRUE(sink_.wait_submitted(1));
  auto stopped = std::async(std::launch::async, [&] { server_->shutdown(10s); });
  EXPECT_EQ(stopped.wait_for(100ms), std::future_status::timeout);  // waits for the pending ack
  Client late(tcp_port());
  EXPECT_TRUE(!late.connected() || late.closed_by_peer(2s));  // no new connections
  sink_.hold(false);
  EXPECT_EQ(c.read_line().value_or(""), "{\"ack\":2}");
  EXPECT_TRUE(c.closed_by_peer());
  EXPECT_EQ(stopped.wait_for(10s), std::future_status::ready);
  server_->shutdown(0ms);  // idempotent
}

TEST_F(ServerTest, ShutdownWithAnAnswerStillOwedDoesNotCrashWhenItArrivesLater) {
  start();
  sink_.hold(true);
  Client c(tcp_port());
  ASSERT_TRUE(c.send(event("late") + "\n"));
  ASSERT_TRUE(sink_.wait_submitted(1));
  server_->shutdown(50ms);
  server_.reset();
  sink_.hold(false);  // done() arrives after the server is gone: must be harmless
  EXPECT_TRUE(c.closed_by_peer());
}

// ---------------------------------------------------------------------------
// HTTP

TEST_F(ServerTest, HttpIngestAnswersCountsAfterCommit) {
  start();
  auto r = http(http_request("POST", "/v1/events", event("h1") + "\n", "application/x-ndjson"));
  EXPECT_EQ(r.status, 200) << r.body;
  r = http(http_request("POST", "/v1/events", event("h1") + "\nnope\n\n" + event("h2") + "\n",
                        "Application/X-NDJSON; charset=utf-8"));
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.headers["content-type"], "application/json");
  EXPECT_EQ(r.body.rfind("{\"accepted\":1,\"duplicates\":1,\"errors\":true,\"rejected\":[{\"index\":1,\"reason\":"
                         "\"malformed_json\",\"error\":\"",
                         0),
            0u)
      << r.body;
  const auto rejections = sink_.rejections();
  ASSERT_EQ(rejections.size(), 1u);
  EXPECT_EQ(rejections[0].payload, "nope");
  r = http(
      http_request("POST", "/v1/events", "[" + event("j1") + ",{\"x\":1}," + event("j2") + "]", "application/json"));
  EXPECT_EQ(r.body.rfind("{\"accepted\":2,\"duplicates\":0,\"errors\":true,\"rejected\":[{\"index\":1,", 0), 0u)
      << r.body;
  EXPECT_EQ(sink_.rejections().back().payload, "{\"x\":1}");
  r = http(http_request("POST", "/v1/events", "", "application/x-ndjson"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body,
            "{\"accepted\":0,\"duplicates\":0,\"errors\":false,\"rejected\":[],\"rejected_count\":0,"
            "\"rejected_by_reason\":{}}");
  EXPECT_EQ(metrics_.received(Transport::kHttp).Value(), 7);  // blank NDJSON lines are not items
  EXPECT_EQ(metrics_.rejected(Transport::kHttp, RejectReason::kMalformedJson).Value(), 1);
  EXPECT_EQ(metrics_.accepted(Transport::kHttp, EventType::kEngagement).Value(), 4);
  EXPECT_EQ(metrics_.duplicate(Transport::kHttp, EventType::kEngagement).Value(), 1);
}

TEST_F(ServerTest, HttpRefusesUnknownContentTypes) {
  start();
  auto r = http(http_request("POST", "/v1/events", event("x"), "text/plain"));
  EXPECT_EQ(r.status, 415);
  EXPECT_NE(r.body.find("application/x-ndjson"), std::string::npos) << r.body;
  r = http(http_request("POST", "/v1/events", event("x")));
  EXPECT_EQ(r.status, 415);
  r = http(http_request("GET", "/v1/events"));
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(sink_.submitted(), 0u);
}

TEST_F(ServerTest, HttpBodyAndHeaderLimits) {
  ServerOptions o = loopback();
  o.limits.max_body_bytes = 1024;
  start(o);
  auto r = http(http_request("POST", "/v1/events", std::string(4096, ' '), "application/x-ndjson"));
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(r.body, "{\"error\":\"body exceeds 1024 bytes\"}");
  r = http(http_request("GET", "/healthz", "", "", {"X-Big: " + std::string(9000, 'x')}));
  EXPECT_EQ(r.status, 431);
  r = http("GARBAGE\r\n\r\n");
  EXPECT_EQ(r.status, 400);
}

TEST_F(ServerTest, HttpIngestChecksBearerTokens) {
  auto tokens = std::make_shared<const TokenSet>(
      std::vector<TokenGrant>{{"ingest-token-0123456789", static_cast<std::uint8_t>(Scope::kIngest)},
                              {"read-token-0123456789ab", static_cast<std::uint8_t>(Scope::kRead)}});
  start(loopback(), tokens);
  auto r = http(http_request("POST", "/v1/events", event("a"), "application/json"));
  EXPECT_EQ(r.status, 401);
  EXPECT_NE(r.headers["www-authenticate"].find("Bearer"), std::string::npos);
  r = http(http_request("POST", "/v1/events", event("a"), "application/json", {"Authorization: Bearer nope"}));
  EXPECT_EQ(r.status, 401);
  r = http(http_request("POST", "/v1/events", event("a"), "application/json",
                        {"Authorization: Bearer read-token-0123456789ab"}));
  EXPECT_EQ(r.status, 403);
  r = http(http_request("POST", "/v1/events", event("a"), "application/json",
                        {"Authorization: bearer ingest-token-0123456789"}));
  EXPECT_EQ(r.status, 200) << r.body;
  // Reloaded tokens apply to the next request.
  server_->set_tokens(std::make_shared<const TokenSet>());
  r = http(http_request("POST", "/v1/events", event("b"), "application/json"));
  EXPECT_EQ(r.status, 200) << r.body;
}

// The token is checked from the header: a refused upload is answered before its body (which is never sent
// here) and the connection closes; the handler's access() names the scope, handle() never runs.
TEST_F(ServerTest, HttpChecksTheTokenBeforeReadingTheBody) {
  auto tokens = std::make_shared<const TokenSet>(
      std::vector<TokenGrant>{{"ingest-token-0123456789", static_cast<std::uint8_t>(Scope::kIngest)},
                              {"read-token-0123456789ab", static_cast<std::uint8_t>(Scope::kRead)}});
  start(loopback(), tokens);
  const auto upload = [&](const std::string& target, const std::string& auth) {
    Client c(http_port());
    EXPECT_TRUE(c.send("POST " + target + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n" + auth +
                       "Content-Length: 16000000\r\n\r\n"));
    auto r = c.read_response();
    EXPECT_TRUE(r.has_value()) << target << ": no answer before the body";
    EXPECT_TRUE(c.closed_by_peer()) << target << ": the unread body must end the connection";
    return r.value_or(Client::Response{});
  };
  EXPECT_EQ(upload("/v1/events", "").status, 401);
  EXPECT_EQ(upload("/v1/events", "Authorization: Bearer wrong\r\n").status, 401);
  auto r = upload("/v1/events", "Authorization: Bearer read-token-0123456789ab\r\n");
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(r.body, "{\"error\":\"the token lacks the ingest scope\"}");
  EXPECT_EQ(upload("/read/x", "").status, 401);
  r = upload("/admin/x", "Authorization: Bearer read-token-0123456789ab\r\n");
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(r.body, "{\"error\":\"the token lacks the admin scope\"}");
  EXPECT_NE(r.headers["www-authenticate"].find("insufficient_scope"), std::string::npos);
  EXPECT_GE(handler_.access_calls(), 2);
  EXPECT_EQ(sink_.submitted(), 0u);
  // Expect: 100-continue without a token: the refusal, never 100 Continue.
  Client c(http_port());
  ASSERT_TRUE(
      c.send("POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
             "Expect: 100-continue\r\nContent-Length: 10\r\n\r\n"));
  r = c.read_response().value_or(Client::Response{});
  EXPECT_EQ(r.status, 401);
  // A refused request without a body keeps the connection.
  Client keep(http_port());
  ASSERT_TRUE(keep.send(http_request("GET", "/read/x", "", "", {}, /*close=*/false)));
  EXPECT_EQ(keep.read_response().value_or(Client::Response{}).status, 401);
  ASSERT_TRUE(keep.send(http_request("GET", "/read/x", "", "", {"Authorization: Bearer read-token-0123456789ab"})));
  r = keep.read_response().value_or(Client::Response{});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body.rfind("method=GET path=/read/x", 0), 0u) << r.body;
}

// A request that needs no token takes at most kMaxBodyWithoutToken bytes of body.
TEST_F(ServerTest, HttpRequestsWithoutATokenTakeNoLargeBody) {
  start();
  Client c(http_port());
  ASSERT_TRUE(c.send("POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n"));
  auto r = c.read_response().value_or(Client::Response{});
  EXPECT_EQ(r.status, 413);
  EXPECT_TRUE(c.closed_by_peer());
  // Chunked: cut off at the limit.
  Client chunked(http_port());
  std::ostringstream size;
  size << std::hex << (kMaxBodyWithoutToken + 1);
  ASSERT_TRUE(chunked.send("POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + size.str() +
                           "\r\n" + std::string(kMaxBodyWithoutToken + 1, 'b') + "\r\n0\r\n\r\n"));
  r = chunked.read_response().value_or(Client::Response{});
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(r.body, "{\"error\":\"body exceeds " + std::to_string(kMaxBodyWithoutToken) + " bytes\"}");
  // A small one is fine.
  r = http(http_request("POST", "/healthz", std::string(kMaxBodyWithoutToken, 'b'), "text/plain"));
  EXPECT_EQ(r.status, 200);
  // With a scope, the configured limit applies.
  r = http(http_request("POST", "/read/x", std::string(100000, 'b'), "text/plain"));
  EXPECT_EQ(r.status, 200);
}

// RFC 9112 §6.1, §3.2: a Transfer-Encoding that does not end in chunked, two Authorization headers, a
// missing or repeated Host are 400 and close the connection; what follows is never read as a request.
TEST_F(ServerTest, HttpFramingIsStrict) {
  start();
  const std::string smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
  for (const std::string coding :
       {"chunked, identity", "identity", "gzip", "xchunked", "gzip, chunked", "chunked, chunked", ", identity"}) {
    Client c(http_port());
    ASSERT_TRUE(c.send("POST /read/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: " + coding + "\r\n\r\n" + smuggled));
    bool eof = false;
    std::string answer = c.read_all(eof);
    const auto r = test::take_response(answer);
    ASSERT_TRUE(r.has_value()) << coding;
    EXPECT_EQ(r->status, 400) << coding << ": " << r->body;
    EXPECT_TRUE(eof) << coding;
    EXPECT_EQ(answer, "") << coding << ": the smuggled request was answered";
  }
  const auto status = [&](const std::string& request) {
    Client c(http_port());
    EXPECT_TRUE(c.send(request));
    const auto r = c.read_response().value_or(Client::Response{});
    EXPECT_TRUE(c.closed_by_peer()) << request;
    return r.status;
  };
  EXPECT_EQ(status("GET /x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\n\r\n"), 400);
  EXPECT_EQ(status("GET /x HTTP/1.1\r\n\r\n"), 400);
  EXPECT_EQ(status("GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
  EXPECT_EQ(status("GET /x HTTP/1.0\r\n\r\n"), 200);
  EXPECT_EQ(status("POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), 400);
  EXPECT_EQ(status("POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                   "3\r\nabc\r\n0\r\n\r\n"),
            200);
  // Content-Encoding: only identity (or none) for a body.
  EXPECT_EQ(status(http_request("POST", "/v1/events", event("ce"), "application/json", {"Content-Encoding: gzip"})),
            415);
  EXPECT_EQ(status(http_request("POST", "/x", "abc", "text/plain", {"Content-Encoding: identity, deflate"})), 415);
  EXPECT_EQ(status(http_request("POST", "/x", "abc", "text/plain", {"Content-Encoding: identity"})), 200);
  EXPECT_EQ(status(http_request("GET", "/x", "", "", {"Content-Encoding: gzip"})), 200);  // no body: nothing to decode
  EXPECT_EQ(sink_.submitted(), 0u);
}

// A GET whose header block (request line, fields, final blank line) is exactly `size` bytes.
std::string header_of_size(std::size_t size) {
  std::string head = "GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n";
  const std::string name = "X-Pad: ";
  head += name + std::string(size - head.size() - name.size() - 4, 'p') + "\r\n\r\n";
  return head;
}

// max_header_bytes counts the whole header block: exactly the limit passes, one byte more is 431, wherever
// the client's bytes are split (the server has read the first part before the rest is sent).
TEST_F(ServerTest, HttpHeaderLimitIsExactWhateverTheSplit) {
  ServerOptions o = loopback();
  o.limits.max_header_bytes = 8192;
  start(o);
  for (const std::size_t size : {std::size_t{8192}, std::size_t{8193}}) {
    const std::string request = header_of_size(size);
    ASSERT_EQ(request.size(), size);
    for (const std::size_t first :
         {std::size_t{0}, std::size_t{1}, std::size_t{17}, std::size_t{4096}, std::size_t{8000}, size - 1}) {
      Client c(http_port());
      if (first > 0) {
        ASSERT_TRUE(c.send(request.substr(0, first)));
        ASSERT_TRUE(test::wait_until_peer_read(c.fd())) << first;
      }
      ASSERT_TRUE(c.send(request.substr(first)));
      const auto r = c.read_response();
      ASSERT_TRUE(r.has_value()) << size << " split at " << first;
      EXPECT_EQ(r->status, size <= 8192 ? 200 : 431) << size << " bytes of header, split at " << first;
    }
  }
}

TEST_F(ServerTest, HttpAnswers503WhenTheQueueIsFullOrStorageFails) {
  start();
  sink_.set_full(true);
  auto r = http(http_request("POST", "/v1/events", event("q"), "application/json"));
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.headers["retry-after"], "1");
  EXPECT_EQ(r.body, "{\"error\":\"ingest queue full, retry later\"}");
  sink_.set_full(false);
  sink_.set_failure("map full");
  r = http(http_request("POST", "/v1/events", event("q"), "application/json"));
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.headers["retry-after"], "5");
  EXPECT_EQ(r.body, "{\"error\":\"storage unavailable: map full\"}");
  sink_.set_failure("");
  sink_.set_accepting(false);
  r = http(http_request("POST", "/v1/events", event("q"), "application/json"));
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(metrics_.refused(Transport::kHttp).Value(), 2);  // queue full + storage failure
}

TEST_F(ServerTest, HttpKeepsTheConnectionAliveAndAnswersPipelinedRequestsInOrder) {
  start();
  Client c(http_port());
  ASSERT_TRUE(c.send(http_request("GET", "/one", "", "", {}, /*close=*/false)));
  auto r = c.read_response();
  ASSERT_TRUE(r.has_value());
  EXPECT_NE(r->body.find("path=/one"), std::string::npos);
  EXPECT_EQ(r->headers["x-test"], "yes");
  // Two requests in one write, the first answered from another thread.
  ASSERT_TRUE(c.send(http_request("GET", "/async", "", "", {}, false) +
                     http_request("POST", "/v1/events", event("k"), "application/json", {}, true)));
  r = c.read_response();
  ASSERT_TRUE(r.has_value());
  EXPECT_NE(r->body.find("path=/async"), std::string::npos) << r->body;
  r = c.read_response();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body.rfind("{\"accepted\":1", 0), 0u) << r->body;
  EXPECT_EQ(r->headers["connection"], "close");
  EXPECT_TRUE(c.closed_by_peer());
}

// The path reaches the handler as sent (still percent-encoded): the handler routes first, then decodes.
TEST_F(ServerTest, HttpPassesRequestsToTheHandlerWithTheRawPath) {
  start();
  auto r = http(http_request("POST", "/v1/customers/a%20b%2Fc?explain=true&x=%20", "{}", "application/json; charset=x",
                             {"Authorization: Bearer tok-1"}));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.headers["content-type"], "text/plain");
  EXPECT_EQ(r.body,
            "method=POST path=/v1/customers/a%20b%2Fc query=explain=true&x=%20 type=application/json "
            "bearer=tok-1 body={}");
  // What the handler's access() refuses is answered from the header, without calling handle().
  r = http(http_request("GET", "/malformed"));
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.body, "{\"error\":\"malformed\"}");
  EXPECT_EQ(http(http_request("GET", "v1/customers/a")).status, 400);  // not an absolute path
  EXPECT_EQ(http(http_request("GET", "/drop")).status, 500);           // a dropped respond still answers
}

TEST_F(ServerTest, ReportsBoundEndpointsAndAdoptsListeningSockets) {
  ServerOptions o = loopback();
  o.tcp_address = "";
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(fd, 16), 0);
  socklen_t length = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length);
  o.tcp_fd = fd;
  start(o);
  EXPECT_EQ(server_->http_endpoint().rfind("127.0.0.1:", 0), 0u);
  EXPECT_NE(http_port(), 0);
  EXPECT_EQ(tcp_port(), ntohs(addr.sin_port));
  Client c(tcp_port());
  ASSERT_TRUE(c.send(event("fd") + "\n"));
  EXPECT_EQ(c.read_line().value_or(""), "{\"ack\":1}");
  EXPECT_EQ(http(http_request("GET", "/x")).status, 200);
}

TEST_F(ServerTest, DisabledFrontsHaveNoEndpoint) {
  ServerOptions o = loopback();
  o.http_address = "";
  start(o);
  EXPECT_EQ(server_->http_endpoint(), "");
  EXPECT_NE(server_->tcp_endpoint(), "");
}

TEST_F(ServerTest, FailsWithAClearMessageOnBadOrBusyAddresses) {
  ServerOptions o = loopback();
  o.http_address = "127.0.0.1:99999";
  auto r = NetworkServer::start(o, handler_, sink_, metrics_, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.message().find("127.0.0.1:99999"), std::string::npos) << r.message();
  o.http_address = "nonsense";
  r = NetworkServer::start(o, handler_, sink_, metrics_, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.message().find("nonsense"), std::string::npos) << r.message();

  start();
  o.http_address = server_->http_endpoint();
  r = NetworkServer::start(o, handler_, sink_, metrics_, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.message(), "cannot listen on " + server_->http_endpoint() + ": Address already in use");
}

TEST_F(ServerTest, ListensOnIpv6Loopback) {
  ServerOptions o = loopback();
  o.http_address = "[::1]:0";
  o.tcp_address = "localhost:0";
  auto r = NetworkServer::start(o, handler_, sink_, metrics_, nullptr);
  if (!r.ok()) {
    // A host without IPv6 loopback: the refusal must name the address that could not be bound.
    EXPECT_NE(r.message().find("[::1]"), std::string::npos) << r.message();
    return;
  }
  EXPECT_EQ((*r)->http_endpoint().rfind("[::1]:", 0), 0u) << (*r)->http_endpoint();
  EXPECT_EQ((*r)->tcp_endpoint().rfind("127.0.0.1:", 0), 0u) << (*r)->tcp_endpoint();
}

}  // namespace
}  // namespace rapport
