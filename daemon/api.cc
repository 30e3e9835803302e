#include "daemon/api.h"

#include <simdjson.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <chrono>
#include <cmath>
#include <queue>
#include <string>
#include <utility>
#include <vector>

#include "common/hex.h"
#include "common/json_writer.h"
#include "common/log.h"
#include "daemon/backtest.h"
#include "daemon/cursor.h"
#include "daemon/customer_json.h"
#include "daemon/openapi_document.h"
#include "daemon/ranking.h"
#include "daemon/routes.h"
#include "daemon/value_records.h"
#include "storage/partitioner.h"

namespace rapport {
namespace {

constexpr std::size_t kMaxBatchGet = 1000;
// The body of a batchGet: 1000 ids of 128 bytes fit even when every byte is sent as \u00XX (771 kB).
constexpr std::size_t kMaxBatchGetBodyBytes = 1 << 20;
// POST {id}:merge / :unmerge: at most kMaxMergeIds ids of 128 bytes (escaped) fit.
constexpr std::size_t kMaxMergeIds = 1000;
constexpr std::size_t kMaxMergeBodyBytes = 1 << 20;

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

HttpResponse json_ok(std::string body, int status = 200) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

// Parses a non-negative integer query parameter; `fallback` when absent; nullopt when malformed.
std::optional<std::size_t> size_param(std::string_view query, std::string_view name, std::size_t fallback,
                                      std::size_t max) {
  const std::string v = query_param(query, name);
  if (v.empty()) return fallback;
  std::size_t out = 0;
  const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc() || p != v.data() + v.size() || out > max) return std::nullopt;
  return out;
}

}  // namespace

HttpResponse json_error(int status, std::string_view message) {
  JsonWriter w;
  w.begin_object().field("error", message).end_object();
  return json_ok(w.take(), status);
}

