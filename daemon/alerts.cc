#include "daemon/alerts.h"

#include <algorithm>

#include "daemon/value_service.h"

namespace rapport {
namespace {

constexpr std::uint8_t kAlertRecordVersion = 1;

void put_u32(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put_str(std::string& out, std::string_view s) {
  put_u32(out, static_cast<std::uint32_t>(s.size()));
  out.append(s);
}

class RecordReader {
 public:
  explicit RecordReader(std::string_view data) : data_(data) {}
  bool u8(std::uint8_t& v) {
    if (data_.empty()) return false;
    v = static_cast<std::uint8_t>(data_[0]);
    data_.remove_prefix(1);
    return true;
  }
  bool u64(std::uint64_t& v) {
    if (data_.size() < 8) return false;
    v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<std::uint8_t>(data_[i]);
    data_.remove_prefix(8);
    return true;
  }
  bool str(std::string& s) {
    if (data_.size() < 4) return false;
    std::uint32_t n = 0;
    for (int i = 3; i >= 0; --i) n = (n << 8) | static_cast<std::uint8_t>(data_[i]);
    data_.remove_prefix(4);
    if (data_.size() < n) return false;
    s.assign(data_.substr(0, n));
    data_.remove_prefix(n);
    return true;
  }
  bool done() const { return data_.empty(); }

 private:
  std::string_view data_;
};

// The per-partition observer: stashes the "before" view between before_event and after_event.
class AlertObserver final : public OutboxObserver {
 public:
  explicit AlertObserver(const Alerts& alerts) : alerts_(alerts) {}

  bool before_event(const Event& event, const CustomerState& state) override {
    if (const std::uint64_t v = alerts_.version(); v != version_ || !context_) {
      context_ = alerts_.context();
      version_ = v;
    }
    candidates_.clear();
    const std::string_view label = event.channel.view();
    const std::string_view cls = channel_name(classify_channel(label));
    bool needs_full = false, needs_satisfaction = false;
    const bool fitted = context_->model != nullptr && context_->model->fitted_at_ms != 0;
    for (std::size_t i = 0; i < context_->rules.size(); ++i) {
      const AlertRule& r = context_->rules[i];
      if (r.tier_changed) continue;
      if (!r.event_types.empty() &&
          std::find(r.event_types.begin(), r.event_types.end(), event.type) == r.event_types.end()) {
        continue;
      }
      if (!r.channels.empty() && std::none_of(r.channels.begin(), r.channels.end(),
                                              [&](const std::string& c) { return c == label || c == cls; })) {
        continue;
      }
      candidates_.push_back(i);
      // The tier (any model) and the churn risk (only with a model: without one it is null) need every
      // score; a satisfaction threshold only the satisfaction.
      needs_full = needs_full || !r.tiers.empty() || (r.churn_risk_above && fitted);
      needs_satisfaction = needs_satisfaction || r.satisfaction_below.has_value();
    }
    if (candidates_.empty()) return false;
    now_ms_ = alerts_.now_ms();
    view_ = needs_full ? View::kFull : needs_satisfaction ? View::kSatisfaction : View::kNone;
    before_ = view(state);
    return true;
  }

  void after_event(const Event& event, const CustomerState& state, std::vector<std::string>& payloads) override {
    const AlertView after = view(state);
    for (const std::size_t i : candidates_) {
      const AlertRule& r = context_->rules[i];
      if (!alert_fires_on_event(r, event, before_.tier, before_.scores, after.scores)) continue;
      AlertMessage d;
      d.alert = r.name;
      d.customer_id = event.customer_id.view();
      d.event_id = std::string(event.event_id.view());
      d.at_ms = now_ms_;
      payloads.push_back(encode_alert_record(d));
    }
  }

 private:
  const Alerts& alerts_;
  std::shared_ptr<const AlertContext> context_;
  std::uint64_t version_ = 0;
  std::vector<std::size_t> candidates_;
  std::int64_t now_ms_ = 0;
  enum class View : std::uint8_t { kNone, kSatisfaction, kFull };
  AlertView view(const CustomerState& state) const {
    if (view_ == View::kFull) return alert_view(state, now_ms_, *context_);
    AlertView v;
    if (view_ == View::kSatisfaction)
      v.scores.satisfaction = explain_satisfaction(state, now_ms_, context_->evaluate).score;
    return v;
  }
  AlertView before_;
  View view_ = View::kNone;
};

}  // namespace

std::string encode_alert_record(const AlertMessage& d) {
  std::string out(1, static_cast<char>(kAlertRecordVersion));
  put_str(out, d.alert);
  put_str(out, d.customer_id);
  out.push_back(d.event_id ? 1 : 0);
  put_str(out, d.event_id ? *d.event_id : std::string_view{});
  const auto at = static_cast<std::uint64_t>(d.at_ms);
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((at >> (8 * i)) & 0xff));
  if (!d.id.empty()) put_str(out, d.id);  // carried by rapportctl migrate: the id it was first delivered under
  return out;
}

Status decode_alert_record(std::string_view bytes, AlertMessage& out) {
  RecordReader r(bytes);
  std::uint8_t version = 0, has_event = 0;
  std::string event_id;
  std::uint64_t at = 0;
  if (!r.u8(version) || version != kAlertRecordVersion) {
    return Status::Error("alert record of unknown format " + std::to_string(version));
  }
  out.id.clear();
  if (!r.str(out.alert) || !r.str(out.customer_id) || !r.u8(has_event) || !r.str(event_id) || !r.u64(at) ||
      (!r.done() && (!r.str(out.id) || out.id.empty())) || !r.done()) {
    return Status::Error("alert record is truncated or corrupt");
  }
  out.event_id = has_event ? std::optional<std::string>(std::move(event_id)) : std::nullopt;
  out.at_ms = static_cast<std::int64_t>(at);
  return Status::Ok();
}

AlertView alert_view(const CustomerState& state, std::int64_t now_ms, const AlertContext& context) {
  const Scores s = evaluate(state, now_ms, context.evaluate);
  const ValueModel* model = context.model.get();
  const bool fitted = model != nullptr && model->fitted_at_ms != 0;
  const bool buyer = s.transactions > 0;
  AlertView view;
  view.scores.satisfaction = s.satisfaction;
  CustomerValue v;
  if (fitted && buyer) {
    v = customer_value(*model, context.value, purchase_summary(s));
    view.scores.churn_risk = v.churn_risk;
  }
  view.tier = classify_tier(model, v.clv, s.profit_12m);
  return view;
}

Alerts::Alerts(Clock clock) : clock_(std::move(clock)), context_(std::make_shared<AlertContext>()) {}

void Alerts::set_rules(std::vector<AlertRule> rules, const EvaluateConfig& evaluate, const ValueConfig& value) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto next = std::make_shared<AlertContext>(*context_);
  next->rules = std::move(rules);
  next->evaluate = evaluate;
  next->value = value;
  context_ = std::move(next);
  version_.fetch_add(1, std::memory_order_acq_rel);
}

