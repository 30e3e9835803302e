// rapportctl get, top, tiers and fit.
#include "daemon/ctl/query.h"

#include <simdjson.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <optional>
#include <queue>
#include <unordered_set>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/json_writer.h"
#include "daemon/customer_json.h"
#include "daemon/ranking.h"
#include "daemon/value_records.h"
#include "daemon/value_service.h"

namespace rapport {
namespace {

double round4(double v) { return std::round(v * 1e4) / 1e4; }

// The stored value model, if any (a record that cannot be read is an error).
Result<std::optional<ValueModel>> load_model(const PartitionedStore& store) {
  auto bytes = store.get_meta(kValueModelMetaKey);
  if (!bytes.ok()) return bytes.status();
  if (!bytes->has_value()) return std::optional<ValueModel>();
  ValueModel model;
  if (Status s = deserialize(**bytes, model); !s.ok()) return Status::Error("stored value model: " + s.message());
  return std::optional<ValueModel>(model);
}

}  // namespace
// --- get ---------------------------------------------------------------------

namespace {

// The objects of the "customers" array of a batchGet answer, as the daemon wrote them (the answer starts with
// {"customers":[ and holds nothing but JSON objects in that array); empty with `ok` false otherwise.
std::vector<std::string_view> batch_customers(std::string_view body, bool& ok) {
  constexpr std::string_view kHead = R"({"customers":[)";
  std::vector<std::string_view> out;
  ok = false;
  if (body.substr(0, kHead.size()) != kHead) return out;
  int depth = 0;
  bool in_string = false;
  std::size_t start = 0;
  for (std::size_t i = kHead.size(); i < body.size(); ++i) {
    const char c = body[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (depth++ == 0) start = i;
    } else if (c == '}' || c == ']') {
      if (depth == 0) {
        ok = c == ']';
        return out;
      }
      if (--depth == 0) out.push_back(body.substr(start, i + 1 - start));
    }
  }
  return out;
}

// Several ids with --url: POST /v1/customers:batchGet, 1000 ids per request.
int get_batch_url(const CtlTarget& target, const std::vector<std::string>& ids) {
  constexpr std::size_t kPerRequest = 1000;
  int rc = kExitOk;
  for (std::size_t first = 0; first < ids.size(); first += kPerRequest) {
    JsonWriter w;
    w.begin_object().key("ids").begin_array();
    for (std::size_t i = first; i < std::min(ids.size(), first + kPerRequest); ++i) w.value(ids[i]);
    w.end_array().end_object();
    HttpClientRequest request;
    request.method = "POST";
    request.target = "/v1/customers:batchGet";
    request.body = w.take();
    auto response = ctl_http(target, std::move(request));
    if (!response.ok()) return ctl_error(response.message());
    if (response->status != 200) return ctl_http_failure(*response, "batchGet");
    bool ok = false;
    const auto customers = batch_customers(response->body, ok);
    simdjson::dom::parser parser;
    simdjson::dom::array missing;
    if (!ok || parser.parse(response->body)["missing"].get_array().get(missing) != simdjson::SUCCESS) {
      return ctl_error("the daemon's batchGet answer is not {\"customers\":[...],\"missing\":[...]}");
    }
    for (const std::string_view c : customers) std::printf("%.*s\n", static_cast<int>(c.size()), c.data());
    for (simdjson::dom::element m : missing) {
      std::string_view id;
      if (m.get_string().get(id) == simdjson::SUCCESS)
        rc = ctl_error("unknown customer: " + std::string(id), kExitPartial);
    }
  }
  return rc;
}

}  // namespace

int ctl_get(const CtlTarget& target, const std::vector<std::string>& ids, bool explain) {
  if (!target.url.empty()) {
    if (ids.size() > 1 && !explain) return get_batch_url(target, ids);
    int rc = kExitOk;
    for (const std::string& id : ids) {
      HttpClientRequest request;
      request.target = "/v1/customers/" + percent_encode(id) + (explain ? "?explain=true" : "");
      auto response = ctl_http(target, std::move(request));
      if (!response.ok()) return ctl_error(response.message());
      if (response->status == 404 && ids.size() > 1) {
        rc = ctl_error("unknown customer: " + id, kExitPartial);
        continue;
      }
      if (response->status != 200) return ctl_http_failure(*response, "get " + id);
      std::printf("%s\n", response->body.c_str());
    }
    return rc;
  }
  auto config = ctl_config(target);
  if (!config.ok()) return ctl_error(config.message());
  auto store = ctl_open_store(*config, /*read_only=*/true);
  if (!store.ok()) return ctl_error(store.message());
  // The value model the daemon last fitted, if any (one that cannot be read is left out, as rapportd does).
  auto model = load_model(**store);
  const ValueModel* fitted = model.ok() && model->has_value() ? &**model : nullptr;
  int rc = kExitOk;
  for (const std::string& id : ids) {
    auto state = (*store)->get_customer(id);
    if (!state.ok()) return ctl_error(state.message());
    if (!state->has_value()) {
      rc = ctl_error("unknown customer: " + id, kExitPartial);
      continue;
    }
    JsonWriter w;
    write_customer_json(w, id, **state, wall_ms(), config->evaluate, fitted, config->value, explain);
    std::printf("%s\n", w.str().c_str());
  }
  return rc;
}

// --- top ---------------------------------------------------------------------

namespace {

struct Ranked {
  double value = 0;
  std::string id;
  Tier tier = Tier::kUnranked;
};

// Higher value first, then id ascending (a total order, so the output is stable).
struct RanksBefore {
  bool operator()(const Ranked& a, const Ranked& b) const { return ranks_before(a.value, a.id, b.value, b.id); }
};

// Prints the ranking as `top` does in both modes: a table (id, metric, tier) or JSON.
// `scanned` is the number of customers looked at (state-dir mode only; omitted when negative).
void print_top(const std::string& by, const std::string& as_of, std::int64_t scanned, const std::vector<Ranked>& rows,
               bool json) {
  if (json) {
    JsonWriter w;
    w.begin_object().field("by", by).field("as_of", as_of);
    if (scanned >= 0) w.field("scanned", static_cast<std::uint64_t>(scanned));
    w.key("customers").begin_array();
    for (const Ranked& r : rows) {
      w.begin_object().field("customer_id", r.id).field(by, round4(r.value)).field("tier", tier_name(r.tier));
      w.end_object();
    }
    w.end_array().end_object();
    std::printf("%s\n", w.str().c_str());
    return;
  }
  std::size_t id_width = std::string_view("customer_id").size();
  for (const Ranked& r : rows) id_width = std::max(id_width, r.id.size());
  const int idw = static_cast<int>(id_width);
  const int vw = static_cast<int>(std::max<std::size_t>(by.size(), 14));
  std::printf("%-*s  %*s  %s\n", idw, "customer_id", vw, by.c_str(), "tier");
  for (const Ranked& r : rows) {
    std::printf("%-*s  %*.4f  %s\n", idw, r.id.c_str(), vw, round4(r.value), std::string(tier_name(r.tier)).c_str());
  }
}

// The orders GET /v1/customers?order= offers (descending, ties by id: the order of `top`).
constexpr std::string_view kUrlTopMetrics[] = {"clv", "churn_risk", "satisfaction", "loyalty"};

// Customers per GET /v1/customers request: the route's maximum.
constexpr std::size_t kTopPageLimit = 1000;

// The fitted_at of the daemon's model ("" before the first fit), to tell whether it refitted meanwhile.
Result<std::string> daemon_model_fitted_at(const CtlTarget& target) {
  HttpClientRequest request;
  request.target = "/v1/model";
  auto response = ctl_http(target, std::move(request));
  if (!response.ok()) return response.status();
  if (response->status == 404) return std::string();
  if (response->status != 200) {
    return Status::Error("top: GET /v1/model: HTTP " + std::to_string(response->status) + ": " +
                         json_error_field(response->body) +
                         (response->status == 401 ? " (pass --token or set RAPPORT_TOKEN)" : ""));
  }
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  std::string_view fitted_at;
  if (parser.parse(response->body.data(), response->body.size()).get(doc) != simdjson::SUCCESS ||
      doc["fitted_at"].get_string().get(fitted_at) != simdjson::SUCCESS) {
    return Status::Error("top: the daemon's /v1/model answer has no fitted_at");
  }
  return std::string(fitted_at);
}

// Why a page request failed: an HTTP answer that is not 200 (status > 0) or a transport/format error.
struct TopFetchError {
  int http_status = 0;
  std::string message;
};

// The best `n` customers of `tier` by `by`, from GET /v1/customers?tier=&order=, following next_cursor
// (pages of at most kTopPageLimit). Appends to `out`; sets `as_of` from the first page.
std::optional<TopFetchError> fetch_tier_top(const CtlTarget& target, const std::string& by, Tier tier, std::size_t n,
                                            std::vector<Ranked>& out, std::string& as_of) {
  std::string cursor;
  std::size_t got = 0;
  simdjson::dom::parser parser;
  while (got < n) {
    const std::size_t limit = std::min(n - got, kTopPageLimit);
    HttpClientRequest request;
    request.target = "/v1/customers?tier=" + std::string(tier_name(tier)) + "&order=" + by +
                     "&limit=" + std::to_string(limit) + (cursor.empty() ? "" : "&cursor=" + percent_encode(cursor));
    auto response = ctl_http(target, std::move(request));
    if (!response.ok()) return TopFetchError{0, response.message()};
    if (response->status != 200) {
      return TopFetchError{response->status,
                           "top: HTTP " + std::to_string(response->status) + ": " + json_error_field(response->body)};
    }
    simdjson::dom::element doc;
    simdjson::dom::array customers;
    if (parser.parse(response->body.data(), response->body.size()).get(doc) != simdjson::SUCCESS ||
        doc["customers"].get_array().get(customers) != simdjson::SUCCESS) {
      return TopFetchError{0, "top: the daemon's /v1/customers answer is not a listing"};
    }
    std::string_view page_as_of;
    if (as_of.empty() && doc["as_of"].get_string().get(page_as_of) == simdjson::SUCCESS) {
      as_of = std::string(page_as_of);
    }
    for (simdjson::dom::element c : customers) {
      std::string_view id;
      if (c["customer_id"].get_string().get(id) != simdjson::SUCCESS) {
        return TopFetchError{0, "top: a listed customer has no customer_id"};
      }
      // order_value is the exact sort key; a daemon without it gives the metric rounded to 4 decimals.
      simdjson::dom::element v;
      if (c["order_value"].get(v) != simdjson::SUCCESS && c[by].get(v) != simdjson::SUCCESS) {
        return TopFetchError{0, "top: listed customer " + std::string(id) + " has no " + by};
      }
      double value = -INFINITY;  // null: no value, ranked last (as NaN in a state-dir scan)
      if (!v.is_null() && v.get_double().get(value) != simdjson::SUCCESS) {
        return TopFetchError{0, "top: listed customer " + std::string(id) + " has a " + by + " that is not a number"};
      }
      out.push_back(Ranked{value, std::string(id), tier});
      ++got;
    }
    std::string_view next;
    if (doc["next_cursor"].get_string().get(next) != simdjson::SUCCESS || next.empty()) break;  // the last page
    if (customers.size() == 0) break;  // no progress: never loop
    cursor.assign(next);
  }
  return std::nullopt;
}

// top --url: the best n of each asked tier over the daemon's ranking route, merged.
int ctl_top_url(const CtlTarget& target, const TopOptions& options) {
  const std::string& by = options.by;
  if (std::find(std::begin(kUrlTopMetrics), std::end(kUrlTopMetrics), by) == std::end(kUrlTopMetrics)) {
    return ctl_error("top --by " + by +
                     " is not available with --url: the daemon ranks by clv, churn_risk, satisfaction or loyalty "
                     "only; use --state-dir for p_alive, profit_12m and revenue (it reads beside a running "
                     "rapportd)");
  }
  if (!options.as_of.empty()) {
    return ctl_error(
        "top --as-of is not available with --url: the daemon ranks as of now; use --state-dir for "
        "--as-of (it reads beside a running rapportd)");
  }
  std::vector<Tier> tiers;
  if (!options.tier.empty()) {
    tiers.push_back(Tier::kUnranked);
    if (!parse_tier(options.tier, tiers.back())) {
      return ctl_error("unknown tier '" + options.tier + "': use platinum, gold, iron, lead or unranked");
    }
  } else {
    for (int i = 0; i < kTierCount; ++i) tiers.push_back(static_cast<Tier>(i));
  }
  // Every tier must be ranked against one model: when the daemon refits while we read, start again.
  constexpr int kAttempts = 3;
  for (int attempt = 1;; ++attempt) {
    auto fitted_before = daemon_model_fitted_at(target);
    if (!fitted_before.ok()) return ctl_error(fitted_before.message());
    if (fitted_before->empty() && (by == "clv" || by == "churn_risk")) {
      return ctl_error("the daemon at " + target.url + " has no value model yet to rank by " + by +
                       ": run `rapportctl fit --url` (or POST /v1/model:fit) first");
    }
    std::vector<Ranked> rows;
    std::string as_of;
    std::optional<TopFetchError> failed;
    for (const Tier tier : tiers) {
      failed = fetch_tier_top(target, by, tier, options.n, rows, as_of);
      if (failed) break;
    }
    if (failed && failed->http_status == 0) return ctl_error(failed->message);
    auto fitted_after = daemon_model_fitted_at(target);
    if (!fitted_after.ok()) return ctl_error(fitted_after.message());
    const bool refitted = *fitted_after != *fitted_before;
    if (refitted && attempt < kAttempts) continue;
    if (failed) {
      std::string message = failed->message;
      if (failed->http_status == 401) message += " (pass --token or set RAPPORT_TOKEN)";
      if (failed->http_status == 403) message += " (this needs a token with the read scope)";
      return ctl_error(message);
    }
    if (refitted)
      return ctl_error("top: the daemon refitted its value model " + std::to_string(kAttempts) +
                       " times while top was reading; try again");
    // The global top n is the top n of the union of the tiers' top n, in the order one scan gives. Each tier is
    // read at its own instant: a customer whose events moved it between tiers meanwhile is kept once, ranked
    // where it was seen first.
    std::sort(rows.begin(), rows.end(), RanksBefore{});
    std::vector<Ranked> top;
    top.reserve(std::min(rows.size(), options.n));
    std::unordered_set<std::string_view> seen;  // views of rows' ids, which stay put
    for (const Ranked& r : rows) {
      if (top.size() == options.n) break;
      if (seen.insert(r.id).second) top.push_back(r);
    }
    print_top(by, as_of, /*scanned=*/-1, top, options.json);
    return kExitOk;
  }
}

}  // namespace

int ctl_top(const CtlTarget& target, const TopOptions& options) {
  if (options.n == 0) return ctl_error("-n must be at least 1");
  if (!target.url.empty()) return ctl_top_url(target, options);
  const std::string& by = options.by;
  if (std::find(std::begin(kTopMetrics), std::end(kTopMetrics), by) == std::end(kTopMetrics)) {
    return ctl_error("unknown metric '" + by +
                     "' for --by: use clv, churn_risk, p_alive, profit_12m, revenue, satisfaction or loyalty");
  }
  Tier wanted = Tier::kUnranked;
  if (!options.tier.empty() && !parse_tier(options.tier, wanted)) {
    return ctl_error("unknown tier '" + options.tier + "': use platinum, gold, iron, lead or unranked");
  }
  std::int64_t now = wall_ms();
  if (!options.as_of.empty()) {
    auto as_of = parse_as_of(options.as_of);
    if (!as_of.ok()) return ctl_error(as_of.message());
    now = *as_of;
  }
  auto config = ctl_config(target);
  if (!config.ok()) return ctl_error(config.message());
  auto store = ctl_open_store(*config, /*read_only=*/true);
  if (!store.ok()) return ctl_error(store.message());
  auto stored = load_model(**store);
  if (!stored.ok()) return ctl_error(stored.message());
  const ValueModel* model = stored->has_value() && (*stored)->fitted_at_ms != 0 ? &**stored : nullptr;
  RankMetric metric = RankMetric::kClv;
  parse_rank_metric(by, metric);  // by is one of kTopMetrics, checked above
  if (rank_metric_needs_model(metric) && model == nullptr) {
    return ctl_error("no value model in " + config->storage.directory + " to rank by " + by +
                     ": run `rapportctl fit --save` (or let rapportd fit one) first");
  }

  TopN<Tier> best(options.n);
  std::uint64_t scanned = 0;
  // TopN orders by (value, id) whatever the visiting order: the partitions one after another.
  const Status visited = (*store)->for_each_customer_unordered([&](std::string_view id, const CustomerState& state) {
    ++scanned;
    const CustomerAssessment a = assess_customer(state, now, config->evaluate, model, config->value);
    if (!options.tier.empty() && a.tier != wanted) return true;
    best.offer(rank_value(metric, a), id, a.tier);
    return true;
  });
  if (!visited.ok()) return ctl_error(visited.message());

  std::vector<Ranked> rows;
  for (auto& r : best.take()) rows.push_back(Ranked{r.value, std::move(r.id), r.extra});
  print_top(by, format_rfc3339(now), static_cast<std::int64_t>(scanned), rows, options.json);
  return kExitOk;
}

// --- tiers -------------------------------------------------------------------

namespace {

struct TiersView {
  std::string fitted_at;
  TierCounts counts{};
  std::optional<double> platinum_min_clv, gold_min_clv;
  double platinum_fraction = 0, gold_fraction = 0;
};

void print_tiers_table(const TiersView& t) {
  std::printf("fitted at %s\n", t.fitted_at.c_str());
  std::printf("%-10s %10s  %s\n", "tier", "customers", "min_clv");
  std::uint64_t total = 0;
  for (int i = 0; i < kTierCount; ++i) {
    const auto tier = static_cast<Tier>(i);
    std::string min = "-";
    const std::optional<double>* threshold = tier == Tier::kPlatinum ? &t.platinum_min_clv
                                             : tier == Tier::kGold   ? &t.gold_min_clv
                                                                     : nullptr;
    if (threshold != nullptr) {
      char buf[48];
      if (threshold->has_value()) {
        std::snprintf(buf, sizeof buf, "%.4f", **threshold);
      } else {
        std::snprintf(buf, sizeof buf, "none (empty tier)");
      }
      min = buf;
    }
    std::printf("%-10s %10llu  %s\n", std::string(tier_name(tier)).c_str(),
                static_cast<unsigned long long>(t.counts[i]), min.c_str());
    total += t.counts[i];
  }
  std::printf("%-10s %10llu\n", "total", static_cast<unsigned long long>(total));
  std::printf("fractions: platinum %.4g, gold %.4g\n", t.platinum_fraction, t.gold_fraction);
}

Result<TiersView> parse_tiers_json(std::string_view body) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(body.data(), body.size()).get(doc) != simdjson::SUCCESS) {
    return Status::Error("the daemon's /v1/tiers answer is not JSON");
  }
  TiersView t;
  std::string_view fitted;
  if (doc["fitted_at"].get_string().get(fitted) == simdjson::SUCCESS) t.fitted_at = std::string(fitted);
  for (int i = 0; i < kTierCount; ++i) {
    std::uint64_t n = 0;
    if (doc["counts"][tier_name(static_cast<Tier>(i))].get_uint64().get(n) == simdjson::SUCCESS) t.counts[i] = n;
  }
  double v = 0;
  if (doc["thresholds"]["platinum_min_clv"].get_double().get(v) == simdjson::SUCCESS) t.platinum_min_clv = v;
  if (doc["thresholds"]["gold_min_clv"].get_double().get(v) == simdjson::SUCCESS) t.gold_min_clv = v;
  if (doc["fractions"]["platinum"].get_double().get(v) == simdjson::SUCCESS) t.platinum_fraction = v;
  if (doc["fractions"]["gold"].get_double().get(v) == simdjson::SUCCESS) t.gold_fraction = v;
  return t;
}

}  // namespace