std::string query_param(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    const auto amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    const auto eq = pair.find('=');
    if (pair.substr(0, eq) == name) {
      std::string_view raw = eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
      std::string out;
      for (std::size_t i = 0; i < raw.size(); ++i) {
        if (raw[i] == '+') {
          out.push_back(' ');
        } else if (raw[i] == '%' && i + 2 < raw.size() + 0 && hex_digit(raw[i + 1]) >= 0 &&
                   hex_digit(raw[i + 2]) >= 0) {
          out.push_back(static_cast<char>(hex_digit(raw[i + 1]) * 16 + hex_digit(raw[i + 2])));
          i += 2;
        } else {
          out.push_back(raw[i]);
        }
      }
      return out;
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return {};
}

Api::Api(PartitionedStore& store, Writers& writer, ValueService& value, Metrics& metrics,
         std::shared_ptr<const Config> config)
    : store_(store), writer_(writer), value_(value), metrics_(metrics) {
  set_config(std::move(config));
}

void Api::set_config(std::shared_ptr<const Config> config) {
  auto tokens = std::make_shared<const TokenSet>(config->tokens);
  std::lock_guard lock(mutex_);
  config_ = std::move(config);
  tokens_ = std::move(tokens);
}

std::shared_ptr<const Config> Api::config() const {
  std::lock_guard lock(mutex_);
  return config_;
}

void Api::set_cluster(std::shared_ptr<const Cluster> cluster) {
  std::lock_guard lock(mutex_);
  cluster_ = std::move(cluster);
}

std::shared_ptr<const Cluster> Api::cluster() const {
  std::lock_guard lock(mutex_);
  return cluster_;
}

bool Api::redirect_to_owner(std::string_view id, const HttpRequest& request, HttpRespond& respond) const {
  const auto map = cluster();
  if (!map) return false;
  const Owner owner = map->owner_of(id);
  if (owner.kind == Owner::Kind::kSelf) return false;
  if (owner.kind == Owner::Kind::kOther) {
    HttpResponse r = json_error(307, "customer " + std::string(id) + " is owned by instance " + owner.instance);
    // The same request at the owner: path and query as sent (a 307 keeps the method, so erasure reaches it too).
    std::string location = owner.http_address + request.path;
    if (!request.query.empty()) location += "?" + request.query;
    r.headers.emplace_back("Location", std::move(location));
    respond(std::move(r));
  } else {
    HttpResponse r =
        json_error(503, "partition " + std::to_string(partition_of(id, map->partitions())) + " of customer " +
                            std::string(id) + " has no owner yet (the group is rebalancing): try again");
    r.headers.emplace_back("Retry-After", "1");
    respond(std::move(r));
  }
  return true;
}

std::shared_ptr<const TokenSet> Api::tokens() const {
  std::lock_guard lock(mutex_);
  return tokens_;
}

RouteAccess Api::access(std::string_view method, std::string_view raw_target) const {
  RouteMatch m = match_route(method, raw_target);
  const std::size_t max_body = m.route == Route::kCustomersBatchGet ? kMaxBatchGetBodyBytes
                               : m.route == Route::kCustomerMerge || m.route == Route::kCustomerUnmerge
                                   ? kMaxMergeBodyBytes
                                   : 0;
  return RouteAccess{http_route(m.route), route_name(m.route), m.scope, m.status, std::move(m.error), max_body};
}

Route Api::dispatch(HttpRequest&& request, HttpRespond respond) {
  const std::string_view path = request.path;  // as sent: routed first, the id decoded after
  const std::string_view method = request.method;
  const RouteMatch match = match_route(method, path);
  if (match.status != 0) {
    respond(json_error(match.status, match.error));
    return match.route;
  }
  const Route route = match.route;
  const std::string_view id = match.id;

  // Probes, metrics and the API document need no token.
  if (route == Route::kHealthz) {
    respond(json_ok(R"({"status":"ok"})"));
    return Route::kHealthz;
  }
  if (route == Route::kOpenApi) {
    respond(json_ok(std::string(openapi_document())));
    return Route::kOpenApi;
  }
  if (route == Route::kReadyz) {
    if (writer_.accepting()) {
      respond(json_ok(R"({"status":"ready"})"));
    } else {
      respond(json_error(503, "not accepting: shutting down"));
    }
    return Route::kReadyz;
  }
  if (route == Route::kMetrics) {
    HttpResponse r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = metrics_.serialize();
    respond(std::move(r));
    return Route::kMetrics;
  }
  if (!match.scope) {
    respond(json_error(404, "no such route: " + std::string(method) + " " + std::string(path)));
    return route;
  }

  // Everything else needs a scope (the HTTP front checked it already, before the body; checked again here).
  switch (tokens()->check(request.bearer_token, *match.scope)) {
    case AuthResult::kAllowed:
      break;
    case AuthResult::kMissing:
    case AuthResult::kInvalid: {
      log_auth_failure("http", request.peer, route_name(route), "unauthorized",
                       tokens()->describe(request.bearer_token));
      HttpResponse r = json_error(401, request.bearer_token.empty() ? "missing bearer token" : "invalid token");
      r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"rapport\"");
      respond(std::move(r));
      return route;
    }
    case AuthResult::kForbidden: {
      log_auth_failure("http", request.peer, route_name(route), "forbidden", tokens()->describe(request.bearer_token));
      HttpResponse r = json_error(403, "token lacks the required scope");
      r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"rapport\", error=\"insufficient_scope\"");
      respond(std::move(r));
      return route;
    }
  }

  const bool is_get = method == "GET" || method == "HEAD";
  if ((route == Route::kCustomer || route == Route::kCustomerEvents || route == Route::kCustomerDelete) &&
      redirect_to_owner(id, request, respond)) {
    return route;
  }
  switch (route) {
    case Route::kCustomersBatchGet:
      if (method != "POST") break;
      return batch_get(request, respond);
    case Route::kDeadLetter:
      if (!is_get) break;
      return dead_letters(request, respond);
    case Route::kDeadLetterRemove:
      if (method != "POST") break;
      return remove_dead_letters(request, respond);
    case Route::kModel:
      if (!is_get) break;
      return model(respond);
    case Route::kModelFit:
      if (method != "POST") break;
      return fit_model(request, respond);
    case Route::kModelBacktest:
      if (method != "POST") break;
      return backtest_model(request, respond);
    case Route::kTiers:
      if (!is_get) break;
      return tiers(respond);
    case Route::kCustomersList:
      if (!is_get) break;
      return list_customers(request, respond);
    case Route::kCustomerEvents:
      if (!is_get) break;
      return customer_events(request, id, respond);
    case Route::kCustomerDelete:
      return delete_customer(id, request, respond);
    case Route::kCustomer:
      if (!is_get) break;
      return get_customer(request, id, respond);
    case Route::kChanges:
      if (!is_get) break;
      return changes(request, respond);
    case Route::kCluster:
      if (!is_get) break;
      if (const auto map = cluster(); map) {
        respond(json_ok(map->to_json()));
      } else {
        respond(json_error(404, "not in a cluster: /v1/cluster answers in Kafka mode only"));
      }
      return route;
    case Route::kCustomerMerge:
    case Route::kCustomerUnmerge:
      return merge_customer(request, id, route == Route::kCustomerUnmerge, respond);
    case Route::kCustomerAliases:
      if (!is_get) break;
      return customer_aliases(id, respond);
    default:
      break;
  }
  respond(json_error(405, "method " + std::string(method) + " not allowed on " + std::string(path)));
  return route;
}

namespace {

// Appends the identity fields inside a rendered customer object: resolved_from (when read through an alias)
// and the survivor's aliases (when it has any).
void add_identity_fields(std::string& body, const AliasMap* aliases, std::string_view id,
                         std::string_view resolved_from) {
  if (aliases == nullptr || (resolved_from.empty() && aliases->aliases(id).empty())) return;
  JsonWriter extra;
  extra.begin_object();
  if (!resolved_from.empty()) extra.field("resolved_from", resolved_from);
  extra.key("aliases").begin_array();
  for (const std::string& a : aliases->aliases(id)) extra.value(a);
  extra.end_array().end_object();
  const std::string fields = extra.take();
  body.pop_back();
  body += ',';
  body.append(fields, 1);
}

}  // namespace

