// rapport-loadgen: drives a running rapportd from its own process.
//
// Modes:
//   tcp          NDJSON over TCP, one chunk of --batch lines per write, acks
//                read back ({"ack":N}); ack latency = chunk written -> acked.
//   http-batch   POST /v1/events, --batch NDJSON lines per request (keep-alive).
//   http-single  POST /v1/events, one application/json event per request.
//   query        GET /v1/customers/{id} point queries (ids taken from the same
//                events, so they follow the same Zipf skew); 404s are counted
//                as misses, not errors.
//   batchget     POST /v1/customers:batchGet with --batch ids per request
//                (<= 1000; ids as for query); units are customers asked for
//                (found or missing), so events_per_s is customers/s.
//   sink         the tcp protocol against `rapport-sink` (a loopback server
//                that only reads, decodes and acks): the physical reference.
// Events come from a file (`rapportctl generate ... > events.ndjson`) or are
// generated on the fly (Zipf-skewed customers, no duplicates), pre-rendered
// before the clock starts. Closed loop (as fast as acks allow, bounded by
// --window) or open loop at --rate events/s (requests/s for query); in open
// loop latency is measured from the *intended* send time, so a server that
// falls behind is not hidden (no coordinated omission). --duration keeps
// sending for that many seconds, cycling through the events with fresh
// event_ids (suffix "~<round>"), which is what the soak uses.
//
// All connections are asynchronous (Asio) on --threads io threads, so a few
// hundred connections cost no threads. Latencies go into a log-linear
// (HDR-style, <1 % error, 1 ns .. hours) histogram.
//
// At the end the daemon's counters (GET /metrics: rapport_events_accepted_total
// + rapport_events_duplicate_total for the transport) must have moved by
// exactly the number of events the daemon acknowledged as accepted or
// duplicate; otherwise exit 1. The metrics are read from --metrics-url
// (default: /metrics on the --http address; a daemon with a [metrics] listener
// serves them there instead). Metrics that cannot be read (refused, not 200,
// not rapport's) are reported as such, never as a counter mismatch: before the
// run that is exit 2 with nothing sent, after it exit 1. --json prints one
// JSON object for scripts.
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "daemon/generator.h"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

// ---------------------------------------------------------------------------
// Log-linear histogram (HDR-style): values in ns; 2^7 linear sub-buckets per
// power of two, so any recorded value is reported within 1/128 (< 0.8 %).
class Histogram {
 public:
  static constexpr int kSubBits = 7;
  static constexpr std::uint64_t kSub = 1ull << kSubBits;

  Histogram() : counts_((64 - kSubBits + 1) * kSub, 0) {}

  void record(std::uint64_t ns) {
    ++counts_[index(ns)];
    ++total_;
    sum_ += static_cast<double>(ns);
    max_ = std::max(max_, ns);
  }
  void record_seconds(double s) { record(static_cast<std::uint64_t>(std::max(0.0, s) * 1e9)); }
  void merge(const Histogram& o) {
    for (std::size_t i = 0; i < counts_.size(); ++i) counts_[i] += o.counts_[i];
    total_ += o.total_;
    sum_ += o.sum_;
    max_ = std::max(max_, o.max_);
  }
  void reset() {
    std::fill(counts_.begin(), counts_.end(), 0);
    total_ = 0;
    sum_ = 0;
    max_ = 0;
  }
  // Percentile p in [0, 100], in milliseconds (upper edge of the bucket, capped by the max seen).
  double percentile_ms(double p) const {
    if (total_ == 0) return 0;
    const auto target =
        std::max<std::uint64_t>(1, static_cast<std::uint64_t>(std::ceil(p / 100.0 * static_cast<double>(total_))));
    std::uint64_t seen = 0;
    for (std::size_t b = 0; b < counts_.size(); ++b) {
      seen += counts_[b];
      if (seen >= target) return static_cast<double>(std::min(upper(b), max_)) / 1e6;
    }
    return static_cast<double>(max_) / 1e6;
  }
  double mean_ms() const { return total_ ? sum_ / static_cast<double>(total_) / 1e6 : 0; }
  double max_ms() const { return static_cast<double>(max_) / 1e6; }
  std::uint64_t count() const { return total_; }

 private:
  static std::size_t index(std::uint64_t v) {
    if (v < kSub) return static_cast<std::size_t>(v);
    const int e = 63 - __builtin_clzll(v);  // >= kSubBits
    const std::uint64_t sub = (v >> (e - kSubBits)) & (kSub - 1);
    return static_cast<std::size_t>((static_cast<std::uint64_t>(e - kSubBits + 1) << kSubBits) + sub);
  }
  static std::uint64_t upper(std::size_t i) {
    if (i < kSub) return i;
    const std::uint64_t e = (i >> kSubBits) + kSubBits - 1;
    const std::uint64_t sub = i & (kSub - 1);
    const std::uint64_t width = 1ull << (e - kSubBits);
    return ((kSub + sub) << (e - kSubBits)) + width - 1;
  }

  std::vector<std::uint64_t> counts_;
  std::uint64_t total_ = 0;
  double sum_ = 0;
  std::uint64_t max_ = 0;
};

// ---------------------------------------------------------------------------
struct Options {
  std::string mode = "tcp";
  std::string tcp_target = "127.0.0.1:8471";
  std::string http_target = "127.0.0.1:8470";
  std::string metrics_url;  // default: http://<http_target>/metrics
  int connections = 4;
  int threads = 1;
  std::uint64_t events = 1'000'000;
  std::uint64_t customers = 1'000'000;
  double zipf = 1.1;
  std::uint64_t seed = 1;
  std::string file;
  double rate = 0;             // events/s overall (requests/s for query); 0 = closed loop
  double duration = 0;         // seconds; 0 = send the prepared events once
  std::uint64_t requests = 0;  // query: requests to send; batchget: ids to ask for (default --events)
  std::size_t batch = 1000;    // events per TCP write / HTTP request
  std::size_t window = 10000;  // TCP: max unacknowledged lines per connection
  bool verify = true;
  bool json = false;
  std::string token;
  double report_interval = 0;  // seconds; 0 = no interval reports
  std::string interval_file;   // where interval reports go (default stderr)
  std::string label;
  bool quiet = false;
  std::string write_events;      // write the prepared events to this file and exit
  bool cycle_customers = false;  // generated events: customer of event i = c<i mod customers> (every customer appears)
};

