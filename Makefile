# Rapport — one command per job. See README.md.
#   make run    install what is missing, build, start rapportd on loopback with state in ./var/rapport
#   make test   install what is missing, build, run the whole test suite (normal, ASan+UBSan and TSan
#               builds, then each libFuzzer target for FUZZ_SECONDS)
#   make build  Release binaries in build/release
#   make bench  Google Benchmark suite (figures go to bench/RESULTS.md by hand)

SHELL := /bin/bash
JOBS ?= $(shell nproc)
PACKAGES := cmake g++ make pkg-config libboost1.81-dev libsimdjson-dev liblmdb-dev lmdb-utils prometheus-cpp-dev \
            libgtest-dev libgmock-dev libbenchmark-dev libtomlplusplus-dev libcli11-dev libsystemd-dev \
            prometheus netcat-openbsd curl python3 systemd dpkg-dev procps libssl-dev openssl \
            clang libclang-rt-14-dev llvm-14 lintian gnuplot-nox librdkafka-dev kcat
CMAKE_FLAGS ?=
RUN_FLAGS ?=
# 30 s per fuzzer in make test (was 60): each target first replays its committed corpus, then mutates
# for the rest of the time; a longer run by hand: make fuzz FUZZ_SECONDS=600.
FUZZ_SECONDS ?= 30
FUZZ_TARGETS := decoder http route

.PHONY: deps build build-test build-asan build-tsan build-fuzz test test-fast test-asan test-tsan fuzz run bench clean

deps:
	@missing=$$(for p in $(PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "install ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $$missing; \
	fi

build: deps
	cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DRAPPORT_TESTS=OFF -DRAPPORT_BENCH=OFF $(CMAKE_FLAGS)
	cmake --build build/release -j $(JOBS)

# Build time (make test compiles four trees cold): the test and sanitizer builds carry line tables only
# (-g1: file:line in backtraces and sanitizer reports, no variables; a quarter less CPU than -g at -O1/-O2,
# a few % at -O0);
# pass e.g. CMAKE_FLAGS=-DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g -DNDEBUG" for a debugger. build/test
# leaves out the benchmark suite (make bench builds it).
build-test: deps
	cmake -S . -B build/test -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" \
	  -DRAPPORT_BENCH=OFF -DRAPPORT_WERROR=ON $(CMAKE_FLAGS)
	cmake --build build/test -j $(JOBS)

build-asan: deps
	cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG=-g1 -DRAPPORT_SANITIZE=address -DRAPPORT_BENCH=OFF -DRAPPORT_WERROR=ON $(CMAKE_FLAGS)
	cmake --build build/asan -j $(JOBS)

test-fast: build-test
	cd build/test && ctest --output-on-failure -j $(JOBS) --timeout 600

# The ops label (promtool, Prometheus, the .deb) checks packaging, not memory: normal build only.
test-asan: build-asan
	cd build/asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j $(JOBS) --timeout 900 -LE ops

# TSan at -O1: compiles ~20% faster than -O2 and runs the suite about as fast; races are found at any level.
build-tsan: deps
	cmake -S . -B build/tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" \
	  -DRAPPORT_SANITIZE=thread -DRAPPORT_BENCH=OFF -DRAPPORT_WERROR=ON $(CMAKE_FLAGS)
	cmake --build build/tsan -j $(JOBS)

# The ops label (promtool, Prometheus, the .deb) checks packaging, not threads: normal build only. The kafka
# label too: Debian's librdkafka is not instrumented and crashes at start under TSan's runtime.
test-tsan: build-tsan
	cd build/tsan && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" ctest --output-on-failure -j $(JOBS) --timeout 900 -LE 'ops|kafka'

# libFuzzer targets (tests/fuzz), clang with ASan+UBSan. They run one after the other (side by side
# on 2 cores, the ASan'd HTTP server once missed the target's close deadline), FUZZ_SECONDS each, on copies of their seed corpora in build/fuzz/work (the committed corpus stays as is); output goes
# to build/fuzz/<target>.log. A crash, leak, timeout or OOM fails the target and leaves the reproducer
# in build/fuzz/artifacts/<target>/; to keep it as a regression test, copy it into
# tests/fuzz/corpus/<target>/ (the fuzz.replay.* tests replay every file there).
build-fuzz: deps
	cmake -S . -B build/fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DRAPPORT_FUZZ=ON \
	  -DRAPPORT_TESTS=OFF -DRAPPORT_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" $(CMAKE_FLAGS)
	cmake --build build/fuzz -j $(JOBS) --target $(FUZZ_TARGETS:%=%_fuzz)

fuzz: build-fuzz
	@fail=0; for t in $(FUZZ_TARGETS); do \
	  echo "fuzz: $$t for $(FUZZ_SECONDS) s (log: build/fuzz/$$t.log)"; \
	  rm -rf build/fuzz/work/$$t build/fuzz/artifacts/$$t; \
	  mkdir -p build/fuzz/work/$$t build/fuzz/artifacts/$$t; \
	  cp tests/fuzz/corpus/$$t/* build/fuzz/work/$$t/; \
	  if ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	     ASAN_SYMBOLIZER_PATH=/usr/lib/llvm-14/bin/llvm-symbolizer \
	     ./build/fuzz/tests/fuzz/$${t}_fuzz -max_total_time=$(FUZZ_SECONDS) -timeout=30 -rss_limit_mb=2048 \
	       -print_final_stats=1 -artifact_prefix=build/fuzz/artifacts/$$t/ build/fuzz/work/$$t \
	       > build/fuzz/$$t.log 2>&1; then \
	    grep -E '^(Done|stat::(average_exec_per_sec|new_units_added|peak_rss_mb))' build/fuzz/$$t.log | sed "s/^/fuzz: $$t: /"; \
	  else \
	    fail=1; tail -n 100 build/fuzz/$$t.log; \
	    echo "fuzz: $$t FAILED; reproducer in build/fuzz/artifacts/$$t/, log in build/fuzz/$$t.log"; \
	  fi; \
	done; exit $$fail

# The README's test command and what CI runs: the normal build, ASan+UBSan, TSan, then the fuzzers.
test: test-fast test-asan test-tsan fuzz

run: build
	@mkdir -p var/rapport
	./build/release/daemon/rapportd --state-dir ./var/rapport $(RUN_FLAGS)

bench: deps
	cmake -S . -B build/bench -DCMAKE_BUILD_TYPE=Release -DRAPPORT_TESTS=OFF -DRAPPORT_BENCH=ON $(CMAKE_FLAGS)
	cmake --build build/bench -j $(JOBS) --target rapport_bench
	./build/bench/bench/rapport_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true

clean:
	rm -rf build
