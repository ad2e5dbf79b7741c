# Ember — build, test, benchmark and install.
#
#   make            lib/libember.a, lib/libember.so and the ember command (bin/ember)
#   make run        build everything and run the Bayesian-regression example (ARGS='...' passes options)
#   make check      build everything and run the whole test suite (SANITIZE=1: ASan + UBSan build)
#   make bench      run every benchmark (JSON lines on stdout)
#   make bench-memory  peak memory against the data's size, 10^5 to 10^7 rows (MEMORY_SIZES), library and example
#   make sbc        simulation-based calibration of NUTS on every family (R = 400; fails when one does)
#   make sbc-rugged simulation-based calibration of NUTS on the rugged model (R = 500)
#   make check-tsan the test programs that run threads, built with ThreadSanitizer (TSAN=1)
#   make install    PREFIX=/usr/local: headers, both libraries, pkg-config file ember.pc
#   make notebooks  regenerate notebooks-export/ from a real run
#   make run-mpi    the MPI example on generated data (N=rows, NP=ranks); needs OpenMPI
#   make bench-mpi  the MPI layer's scaling and memory per rank for 1, 2, 4 ranks
#   make fuzz       build every libFuzzer target in tests/fuzz/ and run each for FUZZ_SECONDS (60; needs clang)
#   make clean
#
# Targets that need the Debian dependencies run scripts/install-deps.sh first (it installs only
# what is missing, or prints the command to run when not root).

PREFIX    ?= /usr/local
VERSION   := $(shell sed -n 's/^\#define EMBER_VERSION "\(.*\)"/\1/p' include/ember/core.h)
SANITIZE  ?= 0
TSAN      ?= 0
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
else ifeq ($(TSAN),1)
  # ThreadSanitizer (make check-tsan): its own objects, since every object must be instrumented
  BUILD   := build/tsan
  OPT     := -O1 -g -fsanitize=thread -fno-omit-frame-pointer
  LDSAN   := -fsanitize=thread
else
  BUILD   := build/rel
  OPT     := -O2 -g
  LDSAN   :=
endif

WARN      := -Wall -Wextra -Wshadow -Wno-unused-parameter -Wno-psabi
ifeq ($(WERROR),1)
  WARN    += -Werror
endif

CPPFLAGS  := -Iinclude -Isrc -I$(BLAS_INC) -D_POSIX_C_SOURCE=200809L
CFLAGS    := -std=c11 -fPIC $(OPT) $(WARN)
LDLIBS    := -lgsl -lopenblas -llapacke -lm -lpthread
LDFLAGS   := $(LDSAN)

