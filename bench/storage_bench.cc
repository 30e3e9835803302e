// The checkpoint's sort of the frozen customers into key order: ids sorted as
// (string_view, index) pairs, as before, against KeyOrdered (storage/key_order.h).
// 140 k ids like the bench's customers, shuffled.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "storage/key_order.h"

namespace rapport {
namespace {

std::vector<std::string> shuffled_ids(std::size_t n) {
  std::vector<std::string> ids;
  ids.reserve(n);
  char buf[32];
  std::mt19937_64 rng(5);
  for (std::size_t i = 0; i < n; ++i) {
    std::snprintf(buf, sizeof buf, "c%llu", static_cast<unsigned long long>(rng() % 1000000));
    ids.emplace_back(buf);
  }
  return ids;
}

void BM_SortIdsAsStringViews(benchmark::State& state) {
  const auto ids = shuffled_ids(static_cast<std::size_t>(state.range(0)));
  std::vector<std::pair<std::string_view, std::uint32_t>> items;
  for (auto _ : state) {
    items.clear();
    for (std::uint32_t i = 0; i < ids.size(); ++i) items.emplace_back(ids[i], i);
    std::sort(items.begin(), items.end());
    benchmark::DoNotOptimize(items.data());
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_SortIdsAsStringViews)->Arg(140000)->Unit(benchmark::kMillisecond);

void BM_SortIdsKeyOrdered(benchmark::State& state) {
  const auto ids = shuffled_ids(static_cast<std::size_t>(state.range(0)));
  std::vector<KeyOrdered> items;
  for (auto _ : state) {
    items.clear();
    for (std::uint32_t i = 0; i < ids.size(); ++i) items.push_back(KeyOrdered::of(ids[i], i));
    std::sort(items.begin(), items.end());
    benchmark::DoNotOptimize(items.data());
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_SortIdsKeyOrdered)->Arg(140000)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace rapport
