// rapport-loadgen against a daemon whose /metrics is on its own listener: the
// verification reads the counters from --metrics-url, and metrics it cannot
// read are reported as unreadable (with the URL and the reason), never as a
// counter mismatch ("verify FAILED").
#include <gtest/gtest.h>

#include "tests/e2e/harness.h"

namespace rapport::test {
namespace {

class LoadgenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string config = dir_.file("rapport.toml");
    write_file(config, "[metrics]\naddress = \"127.0.0.1:0\"\n");
    daemon_ = std::make_unique<Daemon>(dir_.file("state"), std::vector<std::string>{"--config", config});
    const std::string log = daemon_->log();
    const auto pos = log.find("listening metrics=");
    ASSERT_NE(pos, std::string::npos) << log;
    const std::string endpoint = log.substr(pos + 18, log.find('\n', pos) - pos - 18);
    metrics_port_ = std::stoi(endpoint.substr(endpoint.rfind(':') + 1));
  }

  CommandResult loadgen(const std::vector<std::string>& extra) {
    std::vector<std::string> argv = {RAPPORT_LOADGEN,
                                     "--mode",
                                     "tcp",
                                     "--tcp",
                                     "127.0.0.1:" + std::to_string(daemon_->tcp_port()),
                                     "--http",
                                     "127.0.0.1:" + std::to_string(daemon_->http_port()),
                                     "-n",
                                     "300",
                                     "--customers",
                                     "20",
                                     "-c",
                                     "2",
                                     "--batch",
                                     "50",
                                     "-q"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return run_command(argv);
  }

  double accepted_tcp() {
    const auto m = http(metrics_port_, "GET", "/metrics");
    EXPECT_EQ(m.status, 200);
    double sum = 0;
    for (const std::string& line : lines_of(m.body)) {
      if (line.rfind("rapport_events_accepted_total{", 0) == 0 && line.find("transport=\"tcp\"") != std::string::npos) {
        sum += std::stod(line.substr(line.rfind(' ') + 1));
      }
    }
    return sum;
  }

  TempDir dir_;
  std::unique_ptr<Daemon> daemon_;
  int metrics_port_ = 0;
};

TEST_F(LoadgenTest, MetricsOnTheirOwnListenerAreReportedAsUnreadableNotAsAFailedVerify) {
  const auto r = loadgen({});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  const std::string url = "http://127.0.0.1:" + std::to_string(daemon_->http_port()) + "/metrics";
  EXPECT_NE(r.err.find("cannot read the daemon's metrics at " + url + ": HTTP 404"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("metrics are served on the metrics listener"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--metrics-url"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("verify FAILED"), std::string::npos) << r.err;
  EXPECT_EQ(accepted_tcp(), 0) << "nothing is sent when the verification cannot work";
}

TEST_F(LoadgenTest, MetricsUrlPointsTheVerificationAtTheMetricsListener) {
  const auto r = loadgen({"--metrics-url", "http://127.0.0.1:" + std::to_string(metrics_port_) + "/metrics"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("events=300 "), std::string::npos) << r.out;
  EXPECT_EQ(accepted_tcp(), 300);
  // -q keeps "verify ok" quiet; a mismatch would have printed "verify FAILED" and exited 1.
  EXPECT_EQ(r.err.find("verify"), std::string::npos) << r.err;
}

TEST_F(LoadgenTest, UnreachableOrMalformedMetricsUrlsAreClearErrors) {
  // A port nothing listens on: the one of a listener that was closed.
  const int closed_port = [] {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    ::close(fd);
    return static_cast<int>(ntohs(addr.sin_port));
  }();
  const std::string refused_url = "http://127.0.0.1:" + std::to_string(closed_port) + "/metrics";
  const auto refused = loadgen({"--metrics-url", refused_url});
  EXPECT_EQ(refused.exit_code, 2) << refused.err;
  EXPECT_NE(refused.err.find("cannot read the daemon's metrics at " + refused_url + ": "), std::string::npos)
      << refused.err;
  EXPECT_NE(refused.err.find("refused"), std::string::npos) << refused.err;

  // Something that answers 200 but is not rapportd's metrics (the main listener's health check).
  const auto other = loadgen({"--metrics-url", "127.0.0.1:" + std::to_string(daemon_->http_port()) + "/healthz"});
  EXPECT_EQ(other.exit_code, 2) << other.err;
  EXPECT_NE(other.err.find("no rapport_events_accepted_total"), std::string::npos) << other.err;

  const auto https = loadgen({"--metrics-url", "https://127.0.0.1:9470/metrics"});
  EXPECT_EQ(https.exit_code, 2) << https.err;
  EXPECT_NE(https.err.find("--metrics-url must be an http:// URL"), std::string::npos) << https.err;
  EXPECT_EQ(accepted_tcp(), 0);
}

}  // namespace
}  // namespace rapport::test
