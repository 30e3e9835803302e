// Identity records. See identity.h.
#include "storage/identity.h"

#include <algorithm>

#include "storage/codec.h"

namespace rapport {

using namespace storage_internal;

namespace {
constexpr std::uint8_t kIdentityVersion = 1;
}

IdentityState state_after(const IdentityState& state) {
  IdentityState next;
  next.groups = state.groups;
  next.shadowed = state.shadowed;
  const IdentityOp& op = state.op;
  auto& out = next.groups;
  switch (op.kind) {
    case IdentityOpKind::kNone:
      break;
    case IdentityOpKind::kMerge: {
      std::vector<std::string> mine = out[op.survivor];
      for (const std::string& id : op.ids) {
        if (auto it = out.find(id); it != out.end()) {  // a survivor itself: flattened
          mine.insert(mine.end(), it->second.begin(), it->second.end());
          out.erase(it);
        }
        next.shadowed.erase(id);
        mine.push_back(id);
      }
      std::sort(mine.begin(), mine.end());
      mine.erase(std::unique(mine.begin(), mine.end()), mine.end());
      out[op.survivor] = std::move(mine);
      break;
    }
    case IdentityOpKind::kUnmerge: {
      auto it = out.find(op.survivor);
      if (it == out.end()) break;
      std::erase_if(it->second,
                    [&](const std::string& a) { return std::find(op.ids.begin(), op.ids.end(), a) != op.ids.end(); });
      if (it->second.empty()) out.erase(it);
      break;
    }
    case IdentityOpKind::kErase:
      out.erase(op.survivor);
      next.shadowed.erase(op.survivor);
      break;
  }
  if (op.kind == IdentityOpKind::kMerge || op.kind == IdentityOpKind::kUnmerge) {
    if (op.shadowed.empty()) {
      next.shadowed.erase(op.survivor);
    } else {
      next.shadowed[op.survivor] = op.shadowed;
    }
  }
  return next;
}

namespace {

void put_events(std::string& out, const std::vector<Event>& events) {
  put_u32(out, static_cast<std::uint32_t>(events.size()));
  std::string record;
  for (const Event& e : events) {
    encode_journal_event(e, record);
    put_str(out, record);
  }
}

bool read_events(Reader& r, std::vector<Event>& events) {
  std::uint32_t n = 0;
  if (!r.u32(n)) return false;
  events.resize(n);
  std::string record;
  for (Event& e : events) {
    JournalRecord j;
    if (!r.str(record)) return false;
    if (Status s = decode_journal(0, record, j); !s || j.kind != kJournalEvent) return false;
    to_event(j, e);
  }
  return true;
}

}  // namespace

std::string encode_identity_state(const IdentityState& state) {
  std::string out;
  out.push_back(static_cast<char>(kIdentityVersion));
  put_u32(out, static_cast<std::uint32_t>(state.groups.size()));
  for (const auto& [survivor, aliases] : state.groups) {
    put_str(out, survivor);
    put_u32(out, static_cast<std::uint32_t>(aliases.size()));
    for (const std::string& a : aliases) put_str(out, a);
  }
  put_u32(out, static_cast<std::uint32_t>(state.shadowed.size()));
  for (const auto& [survivor, events] : state.shadowed) {
    put_str(out, survivor);
    put_events(out, events);
  }
  out.push_back(static_cast<char>(state.op.kind));
  if (state.op.kind != IdentityOpKind::kNone) {
    put_str(out, state.op.survivor);
    put_u32(out, static_cast<std::uint32_t>(state.op.ids.size()));
    for (const std::string& id : state.op.ids) put_str(out, id);
    put_events(out, state.op.staged);
    put_events(out, state.op.shadowed);
  }
  return out;
}

Result<IdentityState> decode_identity_state(std::string_view bytes) {
  const std::string corrupt = "meta " + in_quotes(kIdentityMetaKey) + " is corrupt";
  if (bytes.empty() || static_cast<std::uint8_t>(bytes[0]) != kIdentityVersion) {
    return Status::Error(corrupt + " (unknown version; written by a newer rapportd?)");
  }
  Reader r(bytes.substr(1));
  IdentityState state;
  std::uint32_t groups = 0;
  if (!r.u32(groups)) return Status::Error(corrupt);
  for (std::uint32_t g = 0; g < groups; ++g) {
    std::string survivor;
    std::uint32_t n = 0;
    if (!r.str(survivor) || !r.u32(n)) return Status::Error(corrupt);
    std::vector<std::string>& aliases = state.groups[survivor];
    aliases.resize(n);
    for (std::string& a : aliases) {
      if (!r.str(a)) return Status::Error(corrupt);
    }
  }
  std::uint32_t shadowed = 0;
  if (!r.u32(shadowed)) return Status::Error(corrupt);
  for (std::uint32_t g = 0; g < shadowed; ++g) {
    std::string survivor;
    if (!r.str(survivor) || !read_events(r, state.shadowed[survivor])) return Status::Error(corrupt);
  }
  std::uint8_t kind = 0;
  if (!r.u8(kind) || kind > static_cast<std::uint8_t>(IdentityOpKind::kErase)) return Status::Error(corrupt);
  state.op.kind = static_cast<IdentityOpKind>(kind);
  if (state.op.kind != IdentityOpKind::kNone) {
    std::uint32_t n = 0;
    if (!r.str(state.op.survivor) || !r.u32(n)) return Status::Error(corrupt);
    state.op.ids.resize(n);
    for (std::string& id : state.op.ids) {
      if (!r.str(id)) return Status::Error(corrupt);
    }
    if (!read_events(r, state.op.staged) || !read_events(r, state.op.shadowed)) return Status::Error(corrupt);
  }
  if (!r.done()) return Status::Error(corrupt);
  return state;
}

Result<IdentityState> load_identity_state(const PartitionedStore& store) {
  auto bytes = store.get_meta(kIdentityMetaKey);
  if (!bytes.ok()) return Status::Error(bytes.message());
  if (!bytes->has_value()) return IdentityState{};
  return decode_identity_state(**bytes);
}

Status save_identity_state(PartitionedStore& store, const IdentityState& state) {
  return store.put_meta(kIdentityMetaKey, encode_identity_state(state));
}

Event event_from_timeline(const TimelineEvent& t, std::string_view customer_id, std::string_view sent_as) {
  Event e;
  e.customer_id.assign(customer_id);
  e.event_id.assign(t.event_id);
  e.sent_as.assign(sent_as == customer_id ? std::string_view{} : sent_as);
  e.channel.assign(t.channel);
  e.ts_ms = t.ts_ms;
  e.type = t.type;
  e.amount = t.amount;
  e.cost = t.cost;
  e.sentiment = t.sentiment;
  e.nps = t.nps;
  e.csat = t.csat;
  e.rating = t.rating;
  return e;
}

}  // namespace rapport
