#include "daemon/value_records.h"

#include <algorithm>
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

namespace {

void number_or_null(JsonWriter& w, std::string_view key, double v, bool known) {
  if (known && std::isfinite(v)) {
    w.field(key, v);
  } else {
    w.key(key).null();
  }
}

void count_or_null(JsonWriter& w, std::string_view key, std::uint64_t v, bool known) {
  if (known) {
    w.field(key, v);
  } else {
    w.key(key).null();
  }
}

void flag_or_null(JsonWriter& w, std::string_view key, bool v, bool known) {
  if (known) {
    w.field(key, v);
  } else {
    w.key(key).null();
  }
}

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

bool digits(std::string_view s, std::size_t pos, std::size_t n, int& out) {
  if (pos + n > s.size()) return false;
  out = 0;
  for (std::size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    out = out * 10 + (s[i] - '0');
  }
  return true;
}

}  // namespace

void write_value_model_json(JsonWriter& w, const ValueModel& m) {
  const bool v2 = m.version >= 2;
  w.begin_object().field("as_of", format_rfc3339(m.as_of_ms));
  w.key("bgnbd")
      .begin_object()
      .field("r", m.bgnbd.r)
      .field("alpha", m.bgnbd.alpha)
      .field("a", m.bgnbd.a)
      .field("b", m.bgnbd.b)
      .field("time_unit", "day")
      .field("log_likelihood", m.bgnbd_log_likelihood);
  count_or_null(w, "customers", m.bgnbd_customers, v2);
  count_or_null(w, "iterations", static_cast<std::uint64_t>(std::max(m.bgnbd_iterations, 0)), v2);
  flag_or_null(w, "converged", m.bgnbd_converged, v2);
  w.end_object();
  w.key("gamma_gamma")
      .begin_object()
      .field("p", m.gamma_gamma.p)
      .field("q", m.gamma_gamma.q)
      .field("gamma", m.gamma_gamma.gamma)
      .field("log_likelihood", m.gamma_gamma_log_likelihood);
  count_or_null(w, "customers", m.gamma_gamma_customers, v2);
  count_or_null(w, "iterations", static_cast<std::uint64_t>(std::max(m.gamma_gamma_iterations, 0)), v2);
  flag_or_null(w, "converged", m.gamma_gamma_converged, v2);
  w.end_object();
  w.key("tiers").begin_object();
  number_or_null(w, "platinum_min_clv", m.platinum_min_clv, true);
  number_or_null(w, "gold_min_clv", m.gold_min_clv, true);
  number_or_null(w, "platinum_fraction", m.platinum_fraction, v2);
  number_or_null(w, "gold_fraction", m.gold_fraction, v2);
  w.end_object();
  w.field("fitted_at", format_rfc3339(m.fitted_at_ms))
      .field("fit_seconds", m.fit_seconds)
      .field("customers", m.customers)
      .field("repeat_customers", m.repeat_customers);
  w.end_object();
}

Result<std::int64_t> parse_as_of(std::string_view text) {
  const auto bad = [&] {
    return Status::Error("'" + std::string(text) +
                         "' is not a date: use YYYY-MM-DD (midnight UTC) or RFC 3339, e.g. 2024-05-01T12:00:00Z");
  };
  int year = 0, month = 0, day = 0;
  if (!digits(text, 0, 4, year) || text.size() < 10 || text[4] != '-' || !digits(text, 5, 2, month) || text[7] != '-' ||
      !digits(text, 8, 2, day)) {
    return bad();
  }
  static constexpr int kDaysIn[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (month < 1 || month > 12 || day < 1 || day > kDaysIn[month - 1]) return bad();
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  if (month == 2 && day == 29 && !leap) return bad();
  std::int64_t ms = days_from_civil(year, static_cast<unsigned>(month), static_cast<unsigned>(day)) * 86'400'000;
  if (text.size() == 10) return ms;

  int hour = 0, minute = 0, second = 0;
  if ((text[10] != 'T' && text[10] != 't' && text[10] != ' ') || !digits(text, 11, 2, hour) || text.size() < 19 ||
      text[13] != ':' || !digits(text, 14, 2, minute) || text[16] != ':' || !digits(text, 17, 2, second) || hour > 23 ||
      minute > 59 || second > 60) {
    return bad();
  }
  ms += (hour * 3600 + minute * 60 + std::min(second, 59)) * 1000LL;
  std::size_t pos = 19;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    int scale = 100;
    const std::size_t start = pos;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      ms += (text[pos] - '0') * scale;
      scale /= 10;
      ++pos;
    }
    if (pos == start) return bad();
  }
  if (pos == text.size()) return bad();  // RFC 3339 needs a zone
  if (text[pos] == 'Z' || text[pos] == 'z') {
    ++pos;
  } else if (text[pos] == '+' || text[pos] == '-') {
    int oh = 0, om = 0;
    if (!digits(text, pos + 1, 2, oh) || pos + 3 >= text.size() || text[pos + 3] != ':' ||
        !digits(text, pos + 4, 2, om) || oh > 23 || om > 59) {
      return bad();
    }
    const std::int64_t offset = (oh * 60 + om) * 60'000LL;
    ms += text[pos] == '+' ? -offset : offset;
    pos += 6;
  } else {
    return bad();
  }
  if (pos != text.size()) return bad();
  return ms;
}

}  // namespace rapport
