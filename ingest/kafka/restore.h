// Restore of one partition's state from the changes topic (docs/design.md, "Kafka"): reads changes
// partition p from its start to the end it had when the restore began. The last value of each key
// wins, except that a value whose version is below the one already held is stale (a late write of a
// former owner) and dropped; a tombstone erases. A commit's snapshots count only once the position
// marker published after them is read: snapshots after the last marker belong to a commit whose
// publication did not finish (the owner died), and the input is replayed from that marker instead.
// Undecodable records are skipped and counted (their message kept), never fatal.
// Thread safety: restore_partition is re-entrant (each call has its own consumer).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "common/status.h"
#include "ingest/kafka/client.h"
#include "scoring/customer_state.h"

namespace rapport::kafka {

struct RestoreProgress {
  std::int32_t partition = 0;
  std::uint64_t read = 0;   // records read so far
  std::uint64_t total = 0;  // records in the partition when the restore began (the end it reads to)
};

struct RestoredPartition {
  // Every customer the changes partition names: its state, or nullopt when its last record is a tombstone.
  std::map<std::string, std::optional<CustomerState>> customers;
  // The input offset to resume consuming from: the last position marker. nullopt: no marker (the
  // partition never had a commit published, or the topic lost it): nothing to restore from.
  std::optional<std::uint64_t> input_offset;
  std::uint64_t records = 0;      // records read
  std::uint64_t stale = 0;        // values dropped for a lower version than the one held
  std::uint64_t incomplete = 0;   // snapshots after the last marker, dropped
  std::uint64_t undecodable = 0;  // records skipped
  std::string first_undecodable;  // the first one's error ("" when none)
};

struct RestoreOptions {
  ClientOptions client;
  std::string topic;  // the changes topic
  std::int32_t partition = 0;
  std::chrono::milliseconds timeout{120000};  // for the whole restore
  std::uint64_t progress_every = 10000;       // records between progress calls (also called at the end)
};

Result<RestoredPartition> restore_partition(const RestoreOptions& options,
                                            const std::function<void(const RestoreProgress&)>& progress = {});

}  // namespace rapport::kafka
