// Minimal leveled logging to stderr (journald adds timestamps under systemd).
// One line per message; thread-safe. Never pass tokens or customer payloads.
#pragma once

#include <string_view>

namespace rapport {

enum class LogLevel : int { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

void set_log_level(LogLevel level);
LogLevel parse_log_level(std::string_view name);  // unknown -> kInfo
void log(LogLevel level, std::string_view message);
inline void log_error(std::string_view m) { log(LogLevel::kError, m); }
inline void log_warn(std::string_view m) { log(LogLevel::kWarn, m); }
inline void log_info(std::string_view m) { log(LogLevel::kInfo, m); }
inline void log_debug(std::string_view m) { log(LogLevel::kDebug, m); }

}  // namespace rapport
