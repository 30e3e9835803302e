// Decoder tests: good events of every type, exact timestamps, the bad-line
// corpus with its exact reasons, body formats, and random-input robustness.
#include "ingest/decoder.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

// Counts every global operator new in this test binary, to prove the decoder
// does not allocate per event once warmed up. All variants that ASan would
// otherwise intercept are replaced together so new/delete stay paired.
// The replacement operators below are malloc/free based by design: GCC's
// -Wmismatched-new-delete cannot see that they pair, so silence it here only.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
namespace alloc_count {
std::atomic<long> allocations{0};
void* counted(std::size_t n) noexcept {
  allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n == 0 ? 1 : n);
}
}  // namespace alloc_count

void* operator new(std::size_t n) {
  if (void* p = alloc_count::counted(n)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return ::operator new(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return alloc_count::counted(n); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return alloc_count::counted(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }

namespace rapport {
namespace {

using namespace std::string_literals;

constexpr std::int64_t kNow = 1793534400000;      // 2026-11-01T12:00:00Z
constexpr std::int64_t kMaxTs = 253402300799999;  // 9999-12-31T23:59:59.999Z

// A minimal valid line with `extra` appended inside the object.
std::string line_with(std::string_view type, std::string_view extra = "") {
  std::string s = R"({"event_id":"e-1","customer_id":"c-42","ts":"2026-11-01T12:00:00Z","type":")";
  s.append(type).append("\"");
  if (!extra.empty()) s.append(",").append(extra);
  s.append("}");
  return s;
}

// A complaint line (no required extras) with the given raw JSON `ts` value.
std::string with_ts(std::string_view ts) {
  return R"({"event_id":"e-1","customer_id":"c-42","ts":)" + std::string(ts) + R"(,"type":"complaint"})";
}

struct Outcome {
  bool ok = false;
  Event event;
  RejectReason reason = RejectReason::kMalformedJson;
  std::string message;
};

Outcome decode(Decoder& decoder, std::string_view line, std::int64_t now_ms = kNow) {
  Outcome o;
  std::string_view message;
  o.ok = decoder.decode_line(line, now_ms, o.event, o.reason, message);
  if (!o.ok) o.message = std::string(message);
  return o;
}

Outcome decode(std::string_view line, std::int64_t now_ms = kNow) {
  Decoder decoder;
  return decode(decoder, line, now_ms);
}

// Records every callback in order.
struct Item {
  std::size_t index;
  bool ok;
  RejectReason reason;
  std::string message;
  Event event;
  bool whole_body = false;  // on_body_reject
  std::string event_id;     // Decoder::rejected_event_id() during on_reject
};

class RecordingSink : public DecodeSink {
 public:
  explicit RecordingSink(const Decoder* decoder = nullptr) : decoder_(decoder) {}
  void on_event(std::size_t index, const Event& event) override {
    items.push_back({index, true, RejectReason::kMalformedJson, "", event, false, ""});
  }
  void on_reject(std::size_t index, RejectReason reason, std::string_view message) override {
    items.push_back({index, false, reason, std::string(message), Event{}, false,
                     decoder_ ? std::string(decoder_->rejected_event_id()) : ""});
  }
  void on_body_reject(RejectReason reason, std::string_view message) override {
    items.push_back({0, false, reason, std::string(message), Event{}, true, ""});
  }
  std::vector<Item> items;

 private:
  const Decoder* decoder_;
};

std::vector<Item> decode_body(std::string_view body, BodyFormat format, DecodeOptions options = {}) {
  Decoder decoder(options);
  RecordingSink sink(&decoder);
  decoder.decode_body(body, format, kNow, sink);
  return sink.items;
}

// ---------------------------------------------------------------------------

TEST(RejectReasonLabel, AllDistinctAndStable) {
  std::set<std::string_view> labels;
  for (int i = 0; i < kRejectReasonCount; ++i) labels.insert(reject_reason_label(static_cast<RejectReason>(i)));
  EXPECT_EQ(labels.size(), static_cast<std::size_t>(kRejectReasonCount));
  EXPECT_EQ(reject_reason_label(RejectReason::kMalformedJson), "malformed_json");
  EXPECT_EQ(reject_reason_label(RejectReason::kInvalidUtf8), "invalid_utf8");
  EXPECT_EQ(reject_reason_label(RejectReason::kNotAnObject), "not_an_object");
  EXPECT_EQ(reject_reason_label(RejectReason::kMissingField), "missing_field");
  EXPECT_EQ(reject_reason_label(RejectReason::kWrongType), "wrong_type");
  EXPECT_EQ(reject_reason_label(RejectReason::kOutOfRange), "out_of_range");
  EXPECT_EQ(reject_reason_label(RejectReason::kUnknownType), "unknown_type");
  EXPECT_EQ(reject_reason_label(RejectReason::kBadTimestamp), "bad_timestamp");
  EXPECT_EQ(reject_reason_label(RejectReason::kFutureTimestamp), "future_timestamp");
  EXPECT_EQ(reject_reason_label(RejectReason::kDuplicateField), "duplicate_field");
  EXPECT_EQ(reject_reason_label(RejectReason::kTooLarge), "too_large");
  EXPECT_EQ(reject_reason_label(RejectReason::kIdentityRefused), "identity_refused");
}

TEST(DecodeLine, FullPurchase) {
  const Outcome o = decode(
      R"({"event_id":"e-1","customer_id":"c-42","ts":"2026-11-01T12:00:00Z","type":"purchase","channel":"web","amount":19.99,"cost":0.5})");
  ASSERT_TRUE(o.ok) << o.message;
  EXPECT_EQ(o.event.event_id.view(), "e-1");
  EXPECT_EQ(o.event.customer_id.view(), "c-42");
  EXPECT_EQ(o.event.ts_ms, kNow);
  EXPECT_EQ(o.event.type, EventType::kPurchase);
  EXPECT_EQ(o.event.channel.view(), "web");
  EXPECT_EQ(classify_channel(o.event.channel.view()), Channel::kWeb);
  ASSERT_TRUE(o.event.amount.has_value());
  EXPECT_DOUBLE_EQ(*o.event.amount, 19.99);
  ASSERT_TRUE(o.event.cost.has_value());
  EXPECT_DOUBLE_EQ(*o.event.cost, 0.5);
  EXPECT_FALSE(o.event.sentiment.has_value());
  EXPECT_FALSE(o.event.nps.has_value());
  EXPECT_FALSE(o.event.csat.has_value());
  EXPECT_FALSE(o.event.rating.has_value());
}

TEST(DecodeLine, EveryEventType) {
  struct Case {
    std::string_view type;
    std::string_view extra;
    EventType expected;
  };
  const Case cases[] = {
      {"purchase", R"("amount":10)", EventType::kPurchase},
      {"refund", R"("amount":0)", EventType::kRefund},
      {"support", R"("sentiment":-0.25)", EventType::kSupport},
      {"complaint", "", EventType::kComplaint},
      {"survey", R"("nps":9)", EventType::kSurvey},
      {"survey", R"("csat":4.5)", EventType::kSurvey},
      {"review", R"("rating":5)", EventType::kReview},
      {"social", R"("sentiment":1)", EventType::kSocial},
      {"referral", "", EventType::kReferral},
      {"engagement", "", EventType::kEngagement},
      {"renewal", R"("amount":99)", EventType::kRenewal},
      {"cancellation", "", EventType::kCancellation},
  };
  Decoder decoder;
  for (const Case& c : cases) {
    const Outcome o = decode(decoder, line_with(c.type, c.extra));
    ASSERT_TRUE(o.ok) << c.type << ": " << o.message;
    EXPECT_EQ(o.event.type, c.expected) << c.type;
    EXPECT_EQ(event_type_name(o.event.type), c.type);
  }
}

TEST(DecodeLine, NumericFieldsAreKeptAndIntegersConvert) {
  const Outcome o =
      decode(line_with("survey", R"("nps":10,"csat":1,"sentiment":-1,"rating":3,"cost":1000000000,"amount":0)"));
  ASSERT_TRUE(o.ok) << o.message;
  EXPECT_EQ(o.event.nps, 10.0);
  EXPECT_EQ(o.event.csat, 1.0);
  EXPECT_EQ(o.event.sentiment, -1.0);
  EXPECT_EQ(o.event.rating, 3.0);
  EXPECT_EQ(o.event.cost, 1e9);
  EXPECT_EQ(o.event.amount, 0.0);
}

TEST(DecodeLine, NullOptionalFieldIsAbsent) {
  const Outcome o = decode(line_with("support", R"("channel":null,"sentiment":null,"amount":null)"));
  ASSERT_TRUE(o.ok) << o.message;
  EXPECT_TRUE(o.event.channel.empty());
  EXPECT_FALSE(o.event.sentiment.has_value());
  EXPECT_FALSE(o.event.amount.has_value());
}

TEST(DecodeLine, ReusedEventIsResetBetweenCalls) {
  Decoder decoder;
  Event event;
  RejectReason reason{};
  std::string_view message;
  ASSERT_TRUE(decoder.decode_line(line_with("purchase", R"("amount":5,"channel":"app","nps":3)"), kNow, event, reason,
                                  message));
  ASSERT_TRUE(decoder.decode_line(line_with("complaint"), kNow, event, reason, message));
  EXPECT_FALSE(event.amount.has_value());
  EXPECT_FALSE(event.nps.has_value());
  EXPECT_TRUE(event.channel.empty());
  event.sent_as.assign("an-alias");  // set by identity relabeling, never from the wire
  ASSERT_TRUE(decoder.decode_line(line_with("complaint"), kNow, event, reason, message));
  EXPECT_TRUE(event.sent_as.empty());
}

TEST(DecodeLine, ChannelClassification) {
  Decoder decoder;
  const std::pair<std::string_view, Channel> cases[] = {
      {"twitter", Channel::kTwitter}, {"facebook", Channel::kFacebook}, {"instagram", Channel::kInstagram},
      {"email", Channel::kEmail},     {"chat", Channel::kChat},         {"phone", Channel::kPhone},
      {"store", Channel::kStore},     {"web", Channel::kWeb},           {"app", Channel::kApp},
      {"survey", Channel::kSurvey},   {"pigeon", Channel::kOther},      {"", Channel::kOther},
  };
  for (const auto& [label, channel] : cases) {
    const Outcome o = decode(decoder, line_with("complaint", R"("channel":")" + std::string(label) + "\""));
    ASSERT_TRUE(o.ok) << o.message;
    EXPECT_EQ(o.event.channel.view(), label);
    EXPECT_EQ(classify_channel(o.event.channel.view()), channel) << label;
  }
  // Exactly 32 bytes is allowed.
  const Outcome o = decode(line_with("complaint", R"("channel":")" + std::string(32, 'c') + "\""));
  ASSERT_TRUE(o.ok) << o.message;
  EXPECT_EQ(o.event.channel.size(), 32u);
}

TEST(DecodeLine, UnknownFieldsOfAnyTypeAreIgnored) {
  const Outcome o = decode(line_with(
      "complaint", R"("x":{"deep":[1,2,{"a":null}]},"y":[true,false],"z":"s","w":1.5e300,"event":"dup-name-is-fine")"));
  ASSERT_TRUE(o.ok) << o.message;
}

TEST(DecodeLine, UnicodeIdsAndEscapedKeys) {
  // \u00e9 and a surrogate pair are valid; an escaped key names the same field.
  const Outcome o =
      decode(R"({"event_id":"\u00e9-\ud83d\ude00","customer_id":"ç-42","ts":1793534400000,"\u0074ype":"complaint"})");
  ASSERT_TRUE(o.ok) << o.message;
  EXPECT_EQ(o.event.event_id.view(), "\xc3\xa9-\xf0\x9f\x98\x80");
  EXPECT_EQ(o.event.customer_id.view(), "\xc3\xa7-42");
}

TEST(DecodeLine, IdLengthLimits) {
  const Outcome ok = decode(line_with("complaint").replace(13, 3, std::string(128, 'x')));
  ASSERT_TRUE(ok.ok) << ok.message;
  EXPECT_EQ(ok.event.event_id.size(), 128u);
  const Outcome bad = decode(line_with("complaint").replace(13, 3, std::string(129, 'x')));
  ASSERT_FALSE(bad.ok);
  EXPECT_EQ(bad.reason, RejectReason::kOutOfRange);
  EXPECT_NE(bad.message.find("\"event_id\""), std::string::npos) << bad.message;
}

TEST(DecodeLine, TrailingCarriageReturnIsTolerated) {
  const Outcome o = decode(line_with("complaint") + "\r");
  EXPECT_TRUE(o.ok) << o.message;
}

// ---------------------------------------------------------------------------
// Timestamps

TEST(Timestamps, ExactValues) {
  struct Case {
    std::string_view ts;
    std::int64_t ms;
  };
  const Case cases[] = {
      {R"("2026-11-01T12:00:00Z")", 1793534400000},
      {R"("2026-11-01t12:00:00z")", 1793534400000},
      {R"("2026-11-01T12:00:00.5+02:00")", 1793527200500},
      {R"("2026-11-01T12:00:00.500+02:00")", 1793527200500},
      {R"("2026-11-01T12:00:00.123-05:30")", 1793554200123},
      {R"("2026-11-01T12:00:00.1239999Z")", 1793534400123},  // extra digits truncated
      {R"("2026-11-01T12:00:00.000000001Z")", 1793534400000},
      {R"("2026-11-01T12:00:00-00:00")", 1793534400000},
      {R"("2024-02-29T23:59:59.999Z")", 1709251199999},  // leap day
      {R"("2000-03-01T00:00:00+00:00")", 951868800000},
      {R"("1970-01-01T00:00:00Z")", 0},
      {"1793534400000", 1793534400000},
      {"100000000000", 100000000000},  // the smallest integer taken as epoch milliseconds (1973-03-03)
  };
  Decoder decoder;
  for (const Case& c : cases) {
    // "now" far ahead so that only the parsing is under test here.
    const Outcome o = decode(decoder, with_ts(c.ts), kMaxTs);
    ASSERT_TRUE(o.ok) << c.ts << ": " << o.message;
    EXPECT_EQ(o.event.ts_ms, c.ms) << c.ts;
  }
}

TEST(Timestamps, FarFutureYearsWithinRange) {
  const std::int64_t far = kMaxTs;
  const Outcome o = decode(with_ts(R"("9999-12-31T23:59:59.999Z")"), far);
  ASSERT_TRUE(o.ok) << o.message;
  EXPECT_EQ(o.event.ts_ms, far);
  const Outcome ms = decode(with_ts("253402300799999"), far);
  ASSERT_TRUE(ms.ok) << ms.message;
  const Outcome over = decode(with_ts("253402300800000"), far);
  ASSERT_FALSE(over.ok);
  EXPECT_EQ(over.reason, RejectReason::kBadTimestamp);
}

TEST(Timestamps, BadForms) {
  const std::string_view bad[] = {
      R"("2026-11-01 12:00:00Z")",
      R"("2026-11-01T12:00:00")",
      R"("2026-11-01T12:00Z")",
      R"("2026-11-01")",
      R"("2026-02-30T12:00:00Z")",
      R"("2025-02-29T12:00:00Z")",
      R"("1900-02-29T12:00:00Z")",
      R"("2026-13-01T12:00:00Z")",
      R"("2026-00-01T12:00:00Z")",
      R"("2026-04-31T12:00:00Z")",
      R"("2026-11-00T12:00:00Z")",
      R"("2026-11-01T24:00:00Z")",
      R"("2026-11-01T12:60:00Z")",
      R"("2026-11-01T12:00:60Z")",
      R"("2026-11-01T12:00:00.Z")",
      R"("2026-11-01T12:00:00+2:00")",
      R"("2026-11-01T12:00:00+02:60")",
      R"("2026-11-01T12:00:00+24:00")",
      R"("2026-11-01T12:00:00+0200")",
      R"("2026-11-01T12:00:00Zjunk")",
      R"("1969-12-31T23:59:59Z")",
      R"("1970-01-01T00:00:00+01:00")",
      R"("+2026-11-01T12:00:00Z")",
      R"("2026-11-01T12:00:00,5Z")",
      R"("")",
      R"("1793534400000")",
      "-1",
      "1793534400000.0",
      "1.7935344e12",
      "18446744073709551615",
      "true",
      "{}",
      "[]",
  };
  Decoder decoder;
  for (std::string_view ts : bad) {
    const Outcome o =
        decode(decoder, R"({"event_id":"e","customer_id":"c","type":"complaint","ts":)" + std::string(ts) + "}");
    ASSERT_FALSE(o.ok) << ts;
    EXPECT_EQ(o.reason, RejectReason::kBadTimestamp) << ts << ": " << o.message;
  }
  EXPECT_EQ(decode(with_ts("false")).message, R"("ts" is not RFC 3339 or epoch milliseconds)");
}

// An integer below 10^11 can only be epoch seconds (10^11 ms is 1973; 10^11 s is the year 5138).
TEST(Timestamps, IntegerSecondsAreRejectedWithAHint) {
  const Outcome seconds = decode(with_ts("1714564800"));
  ASSERT_FALSE(seconds.ok);
  EXPECT_EQ(seconds.reason, RejectReason::kBadTimestamp);
  EXPECT_EQ(seconds.message,
            R"("ts" 1714564800 looks like epoch seconds; an integer "ts" is epoch milliseconds (multiply by 1000))");
  for (std::string_view ts : {"0", "1", "99999999999"}) {
    const Outcome o = decode(with_ts(ts));
    ASSERT_FALSE(o.ok) << ts;
    EXPECT_EQ(o.reason, RejectReason::kBadTimestamp) << ts;
    EXPECT_NE(o.message.find("looks like epoch seconds"), std::string::npos) << o.message;
  }
  const Outcome boundary = decode(with_ts("100000000000"));
  ASSERT_TRUE(boundary.ok) << boundary.message;
  EXPECT_EQ(boundary.event.ts_ms, 100000000000);
  EXPECT_TRUE(decode(with_ts("1714564800000")).ok);
  // A negative integer is not seconds either: the general message.
  EXPECT_EQ(decode(with_ts("-1")).message, R"("ts" is not RFC 3339 or epoch milliseconds)");
  // CloudEvents name the attribute as sent.
  Decoder decoder;
  RecordingSink sink;
  decoder.decode_body(
      R"({"specversion":"1.0","id":"e","source":"/s","type":"engagement","subject":"c","data":{"ts":1714564800}})",
      BodyFormat::kCloudEvent, kNow, sink);
  ASSERT_EQ(sink.items.size(), 1u);
  EXPECT_EQ(
      sink.items[0].message,
      R"("data.ts" 1714564800 looks like epoch seconds; an integer "data.ts" is epoch milliseconds (multiply by 1000))");
}

TEST(Timestamps, MissingUtcOffsetIsNamed) {
  for (std::string_view ts : {"2024-05-01T12:00:00", "2024-05-01T12:00:00.250", "2024-05-01t12:00:00"}) {
    const Outcome o = decode(with_ts("\"" + std::string(ts) + "\""));
    ASSERT_FALSE(o.ok) << ts;
    EXPECT_EQ(o.reason, RejectReason::kBadTimestamp);
    EXPECT_EQ(o.message, "\"ts\" \"" + std::string(ts) + "\" has no UTC offset: add Z or \u00b1hh:mm") << ts;
  }
  // Other bad forms keep the general message, offset or not.
  for (std::string_view ts : {"2024-05-01T12:00", "2024-05-01T12:00:00.", "2024-05-01 12:00:00",
                              "2024-05-01T12:00:00+2", "2024-02-30T12:00:00"}) {
    const Outcome o = decode(with_ts("\"" + std::string(ts) + "\""));
    ASSERT_FALSE(o.ok) << ts;
    EXPECT_EQ(o.message, R"("ts" is not RFC 3339 or epoch milliseconds)") << ts;
  }
}

TEST(Timestamps, FutureSkew) {
  Decoder decoder;  // default skew: 5 minutes
  const std::string at_limit = R"("2026-11-01T12:05:00Z")";
  const std::string past_limit = R"("2026-11-01T12:05:00.001Z")";
  EXPECT_TRUE(decode(decoder, with_ts(at_limit)).ok);
  const Outcome o = decode(decoder, with_ts(past_limit));
  ASSERT_FALSE(o.ok);
  EXPECT_EQ(o.reason, RejectReason::kFutureTimestamp);
  EXPECT_NE(o.message.find("\"ts\""), std::string::npos) << o.message;
  // Far past is fine; the skew option is honoured.
  EXPECT_TRUE(decode(decoder, with_ts("100000000000")).ok);
  decoder.set_options(DecodeOptions{.max_future_skew_ms = 0});
  EXPECT_EQ(decode(decoder, with_ts(R"("2026-11-01T12:00:00.001Z")")).reason, RejectReason::kFutureTimestamp);
  EXPECT_TRUE(decode(decoder, with_ts(R"("2026-11-01T12:00:00Z")")).ok);
}

// ---------------------------------------------------------------------------
// The bad-line corpus: every line must be rejected with exactly this reason.

struct BadLine {
  const char* name;
  std::string line;
  RejectReason reason;
};

std::string nested(int depth) {
  // `depth` levels in total, the outer event object included.
  std::string inner = std::string(static_cast<std::size_t>(depth - 1), '[') + std::string(depth - 1, ']');
  return line_with("complaint", R"("x":)" + inner);
}

std::vector<BadLine> bad_corpus() {
  using RR = RejectReason;
  const std::string good = line_with("complaint");
  return {
      // Not JSON / structure.
      {"truncated", R"({"event_id":"a")", RR::kMalformedJson},
      {"truncated_string", R"({"event_id":"a)", RR::kMalformedJson},
      {"trailing_garbage", good + " x", RR::kMalformedJson},
      {"two_objects", good + good, RR::kMalformedJson},
      {"two_objects_spaced", good + " " + good, RR::kMalformedJson},
      {"not_json", "hello", RR::kMalformedJson},
      {"empty", "", RR::kMalformedJson},
      {"blank", "   ", RR::kMalformedJson},
      {"bom_inside_line", "\xEF\xBB\xBF" + good, RR::kMalformedJson},
      {"bad_literal", line_with("complaint", R"("x":tru)"), RR::kMalformedJson},
      {"leading_zero", line_with("complaint", R"("x":01)"), RR::kMalformedJson},
      {"bad_fraction", line_with("purchase", R"("amount":1.)"), RR::kMalformedJson},
      {"bad_escape", line_with("complaint", R"("x":"\q")"), RR::kMalformedJson},
      {"raw_tab_in_string", line_with("complaint", "\"x\":\"a\tb\""), RR::kMalformedJson},
      {"single_quotes", "{'event_id':'e'}", RR::kMalformedJson},
      {"missing_comma", R"({"event_id":"e" "customer_id":"c"})", RR::kMalformedJson},
      // UTF-8 and NUL.
      {"invalid_byte_ff", line_with("complaint", "\"x\":\"\xff\""), RR::kInvalidUtf8},
      {"invalid_in_id",
       R"({"event_id":")"
       "\xff"
       R"(","customer_id":"c","ts":0,"type":"complaint"})",
       RR::kInvalidUtf8},
      {"overlong_slash", line_with("complaint", "\"x\":\"\xc0\xaf\""), RR::kInvalidUtf8},
      {"utf8_surrogate", line_with("complaint", "\"x\":\"\xed\xa0\x80\""), RR::kInvalidUtf8},
      {"truncated_sequence", line_with("complaint", "\"x\":\"\xe2\x82\""), RR::kInvalidUtf8},
      {"escaped_lone_high", line_with("complaint", R"("x":"\ud800")"), RR::kInvalidUtf8},
      {"escaped_lone_low", line_with("complaint", R"("x":"\uDC00x")"), RR::kInvalidUtf8},
      {"escaped_high_then_bmp", line_with("complaint", R"("x":"\ud800\u0041")"), RR::kInvalidUtf8},
      {"escaped_lone_in_key", line_with("complaint", R"("\ud800":1)"), RR::kInvalidUtf8},
      {"raw_nul_in_string", line_with("complaint", "\"x\":\"a"s + '\0' + "b\""), RR::kInvalidUtf8},
      {"raw_nul_after_object", good + '\0', RR::kInvalidUtf8},
      {"escaped_nul_customer_id", R"({"event_id":"e","customer_id":"c\u0000d","ts":0,"type":"complaint"})",
       RR::kInvalidUtf8},
      {"escaped_nul_event_id", R"({"event_id":"\u0000","customer_id":"c","ts":0,"type":"complaint"})",
       RR::kInvalidUtf8},
      // Not an object.
      {"array", "[1,2]", RR::kNotAnObject},
      {"array_of_event", "[" + good + "]", RR::kNotAnObject},
      {"number", "42", RR::kNotAnObject},
      {"number_spaced", " -4.5e3 \t", RR::kNotAnObject},
      {"number_huge", "1e400", RR::kNotAnObject},
      {"two_numbers", "42 43", RR::kMalformedJson},
      {"bare_minus", "-", RR::kMalformedJson},
      {"number_then_object", "1" + good, RR::kMalformedJson},
      {"number_bad_utf8", "1\xff", RR::kInvalidUtf8},
      {"string", R"("event")", RR::kNotAnObject},
      {"null", "null", RR::kNotAnObject},
      // Missing fields.
      {"empty_object", "{}", RR::kMissingField},
      {"no_event_id", R"({"customer_id":"c","ts":0,"type":"complaint"})", RR::kMissingField},
      {"no_customer_id", R"({"event_id":"e","ts":0,"type":"complaint"})", RR::kMissingField},
      {"no_ts", R"({"event_id":"e","customer_id":"c","type":"complaint"})", RR::kMissingField},
      {"no_type", R"({"event_id":"e","customer_id":"c","ts":0})", RR::kMissingField},
      {"null_event_id", R"({"event_id":null,"customer_id":"c","ts":0,"type":"complaint"})", RR::kMissingField},
      {"purchase_no_amount", line_with("purchase"), RR::kMissingField},
      {"purchase_null_amount", line_with("purchase", R"("amount":null)"), RR::kMissingField},
      {"refund_no_amount", line_with("refund", R"("cost":1)"), RR::kMissingField},
      {"survey_no_score", line_with("survey", R"("rating":5)"), RR::kMissingField},
      {"review_no_rating", line_with("review", R"("csat":5)"), RR::kMissingField},
      // Wrong types.
      {"event_id_number", R"({"event_id":1,"customer_id":"c","ts":0,"type":"complaint"})", RR::kWrongType},
      {"customer_id_object", R"({"event_id":"e","customer_id":{},"ts":0,"type":"complaint"})", RR::kWrongType},
      {"type_number", R"({"event_id":"e","customer_id":"c","ts":0,"type":3})", RR::kWrongType},
      {"channel_bool", line_with("complaint", R"("channel":true)"), RR::kWrongType},
      {"amount_string", line_with("purchase", R"("amount":"19.99")"), RR::kWrongType},
      {"nps_bool", line_with("survey", R"("nps":true)"), RR::kWrongType},
      {"sentiment_array", line_with("social", R"("sentiment":[0.5])"), RR::kWrongType},
      // Out of range.
      {"amount_negative", line_with("purchase", R"("amount":-0.01)"), RR::kOutOfRange},
      {"amount_huge", line_with("purchase", R"("amount":1000000000.5)"), RR::kOutOfRange},
      {"amount_1e400", line_with("purchase", R"("amount":1e400)"), RR::kOutOfRange},
      {"amount_neg_1e400", line_with("purchase", R"("amount":-1e400)"), RR::kOutOfRange},
      {"bigint_unknown_field", line_with("complaint", R"("x":123456789012345678901234567890)"), RR::kOutOfRange},
      {"cost_negative", line_with("support", R"("cost":-1)"), RR::kOutOfRange},
      {"sentiment_high", line_with("social", R"("sentiment":1.01)"), RR::kOutOfRange},
      {"nps_11", line_with("survey", R"("nps":11)"), RR::kOutOfRange},
      {"csat_0", line_with("survey", R"("csat":0)"), RR::kOutOfRange},
      {"rating_6", line_with("review", R"("rating":6)"), RR::kOutOfRange},
      {"channel_33", line_with("complaint", R"("channel":")" + std::string(33, 'c') + "\""), RR::kOutOfRange},
      {"empty_event_id", R"({"event_id":"","customer_id":"c","ts":0,"type":"complaint"})", RR::kOutOfRange},
      {"customer_id_129", R"({"event_id":"e","customer_id":")" + std::string(129, 'c') + R"(","ts":0,"type":"survey"})",
       RR::kOutOfRange},
      // Type and timestamps.
      {"unknown_type", line_with("foo"), RR::kUnknownType},
      {"type_case", line_with("Purchase", R"("amount":1)"), RR::kUnknownType},
      {"bad_ts", with_ts(R"("yesterday")"), RR::kBadTimestamp},
      {"feb_30", with_ts(R"("2026-02-30T00:00:00Z")"), RR::kBadTimestamp},
      {"future_ts", with_ts(R"("2026-11-01T13:00:00Z")"), RR::kFutureTimestamp},
      {"future_ms", with_ts("1793538000000"), RR::kFutureTimestamp},
      // Duplicates.
      {"duplicate_amount", line_with("purchase", R"("amount":1,"amount":2)"), RR::kDuplicateField},
      {"duplicate_null_then_value", line_with("purchase", R"("amount":null,"amount":2)"), RR::kDuplicateField},
      {"duplicate_event_id", R"({"event_id":"a","event_id":"b","customer_id":"c","ts":0,"type":"complaint"})",
       RR::kDuplicateField},
      {"duplicate_escaped_key", line_with("complaint", R"("\u0074s":0)"), RR::kDuplicateField},
      // Size.
      {"depth_33", nested(33), RR::kTooLarge},
      {"depth_40", nested(40), RR::kTooLarge},
      {"line_too_long", line_with("complaint", R"("pad":")" + std::string(70000, 'p') + "\""), RR::kTooLarge},
  };
}