int ctl_tiers(const CtlTarget& target, bool json) {
  if (!target.url.empty()) {
    HttpClientRequest request;
    request.target = "/v1/tiers";
    auto response = ctl_http(target, std::move(request));
    if (!response.ok()) return ctl_error(response.message());
    if (response->status != 200) return ctl_http_failure(*response, "tiers");
    if (json) {
      std::printf("%s\n", response->body.c_str());
      return kExitOk;
    }
    auto view = parse_tiers_json(response->body);
    if (!view.ok()) return ctl_error(view.message());
    print_tiers_table(*view);
    return kExitOk;
  }
  auto config = ctl_config(target);
  if (!config.ok()) return ctl_error(config.message());
  auto store = ctl_open_store(*config, /*read_only=*/true);
  if (!store.ok()) return ctl_error(store.message());
  auto model = load_model(**store);
  if (!model.ok()) return ctl_error(model.message());
  if (!model->has_value()) {
    return ctl_error("no value model fitted yet in " + config->storage.directory +
                         ": run `rapportctl fit --save` or POST /v1/model:fit",
                     kExitPartial);
  }
  TiersView t;
  const ValueModel& m = **model;
  t.fitted_at = format_rfc3339(m.fitted_at_ms);
  auto counts = (*store)->get_meta(kValueTierCountsMetaKey);
  if (!counts.ok()) return ctl_error(counts.message());
  if (counts->has_value() && !decode_tier_counts(**counts, t.counts)) {
    return ctl_error("stored tier counts are not in a known format");
  }
  if (std::isfinite(m.platinum_min_clv)) t.platinum_min_clv = m.platinum_min_clv;
  if (std::isfinite(m.gold_min_clv)) t.gold_min_clv = m.gold_min_clv;
  t.platinum_fraction = config->value.platinum_fraction;
  t.gold_fraction = config->value.gold_fraction;
  if (json) {
    // Same shape as GET /v1/tiers.
    JsonWriter w;
    w.begin_object().field("fitted_at", t.fitted_at);
    w.key("counts").begin_object();
    for (int i = 0; i < kTierCount; ++i) w.field(tier_name(static_cast<Tier>(i)), t.counts[i]);
    w.end_object();
    write_tier_thresholds(w, m);
    w.key("fractions")
        .begin_object()
        .field("platinum", t.platinum_fraction)
        .field("gold", t.gold_fraction)
        .end_object();
    w.end_object();
    std::printf("%s\n", w.str().c_str());
    return kExitOk;
  }
  print_tiers_table(t);
  return kExitOk;
}

