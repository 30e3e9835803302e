// Internal to storage/. DedupFilter: a filter over the 64-bit hashes of the
// dedup keys (customer_id '\0' event_id) stored in `events`, so that a new
// event costs no B-tree lookup: only a hit (a stored key, or a false positive
// at about 1 %) reads the index. No false negatives: every key added stays in.
//
// A split-block Bloom filter (as in Parquet): 32-byte blocks, one bit set in
// each of a block's eight 32-bit words, the block chosen by the (remixed)
// hash's high half, the bits by its low half. It grows in layers, each twice the capacity
// of the one before (about 10 bits per key), so adding never rebuilds and a
// lookup reads one block per layer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace rapport::storage_internal {

class DedupFilter {
 public:
  // Empties the filter, sized for `expected` keys before its first growth.
  void reset(std::size_t expected);
  void add(std::uint64_t hash);
  // The same for many keys, prefetching their blocks ahead (building from a scan).
  void add(const std::uint64_t* hashes, std::size_t n);
  bool may_contain(std::uint64_t hash) const;
  std::size_t size() const { return size_; }
  std::size_t layers() const { return layers_.size(); }
  std::size_t bytes() const;

 private:
  struct Block {
    std::uint32_t word[8];
  };
  struct Layer {
    std::vector<Block> blocks;
    std::size_t capacity = 0;  // keys it takes at about kBitsPerKey bits each
    std::size_t size = 0;
  };
  static void set(Layer& layer, std::uint64_t mixed);
  static bool test(const Layer& layer, std::uint64_t mixed);
  void add_layer(std::size_t capacity);

  std::vector<Layer> layers_;
  std::size_t size_ = 0;
};

}  // namespace rapport::storage_internal
