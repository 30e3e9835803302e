// Cluster: which rapportd instance of a Kafka consumer group owns which partition (docs/design.md,
// "Kafka"). Each member publishes a record {instance, http_address, partitions} keyed by its instance
// name to the members topic whenever its assignment changes (a tombstone when it leaves); every
// instance reads that topic and keeps this map. This instance's own assignment comes from its
// consumer's rebalance callbacks (set_own), which are authoritative for it; two other members
// claiming one partition (one's record is stale mid-rebalance) resolve to the later record.
// Queries for a customer another instance owns are answered 307 to that owner's http_address.
// Thread safety: every member may be called from any thread (one mutex; the map is small).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace rapport {

struct Member {
  std::string instance;      // unique in the group (config kafka.instance; default: host name)
  std::string http_address;  // base URL a client can reach this instance's HTTP API at, e.g. "http://10.0.0.5:8080"
  std::vector<std::uint32_t> partitions;  // ascending
  friend bool operator==(const Member&, const Member&) = default;
};

// {"format":1,"instance":…,"http_address":…,"partitions":[…]}
std::string encode_member(const Member& member);
// A member record of key `key`; the error says what is wrong.
Result<Member> decode_member(std::string_view key, std::string_view value);

struct Owner {
  enum class Kind : std::uint8_t { kSelf, kOther, kUnknown };  // kUnknown: nobody claims it (rebalancing)
  Kind kind = Kind::kUnknown;
  std::string instance, http_address;
};

class Cluster {
 public:
  // `partitions`: the input topic's partition count (= the engine's).
  Cluster(Member self, std::uint32_t partitions);

  std::uint32_t partitions() const { return partitions_; }
  Member self() const;

  // This instance's assignment (rebalance callbacks); returns the record to publish.
  Member set_own(std::vector<std::uint32_t> partitions);
  // Another member's latest record (its own record, read back, is ignored); a tombstone removes it.
  void update(const Member& member);
  void remove(std::string_view instance);
  // Consumer lag of a partition this instance owns (nullopt: unknown).
  void set_lag(std::uint32_t partition, std::optional<std::int64_t> lag);

  Owner owner_of_partition(std::uint32_t partition) const;
  Owner owner_of(std::string_view customer_id) const;  // by storage/partitioner.h
  // Members known (this instance included) and partitions nobody claims, for the metrics.
  std::size_t member_count() const;
  std::uint32_t unowned_partitions() const;

  // GET /v1/cluster: {"instance":…,"partitions":[{"partition":p,"owner":…|null,"http_address":…|null,
  // "lag":n|null},…],"members":[{"instance":…,"http_address":…,"partitions":[…]},…]}.
  // Lag is known for this instance's partitions only (each member reports its own).
  std::string to_json() const;

 private:
  struct Claim {
    Member member;
    std::uint64_t order = 0;  // later record wins a disputed partition
  };
  Owner owner_locked(std::uint32_t partition) const;

  const std::uint32_t partitions_;
  mutable std::mutex mutex_;
  Member self_;                                       // mutex_
  std::map<std::string, Claim, std::less<>> others_;  // mutex_
  std::map<std::uint32_t, std::int64_t> lag_;         // mutex_
  std::uint64_t next_order_ = 1;                      // mutex_
};

}  // namespace rapport
