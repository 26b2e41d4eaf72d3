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

.PHONY: all deps configure build run test bench clean

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

bench: build
	@scripts/bench.sh "$(BUILD_DIR)"

clean:
	rm -rf $(BUILD_DIR)
