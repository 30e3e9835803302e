// Store::apply_batch throughput: batches of 1, 64 and 1024 events over 10k
// customers, durability async vs fsync. Items/s = events committed per second.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "storage/store.h"

namespace rapport {
namespace {

void BM_StoreApplyBatch(benchmark::State& state) {
  const auto batch_size = static_cast<std::size_t>(state.range(0));
  const auto durability = state.range(1) == 0 ? Durability::kAsync : Durability::kFsync;
  constexpr int kCustomers = 10000;

  const char* tmp = std::getenv("TMPDIR");
  std::filesystem::path dir =
      std::filesystem::path(tmp ? tmp : "/tmp") / ("rapport-store-bench-" + std::to_string(::getpid()) + "-" +
                                                   std::to_string(batch_size) + "-" + std::to_string(state.range(1)));
  std::filesystem::remove_all(dir);
  StoreOptions options;
  options.directory = dir.string();
  options.durability = durability;
  options.initial_map_bytes = 256ull << 20;
  auto opened = Store::open(options);
  if (!opened.ok()) {
    state.SkipWithError(opened.message().c_str());
    return;
  }
  std::unique_ptr<Store> store = std::move(opened).value();

  std::mt19937_64 rng(42);
  std::vector<Event> batch(batch_size);
  std::vector<EventOutcome> outcomes;
  const ApplyConfig config;
  std::uint64_t next_id = 0;
  for (auto _ : state) {
    state.PauseTiming();
    for (Event& e : batch) {
      e.customer_id.assign("customer-" + std::to_string(rng() % kCustomers));
      e.event_id.assign("event-" + std::to_string(next_id++));
      e.ts_ms = 1700000000000 + static_cast<std::int64_t>(next_id);
      e.type = EventType::kPurchase;
      e.amount = 25.0;
      e.channel.assign("web");
    }
    state.ResumeTiming();
    Status s = store->apply_batch(batch, config, outcomes);
    if (!s.ok()) {
      state.SkipWithError(s.message().c_str());
      break;
    }
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * batch_size));
  store.reset();
  std::filesystem::remove_all(dir);
}

BENCHMARK(BM_StoreApplyBatch)
    ->ArgNames({"batch", "fsync"})
    ->ArgsProduct({{1, 64, 1024}, {0, 1}})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace
}  // namespace rapport
