// Store::apply_batch throughput: batches of 1k, 10k and 50k events over 1 M
// customers (20 % of events on a hot 1 %, the rest uniform), durability async
// vs fsync. Items/s = events acknowledged per second, including the amortised
// cost of every checkpoint: each run applies RAPPORT_STORE_BENCH_EVENTS events
// (default 2 M, i.e. two checkpoints at the default checkpoint_events of 1 M)
// to a fresh store and times the closing checkpoint too.
#include <benchmark/benchmark.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "storage/store.h"

namespace rapport {
namespace {

constexpr std::uint64_t kCustomers = 1'000'000;
constexpr std::uint64_t kHotCustomers = kCustomers / 100;
constexpr double kHotShare = 0.2;

std::int64_t total_events() {
  const char* env = std::getenv("RAPPORT_STORE_BENCH_EVENTS");
  return env ? std::max<std::int64_t>(1, std::atoll(env)) : 2'000'000;
}

void BM_StoreApplyBatch(benchmark::State& state) {
  const auto batch_size = static_cast<std::size_t>(state.range(0));
  const auto durability = state.range(1) == 0 ? Durability::kAsync : Durability::kFsync;
  const std::int64_t batches = std::max<std::int64_t>(1, total_events() / static_cast<std::int64_t>(batch_size));

  const char* tmp = std::getenv("TMPDIR");
  std::filesystem::path dir =
      std::filesystem::path(tmp ? tmp : "/tmp") / ("rapport-store-bench-" + std::to_string(::getpid()) + "-" +
                                                   std::to_string(batch_size) + "-" + std::to_string(state.range(1)));
  std::filesystem::remove_all(dir);
  StoreOptions options;
  options.directory = dir.string();
  options.durability = durability;
  options.initial_map_bytes = 1ull << 30;
  auto opened = Store::open(options);
  if (!opened.ok()) {
    state.SkipWithError(opened.message().c_str());
    return;
  }
  std::unique_ptr<Store> store = std::move(opened).value();

  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> share(0.0, 1.0);
  std::vector<Event> batch(batch_size);
  std::vector<EventOutcome> outcomes;
  const ApplyConfig config;
  std::uint64_t next_id = 0;
  char id[32];
  std::int64_t done = 0;
  for (auto _ : state) {
    for (Event& e : batch) {
      const std::uint64_t customer = share(rng) < kHotShare ? rng() % kHotCustomers : rng() % kCustomers;
      std::snprintf(id, sizeof id, "customer-%07llu", static_cast<unsigned long long>(customer));
      e.customer_id.assign(id);
      std::snprintf(id, sizeof id, "event-%llu", static_cast<unsigned long long>(next_id++));
      e.event_id.assign(id);
      e.ts_ms = 1700000000000 + static_cast<std::int64_t>(next_id) * 1000;
      e.type = EventType::kPurchase;
      e.amount = 25.0;
      e.channel.assign("web");
    }
    const auto generated = std::chrono::steady_clock::now();
    Status s = store->apply_batch(batch, config, outcomes);
    if (!s.ok()) {
      state.SkipWithError(s.message().c_str());
      break;
    }
    if (++done == batches) store.reset();  // the closing checkpoint counts too
    const auto finished = std::chrono::steady_clock::now();
    state.SetIterationTime(std::chrono::duration<double>(finished - generated).count());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(batch_size));
  state.counters["events"] = static_cast<double>(state.iterations()) * static_cast<double>(batch_size);
  store.reset();
  std::filesystem::remove_all(dir);
}

// The writer's cost per event, and whether it grows with the store: a store
// already holding `stored` checkpointed events (same customers and mix as
// above; set up untimed), then 400 k new events in batches of 10 k, durability
// async, no checkpoint (checkpoint_events above the total): only apply_batch
// is timed, i.e. dedup, journal append and the in-memory overlay. The
// counters ns_per_event (wall) and cpu_ns_per_event (the thread's CPU time in
// apply_batch, the figure to read on a loaded machine) compare across `stored`.
void BM_WriterCost(benchmark::State& state) {
  const auto stored = static_cast<std::uint64_t>(state.range(0));
  constexpr std::size_t kBatch = 10000;
  const char* tmp = std::getenv("TMPDIR");
  std::filesystem::path dir = std::filesystem::path(tmp ? tmp : "/tmp") /
                              ("rapport-writer-bench-" + std::to_string(::getpid()) + "-" + std::to_string(stored));
  std::filesystem::remove_all(dir);
  StoreOptions options;
  options.directory = dir.string();
  options.durability = Durability::kAsync;
  options.initial_map_bytes = 1ull << 30;
  options.checkpoint_events = 100'000'000;
  options.checkpoint_interval = std::chrono::hours(1);
  options.checkpoint_in_apply_batch = false;
  options.checkpoint_on_close = false;

  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> share(0.0, 1.0);
  std::uint64_t next_id = 0;
  char id[32];
  std::vector<Event> batch(kBatch);
  auto fill = [&] {
    for (Event& e : batch) {
      const std::uint64_t customer = share(rng) < kHotShare ? rng() % kHotCustomers : rng() % kCustomers;
      std::snprintf(id, sizeof id, "customer-%07llu", static_cast<unsigned long long>(customer));
      e.customer_id.assign(id);
      std::snprintf(id, sizeof id, "event-%llu", static_cast<unsigned long long>(next_id++));
      e.event_id.assign(id);
      e.ts_ms = 1700000000000 + static_cast<std::int64_t>(next_id) * 1000;
      e.type = EventType::kPurchase;
      e.amount = 25.0;
      e.channel.assign("web");
    }
  };
  std::vector<EventOutcome> outcomes;
  const ApplyConfig config;
  auto opened = Store::open(options);
  if (!opened.ok()) {
    state.SkipWithError(opened.message().c_str());
    return;
  }
  std::unique_ptr<Store> store = std::move(opened).value();
  for (std::uint64_t n = 0; n < stored; n += kBatch) {
    fill();
    if (Status s = store->apply_batch(batch, config, outcomes); !s.ok()) {
      state.SkipWithError(s.message().c_str());
      return;
    }
  }
  if (Status s = store->checkpoint(); !s.ok()) {
    state.SkipWithError(s.message().c_str());
    return;
  }
  double seconds = 0, cpu_seconds = 0;
  auto thread_cpu = [] {
    timespec ts{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
  };
  for (auto _ : state) {
    fill();
    const double cpu_start = thread_cpu();
    const auto start = std::chrono::steady_clock::now();
    Status s = store->apply_batch(batch, config, outcomes);
    const auto finished = std::chrono::steady_clock::now();
    cpu_seconds += thread_cpu() - cpu_start;
    if (!s.ok()) {
      state.SkipWithError(s.message().c_str());
      break;
    }
    seconds += std::chrono::duration<double>(finished - start).count();
    state.SetIterationTime(std::chrono::duration<double>(finished - start).count());
  }
  const double events = static_cast<double>(state.iterations()) * static_cast<double>(kBatch);
  state.SetItemsProcessed(static_cast<std::int64_t>(events));
  state.counters["ns_per_event"] = events > 0 ? seconds * 1e9 / events : 0;
  state.counters["cpu_ns_per_event"] = events > 0 ? cpu_seconds * 1e9 / events : 0;
  store.reset();
  std::filesystem::remove_all(dir);
}

// Opening a store that holds `stored` checkpointed events (the writer's
// dedup filter is built from the index at open): the time of Store::open.
void BM_StoreOpen(benchmark::State& state) {
  const auto stored = static_cast<std::uint64_t>(state.range(0));
  constexpr std::size_t kBatch = 50000;
  const char* tmp = std::getenv("TMPDIR");
  std::filesystem::path dir = std::filesystem::path(tmp ? tmp : "/tmp") /
                              ("rapport-open-bench-" + std::to_string(::getpid()) + "-" + std::to_string(stored));
  std::filesystem::remove_all(dir);
  StoreOptions options;
  options.directory = dir.string();
  options.durability = Durability::kAsync;
  options.initial_map_bytes = 1ull << 30;
  {
    auto opened = Store::open(options);
    if (!opened.ok()) {
      state.SkipWithError(opened.message().c_str());
      return;
    }
    std::unique_ptr<Store> store = std::move(opened).value();
    std::vector<Event> batch(kBatch);
    std::vector<EventOutcome> outcomes;
    char id[32];
    std::mt19937_64 rng(3);
    std::uint64_t next_id = 0;
    for (std::uint64_t n = 0; n < stored; n += kBatch) {
      for (Event& e : batch) {
        std::snprintf(id, sizeof id, "customer-%07llu", static_cast<unsigned long long>(rng() % kCustomers));
        e.customer_id.assign(id);
        std::snprintf(id, sizeof id, "event-%llu", static_cast<unsigned long long>(next_id++));
        e.event_id.assign(id);
        e.ts_ms = 1700000000000 + static_cast<std::int64_t>(next_id) * 1000;
        e.type = EventType::kPurchase;
        e.amount = 25.0;
        e.channel.assign("web");
      }
      if (Status s = store->apply_batch(batch, ApplyConfig{}, outcomes); !s.ok()) {
        state.SkipWithError(s.message().c_str());
        return;
      }
    }
  }  // closed: everything checkpointed
  for (auto _ : state) {
    auto opened = Store::open(options);
    if (!opened.ok()) {
      state.SkipWithError(opened.message().c_str());
      break;
    }
    state.PauseTiming();
    opened = Status::Error("closed");  // close untimed
    state.ResumeTiming();
  }
  std::filesystem::remove_all(dir);
}

// One run of a fixed number of batches each (see total_events()).
void Register() {
  for (std::int64_t batch : {1000, 10000, 50000}) {
    for (std::int64_t fsync : {0, 1}) {
      benchmark::RegisterBenchmark("BM_StoreApplyBatch", BM_StoreApplyBatch)
          ->ArgNames({"batch", "fsync"})
          ->Args({batch, fsync})
          ->Iterations(std::max<std::int64_t>(1, total_events() / batch))
          ->Unit(benchmark::kMillisecond)
          ->UseManualTime();
    }
  }
}

const bool registered = (Register(), true);

BENCHMARK(BM_StoreOpen)->ArgName("stored")->Arg(2'000'000)->Iterations(5)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_WriterCost)
    ->ArgName("stored")
    ->Arg(0)
    ->Arg(2'000'000)
    ->Iterations(40)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace rapport
