/* test_calibration.c — simulation-based calibration: the check passes for exact samplers
 * (the closed-form posterior as a custom engine, NUTS, Laplace and mean-field SVI on a model
 * where they are exact) and fails for a wrong one (the right mean, half the sd); results do
 * not depend on the thread count; bad configurations are errors.
 *
 * The model: mu ~ N(0, 1), y_i ~ N(mu, 1) (i < 10); b ~ N(0, 1), w_i ~ N(b, 2) (i < 5). Each
 * latent's posterior is Normal in closed form (conjugate). */
#include "util/testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gsl/gsl_randist.h>

#if defined(__SANITIZE_ADDRESS__)
#define SAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SAN 1
#endif
#endif
#ifndef SAN
#define SAN 0
#endif

typedef struct cn_data {
    double y[10], w[5];
} cn_data;

static const cn_data CN = {{0}, {0}}; /* the data only fix the lengths: SBC simulates them */

static void cn_model(em_model *m, const void *arg) {
    const cn_data *d = arg;
    em_var mu = em_sample(m, "mu", em_normal(m, 0.0, 1.0));
    em_var b = em_sample(m, "b", em_normal(m, 0.0, 1.0));
    EM_PLATE(m, p, "y_plate", 10, 0) { em_observe(m, "y", em_normal(m, mu, 1.0), d->y, 10); }
    EM_PLATE(m, p, "w_plate", 5, 0) { em_observe(m, "w", em_normal(m, b, 2.0), d->w, 5); }
}

static const double *obs_of(const em_sbc_dataset *ds, const char *name, size_t *len) {
    for (size_t i = 0; i < ds->nobs; i++)
        if (strcmp(ds->obs_names[i], name) == 0) {
            *len = ds->obs_lens[i];
            return ds->obs_values[i];
        }
    return NULL;
}

/* Normal(0, 1) prior, n observations with sd s: posterior precision 1 + n/s², mean Σy/s² / that. */
static void cn_posterior(const double *y, size_t n, double s, double *mean, double *sd) {
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) sum += y[i];
    double prec = 1.0 + (double)n / (s * s);
    *mean = sum / (s * s) / prec;
    *sd = 1.0 / sqrt(prec);
}

/* ctx points to the factor applied to the posterior sd: 1 exact, 0.5 over-confident. */
static em_status exact_engine(void *ctx, const em_sbc_dataset *ds, em_rng *rng, size_t ndraws, double *draws,
                              em_error *err) {
    double f = *(const double *)ctx;
    size_t ny = 0, nw = 0;
    const double *y = obs_of(ds, "y", &ny), *w = obs_of(ds, "w", &nw);
    if (!y || !w || ds->num_params != 2) return em_error_set(err, EM_ERR_MODEL, "exact engine: unexpected data set");
    double m[2], s[2];
    cn_posterior(y, ny, 1.0, &m[0], &s[0]);
    cn_posterior(w, nw, 2.0, &m[1], &s[1]);
    for (size_t d = 0; d < ndraws; d++)
        for (size_t j = 0; j < 2; j++) draws[d * 2 + j] = m[j] + f * s[j] * gsl_ran_gaussian(rng, 1.0);
    return EM_OK;
}

static em_sbc_config base_config(size_t R) {
    em_sbc_config c = em_sbc_config_default();
    c.num_replications = R;
    c.bins = 10;
    c.seed = 42;
    c.num_threads = 2;
    return c;
}

static em_sbc_result *run_ok(const em_sbc_config *c) {
    em_sbc_result *r = NULL;
    em_error e = {0};
    em_status s = em_sbc_run(cn_model, &CN, c, &r, &e);
    if (s != EM_OK) fail_msg("em_sbc_run: %s", e.msg);
    assert_non_null(r);
    return r;
}

/* Every parameter passes: uniformity not rejected, ECDF inside its band, 90% coverage within
 * three binomial errors of 0.9. */
