/* test_alloc.c — allocation failure, in the manner of SQLite's malloc tests: for k = 1, 2, ...
 * the k-th allocation of a scenario fails, and the scenario must end with EM_ERR_NOMEM (or, where
 * the library degrades gracefully, with its ordinary result), a message, and not one block
 * leaked — until k passes the number of allocations the scenario makes.
 *
 * The hook exists only in this test's build: the Makefile links it with the linker's --wrap for
 * malloc, calloc, realloc, aligned_alloc, strdup and free, so every call from the library's
 * static archive lands in the wrappers below, which count the live blocks (a leak check that
 * works without the sanitizers too) and fail the k-th request. */
#include "util/testutil.h"
#include "rugged_model.h"
#include "internal/sort.h"

#include <malloc.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t a, size_t b);
void *__real_realloc(void *p, size_t n);
void *__real_aligned_alloc(size_t al, size_t n);
char *__real_strdup(const char *s);
void __real_free(void *p);

static long fail_at; /* 0: never */
static long calls, live;
/* bytes of live blocks and their high-water mark (the heap's footprint, for the memory tests) */
static size_t live_bytes, peak_bytes;

static void add_bytes(size_t n) {
    size_t now = __atomic_add_fetch(&live_bytes, n, __ATOMIC_RELAXED);
    if (now > peak_bytes) peak_bytes = now;
}
static int fail_now(void) { return __atomic_add_fetch(&calls, 1, __ATOMIC_RELAXED) == fail_at; }
static void *counted(void *p) {
    if (p) {
        __atomic_add_fetch(&live, 1, __ATOMIC_RELAXED);
        add_bytes(malloc_usable_size(p));
    }
    return p;
}
void *__wrap_malloc(size_t n) { return fail_now() ? NULL : counted(__real_malloc(n)); }
void *__wrap_calloc(size_t a, size_t b) { return fail_now() ? NULL : counted(__real_calloc(a, b)); }
void *__wrap_aligned_alloc(size_t al, size_t n) { return fail_now() ? NULL : counted(__real_aligned_alloc(al, n)); }
char *__wrap_strdup(const char *s) { return fail_now() ? NULL : counted(__real_strdup(s)); }
void *__wrap_realloc(void *p, size_t n) {
    if (fail_now()) return NULL;
    size_t old = p ? malloc_usable_size(p) : 0;
    void *q = __real_realloc(p, n);
    if (!p) return counted(q);
    if (q) {
        __atomic_sub_fetch(&live_bytes, old, __ATOMIC_RELAXED);
        add_bytes(malloc_usable_size(q));
    }
    return q;
}
void __wrap_free(void *p) {
    if (p) {
        __atomic_sub_fetch(&live, 1, __ATOMIC_RELAXED);
        __atomic_sub_fetch(&live_bytes, malloc_usable_size(p), __ATOMIC_RELAXED);
    }
    __real_free(p);
}

#define RUGGED_CSV "examples/bayesian_regression/data/rugged_data.csv"

/* A scenario returns its status and fills err; it must free everything it made. */
typedef em_status (*scenario)(em_error *err);

static em_status arena_scenario(em_error *err) {
    em_arena *a = em_arena_create(256);
    if (!a) return em_error_set(err, EM_ERR_NOMEM, "arena: create");
    em_status s = EM_OK;
    for (size_t i = 1; i <= 64 && s == EM_OK; i++)
        if (!em_arena_alloc(a, i * 100)) s = em_error_set(err, EM_ERR_NOMEM, "arena: alloc %zu", i);
    em_arena_reset(a);
    if (s == EM_OK && !em_arena_calloc(a, 100000)) s = em_error_set(err, EM_ERR_NOMEM, "arena: calloc");
    em_arena_destroy(a);
    return s;
}

