# Thin wrapper over CMake for the README's two commands.
#   make run   - install deps, build, start `tern serve` with a working default
#   make test  - install deps, then three stages (below): every test on a clang
#                ASan+UBSan+libFuzzer build, the unit and integration tests on
#                the optimised build that ships, and a few integration tests
#                with that build's tern under valgrind
.PHONY: all deps build run run-sink test test-build test-asan ship-build test-ship \
        test-valgrind fuzz bench format format-check clean install deb

BUILD      ?= build
TEST_BUILD ?= build-test
SHIP_BUILD ?= build-opt
JOBS       ?= $(shell nproc)

# The build that ships (`make build`, `make run`) and the one `make test` checks
# in stages 2 and 3: GCC -O2 -g (RelWithDebInfo); CMakeLists.txt adds
# -Wall -Wextra -Werror, with which GCC's optimiser also reports uninitialised reads.
SHIP_FLAGS = -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=gcc

# The stages of `make test` run one after another, in the order written, even under -j.
.NOTPARALLEL:

all: build

deps:
	@scripts/install-deps --check 2>/dev/null || scripts/install-deps

build: deps
	cmake -S . -B $(BUILD) $(SHIP_FLAGS) >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

run: build
	scripts/run-serve $(BUILD)/tern

# The SMTP test server with its HTTP API, as `make run` started before tern serve.
run-sink: build
	scripts/run-sink $(BUILD)/tern

# ---- make test: three stages, in this order; the first failure stops it -----
test: test-asan test-ship test-valgrind
	@echo "== make test: all three stages passed ($$(date +%T))"

# Stage 1: clang, ASan+UBSan, libFuzzer harnesses: unit, integration, crash,
# fuzz (every harness over its corpus) and clang-format tests.
test-build: deps
	cmake -S . -B $(TEST_BUILD) -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang \
	      -DTERN_SANITIZE=ON -DTERN_FUZZ=ON >/dev/null
	cmake --build $(TEST_BUILD) -j $(JOBS)

test-asan: test-build
	@echo "== make test, stage 1: every test, clang ASan+UBSan build in $(TEST_BUILD) ($$(date +%T))"
	cd $(TEST_BUILD) && ctest --output-on-failure -j $(JOBS)

# Stage 2: test what ships: the flags of `make build` (in a folder of its own),
# with stage 3's valgrind tests configured too; the unit and integration tests.
ship-build: deps
	cmake -S . -B $(SHIP_BUILD) $(SHIP_FLAGS) -DTERN_VALGRIND=ON >/dev/null
	cmake --build $(SHIP_BUILD) -j $(JOBS)

test-ship: ship-build
	@echo "== make test, stage 2: unit and integration tests, GCC -O2 build in $(SHIP_BUILD) ($$(date +%T))"
	cd $(SHIP_BUILD) && ctest --output-on-failure --no-tests=error -j $(JOBS) -R '^(unit|integration)/'

# Stage 3: the sink, send and serve integration tests with every tern they start
# (stage 2's build) under valgrind memcheck (CMakeLists.txt: TERN_VALGRIND,
# TERN_VALGRIND_TESTS): an invalid access, a use of uninitialised memory or a
# definite leak fails them.
test-valgrind: ship-build
	@echo "== make test, stage 3: integration tests under valgrind, $(SHIP_BUILD)/tern ($$(date +%T))"
	cd $(SHIP_BUILD) && ctest --output-on-failure --no-tests=error -j $(JOBS) -L valgrind

# Longer fuzzing of every harness (SECONDS each), growing the corpus in place.
SECONDS_PER ?= 60
fuzz: test-build
	for f in $(TEST_BUILD)/fuzz_*; do n=$${f##*/fuzz_}; \
	  $$f -max_total_time=$(SECONDS_PER) fuzz/corpus/$$n || exit 1; done

# ---- make install: the shipped build's tern, man pages, unit, default config --
# PREFIX/sbin/tern, PREFIX/share/man/manN/, PREFIX/lib/systemd/system/tern.service,
# SYSCONFDIR/tern/tern.conf (only when absent: an existing one is kept); under
# DESTDIR when set (staging). Builds only the tern program; runs no test and
# installs no dependency (scripts/install-deps would install test peers such as
# Postfix).
PREFIX     ?= /usr/local
SYSCONFDIR ?= /etc
DESTDIR    ?=
install:
	cmake -S . -B $(BUILD) $(SHIP_FLAGS) -DCMAKE_INSTALL_PREFIX=$(PREFIX) \
	      -DCMAKE_INSTALL_SYSCONFDIR=$(SYSCONFDIR) >/dev/null
	cmake --build $(BUILD) -j $(JOBS) --target tern
	DESTDIR="$(DESTDIR)" cmake --install $(BUILD)

# The Debian package (debian/), built from a copy of the tree: DEB_DIR/tern_*.deb
DEB_DIR ?= build-deb
deb:
	scripts/build-deb $(DEB_DIR)

bench: build
	bench/sink.sh $(BUILD)/tern

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	clang-format --dry-run -Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(TEST_BUILD) $(SHIP_BUILD)