static void assert_calibrated(const em_sbc_result *r) {
    assert_int_equal(em_sbc_num_params(r), 2);
    assert_string_equal(em_sbc_param_name(r, 0), "mu");
    assert_string_equal(em_sbc_param_name(r, 1), "b");
    for (size_t j = 0; j < 2; j++) {
        em_sbc_param_stats st;
        em_error e = {0};
        assert_int_equal(em_sbc_param(r, j, &st, &e), EM_OK);
        if (st.flagged || st.chi2_p < 0.001 || fabs(st.coverage[2] - 0.9) > 3 * st.coverage_se[2]) {
            em_sbc_print(stderr, r, NULL);
            fail_msg("parameter %s: chi2 p %g, ECDF outside %d, cov90 %g", st.name, st.chi2_p, st.ecdf_outside,
                     st.coverage[2]);
        }
        assert_int_equal(st.chi2_df, em_sbc_config_of(r)->bins - 1);
        /* the data inform both parameters: posterior sd below the prior's */
        assert_true(st.mean_contraction > 0.3);
    }
    assert_int_equal(em_sbc_num_flagged(r), 0);
}

static void test_exact_engine_passes(void **state) {
    (void)state;
    double f = 1.0;
    em_sbc_config c = base_config(200);
    c.engine = EM_SBC_ENGINE_CUSTOM;
    c.custom = exact_engine;
    c.custom_ctx = &f;
    em_sbc_result *r = run_ok(&c);
    assert_calibrated(r);
    /* ranks in range, histogram counts add up, expected counts are R/bins */
    size_t nb = 0, L = 0;
    const double *E = em_sbc_expected(r, &nb);
    assert_int_equal(nb, 10);
    for (size_t b = 0; b < nb; b++) tu_assert_close(E[b], 20.0, 1e-12, 0.0);
    for (size_t j = 0; j < 2; j++) {
        const size_t *h = em_sbc_histogram(r, j, &nb);
        size_t tot = 0;
        for (size_t b = 0; b < nb; b++) tot += h[b];
        assert_int_equal(tot, 200);
    }
    for (size_t i = 0; i < 200; i++) {
        long rk = em_sbc_rank(r, i, 0, &L);
        assert_int_equal(L, 99);
        assert_true(rk >= 0 && rk <= 99);
        assert_true(isfinite(em_sbc_truth(r, i, 1)));
    }
    assert_int_equal(em_sbc_rank(r, 200, 0, NULL), -1);
    assert_null(em_sbc_param_name(r, 2));
    em_sbc_free(r);
}

/* Half the posterior sd: the truth lands in the tails far too often, so ranks pile up at 0
 * and L (a U-shaped histogram), and the 90% interval covers about P(|Z| < 0.82) = 0.59. */
static void test_overconfident_engine_is_flagged(void **state) {
    (void)state;
    double f = 0.5;
    em_sbc_config c = base_config(200);
    c.engine = EM_SBC_ENGINE_CUSTOM;
    c.custom = exact_engine;
    c.custom_ctx = &f;
    em_sbc_result *r = run_ok(&c);
    assert_int_equal(em_sbc_num_flagged(r), 2);
    for (size_t j = 0; j < 2; j++) {
        em_sbc_param_stats st;
        assert_int_equal(em_sbc_param(r, j, &st, NULL), EM_OK);
        assert_true(st.flagged);
        assert_true(st.chi2_p < 1e-6);
        assert_true(st.ecdf_outside);
        assert_true(st.coverage[2] < 0.75);
        assert_true(st.coverage[2] > 0.45);
        /* U shape: the outer bins hold far more than their share (20 each) */
        size_t nb;
        const size_t *h = em_sbc_histogram(r, j, &nb);
        assert_true(h[0] > 35 && h[nb - 1] > 35);
    }
    em_sbc_free(r);
}

static em_sbc_config nuts_config(size_t R) {
    em_sbc_config c = base_config(R);
    c.mcmc.num_warmup = 300;
    c.mcmc.num_samples = 300;
    return c;
}

