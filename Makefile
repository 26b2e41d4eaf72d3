# llmux — the two commands a newcomer runs: `make run` and `make test`.
# Everything else here is a convenience around CMake/ctest.

BUILD_DIR ?= build
BUILD_TYPE ?= Release
JOBS ?= $(shell nproc)
MODEL ?=
CMAKE_FLAGS ?=

# ccache: hash paths relative to the checkout so a fresh clone (CI) reuses earlier objects.
export CCACHE_BASEDIR := $(CURDIR)
export CCACHE_NOHASHDIR := true

.PHONY: all deps configure build run test test-asan sanitize fuzz bench bench-anchors clean

# Sanitizer and fuzzing trees (docs/reliability.md): ASan+UBSan, TSan, clang libFuzzer.
ASAN_DIR ?= build-asan
TSAN_DIR ?= build-tsan
FUZZ_DIR ?= build-fuzz
FUZZ_SECONDS ?= 60
# -O1 -g1: sanitizer trees are built cold in CI on 2 cores; -O1 with line tables only keeps
# their build about a third shorter than -O2 -g while reports still name file:line.
SAN_CMAKE = -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLLMUX_CUDA=OFF -DLLMUX_BENCHMARKS=OFF \
	'-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG' '-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG' \
	$(CMAKE_FLAGS)
export ASAN_OPTIONS ?= detect_leaks=1:abort_on_error=0:strict_string_checks=1
export UBSAN_OPTIONS ?= print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS ?= suppressions=$(CURDIR)/tests/lsan.supp
export TSAN_OPTIONS ?= halt_on_error=1:second_deadlock_stack=1

all: build

deps:
	@scripts/install_deps.sh

configure: deps
	@if [ ! -f $(BUILD_DIR)/build.ninja ]; then \
	  cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS); \
	fi

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

# Runs the main job on the default model (the `tiny` shape from `llmux make-model`, or $(MODEL)).
run: build
	@scripts/run.sh "$(BUILD_DIR)" "$(MODEL)"

test: build
	@scripts/test_data.sh
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 900
	@$(MAKE) --no-print-directory test-asan

# The unit tests and the fuzz corpora replayed once under ASan+UBSan, built with clang-14 so
# that `make test` also compiles everything under clang's thread-safety analysis
# (-Wthread-safety, cmake/Warnings.cmake). A tree configured with another compiler is remade.
ASAN_CC ?= clang-14
ASAN_CXX ?= clang++-14
test-asan: deps
	@if [ -f $(ASAN_DIR)/CMakeCache.txt ] && \
	    ! grep -q '^CMAKE_CXX_COMPILER:[A-Z]*=.*$(ASAN_CXX)$$' $(ASAN_DIR)/CMakeCache.txt; then \
	  echo "test-asan: $(ASAN_DIR) was configured with another compiler; reconfiguring with $(ASAN_CXX)"; \
	  rm -rf $(ASAN_DIR); \
	fi
	@if [ ! -f $(ASAN_DIR)/build.ninja ]; then \
	  CC=$(ASAN_CC) CXX=$(ASAN_CXX) cmake -S . -B $(ASAN_DIR) $(SAN_CMAKE) -DLLMUX_SANITIZE=address,undefined; \
	fi
	cmake --build $(ASAN_DIR) -j $(JOBS) --target sanitizer_checks
	cd $(ASAN_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 900 -L '^(unit_.*|fuzz)$$' -LE gpu

# The integration suite (daemon under ASan+UBSan) and the engine/tenancy concurrency tests and
# the CPU backend's thread pool and kernels under TSan (not the OpenBLAS comparison: OpenBLAS's
# own threads are not instrumented, so TSan reports its writes as races).
sanitize: test-asan
	cmake --build $(ASAN_DIR) -j $(JOBS) --target llmuxd llmuxd-test llmux
	cd $(ASAN_DIR) && ctest --output-on-failure --timeout 900 -L integration
	@if [ ! -f $(TSAN_DIR)/build.ninja ]; then \
	  cmake -S . -B $(TSAN_DIR) $(SAN_CMAKE) -DLLMUX_SANITIZE=thread; \
	fi
	cmake --build $(TSAN_DIR) -j $(JOBS) --target unit_engine unit_tenancy unit_sched unit_backend_cpu
	cd $(TSAN_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 900 \
	  -L '^unit_(engine|tenancy|sched|backend_cpu)$$' -E '^MatMulBlasTest\.'

# libFuzzer: every target for FUZZ_SECONDS seconds (clang-14; installed when missing).
fuzz:
	@scripts/fuzz.sh "$(FUZZ_DIR)" "$(FUZZ_SECONDS)" "$(JOBS)"

bench: build
	@scripts/bench.sh "$(BUILD_DIR)"

# llmux next to llama.cpp (built from the release node-llama-cpp@3.22.1 ships, cached in
# LLMUX_ANCHORS_CACHE, default ~/.cache/llmux-anchors): CPU backend vs llama-bench, llmuxd vs
# llama-server. benchmarks/anchors/README.md; ANCHORS_ARGS passes options to anchors.py.
bench-anchors: configure
	@benchmarks/anchors/run.sh "$(BUILD_DIR)" $(ANCHORS_ARGS)

clean:
	rm -rf $(BUILD_DIR)
