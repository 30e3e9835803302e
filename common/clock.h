// Wall-clock time as the event model counts it: milliseconds since the Unix epoch (UTC).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace rapport {

inline std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// "2026-05-01T12:00:00.123Z": RFC 3339, UTC, milliseconds.
std::string format_rfc3339(std::int64_t epoch_ms);

}  // namespace rapport