static em_status model_scenario(em_error *err) {
    rugged_data d;
    em_status s = rugged_data_load(RUGGED_CSV, &d, err);
    if (s != EM_OK) return s;
    em_model *m = em_model_create(7, err);
    if (!m) {
        rugged_data_free(&d);
        return err->status;
    }
    em_logdensity *ld = em_logdensity_from_model(rugged_model, &d, NULL, err);
    if (ld) {
        double th[5] = {9, -1.8, -0.2, 0.35, 0}, lp, g[5];
        s = em_logdensity_eval(ld, th, &lp, g, err);
        if (s == EM_OK) s = em_logdensity_eval(ld, th, &lp, g, err); /* the replayed tape */
    } else {
        s = err->status;
    }
    em_logdensity_destroy(ld);
    em_model_destroy(m);
    rugged_data_free(&d);
    return s;
}

static em_status sampler_scenario(em_error *err) {
    rugged_data d;
    em_status s = rugged_data_load(RUGGED_CSV, &d, err);
    if (s != EM_OK) return s;
    em_logdensity *ld = em_logdensity_from_model(rugged_model, &d, NULL, err);
    if (!ld) {
        rugged_data_free(&d);
        return err->status;
    }
    em_mcmc_config c = em_mcmc_config_default();
    c.num_chains = 2;
    c.num_threads = 1; /* the k-th allocation is then the same one every time */
    c.num_warmup = 30;
    c.num_samples = 20;
    em_mcmc_result *r = NULL;
    s = em_mcmc_run(ld, &c, &r, err);
    if (s != EM_OK && r) s = em_error_set(err, EM_ERR_ARG, "a failed run returned a result");
    em_mcmc_result_free(r);
    em_logdensity_destroy(ld);
    rugged_data_free(&d);
    return s;
}

static em_status csv_scenario(em_error *err) {
    const char *cols[] = {"cont_africa", "rugged", "rgdppc_2000"};
    const char *text[] = {"country"};
    em_csv_options opt = {.missing = EM_CSV_MISSING_DROP_ROW, .text_columns = text, .ntext_columns = 1};
    em_csv_table *t = NULL;
    em_status s = em_csv_read(RUGGED_CSV, cols, 3, &opt, &t, err);
    if (s != EM_OK && t) s = em_error_set(err, EM_ERR_ARG, "a failed read returned a table");
    em_csv_table_free(t);
    return s;
}

/* Fail each allocation in turn; a run in which no allocation failed must succeed and ends it. */
static void fail_each_allocation(scenario run, const char *label) {
    long k = 1, graceful = 0;
    for (;; k++) {
        em_error err = {0};
        long live0 = live;
        calls = 0;
        fail_at = k;
        em_status s = run(&err);
        fail_at = 0;
        long made = calls;
        if (live != live0) fail_msg("%s: allocation %ld failed: %ld block(s) leaked", label, k, live - live0);
        if (made < k) {
            if (s != EM_OK) fail_msg("%s: no allocation failed, yet %s: %s", label, em_status_str(s), err.msg);
            break;
        }
        if (s == EM_OK) {
            graceful++;
            continue;
        }
        if (s != EM_ERR_NOMEM) fail_msg("%s: allocation %ld failed: %s (%s), not out of memory", label, k, em_status_str(s), err.msg);
        if (!err.msg[0]) fail_msg("%s: allocation %ld failed without a message", label, k);
    }
    print_message("%s: %ld allocations, each failed once (%ld handled without an error)\n", label, k - 1, graceful);
}

/* ---- memory against the number of particles ------------------------------------------------ */

#define NROWS 20000

/* The heap's peak during f (above what was live before it), in bytes. */
static size_t peak_during(em_status (*f)(const rugged_data *, int, em_error *), const rugged_data *d, int k) {
    em_error e = {0};
    size_t before = live_bytes;
    peak_bytes = before;
    em_status s = f(d, k, &e);
    if (s != EM_OK) fail_msg("%d particles: %s", k, e.msg);
    assert_int_equal(live_bytes, before); /* and everything freed */
    return peak_bytes - before;
}

