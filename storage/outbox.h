// The alerts outbox of one Store (one partition): alert deliveries that are
// due, written in the same commit as the event that fired them.
//
// Two LMDB databases in the Store's environment: `outbox` (sequence -> payload:
// deliveries not yet delivered) and `outbox_dead` (sequence -> payload: given
// up on, kept for an operator to list and replay). Payloads are opaque bytes
// to storage (the daemon encodes them; daemon/alert_payload.h). Sequences are
// the Store's own, never reused (a high-water mark in `meta`).
//
// Bound: past StoreOptions::outbox_capacity entries, writing one more drops
// the OLDEST pending entry (counted in OutboxStats::dropped): an event is never
// refused because the outbox is full. See docs/design.md, "Alerts".
//
// Thread safety: as Store. The observer is called on the thread that calls
// apply_batch, inside its write transaction.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "scoring/customer_state.h"
#include "scoring/event.h"

namespace rapport {

// Decides, per accepted event, which alerts fire; called by Store::apply_batch
// inside the write transaction (so a fired alert commits with its event).
// Never called at journal replay: a replayed event's alerts were committed with it.
class OutboxObserver {
 public:
  virtual ~OutboxObserver() = default;
  // Before `event` is applied to `state` (a new customer's state is empty).
  // False: no alert can fire for this event (after_event is not called).
  virtual bool before_event(const Event& event, const CustomerState& state) = 0;
  // After it was applied; appends one payload per fired alert.
  virtual void after_event(const Event& event, const CustomerState& state, std::vector<std::string>& payloads) = 0;
};

enum class OutboxArea : std::uint8_t { kPending, kDead };

struct OutboxEntry {
  std::uint64_t sequence = 0;
  std::string payload;
};

struct OutboxStats {
  std::uint64_t pending = 0;  // entries in `outbox`
  std::uint64_t dead = 0;     // entries in `outbox_dead`
  std::uint64_t dropped = 0;  // pending entries dropped by the bound since this Store was opened
};

}  // namespace rapport
