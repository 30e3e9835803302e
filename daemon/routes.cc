#include "daemon/routes.h"

#include <array>
#include <utility>
#include <vector>

#include "ingest/net/http_client.h"
#include "scoring/event.h"

namespace rapport {
namespace {

struct FixedRoute {
  std::string_view path;  // as sent
  Route route;
  std::optional<Scope> scope;
};

// Every route with a fixed path. Probes, metrics and the API description need no token.
constexpr std::array<FixedRoute, 14> kFixedRoutes = {{
    {"/healthz", Route::kHealthz, std::nullopt},
    {"/readyz", Route::kReadyz, std::nullopt},
    {"/metrics", Route::kMetrics, std::nullopt},
    {"/v1/openapi.json", Route::kOpenApi, std::nullopt},
    {"/v1/customers", Route::kCustomersList, Scope::kRead},
    {"/v1/customers:batchGet", Route::kCustomersBatchGet, Scope::kRead},
    {"/v1/tiers", Route::kTiers, Scope::kRead},
    {"/v1/model", Route::kModel, Scope::kRead},
    {"/v1/model:fit", Route::kModelFit, Scope::kAdmin},
    {"/v1/model:backtest", Route::kModelBacktest, Scope::kAdmin},
    {"/v1/deadletter", Route::kDeadLetter, Scope::kAdmin},
    {"/v1/deadletter:remove", Route::kDeadLetterRemove, Scope::kAdmin},
    {"/v1/changes", Route::kChanges, Scope::kRead},
    {"/v1/cluster", Route::kCluster, Scope::kRead},
}};

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

RouteMatch bad_request(std::string error) {
  RouteMatch m;
  m.status = 400;
  m.error = std::move(error);
  return m;
}

}  // namespace

bool decode_path_segment(std::string_view in, std::string& out) {
  out.clear();
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '\0') return false;
    if (in[i] != '%') {
      out.push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size()) return false;
    const int hi = hex_value(in[i + 1]);
    const int lo = hex_value(in[i + 2]);
    if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) return false;
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return true;
}

RouteMatch match_route(std::string_view method, std::string_view raw_target) {
  const auto question = raw_target.find('?');
  const std::string_view raw_path = raw_target.substr(0, question);
  if (raw_path.empty() || raw_path.front() != '/') return bad_request("the request target must be an absolute path");

  // Split on the raw '/'; every segment must decode. Only the customer id is used decoded: the fixed parts
  // of a route match as sent.
  std::vector<std::string_view> raw;
  std::string decoded;
  for (std::string_view rest = raw_path.substr(1);;) {
    const auto slash = rest.find('/');
    raw.push_back(rest.substr(0, slash));
    if (!decode_path_segment(raw.back(), decoded)) return bad_request("malformed percent-escape in the request path");
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }

  RouteMatch m;
  if (question != std::string_view::npos) m.query = raw_target.substr(question + 1);
  for (const FixedRoute& r : kFixedRoutes) {
    if (raw_path == r.path) {
      m.route = r.route;
      m.scope = r.scope;
      return m;
    }
  }
  // /v1/customers/{id}, /v1/customers/{id}/events and /aliases, the id one segment; POST {id}:merge and
  // {id}:unmerge (the verb as sent, after the id: an id ending in ":merge" is sent with its ':' encoded).
  if (raw.size() < 3 || raw.size() > 4 || raw[0] != "v1" || raw[1] != "customers") return m;
  if (raw.size() == 4 && raw[3] != "events" && raw[3] != "aliases") return m;
  std::string_view id_segment = raw[2];
  std::optional<Route> verb;
  if (raw.size() == 3 && method == "POST") {
    for (const auto& [suffix, route] : {std::pair<std::string_view, Route>{":merge", Route::kCustomerMerge},
                                        std::pair<std::string_view, Route>{":unmerge", Route::kCustomerUnmerge}}) {
      if (id_segment.size() > suffix.size() && id_segment.ends_with(suffix)) {
        id_segment.remove_suffix(suffix.size());
        verb = route;
      }
    }
  }
  decode_path_segment(id_segment, decoded);  // well-formed: checked above
  if (decoded.empty() || decoded.size() > kMaxIdBytes) {
    return bad_request("customer id must be 1 to " + std::to_string(kMaxIdBytes) + " bytes");
  }
  m.id = std::move(decoded);
  if (verb) {
    m.route = *verb;
    m.scope = Scope::kAdmin;
  } else if (raw.size() == 4) {
    m.route = raw[3] == "events" ? Route::kCustomerEvents : Route::kCustomerAliases;
    m.scope = Scope::kRead;
  } else if (method == "DELETE") {
    m.route = Route::kCustomerDelete;
    m.scope = Scope::kAdmin;
  } else {
    m.route = Route::kCustomer;
    m.scope = Scope::kRead;
  }
  return m;
}

std::string customer_target(std::string_view id, bool events) {
  return "/v1/customers/" + percent_encode(id) + (events ? "/events" : "");
}

}  // namespace rapport
