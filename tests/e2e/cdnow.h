// The CDNOW purchase log (tests/data/cdnow) as NDJSON purchase events for the e2e tests that
// stream it into a real daemon (value_test.cc, backtest_test.cc).
#pragma once

#include <cstdint>
#include <ctime>
#include <fstream>
#include <set>
#include <stdexcept>
#include <string>

namespace rapport::test {

inline constexpr std::int64_t kCdnowDayMs = 86'400'000;
inline constexpr std::int64_t kCdnowCalibrationEndDay = 10'134;  // 1997-09-30

// The CDNOW calibration purchases as NDJSON, shifted by whole days so that
// 1997-09-30 is today: the customers' x, t_x and T (in days) are the paper's.
// With `all_dates`, every purchase (the forecast period too) at its real date.
inline std::string cdnow_ndjson(std::size_t& customers, bool all_dates = false) {
  std::ifstream in(std::string(RAPPORT_CDNOW_DIR) + "/CDNOW_sample.txt");
  if (!in) throw std::runtime_error("CDNOW data missing under " RAPPORT_CDNOW_DIR);
  const std::int64_t today = static_cast<std::int64_t>(std::time(nullptr)) * 1000 / kCdnowDayMs;
  std::string out, master, sample, date, cds, dollars;
  std::set<std::string> ids;
  int n = 0;
  while (in >> master >> sample >> date >> cds >> dollars) {
    std::tm tm{};
    tm.tm_year = std::stoi(date.substr(0, 4)) - 1900;
    tm.tm_mon = std::stoi(date.substr(4, 2)) - 1;
    tm.tm_mday = std::stoi(date.substr(6, 2));
    const std::int64_t day = static_cast<std::int64_t>(timegm(&tm)) / 86400;
    ids.insert(sample);
    if (day > kCdnowCalibrationEndDay && !all_dates) continue;
    const std::int64_t ts = (all_dates ? day : day - kCdnowCalibrationEndDay + today) * kCdnowDayMs + 3'600'000;
    out += R"({"event_id":"cd-)" + std::to_string(++n) + R"(","customer_id":"cdnow-)" + sample + R"(","ts":)" +
           std::to_string(ts) + R"(,"type":"purchase","channel":"web","amount":)" + dollars + "}\n";
  }
  customers = ids.size();
  return out;
}

}  // namespace rapport::test