TEST(DecodeLine, BadCorpusReasons) {
  Decoder decoder;  // one decoder for all: state must not leak between lines
  for (const BadLine& bad : bad_corpus()) {
    const Outcome o = decode(decoder, bad.line);
    ASSERT_FALSE(o.ok) << bad.name;
    EXPECT_EQ(reject_reason_label(o.reason), reject_reason_label(bad.reason)) << bad.name << ": " << o.message;
    EXPECT_FALSE(o.message.empty()) << bad.name;
    EXPECT_LT(o.message.size(), 200u) << bad.name;
    // A good line still decodes right after every bad one.
    EXPECT_TRUE(decode(decoder, line_with("complaint")).ok) << "after " << bad.name;
  }
}

// Counts outcomes without allocating (RecordingSink copies messages).
class TallySink : public DecodeSink {
 public:
  void on_event(std::size_t, const Event&) override { ++events; }
  void on_reject(std::size_t, RejectReason, std::string_view) override { ++rejects; }
  std::size_t events = 0;
  std::size_t rejects = 0;
};

TEST(DecodeLine, NoHeapAllocationInSteadyState) {
  std::vector<std::string> lines;
  for (const BadLine& bad : bad_corpus()) lines.push_back(bad.line);
  lines.push_back(line_with("purchase", R"("amount":19.99,"channel":"web","x":{"y":[1,2,3]})"));
  lines.push_back(with_ts(R"("2026-11-01T12:00:00.5+02:00")"));
  std::string body;
  for (int i = 0; i < 50; ++i) body += line_with("survey", R"("nps":7)") + "\r\n\n" + with_ts("1e400") + "\n";
  const std::string array_body = "[" + line_with("complaint") + "," + line_with("foo") + "]";
  const std::string cloud = R"({"specversion":"1.0","id":"e","source":"/c/web","type":"x.complaint","subject":"c",)"
                            R"("time":"2026-11-01T12:00:00Z","data":{"sentiment":-0.5}})";
  Decoder decoder;
  TallySink sink;
  Event event;
  RejectReason reason{};
  std::string_view message;
  std::size_t accepted = 0;
  auto run = [&] {
    for (const std::string& line : lines) accepted += decoder.decode_line(line, kNow, event, reason, message) ? 1 : 0;
    decoder.decode_body(body, BodyFormat::kNdjson, kNow, sink);
    decoder.decode_body(array_body, BodyFormat::kJson, kNow, sink);
    decoder.decode_body(cloud, BodyFormat::kCloudEvent, kNow, sink);
  };
  run();  // warm up: buffers and the number re-parser are sized on first use
  const long before = alloc_count::allocations.load();
  run();
  EXPECT_EQ(alloc_count::allocations.load() - before, 0);
  EXPECT_EQ(accepted % 2, 0u);
  EXPECT_GE(accepted, 4u);
  EXPECT_EQ(sink.events, 2u * (50 + 1 + 1));
  EXPECT_EQ(sink.rejects, 2u * (50 + 1));
}

