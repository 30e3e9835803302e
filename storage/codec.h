// Internal to storage/. The byte layouts of stored records (every value starts
// with a format-version byte), the reserved meta keys, and the encoders and
// decoders of journal, index, dead-letter and ApplyConfig records.
#pragma once

#include <bit>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "scoring/customer_state.h"
#include "scoring/event.h"
#include "storage/store.h"

namespace rapport::storage_internal {

constexpr std::uint8_t kRecordVersion = 1;  // first byte of journal, meta and deadletter values (and old events values)
constexpr std::uint8_t kIndexVersion = 2;   // first byte of events values: journal sequence + ts
// Reserved meta keys. Next dead-letter sequence, so sequences never repeat even
// after every dead letter was removed.
constexpr std::string_view kDeadLetterNextKey = "storage.dead_letter_next_sequence";
// Next alerts-outbox sequence (storage/outbox.h), so sequences never repeat.
constexpr std::string_view kOutboxNextKey = "storage.outbox_next_sequence";
// Last journal sequence applied to `customers` and `events`.
constexpr std::string_view kCheckpointKey = "storage.checkpoint_sequence";
// Bumped by every checkpoint and erasure (changes other than journal appends).
constexpr std::string_view kGenerationKey = "storage.generation";
// Lower bound of the next journal sequence (erasure may delete the last entries).
constexpr std::string_view kJournalNextKey = "storage.journal_next_sequence";
// The ApplyConfig in effect at the checkpoint sequence.
constexpr std::string_view kApplyConfigKey = "storage.apply_config";

// Journal record kinds (second byte of a journal value).
// kJournalEventAs: an event stored under a merge's survivor, with the id it was sent as.
enum : std::uint8_t { kJournalEvent = 0, kJournalApplyConfig = 1, kJournalEventAs = 2 };

// Presence bits of the optional event fields.
enum : std::uint8_t { kHasAmount = 1, kHasCost = 2, kHasSentiment = 4, kHasNps = 8, kHasCsat = 16, kHasRating = 32 };

std::string in_quotes(std::string_view s);
std::string format_bytes(std::size_t bytes);

// ---- little-endian / big-endian encoding ----

inline void put_u32(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
inline void put_u64(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
inline void put_f64(std::string& out, double v) { put_u64(out, std::bit_cast<std::uint64_t>(v)); }
inline void put_str(std::string& out, std::string_view s) {
  put_u32(out, static_cast<std::uint32_t>(s.size()));
  out.append(s);
}

inline std::string sequence_key(std::uint64_t seq) {
  std::string key(8, '\0');
  for (int i = 0; i < 8; ++i) key[i] = static_cast<char>((seq >> (8 * (7 - i))) & 0xff);
  return key;
}
inline std::uint64_t parse_sequence_key(std::string_view key) {
  std::uint64_t seq = 0;
  for (unsigned char c : key.substr(0, 8)) seq = (seq << 8) | c;
  return seq;
}

// Bounds-checked reader over a stored value.
class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}
  bool u8(std::uint8_t& v) {
    if (data_.empty()) return false;
    v = static_cast<std::uint8_t>(data_[0]);
    data_.remove_prefix(1);
    return true;
  }
  bool u32(std::uint32_t& v) {
    if (data_.size() < 4) return false;
    v = 0;
    for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(data_[i]);
    data_.remove_prefix(4);
    return true;
  }
  bool u64(std::uint64_t& v) {
    if (data_.size() < 8) return false;
    v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(data_[i]);
    data_.remove_prefix(8);
    return true;
  }
  bool i64(std::int64_t& v) {
    std::uint64_t u;
    if (!u64(u)) return false;
    v = static_cast<std::int64_t>(u);
    return true;
  }
  bool f64(std::optional<double>& v) {
    std::uint64_t u;
    if (!u64(u)) return false;
    v = std::bit_cast<double>(u);
    return true;
  }
  bool bytes(std::size_t n, std::string_view& v) {
    if (data_.size() < n) return false;
    v = data_.substr(0, n);
    data_.remove_prefix(n);
    return true;
  }
  bool str(std::string& v) {
    std::uint32_t n;
    std::string_view s;
    if (!u32(n) || !bytes(n, s)) return false;
    v.assign(s);
    return true;
  }
  bool done() const { return data_.empty(); }

 private:
  std::string_view data_;
};

inline void put_sequence(char (&out)[8], std::uint64_t seq) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((seq >> (8 * (7 - i))) & 0xff);
}

// Checks the version byte of a stored value.
Status check_version(std::string_view value, std::string_view what, std::uint8_t expected = kRecordVersion);

struct EventFields {
  std::int64_t ts_ms = 0;
  EventType type = EventType::kPurchase;
  std::string_view channel;
  std::optional<double> amount, cost, sentiment, nps, csat, rating;
};

void to_timeline(const EventFields& f, std::string_view event_id, TimelineEvent& out);

// The ApplyConfig as stored: half-life, then the default cost per channel.
void encode_apply_config(const ApplyConfig& c, std::string& out);
bool decode_apply_config(std::string_view bytes, ApplyConfig& out);

// Journal value: version, kind, then for an event: customer id, event id
// (each a length byte and the bytes), for kJournalEventAs the sent-as id
// (likewise), and the event fields; decoded, both event kinds read as kJournalEvent; for an apply
// config: the encoded ApplyConfig.
void encode_journal_event(const Event& e, std::string& out);
struct JournalRecord {
  std::uint8_t kind = kJournalEvent;
  std::string_view customer_id, event_id;
  std::string_view sent_as;  // empty unless stored as kJournalEventAs
  EventFields fields;
  ApplyConfig config;
};
Status decode_journal(std::uint64_t seq, std::string_view value, JournalRecord& out);
void to_event(const JournalRecord& j, Event& e);

// `events` values. Version 2 (written at checkpoints): journal sequence and
// ts (the timeline sorts without reading the journal). Version 1 (written by
// Rapport before the journal): the event fields themselves.
struct IndexEntry {
  std::uint64_t seq = 0;  // 0: version 1, `inline_event` holds the event
  std::int64_t ts_ms = 0;
  std::optional<TimelineEvent> inline_event;
};
void encode_index(std::uint64_t seq, std::int64_t ts_ms, std::string& out);
Status decode_index(std::string_view customer_id, std::string_view event_id, std::string_view value, IndexEntry& out);

void encode_dead_letter(const DeadLetter& d, std::string& out);
Status decode_dead_letter(std::uint64_t seq, std::string_view value, DeadLetter& out);

}  // namespace rapport::storage_internal
