// The daemon's Metrics as the network fronts see it (FrontStats): every call
// lands on the Prometheus series it always did, with the same names and labels.
#include "daemon/metrics.h"

#include <gtest/gtest.h>

#include <string>

namespace rapport {
namespace {

bool has(const std::string& text, const std::string& line) { return text.find(line) != std::string::npos; }

TEST(MetricsTest, FrontStatsCallsReachTheSameSeriesAsBefore) {
  Metrics metrics("test");
  FrontStats& stats = metrics;
  stats.received(Transport::kTcp).Increment(3);
  stats.rejected(Transport::kHttp, RejectReason::kMalformedJson).Increment();
  stats.refused(Transport::kTcp).Increment(2);
  stats.accepted(Transport::kHttp, EventType::kPurchase).Increment();
  stats.duplicate(Transport::kTcp, EventType::kEngagement).Increment();
  stats.by_channel(Channel::kEmail).Increment();
  stats.connections_open(Transport::kHttp).Increment();
  stats.connections_refused(Transport::kTcp).Increment();
  stats.tls_handshake_failures(Transport::kHttp, TlsFailure::kPlaintext).Increment();
  stats.tls_handshake_failures(Transport::kTcp, TlsFailure::kTimeout).Increment();

  const std::string text = metrics.serialize();
  EXPECT_TRUE(has(text, "rapport_events_received_total{transport=\"tcp\"} 3")) << text;
  EXPECT_TRUE(has(text, "rapport_events_rejected_total{reason=\"malformed_json\",transport=\"http\"} 1")) << text;
  EXPECT_TRUE(has(text, "rapport_events_refused_total{transport=\"tcp\"} 2")) << text;
  EXPECT_TRUE(has(text, "rapport_events_accepted_total{transport=\"http\",type=\"purchase\"} 1")) << text;
  EXPECT_TRUE(has(text, "rapport_events_duplicate_total{transport=\"tcp\",type=\"engagement\"} 1")) << text;
  EXPECT_TRUE(has(text, "rapport_events_by_channel_total{channel=\"email\"} 1")) << text;
  EXPECT_TRUE(has(text, "rapport_connections_open{transport=\"http\"} 1")) << text;
  EXPECT_TRUE(has(text, "rapport_connections_refused_total{transport=\"tcp\"} 1")) << text;
  EXPECT_TRUE(has(text, "rapport_tls_handshake_failures_total{reason=\"plaintext\",transport=\"http\"} 1")) << text;
  EXPECT_TRUE(has(text, "rapport_tls_handshake_failures_total{reason=\"timeout\",transport=\"tcp\"} 1")) << text;
  // The series the daemon's own modules use are still there, and the process ones come from metrics/.
  EXPECT_TRUE(has(text, "rapport_build_info{version=\"test\"} 1")) << text;
  EXPECT_TRUE(has(text, "rapport_ack_latency_seconds_count{transport=\"import\"} 0")) << text;
  EXPECT_TRUE(has(text, "rapport_commit_duration_seconds_count 0")) << text;
  EXPECT_TRUE(has(text, "process_resident_memory_bytes ")) << text;
}

TEST(MetricsTest, EveryRouteKeepsItsLabelAndTheFrontsRoutesMapToTheirs) {
  Metrics metrics("test");
  FrontStats& stats = metrics;
  // clang-format off
  const char* names[kRouteCount] = {
      "events",          "other",   "customer", "customer_events", "customers_batch_get", "customers_list",
      "customer_delete", "tiers",   "model",    "model_fit",       "deadletter",          "deadletter_remove",
      "metrics",         "healthz", "readyz",   "openapi",         "model_backtest",      "changes",
      "cluster",         "customer_merge",  "customer_unmerge",    "customer_aliases"};
  // clang-format on
  for (int r = 0; r < kRouteCount; ++r) {
    EXPECT_EQ(route_name(static_cast<Route>(r)), names[r]);
    stats.observe_http(http_route(static_cast<Route>(r)), 200, 0.001);
  }
  stats.observe_http(HttpRoute::kEvents, 413, 0.001);           // answered by the HTTP front itself
  stats.observe_http(HttpRoute::kOther, 400, 0.001);            // refused before routing
  stats.observe_http(static_cast<HttpRoute>(200), 404, 0.001);  // an id no route has: other
  const std::string text = metrics.serialize();
  for (const char* name : names) {
    EXPECT_TRUE(has(text, std::string("rapport_http_requests_total{code=\"200\",route=\"") + name + "\"} 1")) << name;
    EXPECT_TRUE(has(text, std::string("rapport_http_request_duration_seconds_count{route=\"") + name + "\"}")) << name;
  }
  EXPECT_TRUE(has(text, "rapport_http_requests_total{code=\"413\",route=\"events\"} 1")) << text;
  EXPECT_TRUE(has(text, "rapport_http_requests_total{code=\"400\",route=\"other\"} 1")) << text;
  EXPECT_TRUE(has(text, "rapport_http_requests_total{code=\"404\",route=\"other\"} 1")) << text;
}

}  // namespace
}  // namespace rapport
