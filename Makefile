# Thin wrapper over CMake for the README's two commands.
#   make run   - install deps, build, start `tern serve` with a working default
#   make test  - install deps, build with ASan+UBSan (clang), run every test
.PHONY: all deps build run run-sink test test-build fuzz bench format format-check clean

BUILD      ?= build
TEST_BUILD ?= build-test
JOBS       ?= $(shell nproc)

all: build

deps:
	@scripts/install-deps --check 2>/dev/null || scripts/install-deps

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

run: build
	scripts/run-serve $(BUILD)/tern

# The SMTP test server with its HTTP API, as `make run` started before tern serve.
run-sink: build
	scripts/run-sink $(BUILD)/tern

test-build: deps
	cmake -S . -B $(TEST_BUILD) -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang \
	      -DTERN_SANITIZE=ON -DTERN_FUZZ=ON >/dev/null
	cmake --build $(TEST_BUILD) -j $(JOBS)

test: test-build
	cd $(TEST_BUILD) && ctest --output-on-failure -j $(JOBS)

# Longer fuzzing of every harness (SECONDS each), growing the corpus in place.
SECONDS_PER ?= 60
fuzz: test-build
	for f in $(TEST_BUILD)/fuzz_*; do n=$${f##*/fuzz_}; \
	  $$f -max_total_time=$(SECONDS_PER) fuzz/corpus/$$n || exit 1; done

bench: build
	bench/sink.sh $(BUILD)/tern

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	clang-format --dry-run -Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(TEST_BUILD)