TEST(DecodeLine, DepthLimitIsExactlyThirtyTwo) {
  EXPECT_TRUE(decode(nested(32)).ok) << decode(nested(32)).message;
  EXPECT_EQ(decode(nested(33)).reason, RejectReason::kTooLarge);
}

TEST(DecodeLine, Messages) {
  EXPECT_EQ(decode(R"({"event_id":"e","ts":0,"type":"complaint"})").message, R"(missing field "customer_id")");
  EXPECT_EQ(decode(line_with("purchase", R"("amount":"x")")).message, R"("amount" must be a number)");
  EXPECT_EQ(decode(line_with("survey", R"("nps":11)")).message, R"("nps" out of range [0, 10])");
  EXPECT_EQ(decode(line_with("purchase", R"("amount":1e400)")).message, R"("amount" out of range [0, 1e9])");
  EXPECT_EQ(decode(line_with("foo")).message, R"(unknown event type "foo")");
  EXPECT_EQ(decode(line_with("survey")).message, R"(missing field "csat" or "nps")");
  EXPECT_EQ(decode(line_with("purchase", R"("amount":1,"amount":2)")).message, R"(duplicate field "amount")");
  EXPECT_EQ(decode("[1]").message, "expected a JSON object, got an array");
  EXPECT_EQ(decode(R"({"event_id":"a")").message, "malformed JSON (truncated)");
  EXPECT_EQ(decode(line_with("complaint") + R"( {"}":1})").message,
            "malformed JSON (trailing content after the value)");
  EXPECT_EQ(decode(R"({"a" 1})").message, "malformed JSON (bad structure)");
  EXPECT_EQ(decode("{\"a\":\"\xff\"}").message, "invalid UTF-8");
  EXPECT_EQ(decode(line_with("complaint", R"("x":"\ud800")")).message, "escaped lone surrogate in a string");
  EXPECT_EQ(decode(line_with("complaint", R"("big":1e999)")).message, R"("big" is a number out of range)");
  EXPECT_EQ(decode(nested(40)).message, "nesting deeper than 32 levels");
  std::string long_line = line_with("complaint", R"("pad":"")");
  long_line.insert(long_line.size() - 2, 70000 - long_line.size(), 'p');
  ASSERT_EQ(long_line.size(), 70000u);
  EXPECT_EQ(decode(long_line).message, "line is 70000 bytes; limit is 65536");
  // Quoted values are cut and control characters masked.
  const Outcome o = decode(line_with(std::string(100, 'z') + R"(\n)"));
  EXPECT_EQ(o.reason, RejectReason::kUnknownType);
  EXPECT_EQ(o.message, "unknown event type \"" + std::string(64, 'z') + "...\"");
  EXPECT_EQ(decode(line_with(R"(a\nb)")).message, R"(unknown event type "a?b")");
}

