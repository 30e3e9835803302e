// KeyOrdered: an id with a payload, sortable in LMDB's key order (bytes, then
// length: the order of std::string_view) at a fraction of the cost of
// comparing the ids. The first 16 bytes, big-endian and zero-padded, are
// compared as two integers first; that agrees with the byte order (a zero pad
// only ties with a real zero byte, and the ids then decide), and it settles
// most comparisons without reading the ids. The checkpoint sorts its frozen
// customers with it (bench/storage_bench.cc: BM_SortIds*).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace rapport {

struct KeyOrdered {
  std::uint64_t head = 0, next = 0;  // bytes 0-7 and 8-15 of id, zero-padded
  std::string_view id;               // not owned
  std::uint32_t entry = 0;           // the caller's payload (e.g. an index)

  static KeyOrdered of(std::string_view id, std::uint32_t entry) {
    return KeyOrdered{prefix(id, 0), prefix(id, 8), id, entry};
  }
  friend bool operator<(const KeyOrdered& a, const KeyOrdered& b) {
    if (a.head != b.head) return a.head < b.head;
    if (a.next != b.next) return a.next < b.next;
    return a.id < b.id;
  }

 private:
  static std::uint64_t prefix(std::string_view id, std::size_t from) {
    std::uint64_t v = 0;
    for (std::size_t k = from; k < from + 8; ++k) v = v << 8 | (k < id.size() ? static_cast<unsigned char>(id[k]) : 0u);
    return v;
  }
};

}  // namespace rapport