static void test_nuts_passes(void **state) {
    (void)state;
    em_sbc_config c = nuts_config(SAN ? 16 : 60);
    c.bins = SAN ? 4 : 10;
    em_sbc_result *r = run_ok(&c);
    assert_int_equal(em_sbc_num_failed(r), 0);
    assert_int_equal(em_sbc_num_used(r), c.num_replications);
    assert_calibrated(r);
    em_sbc_free(r);
}

/* Too few draws for L = 99 independent ones: one longer rerun supplies them; when even that is
 * capped (20 × num_samples), fewer draws are ranked and L says how many. */
static void test_nuts_thinning(void **state) {
    (void)state;
    em_sbc_config c = nuts_config(4);
    c.mcmc.num_warmup = 100;
    c.mcmc.num_samples = 60;
    c.bins = 4;
    em_sbc_result *r = run_ok(&c);
    for (size_t i = 0; i < 4; i++) {
        size_t L = 0;
        long rk = em_sbc_rank(r, i, 1, &L);
        assert_int_equal(L, 99);
        assert_true(rk >= 0 && rk <= 99);
    }
    em_sbc_free(r);
    c.mcmc.num_samples = 3;
    r = run_ok(&c);
    for (size_t i = 0; i < 4; i++) {
        size_t L = 0;
        long rk = em_sbc_rank(r, i, 0, &L);
        assert_true(L >= 1 && L <= 60);
        assert_true(rk >= 0 && (size_t)rk <= L);
    }
    /* the expected bin counts still add up to the replications */
    size_t nb;
    const double *E = em_sbc_expected(r, &nb);
    double tot = 0.0;
    for (size_t b = 0; b < nb; b++) tot += E[b];
    tu_assert_close(tot, 4.0, 1e-12, 0.0);
    em_sbc_free(r);
}

static void test_laplace_and_meanfield_pass(void **state) {
    (void)state;
    /* both are exact for this posterior (independent Gaussians) */
    em_sbc_config c = base_config(SAN ? 16 : 60);
    c.bins = SAN ? 4 : 10;
    c.engine = EM_SBC_ENGINE_SVI;
    c.svi.guide = EM_AUTO_LAPLACE;
    em_sbc_result *r = run_ok(&c);
    assert_calibrated(r);
    em_sbc_free(r);
    c.svi.guide = EM_AUTO_DIAGONAL_NORMAL;
    c.svi.steps = SAN ? 300 : 1500;
    c.num_replications = SAN ? 8 : 40;
    c.bins = 4;
    r = run_ok(&c);
    assert_calibrated(r);
    em_sbc_free(r);
}

static void assert_same_ranks(const em_sbc_result *a, const em_sbc_result *b) {
    assert_int_equal(em_sbc_num_replications(a), em_sbc_num_replications(b));
    for (size_t i = 0; i < em_sbc_num_replications(a); i++)
        for (size_t j = 0; j < em_sbc_num_params(a); j++) {
            size_t La = 0, Lb = 0;
            assert_int_equal(em_sbc_rank(a, i, j, &La), em_sbc_rank(b, i, j, &Lb));
            assert_int_equal(La, Lb);
            assert_true(em_sbc_truth(a, i, j) == em_sbc_truth(b, i, j));
        }
    for (size_t j = 0; j < em_sbc_num_params(a); j++) {
        em_sbc_param_stats sa, sb;
        em_sbc_param(a, j, &sa, NULL);
        em_sbc_param(b, j, &sb, NULL);
        assert_true(sa.chi2_p == sb.chi2_p && sa.coverage[2] == sb.coverage[2]);
    }
}