Route Api::get_customer(const HttpRequest& request, std::string_view id, HttpRespond& respond) {
  if (id.empty() || id.size() > kMaxIdBytes) {
    respond(json_error(400, "customer id must be 1 to 128 bytes"));
    return Route::kCustomer;
  }
  // An alias answers its survivor; readers wait while an identity operation moves events.
  std::shared_lock<std::shared_mutex> identity_lock;
  std::shared_ptr<const AliasMap> aliases;
  std::string_view resolved_from;
  if (identity_ != nullptr) {
    identity_lock = std::shared_lock(identity_->table().read_mutex);
    aliases = identity_->table().snapshot();
    if (const std::string* survivor = aliases->survivor(id)) {
      resolved_from = id;
      id = *survivor;
    }
  }
  auto state = store_.get_customer(id);
  if (!state.ok()) {
    respond(json_error(503, "storage error: " + state.message()));
  } else if (!state->has_value()) {
    respond(json_error(404, "unknown customer: " + std::string(id)));
  } else {
    const std::string explain = query_param(request.query, "explain");
    JsonWriter w;
    const auto cfg = config();
    const auto snap = value_.current();
    write_customer_json(w, id, **state, now_ms(), cfg->evaluate, snap ? &snap->model : nullptr, cfg->value,
                        explain == "true" || explain == "1");
    std::string body = w.take();
    add_identity_fields(body, aliases.get(), id, resolved_from);
    respond(json_ok(std::move(body)));
  }
  return Route::kCustomer;
}

namespace {

// The cursor of a customer's timeline: the (ts, event_id) of the last event of the page before.
//   e1.<ts ms hex>.<event id bytes hex>
constexpr std::string_view kEventsCursorTag = "e1";

std::string encode_events_cursor(const TimelineEvent& last) {
  const std::uint64_t fields[] = {static_cast<std::uint64_t>(last.ts_ms)};
  return encode_cursor(kEventsCursorTag, fields, last.event_id);
}

std::optional<TimelineKey> decode_events_cursor(std::string_view text) {
  std::uint64_t fields[1] = {};
  std::string event_id;
  if (!decode_cursor(text, kEventsCursorTag, fields, event_id, kMaxIdBytes)) return std::nullopt;
  return TimelineKey(static_cast<std::int64_t>(fields[0]), std::move(event_id));
}

}  // namespace

Route Api::customer_events(const HttpRequest& request, std::string_view id, HttpRespond& respond) {
  const auto limit = size_param(request.query, "limit", 100, 1000);
  const std::string cursor = query_param(request.query, "cursor");
  std::optional<TimelineKey> after;
  if (!cursor.empty()) after = decode_events_cursor(cursor);
  if (!limit || *limit == 0 || (!cursor.empty() && !after)) {
    respond(json_error(400,
                       "'limit' must be an integer 1..1000 and 'cursor' a next_cursor of this route, passed "
                       "unchanged"));
    return Route::kCustomerEvents;
  }
  if (id.empty() || id.size() > kMaxIdBytes) {
    respond(json_error(400, "customer id must be 1 to 128 bytes"));
    return Route::kCustomerEvents;
  }
  std::shared_lock<std::shared_mutex> identity_lock;
  std::shared_ptr<const AliasMap> aliases;
  if (identity_ != nullptr) {
    identity_lock = std::shared_lock(identity_->table().read_mutex);
    aliases = identity_->table().snapshot();
    if (const std::string* survivor = aliases->survivor(id)) id = *survivor;
  }
  auto exists = store_.get_customer(id);
  if (exists.ok() && !exists->has_value()) {
    respond(json_error(404, "unknown customer: " + std::string(id)));
    return Route::kCustomerEvents;
  }
  auto events = store_.customer_events(id, after, *limit + 1);
  if (!events.ok()) {
    respond(json_error(503, "storage error: " + events.message()));
    return Route::kCustomerEvents;
  }
  const bool more = events->size() > *limit;
  if (more) events->pop_back();
  JsonWriter w;
  w.begin_object().field("customer_id", id).key("events").begin_array();
  for (const TimelineEvent& e : *events) {
    w.begin_object()
        .field("event_id", e.event_id)
        .field("ts", format_rfc3339(e.ts_ms))
        .field("type", event_type_name(e.type));
    if (!e.channel.empty()) w.field("channel", e.channel);
    if (!e.sent_as.empty()) w.field("sent_as", e.sent_as);
    const std::pair<const char*, const std::optional<double>*> numbers[] = {
        {"amount", &e.amount}, {"cost", &e.cost}, {"sentiment", &e.sentiment},
        {"nps", &e.nps},       {"csat", &e.csat}, {"rating", &e.rating}};
    for (const auto& [name, v] : numbers) {
      if (v->has_value()) w.field(name, **v);
    }
    w.end_object();
  }
  w.end_array();
  if (more) {
    w.field("next_cursor", encode_events_cursor(events->back()));
  } else {
    w.key("next_cursor").null();
  }
  w.end_object();
  respond(json_ok(w.take()));
  return Route::kCustomerEvents;
}

