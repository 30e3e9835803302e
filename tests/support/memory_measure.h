// For tests that measure a daemon's resident memory: under ASan the allocator keeps freed blocks
// in a quarantine (256 MB by default) to catch use-after-free, so memory the product gives back
// would still look held. Daemons started after this call run without the quarantine (they keep
// every other check); in builds without ASan the variable is ignored.
#pragma once

#include <cstdlib>
#include <string>

namespace rapport::test {

// ThreadSanitizer keeps shadow memory beside every application byte (its documentation: 5-10x the
// memory), and RSS counts it: a bound on a daemon's RSS growth is multiplied by this in a TSan build
// (the daemons the tests start are built the same way). 1 elsewhere.
#if defined(__SANITIZE_THREAD__)
inline constexpr double kInstrumentedMemoryFactor = 8;
#else
inline constexpr double kInstrumentedMemoryFactor = 1;
#endif

inline void measure_memory_without_asan_quarantine() {
  const char* current = std::getenv("ASAN_OPTIONS");
  std::string options = current != nullptr ? current : "";
  if (options.find("quarantine_size_mb") != std::string::npos) return;
  if (!options.empty()) options += ':';
  options += "quarantine_size_mb=0";
  ::setenv("ASAN_OPTIONS", options.c_str(), 1);
}

}  // namespace rapport::test
