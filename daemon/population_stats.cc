#include "daemon/population_stats.h"

#include <simdjson.h>

#include <charconv>
#include <chrono>
#include <cmath>
#include <limits>

#include "common/clock.h"
#include "daemon/value_service.h"

namespace rapport {
namespace {

constexpr std::int64_t kDayMs = 86'400'000;
std::int64_t day_of(std::int64_t ms) { return ms >= 0 ? ms / kDayMs : (ms - kDayMs + 1) / kDayMs; }

// Shortest round-trip form; non-finite values as the strings "nan", "inf", "-inf" (JSON has no such numbers).
void put_number(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "\"nan\"";
  } else if (std::isinf(v)) {
    out += v > 0 ? "\"inf\"" : "\"-inf\"";
  } else if (v == 0 && std::signbit(v)) {
    out += "-0.0";  // "-0" would read back as the integer 0
  } else {
    char buf[32];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
  }
}

bool get_number(simdjson::dom::element e, double& out) {
  if (e.is_string()) {
    const std::string_view s = e.get_string().value_unsafe();
    if (s == "nan") {
      out = std::numeric_limits<double>::quiet_NaN();
    } else if (s == "inf") {
      out = std::numeric_limits<double>::infinity();
    } else if (s == "-inf") {
      out = -std::numeric_limits<double>::infinity();
    } else {
      return false;
    }
    return true;
  }
  if (e.is_double()) {
    out = e.get_double().value_unsafe();
    return true;
  }
  if (e.is_int64()) {
    out = static_cast<double>(e.get_int64().value_unsafe());
    return true;
  }
  if (e.is_uint64()) {
    out = static_cast<double>(e.get_uint64().value_unsafe());
    return true;
  }
  return false;
}

}  // namespace

void PopulationStats::add(const CustomerState& state, std::int64_t as_of_ms, const EvaluateConfig& scoring) {
  if (state.event_count == 0 || day_of(state.first_seen_ms) > day_of(as_of_ms)) return;  // not a customer yet
  ++customers;
  const Scores s = evaluate(state, as_of_ms, scoring);
  const PurchaseHistory h = purchase_history_as_of(state, as_of_ms);
  if (h.transactions == 0) {
    if (s.profit_12m < 0) ++non_buyer_leads;
    return;
  }
  ++buyers[BuyerTuple{h.x, h.t_x_days, h.T_days, h.mean_repeat_spend, static_cast<float>(s.profit_12m)}];
}

void PopulationStats::merge(const PopulationStats& other) {
  customers += other.customers;
  non_buyer_leads += other.non_buyer_leads;
  for (const auto& [tuple, count] : other.buyers) buyers[tuple] += count;
}

std::uint64_t PopulationStats::buyer_count() const {
  std::uint64_t n = 0;
  for (const auto& entry : buyers) n += entry.second;
  return n;
}

