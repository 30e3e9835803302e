// match_route (daemon/routes.h): the one route and scope table of the HTTP
// API, and routing on the encoded path with the id decoded afterwards.
#include "daemon/routes.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "scoring/event.h"

namespace rapport {
namespace {

struct Case {
  std::string method;
  std::string target;
  Route route;
  std::optional<Scope> scope;
};

TEST(Routes, EveryRouteHasItsScope) {
  const Case cases[] = {
      {"GET", "/healthz", Route::kHealthz, std::nullopt},
      {"GET", "/readyz", Route::kReadyz, std::nullopt},
      {"GET", "/metrics", Route::kMetrics, std::nullopt},
      {"GET", "/v1/openapi.json", Route::kOpenApi, std::nullopt},
      {"GET", "/no/such/route", Route::kOther, std::nullopt},
      {"POST", "/v1/events", Route::kOther, std::nullopt},  // the HTTP front serves it (ingest scope)
      {"GET", "/v1/customers", Route::kCustomersList, Scope::kRead},
      {"POST", "/v1/customers:batchGet", Route::kCustomersBatchGet, Scope::kRead},
      {"GET", "/v1/tiers", Route::kTiers, Scope::kRead},
      {"GET", "/v1/model", Route::kModel, Scope::kRead},
      {"POST", "/v1/model:fit", Route::kModelFit, Scope::kAdmin},
      {"POST", "/v1/model:backtest", Route::kModelBacktest, Scope::kAdmin},
      {"GET", "/v1/deadletter?limit=5", Route::kDeadLetter, Scope::kAdmin},
      {"POST", "/v1/deadletter:remove", Route::kDeadLetterRemove, Scope::kAdmin},
      {"GET", "/v1/changes?after=f1.0.01&wait_ms=10", Route::kChanges, Scope::kRead},
      {"GET", "/v1/cluster", Route::kCluster, Scope::kRead},
      {"GET", "/v1/customers/alice", Route::kCustomer, Scope::kRead},
      {"HEAD", "/v1/customers/alice", Route::kCustomer, Scope::kRead},
      {"DELETE", "/v1/customers/alice", Route::kCustomerDelete, Scope::kAdmin},
      {"GET", "/v1/customers/alice/events", Route::kCustomerEvents, Scope::kRead},
      {"DELETE", "/v1/customers/alice/events", Route::kCustomerEvents, Scope::kRead},  // then 405
      {"GET", "/v1/%63ustomers/alice", Route::kOther, std::nullopt},                   // fixed parts match as sent
      {"GET", "/%6Detrics", Route::kOther, std::nullopt},
      {"GET", "/v1%2Fcustomers", Route::kOther, std::nullopt},  // an encoded '/' is not a separator
      {"GET", "/v1/customers/a/b", Route::kOther, std::nullopt},
      {"POST", "/v1/customers/alice:merge", Route::kCustomerMerge, Scope::kAdmin},
      {"POST", "/v1/customers/alice:unmerge", Route::kCustomerUnmerge, Scope::kAdmin},
      {"GET", "/v1/customers/alice/aliases", Route::kCustomerAliases, Scope::kRead},
      {"GET", "/v1/customers/alice:merge", Route::kCustomer, Scope::kRead},  // the verbs are POST only
      {"POST", "/v1/customers/:merge", Route::kCustomer, Scope::kRead},      // no id: no verb (then 405)
  };
  for (const Case& c : cases) {
    const RouteMatch m = match_route(c.method, c.target);
    EXPECT_EQ(m.status, 0) << c.target << ": " << m.error;
    EXPECT_EQ(m.route, c.route) << c.method << " " << c.target;
    EXPECT_EQ(m.scope, c.scope) << c.method << " " << c.target;
  }
}

TEST(Routes, TheIdIsDecodedAfterRouting) {
  RouteMatch m = match_route("DELETE", "/v1/customers/zed%2Fevents");
  EXPECT_EQ(m.route, Route::kCustomerDelete);
  EXPECT_EQ(m.id, "zed/events");
  m = match_route("GET", "/v1/customers/zed%2Fevents/events?limit=2");
  EXPECT_EQ(m.route, Route::kCustomerEvents);
  EXPECT_EQ(m.id, "zed/events");
  EXPECT_EQ(m.query, "limit=2");
  m = match_route("GET", "/v1/customers/q%3Fx%23y%20%25%C3%A9?explain=true");
  EXPECT_EQ(m.route, Route::kCustomer);
  EXPECT_EQ(m.id, "q?x#y %\xc3\xa9");
  EXPECT_EQ(m.query, "explain=true");
  for (const std::string& id :
       std::vector<std::string>{"zed/events", "a/b/c", "100%", "what?now", "hash#tag", "with space", "..",
                                "caf\xc3\xa9", std::string(kMaxIdBytes, 'x')}) {
    for (const bool events : {false, true}) {
      m = match_route("GET", customer_target(id, events));
      EXPECT_EQ(m.status, 0) << id;
      EXPECT_EQ(m.id, id);
      EXPECT_EQ(m.route, events ? Route::kCustomerEvents : Route::kCustomer) << id;
    }
  }
}

TEST(Routes, TheMergeVerbFollowsTheIdAsSent) {
  RouteMatch m = match_route("POST", "/v1/customers/a%2Fb:merge");
  EXPECT_EQ(m.route, Route::kCustomerMerge);
  EXPECT_EQ(m.id, "a/b");
  m = match_route("POST", "/v1/customers/x%3Amerge");  // an id ending in ":merge", its ':' encoded
  EXPECT_EQ(m.route, Route::kCustomer);
  EXPECT_EQ(m.id, "x:merge");
  m = match_route("POST", "/v1/customers/x%3Amerge:unmerge");
  EXPECT_EQ(m.route, Route::kCustomerUnmerge);
  EXPECT_EQ(m.id, "x:merge");
}

TEST(Routes, MalformedTargetsAre400) {
  for (const std::string& target : std::vector<std::string>{
           std::string("v1/customers/a"), std::string(""), std::string("/v1/customers/bad%2"),
           std::string("/v1/customers/bad%zz"), std::string("/v1/customers/nul%00"), std::string("/x%00"),
           std::string("/v1/customers/raw\0nul", 21), std::string("/v1/customers/"),
           std::string("/v1/customers//events"), "/v1/customers/" + std::string(kMaxIdBytes + 1, 'x')}) {
    const RouteMatch m = match_route("GET", target);
    EXPECT_EQ(m.status, 400) << target;
    EXPECT_FALSE(m.error.empty());
    EXPECT_EQ(m.route, Route::kOther);
    EXPECT_FALSE(m.scope.has_value());
  }
}

}  // namespace
}  // namespace rapport
