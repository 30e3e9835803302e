// Record encodings: see codec.h.
#include "storage/codec.h"

#include <cstdio>

namespace rapport::storage_internal {
namespace {

// ---- events ----

// The stored fields of an event (after any ids): ts, type, presence mask,
// channel, then the present optional numbers.
void put_event_fields(const Event& e, std::string& out) {
  put_u64(out, static_cast<std::uint64_t>(e.ts_ms));
  out.push_back(static_cast<char>(e.type));
  std::uint8_t mask = (e.amount ? kHasAmount : 0) | (e.cost ? kHasCost : 0) | (e.sentiment ? kHasSentiment : 0) |
                      (e.nps ? kHasNps : 0) | (e.csat ? kHasCsat : 0) | (e.rating ? kHasRating : 0);
  out.push_back(static_cast<char>(mask));
  out.push_back(static_cast<char>(e.channel.size()));  // <= kMaxChannelBytes
  out.append(e.channel.view());
  for (const std::optional<double>* f : {&e.amount, &e.cost, &e.sentiment, &e.nps, &e.csat, &e.rating}) {
    if (*f) put_f64(out, **f);
  }
}

Status read_event_fields(Reader& r, const std::string& what, EventFields& out) {
  std::uint8_t type = 0, mask = 0, channel_len = 0;
  if (!r.i64(out.ts_ms) || !r.u8(type) || !r.u8(mask) || !r.u8(channel_len) || !r.bytes(channel_len, out.channel)) {
    return Status::Error(what + " is truncated (corrupt record)");
  }
  if (type >= kEventTypeCount) return Status::Error(what + " has unknown event type " + std::to_string(type));
  out.type = static_cast<EventType>(type);
  std::optional<double>* fields[] = {&out.amount, &out.cost, &out.sentiment, &out.nps, &out.csat, &out.rating};
  for (int i = 0; i < 6; ++i) {
    fields[i]->reset();
    if ((mask & (1u << i)) && !r.f64(*fields[i])) return Status::Error(what + " is truncated (corrupt record)");
  }
  if (!r.done()) return Status::Error(what + " has trailing bytes (corrupt record)");
  return Status::Ok();
}

}  // namespace

std::string in_quotes(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  out += s;
  out += '"';
  return out;
}

std::string format_bytes(std::size_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(bytes);
  int unit = 0;
  while (v >= 1024.0 && unit < 5) {
    v /= 1024.0;
    ++unit;
  }
  char buf[48];
  if (unit == 0) {
    std::snprintf(buf, sizeof buf, "%zu B", bytes);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f %s", v, kUnits[unit]);
  }
  return buf;
}

// Checks the version byte of a stored value; returns the payload after it.
Status check_version(std::string_view value, std::string_view what, std::uint8_t expected) {
  if (value.empty()) return Status::Error(std::string(what) + " is empty (corrupt record)");
  auto version = static_cast<std::uint8_t>(value[0]);
  if (version != expected) {
    return Status::Error(std::string(what) + " has unknown format version " + std::to_string(version) +
                         " (written by a newer Rapport?)");
  }
  return Status::Ok();
}

void to_timeline(const EventFields& f, std::string_view event_id, TimelineEvent& out) {
  out.event_id.assign(event_id);
  out.ts_ms = f.ts_ms;
  out.type = f.type;
  out.channel.assign(f.channel);
  out.amount = f.amount;
  out.cost = f.cost;
  out.sentiment = f.sentiment;
  out.nps = f.nps;
  out.csat = f.csat;
  out.rating = f.rating;
}

// The ApplyConfig as stored: half-life, then the default cost per channel.
void encode_apply_config(const ApplyConfig& c, std::string& out) {
  out.clear();
  put_f64(out, c.half_life_days);
  for (double cost : c.default_cost) put_f64(out, cost);
}

bool decode_apply_config(std::string_view bytes, ApplyConfig& out) {
  Reader r(bytes);
  std::optional<double> v;
  if (!r.f64(v)) return false;
  out.half_life_days = *v;
  for (double& cost : out.default_cost) {
    if (!r.f64(v)) return false;
    cost = *v;
  }
  return r.done();
}

// Journal value: version, kind, then for an event: customer id, event id
// (each a length byte and the bytes) and the event fields; for an apply
// config: the encoded ApplyConfig.
void encode_journal_event(const Event& e, std::string& out) {
  out.clear();
  out.push_back(static_cast<char>(kRecordVersion));
  out.push_back(static_cast<char>(e.sent_as.empty() ? kJournalEvent : kJournalEventAs));
  out.push_back(static_cast<char>(e.customer_id.size()));  // <= kMaxIdBytes
  out.append(e.customer_id.view());
  out.push_back(static_cast<char>(e.event_id.size()));
  out.append(e.event_id.view());
  if (!e.sent_as.empty()) {
    out.push_back(static_cast<char>(e.sent_as.size()));
    out.append(e.sent_as.view());
  }
  put_event_fields(e, out);
}

Status decode_journal(std::uint64_t seq, std::string_view value, JournalRecord& out) {
  std::string what = "journal record " + std::to_string(seq);
  if (Status s = check_version(value, what); !s) return s;
  Reader r(value.substr(1));
  if (!r.u8(out.kind)) return Status::Error(what + " is truncated (corrupt record)");
  if (out.kind == kJournalApplyConfig) {
    std::string_view rest;
    r.bytes(value.size() - 2, rest);
    if (!decode_apply_config(rest, out.config)) return Status::Error(what + " is truncated (corrupt record)");
    return Status::Ok();
  }
  if (out.kind != kJournalEvent && out.kind != kJournalEventAs) {
    return Status::Error(what + " has unknown kind " + std::to_string(out.kind));
  }
  std::uint8_t n = 0;
  if (!r.u8(n) || !r.bytes(n, out.customer_id) || !r.u8(n) || !r.bytes(n, out.event_id) || out.customer_id.empty() ||
      out.event_id.empty()) {
    return Status::Error(what + " is truncated (corrupt record)");
  }
  out.sent_as = {};
  if (out.kind == kJournalEventAs) {
    if (!r.u8(n) || !r.bytes(n, out.sent_as) || out.sent_as.empty()) {
      return Status::Error(what + " is truncated (corrupt record)");
    }
    out.kind = kJournalEvent;
  }
  return read_event_fields(r, what, out.fields);
}

void to_event(const JournalRecord& j, Event& e) {
  e.customer_id.assign(j.customer_id);
  e.event_id.assign(j.event_id);
  e.sent_as.assign(j.sent_as);
  e.channel.assign(j.fields.channel);
  e.ts_ms = j.fields.ts_ms;
  e.type = j.fields.type;
  e.amount = j.fields.amount;
  e.cost = j.fields.cost;
  e.sentiment = j.fields.sentiment;
  e.nps = j.fields.nps;
  e.csat = j.fields.csat;
  e.rating = j.fields.rating;
}

// `events` values. Version 2 (written at checkpoints): journal sequence and

void encode_index(std::uint64_t seq, std::int64_t ts_ms, std::string& out) {
  out.clear();
  out.push_back(static_cast<char>(kIndexVersion));
  put_u64(out, seq);
  put_u64(out, static_cast<std::uint64_t>(ts_ms));
}

Status decode_index(std::string_view customer_id, std::string_view event_id, std::string_view value, IndexEntry& out) {
  std::string what = "event record " + in_quotes(customer_id) + "/" + in_quotes(event_id);
  if (!value.empty() && static_cast<std::uint8_t>(value[0]) == kIndexVersion) {
    Reader r(value.substr(1));
    if (!r.u64(out.seq) || !r.i64(out.ts_ms) || !r.done() || out.seq == 0) {
      return Status::Error(what + " is truncated (corrupt record)");
    }
    return Status::Ok();
  }
  if (Status s = check_version(value, what); !s) return s;
  Reader r(value.substr(1));
  EventFields f;
  if (Status s = read_event_fields(r, what, f); !s) return s;
  out.seq = 0;
  out.ts_ms = f.ts_ms;
  to_timeline(f, event_id, out.inline_event.emplace());
  return Status::Ok();
}

void encode_dead_letter(const DeadLetter& d, std::string& out) {
  out.clear();
  out.push_back(static_cast<char>(kRecordVersion));
  put_u64(out, static_cast<std::uint64_t>(d.received_ms));
  put_str(out, d.transport);
  put_str(out, d.reason);
  put_str(out, d.message);
  put_str(out, d.payload);
}

Status decode_dead_letter(std::uint64_t seq, std::string_view value, DeadLetter& out) {
  std::string what = "dead letter " + std::to_string(seq);
  if (Status s = check_version(value, what); !s) return s;
  Reader r(value.substr(1));
  if (!r.i64(out.received_ms) || !r.str(out.transport) || !r.str(out.reason) || !r.str(out.message) ||
      !r.str(out.payload) || !r.done()) {
    return Status::Error(what + " is truncated (corrupt record)");
  }
  return Status::Ok();
}

}  // namespace rapport::storage_internal
