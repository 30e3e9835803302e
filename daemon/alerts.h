// Alerts: the configured rules, evaluated as events commit (an OutboxObserver per
// partition) and at fits (tier changes); what fires goes to the partition's
// outbox (storage/outbox.h), which AlertDelivery empties. See docs/design.md, "Alerts".
//
// Evaluation per accepted event (on the partition's writer thread, inside its
// write transaction): the cheap filters first (type, channel); only if some rule
// passes them are scores computed, from the state before and after the event at
// the wall clock, with the current value model (tier at arrival = the tier of the
// state before the event). With no rule configured the observer is not installed.
//
// Thread safety: set_rules / set_model / context from any thread (the context is
// swapped whole); each observer is used by one writer thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "daemon/alert_payload.h"
#include "scoring/alert_rules.h"
#include "scoring/customer_state.h"
#include "scoring/value_model.h"
#include "storage/outbox.h"

namespace rapport {

// Everything evaluation needs, replaced whole at a reload or a fit.
struct AlertContext {
  std::vector<AlertRule> rules;
  EvaluateConfig evaluate;
  ValueConfig value;
  std::shared_ptr<const ValueModel> model;  // null before the first fit
};

// The wire record of one fired alert in the outbox (opaque to storage).
// message.customer_json is not stored: the customer is rendered at delivery. message.id is stored only
// when set (rapportctl migrate keeps an entry's original delivery id); decoded, it is "" otherwise.
std::string encode_alert_record(const AlertMessage& message);
Status decode_alert_record(std::string_view bytes, AlertMessage& out);

// The scores and tier alert rules look at, for one state at `now_ms`.
struct AlertView {
  AlertScores scores;
  Tier tier = Tier::kUnranked;
};
AlertView alert_view(const CustomerState& state, std::int64_t now_ms, const AlertContext& context);

class Alerts {
 public:
  using Clock = std::function<std::int64_t()>;  // wall clock, epoch ms
  explicit Alerts(Clock clock);

  void set_rules(std::vector<AlertRule> rules, const EvaluateConfig& evaluate, const ValueConfig& value);
  void set_model(std::shared_ptr<const ValueModel> model);
  std::shared_ptr<const AlertContext> context() const;
  bool empty() const { return context()->rules.empty(); }

  // A new observer for one partition's Store (it keeps per-event state: one writer thread each).
  std::shared_ptr<OutboxObserver> make_observer();

  // Tier-change alerts of one customer between two models (previous: the model the API used just
  // before the fit; null: no alert, the first fit ranks everyone). Appends records.
  void tier_changes(std::string_view customer_id, const CustomerState& state, const ValueModel* previous,
                    const ValueModel& current, std::int64_t now_ms, std::vector<std::string>& records) const;

  std::int64_t now_ms() const { return clock_(); }
  // Bumped by every set_rules / set_model: observers reload the context only when it moved.
  std::uint64_t version() const { return version_.load(std::memory_order_acquire); }

 private:
  Clock clock_;
  mutable std::mutex mutex_;
  std::shared_ptr<const AlertContext> context_;  // guarded by mutex_
  std::atomic<std::uint64_t> version_{0};
};

}  // namespace rapport
