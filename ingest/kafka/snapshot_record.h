// The records of the changes topic (docs/design.md, "Kafka"): pure encoding and decoding, no I/O.
//
// The changes topic has the input topic's partition count; partition p holds the snapshots of input
// partition p's customers. Two kinds of record, both keyed:
//  - a customer's snapshot, key = customer_id, value = JSON
//      {"format":1,"customer_id":…,"version":V,"input_offset":O,"event_count":N,"state":"<hex>"}
//    where `state` is the CustomerState's versioned binary form (scoring/customer_state.h) in hex,
//    O the input offset the state reflects (every input record below O applied, none at or above),
//    and V = O: versions only grow along a partition, across owners too, so a reader drops a value
//    whose version is below the one it holds. A null value (tombstone) means the customer was erased.
//  - the partition's position marker, key = kPositionKey (a NUL byte first: never a customer id),
//    value {"format":1,"input_offset":O}, published after every commit, changed customers or not:
//    the input offset a restore resumes from.
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "scoring/customer_state.h"

namespace rapport::kafka {

inline constexpr std::string_view kPositionKey{"\0rapport.input_offset", 21};

struct Snapshot {
  std::string customer_id;
  std::uint64_t version = 0;
  std::uint64_t input_offset = 0;
  CustomerState state;
};

std::string encode_snapshot(std::string_view customer_id, const CustomerState& state, std::uint64_t input_offset);
std::string encode_position(std::uint64_t input_offset);

// Decodes a snapshot value of record key `key`; the error says what is wrong (not JSON, a field missing,
// a customer_id that differs from the key, a state that does not decode).
Result<Snapshot> decode_snapshot(std::string_view key, std::string_view value);
Result<std::uint64_t> decode_position(std::string_view value);

}  // namespace rapport::kafka
