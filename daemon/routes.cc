#include "daemon/routes.h"

#include <array>
#include <vector>

#include "ingest/net/http_client.h"
#include "scoring/event.h"

namespace rapport {
namespace {

struct FixedRoute {
  std::string_view path;  // decoded segments joined by '/'
  Route route;
  std::optional<Scope> scope;
};

// Every route with a fixed path. Probes, metrics and the API description need no token.
constexpr std::array<FixedRoute, 11> kFixedRoutes = {{
    {"/healthz", Route::kHealthz, std::nullopt},
    {"/readyz", Route::kReadyz, std::nullopt},
    {"/metrics", Route::kMetrics, std::nullopt},
    {"/v1/openapi.json", Route::kOther, std::nullopt},
    {"/v1/customers", Route::kCustomersList, Scope::kRead},
    {"/v1/customers:batchGet", Route::kCustomersBatchGet, Scope::kRead},
    {"/v1/tiers", Route::kTiers, Scope::kRead},
    {"/v1/model", Route::kModel, Scope::kRead},
    {"/v1/model:fit", Route::kModelFit, Scope::kAdmin},
    {"/v1/deadletter", Route::kDeadLetter, Scope::kAdmin},
    {"/v1/deadletter:remove", Route::kDeadLetterRemove, Scope::kAdmin},
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

  // Split on the raw '/' first, then decode each segment.
  std::vector<std::string> segments;
  std::string joined;  // decoded segments joined by '/', compared with the fixed routes only
  std::string_view rest = raw_path.substr(1);
  for (;;) {
    const auto slash = rest.find('/');
    std::string& segment = segments.emplace_back();
    if (!decode_path_segment(rest.substr(0, slash), segment)) {
      return bad_request("malformed percent-escape in the request path");
    }
    if (segment.find('/') == std::string::npos) {
      joined += '/';
      joined += segment;
    } else {
      joined = "?";  // an encoded '/' outside a customer id matches no fixed route
    }
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }

  RouteMatch m;
  if (question != std::string_view::npos) m.query = raw_target.substr(question + 1);
  for (const FixedRoute& r : kFixedRoutes) {
    if (joined == r.path) {
      m.route = r.route;
      m.scope = r.scope;
      return m;
    }
  }
  // /v1/customers/{id} and /v1/customers/{id}/events, the id one segment.
  if (segments.size() < 3 || segments.size() > 4 || segments[0] != "v1" || segments[1] != "customers") return m;
  if (segments.size() == 4 && segments[3] != "events") return m;
  if (segments[2].empty() || segments[2].size() > kMaxIdBytes) {
    return bad_request("customer id must be 1 to " + std::to_string(kMaxIdBytes) + " bytes");
  }
  m.id = std::move(segments[2]);
  if (segments.size() == 4) {
    m.route = Route::kCustomerEvents;
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