TEST(DecodeLine, LineLimitIsConfigurable) {
  Decoder decoder(DecodeOptions{.max_line_bytes = 100});
  const std::string line = line_with("complaint");
  ASSERT_LT(line.size(), 100u);
  EXPECT_TRUE(decode(decoder, line).ok);
  const std::string longer = line_with("complaint", R"("pad":")" + std::string(40, 'p') + "\"");
  EXPECT_EQ(decode(decoder, longer).reason, RejectReason::kTooLarge);
  // Raising the limit later grows the buffers.
  decoder.set_options(DecodeOptions{.max_line_bytes = 1 << 20});
  const std::string big = line_with("complaint", R"("pad":")" + std::string(500000, 'p') + "\"");
  EXPECT_TRUE(decode(decoder, big).ok) << decode(decoder, big).message;
  EXPECT_TRUE(decode(decoder, line).ok);
}

// ---------------------------------------------------------------------------
// Bodies

TEST(DecodeBody, NdjsonMixedGoodAndBadKeepsLineIndexes) {
  std::string body;
  body += line_with("complaint") + "\n";  // 0 good
  body += R"({"event_id":"a")"
          "\n";                                             // 1 truncated
  body += "\n";                                             // 2 empty: no callback
  body += line_with("purchase", R"("amount":3)") + "\r\n";  // 3 good, CRLF
  body += "   \t\r\n";                                      // 4 blank: no callback
  body += line_with("purchase") + "\n";                     // 5 missing amount
  body += "{\"event_id\":\"\xff\"}\n";                      // 6 invalid UTF-8
  body += line_with("review", R"("rating":4)");             // 7 good, no final newline
  const std::vector<Item> items = decode_body(body, BodyFormat::kNdjson);
  ASSERT_EQ(items.size(), 6u);
  EXPECT_EQ(items[0].index, 0u);
  EXPECT_TRUE(items[0].ok);
  EXPECT_EQ(items[1].index, 1u);
  EXPECT_EQ(items[1].reason, RejectReason::kMalformedJson);
  EXPECT_EQ(items[2].index, 3u);
  EXPECT_TRUE(items[2].ok) << items[2].message;
  EXPECT_EQ(items[2].event.amount, 3.0);
  EXPECT_EQ(items[3].index, 5u);
  EXPECT_EQ(items[3].reason, RejectReason::kMissingField);
  EXPECT_EQ(items[3].message, R"(missing field "amount")");
  EXPECT_EQ(items[4].index, 6u);
  EXPECT_EQ(items[4].reason, RejectReason::kInvalidUtf8);
  EXPECT_EQ(items[5].index, 7u);
  EXPECT_TRUE(items[5].ok);
  EXPECT_EQ(items[5].event.type, EventType::kReview);
}

