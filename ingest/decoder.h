// Decoder: turns wire bytes (NDJSON, JSON, CloudEvents) into validated Events.
//
// One Decoder per thread: it owns a reused simdjson parser and padded scratch
// buffers, so the steady-state hot path does not allocate. Not thread-safe.
// Every item yields exactly one callback: an Event or a rejection with a
// reason from a bounded set (used as a metric label) and a human message.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "scoring/event.h"

namespace rapport {

// Bounded set of rejection reasons (the `reason` label of rapport_events_rejected_total).
enum class RejectReason : std::uint8_t {
  kMalformedJson,    // not JSON, truncated, trailing garbage, bad nesting
  kInvalidUtf8,      // invalid UTF-8, overlong encodings, lone surrogates, NUL
  kNotAnObject,      // valid JSON but not an object
  kMissingField,     // a required field is absent
  kWrongType,        // a field has the wrong JSON type
  kOutOfRange,       // a number or length outside its allowed range
  kUnknownType,      // `type` is not one of the known event types
  kBadTimestamp,     // `ts` not RFC 3339 nor epoch milliseconds
  kFutureTimestamp,  // `ts` further ahead of the server clock than allowed
  kDuplicateField,   // the same known field twice in one object
  kTooLarge,         // line over the limit, nesting too deep
  kIdentityRefused,  // an identify event not accepted here, or a merge the identity service refused
};
inline constexpr int kRejectReasonCount = 12;
std::string_view reject_reason_label(RejectReason reason);  // "malformed_json", ...

// An identify event names at most this many aliases.
inline constexpr std::size_t kMaxIdentifyAliases = 100;

// Why identify events are refused in Kafka mode (DecodeOptions::identify_refusal there).
inline constexpr std::string_view kIdentifyKafkaRefusal =
    "identify events are not available in Kafka mode: a merge moves customers across partitions, which the "
    "instances of the consumer group own separately";

struct DecodeOptions {
  std::int64_t max_future_skew_ms = 5 * 60 * 1000;  // reject ts further ahead than this
  std::size_t max_line_bytes = 64 * 1024;           // longer lines are rejected (kTooLarge)
  // Identify events ({"type":"identify","customer_id","aliases":[...],"event_id","ts"}, docs/design.md
  // "Identity"): decoded (DecodeSink::on_identify, Decoder::identify_aliases) when true; otherwise a valid
  // one is rejected (kIdentityRefused) with identify_refusal as its message.
  bool identify = false;
  std::string_view identify_refusal =
      "identify events are not accepted on this input: send them to rapportd over TCP or HTTP, or use "
      "POST /v1/customers/{id}:merge";
};

enum class BodyFormat : std::uint8_t {
  kNdjson,           // application/x-ndjson: one object per line
  kJson,             // application/json: one object or an array of objects
  kCloudEvent,       // application/cloudevents+json: one structured CloudEvent
  kCloudEventBatch,  // application/cloudevents-batch+json: array of CloudEvents
};

// Receives the outcome of each item. `index` is the 0-based item index (line
// index for NDJSON, counting every line including empty ones that are skipped).
class DecodeSink {
 public:
  virtual ~DecodeSink() = default;
  virtual void on_event(std::size_t index, const Event& event) = 0;
  // `message` is only valid during the call.
  virtual void on_reject(std::size_t index, RejectReason reason, std::string_view message) = 0;
  // An identify item (only with DecodeOptions::identify): merge `aliases` (1..kMaxIdentifyAliases ids,
  // validated like customer ids) into event.customer_id. Only event_id, customer_id and ts of `event` are
  // set; it is not a scoring event. By default it is rejected (kIdentityRefused).
  virtual void on_identify(std::size_t index, const Event& event, std::span<const std::string> aliases);
  // The body fails as a whole: not JSON at all, too large, or (JSON and
  // CloudEvents bodies) neither an object nor an array. Called once, instead
  // of any other callback. By default it is reported as item 0.
  virtual void on_body_reject(RejectReason reason, std::string_view message) { on_reject(0, reason, message); }
};

class Decoder {
 public:
  explicit Decoder(DecodeOptions options = {});
  ~Decoder();
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  // Decode one NDJSON line as the line framer (ingest/line_framer.h) and NDJSON
  // bodies cut it: without its '\n' and the one '\r' before it. Any other '\r'
  // is the line's own (JSON whitespace after the object, and counted against
  // max_line_bytes), so TCP, import and HTTP bodies judge the same bytes alike.
  // Returns true and fills `out` on success; on failure returns false and
  // sets `reason` and `message` (valid until the next call). With
  // DecodeOptions::identify, a successful identify line sets identify_aliases().
  bool decode_line(std::string_view line, std::int64_t now_ms, Event& out, RejectReason& reason,
                   std::string_view& message);

  // Decode a whole body in the given format, one callback per item. For
  // NDJSON, empty (or whitespace-only) lines are skipped without a callback.
  // A body that is not usable at all (see DecodeSink::on_body_reject) yields
  // a single on_body_reject. A single-object body that is an object but not a
  // valid event is an item: on_reject with index 0.
  void decode_body(std::string_view body, BodyFormat format, std::int64_t now_ms, DecodeSink& sink);

  // The `event_id` (CloudEvents: `id`) of the item just rejected, when it was
  // a non-empty string within the id limits; empty otherwise. Valid during
  // on_reject and, after decode_line, until the next call.
  std::string_view rejected_event_id() const;

  // After decode_line returned true: the aliases when the line was an identify event (`out` then holds
  // only its event_id, customer_id and ts and is not a scoring event), null otherwise. Valid until the
  // next call.
  const std::vector<std::string>* identify_aliases() const;

  const DecodeOptions& options() const { return options_; }
  void set_options(const DecodeOptions& options) { options_ = options; }

 private:
  struct Impl;
  DecodeOptions options_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rapport
