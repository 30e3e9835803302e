// rapport-loadgen: drives a running rapportd from its own process.
//
// Modes: tcp (NDJSON with acks), http-batch (NDJSON bodies), http-single (one
// event per request). Events come from a file (e.g. `rapportctl generate`) or
// are generated on the fly with Zipf-skewed customers. Closed loop (as fast as
// acks allow, bounded window) or open loop at a target rate. Reports events/s,
// MB/s and ack latency percentiles, and checks the daemon's counters moved by
// exactly what was sent.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio.hpp>
#include <CLI/CLI.hpp>

#include "daemon/generator.h"

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

// Log-linear latency histogram (HDR-style): 1 µs .. ~100 s with ~1% resolution.
class Histogram {
 public:
  void record(double seconds) {
    const double us = std::max(1.0, seconds * 1e6);
    const auto bucket = static_cast<std::size_t>(std::log(us) / std::log(1.01));
    std::lock_guard lock(mutex_);
    if (bucket >= counts_.size()) counts_.resize(bucket + 1);
    ++counts_[bucket];
    ++total_;
  }
  double percentile(double p) const {
    std::lock_guard lock(mutex_);
    const auto target = static_cast<std::uint64_t>(std::ceil(p / 100.0 * static_cast<double>(total_)));
    std::uint64_t seen = 0;
    for (std::size_t b = 0; b < counts_.size(); ++b) {
      seen += counts_[b];
      if (seen >= target && seen > 0) return std::pow(1.01, static_cast<double>(b) + 1) / 1e3;  // ms
    }
    return 0;
  }
  std::uint64_t count() const { return total_; }

 private:
  mutable std::mutex mutex_;
  std::vector<std::uint64_t> counts_;
  std::uint64_t total_ = 0;
};

struct Options {
  std::string mode = "tcp";
  std::string tcp_target = "127.0.0.1:8471";
  std::string http_target = "127.0.0.1:8470";
  int connections = 4;
  std::uint64_t events = 1'000'000;
  std::uint64_t customers = 1'000'000;
  std::uint64_t seed = 1;
  std::string file;
  double rate = 0;           // events/s overall; 0 = closed loop
  std::size_t batch = 1000;  // events per TCP write / HTTP request
  std::size_t window = 100'000;  // TCP: max unacked lines per connection (closed loop)
  bool verify = true;
};

tcp::endpoint endpoint_of(const std::string& target) {
  const auto colon = target.rfind(':');
  return {asio::ip::make_address(target.substr(0, colon)),
          static_cast<unsigned short>(std::stoi(target.substr(colon + 1)))};
}

// Pre-renders every event line, split evenly over the connections.
std::vector<std::vector<std::string>> prepare(const Options& o) {
  std::vector<std::vector<std::string>> per(static_cast<std::size_t>(o.connections));
  std::size_t i = 0;
  auto add = [&](std::string line) { per[i++ % per.size()].push_back(std::move(line)); };
  if (!o.file.empty()) {
    std::ifstream in(o.file);
    std::string line;
    while (std::getline(in, line) && i < o.events) add(line + "\n");
  } else {
    rapport::GenerateOptions g;
    g.customers = o.customers;
    g.events = o.events;
    g.seed = o.seed;
    g.duplicate_fraction = 0;
    rapport::EventGenerator gen(g);
    for (std::uint64_t k = 0; k < o.events; ++k) {
      std::string line;
      gen.next(line);
      add(std::move(line));
    }
  }
  return per;
}

std::string http_get(const std::string& target, const std::string& path) {
  asio::io_context io;
  tcp::socket s(io);
  s.connect(endpoint_of(target));
  const std::string req = "GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  asio::write(s, asio::buffer(req));
  std::string out;
  boost::system::error_code ec;
  char buf[65536];
  for (;;) {
    const std::size_t n = s.read_some(asio::buffer(buf), ec);
    out.append(buf, n);
    if (ec) break;
  }
  return out;
}