static void test_thread_count_does_not_matter(void **state) {
    (void)state;
    em_sbc_config c = nuts_config(SAN ? 4 : 8);
    c.mcmc.num_warmup = 150;
    c.mcmc.num_samples = 150;
    c.bins = 4;
    c.num_threads = 1;
    em_sbc_result *a = run_ok(&c);
    c.num_threads = 2;
    em_sbc_result *b = run_ok(&c);
    assert_same_ranks(a, b);
    em_sbc_free(a);
    em_sbc_free(b);
    /* and a custom engine on 1 and 3 threads; another seed changes the ranks */
    double f = 1.0;
    c = base_config(30);
    c.engine = EM_SBC_ENGINE_CUSTOM;
    c.custom = exact_engine;
    c.custom_ctx = &f;
    c.num_threads = 1;
    a = run_ok(&c);
    c.num_threads = 3;
    b = run_ok(&c);
    assert_same_ranks(a, b);
    em_sbc_free(b);
    c.seed = 43;
    b = run_ok(&c);
    int differ = 0;
    for (size_t i = 0; i < 30; i++) differ |= em_sbc_rank(a, i, 0, NULL) != em_sbc_rank(b, i, 0, NULL);
    assert_true(differ);
    em_sbc_free(a);
    em_sbc_free(b);
}

/* ---- errors ----------------------------------------------------------------------------------- */

static void no_latent_model(em_model *m, const void *arg) {
    const cn_data *d = arg;
    em_observe(m, "y", em_normal(m, 0.0, 1.0), d->y, 10);
}

static em_status failing_engine(void *ctx, const em_sbc_dataset *ds, em_rng *rng, size_t ndraws, double *draws,
                                em_error *err) {
    if (ds->replication % 2 == 1) return em_error_set(err, EM_ERR_NUMERIC, "engine gave up");
    return exact_engine(ctx, ds, rng, ndraws, draws, err);
}

static em_status nan_engine(void *ctx, const em_sbc_dataset *ds, em_rng *rng, size_t ndraws, double *draws,
                            em_error *err) {
    em_status s = exact_engine(ctx, ds, rng, ndraws, draws, err);
    draws[3] = NAN;
    return s;
}

static void expect_error(em_model_fn model, const em_sbc_config *c, em_status want, const char *needle) {
    em_sbc_result *r = (em_sbc_result *)1;
    em_error e = {0};
    assert_int_equal(em_sbc_run(model, &CN, c, &r, &e), want);
    assert_null(r);
    if (!strstr(e.msg, needle)) fail_msg("message '%s' lacks '%s'", e.msg, needle);
}

static void test_errors(void **state) {
    (void)state;
    double f = 1.0;
    em_sbc_config c = base_config(0);
    expect_error(cn_model, &c, EM_ERR_ARG, "num_replications = 0");
    c = base_config(10);
    c.engine = (em_sbc_engine)7;
    expect_error(cn_model, &c, EM_ERR_ARG, "engine = 7");
    c = base_config(10);
    c.engine = EM_SBC_ENGINE_CUSTOM;
    expect_error(cn_model, &c, EM_ERR_ARG, "custom is NULL");
    c = base_config(10);
    c.bins = 101;
    expect_error(cn_model, &c, EM_ERR_ARG, "bins = 101");
    c = base_config(10);
    c.mcmc.num_samples = 0;
    expect_error(cn_model, &c, EM_ERR_ARG, "num_samples");
    c = base_config(10);
    c.engine = EM_SBC_ENGINE_SVI;
    c.svi.steps = 0;
    expect_error(cn_model, &c, EM_ERR_ARG, "svi.steps");
    c = base_config(10);
    expect_error(no_latent_model, &c, EM_ERR_MODEL, "no latent sites");
    expect_error(NULL, &c, EM_ERR_ARG, "no model");
    em_error e = {0};
    assert_int_equal(em_sbc_run(cn_model, &CN, &c, NULL, &e), EM_ERR_ARG);

    /* a failing engine stops the run with the replication named ... */
    c = base_config(10);
    c.engine = EM_SBC_ENGINE_CUSTOM;
    c.custom = failing_engine;
    c.custom_ctx = &f;
    expect_error(cn_model, &c, EM_ERR_NUMERIC, "replication 2 ");
    /* ... or, when asked, is counted and left out */
    c.skip_failed = 1;
    em_sbc_result *r = run_ok(&c);
    assert_int_equal(em_sbc_num_failed(r), 5);
    assert_int_equal(em_sbc_num_used(r), 5);
    assert_int_equal(em_sbc_rank(r, 1, 0, NULL), -1);
    assert_true(em_sbc_rank(r, 0, 0, NULL) >= 0);
    assert_non_null(strstr(em_sbc_first_failure(r), "engine gave up"));
    em_sbc_param_stats st;
    assert_int_equal(em_sbc_param(r, 0, &st, NULL), EM_OK);
    assert_int_equal(st.n, 5);
    assert_int_equal(em_sbc_param(r, 2, &st, &e), EM_ERR_INDEX);
    em_sbc_free(r);
    /* a NaN draw is an error naming the parameter */
    c.skip_failed = 0;
    c.custom = nan_engine;
    expect_error(cn_model, &c, EM_ERR_NONFINITE, "'b'");
}