Route Api::delete_customer(std::string_view id, const HttpRequest& request, HttpRespond& respond) {
  if (id.empty() || id.size() > kMaxIdBytes) {
    respond(json_error(400, "customer id must be 1 to 128 bytes"));
    return Route::kCustomerDelete;
  }
  auto shared = std::make_shared<HttpRespond>(std::move(respond));
  const auto by = tokens()->describe(request.bearer_token);  // for the audit line
  if (identity_ != nullptr) {
    const auto aliases = identity_->table().snapshot();
    if (aliases->survivor(id) != nullptr || !aliases->aliases(id).empty()) {
      // A merged customer: every id of its group, with their events, dedup keys and the group itself.
      identity_->erase_group(
          std::string(id), [shared, customer = std::string(id), by, peer = request.peer](IdentityAnswer&& answer) {
            if (answer.status != 200) {
              (*shared)(json_error(answer.status, answer.error));
              return;
            }
            log_erasure("http", peer, by);  // never the customer id
            JsonWriter w;
            w.begin_object().field("customer_id", customer).field("erased", true).key("ids").begin_array();
            w.value(answer.survivor);
            for (const std::string& a : answer.aliases) w.value(a);
            w.end_array().end_object();
            (*shared)(json_ok(w.take()));
          });
      return Route::kCustomerDelete;
    }
  }
  // On the writer of the customer's partition, ordered with that partition's ingest.
  const bool posted = writer_.owner(id).post(
      [shared, customer = std::string(id), by, peer = request.peer, on_erased = on_erased_](Store& store) {
        auto erased = store.erase_customer(customer);
        if (erased.ok() && *erased) {
          log_erasure("http", peer, by);  // never the customer id
          if (on_erased) on_erased(customer);
        }
        if (!erased.ok()) {
          (*shared)(json_error(503, "storage error: " + erased.message()));
        } else if (!*erased) {
          (*shared)(json_error(404, "unknown customer: " + customer));
        } else {
          JsonWriter w;
          w.begin_object().field("customer_id", customer).field("erased", true).end_object();
          (*shared)(json_ok(w.take()));
        }
      });
  if (!posted) (*shared)(json_error(503, "shutting down"));
  return Route::kCustomerDelete;
}

Route Api::batch_get(const HttpRequest& request, HttpRespond& respond) {
  constexpr std::string_view kShape = R"(: send {"ids":["id1","id2",...]} with at most 1000 ids)";
  const auto refuse = [&](std::string message) {
    respond(json_error(400, message + std::string(kShape)));
    return Route::kCustomersBatchGet;
  };
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(request.body).get(doc) != simdjson::SUCCESS) return refuse("the body is not JSON");
  simdjson::dom::object object;
  if (doc.get_object().get(object) != simdjson::SUCCESS) return refuse("the body must be a JSON object");
  for (const auto field : object) {
    if (field.key != "ids")
      return refuse("unknown field \"" + std::string(field.key) + "\"; the only field is \"ids\"");
  }
  simdjson::dom::array ids;
  if (object["ids"].get_array().get(ids) != simdjson::SUCCESS) return refuse("the body needs an array \"ids\"");
  if (ids.size() > kMaxBatchGet) {
    return refuse("\"ids\" has " + std::to_string(ids.size()) + " entries, more than 1000");
  }
  // Every id is checked before any is read: a bad one anywhere gives 400 and nothing else.
  std::vector<std::string_view> wanted;
  wanted.reserve(ids.size());
  for (simdjson::dom::element e : ids) {
    std::string_view id;
    if (e.get_string().get(id) != simdjson::SUCCESS || id.empty() || id.size() > kMaxIdBytes) {
      return refuse("ids[" + std::to_string(wanted.size()) + "] must be a string of 1 to " +
                    std::to_string(kMaxIdBytes) + " bytes");
    }
    wanted.push_back(id);
  }
  const auto cfg = config();
  const auto snap = value_.current();
  const std::int64_t now = now_ms();
  // Aliases answer their survivor (as GET /v1/customers/{id}); readers wait while a merge moves events.
  std::shared_lock<std::shared_mutex> identity_lock;
  std::shared_ptr<const AliasMap> aliases;
  if (identity_ != nullptr) {
    identity_lock = std::shared_lock(identity_->table().read_mutex);
    aliases = identity_->table().snapshot();
  }
  JsonWriter w;
  w.begin_object().key("customers").begin_array();
  std::vector<std::string_view> missing;
  for (const std::string_view asked : wanted) {
    std::string_view id = asked, resolved_from;
    if (aliases) {
      if (const std::string* survivor = aliases->survivor(asked)) {
        id = *survivor;
        resolved_from = asked;
      }
    }
    auto state = store_.get_customer(id);
    if (!state.ok()) {
      respond(json_error(503, "storage error: " + state.message()));
      return Route::kCustomersBatchGet;
    }
    if (!state->has_value()) {
      missing.push_back(asked);
      continue;
    }
    if (aliases && (!resolved_from.empty() || !aliases->aliases(id).empty())) {
      JsonWriter one;
      write_customer_json(one, id, **state, now, cfg->evaluate, snap ? &snap->model : nullptr, cfg->value, false);
      std::string body = one.take();
      add_identity_fields(body, aliases.get(), id, resolved_from);
      w.raw(body);
    } else {
      write_customer_json(w, id, **state, now, cfg->evaluate, snap ? &snap->model : nullptr, cfg->value, false);
    }
  }
  w.end_array().key("missing").begin_array();
  for (const std::string_view m : missing) w.value(m);
  w.end_array().end_object();
  respond(json_ok(w.take()));
  return Route::kCustomersBatchGet;
}

