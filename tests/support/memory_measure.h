// For tests that measure a daemon's resident memory: under ASan the allocator keeps freed blocks
// in a quarantine (256 MB by default) to catch use-after-free, so memory the product gives back
// would still look held. Daemons started after this call run without the quarantine (they keep
// every other check); in builds without ASan the variable is ignored.
#pragma once

#include <cstdlib>
#include <string>

namespace rapport::test {

inline void measure_memory_without_asan_quarantine() {
  const char* current = std::getenv("ASAN_OPTIONS");
  std::string options = current != nullptr ? current : "";
  if (options.find("quarantine_size_mb") != std::string::npos) return;
  if (!options.empty()) options += ':';
  options += "quarantine_size_mb=0";
  ::setenv("ASAN_OPTIONS", options.c_str(), 1);
}

}  // namespace rapport::test
