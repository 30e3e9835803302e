#include "storage/key_order.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

namespace rapport {
namespace {

// Sorting by KeyOrdered gives exactly the order of the ids as std::string_view (LMDB's key order),
// around the 8- and 16-byte prefix boundaries, with zero bytes, high bytes and shared prefixes.
TEST(KeyOrdered, SortsLikeTheIdsThemselves) {
  std::vector<std::string> ids = {"",
                                  std::string(1, '\0'),
                                  std::string(2, '\0'),
                                  "a",
                                  std::string("a\0", 2),
                                  std::string("a\0b", 3),
                                  "ab",
                                  "customer",
                                  std::string("customer\0", 9),
                                  "customer-",
                                  "customer-0000001",
                                  std::string("customer-0000001\0", 17),
                                  "customer-00000010",
                                  "customer-0000002",
                                  "\xff",
                                  "\xff\xff\xff\xff\xff\xff\xff\xff\xff",
                                  "\x7f\x80"};
  std::mt19937_64 rng(3);
  const std::string alphabet = std::string(
      "\0\x01"
      "09az\x7f\x80\xfe\xff",
      10);
  for (int i = 0; i < 5000; ++i) {
    std::string id = i % 3 == 0 ? "customer-" : "";  // many ids sharing a long prefix
    const std::size_t length = rng() % 24;
    for (std::size_t k = 0; k < length; ++k) id.push_back(alphabet[rng() % alphabet.size()]);
    ids.push_back(id);
  }
  std::vector<KeyOrdered> items;
  for (std::uint32_t i = 0; i < ids.size(); ++i) items.push_back(KeyOrdered::of(ids[i], i));
  std::sort(items.begin(), items.end());
  std::vector<std::string> expected = ids;
  std::sort(expected.begin(), expected.end(),
            [](const std::string& a, const std::string& b) { return std::string_view(a) < std::string_view(b); });
  ASSERT_EQ(items.size(), expected.size());
  for (std::size_t i = 0; i < items.size(); ++i) {
    ASSERT_EQ(std::string(items[i].id), expected[i]) << "at " << i;
    EXPECT_EQ(ids[items[i].entry], items[i].id);  // the payload travels with its id
  }
}

}  // namespace
}  // namespace rapport