// Sum of every sample of `metric` (all label sets) in a Prometheus text exposition.
double metric_sum(const std::string& text, const std::string& metric, const std::string& must_contain) {
  double sum = 0;
  std::size_t pos = 0;
  while ((pos = text.find("\n" + metric + "{", pos)) != std::string::npos) {
    const auto eol = text.find('\n', pos + 1);
    const std::string line = text.substr(pos + 1, eol - pos - 1);
    if (line.find(must_contain) != std::string::npos) sum += std::stod(line.substr(line.rfind(' ') + 1));
    pos = eol;
  }
  return sum;
}

struct Totals {
  std::atomic<std::uint64_t> events{0}, bytes{0}, errors{0};
  Histogram latency;
};

void pace(const Options& o, Clock::time_point start, std::uint64_t sent_by_me) {
  if (o.rate <= 0) return;
  const double per_conn = o.rate / o.connections;
  const auto due = start + std::chrono::duration_cast<Clock::duration>(
                               std::chrono::duration<double>(static_cast<double>(sent_by_me) / per_conn));
  std::this_thread::sleep_until(due);
}

void run_tcp(const Options& o, const std::vector<std::string>& lines, Totals& totals, Clock::time_point start) {
  asio::io_context io;
  tcp::socket s(io);
  s.connect(endpoint_of(o.tcp_target));
  s.set_option(tcp::no_delay(true));
  std::mutex m;
  std::vector<std::pair<std::uint64_t, Clock::time_point>> pending;  // (last line of chunk, sent at)
  std::atomic<std::uint64_t> acked{0};
  std::thread reader([&] {
    std::string buf;
    char tmp[65536];
    boost::system::error_code ec;
    while (acked.load() < lines.size()) {
      const std::size_t n = s.read_some(asio::buffer(tmp), ec);
      if (ec) break;
      buf.append(tmp, n);
      std::size_t nl;
      while ((nl = buf.find('\n')) != std::string::npos) {
        const std::string line = buf.substr(0, nl);
        buf.erase(0, nl + 1);
        if (line.rfind("{\"ack\":", 0) == 0) {
          const std::uint64_t a = std::stoull(line.substr(7));
          const auto now = Clock::now();
          std::lock_guard lock(m);
          while (!pending.empty() && pending.front().first <= a) {
            totals.latency.record(std::chrono::duration<double>(now - pending.front().second).count());
            pending.erase(pending.begin());
          }
          acked = a;
        } else {
          ++totals.errors;
        }
      }
    }
  });
  std::string chunk;
  std::uint64_t sent = 0;
  while (sent < lines.size()) {
    chunk.clear();
    const std::uint64_t end = std::min<std::uint64_t>(lines.size(), sent + o.batch);
    for (std::uint64_t i = sent; i < end; ++i) chunk += lines[i];
    while (o.rate <= 0 && end - acked.load() > o.window) std::this_thread::sleep_for(std::chrono::microseconds(200));
    pace(o, start, sent);
    {
      std::lock_guard lock(m);
      pending.emplace_back(end, Clock::now());
    }
    asio::write(s, asio::buffer(chunk));
    totals.bytes += chunk.size();
    sent = end;
  }
  reader.join();
  totals.events += acked.load();
}

