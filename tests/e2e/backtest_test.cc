// End-to-end: the value-model backtest (POST /v1/model:backtest, rapportctl backtest) on the
// CDNOW sample streamed into a real daemon at its real dates: 39 weeks of calibration
// (1997-01-01..1997-09-30) and 39 weeks of holdout, as in Fader, Hardie & Lee (2005). Its
// totals, conditional-expectations table and tracking curve agree within 0.5 % with
// tests/e2e/backtest_reference.py, which computes them from the papers' formulas with none of
// Rapport's code; the reference itself reproduces the paper's published estimates. Plus the
// PNG of --plot, and the errors for bad dates and empty holdouts.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <cmath>
#include <filesystem>
#include <string>

#include "common/clock.h"
#include "tests/e2e/cdnow.h"
#include "tests/e2e/harness.h"

namespace rapport::test {
namespace {

const std::string kBacktestBody = R"({"calibration_end":"1997-09-30","holdout_end":"1998-06-30"})";

double num(simdjson::dom::element e) {
  double v = 0;
  if (e.get_double().get(v) == simdjson::SUCCESS) return v;
  std::int64_t i = 0;
  if (e.get_int64().get(i) == simdjson::SUCCESS) return static_cast<double>(i);
  std::uint64_t u = 0;
  if (e.get_uint64().get(u) == simdjson::SUCCESS) return static_cast<double>(u);
  throw std::runtime_error("not a number");
}

std::string str(simdjson::dom::element e) { return std::string(std::string_view(e.get_string())); }

// Relative agreement within 0.5 %.
void expect_within_half_percent(double actual, double reference, const std::string& what) {
  EXPECT_NEAR(actual, reference, 0.005 * std::abs(reference)) << what;
}

CommandResult reference_computation() {
  return run_command({"/usr/bin/env", "python3", std::string(RAPPORT_SOURCE_DIR) + "/tests/e2e/backtest_reference.py",
                      std::string(RAPPORT_CDNOW_DIR) + "/CDNOW_sample.txt", "1997-09-30", "1998-06-30"});
}

// A daemon holding the whole CDNOW sample at its real dates.
class CdnowDaemon : public ::testing::Test {
 protected:
  void SetUp() override {
    daemon_ = std::make_unique<Daemon>(dir_.file("state"));
    std::size_t customers = 0;
    const auto ingest = http(daemon_->http_port(), "POST", "/v1/events", cdnow_ndjson(customers, /*all_dates=*/true),
                             "application/x-ndjson");
    ASSERT_EQ(ingest.status, 200) << ingest.body;
    ASSERT_NE(ingest.body.find(R"("accepted":6919)"), std::string::npos) << ingest.body;
    ASSERT_EQ(customers, 2357u);
  }
  Client::Response backtest(const std::string& body) {
    return http(daemon_->http_port(), "POST", "/v1/model:backtest", body, "application/json");
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(daemon_->http_port()); }

