// libFuzzer target: HTTP API routing and path decoding (daemon/routes.h) on
// arbitrary bytes.
//
// Input layout: byte 0 selects the method (bits 0-2: GET, HEAD, POST, DELETE,
// PUT, PATCH, OPTIONS, "" ); the rest is used twice:
//  1. as a raw request target for match_route;
//  2. as a customer id (when it is 1..kMaxIdBytes bytes without NUL), sent
//     the way clients send it: customer_target(id) (percent-encoded), with
//     and without "/events", and with the rest of the input as a query.
//
// Invariants (any violation is __builtin_trap(), i.e. a crash libFuzzer keeps):
//  - match_route never crashes; status is 0 or 400 (400 with a message, no
//    route); a customer route carries an id of 1..kMaxIdBytes bytes without
//    NUL and a scope (read, or admin for DELETE); a route without a scope is
//    a probe, /metrics, the API document or no route at all;
//  - the query is exactly what follows the first '?' of the target;
//  - for every id: encoding then routing gives back the id and the right
//    route and scope, whatever bytes the id holds ('/', '%', '?', '#', ...);
//  - decode_path_segment inverts percent_encode.
// Built with libFuzzer (RAPPORT_FUZZ=ON) and, without it, by the corpus replay test.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "daemon/routes.h"
#include "ingest/net/http_client.h"
#include "scoring/event.h"

namespace {

using rapport::Route;
using rapport::RouteMatch;
using rapport::Scope;

#define FUZZ_CHECK(cond)           \
  do {                             \
    if (!(cond)) __builtin_trap(); \
  } while (0)

constexpr std::string_view kMethods[] = {"GET", "HEAD", "POST", "DELETE", "PUT", "PATCH", "OPTIONS", ""};

bool has_nul(std::string_view s) { return std::memchr(s.data(), 0, s.size()) != nullptr; }

bool customer_route(Route r) {
  return r == Route::kCustomer || r == Route::kCustomerEvents || r == Route::kCustomerDelete ||
         r == Route::kCustomerAliases || r == Route::kCustomerMerge || r == Route::kCustomerUnmerge;
}

void check_match(std::string_view method, std::string_view target, const RouteMatch& m) {
  FUZZ_CHECK(m.status == 0 || m.status == 400);
  if (m.status == 400) {
    FUZZ_CHECK(!m.error.empty());
    FUZZ_CHECK(m.route == Route::kOther && !m.scope);
    return;
  }
  const auto question = target.find('?');
  FUZZ_CHECK(m.query == (question == std::string_view::npos ? std::string_view() : target.substr(question + 1)));
  if (customer_route(m.route)) {
    FUZZ_CHECK(!m.id.empty() && m.id.size() <= rapport::kMaxIdBytes && !has_nul(m.id));
    FUZZ_CHECK(m.scope.has_value());
    FUZZ_CHECK((m.route == Route::kCustomerDelete) ==
               (method == "DELETE" && m.route != Route::kCustomerEvents && m.route != Route::kCustomerAliases));
    FUZZ_CHECK((m.route == Route::kCustomerMerge || m.route == Route::kCustomerUnmerge) <= (method == "POST"));
    const bool admin =
        m.route == Route::kCustomerDelete || m.route == Route::kCustomerMerge || m.route == Route::kCustomerUnmerge;
    FUZZ_CHECK(*m.scope == (admin ? Scope::kAdmin : Scope::kRead));
  } else {
    FUZZ_CHECK(m.id.empty());
  }
  if (!m.scope) {
    FUZZ_CHECK(m.route == Route::kHealthz || m.route == Route::kReadyz || m.route == Route::kMetrics ||
               m.route == Route::kOpenApi || m.route == Route::kOther);
  } else {
    FUZZ_CHECK(m.route != Route::kOther && m.route != Route::kEvents);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view method = kMethods[data[0] & 7];
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);

  // 1. Any bytes as a target.
  check_match(method, rest, rapport::match_route(method, rest));

  // 2. Any bytes as an id, encoded the way clients do.
  std::string decoded;
  FUZZ_CHECK(rapport::decode_path_segment(rapport::percent_encode(rest), decoded) == !has_nul(rest));
  if (!has_nul(rest)) FUZZ_CHECK(decoded == rest);
  if (rest.empty() || rest.size() > rapport::kMaxIdBytes || has_nul(rest)) return 0;
  const std::string id(rest);
  for (const bool events : {false, true}) {
    const std::string target = rapport::customer_target(id, events);
    const RouteMatch m = rapport::match_route(method, target);
    check_match(method, target, m);
    FUZZ_CHECK(m.status == 0);
    FUZZ_CHECK(m.id == id);
    FUZZ_CHECK(m.query.empty());
    const Route want = events ? Route::kCustomerEvents : method == "DELETE" ? Route::kCustomerDelete : Route::kCustomer;
    FUZZ_CHECK(m.route == want);
    // With the input (raw) as the query: the route and id do not change.
    const std::string with_query = target + "?" + id;
    const RouteMatch q = rapport::match_route(method, with_query);
    check_match(method, with_query, q);
    FUZZ_CHECK(q.route == want && q.id == id);
  }
  return 0;
}
