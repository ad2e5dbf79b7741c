# Ember — build, test, benchmark and install.
#
#   make            lib/libember.a, lib/libember.so and the ember command (bin/ember)
#   make run        build everything and run the Bayesian-regression example (ARGS='...' passes options)
#   make check      build everything and run the whole test suite (SANITIZE=1: ASan + UBSan build)
#   make bench      run every benchmark (JSON lines on stdout)
#   make bench-memory  peak memory against the data's size, 10^5 to 10^7 rows (MEMORY_SIZES), library and example
#   make sbc        simulation-based calibration of NUTS on the rugged model (R = 500)
#   make install    PREFIX=/usr/local: headers, both libraries, pkg-config file ember.pc
#   make notebooks  regenerate notebooks-export/ from a real run
#   make fuzz       build every libFuzzer target in tests/fuzz/ and run each for FUZZ_SECONDS (60; needs clang)
#   make clean
#
# Targets that need the Debian dependencies run scripts/install-deps.sh first (it installs only
# what is missing, or prints the command to run when not root).

PREFIX    ?= /usr/local
VERSION   := $(shell sed -n 's/^\#define EMBER_VERSION "\(.*\)"/\1/p' include/ember/core.h)
SANITIZE  ?= 0
WERROR    ?= 0
ARGS      ?=
FUZZ_SECONDS ?= 60
CC        ?= cc

MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
BLAS_INC  := /usr/include/$(MULTIARCH)/openblas-pthread

ifeq ($(SANITIZE),1)
  BUILD   := build/san
  OPT     := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDSAN   := -fsanitize=address,undefined
else
  BUILD   := build/rel
  OPT     := -O2 -g
  LDSAN   :=
endif

WARN      := -Wall -Wextra -Wshadow -Wno-unused-parameter
ifeq ($(WERROR),1)
  WARN    += -Werror
endif

CPPFLAGS  := -Iinclude -Isrc -I$(BLAS_INC) -D_POSIX_C_SOURCE=200809L
CFLAGS    := -std=c11 -fPIC $(OPT) $(WARN)
LDLIBS    := -lgsl -lopenblas -llapacke -lm -lpthread
LDFLAGS   := $(LDSAN)