/* ---- output ----------------------------------------------------------------------------------- */

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    size_t got = fread(s, 1, (size_t)n, f);
    s[got] = 0;
    fclose(f);
    return s;
}

static size_t count_lines(const char *s) {
    size_t n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static void test_write_and_plot(void **state) {
    (void)state;
    double f = 1.0;
    em_sbc_config c = base_config(25);
    c.engine = EM_SBC_ENGINE_CUSTOM;
    c.custom = exact_engine;
    c.custom_ctx = &f;
    em_sbc_result *r = run_ok(&c);
    char dir[] = "/tmp/ember_sbc_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char sub[64], path[128];
    snprintf(sub, sizeof sub, "%s/out", dir); /* em_sbc_write creates it */
    em_error e = {0};
    assert_int_equal(em_sbc_write(r, sub, &e), EM_OK);
    snprintf(path, sizeof path, "%s/sbc_summary.csv", sub);
    char *s = slurp(path);
    assert_non_null(s);
    const char *head = "param,chi2_p,cov50,cov80,cov90,cov95\nmu,";
    assert_true(strncmp(s, head, strlen(head)) == 0);
    assert_int_equal(count_lines(s), 3);
    free(s);
    snprintf(path, sizeof path, "%s/sbc_ranks.csv", sub);
    s = slurp(path);
    assert_non_null(s);
    head = "replication,param,rank,L\n1,mu,";
    assert_true(strncmp(s, head, strlen(head)) == 0);
    assert_int_equal(count_lines(s), 1 + 25 * 2);
    char want[64];
    snprintf(want, sizeof want, "\n25,b,%ld,99\n", em_sbc_rank(r, 24, 1, NULL));
    assert_non_null(strstr(s, want));
    free(s);
    int drawn = 0;
    assert_int_equal(em_sbc_plot(sub, &drawn, &e), EM_OK);
    const char *files[] = {"sbc_details.csv", "sbc_hist.dat", "sbc_ecdf.dat", "sbc.gp", "gnuplot.log",
                           "sbc_hist.png", "sbc_ecdf.png"};
    size_t nfiles = drawn ? 7 : 4;
    for (size_t i = 0; i < 7; i++) {
        snprintf(path, sizeof path, "%s/%s", sub, files[i]);
        struct stat sb;
        if (i < nfiles) {
            if (stat(path, &sb) != 0) fail_msg("%s was not written", path);
            if (i >= 5) assert_true(sb.st_size > 1000);
        }
        unlink(path);
    }
    rmdir(sub);
    /* an unwritable place is an error naming it */
    assert_int_equal(em_sbc_write(r, "/nonexistent_dir/sbc", &e), EM_ERR_IO);
    assert_non_null(strstr(e.msg, "/nonexistent_dir/sbc"));
    rmdir(dir);
    em_sbc_free(r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_engine_passes),
        cmocka_unit_test(test_overconfident_engine_is_flagged),
        cmocka_unit_test(test_nuts_passes),
        cmocka_unit_test(test_nuts_thinning),
        cmocka_unit_test(test_laplace_and_meanfield_pass),
        cmocka_unit_test(test_thread_count_does_not_matter),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_write_and_plot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