void Alerts::set_model(std::shared_ptr<const ValueModel> model) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto next = std::make_shared<AlertContext>(*context_);
  next->model = std::move(model);
  context_ = std::move(next);
  version_.fetch_add(1, std::memory_order_acq_rel);
}

std::shared_ptr<const AlertContext> Alerts::context() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return context_;
}

std::shared_ptr<OutboxObserver> Alerts::make_observer() { return std::make_shared<AlertObserver>(*this); }

void Alerts::tier_changes(std::string_view customer_id, const CustomerState& state, const ValueModel* previous,
                          const ValueModel& current, std::int64_t now_ms, std::vector<std::string>& records) const {
  if (previous == nullptr || previous->fitted_at_ms == 0) return;
  const auto ctx = context();
  bool any = false;
  for (const AlertRule& r : ctx->rules) any = any || r.tier_changed;
  if (!any) return;
  AlertContext before_ctx = *ctx, after_ctx = *ctx;
  before_ctx.model = std::shared_ptr<const ValueModel>(std::shared_ptr<const ValueModel>{}, previous);
  after_ctx.model = std::shared_ptr<const ValueModel>(std::shared_ptr<const ValueModel>{}, &current);
  const Tier before = alert_view(state, now_ms, before_ctx).tier;
  const Tier after = alert_view(state, now_ms, after_ctx).tier;
  for (const AlertRule& r : ctx->rules) {
    if (!alert_fires_on_tier_change(r, before, after)) continue;
    AlertMessage d;
    d.alert = r.name;
    d.customer_id = customer_id;
    d.at_ms = now_ms;
    records.push_back(encode_alert_record(d));
  }
}

}  // namespace rapport