Result<ValueSnapshot> fit_population_stats(const PopulationStats& stats, const ValueConfig& value,
                                           std::int64_t as_of_ms) {
  const auto started = std::chrono::steady_clock::now();
  // The buyers in the tuples' order (whatever order the customers were counted in).
  std::vector<PurchaseSummary> buyers;
  std::vector<float> profit_12m;  // parallel to buyers
  const std::uint64_t buyer_count = stats.buyer_count();
  if (buyer_count > stats.customers || stats.non_buyer_leads > stats.customers - buyer_count) {
    return Status::Error("inconsistent population stats: " + std::to_string(stats.customers) + " customers, " +
                         std::to_string(buyer_count) + " buyers, " + std::to_string(stats.non_buyer_leads) +
                         " non-buying leads");
  }
  buyers.reserve(buyer_count);
  profit_12m.reserve(buyer_count);
  for (const auto& [t, count] : stats.buyers) {
    buyers.insert(buyers.end(), count, PurchaseSummary{t.x, t.t_x, t.T, t.mean_spend});
    profit_12m.insert(profit_12m.end(), count, t.profit_12m);
  }
  const std::uint64_t customers = stats.customers, non_buyer_leads = stats.non_buyer_leads;

  // Too little data is the normal state of a new install, not a failure.
  const FitReadiness readiness = fit_readiness(buyers);
  if (!readiness.ready()) {
    return Status::NotReady("no value model yet: waiting for " + std::to_string(kMinFitCustomers) +
                            " customers who bought, " + std::to_string(kMinFitRepeaters) +
                            " of them with repeat purchases (have " + std::to_string(readiness.customers) + " and " +
                            std::to_string(readiness.repeaters_with_spend) + ")");
  }
  auto bgnbd = fit_bgnbd(buyers);
  if (!bgnbd.ok()) return bgnbd.status();
  auto gamma_gamma = fit_gamma_gamma(buyers);
  if (!gamma_gamma.ok()) return gamma_gamma.status();

  ValueSnapshot snap;
  ValueModel& m = snap.model;
  m.bgnbd = bgnbd->params;
  m.gamma_gamma = gamma_gamma->params;
  m.bgnbd_log_likelihood = bgnbd->log_likelihood;
  m.gamma_gamma_log_likelihood = gamma_gamma->log_likelihood;
  m.bgnbd_customers = bgnbd->customers;
  m.gamma_gamma_customers = gamma_gamma->customers;
  m.bgnbd_iterations = bgnbd->iterations;
  m.gamma_gamma_iterations = gamma_gamma->iterations;
  m.bgnbd_converged = bgnbd->converged;
  m.gamma_gamma_converged = gamma_gamma->converged;
  m.as_of_ms = as_of_ms;
  m.fitted_at_ms = wall_ms();
  m.customers = customers;
  for (const PurchaseSummary& b : buyers) m.repeat_customers += b.x > 0 ? 1 : 0;

  // Tier thresholds from the CLV of every non-lead customer (non-buyers have CLV 0).
  std::vector<double> clvs;
  std::vector<double> buyer_clv(buyers.size());
  clvs.reserve(customers);
  for (std::size_t i = 0; i < buyers.size(); ++i) {
    buyer_clv[i] = customer_value(m, value, buyers[i]).clv;
    if (profit_12m[i] >= 0) clvs.push_back(buyer_clv[i]);
  }
  const std::uint64_t non_buyers = customers - buyers.size();
  clvs.insert(clvs.end(), non_buyers - non_buyer_leads, 0.0);
  set_tier_thresholds(m, value, clvs);

  snap.tier_counts[static_cast<int>(Tier::kLead)] = non_buyer_leads;
  snap.tier_counts[static_cast<int>(classify_tier(&m, 0.0, 0.0))] += non_buyers - non_buyer_leads;
  for (std::size_t i = 0; i < buyers.size(); ++i) {
    ++snap.tier_counts[static_cast<int>(classify_tier(&m, buyer_clv[i], profit_12m[i]))];
  }
  m.fit_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return snap;
}

std::string stats_record_key(std::int64_t as_of_ms, std::uint32_t partition, std::uint32_t chunk) {
  return std::to_string(as_of_ms) + "/" + std::to_string(partition) + "/" + std::to_string(chunk);
}

std::vector<std::pair<std::string, std::string>> encode_stats_records(std::int64_t as_of_ms, std::uint32_t partition,
                                                                      std::uint32_t partitions,
                                                                      std::string_view publication,
                                                                      const PopulationStats& stats,
                                                                      std::size_t buyers_per_record) {
  if (buyers_per_record == 0) buyers_per_record = 1;
  const std::size_t tuples = stats.buyers.size();
  const auto chunks =
      static_cast<std::uint32_t>(tuples == 0 ? 1 : (tuples + buyers_per_record - 1) / buyers_per_record);
  std::vector<std::pair<std::string, std::string>> out;
  auto it = stats.buyers.begin();
  for (std::uint32_t chunk = 0; chunk < chunks; ++chunk) {
    std::string v = "{\"format\":1,\"as_of\":" + std::to_string(as_of_ms) +
                    ",\"partition\":" + std::to_string(partition) + ",\"partitions\":" + std::to_string(partitions) +
                    ",\"publication\":\"" + std::string(publication) + "\",\"chunk\":" + std::to_string(chunk) +
                    ",\"chunks\":" + std::to_string(chunks) + ",\"customers\":" + std::to_string(stats.customers) +
                    ",\"non_buyer_leads\":" + std::to_string(stats.non_buyer_leads) + ",\"buyers\":[";
    for (std::size_t i = 0; i < buyers_per_record && it != stats.buyers.end(); ++i, ++it) {
      if (i > 0) v += ',';
      const BuyerTuple& t = it->first;
      v += '[';
      for (const double d : {t.x, t.t_x, t.T, t.mean_spend, static_cast<double>(t.profit_12m)}) {
        put_number(v, d);
        v += ',';
      }
      v += std::to_string(it->second);
      v += ']';
    }
    v += "]}";
    out.emplace_back(stats_record_key(as_of_ms, partition, chunk), std::move(v));
  }
  return out;
}

