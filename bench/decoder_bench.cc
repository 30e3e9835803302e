// Decoder throughput: decode_line on a realistic line and decode_body on a
// 1000-line NDJSON body, each next to a baseline of simdjson's DOM parse alone
// on the same bytes, so the cost of validation and mapping can be quoted as a
// ratio (decoder time / parse time).
#include <benchmark/benchmark.h>
#include <simdjson.h>

#include <cstdint>
#include <string>
#include <vector>

#include "ingest/decoder.h"

namespace {

using rapport::BodyFormat;
using rapport::DecodeSink;
using rapport::Event;
using rapport::RejectReason;

constexpr std::int64_t kNow = 1793534400000;  // 2026-11-01T12:00:00Z

const std::string kLine =
    R"({"event_id":"evt-000000001f3a9c","customer_id":"cust-0042817","ts":"2026-11-01T11:59:58.123Z",)"
    R"("type":"purchase","channel":"web","amount":19.99,"cost":0.35,"sentiment":0.4,)"
    R"("sku":"SKU-88121","session":{"id":"s-77","referrer":"newsletter"}})";

// 1000 varied lines: every event type, both ts forms, unknown extra fields.
std::vector<std::string> make_lines() {
  static constexpr const char* kExtras[] = {
      R"("type":"purchase","channel":"web","amount":42.5,"cost":0.3)",
      R"("type":"support","channel":"chat","sentiment":-0.3,"cost":4.2)",
      R"("type":"survey","channel":"email","nps":9,"csat":4)",
      R"("type":"review","channel":"app","rating":5,"sentiment":0.8)",
      R"("type":"social","channel":"twitter","sentiment":0.1,"post":{"id":"p-9","likes":12})",
      R"("type":"complaint","channel":"phone","cost":7.5)",
      R"("type":"engagement","channel":"email","campaign":"fall-26")",
      R"("type":"refund","channel":"store","amount":19.99)",
  };
  std::vector<std::string> lines;
  lines.reserve(1000);
  for (int i = 0; i < 1000; ++i) {
    std::string line = R"({"event_id":"evt-)" + std::to_string(100000 + i) + R"(","customer_id":"cust-)" +
                       std::to_string(i % 97) + R"(","ts":)";
    line += i % 2 ? R"("2026-11-01T11:)" + std::to_string(10 + i % 50) + R"(:00.5+00:00")"
                  : std::to_string(kNow - 1000 * i);
    line += ",";
    line += kExtras[i % std::size(kExtras)];
    line += "}";
    lines.push_back(std::move(line));
  }
  return lines;
}

std::string join_lines(const std::vector<std::string>& lines) {
  std::string body;
  for (const std::string& line : lines) body.append(line).append("\n");
  return body;
}

class CountingSink : public DecodeSink {
 public:
  void on_event(std::size_t, const Event& event) override {
    ++events;
    benchmark::DoNotOptimize(event.ts_ms);
  }
  void on_reject(std::size_t, RejectReason, std::string_view) override { ++rejects; }
  std::int64_t events = 0;
  std::int64_t rejects = 0;
};

void BM_DecodeLine(benchmark::State& state) {
  rapport::Decoder decoder;
  Event event;
  RejectReason reason{};
  std::string_view message;
  for (auto _ : state) {
    const bool ok = decoder.decode_line(kLine, kNow, event, reason, message);
    benchmark::DoNotOptimize(ok);
    benchmark::DoNotOptimize(event);
  }
  if (!decoder.decode_line(kLine, kNow, event, reason, message)) state.SkipWithError("line rejected");
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(kLine.size()));
}
BENCHMARK(BM_DecodeLine);

// Baseline: DOM parse alone, parser reused, input already padded.
void BM_DomParseLine(benchmark::State& state) {
  simdjson::dom::parser parser;
  const simdjson::padded_string padded(kLine);
  for (auto _ : state) {
    auto result = parser.parse(padded.data(), padded.size(), false);
    benchmark::DoNotOptimize(result);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(kLine.size()));
}
BENCHMARK(BM_DomParseLine);

void BM_DecodeBodyNdjson1000(benchmark::State& state) {
  const std::string body = join_lines(make_lines());
  rapport::Decoder decoder;
  CountingSink sink;
  for (auto _ : state) decoder.decode_body(body, BodyFormat::kNdjson, kNow, sink);
  if (sink.rejects != 0) state.SkipWithError("some lines rejected");
  state.SetItemsProcessed(state.iterations() * 1000);
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(body.size()));
}
BENCHMARK(BM_DecodeBodyNdjson1000);

// Baseline: DOM parse of the same 1000 lines, each pre-split and pre-padded.
void BM_DomParseLines1000(benchmark::State& state) {
  std::vector<simdjson::padded_string> lines;
  std::int64_t bytes = 0;
  for (const std::string& line : make_lines()) {
    lines.emplace_back(line);
    bytes += static_cast<std::int64_t>(line.size()) + 1;
  }
  simdjson::dom::parser parser;
  for (auto _ : state) {
    for (const simdjson::padded_string& line : lines) {
      auto result = parser.parse(line.data(), line.size(), false);
      benchmark::DoNotOptimize(result);
    }
  }
  state.SetItemsProcessed(state.iterations() * 1000);
  state.SetBytesProcessed(state.iterations() * bytes);
}
BENCHMARK(BM_DomParseLines1000);

}  // namespace