// A line ending "\r\r\n": the body and decode_line (fed by the line framer, which drops the '\n' and one
// '\r') judge the same bytes alike, also exactly at max_line_bytes (found by the decoder fuzzer).
TEST(DecodeBody, NdjsonAndDecodeLineAgreeOnACarriageReturnAtTheLimit) {
  const std::string event = line_with("complaint");
  const DecodeOptions options{.max_line_bytes = event.size() + 1};
  const std::string own_cr = event + "\r";  // the framer's line: exactly one byte over the event
  const std::vector<Item> items = decode_body(own_cr + "\r\n" + event + "\r\n", BodyFormat::kNdjson, options);
  ASSERT_EQ(items.size(), 2u);
  EXPECT_TRUE(items[0].ok) << "the line's own CR is whitespace within the limit: " << items[0].message;
  EXPECT_TRUE(items[1].ok) << items[1].message;
  Decoder decoder(options);
  Event out;
  RejectReason reason = RejectReason::kMalformedJson;
  std::string_view message;
  EXPECT_TRUE(decoder.decode_line(own_cr, kNow, out, reason, message)) << message;
  const std::string over = own_cr + "\r";  // two CRs of its own: over the limit in both paths
  EXPECT_FALSE(decoder.decode_line(over, kNow, out, reason, message));
  EXPECT_EQ(reason, RejectReason::kTooLarge) << "decode_line must not drop a CR the framer already handled";
  const std::vector<Item> body = decode_body(over + "\r\n", BodyFormat::kNdjson, options);
  ASSERT_EQ(body.size(), 1u);
  EXPECT_EQ(body[0].reason, RejectReason::kTooLarge);
}