Route Api::dead_letters(const HttpRequest& request, HttpRespond& respond) {
  const auto after = size_param(request.query, "after", 0, SIZE_MAX / 2);
  const auto limit = size_param(request.query, "limit", 100, 1000);
  if (!after || !limit || *limit == 0) {
    respond(json_error(400, "'after' must be a sequence number and 'limit' 1..1000"));
    return Route::kDeadLetter;
  }
  auto letters = store_.dead_letters(*after, *limit);
  if (!letters.ok()) {
    respond(json_error(503, "storage error: " + letters.message()));
    return Route::kDeadLetter;
  }
  JsonWriter w;
  w.begin_object().key("dead_letters").begin_array();
  for (const StoredDeadLetter& d : *letters) {
    w.begin_object()
        .field("sequence", static_cast<std::uint64_t>(d.sequence))
        .field("received", format_rfc3339(d.letter.received_ms))
        .field("transport", d.letter.transport)
        .field("reason", d.letter.reason)
        .field("error", d.letter.message)
        .field("payload", d.letter.payload)
        .end_object();
  }
  w.end_array().end_object();
  respond(json_ok(w.take()));
  return Route::kDeadLetter;
}

Route Api::remove_dead_letters(const HttpRequest& request, HttpRespond& respond) {
  constexpr char kShape[] =
      "body must be JSON: {\"sequences\":[1, 2, ...]} with 1 to 1000 dead-letter sequence numbers";
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  simdjson::dom::array list;
  if (parser.parse(request.body).get(doc) != simdjson::SUCCESS ||
      doc["sequences"].get_array().get(list) != simdjson::SUCCESS || list.size() == 0 || list.size() > kMaxBatchGet) {
    respond(json_error(400, kShape));
    return Route::kDeadLetterRemove;
  }
  std::vector<std::uint64_t> sequences;
  sequences.reserve(list.size());
  for (simdjson::dom::element e : list) {
    std::uint64_t seq = 0;
    if (e.get_uint64().get(seq) != simdjson::SUCCESS) {
      respond(json_error(400, kShape));
      return Route::kDeadLetterRemove;
    }
    sequences.push_back(seq);
  }
  // A write: on the writer thread, like every other.
  auto shared = std::make_shared<HttpRespond>(std::move(respond));
  const bool posted = writer_.meta().post([shared, sequences = std::move(sequences)](Store& store) {
    auto removed = store.remove_dead_letters(sequences);
    if (!removed.ok()) {
      (*shared)(json_error(503, "storage error: " + removed.message()));
      return;
    }
    JsonWriter w;
    w.begin_object().field("removed", static_cast<std::uint64_t>(*removed)).end_object();
    (*shared)(json_ok(w.take()));
  });
  if (!posted) (*shared)(json_error(503, "shutting down"));
  return Route::kDeadLetterRemove;
}

namespace {

std::string model_json(const ValueSnapshot& snap) {
  JsonWriter w;
  write_value_model_json(w, snap.model);
  return w.take();
}

bool blank(std::string_view text) { return text.find_first_not_of(" \t\r\n") == std::string_view::npos; }

}  // namespace

Route Api::model(HttpRespond& respond) {
  const auto snap = value_.current();
  if (!snap) {
    respond(json_error(404, "no value model fitted yet; POST /v1/model:fit to fit one now"));
  } else {
    respond(json_ok(model_json(*snap)));
  }
  return Route::kModel;
}

Route Api::fit_model(const HttpRequest& request, HttpRespond& respond) {
  // Optional body {"as_of": "YYYY-MM-DD" or RFC 3339}: T and t_x measured then, later events ignored.
  constexpr std::string_view kShape = R"(: send no body to fit as of now, or {"as_of":"1997-09-30"} )"
                                      R"((YYYY-MM-DD, midnight UTC, or RFC 3339 such as "1997-09-30T00:00:00Z"))";
  std::optional<std::int64_t> as_of;
  if (!blank(request.body)) {
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    simdjson::dom::object object;
    if (parser.parse(request.body).get(doc) != simdjson::SUCCESS || doc.get_object().get(object) != simdjson::SUCCESS) {
      respond(json_error(400, "the fit request body must be a JSON object" + std::string(kShape)));
      return Route::kModelFit;
    }
    for (const auto field : object) {
      if (field.key != "as_of") {
        respond(json_error(400, "unknown field \"" + std::string(field.key) +
                                    "\" in the fit request; the only field is \"as_of\"" + std::string(kShape)));
        return Route::kModelFit;
      }
      if (as_of.has_value()) {
        respond(json_error(400, "\"as_of\" is given more than once in the fit request"));
        return Route::kModelFit;
      }
      std::string_view text;
      if (field.value.get_string().get(text) != simdjson::SUCCESS) {
        respond(json_error(400, "\"as_of\" must be a string" + std::string(kShape)));
        return Route::kModelFit;
      }
      auto parsed = parse_as_of(text);
      if (!parsed.ok()) {
        respond(json_error(400, "\"as_of\": " + parsed.message()));
        return Route::kModelFit;
      }
      const std::int64_t now = now_ms();
      if (*parsed > now) {
        respond(json_error(400, "\"as_of\" " + format_rfc3339(*parsed) + " is in the future (now is " +
                                    format_rfc3339(now) +
                                    "): T and t_x are measured at as_of, so it must not be later than now"));
        return Route::kModelFit;
      }
      as_of = *parsed;
    }
  }
  auto shared = std::make_shared<HttpRespond>(std::move(respond));
  const bool queued = value_.request_fit(
      [shared](const Result<std::shared_ptr<const ValueSnapshot>>& result) {
        if (result.ok()) {
          (*shared)(json_ok(model_json(**result)));
        } else {
          (*shared)(json_error(422, "fit failed: " + result.message()));
        }
      },
      as_of);
  if (!queued) (*shared)(json_error(503, "shutting down"));
  return Route::kModelFit;
}

