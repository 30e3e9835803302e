// libFuzzer target: the Decoder (ingest/decoder.h) on arbitrary bytes.
//
// Input layout: byte 0 selects the run, the rest is the body.
//   bits 0-1  BodyFormat for decode_body (NDJSON, JSON, CloudEvent, CloudEvent batch)
//   bit  2    use the small-limits decoder (max_line_bytes 256, skew 0, identify events refused) instead of
//             the default one (identify events decoded)
// The seeds use the printable selectors '0'..'3' (default limits) and '4'..'7' (small limits).
// Every input also goes through decode_line (the whole rest as one line) and,
// for NDJSON, each line through decode_line on a second decoder, which must
// agree with decode_body item by item.
//
// Invariants (any violation is __builtin_trap(), i.e. a crash libFuzzer keeps):
//  - NDJSON: exactly one callback per non-blank line, in order, with the line index;
//  - JSON / CloudEvent single object: exactly one callback, index 0;
//  - arrays: indexes 0, 1, 2, ... in order; a body-level reject is alone with index 0;
//  - a decoded Event: ids 1..128 bytes without NUL, channel <= 32 bytes without NUL,
//    ts in [0, 10000-01-01) and not ahead of now + skew, a known type, numeric
//    fields in their documented ranges, the fields required by the type present;
//  - an identify item: only with DecodeOptions::identify; ids and ts as for an Event, 1..kMaxIdentifyAliases
//    aliases of 1..128 bytes without NUL; decode_line reports it (identify_aliases) as decode_body does;
//  - a rejection: a known reason and a non-empty, single-line message; identity_refused only without
//    DecodeOptions::identify.
// Built with libFuzzer (RAPPORT_FUZZ=ON) and, without it, by the corpus replay test.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ingest/decoder.h"
#include "scoring/event.h"

