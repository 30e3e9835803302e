// libFuzzer target: the HTTP front of NetworkServer over real loopback sockets.
//
// LLVMFuzzerInitialize starts one NetworkServer (HTTP only, 127.0.0.1:0, two io
// threads) with a small HttpHandler and an IngestSink that completes every
// submission at once. Each input is written as a raw byte stream on a new
// connection, the client half-closes, and the whole answer is read until the
// server closes. Limits are small (2 KiB headers, 64 KiB bodies, 1 s read and
// idle timeouts) so that every limit is reachable with fuzzer-sized inputs.
//
// Invariants (violation = __builtin_trap()):
//  - the server closes a half-closed connection within 15 s (legitimately up to ~3 s: a 1 s read
//    timeout, the answer's write, then up to 2 s of linger for the peer's FIN; the rest is slack
//    for sanitizer builds on a loaded 2-core machine; libFuzzer's -timeout is 30 s);
//  - the answer is empty or starts with a well-formed "HTTP/1.x NNN " status line, and
//    every response that can be delimited (Content-Length) has a well-formed status line;
//  - no 5xx unless this input made the handler drop a request or throw (500) or the
//    sink refuse or fail a submission (503);
//  - every 64 inputs (and on the first), a fresh GET /healthz gets 200.
// Tokens: "fuzz-ingest" (ingest scope) and "fuzz-read" (read scope, 403 on ingest).
// The handler: /healthz -> 200, /drop -> never answers, /throw -> throws (the first 16 times;
// then answers 500 itself, to keep the log quiet), else 404 with the request's field sizes.
// The sink: a submission of exactly 3 items is refused (queue full), of 5 fails (storage).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "ingest/auth.h"
#include "ingest/net/server.h"
#include "ingest/submission.h"
#include "tests/support/counting_stats.h"

namespace {

using namespace std::chrono_literals;

#define FUZZ_CHECK(cond)           \
  do {                             \
    if (!(cond)) __builtin_trap(); \
  } while (0)

// Counters of the events that make a 5xx legitimate.
std::atomic<std::uint64_t> g_handler_failures{0};  // /drop, /throw -> 500
std::atomic<std::uint64_t> g_sink_failures{0};     // refused or failed submission -> 503

class ImmediateSink final : public rapport::IngestSink {
 public:
  bool try_submit(std::unique_ptr<rapport::Submission>& submission) override {
    const std::size_t items = submission->events.size() + submission->rejections.size();
    if (items == 3) {
      g_sink_failures.fetch_add(1);
      return false;  // "queue full": the submission stays with the caller
    }
    auto sub = std::move(submission);
    rapport::SubmissionResult result;
    if (items == 5) {
      g_sink_failures.fetch_add(1);
      result.status = rapport::Status::Error("fuzz: storage failure");
    } else {
      // Every other event is a duplicate, so both outcome paths are exercised.
      for (std::size_t i = 0; i < sub->events.size(); ++i) {
        result.outcomes.push_back(i % 2 == 0 ? rapport::Outcome::kAccepted : rapport::Outcome::kDuplicate);
      }
    }
    auto done = std::move(sub->done);
    sub.reset();
    done(std::move(result));  // posts to the connection's strand; never runs inline
    return true;
  }
  bool accepting() const override { return true; }
};

class TrivialHandler final : public rapport::HttpHandler {
 public:
  // "/secure..." needs the read scope (checked by the front before the body); the rest no token.
  rapport::RouteAccess access(std::string_view /*method*/, std::string_view raw_target) const override {
    rapport::RouteAccess a;
    if (raw_target.substr(0, 7) == "/secure") a.scope = rapport::Scope::kRead;
    return a;
  }
  rapport::HttpRoute handle(rapport::HttpRequest&& request, rapport::HttpRespond respond) override {
    if (request.path == "/healthz") {
      rapport::HttpResponse r;
      r.body = "{\"status\":\"ok\"}";
      respond(std::move(r));
      return rapport::HttpRoute{13};  // a handler route id, opaque to the server
    }
    if (request.path == "/drop") {
      g_handler_failures.fetch_add(1);
      return rapport::HttpRoute::kOther;  // the server must answer 500 itself
    }
    if (request.path == "/throw") {
      // The server logs every throw; after a few (the path is covered by then) answer 500 quietly.
      g_handler_failures.fetch_add(1);
      if (throws_.fetch_add(1) < 16) throw std::runtime_error("fuzz: handler throws");
      rapport::HttpResponse r;
      r.status = 500;
      r.body = "{\"error\":\"fuzz\"}";
      respond(std::move(r));
      return rapport::HttpRoute::kOther;
    }
    // Sizes only, never the raw request: the invariants parse the answer stream.
    rapport::HttpResponse r;
    r.status = 404;
    r.body = "{\"method\":" + std::to_string(request.method.size()) +
             ",\"path\":" + std::to_string(request.path.size()) + ",\"query\":" + std::to_string(request.query.size()) +
             ",\"type\":" + std::to_string(request.content_type.size()) +
             ",\"bearer\":" + std::to_string(request.bearer_token.size()) +
             ",\"body\":" + std::to_string(request.body.size()) + "}";
    r.headers.emplace_back("X-Fuzz", "1");
    respond(std::move(r));
    return rapport::HttpRoute::kOther;
  }