Route Api::backtest_model(const HttpRequest& request, HttpRespond& respond) {
  constexpr std::string_view kShape =
      R"(: send {"calibration_end":"1997-09-30","holdout_end":"1998-06-30"} (YYYY-MM-DD, midnight UTC, or RFC 3339))";
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  simdjson::dom::object object;
  if (blank(request.body) || parser.parse(request.body).get(doc) != simdjson::SUCCESS ||
      doc.get_object().get(object) != simdjson::SUCCESS) {
    respond(json_error(400, "the backtest request body must be a JSON object" + std::string(kShape)));
    return Route::kModelBacktest;
  }
  std::optional<std::string_view> calibration_end, holdout_end;
  for (const auto field : object) {
    std::optional<std::string_view>* slot = field.key == "calibration_end" ? &calibration_end
                                            : field.key == "holdout_end"   ? &holdout_end
                                                                           : nullptr;
    if (slot == nullptr) {
      respond(json_error(400, "unknown field \"" + std::string(field.key) +
                                  "\" in the backtest request; the fields are \"calibration_end\" and "
                                  "\"holdout_end\"" +
                                  std::string(kShape)));
      return Route::kModelBacktest;
    }
    if (slot->has_value()) {
      respond(json_error(400, "\"" + std::string(field.key) + "\" is given more than once in the backtest request"));
      return Route::kModelBacktest;
    }
    std::string_view text;
    if (field.value.get_string().get(text) != simdjson::SUCCESS) {
      respond(json_error(400, "\"" + std::string(field.key) + "\" must be a string" + std::string(kShape)));
      return Route::kModelBacktest;
    }
    *slot = text;
  }
  if (!calibration_end || !holdout_end) {
    respond(json_error(400, std::string("the backtest request needs \"") +
                                (calibration_end ? "holdout_end" : "calibration_end") + "\"" + std::string(kShape)));
    return Route::kModelBacktest;
  }
  auto dates = parse_backtest_dates(*calibration_end, *holdout_end, now_ms(), "\"calibration_end\"", "\"holdout_end\"");
  if (!dates.ok()) {
    respond(json_error(400, dates.message()));
    return Route::kModelBacktest;
  }
  // A fit plus a pass over every customer: on the value service's thread, never an io thread.
  const auto cfg = config();
  auto shared = std::make_shared<HttpRespond>(std::move(respond));
  const auto queued = value_.request_job([store = &store_, shared, cfg, d = *dates](bool cancelled) {
    if (cancelled) {
      (*shared)(json_error(503, "shutting down"));
      return;
    }
    const BacktestOutcome outcome = backtest_population(*store, cfg->evaluate, cfg->value, d);
    if (outcome.report) {
      JsonWriter w;
      write_backtest_json(w, *outcome.report);
      (*shared)(json_ok(w.take()));
      return;
    }
    const int status = outcome.failure == BacktestFailure::kInput      ? 400
                       : outcome.failure == BacktestFailure::kNotReady ? 422
                                                                       : 503;
    (*shared)(json_error(status, "backtest failed: " + outcome.error));
  });
  if (queued == ValueService::JobQueued::kBusy) {
    (*shared)(json_error(429, "backtests are already running or waiting; try again when they finish"));
  } else if (queued == ValueService::JobQueued::kStopping) {
    (*shared)(json_error(503, "shutting down"));
  }
  return Route::kModelBacktest;
}

Route Api::tiers(HttpRespond& respond) {
  const auto snap = value_.current();
  if (!snap) {
    respond(json_error(404, "no value model fitted yet; POST /v1/model:fit to fit one now"));
    return Route::kTiers;
  }
  const auto cfg = config();
  JsonWriter w;
  w.begin_object().field("fitted_at", format_rfc3339(snap->model.fitted_at_ms));
  w.key("counts").begin_object();
  for (int t = 0; t < kTierCount; ++t) {
    w.field(tier_name(static_cast<Tier>(t)), snap->tier_counts[t]);
  }
  w.end_object();
  write_tier_thresholds(w, snap->model);
  w.key("fractions")
      .begin_object()
      .field("platinum", cfg->value.platinum_fraction)
      .field("gold", cfg->value.gold_fraction)
      .end_object();
  w.end_object();
  respond(json_ok(w.take()));
  return Route::kTiers;
}

