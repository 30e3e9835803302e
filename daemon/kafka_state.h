// State follows its partition (docs/design.md, "Kafka"): what a new owner does with partition p before it
// consumes p, and what every commit publishes. Glue between the changes topic (ingest/kafka), the store
// and the rapport_kafka_* metrics; logs each restore's start, progress and end.
// Thread safety: take_over runs on the consumer's rebalance callback (one partition at a time per caller).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/status.h"
#include "daemon/kafka_metrics.h"
#include "ingest/kafka/consumer.h"
#include "ingest/kafka/restore.h"
#include "storage/store.h"

namespace rapport {

struct TakeOver {
  std::string source;                  // "changes", "local" or "input" (the metrics label)
  std::optional<std::int64_t> resume;  // the input offset to seek to; nullopt: the beginning
  std::uint64_t customers = 0;         // customers restored (tombstones included)
};

// The input offset as Store::apply_batch stores it under `offset_key` (8 bytes, big-endian).
std::string encode_input_offset(std::uint64_t offset);
std::optional<std::int64_t> decode_input_offset(std::string_view bytes);

// Partition p was assigned to this instance. `local` is the input offset this instance's store already
// holds for p (nullopt: none). With kChanges, reads changes partition p; if its position is newer than
// `local`, replaces the store's state by it (customers in the store that the topic does not name are
// erased: the topic holds every customer of p but those erased) and stores the position under
// offset_key, in one commit; else keeps the local state ("local"; at the same position, the topic's
// tombstones are applied to it: an erasure moves no position). With kInput, or when the topic holds
// nothing for p, resumes from `local` ("local") or from the beginning with the state as it is ("input").
Result<TakeOver> take_over_partition(RestoreMode mode, const kafka::RestoreOptions& options, Store& store,
                                     const std::string& offset_key, std::optional<std::int64_t> local,
                                     KafkaStateMetrics& metrics);

}  // namespace rapport