TEST(DecodeBody, NdjsonBomOnlyAtBodyStart) {
  const std::string line = line_with("complaint");
  const std::vector<Item> items =
      decode_body("\xEF\xBB\xBF" + line + "\n\xEF\xBB\xBF" + line + "\n", BodyFormat::kNdjson);
  ASSERT_EQ(items.size(), 2u);
  EXPECT_TRUE(items[0].ok) << items[0].message;
  EXPECT_FALSE(items[1].ok);
  EXPECT_EQ(items[1].index, 1u);
  EXPECT_EQ(items[1].reason, RejectReason::kMalformedJson);
}

TEST(DecodeBody, NdjsonEdgeCases) {
  EXPECT_TRUE(decode_body("", BodyFormat::kNdjson).empty());
  EXPECT_TRUE(decode_body("\n\n\r\n", BodyFormat::kNdjson).empty());
  // Each line is one unit: an object split across lines is two bad lines.
  const std::vector<Item> split = decode_body("{\"event_id\":\n\"e\"}\n", BodyFormat::kNdjson);
  ASSERT_EQ(split.size(), 2u);
  EXPECT_EQ(split[0].reason, RejectReason::kMalformedJson);
  EXPECT_EQ(split[1].reason, RejectReason::kMalformedJson);
  // The line limit applies per line, not per body.
  std::string body;
  for (int i = 0; i < 2000; ++i) body += line_with("complaint") + "\n";
  const std::vector<Item> many = decode_body(body, BodyFormat::kNdjson);
  ASSERT_EQ(many.size(), 2000u);
  EXPECT_EQ(many.back().index, 1999u);
  EXPECT_TRUE(many.back().ok);
}

TEST(DecodeBody, JsonSingleObject) {
  const std::vector<Item> items = decode_body("\xEF\xBB\xBF \n" + line_with("complaint") + "\n", BodyFormat::kJson);
  ASSERT_EQ(items.size(), 1u);
  EXPECT_TRUE(items[0].ok) << items[0].message;
  EXPECT_EQ(items[0].index, 0u);
}

TEST(DecodeBody, JsonArrayWithBadElements) {
  const std::string body = "[" + line_with("complaint") + ",\n " + line_with("purchase") + ", 42, " +
                           line_with("purchase", R"("amount":7)") + "," +
                           line_with("purchase", R"("amount":1,"amount":1)") + "]";
  const std::vector<Item> items = decode_body(body, BodyFormat::kJson);
  ASSERT_EQ(items.size(), 5u);
  for (std::size_t i = 0; i < items.size(); ++i) EXPECT_EQ(items[i].index, i);
  EXPECT_TRUE(items[0].ok) << items[0].message;
  EXPECT_EQ(items[1].reason, RejectReason::kMissingField);
  EXPECT_EQ(items[2].reason, RejectReason::kNotAnObject);
  EXPECT_TRUE(items[3].ok) << items[3].message;
  EXPECT_EQ(items[3].event.amount, 7.0);
  EXPECT_EQ(items[4].reason, RejectReason::kDuplicateField);
}

TEST(DecodeBody, JsonArrayElementDepth) {
  // Each element gets the same 32 levels as a line; the array does not count.
  std::string inner = std::string(31, '[') + std::string(31, ']');
  const std::vector<Item> ok = decode_body("[" + line_with("complaint", R"("x":)" + inner) + "]", BodyFormat::kJson);
  ASSERT_EQ(ok.size(), 1u);
  EXPECT_TRUE(ok[0].ok) << ok[0].message;
  inner = std::string(32, '[') + std::string(32, ']');
  const std::vector<Item> deep = decode_body("[" + line_with("complaint", R"("x":)" + inner) + "]", BodyFormat::kJson);
  ASSERT_EQ(deep.size(), 1u);
  EXPECT_EQ(deep[0].reason, RejectReason::kTooLarge);
}

TEST(DecodeBody, JsonUnusableBodyIsOneRejectAtIndexZero) {
  const struct {
    std::string body;
    RejectReason reason;
  } cases[] = {
      {"[" + line_with("complaint") + ",", RejectReason::kMalformedJson},
      {"[" + line_with("complaint") + "] x", RejectReason::kMalformedJson},
      {"not json", RejectReason::kMalformedJson},
      {"", RejectReason::kMalformedJson},
      {"[\"\xff\"]", RejectReason::kInvalidUtf8},
      {"42", RejectReason::kNotAnObject},
      {"\"s\"", RejectReason::kNotAnObject},
      {line_with("complaint") + line_with("complaint"), RejectReason::kMalformedJson},
  };
  for (const auto& c : cases) {
    const std::vector<Item> items = decode_body(c.body, BodyFormat::kJson);
    ASSERT_EQ(items.size(), 1u) << c.body;
    EXPECT_EQ(items[0].index, 0u);
    EXPECT_EQ(items[0].reason, c.reason) << c.body << ": " << items[0].message;
    EXPECT_TRUE(items[0].whole_body) << c.body;
  }
  EXPECT_TRUE(decode_body("[]", BodyFormat::kJson).empty());
}

// Whole-body failures (HTTP 400) are told apart from a rejected item (HTTP 200 with errors).
TEST(DecodeBody, WholeBodyFailuresAreReportedOnce) {
  const struct {
    std::string body;
    BodyFormat format;
    RejectReason reason;
  } whole[] = {
      {"not json", BodyFormat::kJson, RejectReason::kMalformedJson},
      {"[1,", BodyFormat::kJson, RejectReason::kMalformedJson},
      {"true", BodyFormat::kJson, RejectReason::kNotAnObject},
      {"\"\xff\"", BodyFormat::kJson, RejectReason::kInvalidUtf8},
      {"{\"specversion\":", BodyFormat::kCloudEvent, RejectReason::kMalformedJson},
      {"[]x", BodyFormat::kCloudEventBatch, RejectReason::kMalformedJson},
      {"{}", BodyFormat::kCloudEventBatch, RejectReason::kNotAnObject},  // a batch must be an array
      {"{\"pad\":\"" + std::string(70000, 'p') + "\"}", BodyFormat::kJson, RejectReason::kTooLarge},
  };
  for (const auto& c : whole) {
    const std::vector<Item> items = decode_body(c.body, c.format);
    ASSERT_EQ(items.size(), 1u) << c.body.substr(0, 40);
    EXPECT_TRUE(items[0].whole_body) << c.body.substr(0, 40);
    EXPECT_EQ(items[0].reason, c.reason) << c.body.substr(0, 40) << ": " << items[0].message;
  }
  // An object that is not a valid event, and any bad element or line, is an item.
  const struct {
    std::string body;
    BodyFormat format;
  } items[] = {
      {R"({"event_id":"e"})", BodyFormat::kJson},
      {R"({"specversion":"1.0"})", BodyFormat::kCloudEvent},
      {"[1]", BodyFormat::kJson},
      {"[1]", BodyFormat::kCloudEventBatch},
      {"not json", BodyFormat::kNdjson},
  };
  for (const auto& c : items) {
    const std::vector<Item> got = decode_body(c.body, c.format);
    ASSERT_EQ(got.size(), 1u) << c.body;
    EXPECT_FALSE(got[0].ok);
    EXPECT_FALSE(got[0].whole_body) << c.body;
  }
}

