#include "storage/partitioner.h"

namespace rapport {

std::int32_t kafka_murmur2(std::string_view key) {
  constexpr std::uint32_t kSeed = 0x9747b28cU;
  constexpr std::uint32_t kM = 0x5bd1e995U;
  constexpr int kR = 24;
  const auto* data = reinterpret_cast<const unsigned char*>(key.data());
  const std::size_t length = key.size();
  // Unsigned arithmetic: wraps like Java's int; >> on unsigned is Java's >>>.
  std::uint32_t h = kSeed ^ static_cast<std::uint32_t>(length);
  const std::size_t blocks = length / 4;
  for (std::size_t i = 0; i < blocks; ++i) {
    const unsigned char* b = data + 4 * i;
    std::uint32_t k = static_cast<std::uint32_t>(b[0]) | (static_cast<std::uint32_t>(b[1]) << 8) |
                      (static_cast<std::uint32_t>(b[2]) << 16) | (static_cast<std::uint32_t>(b[3]) << 24);
    k *= kM;
    k ^= k >> kR;
    k *= kM;
    h *= kM;
    h ^= k;
  }
  const unsigned char* tail = data + 4 * blocks;
  switch (length % 4) {
    case 3:
      h ^= static_cast<std::uint32_t>(tail[2]) << 16;
      [[fallthrough]];
    case 2:
      h ^= static_cast<std::uint32_t>(tail[1]) << 8;
      [[fallthrough]];
    case 1:
      h ^= static_cast<std::uint32_t>(tail[0]);
      h *= kM;
      break;
    default:
      break;
  }
  h ^= h >> 13;
  h *= kM;
  h ^= h >> 15;
  return static_cast<std::int32_t>(h);
}

std::uint32_t partition_of(std::string_view customer_id, std::uint32_t partitions) {
  if (partitions <= 1) return 0;
  const std::uint32_t positive = static_cast<std::uint32_t>(kafka_murmur2(customer_id)) & 0x7fffffffU;
  return positive % partitions;
}

}  // namespace rapport
