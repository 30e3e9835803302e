// Wall-clock time as the event model counts it: milliseconds since the Unix epoch (UTC).
#pragma once

#include <chrono>
#include <cstdint>

namespace rapport {

inline std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace rapport