namespace {

using rapport::BodyFormat;
using rapport::DecodeOptions;
using rapport::Decoder;
using rapport::Event;
using rapport::EventType;
using rapport::RejectReason;

constexpr std::int64_t kNow = 1793534400000;        // 2026-11-01T12:00:00Z
constexpr std::int64_t kMaxTsMs = 253402300800000;  // 10000-01-01T00:00:00Z (exclusive)

#define FUZZ_CHECK(cond)           \
  do {                             \
    if (!(cond)) __builtin_trap(); \
  } while (0)

bool in_range(const std::optional<double>& v, double lo, double hi) { return !v || (*v >= lo && *v <= hi); }

bool has_nul(std::string_view s) { return std::memchr(s.data(), 0, s.size()) != nullptr; }

void check_event(const Event& e, const DecodeOptions& options) {
  const std::string_view event_id = e.event_id.view();
  const std::string_view customer_id = e.customer_id.view();
  const std::string_view channel = e.channel.view();
  FUZZ_CHECK(!event_id.empty() && event_id.size() <= rapport::kMaxIdBytes && !has_nul(event_id));
  FUZZ_CHECK(!customer_id.empty() && customer_id.size() <= rapport::kMaxIdBytes && !has_nul(customer_id));
  FUZZ_CHECK(channel.size() <= rapport::kMaxChannelBytes && !has_nul(channel));
  FUZZ_CHECK(e.ts_ms >= 0 && e.ts_ms < kMaxTsMs);
  FUZZ_CHECK(e.ts_ms - kNow <= options.max_future_skew_ms);
  FUZZ_CHECK(static_cast<int>(e.type) < rapport::kEventTypeCount);
  FUZZ_CHECK(in_range(e.amount, 0, 1e9));
  FUZZ_CHECK(in_range(e.cost, 0, 1e9));
  FUZZ_CHECK(in_range(e.sentiment, -1, 1));
  FUZZ_CHECK(in_range(e.nps, 0, 10));
  FUZZ_CHECK(in_range(e.csat, 1, 5));
  FUZZ_CHECK(in_range(e.rating, 1, 5));
  switch (e.type) {
    case EventType::kPurchase:
    case EventType::kRefund:
      FUZZ_CHECK(e.amount.has_value());
      break;
    case EventType::kSurvey:
      FUZZ_CHECK(e.csat.has_value() || e.nps.has_value());
      break;
    case EventType::kReview:
      FUZZ_CHECK(e.rating.has_value());
      break;
    default:
      break;
  }
  // The wire name round-trips.
  const auto parsed = rapport::parse_event_type(rapport::event_type_name(e.type));
  FUZZ_CHECK(parsed.has_value() && *parsed == e.type);
}

void check_identify(const Event& e, std::span<const std::string> aliases, const DecodeOptions& options) {
  FUZZ_CHECK(options.identify);
  const std::string_view event_id = e.event_id.view();
  const std::string_view customer_id = e.customer_id.view();
  FUZZ_CHECK(!event_id.empty() && event_id.size() <= rapport::kMaxIdBytes && !has_nul(event_id));
  FUZZ_CHECK(!customer_id.empty() && customer_id.size() <= rapport::kMaxIdBytes && !has_nul(customer_id));
  FUZZ_CHECK(e.ts_ms >= 0 && e.ts_ms < kMaxTsMs);
  FUZZ_CHECK(e.ts_ms - kNow <= options.max_future_skew_ms);
  FUZZ_CHECK(!aliases.empty() && aliases.size() <= rapport::kMaxIdentifyAliases);
  for (const std::string& alias : aliases) {
    FUZZ_CHECK(!alias.empty() && alias.size() <= rapport::kMaxIdBytes && !has_nul(alias));
  }
}

void check_reject(RejectReason reason, std::string_view message) {
  FUZZ_CHECK(static_cast<int>(reason) < rapport::kRejectReasonCount);
  FUZZ_CHECK(rapport::reject_reason_label(reason) != "unknown");
  FUZZ_CHECK(!message.empty());
  // Messages are metric-safe log lines: no control bytes (quoted values are masked).
  for (const char c : message) FUZZ_CHECK(static_cast<unsigned char>(c) >= 0x20 && c != 0x7F);
}

struct Item {
  std::size_t index;
  bool ok;
  RejectReason reason;
  bool identify = false;
};

class CheckingSink final : public rapport::DecodeSink {
 public:
  explicit CheckingSink(const DecodeOptions& options) : options_(options) {}
  void on_event(std::size_t index, const Event& event) override {
    check_event(event, options_);
    items.push_back({index, true, RejectReason::kMalformedJson});
  }
  void on_identify(std::size_t index, const Event& event, std::span<const std::string> aliases) override {
    check_identify(event, aliases, options_);
    items.push_back({index, true, RejectReason::kMalformedJson, true});
  }
  void on_reject(std::size_t index, RejectReason reason, std::string_view message) override {
    check_reject(reason, message);
    FUZZ_CHECK(reason != RejectReason::kIdentityRefused || !options_.identify);
    items.push_back({index, false, reason});
  }
  std::vector<Item> items;

 private:
  const DecodeOptions& options_;
};

bool is_blank(std::string_view s) {
  for (const char c : s) {
    if (c != ' ' && c != '\t' && c != '\r') return false;
  }
  return true;
}

// The 0-based indexes of the non-blank NDJSON lines, and the lines themselves.
void split_ndjson(std::string_view body, std::vector<std::size_t>& indexes, std::vector<std::string_view>& lines) {
  std::size_t index = 0;
  for (;;) {
    const std::size_t nl = body.find('\n');
    std::string_view line = body.substr(0, nl);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!is_blank(line)) {
      indexes.push_back(index);
      lines.push_back(line);
    }
    if (nl == std::string_view::npos) break;
    body.remove_prefix(nl + 1);
    ++index;
  }
}

DecodeOptions with_identify() {
  DecodeOptions options;
  options.identify = true;
  return options;
}