tcp::endpoint endpoint_of(const std::string& target) {
  const auto colon = target.rfind(':');
  if (colon == std::string::npos) throw std::runtime_error("address must be host:port: " + target);
  std::string host = target.substr(0, colon);
  if (host == "localhost") host = "127.0.0.1";
  return {asio::ip::make_address(host), static_cast<unsigned short>(std::stoi(target.substr(colon + 1)))};
}

// The lines one connection sends, in one contiguous buffer.
struct Lines {
  std::string data;               // every line, each ending in '\n'
  std::vector<std::size_t> ends;  // ends[i] = offset just past line i's '\n'
  std::size_t size() const { return ends.size(); }
  std::size_t begin_of(std::size_t i) const { return i == 0 ? 0 : ends[i - 1]; }
  std::string_view range(std::size_t i, std::size_t j) const {
    return std::string_view(data).substr(begin_of(i), ends[j - 1] - begin_of(i));
  }
  void add(std::string_view line) {
    data.append(line);
    if (data.empty() || data.back() != '\n') data.push_back('\n');
    ends.push_back(data.size());
  }
};

// Value of a string field ("name":"value") in a JSON line; empty if absent.
std::string_view string_field(std::string_view line, std::string_view name) {
  const std::string key = "\"" + std::string(name) + "\":\"";
  const auto at = line.find(key);
  if (at == std::string_view::npos) return {};
  const auto start = at + key.size();
  const auto end = line.find('"', start);
  return end == std::string_view::npos ? std::string_view{} : line.substr(start, end - start);
}

// Appends line [i] of `lines`, renamed for round `round` (> 0): the event_id gets "~<round>".
void append_renamed(std::string& out, std::string_view line, std::uint64_t round) {
  static constexpr std::string_view kKey = "\"event_id\":\"";
  const auto at = line.find(kKey);
  const auto end = at == std::string_view::npos ? at : line.find('"', at + kKey.size());
  if (end == std::string_view::npos) {
    out.append(line);
    return;
  }
  out.append(line.substr(0, end));
  out.push_back('~');
  out.append(std::to_string(round));
  out.append(line.substr(end));
}

// The customers in a batchGet answer: each object starts with {"customer_id":" (inside a JSON string a quote
// is escaped, so the sequence cannot occur there).
std::uint64_t count_customers(std::string_view body) {
  static constexpr std::string_view kKey = "{\"customer_id\":\"";
  std::uint64_t n = 0;
  for (auto at = body.find(kKey); at != std::string_view::npos; at = body.find(kKey, at + kKey.size())) ++n;
  return n;
}

// The strings in the answer's "missing" array (the last member); nullopt when there is none.
std::optional<std::uint64_t> count_missing(std::string_view body) {
  static constexpr std::string_view kKey = "\"missing\":[";
  const auto at = body.rfind(kKey);
  if (at == std::string_view::npos) return std::nullopt;
  std::uint64_t n = 0;
  bool in_string = false;
  for (std::size_t i = at + kKey.size(); i < body.size(); ++i) {
    const char c = body[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
      ++n;
    } else if (c == ']') {
      return n;
    }
  }
  return std::nullopt;
}

