// Customer states for the ingest/kafka tests: one purchase per call, so that a state is easy to tell apart.
#pragma once

#include <string>

#include "scoring/customer_state.h"
#include "scoring/event.h"

namespace rapport::kafka::test {

inline CustomerState with_purchases(int purchases, double amount = 10.0) {
  CustomerState state;
  ApplyConfig config;
  for (int i = 0; i < purchases; ++i) {
    Event e;
    e.event_id.assign("e" + std::to_string(i));
    e.customer_id.assign("c");
    e.ts_ms = 1'700'000'000'000 + i * 86'400'000LL;
    e.type = EventType::kPurchase;
    e.amount = amount;
    apply_event(state, e, config);
  }
  return state;
}

}  // namespace rapport::kafka::test