void run_http(const Options& o, const std::vector<std::string>& lines, Totals& totals, Clock::time_point start,
              bool single) {
  asio::io_context io;
  tcp::socket s(io);
  s.connect(endpoint_of(o.http_target));
  s.set_option(tcp::no_delay(true));
  const std::size_t per_request = single ? 1 : o.batch;
  std::string body, req, resp;
  char tmp[65536];
  for (std::uint64_t sent = 0; sent < lines.size();) {
    const std::uint64_t end = std::min<std::uint64_t>(lines.size(), sent + per_request);
    body.clear();
    for (std::uint64_t i = sent; i < end; ++i) body += lines[i];
    if (single) body.pop_back();
    req = "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: " +
          std::string(single ? "application/json" : "application/x-ndjson") +
          "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    pace(o, start, sent);
    const auto t0 = Clock::now();
    asio::write(s, asio::buffer(req));
    resp.clear();
    std::size_t header_end;
    while ((header_end = resp.find("\r\n\r\n")) == std::string::npos) resp.append(tmp, s.read_some(asio::buffer(tmp)));
    const auto cl = resp.find("Content-Length: ");
    const std::size_t length = cl == std::string::npos ? 0 : std::stoul(resp.substr(cl + 16));
    while (resp.size() < header_end + 4 + length) resp.append(tmp, s.read_some(asio::buffer(tmp)));
    totals.latency.record(std::chrono::duration<double>(Clock::now() - t0).count());
    if (resp.compare(9, 3, "200") != 0) ++totals.errors;
    totals.bytes += body.size();
    totals.events += end - sent;
    sent = end;
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"rapport-loadgen — load generator for rapportd (runs in its own process)"};
  app.add_option("--mode", o.mode, "tcp | http-batch | http-single")->check(CLI::IsMember({"tcp", "http-batch", "http-single"}));
  app.add_option("--tcp", o.tcp_target, "rapportd TCP address (default 127.0.0.1:8471)");
  app.add_option("--http", o.http_target, "rapportd HTTP address (default 127.0.0.1:8470; also used for /metrics)");
  app.add_option("-c,--connections", o.connections, "Connections (default 4)")->check(CLI::Range(1, 1024));
  app.add_option("-n,--events", o.events, "Events to send (default 1000000)");
  app.add_option("--customers", o.customers, "Distinct customers when generating (default 1000000, Zipf)");
  app.add_option("--seed", o.seed, "Generator seed (default 1)");
  app.add_option("--file", o.file, "Read events from this NDJSON file instead of generating");
  app.add_option("--rate", o.rate, "Open loop: target events/s overall (default 0 = closed loop)");
  app.add_option("--batch", o.batch, "Events per TCP write / HTTP request (default 1000)")->check(CLI::Range(1, 1'000'000));
  app.add_option("--window", o.window, "TCP closed loop: max unacked lines per connection (default 100000)");
  app.add_flag("!--no-verify", o.verify, "Skip checking the daemon's counters against what was sent");
  CLI11_PARSE(app, argc, argv);

  std::fprintf(stderr, "preparing %llu events...\n", static_cast<unsigned long long>(o.events));
  const auto per_conn = prepare(o);
  const std::string transport = o.mode == "tcp" ? "tcp" : "http";
  const std::string selector = "transport=\"" + transport + "\"";
  double before = 0;
  if (o.verify) {
    const std::string m = http_get(o.http_target, "/metrics");
    before = metric_sum(m, "rapport_events_accepted_total", selector) +
             metric_sum(m, "rapport_events_duplicate_total", selector) +
             metric_sum(m, "rapport_events_rejected_total", selector);
  }
  Totals totals;
  const auto start = Clock::now();
  std::vector<std::thread> threads;
  for (const auto& lines : per_conn) {
    threads.emplace_back([&, &lines = lines] {
      try {
        if (o.mode == "tcp") {
          run_tcp(o, lines, totals, start);
        } else {
          run_http(o, lines, totals, start, o.mode == "http-single");
        }
      } catch (const std::exception& e) {
        std::fprintf(stderr, "connection failed: %s\n", e.what());
        ++totals.errors;
      }
    });
  }
  for (auto& t : threads) t.join();
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  const double events = static_cast<double>(totals.events.load());
  std::printf("mode=%s connections=%d events=%.0f seconds=%.3f events_per_s=%.0f MB_per_s=%.1f "
              "ack_p50_ms=%.3f ack_p99_ms=%.3f ack_p999_ms=%.3f errors=%llu\n",
              o.mode.c_str(), o.connections, events, secs, events / secs,
              static_cast<double>(totals.bytes.load()) / secs / 1e6, totals.latency.percentile(50),
              totals.latency.percentile(99), totals.latency.percentile(99.9),
              static_cast<unsigned long long>(totals.errors.load()));
  if (o.verify) {
    const std::string m = http_get(o.http_target, "/metrics");
    const double after = metric_sum(m, "rapport_events_accepted_total", selector) +
                         metric_sum(m, "rapport_events_duplicate_total", selector) +
                         metric_sum(m, "rapport_events_rejected_total", selector);
    if (after - before != events) {
      std::fprintf(stderr, "verify FAILED: daemon counted %.0f items, loadgen sent %.0f\n", after - before, events);
      return 1;
    }
    std::fprintf(stderr, "verify ok: daemon counted exactly the %.0f events sent\n", events);
  }
  return totals.errors.load() == 0 ? 0 : 1;
}
