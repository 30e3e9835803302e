# Rapport — one command per job. See README.md.
#   make run    install what is missing, build, start rapportd on loopback with state in ./var/rapport
#   make test   install what is missing, build, run the whole test suite (normal and ASan+UBSan builds)
#   make build  Release binaries in build/release
#   make bench  Google Benchmark suite (figures go to bench/RESULTS.md by hand)

SHELL := /bin/bash
JOBS ?= $(shell nproc)
PACKAGES := cmake g++ make pkg-config libboost1.81-dev libsimdjson-dev liblmdb-dev lmdb-utils prometheus-cpp-dev \
            libgtest-dev libgmock-dev libbenchmark-dev libtomlplusplus-dev libcli11-dev libsystemd-dev \
            prometheus netcat-openbsd curl python3 systemd dpkg-dev procps
CMAKE_FLAGS ?=
RUN_FLAGS ?=

.PHONY: deps build build-test build-asan test test-fast test-asan run bench clean

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

build-test: deps
	cmake -S . -B build/test -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRAPPORT_WERROR=ON $(CMAKE_FLAGS)
	cmake --build build/test -j $(JOBS)

build-asan: deps
	cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DRAPPORT_SANITIZE=address -DRAPPORT_BENCH=OFF -DRAPPORT_WERROR=ON $(CMAKE_FLAGS)
	cmake --build build/asan -j $(JOBS)

test-fast: build-test
	cd build/test && ctest --output-on-failure -j $(JOBS) --timeout 600

test-asan: build-asan
	cd build/asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j $(JOBS) --timeout 900

# The README's test command and what CI runs: the normal build, then ASan+UBSan.
test: test-fast test-asan

run: build
	@mkdir -p var/rapport
	./build/release/daemon/rapportd --state-dir ./var/rapport $(RUN_FLAGS)

bench: deps
	cmake -S . -B build/bench -DCMAKE_BUILD_TYPE=Release -DRAPPORT_TESTS=OFF -DRAPPORT_BENCH=ON $(CMAKE_FLAGS)
	cmake --build build/bench -j $(JOBS) --target rapport_bench
	./build/bench/bench/rapport_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true

clean:
	rm -rf build
