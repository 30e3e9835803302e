// Decoder: identify events ({"type":"identify","customer_id","aliases":[...],"event_id","ts"}), accepted only
// with DecodeOptions::identify, on every body format, with bad and missing aliases as clear rejections.
#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

#include "ingest/decoder.h"

namespace rapport {
namespace {

constexpr std::int64_t kNow = 1793534400000;  // 2026-11-01T12:00:00Z

std::string identify_line(std::string_view aliases_json) {
  return R"({"event_id":"i-1","customer_id":"alice@example.com","ts":"2026-11-01T12:00:00Z","type":"identify",)"
         R"("aliases":)" +
         std::string(aliases_json) + "}";
}

DecodeOptions with_identify() {
  DecodeOptions options;
  options.identify = true;
  return options;
}

struct Line {
  bool ok = false;
  Event event;
  RejectReason reason = RejectReason::kMalformedJson;
  std::string message;
  bool identify = false;
  std::vector<std::string> aliases;
};

Line decode(std::string_view line, DecodeOptions options = with_identify()) {
  Decoder decoder(options);
  Line out;
  std::string_view message;
  out.ok = decoder.decode_line(line, kNow, out.event, out.reason, message);
  if (!out.ok) out.message = std::string(message);
  if (const auto* aliases = decoder.identify_aliases()) {
    out.identify = true;
    out.aliases = *aliases;
  }
  return out;
}

struct Item {
  std::size_t index = 0;
  enum Kind { kEvent, kIdentify, kReject } kind = kEvent;
  std::string customer_id;
  std::vector<std::string> aliases;
  RejectReason reason = RejectReason::kMalformedJson;
  std::string message;
};

class Recorder : public DecodeSink {
 public:
  void on_event(std::size_t index, const Event& event) override {
    items.push_back({index, Item::kEvent, std::string(event.customer_id.view()), {}, {}, {}});
  }
  void on_identify(std::size_t index, const Event& event, std::span<const std::string> aliases) override {
    items.push_back({index,
                     Item::kIdentify,
                     std::string(event.customer_id.view()),
                     std::vector<std::string>(aliases.begin(), aliases.end()),
                     {},
                     {}});
  }
  void on_reject(std::size_t index, RejectReason reason, std::string_view message) override {
    items.push_back({index, Item::kReject, {}, {}, reason, std::string(message)});
  }
  std::vector<Item> items;
};

TEST(DecodeIdentify, GoodLineGivesTheIdsTsAndAliases) {
  const Line l = decode(identify_line(R"(["+15550100","crm-7"])"));
  ASSERT_TRUE(l.ok) << l.message;
  EXPECT_TRUE(l.identify);
  EXPECT_EQ(l.event.customer_id.view(), "alice@example.com");
  EXPECT_EQ(l.event.event_id.view(), "i-1");
  EXPECT_EQ(l.event.ts_ms, kNow);
  EXPECT_EQ(l.aliases, (std::vector<std::string>{"+15550100", "crm-7"}));
}

TEST(DecodeIdentify, AnOrdinaryEventAfterAnIdentifyIsNoIdentify) {
  Decoder decoder(with_identify());
  Event e;
  RejectReason reason{};
  std::string_view message;
  ASSERT_TRUE(decoder.decode_line(identify_line(R"(["b"])"), kNow, e, reason, message)) << message;
  ASSERT_NE(decoder.identify_aliases(), nullptr);
  ASSERT_TRUE(decoder.decode_line(
      R"({"event_id":"e","customer_id":"c","ts":"2026-11-01T12:00:00Z","type":"complaint"})", kNow, e, reason, message))
      << message;
  EXPECT_EQ(decoder.identify_aliases(), nullptr);
  EXPECT_EQ(e.type, EventType::kComplaint);
}

TEST(DecodeIdentify, RefusedWhenNotEnabled) {
  DecodeOptions options;
  options.identify_refusal = kIdentifyKafkaRefusal;
  const Line l = decode(identify_line(R"(["b"])"), options);
  ASSERT_FALSE(l.ok);
  EXPECT_EQ(l.reason, RejectReason::kIdentityRefused);
  EXPECT_EQ(l.message, kIdentifyKafkaRefusal);
  EXPECT_EQ(reject_reason_label(RejectReason::kIdentityRefused), "identity_refused");
  // The default refusal names the ways that do merge.
  const Line d = decode(identify_line(R"(["b"])"), DecodeOptions{});
  ASSERT_FALSE(d.ok);
  EXPECT_NE(d.message.find(":merge"), std::string::npos) << d.message;
}

TEST(DecodeIdentify, MissingAliases) {
  const Line l = decode(R"({"event_id":"i","customer_id":"a","ts":1793534400000,"type":"identify"})");
  ASSERT_FALSE(l.ok);
  EXPECT_EQ(l.reason, RejectReason::kMissingField);
  EXPECT_EQ(l.message, R"(missing field "aliases")");
  const Line null_aliases = decode(identify_line("null"));
  ASSERT_FALSE(null_aliases.ok);
  EXPECT_EQ(null_aliases.reason, RejectReason::kMissingField);
}

TEST(DecodeIdentify, BadAliases) {
  struct Case {
    std::string aliases;
    RejectReason reason;
    std::string message;
  };
  const std::string long_id(kMaxIdBytes + 1, 'x');
  const std::vector<Case> cases = {
      {R"("b")", RejectReason::kWrongType, R"("aliases" must be an array of customer ids)"},
      {R"({"b":1})", RejectReason::kWrongType, R"("aliases" must be an array of customer ids)"},
      {"[]", RejectReason::kOutOfRange, R"("aliases" must hold 1..100 customer ids, got 0)"},
      {R"(["b",7])", RejectReason::kWrongType, R"("aliases" item 1 must be a string (a customer id))"},
      {R"(["b",null])", RejectReason::kWrongType, R"("aliases" item 1 must be a string (a customer id))"},
      {R"([""])", RejectReason::kOutOfRange, R"("aliases" item 0 must be 1..128 bytes, got 0)"},
      {"[\"" + long_id + "\"]", RejectReason::kOutOfRange, R"("aliases" item 0 must be 1..128 bytes, got 129)"},
      {R"(["a\u0000b"])", RejectReason::kInvalidUtf8, R"("aliases" item 0 contains NUL)"},
  };
  for (const Case& c : cases) {
    const Line l = decode(identify_line(c.aliases));
    ASSERT_FALSE(l.ok) << c.aliases;
    EXPECT_EQ(l.reason, c.reason) << c.aliases;
    EXPECT_EQ(l.message, c.message) << c.aliases;
  }
}

TEST(DecodeIdentify, TooManyAliases) {
  std::string at_limit = "[";
  for (std::size_t i = 0; i < kMaxIdentifyAliases; ++i) at_limit += (i ? ",\"a" : "\"a") + std::to_string(i) + "\"";
  const Line ok = decode(identify_line(at_limit + "]"));
  ASSERT_TRUE(ok.ok) << ok.message;
  EXPECT_EQ(ok.aliases.size(), kMaxIdentifyAliases);
  const Line over = decode(identify_line(at_limit + ",\"one-more\"]"));
  ASSERT_FALSE(over.ok);
  EXPECT_EQ(over.reason, RejectReason::kOutOfRange);
  EXPECT_EQ(over.message, R"("aliases" must hold 1..100 customer ids, got 101)");
}

TEST(DecodeIdentify, IdsAndTsAreCheckedAsForEveryEvent) {
  const Line no_customer = decode(R"({"event_id":"i","ts":1793534400000,"type":"identify","aliases":["b"]})");
  ASSERT_FALSE(no_customer.ok);
  EXPECT_EQ(no_customer.message, R"(missing field "customer_id")");
  const Line no_ts = decode(R"({"event_id":"i","customer_id":"a","type":"identify","aliases":["b"]})");
  ASSERT_FALSE(no_ts.ok);
  EXPECT_EQ(no_ts.reason, RejectReason::kMissingField);
  const Line twice = decode(R"({"event_id":"i","customer_id":"a","ts":1793534400000,"type":"identify",)"
                            R"("aliases":["b"],"aliases":["c"]})");
  ASSERT_FALSE(twice.ok);
  EXPECT_EQ(twice.reason, RejectReason::kDuplicateField);
  EXPECT_EQ(twice.message, R"(duplicate field "aliases")");
}

TEST(DecodeIdentify, AliasesOnOtherTypesAreIgnored) {
  const Line l = decode(R"({"event_id":"e","customer_id":"a","ts":1793534400000,"type":"complaint","aliases":7})");
  ASSERT_TRUE(l.ok) << l.message;
  EXPECT_FALSE(l.identify);
}

TEST(DecodeIdentify, BodiesCallOnIdentifyInItemOrder) {
  Decoder decoder(with_identify());
  Recorder sink;
  const std::string body = R"({"event_id":"e1","customer_id":"b","ts":1793534400000,"type":"complaint"})"
                           "\n" +
                           identify_line(R"(["b"])") + "\n" + identify_line("[]") + "\n";
  decoder.decode_body(body, BodyFormat::kNdjson, kNow, sink);
  ASSERT_EQ(sink.items.size(), 3u);
  EXPECT_EQ(sink.items[0].kind, Item::kEvent);
  EXPECT_EQ(sink.items[1].kind, Item::kIdentify);
  EXPECT_EQ(sink.items[1].index, 1u);
  EXPECT_EQ(sink.items[1].customer_id, "alice@example.com");
  EXPECT_EQ(sink.items[1].aliases, std::vector<std::string>{"b"});
  EXPECT_EQ(sink.items[2].kind, Item::kReject);
  EXPECT_EQ(sink.items[2].reason, RejectReason::kOutOfRange);

  Recorder array;
  decoder.decode_body("[" + identify_line(R"(["x","y"])") + "]", BodyFormat::kJson, kNow, array);
  ASSERT_EQ(array.items.size(), 1u);
  EXPECT_EQ(array.items[0].kind, Item::kIdentify);
  EXPECT_EQ(array.items[0].aliases, (std::vector<std::string>{"x", "y"}));
}

TEST(DecodeIdentify, CloudEventTakesAliasesFromData) {
  Decoder decoder(with_identify());
  Recorder sink;
  decoder.decode_body(R"({"specversion":"1.0","id":"i-9","source":"/crm","type":"com.example.identify",)"
                      R"("subject":"alice","time":"2026-11-01T12:00:00Z","data":{"aliases":["crm-7"]}})",
                      BodyFormat::kCloudEvent, kNow, sink);
  ASSERT_EQ(sink.items.size(), 1u);
  ASSERT_EQ(sink.items[0].kind, Item::kIdentify) << sink.items[0].message;
  EXPECT_EQ(sink.items[0].customer_id, "alice");
  EXPECT_EQ(sink.items[0].aliases, std::vector<std::string>{"crm-7"});

  Recorder missing;
  decoder.decode_body(R"({"specversion":"1.0","id":"i-9","source":"/crm","type":"identify",)"
                      R"("subject":"alice","time":"2026-11-01T12:00:00Z","data":{}})",
                      BodyFormat::kCloudEvent, kNow, missing);
  ASSERT_EQ(missing.items.size(), 1u);
  EXPECT_EQ(missing.items[0].kind, Item::kReject);
  EXPECT_EQ(missing.items[0].message, R"(missing field "data.aliases")");
}

TEST(DecodeIdentify, ASinkWithoutOnIdentifyRejectsIt) {
  class EventsOnly : public DecodeSink {
   public:
    void on_event(std::size_t, const Event&) override { ++events; }
    void on_reject(std::size_t, RejectReason r, std::string_view) override { reasons.push_back(r); }
    int events = 0;
    std::vector<RejectReason> reasons;
  } sink;
  Decoder decoder(with_identify());
  decoder.decode_body(identify_line(R"(["b"])"), BodyFormat::kJson, kNow, sink);
  EXPECT_EQ(sink.events, 0);
  EXPECT_EQ(sink.reasons, std::vector<RejectReason>{RejectReason::kIdentityRefused});
}

}  // namespace
}  // namespace rapport