# One folder of src/ per layer (../DESIGN.md); src/internal holds private headers only.
LIB_SRC   := $(wildcard src/*/*.c)
LIB_OBJ   := $(patsubst src/%.c,$(BUILD)/obj/%.o,$(LIB_SRC))
LIB_A     := $(BUILD)/lib/libember.a
LIB_SO    := $(BUILD)/lib/libember.so

TEST_SRC  := $(wildcard tests/test_*.c)
TEST_BIN  := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
TEST_UTIL := $(wildcard tests/util/*.c)
TEST_SH   := $(wildcard tests/test_*.sh)

BENCH_SRC := $(wildcard bench/*.c)
BENCH_BIN := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))

EX_DIR    := examples/bayesian_regression
EX_SRC    := $(wildcard $(EX_DIR)/*.c)
EX_BIN    := $(EX_DIR)/rugged
EX_BUILD  := $(BUILD)/examples/rugged
# The rugged model is shared with the tests and benchmarks.
EX_MODEL  := $(EX_DIR)/rugged_model.c

HEADERS   := $(wildcard include/*.h include/ember/*.h src/internal/*.h)

# The `ember` command, on the public API only (installed beside the library).
CLI_BIN   := $(BUILD)/bin/ember

.PHONY: all lib deps run check bench bench-memory install clean notebooks tests examples sbc fuzz
.DEFAULT_GOAL := all

all: deps lib $(CLI_BIN)
	@mkdir -p lib bin && cp $(LIB_A) $(LIB_SO) lib/ && cp $(CLI_BIN) bin/

lib: $(LIB_A) $(LIB_SO)

deps:
	@bash scripts/install-deps.sh

$(BUILD)/obj/%.o: src/%.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(LIB_A): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(LIB_SO): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) -shared $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(TEST_UTIL) $(EX_MODEL) $(LIB_A) $(wildcard tests/util/*.h) $(EX_DIR)/rugged_model.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Itests -I$(EX_DIR) $(CFLAGS) $< $(TEST_UTIL) $(EX_MODEL) -o $@ $(LDFLAGS) $(LIB_A) -lcmocka $(LDLIBS)

# The allocation-failure test routes the library's allocations through its own wrappers (the
# linker's --wrap), the hook that lets it fail the k-th one; no other build has it.
$(BUILD)/tests/test_alloc: LDFLAGS += $(foreach f,malloc calloc realloc aligned_alloc strdup free,-Wl,--wrap=$(f))

$(BUILD)/bench/%: bench/%.c $(EX_MODEL) $(LIB_A) $(EX_DIR)/rugged_model.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -I$(EX_DIR) $(CFLAGS) $< $(EX_MODEL) -o $@ $(LDFLAGS) $(LIB_A) $(LDLIBS)

$(CLI_BIN): cli/ember.c $(LIB_A) $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) cli/ember.c -o $@ $(LDFLAGS) $(LIB_A) $(LDLIBS)

$(EX_BUILD): $(EX_SRC) $(wildcard $(EX_DIR)/*.h) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(EX_SRC) -o $@ $(LDFLAGS) $(LIB_A) $(LDLIBS)

# The example is built per mode (release or sanitizers) and copied to its documented place on
# every request, so `make run` after `make check SANITIZE=1` runs the release build again.
.PHONY: $(EX_BIN)
$(EX_BIN): $(EX_BUILD)
	@cp $(EX_BUILD) $(EX_BIN)

tests: deps $(TEST_BIN)
examples: deps $(EX_BIN)

run: deps all $(EX_BIN)
	cd $(EX_DIR) && ./rugged $(ARGS)

# Every test binary and script runs even when one fails; the target fails if any did.
check: deps all $(TEST_BIN) $(EX_BIN)
	@fail=0; n=0; \
	for t in $(TEST_BIN); do n=$$((n+1)); echo "== $$t"; \
	  EMBER_BUILD=$(BUILD) ./$$t || { echo "FAILED: $$t"; fail=$$((fail+1)); }; done; \
	for t in $(TEST_SH); do n=$$((n+1)); echo "== $$t"; \
	  EMBER_BUILD=$(BUILD) SANITIZE=$(SANITIZE) CC=$(CC) bash $$t || { echo "FAILED: $$t"; fail=$$((fail+1)); }; done; \
	echo "$$n test programs, $$fail failed"; test $$fail -eq 0

bench: deps all $(BENCH_BIN)
	@for b in $(BENCH_BIN); do ./$$b || exit 1; done

# Peak resident memory of every path, library and example, under an 8 GB address-space limit.
# Long: at 10^7 rows the example's SVI (three fits, each with a 2000-particle -ELBO and up to
# 1000 draws) alone takes about half an hour of one core; MEMORY_SIZES=100000,1000000 is minutes.
MEMORY_SIZES ?= 100000,1000000,10000000
bench-memory: deps all $(BUILD)/bench/memory $(EX_BIN)
	./$(BUILD)/bench/memory --sizes $(MEMORY_SIZES) --limit-gb 8 --example $(EX_DIR)/rugged

# Simulation-based calibration of NUTS on the rugged model, R = 500 (CSV files and figures in $(BUILD)/sbc/nuts)
sbc: deps all $(BUILD)/bench/sbc_rugged
	./$(BUILD)/bench/sbc_rugged --sbc 500 --method nuts --out $(BUILD)/sbc/nuts

install: all
	install -d $(DESTDIR)$(PREFIX)/include/ember $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(CLI_BIN) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 include/ember.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 include/ember/*.h $(DESTDIR)$(PREFIX)/include/ember/
	install -m 644 $(LIB_A) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(LIB_SO) $(DESTDIR)$(PREFIX)/lib/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@BLAS_INC@|$(BLAS_INC)|g' -e 's|@VERSION@|$(VERSION)|g' scripts/ember.pc.in \
	  > $(DESTDIR)$(PREFIX)/lib/pkgconfig/ember.pc

fuzz: deps
	bash scripts/fuzz.sh $(FUZZ_SECONDS)

notebooks: all $(EX_BIN)
	bash scripts/export-notebooks.sh

clean:
	rm -rf build lib bin $(EX_BIN)
