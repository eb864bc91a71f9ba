# ragd - the two commands a new user needs are `make run` and `make test`.
BUILD      ?= build
BUILD_SAN  ?= build-sanitize
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
DATA       ?= data
LISTEN     ?= 127.0.0.1:8080

.PHONY: all deps test-deps build run test test-sanitize clean

all: build

deps:
	@sh scripts/install-deps.sh

test-deps:
	@sh scripts/install-deps.sh --test

$(BUILD)/Makefile: CMakeLists.txt
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: $(BUILD)/Makefile
	cmake --build $(BUILD) -j $(JOBS)

# Installs what is missing, builds, ingests the sample knowledge base and
# serves it on $(LISTEN) with the offline defaults.
run: deps build
	./$(BUILD)/ragd ingest --data $(DATA) examples/kb/en examples/kb/ko
	./$(BUILD)/ragd serve --data $(DATA) --listen $(LISTEN)

# Installs what is missing, builds and runs every test.
test: test-deps build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The same suite under AddressSanitizer and UndefinedBehaviorSanitizer.
test-sanitize: test-deps
	cmake -S . -B $(BUILD_SAN) -DCMAKE_BUILD_TYPE=Debug -DRAGD_SANITIZE=ON
	cmake --build $(BUILD_SAN) -j $(JOBS)
	cd $(BUILD_SAN) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j $(JOBS)

clean:
	rm -rf $(BUILD) $(BUILD_SAN)