// --- fit ---------------------------------------------------------------------

int ctl_fit(const CtlTarget& target, const FitOptions& options) {
  if (!target.url.empty()) {
    HttpClientRequest request;
    request.method = "POST";
    request.target = "/v1/model:fit";
    if (!options.as_of.empty()) {
      // Checked here for the same message as in state-dir mode; the daemon checks it again.
      auto parsed = parse_as_of(options.as_of);
      if (!parsed.ok()) return ctl_error(parsed.message());
      JsonWriter body;
      body.begin_object().field("as_of", options.as_of).end_object();
      request.body = body.take();
    }
    auto response = ctl_http(target, std::move(request), /*default_timeout_s=*/600);
    if (!response.ok()) return ctl_error(response.message());
    if (response->status != 200) return ctl_http_failure(*response, "fit");
    std::printf("%s\n", response->body.c_str());
    return kExitOk;
  }
  std::int64_t as_of = wall_ms();
  if (!options.as_of.empty()) {
    auto parsed = parse_as_of(options.as_of);
    if (!parsed.ok()) return ctl_error(parsed.message());
    if (*parsed > as_of) {
      return ctl_error("--as-of " + format_rfc3339(*parsed) +
                       " is in the future: T and t_x are measured at as_of, so it must not be later than now");
    }
    as_of = *parsed;
  }
  auto config = ctl_config(target);
  if (!config.ok()) return ctl_error(config.message());
  auto store = ctl_open_store(*config, /*read_only=*/!options.save);
  if (!store.ok()) return ctl_error(store.message());
  auto fitted = fit_population(**store, config->evaluate, config->value, as_of);
  if (!fitted.ok()) return ctl_error("fit failed: " + fitted.message());
  if (options.save) {
    Status s = (*store)->put_meta(kValueModelMetaKey, serialize(fitted->model));
    if (s.ok()) s = (*store)->put_meta(kValueTierCountsMetaKey, encode_tier_counts(fitted->tier_counts));
    if (!s.ok()) return ctl_error("cannot store the model: " + s.message());
  }
  JsonWriter w;
  write_value_model_json(w, fitted->model);
  std::printf("%s\n", w.str().c_str());
  std::string summary = "fitted over " + std::to_string(fitted->model.customers) + " customers (";
  for (int i = 0; i < kTierCount; ++i) {
    summary += (i > 0 ? ", " : "") + std::string(tier_name(static_cast<Tier>(i))) + " " +
               std::to_string(fitted->tier_counts[i]);
  }
  summary += ")";
  summary += options.save ? "; saved in " + config->storage.directory +
                                " (a running rapportd keeps its own model until its next fit or restart)"
                          : "; not saved (add --save to store it)";
  std::fprintf(stderr, "%s\n", summary.c_str());
  return kExitOk;
}

}  // namespace rapport
