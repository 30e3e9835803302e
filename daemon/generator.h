// Synthetic event generator for tests, demos and benchmarks
// (`rapportctl generate`): realistic NDJSON events over every type and
// channel, Zipf-skewed customers, some late (out-of-order) events and some
// exact duplicates (connector retries). Deterministic for a given seed.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

namespace rapport {

struct GenerateOptions {
  std::uint64_t customers = 1000;
  std::uint64_t events = 10000;
  std::uint64_t seed = 1;
  double zipf_exponent = 1.1;     // customer popularity skew
  double late_fraction = 0.02;    // events whose ts is up to 30 days before their neighbours
  double duplicate_fraction = 0.01;  // lines repeated verbatim later in the stream
  std::int64_t end_ms = 0;        // latest timestamp (0 = now - 1 hour)
  std::int64_t span_days = 730;   // events spread over this many days before end_ms
};

// Writes options.events lines (duplicates included in the count) to `out`.
void generate_events(const GenerateOptions& options, std::FILE* out);

// One event line per call, for load generators that stream without a file.
class EventGenerator {
 public:
  explicit EventGenerator(const GenerateOptions& options);
  ~EventGenerator();
  EventGenerator(const EventGenerator&) = delete;
  EventGenerator& operator=(const EventGenerator&) = delete;
  // Appends the next line including its '\n'.
  void next(std::string& out);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rapport
