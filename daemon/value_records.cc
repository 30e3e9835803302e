#include "daemon/value_records.h"

#include <cmath>
#include <cstring>

#include "daemon/customer_json.h"

namespace rapport {

std::string encode_tier_counts(const TierCounts& counts) {
  std::string out(1, '\x01');
  out.append(reinterpret_cast<const char*>(counts.data()), sizeof(counts));
  return out;
}

bool decode_tier_counts(std::string_view bytes, TierCounts& counts) {
  if (bytes.size() != 1 + sizeof(counts) || bytes[0] != '\x01') return false;
  std::memcpy(counts.data(), bytes.data() + 1, sizeof(counts));
  return true;
}

void write_tier_thresholds(JsonWriter& w, const ValueModel& m) {
  w.key("thresholds").begin_object();
  if (std::isfinite(m.platinum_min_clv)) {
    w.field("platinum_min_clv", m.platinum_min_clv);
  } else {
    w.key("platinum_min_clv").null();
  }
  if (std::isfinite(m.gold_min_clv)) {
    w.field("gold_min_clv", m.gold_min_clv);
  } else {
    w.key("gold_min_clv").null();
  }
  w.end_object();
}

void write_value_model_json(JsonWriter& w, const ValueModel& m) {
  w.begin_object()
      .field("fitted_at", format_rfc3339(m.fitted_at_ms))
      .field("fit_seconds", m.fit_seconds)
      .field("time_unit", "days")
      .field("customers", m.customers)
      .field("repeat_customers", m.repeat_customers);
  w.key("bgnbd")
      .begin_object()
      .field("r", m.bgnbd.r)
      .field("alpha", m.bgnbd.alpha)
      .field("a", m.bgnbd.a)
      .field("b", m.bgnbd.b)
      .field("log_likelihood", m.bgnbd_log_likelihood)
      .end_object();
  w.key("gamma_gamma")
      .begin_object()
      .field("p", m.gamma_gamma.p)
      .field("q", m.gamma_gamma.q)
      .field("gamma", m.gamma_gamma.gamma)
      .field("log_likelihood", m.gamma_gamma_log_likelihood)
      .end_object();
  write_tier_thresholds(w, m);
  w.end_object();
}

}  // namespace rapport