TEST(DecodeBody, RejectedEventIdWhenReadable) {
  const std::string body =
      "[" + line_with("purchase") + ",1," +                                             // missing amount: id e-1
      R"({"event_id":42,"customer_id":"c","ts":1793534400000,"type":"engagement"},)" +  // not a string
      R"({"event_id":"","type":"engagement"},)" +                                       // empty
      R"({"customer_id":"c","event_id":"e-5"},)" +  // read whatever the member order
      R"({"event_id":"e-6","event_id":"e-7"}])";    // duplicate: unreadable
  const std::vector<Item> got = decode_body(body, BodyFormat::kJson);
  ASSERT_EQ(got.size(), 6u);
  EXPECT_EQ(got[0].event_id, "e-1");
  EXPECT_EQ(got[1].event_id, "");
  EXPECT_EQ(got[2].event_id, "");
  EXPECT_EQ(got[3].event_id, "");
  EXPECT_EQ(got[4].event_id, "e-5");
  EXPECT_EQ(got[4].reason, RejectReason::kMissingField);
  EXPECT_EQ(got[5].reason, RejectReason::kDuplicateField);
  EXPECT_EQ(got[5].event_id, "");
  // NDJSON lines and CloudEvents (`id`) too; a line that is not JSON has none.
  const std::vector<Item> lines = decode_body(line_with("review") + "\n{\"event_id\":\"x\"\n", BodyFormat::kNdjson);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].event_id, "e-1");
  EXPECT_EQ(lines[1].event_id, "");
  const std::vector<Item> cloud =
      decode_body(R"({"specversion":"1.0","id":"ce-9","source":"/s","type":"engagement"})", BodyFormat::kCloudEvent);
  ASSERT_EQ(cloud.size(), 1u);
  EXPECT_EQ(cloud[0].reason, RejectReason::kMissingField);
  EXPECT_EQ(cloud[0].event_id, "ce-9");
}

TEST(DecodeBody, LargeJsonArray) {
  std::string body = "[";
  for (int i = 0; i < 30000; ++i) body += (i ? "," : "") + line_with("complaint");
  body += "]";
  ASSERT_GT(body.size(), 2u << 20);  // beyond the retained body buffers
  Decoder decoder;
  RecordingSink sink;
  decoder.decode_body(body, BodyFormat::kJson, kNow, sink);
  ASSERT_EQ(sink.items.size(), 30000u);
  EXPECT_TRUE(sink.items.back().ok);
  // The decoder works again after its body buffers were released.
  RecordingSink again;
  decoder.decode_body("[" + line_with("complaint") + "]", BodyFormat::kJson, kNow, again);
  ASSERT_EQ(again.items.size(), 1u);
  EXPECT_TRUE(again.items[0].ok);
}

std::string cloud_event(std::string_view type = "com.example.purchase", std::string_view extra = "",
                        std::string_view data = R"({"amount":19.99,"channel":"web"})") {
  std::string s = R"({"specversion":"1.0","id":"e-1","source":"/connectors/store","type":")";
  s.append(type).append(R"(","time":"2026-11-01T12:00:00.5+02:00","subject":"c-42")");
  if (!data.empty()) s.append(R"(,"data":)").append(data);
  if (!extra.empty()) s.append(",").append(extra);
  s.append("}");
  return s;
}

TEST(DecodeBody, CloudEventMapping) {
  const std::vector<Item> items = decode_body(cloud_event(), BodyFormat::kCloudEvent);
  ASSERT_EQ(items.size(), 1u);
  ASSERT_TRUE(items[0].ok) << items[0].message;
  const Event& e = items[0].event;
  EXPECT_EQ(e.event_id.view(), "e-1");
  EXPECT_EQ(e.customer_id.view(), "c-42");
  EXPECT_EQ(e.ts_ms, 1793527200500);
  EXPECT_EQ(e.type, EventType::kPurchase);
  EXPECT_EQ(e.channel.view(), "web");
  EXPECT_EQ(e.amount, 19.99);
}

TEST(DecodeBody, CloudEventFallbacks) {
  // channel from the last segment of source; customer_id and ts from data.
  const std::string ce =
      R"({"specversion":"1.0","id":"e-2","source":"https://example.com/connectors/chat/","type":"survey",)"
      R"("datacontenttype":"application/json","data":{"customer_id":"c-7","ts":1793534400000,"nps":9,"sentiment":0.5}})";
  const std::vector<Item> items = decode_body(ce, BodyFormat::kCloudEvent);
  ASSERT_EQ(items.size(), 1u);
  ASSERT_TRUE(items[0].ok) << items[0].message;
  const Event& e = items[0].event;
  EXPECT_EQ(e.customer_id.view(), "c-7");
  EXPECT_EQ(e.ts_ms, 1793534400000);
  EXPECT_EQ(e.type, EventType::kSurvey);
  EXPECT_EQ(e.channel.view(), "chat");
  EXPECT_EQ(e.nps, 9.0);
  EXPECT_EQ(e.sentiment, 0.5);
  // A source whose last segment is too long for a channel leaves it empty.
  const std::string urn = R"({"specversion":"1.0","id":"e","source":"urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66",)"
                          R"("type":"x.complaint","subject":"c","time":"2026-11-01T12:00:00Z"})";
  const std::vector<Item> u = decode_body(urn, BodyFormat::kCloudEvent);
  ASSERT_EQ(u.size(), 1u);
  ASSERT_TRUE(u[0].ok) << u[0].message;
  EXPECT_TRUE(u[0].event.channel.empty());
}

