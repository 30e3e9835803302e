#include "daemon/value_generator.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "daemon/customer_json.h"

namespace rapport {
namespace {

constexpr double kDayMs = 86'400'000.0;

double clamp_round(double v, double lo, double hi) { return std::clamp(std::round(v), lo, hi); }

std::string printf_string(const char* fmt, auto... args) {
  char buf[160];
  const int n = std::snprintf(buf, sizeof buf, fmt, args...);
  return std::string(buf, static_cast<std::size_t>(std::clamp(n, 0, static_cast<int>(sizeof buf) - 1)));
}

}  // namespace

ValueModelGenerator::ValueModelGenerator(const GenerateOptions& common, const ValueModelOptions& model)
    : common_(common), model_(model), value_rng_(common.seed), other_rng_(common.seed ^ 0x9E3779B97F4A7C15ull) {
  end_ms_ =
      common.end_ms != 0
          ? common.end_ms
          : std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
                    .count() -
                3600 * 1000;
  start_ms_ = end_ms_ - common.span_days * static_cast<std::int64_t>(kDayMs);
}

void ValueModelGenerator::emit(std::int64_t ts, std::string body) {
  if (ts > end_ms_ || ts < 0) return;
  pending_.push_back({ts, std::move(body)});
}

bool ValueModelGenerator::next_customer(std::string& out) {
  if (customer_ >= common_.customers) return false;
  const std::uint64_t id = customer_++;
  pending_.clear();

  // The purchase process (its own random stream, independent of the interactions).
  const std::int64_t birth_ms =
      start_ms_ + static_cast<std::int64_t>(value_rng_.uniform() * static_cast<double>(end_ms_ - start_ms_));
  const double T = static_cast<double>(end_ms_ - birth_ms) / kDayMs;
  draw_customer_traits(value_rng_, model_.bgnbd, model_.spend, sim_);
  simulate_purchases(value_rng_, model_.spend, T, sim_);
  const double first_spend = value_rng_.gamma(model_.spend.p) / sim_.nu;

  Rng& rng = other_rng_;
  // Latent satisfaction: noise, lowered for customers with a high dropout probability.
  const BgNbdParams& bg = model_.bgnbd;
  const double mean_p = bg.a / (bg.a + bg.b);
  const double sd_p = std::sqrt(bg.a * bg.b / ((bg.a + bg.b) * (bg.a + bg.b) * (bg.a + bg.b + 1)));
  const double s = std::clamp(0.8 * rng.normal() - 0.6 * (sim_.dropout - mean_p) / sd_p, -3.0, 3.0);

  auto pick = [&](std::initializer_list<const char*> options) {
    const auto i = static_cast<std::size_t>(rng.uniform() * static_cast<double>(options.size()));
    return options.begin()[std::min(i, options.size() - 1)];
  };
  // rapportd counts purchase days (x = distinct days - 1), so a purchase on the UTC day of the
  // previous one moves to the next day; without this, the fastest buyers would lose purchases
  // and a fit would overestimate alpha (by about 2 standard errors at 20 000 customers).
  std::int64_t last_day = -1;
  auto purchase = [&](double day, double amount) {
    auto ts = birth_ms + static_cast<std::int64_t>(day * kDayMs);
    constexpr auto kDay = static_cast<std::int64_t>(kDayMs);
    if (ts / kDay <= last_day) ts = (last_day + 1) * kDay + ts % kDay;
    if (ts > end_ms_) return;  // so are the later ones
    last_day = ts / kDay;
    const double cents = std::max(0.01, std::round(amount * 100) / 100);
    emit(ts, printf_string("\"type\":\"purchase\",\"channel\":\"%s\",\"amount\":%.2f", pick({"store", "web", "app"}),
                           cents));
    ++purchases_;
    if (model_.interactions <= 0) return;
    if (rng.uniform() < std::min(1.0, 0.15 * model_.interactions)) {
      emit(ts + static_cast<std::int64_t>((1 + 13 * rng.uniform()) * kDayMs),
           printf_string("\"type\":\"review\",\"channel\":\"%s\",\"rating\":%d", pick({"web", "app"}),
                         static_cast<int>(clamp_round(3.8 + 1.0 * s + 0.7 * rng.normal(), 1, 5))));
    }
    if (rng.uniform() < std::min(1.0, 0.03 * std::exp(-0.6 * s) * model_.interactions)) {
      emit(ts + static_cast<std::int64_t>((1 + 29 * rng.uniform()) * kDayMs),
           printf_string("\"type\":\"refund\",\"channel\":\"%s\",\"amount\":%.2f", pick({"store", "web"}),
                         std::max(0.01, std::round(cents * (0.2 + 0.8 * rng.uniform()) * 100) / 100)));
    }
  };
  purchase(0, first_spend);
  for (std::size_t i = 0; i < sim_.times.size(); ++i) purchase(sim_.times[i], sim_.spends[i]);

  if (model_.interactions > 0) {
    const double active_days = sim_.dropped ? sim_.times.back() : T;
    for (const InteractionRate& rate : kInteractionRates) {
      const std::string_view type = rate.type;
      double per_day = rate.per_day * model_.interactions;
      if (type == "complaint") per_day *= std::exp(-0.8 * s);
      if (type == "referral") per_day *= std::exp(0.8 * s);
      const int n = rng.poisson(per_day * active_days);
      for (int k = 0; k < n; ++k) {
        const auto ts = birth_ms + static_cast<std::int64_t>(rng.uniform() * active_days * kDayMs);
        if (type == "engagement") {
          emit(ts, printf_string("\"type\":\"engagement\",\"channel\":\"%s\"", pick({"web", "app", "email"})));
        } else if (type == "support" || type == "social") {
          const char* channel = type == "support" ? pick({"chat", "phone", "email"})
                                                  : pick({"twitter", "facebook", "instagram", "tiktok"});
          emit(ts, printf_string("\"type\":\"%s\",\"channel\":\"%s\",\"sentiment\":%.2f", rate.type, channel,
                                 std::clamp(0.1 + 0.45 * s + 0.35 * rng.normal(), -1.0, 1.0)));
        } else if (type == "survey") {
          if (rng.uniform() < 0.5) {
            emit(ts, printf_string("\"type\":\"survey\",\"channel\":\"survey\",\"nps\":%d",
                                   static_cast<int>(clamp_round(7 + 2.2 * s + 1.2 * rng.normal(), 0, 10))));
          } else {
            emit(ts, printf_string("\"type\":\"survey\",\"channel\":\"survey\",\"csat\":%d",
                                   static_cast<int>(clamp_round(3.6 + 0.9 * s + 0.6 * rng.normal(), 1, 5))));
          }
        } else if (type == "complaint") {
          emit(ts, printf_string("\"type\":\"complaint\",\"channel\":\"%s\",\"sentiment\":%.2f",
                                 pick({"phone", "email", "chat"}),
                                 -std::clamp(0.5 - 0.2 * s + 0.2 * rng.normal(), 0.05, 1.0)));
        } else {
          emit(ts, printf_string("\"type\":\"referral\",\"channel\":\"%s\"", pick({"web", "app"})));
        }
      }
    }
    if (sim_.dropped && rng.uniform() < 0.35) {
      emit(birth_ms + static_cast<std::int64_t>((active_days + rng.exponential(1.0 / 14)) * kDayMs),
           printf_string("\"type\":\"cancellation\",\"channel\":\"%s\"", pick({"email", "phone", "web"})));
    }
  }

  std::stable_sort(pending_.begin(), pending_.end(), [](const Pending& l, const Pending& r) { return l.ts < r.ts; });
  for (const Pending& e : pending_) {
    out +=
        "{\"event_id\":\"b" + std::to_string(serial_++) + "\",\"customer_id\":\"c" + std::to_string(id) + "\",\"ts\":";
    // Both timestamp forms, as connectors send them.
    if (rng.uniform() < 0.5) {
      out += '"' + format_rfc3339(e.ts) + '"';
    } else {
      out += std::to_string(e.ts);
    }
    out += ',';
    out += e.body;
    out += "}\n";
  }
  events_ += pending_.size();
  return true;
}

Status check_generate_options(const GenerateOptions& common, const ValueModelOptions& model) {
  if (model.model != "mix" && model.model != "bgnbd") {
    return Status::Error("--model must be mix or bgnbd, not " + model.model);
  }
  auto list = [](const std::vector<std::string>& flags) {
    std::string s;
    for (const std::string& f : flags) s += (s.empty() ? "" : ", ") + f;
    return s;
  };
  if (model.model == "bgnbd" && !model.mix_only_flags.empty()) {
    return Status::Error(list(model.mix_only_flags) + (model.mix_only_flags.size() == 1 ? " is" : " are") +
                         " for --model mix only: with --model bgnbd the number of events follows from "
                         "--customers, --span-days and the model's rates");
  }
  if (model.model == "mix" && !model.bgnbd_only_flags.empty()) {
    return Status::Error(list(model.bgnbd_only_flags) + (model.bgnbd_only_flags.size() == 1 ? " is" : " are") +
                         " for --model bgnbd only");
  }
  if (common.span_days < 1) return Status::Error("--span-days must be at least 1");
  const BgNbdParams& bg = model.bgnbd;
  const GammaGammaParams& gg = model.spend;
  for (double v : {bg.r, bg.alpha, bg.a, bg.b, gg.p, gg.q, gg.gamma}) {
    if (!(v > 0) || !std::isfinite(v)) {
      return Status::Error("--r, --alpha, --a, --b, --p, --q and --gamma must be positive numbers");
    }
  }
  if (!(model.interactions >= 0)) return Status::Error("--interactions must be 0 or more");
  return Status::Ok();
}

int generate_command(const GenerateOptions& common, const ValueModelOptions& model, std::FILE* out, std::FILE* err) {
  if (Status s = check_generate_options(common, model); !s.ok()) {
    std::fprintf(err, "rapportctl generate: %s\n", s.message().c_str());
    return 2;
  }
  if (model.model == "mix") {
    generate_events(common, out);
    return std::fflush(out) == 0 ? 0 : 2;
  }
  ValueModelGenerator generator(common, model);
  std::string buffer;
  buffer.reserve(1 << 20);
  while (generator.next_customer(buffer)) {
    if (buffer.size() > (1 << 20) - 4096) {
      std::fwrite(buffer.data(), 1, buffer.size(), out);
      buffer.clear();
    }
  }
  std::fwrite(buffer.data(), 1, buffer.size(), out);
  if (std::fflush(out) != 0) {
    std::fprintf(err, "rapportctl generate: cannot write the events\n");
    return 2;
  }
  std::fprintf(err, "generated %llu customers, %llu events (%llu purchases) up to %s\n",
               static_cast<unsigned long long>(common.customers), static_cast<unsigned long long>(generator.events()),
               static_cast<unsigned long long>(generator.purchases()), format_rfc3339(generator.end_ms()).c_str());
  return 0;
}

}  // namespace rapport