  TempDir dir_;
  std::unique_ptr<Daemon> daemon_;
};

TEST_F(CdnowDaemon, BacktestMatchesTheIndependentComputationWithinHalfAPercent) {
  const auto answer = backtest(kBacktestBody);
  ASSERT_EQ(answer.status, 200) << answer.body;
  const CommandResult reference = reference_computation();
  ASSERT_EQ(reference.exit_code, 0) << reference.err;

  simdjson::dom::parser p1, p2;
  const simdjson::dom::element got = p1.parse(answer.body);
  const simdjson::dom::element ref = p2.parse(reference.out);

  // The reference reproduces the paper's published estimates (time in weeks).
  const auto rb = ref["bgnbd"];
  expect_within_half_percent(num(rb["r"]), 0.243, "paper r");
  expect_within_half_percent(num(rb["alpha_weeks"]), 4.414, "paper alpha");
  expect_within_half_percent(num(rb["a"]), 0.793, "paper a");
  expect_within_half_percent(num(rb["b"]), 2.426, "paper b");
  EXPECT_NEAR(num(rb["log_likelihood"]), -9582.4, 0.1);
  expect_within_half_percent(num(ref["gamma_gamma"]["p"]), 6.25, "paper p");
  expect_within_half_percent(num(ref["gamma_gamma"]["q"]), 3.74, "paper q");
  expect_within_half_percent(num(ref["gamma_gamma"]["gamma"]), 15.44, "paper gamma");

  // The daemon's fit as of the calibration end (days) and the reference's (weeks).
  const auto gb = got["model"]["bgnbd"];
  expect_within_half_percent(num(gb["r"]), num(rb["r"]), "r");
  expect_within_half_percent(num(gb["alpha"]) / 7, num(rb["alpha_weeks"]), "alpha");
  expect_within_half_percent(num(gb["a"]), num(rb["a"]), "a");
  expect_within_half_percent(num(gb["b"]), num(rb["b"]), "b");
  EXPECT_EQ(str(got["calibration_end"]), "1997-09-30T00:00:00.000Z");
  EXPECT_EQ(str(got["model"]["as_of"]), "1997-09-30T00:00:00.000Z");
  EXPECT_EQ(num(got["holdout_days"]), 273);  // 39 weeks

  // Totals and mean absolute errors.
  EXPECT_EQ(num(got["customers"]), num(ref["customers"]));
  EXPECT_EQ(num(got["customers"]), 2357);
  const auto totals = ref["totals"];
  EXPECT_EQ(num(got["transactions"]["actual"]), num(totals["actual_transactions"]));
  EXPECT_NEAR(num(got["spend"]["actual"]), num(totals["actual_spend"]), 0.01);
  expect_within_half_percent(num(got["transactions"]["predicted"]), num(totals["predicted_transactions"]),
                             "predicted transactions");
  expect_within_half_percent(num(got["spend"]["predicted"]), num(totals["predicted_spend"]), "predicted spend");
  expect_within_half_percent(num(got["transactions"]["mae"]), num(totals["transactions_mae"]), "transactions MAE");
  expect_within_half_percent(num(got["spend"]["mae"]), num(totals["spend_mae"]), "spend MAE");

  // The conditional-expectations table, x = 0..7+.
  const auto got_groups = got["conditional_expectations"].get_array();
  const auto ref_groups = ref["conditional_expectations"].get_array();
  ASSERT_EQ(got_groups.size(), 8u);
  ASSERT_EQ(ref_groups.size(), 8u);
  for (std::size_t g = 0; g < 8; ++g) {
    const auto a = got_groups.at(g).value(), b = ref_groups.at(g).value();
    const std::string where = "x = " + std::to_string(g);
    EXPECT_EQ(num(a["x"]), static_cast<double>(g));
    EXPECT_EQ(str(a["label"]), g == 7 ? "7+" : std::to_string(g));
    EXPECT_EQ(num(a["customers"]), num(b["customers"])) << where;
    EXPECT_GT(num(a["customers"]), 0) << where;
    EXPECT_NEAR(num(a["actual"]), num(b["actual"]), 1e-9) << where;
    expect_within_half_percent(num(a["predicted"]), num(b["predicted"]), "predicted, " + where);
  }

  // The weekly tracking curve: 78 weeks, the calibration in the first 39.
  const auto tracking = got["tracking"];
  EXPECT_EQ(str(tracking["first_day"]), "1997-01-01");
  EXPECT_EQ(num(tracking["calibration_weeks"]), 39);
  const auto got_weeks = tracking["weeks"].get_array();
  const auto ref_weeks = ref["tracking"].get_array();
  ASSERT_EQ(got_weeks.size(), 78u);
  ASSERT_EQ(ref_weeks.size(), 78u);
  for (std::size_t k = 0; k < 78; ++k) {
    const auto a = got_weeks.at(k).value(), b = ref_weeks.at(k).value();
    const std::string where = "week " + std::to_string(k + 1);
    EXPECT_EQ(num(a["week"]), num(b["week"])) << where;
    EXPECT_EQ(str(a["end"]), str(b["end"])) << where;
    EXPECT_EQ(num(a["actual"]), num(b["actual"])) << where;
    expect_within_half_percent(num(a["predicted"]), num(b["predicted"]), "predicted, " + where);
  }
  EXPECT_EQ(str(got_weeks.at(38).value()["end"]), "1997-09-30");
  EXPECT_EQ(str(got_weeks.at(77).value()["end"]), "1998-06-30");
  // Repeat transactions up to the calibration end plus the holdout's: the curve's last point.
  EXPECT_EQ(num(got_weeks.at(77).value()["actual"]) - num(got_weeks.at(38).value()["actual"]),
            num(got["transactions"]["actual"]));

  // The backtest does not replace the daemon's model.
  EXPECT_EQ(http(daemon_->http_port(), "GET", "/v1/model").status, 404);
}

TEST_F(CdnowDaemon, BadDatesAndEmptyHoldoutsAreClearErrors) {
  const auto expect_400 = [&](const std::string& body, const std::string& message) {
    const auto r = backtest(body);
    EXPECT_EQ(r.status, 400) << body << ": " << r.body;
    EXPECT_NE(r.body.find(message), std::string::npos) << body << ": " << r.body;
  };
  expect_400(R"({"calibration_end":"1997-09-31","holdout_end":"1998-06-30"})",
             R"(\"calibration_end\": '1997-09-31' is not a date: use YYYY-MM-DD)");
  expect_400(R"({"calibration_end":"1997-09-30","holdout_end":"June 1998"})", "is not a date");
  expect_400(R"({"calibration_end":"1997-09-30","holdout_end":"1997-06-30"})",
             R"(\"holdout_end\" 1997-06-30 must be a later day than \"calibration_end\" 1997-09-30)");
  expect_400(R"({"calibration_end":"1997-09-30","holdout_end":"1997-09-30T23:00:00Z"})", "must be a later day");
  expect_400(
      R"({"calibration_end":"1997-09-30","holdout_end":")" + format_rfc3339(wall_ms() + 3 * 86'400'000LL) + "\"}",
      "is in the future");
  // The log ends on 1998-06-30: a holdout after it has no purchase to compare with.
  expect_400(R"({"calibration_end":"1998-07-01","holdout_end":"1998-12-31"})", "no purchase in the holdout");
  expect_400(R"({"calibration_end":"1997-09-30"})", R"(needs \"holdout_end\")");
  expect_400(R"({"holdout_end":"1998-06-30"})", R"(needs \"calibration_end\")");
  expect_400(R"({"calibration_end":"1997-09-30","holdout_end":"1998-06-30","horizon":7})", "unknown field");
  expect_400(R"({"calibration_end":19970930,"holdout_end":"1998-06-30"})", "must be a string");
  expect_400("", "must be a JSON object");
  expect_400("[1]", "must be a JSON object");
  // A calibration end before the first purchase: nothing to fit (422, as a fit).
  const auto early = backtest(R"({"calibration_end":"1996-06-30","holdout_end":"1997-06-30"})");
  EXPECT_EQ(early.status, 422) << early.body;
  EXPECT_NE(early.body.find("no value model yet"), std::string::npos) << early.body;
}

TEST_F(CdnowDaemon, RapportctlBacktestAgainstTheDaemonPrintsTheTables) {
  const auto r = run_command({binary("rapportctl"), "backtest", "--url", url(), "--calibration-end", "1997-09-30",
                              "--holdout-end", "1998-06-30"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("2357 customers"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Conditional expectations"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\n7+ "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\n78    1998-06-30"), std::string::npos) << r.out;
  // The daemon's 400 is rapportctl's exit 2, with the daemon's message.
  const auto empty = run_command({binary("rapportctl"), "backtest", "--url", url(), "--calibration-end", "1998-07-01",
                                  "--holdout-end", "1998-12-31"});
  EXPECT_EQ(empty.exit_code, 2);
  EXPECT_NE(empty.err.find("HTTP 400: backtest failed: no purchase in the holdout"), std::string::npos) << empty.err;
}

// rapportctl on a state dir: the same backtest, its JSON, the PNG; the errors with exit 2.
class CdnowStateDir : public ::testing::Test {
 protected:
  void SetUp() override {
    std::size_t customers = 0;
    write_file(dir_.file("cdnow.ndjson"), cdnow_ndjson(customers, /*all_dates=*/true));
    const auto imported =
        run_command({binary("rapportctl"), "import", "-q", "--state-dir", state(), dir_.file("cdnow.ndjson")});
    ASSERT_EQ(imported.exit_code, 0) << imported.err;
  }
  std::string state() const { return dir_.file("state"); }
  CommandResult backtest(std::vector<std::string> extra, const std::string& d1 = "1997-09-30",
                         const std::string& d2 = "1998-06-30") {
    std::vector<std::string> argv = {binary("rapportctl"), "backtest", "--state-dir",   state(),
                                     "--calibration-end",  d1,         "--holdout-end", d2};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return run_command(argv);
  }
  TempDir dir_;
};

TEST_F(CdnowStateDir, JsonAndPlotWriteTheSameBacktestAndAPng) {
  const std::string png = dir_.file("backtest.png");
  const auto r = backtest({"--json", "--plot", png});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  simdjson::dom::parser parser;
  const simdjson::dom::element got = parser.parse(r.out);
  EXPECT_EQ(num(got["customers"]), 2357);
  EXPECT_EQ(got["tracking"]["weeks"].get_array().size(), 78u);
  const CommandResult reference = reference_computation();
  ASSERT_EQ(reference.exit_code, 0) << reference.err;
  simdjson::dom::parser ref_parser;
  const simdjson::dom::element ref = ref_parser.parse(reference.out);
  expect_within_half_percent(num(got["transactions"]["predicted"]), num(ref["totals"]["predicted_transactions"]),
                             "predicted transactions");

  const std::string image = read_file(png);
  ASSERT_GT(image.size(), 8u);
  EXPECT_EQ(image.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_NE(r.err.find("plot written to " + png), std::string::npos) << r.err;
}

TEST_F(CdnowStateDir, MissingGnuplotBadDatesAndEmptyHoldoutsExitTwo) {
  const std::string png = dir_.file("none.png");
  const auto no_gnuplot =
      run_command({"/usr/bin/env", "PATH=" + dir_.file("no-such-bin"), binary("rapportctl"), "backtest", "--state-dir",
                   state(), "--calibration-end", "1997-09-30", "--holdout-end", "1998-06-30", "--plot", png});
  EXPECT_EQ(no_gnuplot.exit_code, 2);
  EXPECT_NE(no_gnuplot.err.find("--plot needs gnuplot, which is not installed"), std::string::npos) << no_gnuplot.err;
  EXPECT_NE(no_gnuplot.err.find("gnuplot-nox"), std::string::npos) << no_gnuplot.err;
  EXPECT_FALSE(std::filesystem::exists(png));

  const auto bad = backtest({}, "1997-02-30");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("--calibration-end: '1997-02-30' is not a date"), std::string::npos) << bad.err;
  const auto reversed = backtest({}, "1998-06-30", "1997-09-30");
  EXPECT_EQ(reversed.exit_code, 2);
  EXPECT_NE(reversed.err.find("--holdout-end 1997-09-30 must be a later day than --calibration-end 1998-06-30"),
            std::string::npos)
      << reversed.err;
  const auto empty = backtest({}, "1998-07-01", "1998-12-31");
  EXPECT_EQ(empty.exit_code, 2);
  EXPECT_NE(empty.err.find("backtest failed: no purchase in the holdout"), std::string::npos) << empty.err;
  const auto missing =
      run_command({binary("rapportctl"), "backtest", "--state-dir", state(), "--calibration-end", "1997-09-30"});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.err.find("--holdout-end is required"), std::string::npos) << missing.err;
}

}  // namespace
}  // namespace rapport::test
