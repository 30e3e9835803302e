// Scoring: apply_event (ns/event) on a customer with a realistic history,
// evaluate (ns/customer), and the value model (expected transactions, CLV) per
// customer, next to a baseline that only copies the event into the state's
// counters so the cost of the model itself can be quoted as a ratio.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "scoring/customer_state.h"
#include "scoring/value_model.h"

namespace {

using namespace rapport;

constexpr std::int64_t kDay = 86'400'000;
constexpr std::int64_t kT0 = 20'000 * kDay;

std::vector<Event> make_events(int n) {
  std::mt19937_64 rng(1);
  std::uniform_int_distribution<int> type(0, kEventTypeCount - 1);
  std::uniform_int_distribution<std::int64_t> ts(kT0, kT0 + 700 * kDay);
  std::vector<Event> events(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    Event& e = events[static_cast<std::size_t>(i)];
    e.event_id.assign("e-" + std::to_string(i));
    e.customer_id.assign("c-1");
    e.type = static_cast<EventType>(type(rng));
    e.ts_ms = ts(rng);
    e.channel.assign(i % 3 ? "web" : "phone");
    if (e.type == EventType::kPurchase || e.type == EventType::kRefund) e.amount = 10 + i % 50;
    if (e.type == EventType::kSurvey) e.csat = 1 + i % 5;
    if (i % 4 == 0) e.sentiment = 0.25;
  }
  return events;
}

// apply_event into a state that already holds 200 events (steady state).
void BM_ApplyEvent(benchmark::State& state) {
  const auto events = make_events(4096);
  ApplyConfig config;
  CustomerState base;
  for (int i = 0; i < 200; ++i) apply_event(base, events[static_cast<std::size_t>(i)], config);
  CustomerState s = base;
  std::size_t i = 200;
  for (auto _ : state) {
    apply_event(s, events[i], config);
    if (++i == events.size()) {
      i = 200;
      s = base;
    }
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ApplyEvent);

// Baseline: only the counters every design keeps (count, first/last seen, per type).
void BM_ApplyCountersOnly(benchmark::State& state) {
  const auto events = make_events(4096);
  CustomerState s;
  std::size_t i = 0;
  for (auto _ : state) {
    const Event& e = events[i];
    ++s.event_count;
    ++s.type_counts[static_cast<std::size_t>(e.type)];
    s.first_seen_ms = std::min(s.first_seen_ms, e.ts_ms);
    s.last_seen_ms = std::max(s.last_seen_ms, e.ts_ms);
    benchmark::DoNotOptimize(s);
    if (++i == events.size()) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ApplyCountersOnly);

void BM_Evaluate(benchmark::State& state) {
  const auto events = make_events(500);
  CustomerState s;
  for (const Event& e : events) apply_event(s, e, ApplyConfig{});
  const EvaluateConfig config;
  for (auto _ : state) benchmark::DoNotOptimize(evaluate(s, kT0 + 701 * kDay, config));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Evaluate);

void BM_CustomerValue(benchmark::State& state) {
  ValueModel model;
  model.fitted_at_ms = 1;
  model.bgnbd = {0.243, 30.9, 0.793, 2.426};
  model.gamma_gamma = {6.25, 3.74, 15.44};
  const ValueConfig config;
  const PurchaseSummary c{4, 200, 272, 35};
  for (auto _ : state) benchmark::DoNotOptimize(customer_value(model, config, c));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_CustomerValue);

}  // namespace