std::string url_escape(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

// Pre-renders the events, dealt round-robin over the connections.
std::vector<Lines> prepare(const Options& o) {
  std::vector<Lines> per(static_cast<std::size_t>(o.connections));
  std::uint64_t i = 0;
  if (!o.file.empty()) {
    std::ifstream in(o.file);
    if (!in) throw std::runtime_error("cannot open " + o.file);
    std::string line;
    while (i < o.events && std::getline(in, line)) {
      if (line.empty()) continue;
      per[i++ % per.size()].add(line);
    }
  } else {
    rapport::GenerateOptions g;
    g.customers = o.customers;
    g.events = o.events;
    g.seed = o.seed;
    g.zipf_exponent = o.zipf;
    g.duplicate_fraction = 0;
    rapport::EventGenerator gen(g);
    std::string line;
    for (; i < o.events; ++i) {
      line.clear();
      gen.next(line);
      if (o.cycle_customers) {
        const auto id = string_field(line, "customer_id");
        const auto at = static_cast<std::size_t>(id.data() - line.data());
        line.replace(at, id.size(), "c" + std::to_string(i % std::max<std::uint64_t>(1, o.customers)));
      }
      per[i % per.size()].add(line);
    }
  }
  return per;
}

// An http:// URL split into "host:port" and path ("host:port" alone, or with a path, is taken as http://).
struct HttpUrl {
  std::string target;  // host:port
  std::string path;    // starts with '/'
};
HttpUrl parse_http_url(const std::string& url) {
  std::string rest = url;
  if (rest.rfind("http://", 0) == 0) {
    rest = rest.substr(7);
  } else if (rest.find("://") != std::string::npos) {
    throw std::runtime_error("--metrics-url must be an http:// URL (the metrics are plain HTTP): " + url);
  }
  const auto slash = rest.find('/');
  HttpUrl u{rest.substr(0, slash), slash == std::string::npos ? "/metrics" : rest.substr(slash)};
  if (u.target.find(':') == std::string::npos) throw std::runtime_error("--metrics-url needs host:port: " + url);
  return u;
}

// One GET; the status code and the body. Throws on connection errors and answers that are not HTTP.
struct HttpAnswer {
  int status = 0;
  std::string body;
};
HttpAnswer http_get(const HttpUrl& url, const std::string& token = {}) {
  asio::io_context io;
  tcp::socket s(io);
  boost::system::error_code connect_ec;
  s.connect(endpoint_of(url.target), connect_ec);
  if (connect_ec) throw std::runtime_error("cannot connect to " + url.target + ": " + connect_ec.message());
  std::string req = "GET " + url.path + " HTTP/1.1\r\nHost: " + url.target + "\r\nConnection: close\r\n";
  if (!token.empty()) req += "Authorization: Bearer " + token + "\r\n";
  req += "\r\n";
  asio::write(s, asio::buffer(req));
  std::string out;
  boost::system::error_code ec;
  char buf[65536];
  for (;;) {
    const std::size_t n = s.read_some(asio::buffer(buf), ec);
    out.append(buf, n);
    if (ec) break;
  }
  if (out.rfind("HTTP/1.", 0) != 0 || out.size() < 12) throw std::runtime_error("the answer is not HTTP");
  const auto head_end = out.find("\r\n\r\n");
  return {std::atoi(out.c_str() + 9), head_end == std::string::npos ? std::string() : out.substr(head_end + 4)};
}

// Sum of every sample of `metric` (all label sets containing `must_contain`) in a Prometheus text exposition.
double metric_sum(const std::string& text, const std::string& metric, const std::string& must_contain) {
  double sum = 0;
  std::size_t pos = 0;
  const std::string key = "\n" + metric + "{";
  while ((pos = text.find(key, pos)) != std::string::npos) {
    const auto eol = text.find('\n', pos + 1);
    const std::string line = text.substr(pos + 1, eol - pos - 1);
    if (line.find(must_contain) != std::string::npos) sum += std::stod(line.substr(line.rfind(' ') + 1));
    pos = eol;
  }
  return sum;
}

struct Counters {
  double accepted = 0, duplicate = 0, rejected = 0;
};
// The daemon's ingest counters for `transport` from --metrics-url. Throws with the reason when they cannot be
// read: connection errors, an answer other than 200, or an exposition without rapport's ingest counters.
Counters read_counters(const Options& o, const std::string& transport) {
  const HttpAnswer a = http_get(parse_http_url(o.metrics_url), o.token);
  if (a.status != 200) {
    std::string body = a.body.substr(0, 300);
    while (!body.empty() && (body.back() == '\n' || body.back() == '\r')) body.pop_back();
    throw std::runtime_error("HTTP " + std::to_string(a.status) + (body.empty() ? "" : ": " + body));
  }
  if (a.body.find("rapport_events_accepted_total") == std::string::npos) {
    throw std::runtime_error("the answer has no rapport_events_accepted_total (not rapportd's metrics?)");
  }
  const std::string sel = "transport=\"" + transport + "\"";
  return {metric_sum(a.body, "rapport_events_accepted_total", sel),
          metric_sum(a.body, "rapport_events_duplicate_total", sel),
          metric_sum(a.body, "rapport_events_rejected_total", sel)};
}

// ---------------------------------------------------------------------------
// Shared run state. One Shard per io thread: its connections record into it
// without locking, except against the interval reporter (a mutex per shard).
struct Shard {
  std::mutex mutex;
  Histogram latency;           // whole run
  Histogram interval;          // since the last interval report
  std::uint64_t events = 0;    // accepted or duplicate, as the server answered
  std::uint64_t requests = 0;  // HTTP requests / TCP chunks completed
  std::uint64_t bytes = 0;     // payload bytes written
  std::uint64_t errors = 0;    // protocol/transport errors and non-2xx answers (except query 404)
  std::uint64_t rejected = 0;  // events the server rejected (bad lines)
  std::uint64_t refused = 0;   // events the server refused (storage unavailable / 503)
  std::uint64_t misses = 0;    // query: 404; batchget: ids answered as missing
  std::uint64_t interval_events = 0;
};

struct Run {
  const Options& o;
  Clock::time_point start;
  std::atomic<bool> stop{false};  // --duration elapsed: send no more
  std::atomic<int> active{0};
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(asio::io_context& io, Run& run, Shard& shard, const Lines& lines, std::vector<std::string> ids)
      : run_(run), o_(run.o), shard_(shard), lines_(lines), ids_(std::move(ids)), socket_(io), timer_(io) {
    per_conn_rate_ = o_.rate > 0 ? o_.rate / o_.connections : 0;
  }
  virtual ~Connection() = default;

  void connect(const tcp::endpoint& ep) {
    socket_.connect(ep);
    socket_.set_option(tcp::no_delay(true));
  }
  virtual void start() = 0;

 protected:
  // Units (events, or requests for query) this connection sends in total; 0 = until --duration.
  std::uint64_t total_units() const {
    if (o_.duration > 0) return 0;
    if (!ids_.empty()) return per_conn_requests_;
    return lines_.size();
  }
  // Open loop: when unit number `sent` is due. Closed loop: now.
  Clock::time_point due(std::uint64_t sent) const {
    if (per_conn_rate_ <= 0) return Clock::now();
    return run_.start + std::chrono::duration_cast<Clock::duration>(
                            std::chrono::duration<double>(static_cast<double>(sent) / per_conn_rate_));
  }
  bool more_to_send(std::uint64_t sent) const {
    if (o_.duration > 0) return !run_.stop.load(std::memory_order_relaxed);
    return sent < total_units();
  }
  // Waits until `when` (open loop), then runs f(when).
  template <typename F>
  void at(Clock::time_point when, F f) {
    if (per_conn_rate_ <= 0 || when <= Clock::now()) {
      f(per_conn_rate_ > 0 ? when : Clock::now());
      return;
    }
    timer_.expires_at(when);
    timer_.async_wait([self = shared_from_this(), f, when](const boost::system::error_code& ec) {
      if (!ec) f(when);
    });
  }
  // Lines [first, first + n) of the endless stream (cycling through `lines_`), as bytes to send.
  // Returns a view into lines_ for round 0, else renders renamed copies into scratch_.
  std::string_view chunk(std::uint64_t first, std::size_t max_n, std::size_t& n) {
    const std::size_t pool = lines_.size();
    const std::uint64_t round = first / pool;
    const std::size_t i = static_cast<std::size_t>(first % pool);
    n = std::min<std::size_t>(max_n, pool - i);
    if (o_.duration <= 0) n = static_cast<std::size_t>(std::min<std::uint64_t>(n, total_units() - first));
    if (round == 0) return lines_.range(i, i + n);
    scratch_.clear();
    for (std::size_t k = i; k < i + n; ++k) append_renamed(scratch_, lines_.range(k, k + 1), round);
    return scratch_;
  }
  void record_latency(Clock::time_point since, Clock::time_point now) {
    const auto ns =
        static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(now - since).count());
    std::lock_guard lock(shard_.mutex);
    shard_.latency.record(ns);
    if (o_.report_interval > 0) shard_.interval.record(ns);
  }
  void fail(const std::string& what) {
    if (failed_) return;
    failed_ = true;
    std::fprintf(stderr, "connection error: %s\n", what.c_str());
    {
      std::lock_guard lock(shard_.mutex);
      ++shard_.errors;
    }
    finish();
  }
  void finish() {
    if (finished_) return;
    finished_ = true;
    boost::system::error_code ignored;
    timer_.cancel();
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    --run_.active;
  }

 public:
  std::uint64_t per_conn_requests_ = 0;

 protected:
  Run& run_;
  const Options& o_;
  Shard& shard_;
  const Lines& lines_;
  std::vector<std::string> ids_;
  tcp::socket socket_;
  asio::steady_timer timer_;
  double per_conn_rate_ = 0;
  std::string scratch_;
  bool failed_ = false;
  bool finished_ = false;
};

