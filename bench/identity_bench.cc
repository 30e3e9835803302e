// The identity hook on the ingest path (daemon/alias_table.h): what relabeling costs a batch of events of
// customers that were never merged, with no alias group at all and with many groups (each event a hash
// lookup), the shared routing lock included. docs/design.md, "Identity" (Hot path).
#include <benchmark/benchmark.h>

#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "daemon/alias_table.h"

namespace rapport {
namespace {

void BM_RelabelUnmergedBatch(benchmark::State& state) {
  const auto groups = static_cast<int>(state.range(0));
  std::map<std::string, std::vector<std::string>> g;
  for (int i = 0; i < groups; ++i) g["survivor-" + std::to_string(i)] = {"alias-" + std::to_string(i)};
  AliasTable table;
  table.replace(AliasMap::from_groups(g));
  std::vector<Event> events(1000);
  for (std::size_t i = 0; i < events.size(); ++i) {
    events[i].customer_id.assign("customer-" + std::to_string(i * 7919 % 100000));
    events[i].event_id.assign("e" + std::to_string(i));
  }
  for (auto _ : state) {
    std::shared_lock lock(table.route_mutex);
    table.relabel(events);
    benchmark::DoNotOptimize(events.data());
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(events.size()));
}
BENCHMARK(BM_RelabelUnmergedBatch)->ArgName("groups")->Arg(0)->Arg(10000);

}  // namespace
}  // namespace rapport
