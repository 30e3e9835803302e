// Identity records: the alias groups (survivor -> aliases) and the identity
// operation in progress (merge, unmerge or erasure of a group), persisted as
// one value in partition 0's meta, so that replacing it is one atomic commit.
// See docs/design.md, "Identity".
//
// An operation is recorded with everything it needs to run again from the
// start (its staged events: the events it re-applies), before any customer
// changes; rapportd runs a recorded operation to completion at open. Running
// one is idempotent: erasing is, and re-applying staged events that are
// already stored gives duplicates.
// Thread safety: plain values and free functions; the caller serialises writes.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "scoring/event.h"
#include "storage/partitioned_store.h"

namespace rapport {

// The meta key (partition 0) of the identity records.
inline constexpr std::string_view kIdentityMetaKey = "identity.state";

enum class IdentityOpKind : std::uint8_t { kNone = 0, kMerge = 1, kUnmerge = 2, kErase = 3 };

struct IdentityOp {
  IdentityOpKind kind = IdentityOpKind::kNone;
  std::string survivor;
  // kMerge: the ids merged into survivor (their customers are erased once their events are staged);
  // kUnmerge: the aliases given back; kErase: every alias of the survivor.
  std::vector<std::string> ids;
  // kMerge: the moved customers' events relabeled to survivor (those whose event id survivor already has
  // excepted); kUnmerge: every event of the group, each labeled with the customer it goes to. Empty for kErase.
  std::vector<Event> staged;
  // kMerge, kUnmerge: survivor's shadowed events once the operation is done (see IdentityState).
  std::vector<Event> shadowed;
};

struct IdentityState {
  std::map<std::string, std::vector<std::string>> groups;  // survivor -> its aliases (sorted, none empty)
  // survivor -> the events of its aliases that a merge found already stored under survivor's dedup key
  // (customer_id = survivor, sent_as = the alias): not applied (duplicates), kept so that unmerge gives
  // them back to their alias.
  std::map<std::string, std::vector<Event>> shadowed;
  IdentityOp op;  // kNone: no operation in progress
};

// The state once its `op` is done, op cleared (the same function at the first run and at recovery).
IdentityState state_after(const IdentityState& state);

std::string encode_identity_state(const IdentityState& state);
Result<IdentityState> decode_identity_state(std::string_view bytes);

// Load (an empty state when none was stored) and save (one put_meta in partition 0).
Result<IdentityState> load_identity_state(const PartitionedStore& store);
Status save_identity_state(PartitionedStore& store, const IdentityState& state);

// TimelineEvent (as read) -> Event (to apply) for `customer_id`, keeping sent_as as given.
Event event_from_timeline(const TimelineEvent& t, std::string_view customer_id, std::string_view sent_as);

}  // namespace rapport