// TCP NDJSON with acks (also the sink mode).
class TcpConnection final : public Connection {
 public:
  using Connection::Connection;

  void start() override {
    if (!o_.token.empty()) {
      auth_ = "{\"auth\":\"" + o_.token + "\"}\n";
      asio::async_write(socket_, asio::buffer(auth_), [self = me()](const boost::system::error_code& ec, std::size_t) {
        if (ec) return self->fail("write: " + ec.message());
      });
    }
    read();
    send_next();
  }

 private:
  struct Chunk {
    std::uint64_t last_line;  // 1-based line number of the chunk's last line
    Clock::time_point since;  // intended (open loop) or actual (closed loop) send time
  };
  std::shared_ptr<TcpConnection> me() { return std::static_pointer_cast<TcpConnection>(shared_from_this()); }

  void send_next() {
    if (finished_ || writing_) return;
    if (!more_to_send(sent_)) {
      sending_done_ = true;
      maybe_done();
      return;
    }
    if (sent_ - accounted_ >= o_.window) {
      window_wait_ = true;  // resumed by the next ack
      return;
    }
    writing_ = true;
    at(due(sent_), [self = me()](Clock::time_point since) { self->send_now(since); });
  }

  void send_now(Clock::time_point since) {
    if (finished_) return;
    std::size_t n = 0;
    const std::string_view bytes = chunk(sent_, o_.batch, n);
    sent_ += n;
    ++chunks_;
    pending_.push_back({sent_, since});
    asio::async_write(socket_, asio::buffer(bytes.data(), bytes.size()),
                      [self = me()](const boost::system::error_code& ec, std::size_t written) {
                        self->writing_ = false;
                        if (ec) return self->fail("write: " + ec.message());
                        self->bytes_ += written;
                        self->send_next();
                      });
  }

  void read() {
    socket_.async_read_some(
        asio::buffer(rbuf_ + rlen_, sizeof rbuf_ - rlen_),
        [self = me()](const boost::system::error_code& ec, std::size_t n) { self->on_read(ec, n); });
  }

  void on_read(const boost::system::error_code& ec, std::size_t n) {
    if (finished_) return;
    if (ec) {
      if (sending_done_ && accounted_ >= sent_) return finish();
      return fail("read: " + ec.message() + " (" + std::to_string(accounted_) + " of " + std::to_string(sent_) +
                  " lines answered)");
    }
    rlen_ += n;
    const auto now = Clock::now();
    std::size_t pos = 0;
    std::uint64_t new_events = 0;
    for (;;) {
      const char* nl = static_cast<const char*>(std::memchr(rbuf_ + pos, '\n', rlen_ - pos));
      if (nl == nullptr) break;
      const std::string_view line(rbuf_ + pos, static_cast<std::size_t>(nl - (rbuf_ + pos)));
      pos = static_cast<std::size_t>(nl - rbuf_) + 1;
      if (line.rfind("{\"ack\":", 0) == 0) {
        const std::uint64_t a = std::strtoull(line.data() + 7, nullptr, 10);
        while (!pending_.empty() && pending_.front().last_line <= a) {
          record_latency(pending_.front().since, now);
          pending_.pop_front();
        }
        if (a > acked_) {
          new_events += a - acked_;
          acked_ = a;
        }
        accounted_ = std::max(accounted_, a);
      } else if (line.rfind("{\"line\":", 0) == 0) {
        ++rejected_here_;
        ++rejected_total_;
      } else if (line.rfind("{\"auth\":", 0) == 0) {
        // auth ok
      } else if (line.find("\"from_line\":") != std::string_view::npos) {
        // {"error":"storage unavailable: ...","from_line":a,"to_line":b}: those lines are not acked.
        const auto f = line.find("\"from_line\":");
        const auto t = line.find("\"to_line\":");
        const std::uint64_t a = std::strtoull(line.data() + f + 12, nullptr, 10);
        const std::uint64_t b = t == std::string_view::npos ? a : std::strtoull(line.data() + t + 10, nullptr, 10);
        if (b >= a) {
          refused_here_ += b - a + 1;
          refused_ranges_.emplace_back(a, b);
        }
        accounted_ = std::max(accounted_, b);
        while (!pending_.empty() && pending_.front().last_line <= b) pending_.pop_front();
      } else {
        fail("server: " + std::string(line));
        return;
      }
    }
    std::memmove(rbuf_, rbuf_ + pos, rlen_ - pos);
    rlen_ -= pos;
    if (rlen_ == sizeof rbuf_) return fail("answer line too long");
    // Accepted or duplicate so far: acked lines minus rejected ones minus refused ranges below the ack.
    std::uint64_t refused_below = 0;
    for (const auto& [a, b] : refused_ranges_)
      if (b <= acked_) refused_below += b - a + 1;
    const std::uint64_t bad = rejected_total_ + refused_below;
    const std::uint64_t ok = acked_ > bad ? acked_ - bad : 0;
    if (ok != reported_ok_ || rejected_here_ || refused_here_) {
      std::lock_guard lock(shard_.mutex);
      if (ok > reported_ok_) {
        shard_.events += ok - reported_ok_;
        shard_.interval_events += ok - reported_ok_;
        reported_ok_ = ok;
      }
      shard_.rejected += rejected_here_;
      shard_.refused += refused_here_;
      rejected_here_ = 0;
      refused_here_ = 0;
    }
    if (window_wait_ && sent_ - accounted_ < o_.window) {
      window_wait_ = false;
      send_next();
    }
    if (sending_done_ && accounted_ >= sent_) {
      maybe_done();
      if (finished_) return;
    }
    read();
  }