TEST(DecodeBody, CloudEventRejects) {
  using RR = RejectReason;
  const struct {
    const char* name;
    std::string body;
    RR reason;
    std::string_view message;
  } cases[] = {
      {"unknown_type", cloud_event("com.example.teleport"), RR::kUnknownType, R"(unknown event type "teleport")"},
      {"no_amount", cloud_event("com.example.purchase", "", R"({"channel":"web"})"), RR::kMissingField,
       R"(missing field "data.amount")"},
      {"no_data", cloud_event("com.example.purchase", "", ""), RR::kMissingField, R"(missing field "data.amount")"},
      {"data_not_object", cloud_event("com.example.purchase", "", "[1]"), RR::kWrongType,
       R"("data" must be an object)"},
      {"amount_range", cloud_event("com.example.purchase", "", R"({"amount":-5})"), RR::kOutOfRange,
       R"("data.amount" out of range [0, 1e9])"},
      {"dup_in_data", cloud_event("com.example.purchase", "", R"({"amount":1,"amount":2})"), RR::kDuplicateField,
       R"(duplicate field "data.amount")"},
      {"dup_attr", cloud_event("com.example.purchase", R"("id":"x")"), RR::kDuplicateField, R"(duplicate field "id")"},
      {"specversion", R"({"specversion":"0.3","id":"e","type":"a.complaint","subject":"c","time":0})", RR::kOutOfRange,
       R"(unsupported "specversion" "0.3"; expected "1.0")"},
      {"no_specversion", R"({"id":"e","type":"a.complaint","subject":"c","time":0})", RR::kMissingField,
       R"(missing field "specversion")"},
      {"no_id", R"({"specversion":"1.0","type":"a.complaint","subject":"c","time":0})", RR::kMissingField,
       R"(missing field "id")"},
      {"no_subject", R"({"specversion":"1.0","id":"e","type":"a.complaint","time":0})", RR::kMissingField,
       R"(missing field "subject")"},
      {"no_time", R"({"specversion":"1.0","id":"e","type":"a.complaint","subject":"c"})", RR::kMissingField,
       R"(missing field "time")"},
      {"no_subject_with_data", R"({"specversion":"1.0","id":"e","type":"a.complaint","time":0,"data":{"nps":1}})",
       RR::kMissingField, R"(missing field "subject")"},
      {"no_time_with_data", R"({"specversion":"1.0","id":"e","type":"a.complaint","subject":"c","data":{"nps":1}})",
       RR::kMissingField, R"(missing field "time")"},
      {"data_customer_id_type",
       R"({"specversion":"1.0","id":"e","type":"a.complaint","time":0,"data":{"customer_id":7}})", RR::kWrongType,
       R"("data.customer_id" must be a string)"},
      {"subject_wins_over_data",
       R"({"specversion":"1.0","id":"e","type":"a.complaint","time":0,"subject":5,)"
       R"("data":{"customer_id":"c"}})",
       RR::kWrongType, R"("subject" must be a string)"},
      {"no_type", R"({"specversion":"1.0","id":"e","subject":"c","time":0})", RR::kMissingField,
       R"(missing field "type")"},
      {"bad_time", R"({"specversion":"1.0","id":"e","type":"a.complaint","subject":"c","time":"now"})",
       RR::kBadTimestamp, R"("time" is not RFC 3339 or epoch milliseconds)"},
      {"source_number", R"({"specversion":"1.0","id":"e","type":"a.complaint","subject":"c","time":0,"source":1})",
       RR::kWrongType, R"("source" must be a string)"},
      {"array", "[" + cloud_event() + "]", RR::kNotAnObject, "expected a JSON object, got an array"},
  };
  for (const auto& c : cases) {
    const std::vector<Item> items = decode_body(c.body, BodyFormat::kCloudEvent);
    ASSERT_EQ(items.size(), 1u) << c.name;
    EXPECT_EQ(items[0].reason, c.reason) << c.name << ": " << items[0].message;
    EXPECT_EQ(items[0].message, c.message) << c.name;
  }
}

TEST(DecodeBody, CloudEventBatch) {
  const std::string body = "[" + cloud_event() + "," + cloud_event("com.example.teleport") + ",\"x\"," +
                           cloud_event("org.acme.review", "", R"({"rating":4,"channel":"app"})") + "]";
  const std::vector<Item> items = decode_body(body, BodyFormat::kCloudEventBatch);
  ASSERT_EQ(items.size(), 4u);
  EXPECT_TRUE(items[0].ok) << items[0].message;
  EXPECT_EQ(items[1].index, 1u);
  EXPECT_EQ(items[1].reason, RejectReason::kUnknownType);
  EXPECT_EQ(items[2].reason, RejectReason::kNotAnObject);
  EXPECT_TRUE(items[3].ok) << items[3].message;
  EXPECT_EQ(items[3].index, 3u);
  EXPECT_EQ(items[3].event.type, EventType::kReview);
  EXPECT_EQ(items[3].event.channel.view(), "app");
  // A batch must be an array; anything unusable is one reject at index 0.
  const std::vector<Item> single = decode_body(cloud_event(), BodyFormat::kCloudEventBatch);
  ASSERT_EQ(single.size(), 1u);
  EXPECT_EQ(single[0].reason, RejectReason::kNotAnObject);
  EXPECT_EQ(single[0].message, "expected a JSON array, got an object");
  const std::vector<Item> number = decode_body("7", BodyFormat::kCloudEventBatch);
  ASSERT_EQ(number.size(), 1u);
  EXPECT_EQ(number[0].message, "expected a JSON array, got a number");
  const std::vector<Item> broken = decode_body("[" + cloud_event(), BodyFormat::kCloudEventBatch);
  ASSERT_EQ(broken.size(), 1u);
  EXPECT_EQ(broken[0].reason, RejectReason::kMalformedJson);
  EXPECT_TRUE(decode_body("[]", BodyFormat::kCloudEventBatch).empty());
}

// ---------------------------------------------------------------------------
// Robustness: random and mutated input never crashes and always yields
// exactly one outcome per item.

class CountingSink : public DecodeSink {
 public:
  void on_event(std::size_t index, const Event& event) override {
    record(index);
    EXPECT_FALSE(event.event_id.empty());
  }
  void on_reject(std::size_t index, RejectReason reason, std::string_view message) override {
    record(index);
    EXPECT_LT(static_cast<int>(reason), kRejectReasonCount);
    EXPECT_FALSE(message.empty());
  }
  void record(std::size_t index) {
    if (count > 0) {
      EXPECT_GT(index, last);
    }
    last = index;
    ++count;
  }
  std::size_t count = 0;
  std::size_t last = 0;
};

TEST(Robustness, RandomAndMutatedLines) {
  std::mt19937 rng(20261101);
  const std::vector<std::string> seeds = {
      line_with("purchase", R"("amount":19.99,"channel":"web")"),
      line_with("survey", R"("nps":9,"x":[1,{"y":"\u00e9\ud83d\ude00"}])"),
      cloud_event(),
      R"({"a":[[[{"b":null}]]],"c":"\\\"","d":-1.5e-3})",
  };
  const std::string alphabet = "{}[]\":,\\-+.0123456789eEtrufalsn \t\r\n\x00\x7f\xc0\xed\xff\xef\xbb\xbfu";
  Decoder decoder(DecodeOptions{.max_line_bytes = 512});
  int accepted = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    std::string line;
    if (iter % 4 == 0) {  // pure random bytes
      const std::size_t n = rng() % 96;
      for (std::size_t i = 0; i < n; ++i) line.push_back(static_cast<char>(rng() & 0xFF));
    } else {  // mutate a good line: flip, insert, delete, truncate
      line = seeds[rng() % seeds.size()];
      const int edits = 1 + static_cast<int>(rng() % 4);
      for (int k = 0; k < edits && !line.empty(); ++k) {
        const std::size_t pos = rng() % line.size();
        switch (rng() % 4) {
          case 0:
            line[pos] = alphabet[rng() % alphabet.size()];
            break;
          case 1:
            line.insert(pos, 1, alphabet[rng() % alphabet.size()]);
            break;
          case 2:
            line.erase(pos, 1);
            break;
          default:
            line.resize(pos);
            break;
        }
      }
    }
    Event event;
    RejectReason reason = RejectReason::kTooLarge;
    std::string_view message;
    const bool ok = decoder.decode_line(line, kNow, event, reason, message);
    if (ok) {
      ++accepted;
      EXPECT_FALSE(event.event_id.empty());
      EXPECT_FALSE(event.customer_id.empty());
    } else {
      EXPECT_FALSE(message.empty());
    }
    // Bodies: as NDJSON (a callback per non-blank line) and as JSON.
    CountingSink sink;
    const std::string body = line + "\n" + line + "\n" + line;
    decoder.decode_body(body, static_cast<BodyFormat>(iter % 4), kNow, sink);
    if (iter % 4 == static_cast<int>(BodyFormat::kNdjson)) {
      std::size_t expected = 0;
      std::size_t start = 0;
      while (start <= body.size()) {
        std::size_t nl = body.find('\n', start);
        if (nl == std::string::npos) nl = body.size();
        std::string_view l(body.data() + start, nl - start);
        if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
        if (l.find_first_not_of(" \t\r") != std::string_view::npos) ++expected;
        start = nl + 1;
      }
      EXPECT_EQ(sink.count, expected);
    }
  }
  EXPECT_GT(accepted, 100);  // mutations that keep a line valid still decode
}

}  // namespace
}  // namespace rapport
