// rapportctl erase and deadletter list/replay: changing what the store holds, one customer or letter at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "daemon/ctl/common.h"

namespace rapport {

// Erases a customer (state, events, dedup keys). Exit 1 when unknown.
int ctl_erase(const CtlTarget& target, const std::string& id);

struct DeadLetterOptions {
  std::uint64_t after = 0;  // start after this sequence number
  std::size_t limit = 0;    // at most this many letters (0 = all)
};
// One JSON object per line: sequence, received, transport, reason, error, payload.
int ctl_deadletter_list(const CtlTarget& target, const DeadLetterOptions& options);
// Re-submits the payloads; removes the letters that were accepted or duplicate; the rest stay and are reported
// (exit 1). With --url they are POSTed to /v1/events?deadletter=false, so a still-invalid item is answered but
// not stored as a second dead letter.
int ctl_deadletter_replay(const CtlTarget& target, const DeadLetterOptions& options);

}  // namespace rapport
