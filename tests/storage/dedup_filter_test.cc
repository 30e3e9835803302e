#include "storage/dedup_filter.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

namespace rapport::storage_internal {
namespace {

TEST(DedupFilterTest, NoFalseNegativesAcrossLayersAndFewFalsePositives) {
  DedupFilter filter;
  filter.reset(1000);
  std::mt19937_64 rng(11);
  std::vector<std::uint64_t> added(300000);
  for (std::uint64_t& h : added) {
    h = rng();
    filter.add(h);
  }
  EXPECT_EQ(filter.size(), added.size());
  EXPECT_GE(filter.layers(), 3u) << "added far beyond the first layer's capacity";
  for (std::uint64_t h : added) ASSERT_TRUE(filter.may_contain(h)) << h;
  std::size_t hits = 0;
  constexpr std::size_t kProbes = 300000;
  for (std::size_t i = 0; i < kProbes; ++i) hits += filter.may_contain(rng()) ? 1 : 0;
  EXPECT_LT(hits, kProbes * 3 / 100) << "false positive rate";
}

TEST(DedupFilterTest, AddingManyAtOnceCrossesLayersLikeOneByOne) {
  DedupFilter many, one;
  many.reset(1000);
  one.reset(1000);
  std::mt19937_64 rng(12);
  std::vector<std::uint64_t> added(200000);
  for (std::uint64_t& h : added) h = rng();
  for (std::size_t i = 0; i < added.size(); i += 777) {
    const std::size_t n = std::min<std::size_t>(777, added.size() - i);
    many.add(added.data() + i, n);
    for (std::size_t j = i; j < i + n; ++j) one.add(added[j]);
  }
  many.add(added.data(), 0);
  EXPECT_EQ(many.size(), added.size());
  EXPECT_EQ(many.layers(), one.layers());
  EXPECT_EQ(many.bytes(), one.bytes());
  EXPECT_GE(many.layers(), 3u);
  for (std::uint64_t h : added) ASSERT_TRUE(many.may_contain(h)) << h;
  for (int i = 0; i < 100000; ++i) {
    const std::uint64_t probe = rng();
    ASSERT_EQ(many.may_contain(probe), one.may_contain(probe)) << "the same bits either way";
  }
}

TEST(DedupFilterTest, HashesThatDifferOnlyInOneHalfAreKeptApart) {
  // The block comes from the high half, the bits from the low half: keys
  // sharing either half must still be found, and mostly not confused.
  DedupFilter filter;
  filter.reset(0);
  for (std::uint64_t i = 0; i < 1000; ++i) {
    filter.add(i << 32 | 7);
    filter.add(std::uint64_t{7} << 32 | i);
  }
  for (std::uint64_t i = 0; i < 1000; ++i) {
    EXPECT_TRUE(filter.may_contain(i << 32 | 7));
    EXPECT_TRUE(filter.may_contain(std::uint64_t{7} << 32 | i));
  }
  std::size_t hits = 0;
  for (std::uint64_t i = 2000; i < 3000; ++i) hits += filter.may_contain(i << 32 | 8) ? 1 : 0;
  EXPECT_LT(hits, 50u);
}

TEST(DedupFilterTest, ResetEmptiesIt) {
  DedupFilter filter;
  EXPECT_FALSE(filter.may_contain(42));
  filter.add(42);
  EXPECT_TRUE(filter.may_contain(42));
  filter.reset(10);
  EXPECT_EQ(filter.size(), 0u);
  EXPECT_EQ(filter.layers(), 1u);
  EXPECT_FALSE(filter.may_contain(42));
}

}  // namespace
}  // namespace rapport::storage_internal