  void maybe_done() {
    if (sending_done_ && !writing_ && accounted_ >= sent_) {
      {
        std::lock_guard lock(shard_.mutex);
        shard_.requests += chunks_;
        shard_.bytes += bytes_;
      }
      finish();
    }
  }

  char rbuf_[1 << 16];
  std::size_t rlen_ = 0;
  std::string auth_;
  std::deque<Chunk> pending_;
  std::uint64_t sent_ = 0, acked_ = 0, accounted_ = 0;
  std::uint64_t rejected_here_ = 0, refused_here_ = 0, rejected_total_ = 0, reported_ok_ = 0;
  std::uint64_t chunks_ = 0, bytes_ = 0;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> refused_ranges_;
  bool writing_ = false, sending_done_ = false, window_wait_ = false;
};

// HTTP keep-alive: one request in flight per connection.
class HttpConnection final : public Connection {
 public:
  HttpConnection(asio::io_context& io, Run& run, Shard& shard, const Lines& lines, std::vector<std::string> ids,
                 bool single, bool batch_get)
      : Connection(io, run, shard, lines, std::move(ids)), single_(single), batch_get_(batch_get) {}

  void start() override { send_next(); }

 private:
  std::shared_ptr<HttpConnection> me() { return std::static_pointer_cast<HttpConnection>(shared_from_this()); }
  bool query() const { return !ids_.empty(); }

  void send_next() {
    if (finished_) return;
    if (!more_to_send(sent_)) return finish();
    at(due(sent_), [self = me()](Clock::time_point since) { self->send_now(since); });
  }