static em_status elbo_run(const rugged_data *d, int k, em_error *err) {
    em_autoguide *g = em_autoguide_create(EM_AUTO_DIAGONAL_NORMAL, rugged_model, d, &(em_autoguide_options){.seed = 2}, err);
    em_param_store *ps = em_param_store_create();
    em_rng *rng = em_rng_create(2, 0);
    double elbo = NAN;
    em_status s = g && ps && rng ? em_elbo_estimate(EM_ELBO_TRACE, rugged_model, d, em_autoguide_fn, g, ps, k, rng, &elbo, err)
                                 : em_error_set(err, EM_ERR_NOMEM, "setup");
    if (s == EM_OK && !isfinite(elbo)) s = em_error_set(err, EM_ERR_NONFINITE, "elbo %g", elbo);
    em_rng_destroy(rng);
    em_param_store_destroy(ps);
    em_autoguide_destroy(g);
    return s;
}

static em_status svi_run(const rugged_data *d, int k, em_error *err) {
    em_autoguide *g = em_autoguide_create(EM_AUTO_DIAGONAL_NORMAL, rugged_model, d, &(em_autoguide_options){.seed = 2}, err);
    em_optim_config oc = em_optim_defaults(EM_OPTIM_ADAM, 0.01);
    em_svi *svi = g ? em_svi_create(rugged_model, d, em_autoguide_fn, g, &oc, &(em_svi_options){.seed = 2, .num_particles = k},
                                    err)
                    : NULL;
    em_status s = svi ? em_svi_run(svi, 2, NULL, err) : err->status;
    em_svi_destroy(svi);
    em_autoguide_destroy(g);
    return s;
}

/* The ELBO estimate and the SVI steps need the memory of one particle, whatever the number of
 * particles: from 2 to 32 particles the heap's peak grows by less than half a data vector
 * (NROWS doubles), where holding every particle would add at least one per particle. */
static void test_memory_independent_of_particles(void **state) {
    (void)state;
    static double africa[NROWS], rugged[NROWS];
    for (size_t i = 0; i < NROWS; i++) {
        africa[i] = (double)(i % 3 == 0);
        rugged[i] = 0.001 * (double)(i % 4000);
    }
    rugged_data d;
    em_error e = {0};
    assert_int_equal(rugged_data_predictors(&d, africa, rugged, NROWS, &e), EM_OK);
    em_status (*runs[2])(const rugged_data *, int, em_error *) = {elbo_run, svi_run};
    for (int r = 0; r < 2; r++) {
        size_t p2 = peak_during(runs[r], &d, 2), p32 = peak_during(runs[r], &d, 32);
        assert_true(p2 > NROWS * sizeof(double)); /* a particle's tape holds data-length vectors */
        if (p32 >= p2 + NROWS * sizeof(double) / 2)
            fail_msg("%s: heap peak %zu bytes with 2 particles, %zu with 32", r ? "svi" : "elbo", p2, p32);
    }
    rugged_data_free(&d);
}

/* Sorting degrades instead of failing: without its scratch, em_sort_doubles sorts in place by
 * heapsort, to the same order; em_sort_order reports that it could not. */
static void test_sort_without_memory(void **state) {
    (void)state;
    enum { N = 1000 };
    static double x[N], y[N];
    size_t ord[N];
    tu_fill_uniform(x, N, -5, 5, 7);
    for (size_t i = 0; i < N; i += 7) x[i] = x[i / 2]; /* ties */
    memcpy(y, x, sizeof x);
    qsort(y, N, sizeof *y, tu_cmp_double);
    long live0 = live;
    calls = 0;
    fail_at = 1;
    em_sort_doubles(x, N);
    calls = 0;
    fail_at = 1;
    int rc = em_sort_order(x, N, ord);
    fail_at = 0;
    assert_int_equal(rc, -1);
    assert_int_equal(live, live0);
    for (size_t i = 0; i < N; i++) assert_true(x[i] == y[i]);
}

static void test_arena(void **state) { (void)state; fail_each_allocation(arena_scenario, "arena"); }
static void test_model(void **state) { (void)state; fail_each_allocation(model_scenario, "model"); }
static void test_sampler(void **state) { (void)state; fail_each_allocation(sampler_scenario, "sampler"); }
static void test_csv(void **state) { (void)state; fail_each_allocation(csv_scenario, "csv reader"); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arena),
        cmocka_unit_test(test_sort_without_memory),
        cmocka_unit_test(test_csv),
        cmocka_unit_test(test_model),
        cmocka_unit_test(test_sampler),
        cmocka_unit_test(test_memory_independent_of_particles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