# One folder of src/ per layer (../DESIGN.md); src/internal holds private headers only.
# src/mpi is the optional MPI layer: a library of its own (libember_mpi), never part of libember.
LIB_SRC   := $(filter-out src/mpi/%,$(wildcard src/*/*.c))
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

# The MPI layer (include/ember/mpi.h): built when mpicc is found (MPI=0 turns it off, MPI=1
# insists). Its library, test, example and benchmark link OpenMPI; libember does not.
MPI       ?= $(shell command -v mpicc >/dev/null 2>&1 && echo 1 || echo 0)
MPI_SRC   := $(wildcard src/mpi/*.c)
MPI_OBJ   := $(patsubst src/%.c,$(BUILD)/obj/%.o,$(MPI_SRC))
MPI_A     := $(BUILD)/lib/libember_mpi.a
MPI_TEST  := $(BUILD)/tests/mpi/test_mpi
MPI_EX    := $(BUILD)/examples/mpi_regression
MPI_BENCH := $(BUILD)/bench/mpi/bench_mpi
ifeq ($(MPI),1)
  MPI_CFLAGS := $(shell mpicc --showme:compile)
  MPI_LIBS   := $(shell mpicc --showme:link)
  MPI_ALL    := $(MPI_A) $(MPI_TEST) $(MPI_EX) $(MPI_BENCH)
else
  MPI_ALL    :=
endif

.PHONY: all lib deps run check bench install clean notebooks tests examples sbc fuzz run-mpi bench-mpi bench-memory
.DEFAULT_GOAL := all

all: deps lib $(CLI_BIN) $(MPI_ALL)
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

$(MPI_OBJ): CPPFLAGS += $(MPI_CFLAGS)

$(MPI_A): $(MPI_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

MPI_MODEL := examples/mpi_regression/regression_model.c
$(MPI_TEST): tests/mpi/test_mpi.c $(MPI_MODEL) $(MPI_A) $(LIB_A) $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Iexamples/mpi_regression $(MPI_CFLAGS) $(CFLAGS) $< $(MPI_MODEL) -o $@ $(LDFLAGS) $(MPI_A) $(LIB_A) $(LDLIBS) $(MPI_LIBS)

$(MPI_EX): examples/mpi_regression/mpi_regression.c $(MPI_MODEL) $(MPI_A) $(LIB_A) $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Iexamples/mpi_regression $(MPI_CFLAGS) $(CFLAGS) $< $(MPI_MODEL) -o $@ $(LDFLAGS) $(MPI_A) $(LIB_A) $(LDLIBS) $(MPI_LIBS)

$(MPI_BENCH): bench/mpi/bench_mpi.c $(MPI_MODEL) $(MPI_A) $(LIB_A) $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Iexamples/mpi_regression $(MPI_CFLAGS) $(CFLAGS) $< $(MPI_MODEL) -o $@ $(LDFLAGS) $(MPI_A) $(LIB_A) $(LDLIBS) $(MPI_LIBS)

# The MPI example on generated data: N rows (1e5), NP ranks (2), its CSVs in build/mpi-run.
N  ?= 100000
NP ?= 2
run-mpi: deps all
	bash examples/mpi_regression/run.sh $(MPI_EX) $(N) $(NP) build/mpi-run

# Gradient throughput, NUTS ESS/s and memory per rank for 1, 2, 4 ranks (bench/mpi/README.md).
bench-mpi: deps all
	bash bench/mpi/run.sh $(MPI_EX) $(MPI_BENCH)

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
	  EMBER_BUILD=$(BUILD) SANITIZE=$(SANITIZE) MPI=$(MPI) CC=$(CC) bash $$t || { echo "FAILED: $$t"; fail=$$((fail+1)); }; done; \
	echo "$$n test programs, $$fail failed"; test $$fail -eq 0

bench: deps all $(BENCH_BIN)
	@for b in $(BENCH_BIN); do ./$$b || exit 1; done

# Peak resident memory of every path, library and example, under an 8 GB address-space limit.
# Long: at 10^7 rows the example's SVI (three fits, each with a 2000-particle -ELBO and up to
# 1000 draws) alone takes about half an hour of one core; MEMORY_SIZES=100000,1000000 is minutes.
MEMORY_SIZES ?= 100000,1000000,10000000
bench-memory: deps all $(BUILD)/bench/memory $(EX_BIN)
	./$(BUILD)/bench/memory --sizes $(MEMORY_SIZES) --limit-gb 8 --example $(EX_DIR)/rugged

# Simulation-based calibration (issue 16's acceptance): every new family through NUTS, R = 400;
# prints the table and fails when a family does. The rugged model's run, R = 500 (CSV files and
# figures in $(BUILD)/sbc/nuts), is sbc-rugged.
sbc: deps all $(BUILD)/bench/sbc_families
	./$(BUILD)/bench/sbc_families --sbc 400

.PHONY: sbc-rugged check-tsan
sbc-rugged: deps all $(BUILD)/bench/sbc_rugged
	./$(BUILD)/bench/sbc_rugged --sbc 500 --method nuts --out $(BUILD)/sbc/nuts

# ThreadSanitizer on the test programs that run threads: chains on threads (test_mcmc, and the
# fits of test_posterior, test_predictive and test_formula), SBC replications on threads
# (test_calibration), a reader against a writer thread (test_io). OpenBLAS runs on one thread:
# its own pool is not instrumented, so TSan could not see its synchronisation. A race stops
# the program (halt_on_error) and fails the target.
TSAN_TESTS := test_mcmc test_calibration test_io test_posterior test_predictive test_formula
check-tsan: deps
	@$(MAKE) --no-print-directory TSAN=1 $(addprefix build/tsan/tests/,$(TSAN_TESTS))
	@fail=0; for t in $(TSAN_TESTS); do echo "== build/tsan/tests/$$t"; \
	  OPENBLAS_NUM_THREADS=1 TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" EMBER_BUILD=build/tsan \
	  ./build/tsan/tests/$$t || { echo "FAILED: $$t"; fail=$$((fail+1)); }; done; \
	echo "$(words $(TSAN_TESTS)) test programs under ThreadSanitizer, $$fail failed"; test $$fail -eq 0

install: all
	install -d $(DESTDIR)$(PREFIX)/include/ember $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(CLI_BIN) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 include/ember.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 $(filter-out include/ember/mpi.h,$(wildcard include/ember/*.h)) $(DESTDIR)$(PREFIX)/include/ember/
	install -m 644 $(LIB_A) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(LIB_SO) $(DESTDIR)$(PREFIX)/lib/
	if [ "$(MPI)" = 1 ]; then install -m 644 include/ember/mpi.h $(DESTDIR)$(PREFIX)/include/ember/ && \
	  install -m 644 $(MPI_A) $(DESTDIR)$(PREFIX)/lib/; fi
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@BLAS_INC@|$(BLAS_INC)|g' -e 's|@VERSION@|$(VERSION)|g' scripts/ember.pc.in \
	  > $(DESTDIR)$(PREFIX)/lib/pkgconfig/ember.pc

fuzz: deps
	bash scripts/fuzz.sh $(FUZZ_SECONDS)

notebooks: all $(EX_BIN)
	bash scripts/export-notebooks.sh

clean:
	rm -rf build lib bin $(EX_BIN)