namespace {

// The orders of GET /v1/customers besides the default id order: descending by the metric, ties by id.
constexpr RankMetric kListOrders[] = {RankMetric::kClv, RankMetric::kSatisfaction, RankMetric::kLoyalty,
                                      RankMetric::kChurnRisk};

bool parse_list_order(std::string_view name, RankMetric& order) {
  return parse_rank_metric(name, order) &&
         std::find(std::begin(kListOrders), std::end(kListOrders), order) != std::end(kListOrders);
}

// The cursor of an ordered listing: the evaluation time of its first page, the model it was
// ranked against and the last (value, id) returned, so later pages evaluate every customer at
// the same time against the same model and continue strictly after that pair.
//   o1.<order>.<as_of ms hex>.<fitted_at ms hex>.<value bits hex>.<id bytes hex>
struct ListCursor {
  std::int64_t as_of_ms = 0;
  std::int64_t fitted_at_ms = 0;
  double value = 0;
  std::string id;
};

std::string list_cursor_tag(std::string_view order) { return "o1." + std::string(order); }

std::string encode_list_cursor(std::string_view order, const ListCursor& c) {
  const std::uint64_t fields[] = {static_cast<std::uint64_t>(c.as_of_ms), static_cast<std::uint64_t>(c.fitted_at_ms),
                                  std::bit_cast<std::uint64_t>(c.value)};
  return encode_cursor(list_cursor_tag(order), fields, c.id);
}

// Fails (false) on anything but a cursor of this order.
bool decode_list_cursor(std::string_view text, std::string_view order, ListCursor& c) {
  std::uint64_t fields[3] = {};
  if (!decode_cursor(text, list_cursor_tag(order), fields, c.id, kMaxIdBytes)) return false;
  c.as_of_ms = static_cast<std::int64_t>(fields[0]);
  c.fitted_at_ms = static_cast<std::int64_t>(fields[1]);
  c.value = std::bit_cast<double>(fields[2]);
  return !std::isnan(c.value);
}

struct ListedValue {
  double clv = 0, profit_12m = 0;
};

// A finite double as the shortest JSON number that parses back to it exactly; null otherwise.
std::string exact_number(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc() ? std::string(buf, end) : std::string("null");
}

}  // namespace

Route Api::list_customers(const HttpRequest& request, HttpRespond& respond) {
  const std::string tier_param = query_param(request.query, "tier");
  Tier wanted = Tier::kUnranked;
  if (!parse_tier(tier_param, wanted)) {
    respond(json_error(400, "'tier' must be one of platinum, gold, iron, lead, unranked"));
    return Route::kCustomersList;
  }
  const auto limit = size_param(request.query, "limit", 100, 1000);
  if (!limit || *limit == 0) {
    respond(json_error(400, "'limit' must be an integer 1..1000"));
    return Route::kCustomersList;
  }
  const std::string order_param = query_param(request.query, "order");
  RankMetric order = RankMetric::kClv;
  if (!order_param.empty() && !parse_list_order(order_param, order)) {
    respond(json_error(400,
                       "'order' must be one of clv, satisfaction, loyalty, churn_risk (descending, ties by "
                       "customer id), or absent for customer id order; got '" +
                           order_param + "'"));
    return Route::kCustomersList;
  }
  const std::string cursor = query_param(request.query, "cursor");
  const auto cfg = config();
  const auto snap = value_.current();
  const ValueModel* model = snap ? &snap->model : nullptr;
  if (order_param.empty()) return list_customers_by_id(wanted, *limit, cursor, respond);

  if (rank_metric_needs_model(order) && model == nullptr) {
    respond(json_error(
        409, "order=" + order_param + " needs a fitted value model and none is fitted yet; POST /v1/model:fit first"));
    return Route::kCustomersList;
  }
  const std::int64_t fitted_at = model != nullptr ? model->fitted_at_ms : 0;
  ListCursor after;
  const bool has_cursor = !cursor.empty();
  if (has_cursor) {
    if (!decode_list_cursor(cursor, order_param, after)) {
      respond(json_error(400, "'cursor' is not a next_cursor of this route with order=" + order_param +
                                  "; pass next_cursor unchanged (percent-encoded) with the same order"));
      return Route::kCustomersList;
    }
    if (after.fitted_at_ms != fitted_at) {
      respond(json_error(409,
                         "the value model was refitted since this cursor was issued, so tiers and values "
                         "changed; start again without a cursor"));
      return Route::kCustomersList;
    }
  }
  const std::int64_t as_of = has_cursor ? after.as_of_ms : now_ms();

  // Keep the best limit+1 customers after the cursor (one more tells whether a next page exists).
  TopN<ListedValue> best(*limit + 1, has_cursor ? std::optional(std::pair(after.value, after.id)) : std::nullopt);
  // TopN orders by (value, id) whatever the visiting order: the partitions one after another.
  Status visited = store_.for_each_customer_unordered([&](std::string_view id, const CustomerState& state) {
    const CustomerAssessment a = assess_customer(state, as_of, cfg->evaluate, model, cfg->value);
    if (a.tier != wanted) return true;
    best.offer(rank_value(order, a), id, ListedValue{a.value.clv, a.scores.profit_12m});
    return true;
  });
  if (!visited.ok()) {
    respond(json_error(503, "storage error: " + visited.message()));
    return Route::kCustomersList;
  }
  auto rows = best.take();
  const bool more = rows.size() > *limit;
  if (more) rows.pop_back();

  JsonWriter w;
  w.begin_object()
      .field("tier", tier_name(wanted))
      .field("order", order_param)
      .field("as_of", format_rfc3339(as_of))
      .key("customers")
      .begin_array();
  for (const auto& r : rows) {
    w.begin_object().field("customer_id", r.id);
    if (order != RankMetric::kClv) w.field(order_param, std::round(r.value * 1e4) / 1e4);
    w.field("clv", std::round(r.extra.clv * 1e4) / 1e4).field("profit_12m", std::round(r.extra.profit_12m * 1e4) / 1e4);
    // The exact sort key (the metric unrounded, shortest round-trip form; null for none): lets a client
    // merge several tiers' listings in the order one scan gives (rapportctl top --url).
    w.key("order_value").raw(exact_number(r.value));
    w.end_object();
  }
  w.end_array();
  if (more) {
    w.field("next_cursor",
            encode_list_cursor(order_param, ListCursor{as_of, fitted_at, rows.back().value, rows.back().id}));
  } else {
    w.key("next_cursor").null();
  }
  w.end_object();
  respond(json_ok(w.take()));
  return Route::kCustomersList;
}

