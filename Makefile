# The two commands the README promises, and the steps they are made of.
#   make test   installs dependencies, builds (Release), runs every test, then the sim tests again
#               under AddressSanitizer + UndefinedBehaviorSanitizer, and the symbol check.
#   make demo   installs and builds, then trains on phantom data, evaluates on held-out phantom
#               patients and writes the report and overlays (scripts/demo.sh).

BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
CMAKE_ARGS ?=

.PHONY: all setup build test unit-tests asan-tests symbols demo clean

all: build

setup:
	scripts/setup.sh

build:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS)
	cmake --build $(BUILD) -j $(JOBS)

# Passive OpenMP waiting: with several test processes on two cores, spinning threads starve the others.
export OMP_WAIT_POLICY = PASSIVE

unit-tests: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

asan-tests:
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUNET_SANITIZE=ON -DUNET_BENCHMARKS=OFF
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS) -L 'sim|cpu'

# Only meaningful where nvcc built the cuda copies of the kernels.
symbols: build
	@if grep -q 'UNET_WITH_CUDA=ON' $(BUILD)/unet-build.env; then scripts/check_symbols.sh $(BUILD); \
	else echo "symbols: no cuda build (no nvcc), nothing to compare"; fi

test: setup
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory unit-tests && t1=$$(date +%s) && \
	$(MAKE) --no-print-directory asan-tests && t2=$$(date +%s) && \
	$(MAKE) --no-print-directory symbols && t3=$$(date +%s) && \
	echo "make test: passed; build and tests $$((t1 - start)) s, sanitizer build and tests $$((t2 - t1)) s, symbols $$((t3 - t2)) s"

demo: setup build
	BUILD=$(BUILD) scripts/demo.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
