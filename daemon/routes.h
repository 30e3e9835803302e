// Routes of the HTTP API served by Api: the one table of paths, their Route
// (the metrics label) and the scope a bearer token must hold. A pure function
// of the method and the raw request target, used by Api::access (which the
// HTTP front calls as soon as a header is in, before it reads any body byte)
// and by Api::handle, so the two can never disagree.
//
// Routing is on the raw (still percent-encoded) path, split on '/'; only then
// is the customer id segment percent-decoded: an id may hold any byte but
// NUL — '/', '%', '?', '#', spaces, non-ASCII — when it is percent-encoded,
// and its bytes never change the route. The fixed parts of a route match
// only as sent ("/%6Detrics" is no route).
// POST /v1/events is not here: the HTTP front serves it itself.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "daemon/metrics.h"
#include "ingest/auth.h"

namespace rapport {

struct RouteMatch {
  Route route = Route::kOther;  // kOther: no such route (404), unless `status` is set
  std::optional<Scope> scope;   // the scope a bearer token must hold; nullopt: no token needed
  std::string id;               // customer routes: the decoded customer id (1..kMaxIdBytes bytes)
  std::string_view query;       // the raw query string, without '?' (a view into the target)
  int status = 0;               // 400 when the target is malformed (`error` says why); 0 otherwise
  std::string error;
};

// `method` as sent ("GET", "DELETE", ...); `raw_target` the request target as
// sent ("/v1/customers/zed%2Fevents?explain=true"). A target that is not an
// absolute path, a malformed percent-escape or a NUL (encoded or raw) in the path,
// or a customer id outside 1..kMaxIdBytes bytes gives status 400.
// The route does not depend on the method except for DELETE on a customer
// (admin scope); a method a route does not allow is answered 405 by
// Api::handle after the token check.
RouteMatch match_route(std::string_view method, std::string_view raw_target);

// Percent-decodes one path segment; false on a malformed escape or a NUL (encoded or raw).
bool decode_path_segment(std::string_view in, std::string& out);

// "/v1/customers/<id percent-encoded>" (+ "/events" when `events`): the target
// that match_route maps back to `id`.
std::string customer_target(std::string_view id, bool events = false);

}  // namespace rapport