Result<StatsRecord> decode_stats_record(std::string_view value) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  simdjson::dom::object o;
  if (parser.parse(value.data(), value.size()).get(doc) != simdjson::SUCCESS ||
      doc.get_object().get(o) != simdjson::SUCCESS) {
    return Status::Error("stats record: not a JSON object");
  }
  StatsRecord r;
  std::uint64_t format = 0, partition = 0, partitions = 0, chunk = 0, chunks = 0;
  std::int64_t as_of = 0;
  std::string_view publication;
  if (o["format"].get_uint64().get(format) != simdjson::SUCCESS || format != 1) {
    return Status::Error("stats record: \"format\" must be 1");
  }
  if (o["as_of"].get_int64().get(as_of) != simdjson::SUCCESS) {
    return Status::Error("stats record: \"as_of\" must be an integer (ms)");
  }
  if (o["partition"].get_uint64().get(partition) != simdjson::SUCCESS ||
      o["partitions"].get_uint64().get(partitions) != simdjson::SUCCESS || partitions == 0 || partitions > 65'536 ||
      partition >= partitions) {
    return Status::Error("stats record: \"partition\" must be below \"partitions\" (1 to 65536)");
  }
  if (o["chunk"].get_uint64().get(chunk) != simdjson::SUCCESS ||
      o["chunks"].get_uint64().get(chunks) != simdjson::SUCCESS || chunks == 0 || chunks > 1'000'000 ||
      chunk >= chunks) {
    return Status::Error("stats record: \"chunk\" must be below \"chunks\"");
  }
  if (o["publication"].get_string().get(publication) != simdjson::SUCCESS || publication.empty()) {
    return Status::Error("stats record: \"publication\" must be a non-empty string");
  }
  if (o["customers"].get_uint64().get(r.stats.customers) != simdjson::SUCCESS ||
      o["non_buyer_leads"].get_uint64().get(r.stats.non_buyer_leads) != simdjson::SUCCESS ||
      r.stats.non_buyer_leads > r.stats.customers) {
    return Status::Error("stats record: \"customers\" and \"non_buyer_leads\" (at most customers) must be counts");
  }
  simdjson::dom::array buyers;
  if (o["buyers"].get_array().get(buyers) != simdjson::SUCCESS) {
    return Status::Error("stats record: \"buyers\" must be an array");
  }
  std::uint64_t total = 0;
  for (simdjson::dom::element b : buyers) {
    simdjson::dom::array t;
    if (b.get_array().get(t) != simdjson::SUCCESS || t.size() != 6) {
      return Status::Error("stats record: each buyer must be [x, t_x, T, mean_spend, profit_12m, count]");
    }
    double v[5];
    for (std::size_t i = 0; i < 5; ++i) {
      if (!get_number(t.at(i).value_unsafe(), v[i])) {
        return Status::Error("stats record: a buyer's x, t_x, T, mean_spend and profit_12m must be numbers");
      }
    }
    std::uint64_t count = 0;
    if (t.at(5).get_uint64().get(count) != simdjson::SUCCESS || count == 0) {
      return Status::Error("stats record: a buyer's count must be a positive integer");
    }
    const BuyerTuple tuple{v[0], v[1], v[2], v[3], static_cast<float>(v[4])};
    if (r.stats.buyers.count(tuple) != 0) return Status::Error("stats record: a buyer tuple is listed twice");
    r.stats.buyers.emplace(tuple, count);
    total += count;
    if (total > r.stats.customers) return Status::Error("stats record: more buyers than \"customers\"");
  }
  r.as_of_ms = as_of;
  r.partition = static_cast<std::uint32_t>(partition);
  r.partitions = static_cast<std::uint32_t>(partitions);
  r.publication.assign(publication);
  r.chunk = static_cast<std::uint32_t>(chunk);
  r.chunks = static_cast<std::uint32_t>(chunks);
  return r;
}

}  // namespace rapport
