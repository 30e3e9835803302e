#include "daemon/generator.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace rapport {
namespace {

constexpr const char* kChannels[] = {"twitter", "facebook", "instagram", "email", "chat", "phone",
                                     "store",   "web",      "app",       "survey", "tiktok"};

struct TypeMix {
  const char* name;
  double weight;
};
constexpr TypeMix kTypes[] = {
    {"engagement", 30}, {"purchase", 22}, {"support", 10}, {"social", 8},   {"review", 6},      {"survey", 6},
    {"complaint", 4},   {"refund", 3},    {"referral", 4}, {"renewal", 5}, {"cancellation", 2},
};

// Zipf sampling by inverse CDF over a precomputed table (exact, O(log n) per draw).
class Zipf {
 public:
  Zipf(std::uint64_t n, double s) : cdf_(n) {
    double sum = 0;
    for (std::uint64_t k = 0; k < n; ++k) {
      sum += 1.0 / std::pow(static_cast<double>(k + 1), s);
      cdf_[k] = sum;
    }
    for (double& c : cdf_) c /= sum;
  }
  std::uint64_t operator()(std::mt19937_64& rng) {
    const double u = std::uniform_real_distribution<double>(0, 1)(rng);
    return static_cast<std::uint64_t>(std::lower_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin());
  }

 private:
  std::vector<double> cdf_;
};

void format_rfc3339(std::int64_t ms, char* buf, std::size_t size) {
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  std::snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000));
}

}  // namespace

struct EventGenerator::Impl {
  explicit Impl(const GenerateOptions& o)
      : options(o), rng(o.seed), zipf(std::max<std::uint64_t>(o.customers, 1), o.zipf_exponent) {
    end_ms = o.end_ms != 0 ? o.end_ms
                           : std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                     .count() -
                                 3600 * 1000;
    start_ms = end_ms - o.span_days * 86400 * 1000;
    // Customers are shuffled so that the popular ones are not simply c0, c1, ...
    permutation.resize(std::max<std::uint64_t>(o.customers, 1));
    for (std::uint64_t i = 0; i < permutation.size(); ++i) permutation[i] = i;
    std::shuffle(permutation.begin(), permutation.end(), rng);
    double total = 0;
    for (const auto& t : kTypes) total += t.weight;
    double acc = 0;
    for (const auto& t : kTypes) {
      acc += t.weight / total;
      type_cdf.push_back(acc);
    }
  }

  void next(std::string& out) {
    std::uniform_real_distribution<double> u(0, 1);
    if (!recent.empty() && u(rng) < options.duplicate_fraction) {
      out += recent[std::uniform_int_distribution<std::size_t>(0, recent.size() - 1)(rng)];
      ++produced;
      return;
    }
    const std::uint64_t n = std::max<std::uint64_t>(options.events, 1);
    std::int64_t ts = start_ms + static_cast<std::int64_t>(static_cast<double>(end_ms - start_ms) *
                                                           static_cast<double>(produced) / static_cast<double>(n));
    if (u(rng) < options.late_fraction) ts -= static_cast<std::int64_t>(u(rng) * 30 * 86400 * 1000.0);
    ts = std::max(ts, std::int64_t{0});
    const std::uint64_t customer = permutation[zipf(rng)];
    const double pick = u(rng);
    std::size_t type = 0;
    while (type + 1 < std::size(kTypes) && pick > type_cdf[type]) ++type;
    const char* channel = kChannels[std::uniform_int_distribution<std::size_t>(0, std::size(kChannels) - 1)(rng)];
    const std::string_view name = kTypes[type].name;
    if (name == "survey") channel = "survey";

    char line[512];
    int len = 0;
    auto put = [&](const char* fmt, auto... args) {
      len += std::snprintf(line + len, sizeof line - static_cast<std::size_t>(len), fmt, args...);
    };
    put("{\"event_id\":\"e%llu\",\"customer_id\":\"c%llu\",", static_cast<unsigned long long>(serial++),
        static_cast<unsigned long long>(customer));
    if (u(rng) < 0.5) {
      char ts_buf[96];
      format_rfc3339(ts, ts_buf, sizeof ts_buf);
      put("\"ts\":\"%s\",", ts_buf);
    } else {
      put("\"ts\":%lld,", static_cast<long long>(ts));
    }
    put("\"type\":\"%s\",\"channel\":\"%s\"", kTypes[type].name, channel);
    auto sentiment = [&] { return std::round((u(rng) * 2 - 0.7) * 100) / 100; };
    if (name == "purchase") {
      put(",\"amount\":%.2f", std::exp(std::normal_distribution<double>(3.3, 0.8)(rng)));
    } else if (name == "refund") {
      put(",\"amount\":%.2f", std::exp(std::normal_distribution<double>(2.8, 0.8)(rng)));
    } else if (name == "support" || name == "social") {
      put(",\"sentiment\":%.2f", std::clamp(sentiment(), -1.0, 1.0));
    } else if (name == "complaint") {
      put(",\"sentiment\":%.2f", -u(rng));
    } else if (name == "survey") {
      if (u(rng) < 0.5) {
        put(",\"nps\":%d", std::uniform_int_distribution<int>(0, 10)(rng));
      } else {
        put(",\"csat\":%d", std::uniform_int_distribution<int>(1, 5)(rng));
      }
    } else if (name == "review") {
      put(",\"rating\":%d", std::uniform_int_distribution<int>(1, 5)(rng));
    }
    put("}\n");
    out.append(line, static_cast<std::size_t>(len));
    if (recent.size() < 1024) {
      recent.emplace_back(line, static_cast<std::size_t>(len));
    } else {
      recent[std::uniform_int_distribution<std::size_t>(0, recent.size() - 1)(rng)].assign(
          line, static_cast<std::size_t>(len));
    }
    ++produced;
  }

  GenerateOptions options;
  std::mt19937_64 rng;
  Zipf zipf;
  std::vector<std::uint64_t> permutation;
  std::vector<double> type_cdf;
  std::vector<std::string> recent;
  std::int64_t start_ms = 0;
  std::int64_t end_ms = 0;
  std::uint64_t produced = 0;
  std::uint64_t serial = 0;
};

EventGenerator::EventGenerator(const GenerateOptions& options) : impl_(std::make_unique<Impl>(options)) {}
EventGenerator::~EventGenerator() = default;
void EventGenerator::next(std::string& out) { impl_->next(out); }

void generate_events(const GenerateOptions& options, std::FILE* out) {
  EventGenerator generator(options);
  std::string buffer;
  buffer.reserve(1 << 20);
  for (std::uint64_t i = 0; i < options.events; ++i) {
    generator.next(buffer);
    if (buffer.size() > (1 << 20) - 1024) {
      std::fwrite(buffer.data(), 1, buffer.size(), out);
      buffer.clear();
    }
  }
  std::fwrite(buffer.data(), 1, buffer.size(), out);
}

}  // namespace rapport