 private:
  std::atomic<int> throws_{0};
};

struct Harness {
  rapport::test::CountingStats metrics;
  ImmediateSink sink;
  TrivialHandler handler;
  std::unique_ptr<rapport::NetworkServer> server;
  int port = 0;
  std::uint64_t runs = 0;
};

Harness* g_harness = nullptr;

void stop_server() {
  if (g_harness && g_harness->server) g_harness->server->shutdown(2s);
}

void start_server() {
  if (g_harness) return;
  auto* h = new Harness();  // never deleted: io threads may still run at exit
  rapport::ServerOptions options;
  options.http_address = "127.0.0.1:0";
  options.tcp_address = "";
  options.io_threads = 2;
  options.limits.max_header_bytes = 2048;
  options.limits.max_body_bytes = 64 * 1024;
  options.limits.read_timeout = 1s;
  options.limits.idle_timeout = 1s;
  options.decode.max_line_bytes = 4096;
  auto tokens = std::make_shared<const rapport::TokenSet>(std::vector<rapport::TokenGrant>{
      {"fuzz-ingest", static_cast<std::uint8_t>(rapport::Scope::kIngest)},
      {"fuzz-read", static_cast<std::uint8_t>(rapport::Scope::kRead)},
  });
  auto started = rapport::NetworkServer::start(options, h->handler, h->sink, h->metrics, std::move(tokens));
  if (!started.ok()) {
    std::fprintf(stderr, "http_fuzz: cannot start the server: %s\n", started.message().c_str());
    std::abort();
  }
  h->server = std::move(started).value();
  const std::string endpoint = h->server->http_endpoint();
  h->port = std::atoi(endpoint.substr(endpoint.rfind(':') + 1).c_str());
  g_harness = h;
  std::atexit(stop_server);  // a clean drain for the replay test (and TSan); skipped on a crash
}

int connect_loopback(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

// Writes `request` (interleaved with reading, so neither side can block the
// other), half-closes, and reads until EOF. False if the server kept the
// connection open past the deadline.
bool exchange(int port, std::string_view request, std::string& answer) {
  answer.clear();
  const int fd = connect_loopback(port);
  if (fd < 0) {
    std::fprintf(stderr, "fuzz: cannot connect to the server: %s\n", std::strerror(errno));
    return false;
  }
  const auto deadline = std::chrono::steady_clock::now() + 15s;
  bool write_open = true;
  if (request.empty()) {
    ::shutdown(fd, SHUT_WR);
    write_open = false;
  }
  bool eof = false;
  char buf[16384];
  while (!eof) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      std::fprintf(stderr, "fuzz: the server neither closed nor answered fully within 15 s (%zu bytes answered)\n",
                   answer.size());
      break;
    }
    pollfd p{fd, static_cast<short>(POLLIN | (write_open ? POLLOUT : 0)), 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n > 0) {
        answer.append(buf, static_cast<std::size_t>(n));
      } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        eof = true;  // FIN or reset: the server is done with us
      }
    }
    if (write_open && (p.revents & (POLLOUT | POLLERR | POLLHUP))) {
      const ssize_t n = ::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
      if (n > 0) {
        request.remove_prefix(static_cast<std::size_t>(n));
      } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        request = {};  // the server closed (or reset) its side: stop writing
      }
      if (request.empty()) {
        ::shutdown(fd, SHUT_WR);
        write_open = false;
      }
    }
  }
  // Close with a reset, not a FIN: the client half-closed first, so a normal close would leave this
  // port in TIME_WAIT for 60 s, and ~30 k exchanges a minute would run out of ephemeral ports
  // (connect: EADDRNOTAVAIL).
  const linger reset{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
  ::close(fd);
  return eof;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

struct Statuses {
  bool s500 = false;
  bool s503 = false;
  bool other5xx = false;
};

// Walks the answer stream; returns false on a malformed status line. Stops
// quietly where responses cannot be delimited (a HEAD answer keeps its
// Content-Length without a body). Collects the 5xx statuses seen.
bool check_answer(std::string_view answer, Statuses& seen) {
  bool first = true;
  while (!answer.empty()) {
    if (answer.size() < 13 || (answer.substr(0, 9) != "HTTP/1.1 " && answer.substr(0, 9) != "HTTP/1.0 ") ||
        !is_digit(answer[9]) || !is_digit(answer[10]) || !is_digit(answer[11]) || answer[12] != ' ') {
      return !first;  // the first response must be well-formed; later ones may be a HEAD's missing body
    }
    first = false;
    const int status = (answer[9] - '0') * 100 + (answer[10] - '0') * 10 + (answer[11] - '0');
    if (status < 100 || status > 599) return false;
    if (status == 500) {
      seen.s500 = true;
    } else if (status == 503) {
      seen.s503 = true;
    } else if (status >= 500) {
      seen.other5xx = true;
    }
    const std::size_t end = answer.find("\r\n\r\n");
    if (end == std::string_view::npos) return true;  // cut short (e.g. reset while writing)
    const std::string_view head = answer.substr(0, end + 2);
    answer.remove_prefix(end + 4);
    std::size_t length = 0;
    for (std::size_t pos = head.find("\r\n"); pos != std::string_view::npos; pos = head.find("\r\n", pos + 2)) {
      const std::string_view line = head.substr(pos + 2, head.find("\r\n", pos + 2) - pos - 2);
      constexpr std::string_view kLength = "Content-Length: ";
      if (line.size() > kLength.size() && line.substr(0, kLength.size()) == kLength) {
        length = std::strtoul(std::string(line.substr(kLength.size())).c_str(), nullptr, 10);
      }
    }
    if (length > answer.size()) return true;
    answer.remove_prefix(length);
  }
  return true;
}

void check_alive(int port) {
  std::string answer;
  const bool closed = exchange(port, "GET /healthz HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n\r\n", answer);
  FUZZ_CHECK(closed);
  FUZZ_CHECK(answer.substr(0, 13) == "HTTP/1.1 200 ");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  start_server();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  start_server();  // no-op after LLVMFuzzerInitialize
  Harness& h = *g_harness;
  if (h.runs++ % 64 == 0) check_alive(h.port);

  const std::uint64_t handler_failures = g_handler_failures.load();
  const std::uint64_t sink_failures = g_sink_failures.load();
  std::string answer;
  const bool closed = exchange(h.port, std::string_view(reinterpret_cast<const char*>(data), size), answer);
  FUZZ_CHECK(closed);
  Statuses seen;
  FUZZ_CHECK(check_answer(answer, seen));
  FUZZ_CHECK(!seen.other5xx);
  if (seen.s500) FUZZ_CHECK(g_handler_failures.load() != handler_failures);
  if (seen.s503) FUZZ_CHECK(g_sink_failures.load() != sink_failures);
  return 0;
}