struct Decoders {
  DecodeOptions normal_options = with_identify();
  DecodeOptions small_options{0, 256};
  Decoder normal{normal_options};
  Decoder small{small_options};
  Decoder normal_lines{normal_options};  // decode_line, for the NDJSON cross-check
  Decoder small_lines{small_options};
};

Decoders& decoders() {
  static auto* d = new Decoders();  // reused across inputs, like an io thread's decoder
  return *d;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t selector = data[0];
  const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  const auto format = static_cast<BodyFormat>(selector & 3U);
  const bool small = (selector & 4U) != 0;

  Decoders& d = decoders();
  Decoder& decoder = small ? d.small : d.normal;
  Decoder& line_decoder = small ? d.small_lines : d.normal_lines;
  const DecodeOptions& options = small ? d.small_options : d.normal_options;

  // 1. The whole input as one line.
  {
    Event event;
    RejectReason reason = RejectReason::kMalformedJson;
    std::string_view message;
    if (decoder.decode_line(body, kNow, event, reason, message)) {
      if (const auto* aliases = decoder.identify_aliases()) {
        check_identify(event, *aliases, options);
      } else {
        check_event(event, options);
      }
    } else {
      check_reject(reason, message);
    }
  }

  // 2. The whole input as a body.
  CheckingSink sink(options);
  decoder.decode_body(body, format, kNow, sink);

  std::string_view unbommed = body;
  if (unbommed.substr(0, 3) == "\xEF\xBB\xBF") unbommed.remove_prefix(3);

  switch (format) {
    case BodyFormat::kNdjson: {
      std::vector<std::size_t> indexes;
      std::vector<std::string_view> lines;
      split_ndjson(unbommed, indexes, lines);
      FUZZ_CHECK(sink.items.size() == indexes.size());
      for (std::size_t i = 0; i < indexes.size(); ++i) {
        FUZZ_CHECK(sink.items[i].index == indexes[i]);
        // decode_line on a separate decoder gives the same outcome.
        Event event;
        RejectReason reason = RejectReason::kMalformedJson;
        std::string_view message;
        const bool ok = line_decoder.decode_line(lines[i], kNow, event, reason, message);
        FUZZ_CHECK(ok == sink.items[i].ok);
        if (ok) FUZZ_CHECK((line_decoder.identify_aliases() != nullptr) == sink.items[i].identify);
        if (!ok) FUZZ_CHECK(reason == sink.items[i].reason);
      }
      break;
    }
    case BodyFormat::kJson:
    case BodyFormat::kCloudEventBatch: {
      // Either one body-level reject (index 0) or one callback per array element, in order.
      for (std::size_t i = 0; i < sink.items.size(); ++i) FUZZ_CHECK(sink.items[i].index == i);
      const std::size_t first = unbommed.find_first_not_of(" \t\r\n");
      const bool array = first != std::string_view::npos && unbommed[first] == '[';
      if (format == BodyFormat::kJson && !array) FUZZ_CHECK(sink.items.size() == 1);
      if (!array) FUZZ_CHECK(sink.items.size() == 1 && (format == BodyFormat::kJson || !sink.items[0].ok));
      break;
    }
    case BodyFormat::kCloudEvent:
      FUZZ_CHECK(sink.items.size() == 1 && sink.items[0].index == 0);
      break;
  }

  // 3. Determinism: the same body again on the same (reused) decoder gives the same items.
  CheckingSink again(options);
  decoder.decode_body(body, format, kNow, again);
  FUZZ_CHECK(again.items.size() == sink.items.size());
  for (std::size_t i = 0; i < sink.items.size(); ++i) {
    FUZZ_CHECK(again.items[i].index == sink.items[i].index && again.items[i].ok == sink.items[i].ok &&
               again.items[i].identify == sink.items[i].identify);
    if (!sink.items[i].ok) FUZZ_CHECK(again.items[i].reason == sink.items[i].reason);
  }
  return 0;
}
