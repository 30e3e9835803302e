// rapportctl backup and restore: hot compacted copies of a state dir (every partition, and a manifest).
#pragma once

#include <string>

#include "daemon/ctl/common.h"

namespace rapport {

// Hot compacted copy of the state dir into `destination` (must not exist or be empty).
int ctl_backup(const CtlTarget& target, const std::string& destination, bool quiet);
// Copies a backup into the (stopped) target state dir; refuses a dir with data unless `force`.
int ctl_restore(const CtlTarget& target, const std::string& source, bool force);

// True when a process other than this one has the LMDB environment in `directory` open
// (it holds the shared lock on lock.mdb that every LMDB process takes).
bool state_dir_in_use(const std::string& directory);
// state_dir_in_use for partition 0 or any directory under `directory`/partitions.
bool state_dir_partitions_in_use(const std::string& directory);

}  // namespace rapport
