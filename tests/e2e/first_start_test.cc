// End-to-end: a new install with an empty store is quiet about the value model. Too little data
// to fit is the normal state, said once at info level; it is neither a warning nor a failed fit.
#include <gtest/gtest.h>

#include "tests/e2e/harness.h"

namespace rapport::test {
namespace {

std::size_t count(const std::string& text, std::string_view what) {
  std::size_t n = 0;
  for (auto pos = text.find(what); pos != std::string::npos; pos = text.find(what, pos + what.size())) ++n;
  return n;
}

TEST(FirstStart, WaitingForDataIsOneInfoLineNotAWarning) {
  TempDir dir;
  Daemon d(dir.file("state"));
  // Two fits on an empty store, then two with one customer: each is answered with the reason.
  for (int i = 0; i < 4; ++i) {
    if (i == 2) {
      const auto ingest = http(d.http_port(), "POST", "/v1/events",
                               R"({"event_id":"e1","customer_id":"c1","ts":"2024-05-01T12:00:00Z",)"
                               R"("type":"purchase","amount":10})");
      ASSERT_EQ(ingest.status, 200) << ingest.body;
    }
    const auto fit = http(d.http_port(), "POST", "/v1/model:fit", "{}");
    EXPECT_EQ(fit.status, 422) << fit.body;
    EXPECT_NE(fit.body.find("no value model yet: waiting for 10 customers who bought"), std::string::npos) << fit.body;
  }
  const auto metrics = http(d.http_port(), "GET", "/metrics");
  EXPECT_NE(metrics.body.find("rapport_model_fits_total{result=\"error\"} 0"), std::string::npos)
      << "waiting for data counted as a failed fit";
  const std::string log = d.log();
  EXPECT_EQ(count(log, "no value model yet"), 1u) << log;
  EXPECT_EQ(count(log, "warn"), 0u) << log;
  EXPECT_EQ(count(log, "fit failed"), 0u) << log;
  EXPECT_NE(log.find(" info: no value model yet"), std::string::npos) << log;
}

}  // namespace
}  // namespace rapport::test