Route Api::list_customers_by_id(Tier wanted, std::size_t limit, const std::string& cursor, HttpRespond& respond) {
  const auto cfg = config();
  const auto snap = value_.current();
  const ValueModel* model = snap ? &snap->model : nullptr;
  const std::int64_t now = now_ms();
  JsonWriter w;
  w.begin_object().field("tier", tier_name(wanted)).key("customers").begin_array();
  std::size_t written = 0;
  std::string last;
  bool more = false;
  // Key order across partitions (merged), from strictly after the cursor.
  Status visited = store_.for_each_customer(
      [&](std::string_view id, const CustomerState& state) {
        const CustomerAssessment a = assess_customer(state, now, cfg->evaluate, model, cfg->value);
        if (a.tier != wanted) return true;
        if (written == limit) {
          more = true;
          return false;
        }
        w.begin_object()
            .field("customer_id", id)
            .field("clv", std::round(a.value.clv * 1e4) / 1e4)
            .field("profit_12m", std::round(a.scores.profit_12m * 1e4) / 1e4)
            .end_object();
        last.assign(id);
        ++written;
        return true;
      },
      cursor);
  if (!visited.ok()) {
    respond(json_error(503, "storage error: " + visited.message()));
    return Route::kCustomersList;
  }
  w.end_array();
  if (more) {
    w.field("next_cursor", last);
  } else {
    w.key("next_cursor").null();
  }
  w.end_object();
  respond(json_ok(w.take()));
  return Route::kCustomersList;
}

namespace {

HttpResponse identity_json(const IdentityAnswer& answer) {
  JsonWriter w;
  w.begin_object().field("customer_id", answer.survivor).key("aliases").begin_array();
  for (const std::string& a : answer.aliases) w.value(a);
  w.end_array().end_object();
  return json_ok(w.take());
}

}  // namespace

Route Api::merge_customer(const HttpRequest& request, std::string_view id, bool unmerge, HttpRespond& respond) {
  const Route route = unmerge ? Route::kCustomerUnmerge : Route::kCustomerMerge;
  const std::string_view field = unmerge ? "ids" : "from";
  const std::string shape = unmerge ? R"(: send {"ids":["alias",...]}, the aliases to give back)"
                                    : R"(: send {"from":["id2",...]}, the ids to merge into this customer)";
  const auto refuse = [&](const std::string& message) {
    respond(json_error(400, message + shape));
    return route;
  };
  if (const auto cfg = config(); cfg && cfg->kafka.enabled()) {
    respond(json_error(409, kIdentityKafkaRefusal));
    return route;
  }
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(request.body).get(doc) != simdjson::SUCCESS) return refuse("the body is not JSON");
  simdjson::dom::object object;
  if (doc.get_object().get(object) != simdjson::SUCCESS) return refuse("the body must be a JSON object");
  for (const auto f : object) {
    if (f.key != field) {
      return refuse("unknown field \"" + std::string(f.key) + "\"; the only field is \"" + std::string(field) + "\"");
    }
  }
  simdjson::dom::array list;
  if (object[field].get_array().get(list) != simdjson::SUCCESS) {
    return refuse("the body needs an array \"" + std::string(field) + "\"");
  }
  if (list.size() == 0 || list.size() > kMaxMergeIds) {
    return refuse("\"" + std::string(field) + "\" must hold 1 to " + std::to_string(kMaxMergeIds) + " ids");
  }
  std::vector<std::string> ids;
  for (simdjson::dom::element e : list) {
    std::string_view v;
    if (e.get_string().get(v) != simdjson::SUCCESS || v.size() > kMaxIdBytes ||
        v.find('\0') != std::string_view::npos) {
      return refuse(std::string(field) + "[" + std::to_string(ids.size()) + "] must be a string of at most " +
                    std::to_string(kMaxIdBytes) + " bytes");
    }
    ids.emplace_back(v);
  }
  if (identity_ == nullptr) {
    respond(json_error(503, "identity merges are not available"));
    return route;
  }
  auto shared = std::make_shared<HttpRespond>(std::move(respond));
  auto done = [shared](IdentityAnswer&& answer) {
    (*shared)(answer.status == 200 ? identity_json(answer) : json_error(answer.status, answer.error));
  };
  if (unmerge) {
    identity_->unmerge(std::string(id), std::move(ids), std::move(done));
  } else {
    identity_->merge(std::string(id), std::move(ids), std::move(done));
  }
  return route;
}

Route Api::customer_aliases(std::string_view id, HttpRespond& respond) {
  IdentityAnswer answer;
  answer.survivor = std::string(id);
  if (identity_ != nullptr) {
    const auto aliases = identity_->table().snapshot();
    if (const std::string* survivor = aliases->survivor(id)) answer.survivor = *survivor;
    answer.aliases = aliases->aliases(answer.survivor);
  }
  HttpResponse r = identity_json(answer);
  if (answer.survivor != id) {  // the alias asked for: say so
    r.body.pop_back();
    r.body += ",\"resolved_from\":";
    JsonWriter w;
    w.value(id);
    r.body += w.take();
    r.body += '}';
  }
  respond(std::move(r));
  return Route::kCustomerAliases;
}

}  // namespace rapport
