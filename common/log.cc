#include "common/log.h"

#include <atomic>
#include <cstdio>
#include <mutex>
#include <string>

namespace rapport {
namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::mutex g_mutex;
// sd-daemon(3) priority prefixes, understood by journald.
constexpr const char* kPrefix[] = {"<3>error: ", "<4>warn: ", "<6>", "<7>debug: "};
}  // namespace

void set_log_level(LogLevel level) { g_level.store(static_cast<int>(level)); }

LogLevel parse_log_level(std::string_view name) {
  if (name == "error") return LogLevel::kError;
  if (name == "warn") return LogLevel::kWarn;
  if (name == "debug") return LogLevel::kDebug;
  return LogLevel::kInfo;
}

void log(LogLevel level, std::string_view message) {
  if (static_cast<int>(level) > g_level.load(std::memory_order_relaxed)) return;
  std::string line = kPrefix[static_cast<int>(level)];
  line.append(message);
  line.push_back('\n');
  std::lock_guard lock(g_mutex);
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace rapport
