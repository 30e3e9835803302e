// See dedup_filter.h.
#include "storage/dedup_filter.h"

#include <algorithm>

namespace rapport::storage_internal {
namespace {

constexpr std::size_t kBitsPerKey = 10;
constexpr std::size_t kMinCapacity = 1 << 16;
constexpr std::uint32_t kSalt[8] = {0x47b6137bU, 0x44974d91U, 0x8824ad5bU, 0xa2b7289dU,
                                    0x705495c7U, 0x2df1424bU, 0x9efc4947U, 0x5c6bfb31U};

// The key hashes are well mixed already (std::hash); this keeps structured ones apart too.
std::uint64_t mix(std::uint64_t h) {
  h *= 0x9e3779b97f4a7c15ULL;
  return h ^ (h >> 29);
}

std::size_t block_of(std::uint64_t hash, std::size_t blocks) {
  return static_cast<std::size_t>(((hash >> 32) * static_cast<std::uint64_t>(blocks)) >> 32);
}

}  // namespace

void DedupFilter::reset(std::size_t expected) {
  layers_.clear();
  size_ = 0;
  add_layer(std::max(kMinCapacity, expected));
}

void DedupFilter::add_layer(std::size_t capacity) {
  Layer& layer = layers_.emplace_back();
  layer.capacity = capacity;
  layer.blocks.assign(std::max<std::size_t>(1, capacity * kBitsPerKey / 256), Block{});
}

void DedupFilter::set(Layer& layer, std::uint64_t hash) {
  Block& b = layer.blocks[block_of(hash, layer.blocks.size())];
  const auto key = static_cast<std::uint32_t>(hash);
  for (int i = 0; i < 8; ++i) b.word[i] |= 1u << ((key * kSalt[i]) >> 27);
}

bool DedupFilter::test(const Layer& layer, std::uint64_t hash) {
  const Block& b = layer.blocks[block_of(hash, layer.blocks.size())];
  const auto key = static_cast<std::uint32_t>(hash);
  for (int i = 0; i < 8; ++i) {
    if (!(b.word[i] & (1u << ((key * kSalt[i]) >> 27)))) return false;
  }
  return true;
}

void DedupFilter::add(std::uint64_t hash) {
  if (layers_.empty()) reset(0);
  if (layers_.back().size >= layers_.back().capacity) add_layer(2 * layers_.back().capacity);
  set(layers_.back(), mix(hash));
  ++layers_.back().size;
  ++size_;
}

void DedupFilter::add(const std::uint64_t* hashes, std::size_t n) {
  constexpr std::size_t kAhead = 8;
  std::size_t i = 0;
  while (i < n) {
    if (layers_.empty()) reset(0);
    Layer* layer = &layers_.back();
    if (layer->size >= layer->capacity) {
      add_layer(2 * layer->capacity);
      layer = &layers_.back();
    }
    // A run that fits in this layer.
    const std::size_t end = i + std::min(n - i, layer->capacity - layer->size);
    for (std::size_t j = i; j < end; ++j) {
      if (j + kAhead < end) {
        __builtin_prefetch(&layer->blocks[block_of(mix(hashes[j + kAhead]), layer->blocks.size())], 1);
      }
      set(*layer, mix(hashes[j]));
    }
    layer->size += end - i;
    size_ += end - i;
    i = end;
  }
}

bool DedupFilter::may_contain(std::uint64_t hash) const {
  hash = mix(hash);
  for (const Layer& layer : layers_) {
    if (test(layer, hash)) return true;
  }
  return false;
}

std::size_t DedupFilter::bytes() const {
  std::size_t n = 0;
  for (const Layer& layer : layers_) n += layer.blocks.size() * sizeof(Block);
  return n;
}

}  // namespace rapport::storage_internal
