// Submission: the unit of work a network front hands to the storage writer.
//
// A front (TCP connection, HTTP request) decodes a chunk of input into a
// Submission: the valid events, and the rejected items with their reasons.
// It passes the Submission to an IngestSink; the writer commits it durably
// and calls `done` exactly once, on the writer thread, with the outcome of
// every event. `done` must not block: it posts to the front's own executor.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/source_offset.h"
#include "common/status.h"
#include "ingest/decoder.h"
#include "scoring/event.h"

namespace rapport {

enum class Transport : std::uint8_t { kTcp, kHttp, kImport, kKafka };
inline constexpr int kTransportCount = 4;
std::string_view transport_name(Transport transport);  // "tcp", "http", "import", "kafka"

enum class Outcome : std::uint8_t { kAccepted, kDuplicate };

// Bytes of a rejected item kept for the dead-letter store.
inline constexpr std::size_t kMaxPayloadBytes = 4096;

struct Rejection {
  std::uint32_t index = 0;  // item index (TCP: 1-based line number; HTTP: 0-based item index)
  RejectReason reason = RejectReason::kMalformedJson;
  std::string message;
  std::string payload;  // the raw item (its first kMaxPayloadBytes) for the dead-letter store: see dead_letter_payload
};

// What a dead letter stores for a rejected item: `item` cut to `max_bytes`,
// or kRedactedPayload when the item has an "auth" key (has_auth_key), so that
// a bearer token sent in the wrong place is never stored or listed.
inline constexpr std::string_view kRedactedPayload = "{\"auth\":\"<redacted>\"}";
std::string dead_letter_payload(std::string_view item, std::size_t max_bytes);
// True when `text` (valid JSON or not) may hold an "auth" key: a key, quoted or
// not, that contains "auth" in any case ("auth", "Authorization", "x-auth")
// followed by ':', or a quoted key written with escapes (it could spell one).
bool has_auth_key(std::string_view text);

// An identify item (docs/design.md, "Identity"): merge `aliases` into `customer_id`. Not an event: the
// sink hands it to the identity service, and the submission completes once the merge is recorded or refused.
struct Identify {
  std::uint32_t index = 0;  // item index, as Rejection::index
  std::string customer_id;
  std::vector<std::string> aliases;
  std::string payload;      // the raw item (as Rejection::payload), for the dead letter if the merge is refused
  bool dead_letter = true;  // store a dead letter if refused (HTTP ?deadletter=false: no)
};

struct SubmissionResult {
  Status status;                  // !ok: storage refused the batch (nothing stored; e.g. disk full)
  std::vector<Outcome> outcomes;  // one per Submission::events entry when ok
  // When ok: the identify items whose merge was refused (index, kIdentityRefused, the refusal; no payload),
  // in item order. The others merged (or were merged already).
  std::vector<Rejection> refused;
};

struct Submission {
  Transport transport = Transport::kTcp;
  std::vector<Event> events;
  std::vector<std::uint32_t> event_index;  // item index of each event (parallel to events)
  std::vector<Rejection> rejections;       // stored as dead letters
  std::vector<Identify> identifies;        // identify items, in item order (usually none)
  // Rejected items not kept as dead letters because of the per-request cap
  // (counted in rapport_dead_letters_dropped_total once committed).
  std::uint64_t dead_letters_dropped = 0;
  std::chrono::steady_clock::time_point received_at{};
  // Kafka mode: the topic partition position these events cover, stored in the same commit
  // (Store::apply_batch's sources). The submission then goes to that partition's writer only.
  std::optional<SourceOffset> source;
  std::function<void(SubmissionResult&&)> done;
};

// Where fronts send their work. Implemented by the daemon's storage writer.
// Thread safety: try_submit may be called from any thread.
class IngestSink {
 public:
  virtual ~IngestSink() = default;
  // Takes the submission if the bounded queue has room; returns false (and
  // leaves `submission` untouched) when it is full — the caller stops
  // reading from its socket and tries again shortly. Never blocks.
  virtual bool try_submit(std::unique_ptr<Submission>& submission) = 0;
  // False once the daemon is shutting down (fronts then refuse new work).
  virtual bool accepting() const = 0;
};

}  // namespace rapport
