// rapportctl migrate: re-partitions a stopped state dir into `partitions` partitions.
#pragma once

#include <cstdint>

#include "daemon/ctl/common.h"

namespace rapport {

// Builds the new layout in <state dir>/migrate from the old one (meta, dead letters, every event, replayed
// with the config's scoring settings and deduplicated, so a killed run can be run again), verifies counts and
// every customer's state, then moves it into place step by step (a run killed there finishes when run again).
// Progress on stderr unless quiet. Refuses a state dir that a process has open.
int ctl_migrate(const CtlTarget& target, std::uint32_t partitions, bool quiet);

}  // namespace rapport
