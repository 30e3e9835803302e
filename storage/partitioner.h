// Partitioner: which partition a customer belongs to.
//
// Kafka's default partitioner, so that Kafka partitions map one to one onto
// Rapport's: murmur2 (Kafka's variant: seed 0x9747b28c, little-endian 4-byte
// blocks) of the customer_id bytes, made positive with & 0x7fffffff, modulo P.
// Pure functions. Thread safety: none needed.
#pragma once

#include <cstdint>
#include <string_view>

namespace rapport {

// The name recorded in a state dir's layout for this hash.
inline constexpr std::string_view kPartitionHashName = "murmur2";

// Kafka's Utils.murmur2 (as a signed 32-bit value, like Java's int).
std::int32_t kafka_murmur2(std::string_view key);

// toPositive(murmur2(key)) % partitions; partitions >= 1.
std::uint32_t partition_of(std::string_view customer_id, std::uint32_t partitions);

}  // namespace rapport
