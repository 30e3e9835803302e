# Build time: CI (make test) compiles four trees cold on 2 cores (normal, ASan, TSan, fuzz), so the
# heavy, stable third-party headers are precompiled once per target instead of parsed in every file,
# and the folders whose files do not clash compile as one unity file (UNITY_BUILD in their CMakeLists).
#
# rapport_pch(<target> <header>...)          precompile these headers for <target>
# rapport_pch(<target> REUSE_FROM <other>)  use <other>'s precompiled header; the two targets must
#                                           compile with the same flags (only -D macros that the
#                                           headers do not use, and include directories, may differ)
#
# A precompiled header is included first in every file of its target: a file that forgets one of
# its includes still compiles here; configure with -DRAPPORT_PCH=OFF to check the includes.
# Including the headers first can also change GCC 12's inlining enough for its false -Warray-bounds /
# -Wrestrict reports on std::string (e.g. `"a" + std::string(n, ' ') + "b"`) to appear (the test
# targets turn -Warray-bounds off for that, tests/CMakeLists.txt); in a library, give such a file
# SKIP_PRECOMPILE_HEADERS (set_source_files_properties).
option(RAPPORT_PCH "Precompile heavy third-party headers (gtest, simdjson, prometheus)" ON)

# The standard headers that most files of the project include.
set(RAPPORT_PCH_STD <algorithm> <atomic> <chrono> <cstdint> <functional> <map> <memory> <mutex> <optional>
    <string> <string_view> <thread> <utility> <vector>)

# ccache caches compiles that use a precompiled header only with this sloppiness (ccache manual,
# "Precompiled headers"); without it every such compile is a cache miss.
if(RAPPORT_PCH AND CMAKE_CXX_COMPILER_LAUNCHER MATCHES "ccache")
  set(CMAKE_CXX_COMPILER_LAUNCHER ${CMAKE_COMMAND} -E env CCACHE_SLOPPINESS=pch_defines,time_macros
      ${CMAKE_CXX_COMPILER_LAUNCHER})
endif()

function(rapport_pch target)
  if(NOT RAPPORT_PCH)
    return()
  endif()
  if(ARGV1 STREQUAL "REUSE_FROM")
    target_precompile_headers(${target} REUSE_FROM ${ARGV2})
  else()
    target_precompile_headers(${target} PRIVATE ${ARGN})
  endif()
endfunction()