  void send_now(Clock::time_point since) {
    if (finished_) return;
    since_ = since;
    head_.clear();
    std::string_view body;
    if (batch_get_) {
      // The next ids of this connection's list (cycled), as they are written in the events (JSON-escaped).
      std::uint64_t n = o_.batch;
      if (o_.duration <= 0) n = std::min<std::uint64_t>(n, total_units() - sent_);
      in_request_ = static_cast<std::size_t>(n);
      scratch_ = "{\"ids\":[";
      for (std::uint64_t k = 0; k < n; ++k) {
        if (k != 0) scratch_.push_back(',');
        scratch_.push_back('"');
        scratch_ += ids_[(sent_ + k) % ids_.size()];
        scratch_.push_back('"');
      }
      scratch_ += "]}";
      body = scratch_;
      head_ = "POST /v1/customers:batchGet HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
              std::to_string(body.size()) + "\r\n";
    } else if (query()) {
      in_request_ = 1;
      head_ = "GET /v1/customers/" + ids_[sent_ % ids_.size()] + " HTTP/1.1\r\nHost: x\r\n";
    } else {
      std::size_t n = 0;
      body = chunk(sent_, single_ ? 1 : o_.batch, n);
      in_request_ = n;
      if (single_) body.remove_suffix(1);  // no trailing newline: one JSON object
      head_ = "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: ";
      head_ += single_ ? "application/json" : "application/x-ndjson";
      head_ += "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    }
    if (!o_.token.empty()) head_ += "Authorization: Bearer " + o_.token + "\r\n";
    head_ += "\r\n";
    body_bytes_ = body.size();
    const std::array<asio::const_buffer, 2> bufs{asio::buffer(head_), asio::buffer(body.data(), body.size())};
    asio::async_write(socket_, bufs, [self = me()](const boost::system::error_code& ec, std::size_t) {
      if (ec) return self->fail("write: " + ec.message());
      self->read_response();
    });
  }

  void read_response() {
    response_.emplace();
    response_->body_limit(64 << 20);
    http::async_read(socket_, rbuf_, *response_,
                     [self = me()](const boost::system::error_code& ec, std::size_t) { self->on_response(ec); });
  }

  void on_response(const boost::system::error_code& ec) {
    if (finished_) return;
    if (ec) return fail("read: " + ec.message());
    const auto now = Clock::now();
    const auto& res = response_->get();
    const unsigned status = res.result_int();
    record_latency(since_, now);
    std::uint64_t events = 0, rejected = 0, refused = 0, misses = 0, errors = 0;
    if (batch_get_) {
      const std::uint64_t found = status == 200 ? count_customers(res.body()) : 0;
      const auto missing = status == 200 ? count_missing(res.body()) : std::nullopt;
      if (missing && found + *missing == in_request_) {
        events = found;
        misses = *missing;
      } else {
        errors = 1;
        if (errors_logged_++ < 3) {
          std::fprintf(stderr, "batchGet of %zu ids: HTTP %u, %llu customers: %.200s\n", in_request_, status,
                       static_cast<unsigned long long>(found), res.body().c_str());
        }
      }
    } else if (query()) {
      if (status == 200) {
        events = 1;
      } else if (status == 404) {
        misses = 1;
      } else {
        errors = 1;
      }
    } else if (status == 200) {
      const std::string& b = res.body();
      const auto a = b.find("\"accepted\":");
      const auto d = b.find("\"duplicates\":");
      events = (a == std::string::npos ? 0 : std::strtoull(b.c_str() + a + 11, nullptr, 10)) +
               (d == std::string::npos ? 0 : std::strtoull(b.c_str() + d + 13, nullptr, 10));
      rejected = in_request_ - std::min<std::uint64_t>(in_request_, events);
    } else if (status == 503) {
      refused = in_request_;
    } else {
      errors = 1;
      if (errors_logged_++ < 3) std::fprintf(stderr, "HTTP %u: %.200s\n", status, res.body().c_str());
    }
    {
      std::lock_guard lock(shard_.mutex);
      shard_.events += events;
      shard_.interval_events += events;
      shard_.rejected += rejected;
      shard_.refused += refused;
      shard_.misses += misses;
      shard_.errors += errors;
      shard_.bytes += body_bytes_;
      ++shard_.requests;
    }
    sent_ += in_request_;
    if (!res.keep_alive()) return fail("server closed the connection");
    send_next();
  }

  bool single_;
  bool batch_get_;
  std::string head_;
  Clock::time_point since_;
  std::size_t in_request_ = 0;
  std::size_t body_bytes_ = 0;
  std::uint64_t sent_ = 0;
  int errors_logged_ = 0;
  beast::flat_buffer rbuf_;
  std::optional<http::response_parser<http::string_body>> response_;
};

double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (const char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    if (static_cast<unsigned char>(c) < 0x20) continue;
    out.push_back(c);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{
      "rapport-loadgen — load generator for rapportd (runs in its own process).\n"
      "Prints one summary line (or --json), exits 1 on errors or when the daemon's counters do not match."};
  app.add_option("--mode", o.mode,
                 "tcp (NDJSON with acks) | http-batch (NDJSON bodies) | http-single (one event per request) | "
                 "query (GET /v1/customers/{id}) | batchget (POST /v1/customers:batchGet, --batch ids per request; "
                 "events_per_s counts customers) | sink (tcp protocol against rapport-sink; no verification)")
      ->check(CLI::IsMember({"tcp", "http-batch", "http-single", "query", "batchget", "sink"}));
  app.add_option("--tcp", o.tcp_target, "TCP NDJSON address of rapportd or rapport-sink (default 127.0.0.1:8471)");
  app.add_option("--http", o.http_target,
                 "rapportd HTTP address (default 127.0.0.1:8470; also used for /metrics unless --metrics-url)");
  app.add_option("--metrics-url", o.metrics_url,
                 "Where the daemon's Prometheus metrics are read for the verification (default "
                 "http://<--http>/metrics; give the [metrics] address when /metrics has its own listener, e.g. "
                 "http://127.0.0.1:9470/metrics)");
  app.add_option("-c,--connections", o.connections, "Concurrent connections (default 4)")->check(CLI::Range(1, 4096));
  app.add_option("--threads", o.threads, "io threads driving the connections (default 1)")->check(CLI::Range(1, 64));
  app.add_option("-n,--events", o.events,
                 "Events to prepare and send (default 1000000); with --duration, the pool cycled through");
  app.add_option("--customers", o.customers, "Distinct customers when generating (default 1000000)");
  app.add_option("--zipf", o.zipf, "Customer skew exponent when generating (default 1.1; 0 = uniform)")
      ->check(CLI::Range(0.0, 5.0));
  app.add_option("--seed", o.seed, "Generator seed (default 1)");
  app.add_option("--file", o.file,
                 "Read events from this NDJSON file (e.g. rapportctl generate) instead of generating");
  app.add_option("--rate", o.rate,
                 "Open loop: target events/s overall (requests/s for query); default 0 = closed loop");
  app.add_option(
      "--duration", o.duration,
      "Send for this many seconds, cycling through the events with fresh event_ids (default 0 = each event once)");
  app.add_option("--requests", o.requests,
                 "query: requests to send; batchget: customer ids to ask for (default: --events)");
  app.add_option("--batch", o.batch, "Events per TCP write / HTTP batch request (default 1000)")
      ->check(CLI::Range(1, 1'000'000));
  app.add_option("--window", o.window, "TCP: max unacknowledged lines per connection (default 10000)")
      ->check(CLI::Range(1, 1'000'000'000));
  app.add_option("--token", o.token, "Bearer token (HTTP Authorization, TCP auth line)");
  app.add_flag("!--no-verify", o.verify, "Skip checking the daemon's counters against what it acknowledged");
  app.add_flag("--json", o.json, "Print the summary as one JSON object on stdout");
  app.add_option(
      "--report-interval", o.report_interval,
      "Every this many seconds, print a JSON line (t, events/s, p50/p99/max ms of the interval) (default 0 = off)");
  app.add_option("--interval-file", o.interval_file, "Write the interval lines to this file instead of stderr");
  app.add_option("--label", o.label, "Free text copied into the JSON output (for scripts)");
  app.add_flag("-q,--quiet", o.quiet, "No progress messages on stderr");
  app.add_flag("--cycle-customers", o.cycle_customers,
               "Generated events: event i goes to customer c<i mod --customers>, so every customer appears "
               "(memory tests with many customers)");
  app.add_option("--write-events", o.write_events,
                 "Write the prepared events (file or generated) as NDJSON to this file and exit without connecting");
  CLI11_PARSE(app, argc, argv);
  if (o.mode == "sink") o.verify = false;
  if (o.metrics_url.empty()) o.metrics_url = "http://" + o.http_target + "/metrics";
  try {
    parse_http_url(o.metrics_url);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rapport-loadgen: %s\n", e.what());
    return 2;
  }
  const bool batch_get = o.mode == "batchget";
  if (batch_get && o.batch > 1000) {
    std::fprintf(stderr, "rapport-loadgen: batchget asks for at most 1000 ids per request (--batch %zu)\n", o.batch);
    return 2;
  }
  const bool query = o.mode == "query" || batch_get;
  const bool tcp_like = o.mode == "tcp" || o.mode == "sink";

  if (!o.quiet) std::fprintf(stderr, "preparing %llu events...\n", static_cast<unsigned long long>(o.events));
  std::vector<Lines> per_conn;
  std::vector<std::vector<std::string>> ids(static_cast<std::size_t>(o.connections));
  try {
    per_conn = prepare(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rapport-loadgen: %s\n", e.what());
    return 2;
  }
  std::uint64_t prepared = 0;
  for (const auto& l : per_conn) prepared += l.size();
  if (prepared == 0) {
    std::fprintf(stderr, "rapport-loadgen: no events\n");
    return 2;
  }
  if (!o.write_events.empty()) {
    std::FILE* f = std::fopen(o.write_events.c_str(), "wb");
    if (f == nullptr) {
      std::fprintf(stderr, "rapport-loadgen: cannot write %s\n", o.write_events.c_str());
      return 2;
    }
    // Back in the original order (they were dealt round-robin).
    for (std::size_t i = 0; i < per_conn[0].size(); ++i)
      for (const auto& l : per_conn)
        if (i < l.size()) {
          const auto line = l.range(i, i + 1);
          std::fwrite(line.data(), 1, line.size(), f);
        }
    std::fclose(f);
    return 0;
  }
  for (auto& l : per_conn)
    if (l.size() == 0) l.add(per_conn[0].range(0, 1));  // more connections than events
  if (query) {
    // Ids in the events' order (so Zipf-skewed like them), each connection its share.
    for (std::size_t c = 0; c < per_conn.size(); ++c) {
      for (std::size_t i = 0; i < per_conn[c].size(); ++i) {
        const auto id = string_field(per_conn[c].range(i, i + 1), "customer_id");
        if (!id.empty()) ids[c].push_back(batch_get ? std::string(id) : url_escape(id));
      }
      if (ids[c].empty()) ids[c].push_back("none");
    }
  }
  const std::uint64_t query_total = o.requests ? o.requests : o.events;
  const std::string transport = tcp_like ? "tcp" : "http";

  Counters before;
  if (o.verify && !query) {
    try {
      before = read_counters(o, transport);
    } catch (const std::exception& e) {
      std::fprintf(stderr,
                   "rapport-loadgen: cannot read the daemon's metrics at %s: %s; nothing sent. Pass --metrics-url "
                   "(the [metrics] address when /metrics has its own listener) or --no-verify\n",
                   o.metrics_url.c_str(), e.what());
      return 2;
    }
  }

  Run run{o, Clock::now()};
  std::vector<std::unique_ptr<asio::io_context>> ios;
  std::vector<std::unique_ptr<Shard>> shards;
  for (int t = 0; t < o.threads; ++t) {
    ios.push_back(std::make_unique<asio::io_context>(1));
    shards.push_back(std::make_unique<Shard>());
  }
  std::vector<std::shared_ptr<Connection>> conns;
  try {
    const tcp::endpoint ep = endpoint_of(tcp_like ? o.tcp_target : o.http_target);
    for (int c = 0; c < o.connections; ++c) {
      const std::size_t t = static_cast<std::size_t>(c % o.threads);
      std::shared_ptr<Connection> conn;
      if (tcp_like) {
        conn = std::make_shared<TcpConnection>(*ios[t], run, *shards[t], per_conn[static_cast<std::size_t>(c)],
                                               std::vector<std::string>{});
      } else {
        conn = std::make_shared<HttpConnection>(*ios[t], run, *shards[t], per_conn[static_cast<std::size_t>(c)],
                                                std::move(ids[static_cast<std::size_t>(c)]), o.mode == "http-single",
                                                batch_get);
        conn->per_conn_requests_ =
            query_total / static_cast<std::uint64_t>(o.connections) +
            (static_cast<std::uint64_t>(c) < query_total % static_cast<std::uint64_t>(o.connections));
      }
      conn->connect(ep);
      conns.push_back(std::move(conn));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rapport-loadgen: connect to %s: %s\n", (tcp_like ? o.tcp_target : o.http_target).c_str(),
                 e.what());
    return 2;
  }

  run.active = o.connections;
  const double cpu_before = cpu_seconds();
  run.start = Clock::now();
  for (std::size_t c = 0; c < conns.size(); ++c) {
    asio::post(*ios[c % ios.size()], [conn = conns[c]] { conn->start(); });
  }
  conns.clear();  // the handlers hold them now
  std::vector<std::thread> threads;
  for (auto& io : ios) threads.emplace_back([&io] { io->run(); });

  // Reporter: --duration and --report-interval.
  std::FILE* interval_out = stderr;
  if (!o.interval_file.empty()) {
    interval_out = std::fopen(o.interval_file.c_str(), "w");
    if (interval_out == nullptr) interval_out = stderr;
  }
  auto last_report = run.start;
  while (run.active.load() > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const auto now = Clock::now();
    const double elapsed = std::chrono::duration<double>(now - run.start).count();
    if (o.duration > 0 && elapsed >= o.duration) run.stop = true;
    if (o.report_interval > 0 && std::chrono::duration<double>(now - last_report).count() >= o.report_interval) {
      Histogram h;
      std::uint64_t ev = 0;
      for (auto& s : shards) {
        std::lock_guard lock(s->mutex);
        h.merge(s->interval);
        s->interval.reset();
        ev += s->interval_events;
        s->interval_events = 0;
      }
      const double dt = std::chrono::duration<double>(now - last_report).count();
      last_report = now;
      std::fprintf(interval_out,
                   "{\"t\":%.3f,\"unix\":%.3f,\"events_per_s\":%.0f,\"answers\":%llu,\"p50_ms\":%.3f,\"p99_ms\":%.3f,"
                   "\"max_ms\":%.3f}\n",
                   elapsed, std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count(),
                   static_cast<double>(ev) / dt, static_cast<unsigned long long>(h.count()), h.percentile_ms(50),
                   h.percentile_ms(99), h.max_ms());
      std::fflush(interval_out);
    }
  }
  for (auto& t : threads) t.join();
  const double secs = std::chrono::duration<double>(Clock::now() - run.start).count();
  const double cpu_used = cpu_seconds() - cpu_before;
  if (interval_out != stderr) std::fclose(interval_out);

  Shard total;
  for (auto& s : shards) {
    total.latency.merge(s->latency);
    total.events += s->events;
    total.requests += s->requests;
    total.bytes += s->bytes;
    total.errors += s->errors;
    total.rejected += s->rejected;
    total.refused += s->refused;
    total.misses += s->misses;
  }
  const double units = static_cast<double>(total.events + (query ? total.misses : 0));

  // Verify: the daemon's counters moved by what it acknowledged as accepted or duplicate.
  bool verified = false, verify_ok = true;
  std::string metrics_error;  // set when the counters could not be read after the run
  Counters delta;
  if (o.verify && !query) {
    verified = true;
    for (int attempt = 0; attempt < 40; ++attempt) {  // counters may trail the last answer by a moment
      Counters after;
      try {
        after = read_counters(o, transport);
      } catch (const std::exception& e) {
        metrics_error = e.what();
        verified = false;
        break;
      }
      delta = {after.accepted - before.accepted, after.duplicate - before.duplicate, after.rejected - before.rejected};
      verify_ok = delta.accepted + delta.duplicate == static_cast<double>(total.events) &&
                  delta.rejected == static_cast<double>(total.rejected);
      if (verify_ok) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }

  const double eps = units / secs;
  const double mbps = static_cast<double>(total.bytes) / secs / 1e6;
  const auto& h = total.latency;
  if (o.json) {
    std::printf(
        "{\"label\":\"%s\",\"mode\":\"%s\",\"connections\":%d,\"threads\":%d,\"batch\":%zu,\"rate_target\":%.0f,"
        "\"duration_target\":%.1f,\"events\":%llu,\"requests\":%llu,\"bytes\":%llu,\"seconds\":%.3f,"
        "\"events_per_s\":%.0f,\"requests_per_s\":%.0f,\"MB_per_s\":%.2f,\"loadgen_cpu_s\":%.3f,\"process_cpu_s\":%.3f,"
        "\"latency_ms\":{\"count\":%llu,\"mean\":%.3f,\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"max\":%."
        "3f},"
        "\"errors\":%llu,\"rejected\":%llu,\"refused\":%llu,\"misses\":%llu,"
        "\"verify\":{\"checked\":%s,\"ok\":%s,\"daemon_accepted\":%.0f,\"daemon_duplicate\":%.0f,\"daemon_rejected\":%."
        "0f}}\n",
        json_escape(o.label).c_str(), o.mode.c_str(), o.connections, o.threads, o.batch, o.rate, o.duration,
        static_cast<unsigned long long>(units), static_cast<unsigned long long>(total.requests),
        static_cast<unsigned long long>(total.bytes), secs, eps, static_cast<double>(total.requests) / secs, mbps,
        cpu_used, cpu_seconds(), static_cast<unsigned long long>(h.count()), h.mean_ms(), h.percentile_ms(50),
        h.percentile_ms(90), h.percentile_ms(99), h.percentile_ms(99.9), h.max_ms(),
        static_cast<unsigned long long>(total.errors), static_cast<unsigned long long>(total.rejected),
        static_cast<unsigned long long>(total.refused), static_cast<unsigned long long>(total.misses),
        verified ? "true" : "false", verify_ok ? "true" : "false", delta.accepted, delta.duplicate, delta.rejected);
  } else {
    std::printf(
        "mode=%s connections=%d events=%.0f seconds=%.3f events_per_s=%.0f requests_per_s=%.0f MB_per_s=%.1f "
        "ack_p50_ms=%.3f ack_p99_ms=%.3f ack_p999_ms=%.3f ack_max_ms=%.3f errors=%llu rejected=%llu "
        "refused=%llu misses=%llu\n",
        o.mode.c_str(), o.connections, units, secs, eps, static_cast<double>(total.requests) / secs, mbps,
        h.percentile_ms(50), h.percentile_ms(99), h.percentile_ms(99.9), h.max_ms(),
        static_cast<unsigned long long>(total.errors), static_cast<unsigned long long>(total.rejected),
        static_cast<unsigned long long>(total.refused), static_cast<unsigned long long>(total.misses));
  }
  std::fflush(stdout);
  if (!metrics_error.empty()) {
    std::fprintf(stderr, "verify not done: cannot read the daemon's metrics at %s after the run: %s\n",
                 o.metrics_url.c_str(), metrics_error.c_str());
    return 1;
  }
  if (verified) {
    if (!verify_ok) {
      std::fprintf(stderr,
                   "verify FAILED: daemon counted accepted+duplicate=%.0f rejected=%.0f, it answered %llu accepted or "
                   "duplicate and %llu rejected\n",
                   delta.accepted + delta.duplicate, delta.rejected, static_cast<unsigned long long>(total.events),
                   static_cast<unsigned long long>(total.rejected));
      return 1;
    }
    if (!o.quiet)
      std::fprintf(stderr, "verify ok: daemon counters moved by exactly the %llu events acknowledged\n",
                   static_cast<unsigned long long>(total.events));
  }
  return total.errors == 0 && total.refused == 0 ? 0 : 1;
}
