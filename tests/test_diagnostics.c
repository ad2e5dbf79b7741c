/* test_diagnostics.c — R-hat, ESS, MCSE, quantiles, HPDI, E-BFMI and the summary table.
 *
 * Two kinds of checks: known cases where theory gives the answer (iid draws, AR(1) chains,
 * chains that disagree), and an exact cross-check against the R package `posterior`, whose
 * definitions the module reproduces, on seeded draws that exercise its edge rules (odd draw
 * counts, ties, heavy tails, antithetic chains, very short chains, constant indicators). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gsl/gsl_randist.h>

#include "util/testutil.h"

/* ---- draw generators ------------------------------------------------------------------- */

/* nchains stationary AR(1) chains x_t = rho x_{t-1} + sqrt(1 - rho^2) e_t, chain-major,
 * shifted by mu[c] (NULL: 0) and scaled by sd[c] (NULL: 1). */
static double *ar1(size_t nchains, size_t ndraws, double rho, const double *mu, const double *sd,
                   uint64_t seed) {
    double *x = malloc(nchains * ndraws * sizeof *x);
    assert_non_null(x);
    for (size_t c = 0; c < nchains; c++) {
        em_rng *r = em_rng_create(seed, c);
        assert_non_null(r);
        double v = em_rng_normal(r);
        double s = sqrt(1.0 - rho * rho);
        for (size_t i = 0; i < ndraws; i++) {
            v = rho * v + s * em_rng_normal(r);
            x[c * ndraws + i] = (mu ? mu[c] : 0.0) + (sd ? sd[c] : 1.0) * v;
        }
        em_rng_destroy(r);
    }
    return x;
}

/* ---- known cases ----------------------------------------------------------------------- */

static void test_iid_normal(void **state) {
    (void)state;
    const size_t C = 4, N = 1000, S = C * N;
    double *x = ar1(C, N, 0.0, NULL, NULL, 11);
    em_error err = {0};
    double rhat = em_rhat(x, C, N, &err);
    double bulk = em_ess_bulk(x, C, N, &err);
    double basic = em_ess_basic(x, C, N, &err);
    double tail = em_ess_tail(x, C, N, &err);
    assert_int_equal(err.status, EM_OK);
    assert_true(rhat > 0.99 && rhat < 1.01);
    /* the ESS estimate of iid draws scatters by a few percent around S */
    tu_assert_close(bulk, (double)S, 0.1, 0.0);
    tu_assert_close(basic, (double)S, 0.1, 0.0);
    tu_assert_close(tail, (double)S, 0.2, 0.0);
    /* MCSE of the mean of iid N(0,1) draws is about 1/sqrt(S) */
    tu_assert_close(em_mcse_mean(x, C, N, &err), 1.0 / sqrt((double)S), 0.1, 0.0);
    free(x);
}

static void test_ar1_ess(void **state) {
    (void)state;
    const double rhos[] = {0.5, 0.8, 0.9};
    const size_t C = 4, N = 5000, S = C * N;
    for (size_t k = 0; k < sizeof rhos / sizeof rhos[0]; k++) {
        double rho = rhos[k];
        double *x = ar1(C, N, rho, NULL, NULL, 100 + k);
        em_error err = {0};
        double expect = (double)S * (1.0 - rho) / (1.0 + rho);
        double basic = em_ess_basic(x, C, N, &err);
        double bulk = em_ess_bulk(x, C, N, &err);
        assert_int_equal(err.status, EM_OK);
        /* relative sd of the ESS estimate grows with rho; 15% is several sds at these sizes */
        tu_assert_close(basic, expect, 0.15, 0.0);
        tu_assert_close(bulk, expect, 0.15, 0.0);
        double rhat = em_rhat(x, C, N, &err);
        assert_true(rhat < 1.02);
        free(x);
    }
}

static void test_disagreeing_chains(void **state) {
    (void)state;
    const size_t C = 4, N = 1000;
    const double mu[] = {0.0, 0.0, 0.0, 1.5};
    double *x = ar1(C, N, 0.3, mu, NULL, 7);
    em_error err = {0};
    assert_true(em_rhat(x, C, N, &err) > 1.1);
    assert_true(em_rhat_basic(x, C, N, &err) > 1.1);
    free(x);

    /* same location, different scale: only the folded (tail) R-hat can see it */
    const double sd[] = {1.0, 1.0, 1.0, 4.0};
    x = ar1(C, N, 0.0, NULL, sd, 8);
    double basic = em_rhat_basic(x, C, N, &err);
    double full = em_rhat(x, C, N, &err);
    assert_int_equal(err.status, EM_OK);
    assert_true(basic < 1.02);
    assert_true(full > 1.05);
    free(x);

    /* a trend inside each chain: split R-hat catches what whole-chain R-hat would miss */
    x = malloc(C * N * sizeof *x);
    for (size_t c = 0; c < C; c++)
        for (size_t i = 0; i < N; i++) x[c * N + i] = (double)i / (double)N + 0.01 * (double)c;
    assert_true(em_rhat(x, C, N, &err) > 1.5);
    free(x);
}

static void test_quantile_type7(void **state) {
    (void)state;
    const double x[] = {10.0, 3.0, 1.0, 4.0, 2.0}; /* sorted: 1 2 3 4 10 */
    tu_assert_close(em_quantile(x, 5, 0.0), 1.0, 0, 0);
    tu_assert_close(em_quantile(x, 5, 1.0), 10.0, 0, 0);
    tu_assert_close(em_quantile(x, 5, 0.5), 3.0, 0, 0);
    tu_assert_close(em_quantile(x, 5, 0.1), 1.4, 1e-15, 0);  /* h = 0.4 */
    tu_assert_close(em_quantile(x, 5, 0.95), 8.8, 1e-15, 0); /* h = 3.8: 4 + 0.8 * 6 */
    tu_assert_close(em_quantile(x, 5, 0.3), 2.2, 1e-15, 0);  /* h = 1.2 */
    const double y[] = {1.0, 2.0, 3.0, 4.0};
    tu_assert_close(em_quantile(y, 4, 0.5), 2.5, 0, 0);
    tu_assert_close(em_quantile(y, 4, 0.05), 1.15, 1e-15, 0);
    /* a quantile inside a run of ties is the tied value exactly */
    const double t[] = {0.1, 0.1, 0.1, 0.7};
    assert_true(em_quantile(t, 4, 0.4) == 0.1);
    assert_true(isnan(em_quantile(x, 5, 1.5)));
    assert_true(isnan(em_quantile(x, 0, 0.5)));
    const double n[] = {1.0, NAN};
    assert_true(isnan(em_quantile(n, 2, 0.5)));
    assert_true(em_quantile(x, 1, 0.7) == 10.0);
    /* several at once: each bit for bit em_quantile's, with errors named */
    const double probs[6] = {0.0, 0.05, 0.3, 0.5, 0.95, 1.0};
    double q[6];
    em_error err = {0};
    assert_int_equal(em_quantiles(x, 5, probs, 6, q, &err), EM_OK);
    for (int j = 0; j < 6; j++) assert_true(q[j] == em_quantile(x, 5, probs[j]));
    assert_int_equal(em_quantiles(t, 4, (double[]){0.4}, 1, q, &err), EM_OK);
    assert_true(q[0] == 0.1);
    assert_int_equal(em_quantiles(x, 5, (double[]){0.5, 1.5}, 2, q, &err), EM_ERR_ARG);
    assert_non_null(strstr(err.msg, "probs[1]"));
    em_error e2 = {0};
    assert_int_equal(em_quantiles(n, 2, probs, 1, q, &e2), EM_ERR_NONFINITE);
    assert_non_null(strstr(e2.msg, "x[1]"));
}

static void test_hpdi(void **state) {
    (void)state;
    em_error err = {0};
    double lo, hi;
    /* windows of 3: [0,2], [1,3], [2,10]; the first of the two narrowest wins */
    const double x[] = {3.0, 0.0, 10.0, 2.0, 1.0};
    assert_int_equal(em_hpdi(x, 5, 0.6, &lo, &hi, &err), EM_OK);
    assert_true(lo == 0.0 && hi == 2.0);
    assert_int_equal(em_hpdi(x, 5, 1.0, &lo, &hi, &err), EM_OK);
    assert_true(lo == 0.0 && hi == 10.0);

    /* Exponential(1): the 90% HPDI is [0, -log 0.1]; the central interval is wider */
    const size_t n = 200000;
    double *e = malloc(n * sizeof *e);
    em_rng *r = em_rng_create(5, 0);
    for (size_t i = 0; i < n; i++) e[i] = gsl_ran_exponential(r, 1.0);
    em_rng_destroy(r);
    assert_int_equal(em_hpdi(e, n, 0.9, &lo, &hi, &err), EM_OK);
    assert_true(lo >= 0.0 && lo < 1e-3);
    tu_assert_close(hi, -log(0.1), 0.02, 0.0);
    double q05 = em_quantile(e, n, 0.05), q95 = em_quantile(e, n, 0.95);
    assert_true(hi - lo < q95 - q05);
    /* it holds 90% of the draws */
    size_t inside = 0;
    for (size_t i = 0; i < n; i++) inside += e[i] >= lo && e[i] <= hi;
    assert_int_equal(inside, (size_t)(0.9 * n));
    free(e);

    assert_int_equal(em_hpdi(x, 5, 0.0, &lo, &hi, &err), EM_ERR_ARG);
    assert_true(isnan(lo) && isnan(hi));
    em_error_clear(&err);
    const double bad[] = {1.0, INFINITY};
    assert_int_equal(em_hpdi(bad, 2, 0.5, &lo, &hi, &err), EM_ERR_NONFINITE);
    assert_non_null(strstr(err.msg, "draw 1"));
}

static void test_ebfmi(void **state) {
    (void)state;
    const double e[] = {1.0, 3.0, 2.0, 4.0};
    /* diffs 2,-1,2 -> 9; mean 2.5, deviations^2 2.25+0.25+0.25+2.25 = 5 */
    tu_assert_close(em_ebfmi(e, 4), 9.0 / 5.0, 1e-15, 0);
    /* stationary AR(1) energies: E[(dE)^2] / Var(E) = 2 (1 - rho) */
    const size_t N = 100000;
    double *x = ar1(1, N, 0.0, NULL, NULL, 21);
    tu_assert_close(em_ebfmi(x, N), 2.0, 0.02, 0.0);
    free(x);
    x = ar1(1, N, 0.9, NULL, NULL, 22);
    tu_assert_close(em_ebfmi(x, N), 0.2, 0.05, 0.0);
    free(x);
    const double k[] = {2.0, 2.0, 2.0};
    assert_true(isnan(em_ebfmi(k, 3)));
    assert_true(isnan(em_ebfmi(e, 1)));
    const double nf[] = {1.0, NAN, 2.0};
    assert_true(isnan(em_ebfmi(nf, 3)));
}

static void test_counts(void **state) {
    (void)state;
    const double div[] = {0, 1, 0, 0, 1, 1};
    const double depth[] = {3, 10, 9, 10, 4, 11};
    assert_int_equal(em_count_nonzero(div, 6), 3);
    assert_int_equal(em_count_ge(depth, 6, 10.0), 3);
    assert_int_equal(em_count_nonzero(NULL, 6), 0);
}

static void test_degenerate(void **state) {
    (void)state;
    em_error err = {0};
    double k[4 * 100];
    for (size_t i = 0; i < 400; i++) k[i] = 1.25;
    assert_true(isnan(em_rhat(k, 4, 100, &err)));
    assert_true(isnan(em_rhat_basic(k, 4, 100, &err)));
    assert_true(isnan(em_ess_bulk(k, 4, 100, &err)));
    assert_true(isnan(em_ess_tail(k, 4, 100, &err)));
    assert_true(isnan(em_ess_basic(k, 4, 100, &err)));
    assert_true(isnan(em_mcse_mean(k, 4, 100, &err)));
    assert_int_equal(err.status, EM_OK); /* constant draws are NA, not an error */

    assert_true(isnan(em_rhat(k, 0, 100, &err)));
    assert_int_equal(err.status, EM_ERR_ARG);
    assert_non_null(strstr(err.msg, "em_rhat"));
    em_error_clear(&err);
    assert_true(isnan(em_ess_bulk(NULL, 4, 100, &err)));
    assert_int_equal(err.status, EM_ERR_ARG);
    em_error_clear(&err);

    double *x = ar1(2, 50, 0.2, NULL, NULL, 3);
    x[57] = NAN;
    assert_true(isnan(em_ess_bulk(x, 2, 50, &err)));
    assert_int_equal(err.status, EM_ERR_NONFINITE);
    assert_non_null(strstr(err.msg, "draw 7 of chain 1"));
    em_error_clear(&err);
    x[57] = -INFINITY;
    assert_true(isnan(em_rhat(x, 2, 50, &err)));
    assert_int_equal(err.status, EM_ERR_NONFINITE);
    em_error_clear(&err);
    x[57] = 0.0;
    assert_true(isnan(em_ess_quantile(x, 2, 50, 1.5, &err)));
    assert_int_equal(err.status, EM_ERR_ARG);
    em_error_clear(&err);
    /* too few draws: R-hat needs 4 per chain, ESS needs 6 (3 per half) */
    assert_true(isnan(em_rhat(x, 2, 3, &err)));
    assert_false(isnan(em_rhat(x, 2, 4, &err)));
    assert_true(isnan(em_ess_bulk(x, 2, 5, &err)));
    assert_false(isnan(em_ess_bulk(x, 2, 6, &err)));
    assert_int_equal(err.status, EM_OK);
    free(x);
}

/* ---- the summary ----------------------------------------------------------------------- */

static void test_summary(void **state) {
    (void)state;
    const size_t C = 3, N = 400, P = 3;
    double *a = ar1(C, N, 0.6, NULL, NULL, 41);
    const double mu[] = {5.0, 5.0, 5.0};
    double *b = ar1(C, N, 0.1, mu, NULL, 42);
    /* rows as a CmdStan file holds them, and parameter blocks */
    double *rows = malloc(C * N * P * sizeof *rows), *blocks = malloc(C * N * P * sizeof *blocks);
    for (size_t k = 0; k < C * N; k++) {
        double v[3] = {a[k], b[k], -2.0};
        for (size_t p = 0; p < P; p++) {
            rows[k * P + p] = v[p];
            blocks[p * C * N + k] = v[p];
        }
    }
    const char *names[] = {"alpha", "beta[1]", "sigma,const"};
    em_summary *s1 = NULL, *s2 = NULL;
    em_error err = {0};
    assert_int_equal(em_summarize(rows, C, N, P, names, EM_LAYOUT_CHAIN_DRAW_PARAM, &s1, &err), EM_OK);
    assert_int_equal(em_summarize(blocks, C, N, P, names, EM_LAYOUT_PARAM_CHAIN_DRAW, &s2, &err), EM_OK);
    assert_int_equal(s1->nparams, P);
    for (size_t p = 0; p < P; p++) {
        const em_param_summary *x = &s1->params[p], *y = &s2->params[p];
        assert_string_equal(x->name, names[p]);
        assert_memory_equal(&x->mean, &y->mean, 9 * sizeof(double));
    }
    const em_param_summary *pa = &s1->params[0];
    tu_assert_close(pa->rhat, em_rhat(a, C, N, &err), 0, 0);
    tu_assert_close(pa->ess_bulk, em_ess_bulk(a, C, N, &err), 0, 0);
    tu_assert_close(pa->ess_tail, em_ess_tail(a, C, N, &err), 0, 0);
    tu_assert_close(pa->mcse_mean, em_mcse_mean(a, C, N, &err), 0, 0);
    tu_assert_close(pa->q5, em_quantile(a, C * N, 0.05), 0, 0);
    tu_assert_close(pa->median, em_quantile(a, C * N, 0.5), 0, 0);
    tu_assert_close(pa->sd, em_sd(a, C * N), 0, 0);
    tu_assert_close(s1->params[1].mean, 5.0, 0, 0.2);
    /* the constant parameter: exact location, NA diagnostics */
    assert_true(s1->params[2].mean == -2.0 && s1->params[2].q95 == -2.0 && s1->params[2].sd == 0.0);
    assert_true(isnan(s1->params[2].rhat) && isnan(s1->params[2].ess_bulk));

    em_buf csv = {0};
    assert_int_equal(em_summary_to_csv(s1, &csv, 0, &err), EM_OK);
    assert_non_null(csv.data);
    assert_true(strncmp(csv.data, "param,mean,sd,q5,q50,q95,ess_bulk,ess_tail,r_hat,mcse_mean\n", 59) == 0);
    assert_non_null(strstr(csv.data, "\n\"sigma,const\",-2,0,-2,-2,-2,NaN,NaN,NaN,NaN\n"));
    /* numbers round-trip */
    char *line = strstr(csv.data, "\nalpha,");
    assert_non_null(line);
    assert_true(strtod(line + 7, NULL) == pa->mean);
    em_buf_free(&csv);

    /* the printed table: a header and one line per parameter, all the same width */
    FILE *f = tmpfile();
    assert_non_null(f);
    assert_int_equal(em_summary_print(f, s1, 0, &err), EM_OK);
    rewind(f);
    char buf[512];
    size_t width = 0, lines = 0;
    while (fgets(buf, sizeof buf, f)) {
        size_t len = strlen(buf);
        if (lines == 0) {
            width = len;
            assert_non_null(strstr(buf, "name"));
            assert_non_null(strstr(buf, "ess_bulk"));
            assert_non_null(strstr(buf, "r_hat"));
        } else {
            assert_int_equal(len, width);
        }
        lines++;
        if (lines == 4) assert_non_null(strstr(buf, "NA"));
    }
    assert_int_equal(lines, P + 1);
    fclose(f);
    em_summary_free(s1);
    em_summary_free(s2);
    free(rows);
    free(blocks);
    free(a);
    free(b);
}

static void test_summary_errors(void **state) {
    (void)state;
    const size_t C = 2, N = 50, P = 2;
    double *d = malloc(C * N * P * sizeof *d);
    tu_fill_uniform(d, C * N * P, -1.0, 1.0, 9);
    d[(1 * N + 3) * P + 1] = NAN; /* parameter 1, chain 1, draw 3 */
    const char *names[] = {"mu", "tau"};
    em_summary *s = NULL;
    em_error err = {0};
    assert_int_equal(em_summarize(d, C, N, P, names, EM_LAYOUT_CHAIN_DRAW_PARAM, &s, &err),
                     EM_ERR_NONFINITE);
    assert_non_null(strstr(err.msg, "'tau'"));
    assert_non_null(strstr(err.msg, "draw 3 of chain 1"));
    assert_non_null(s);
    assert_false(isnan(s->params[0].rhat)); /* the good parameter is still summarised */
    assert_true(isnan(s->params[1].mean) && isnan(s->params[1].rhat));
    em_summary_free(s);

    em_error_clear(&err);
    assert_int_equal(em_summarize(d, C, 3, P, NULL, EM_LAYOUT_CHAIN_DRAW_PARAM, &s, &err), EM_ERR_ARG);
    assert_non_null(strstr(err.msg, "'p[1]'"));
    assert_true(isnan(s->params[0].rhat) && !isnan(s->params[0].mean));
    em_summary_free(s);

    em_error_clear(&err);
    assert_int_equal(em_summarize(d, 0, N, P, names, EM_LAYOUT_CHAIN_DRAW_PARAM, &s, &err), EM_ERR_ARG);
    assert_null(s);
    em_error_clear(&err);
    assert_int_equal(em_summarize(d, C, N, P, names, (em_draws_layout)7, &s, &err), EM_ERR_ARG);
    assert_null(s);
    free(d);
}

/* ---- cross-check against R's posterior package ----------------------------------------- */

typedef struct rcase {
    const char *label;
    size_t nchains, ndraws;
    double *x;
} rcase;

static const char *const r_script =
    "suppressMessages(library(posterior))\n"
    "v <- scan(commandArgs(TRUE)[1], quiet = TRUE)\n"
    "pos <- 1; k <- 0\n"
    "f <- function(z) if (is.na(z)) 'NA' else sprintf('%.17g', z)\n"
    "while (pos <= length(v)) {\n"
    "  nc <- v[pos]; nd <- v[pos + 1]; pos <- pos + 2\n"
    "  x <- v[pos:(pos + nc * nd - 1)]; pos <- pos + nc * nd\n"
    "  d <- as_draws_array(array(x, dim = c(nd, nc, 1), dimnames = list(NULL, NULL, 'theta')))\n"
    "  m <- extract_variable_matrix(d, 'theta')\n"
    "  q <- quantile2(m, probs = c(0.05, 0.5, 0.95))\n"
    "  r <- suppressWarnings(c(rhat(m), rhat_basic(m), ess_bulk(m), ess_tail(m), ess_basic(m),\n"
    "         mcse_mean(m), ess_quantile(m, 0.25), ess_quantile(m, 1), q, mean(m), sd(m)))\n"
    "  cat(k, paste(vapply(r, f, ''), collapse = ' '), '\\n')\n"
    "  k <- k + 1\n"
    "}\n";

enum { NSTAT = 14 };
static const char *const stat_names[NSTAT] = {"rhat",     "rhat_basic", "ess_bulk", "ess_tail",
                                              "ess_basic", "mcse_mean", "ess_q25",  "ess_q100",
                                              "q5",        "q50",       "q95",      "mean",
                                              "sd",        "(unused)"};

static int posterior_available(void) {
    return system("Rscript -e 'quit(status = !requireNamespace(\"posterior\", quietly = TRUE))' "
                  ">/dev/null 2>&1") == 0;
}

static void ours(const rcase *c, double out[NSTAT]) {
    em_error err = {0};
    size_t C = c->nchains, N = c->ndraws;
    out[0] = em_rhat(c->x, C, N, &err);
    out[1] = em_rhat_basic(c->x, C, N, &err);
    out[2] = em_ess_bulk(c->x, C, N, &err);
    out[3] = em_ess_tail(c->x, C, N, &err);
    out[4] = em_ess_basic(c->x, C, N, &err);
    out[5] = em_mcse_mean(c->x, C, N, &err);
    out[6] = em_ess_quantile(c->x, C, N, 0.25, &err);
    out[7] = em_ess_quantile(c->x, C, N, 1.0, &err);
    out[8] = em_quantile(c->x, C * N, 0.05);
    out[9] = em_quantile(c->x, C * N, 0.5);
    out[10] = em_quantile(c->x, C * N, 0.95);
    out[11] = em_mean(c->x, C * N);
    out[12] = em_sd(c->x, C * N);
    if (err.status != EM_OK) fail_msg("%s: unexpected error: %s", c->label, err.msg);
}

static void test_against_posterior(void **state) {
    (void)state;
    if (!posterior_available()) {
        fprintf(stderr, "SKIPPED: R package 'posterior' not available — install r-cran-posterior "
                        "(scripts/install-deps.sh --with-r)\n");
        skip();
    }
    enum { NCASE = 12 };
    rcase cs[NCASE];
    size_t n = 0;
    cs[n++] = (rcase){"ar1 rho=0.3", 4, 1000, ar1(4, 1000, 0.3, NULL, NULL, 201)};
    cs[n++] = (rcase){"ar1 rho=0.9", 4, 1000, ar1(4, 1000, 0.9, NULL, NULL, 202)};
    cs[n++] = (rcase){"ar1 rho=-0.6 (antithetic, ESS capped)", 4, 1000, ar1(4, 1000, -0.6, NULL, NULL, 203)};
    cs[n++] = (rcase){"ar1 rho=0.97, odd ndraws", 3, 999, ar1(3, 999, 0.97, NULL, NULL, 204)};
    const double mu[] = {0.0, 0.3, -0.2, 1.0};
    cs[n++] = (rcase){"different means", 4, 500, ar1(4, 500, 0.5, mu, NULL, 205)};
    /* heavy tails: Cauchy draws */
    double *h = malloc(4000 * sizeof *h);
    em_rng *r = em_rng_create(206, 0);
    for (size_t i = 0; i < 4000; i++) h[i] = gsl_ran_cauchy(r, 1.0);
    cs[n++] = (rcase){"cauchy", 4, 1000, h};
    /* many ties: rounded AR(1) draws */
    double *t = ar1(4, 1000, 0.4, NULL, NULL, 207);
    for (size_t i = 0; i < 4000; i++) t[i] = round(2.0 * t[i]);
    cs[n++] = (rcase){"ties", 4, 1000, t};
    /* two values: the 95% indicator is constant, so tail ESS is NA */
    double *b = malloc(2000 * sizeof *b);
    for (size_t i = 0; i < 2000; i++) b[i] = gsl_rng_uniform(r) < 0.7 ? 1.0 : 0.0;
    cs[n++] = (rcase){"bernoulli", 2, 1000, b};
    /* alternating chains: lag-1 autocorrelation below -1 after the combination */
    double *a = malloc(2 * 200 * sizeof *a);
    for (size_t i = 0; i < 400; i++) a[i] = ((i % 2) ? 1.0 : -1.0) + 1e-3 * em_rng_normal(r);
    cs[n++] = (rcase){"alternating", 2, 200, a};
    /* the shortest chains with an ESS: 3 draws per half */
    cs[n++] = (rcase){"1 chain x 7", 1, 7, ar1(1, 7, 0.2, NULL, NULL, 208)};
    cs[n++] = (rcase){"2 chains x 5 (ESS NA)", 2, 5, ar1(2, 5, 0.2, NULL, NULL, 209)};
    double *k = malloc(3 * 20 * sizeof *k);
    for (size_t i = 0; i < 60; i++) k[i] = 0.125;
    cs[n++] = (rcase){"constant", 3, 20, k};
    em_rng_destroy(r);
    assert_int_equal(n, NCASE);

    char dpath[] = "/tmp/ember_diag_XXXXXX", spath[] = "/tmp/ember_diag_R_XXXXXX";
    int fd = mkstemp(dpath), fs = mkstemp(spath);
    assert_true(fd >= 0 && fs >= 0);
    FILE *df = fdopen(fd, "w"), *sf = fdopen(fs, "w");
    assert_non_null(df);
    assert_non_null(sf);
    fputs(r_script, sf);
    fclose(sf);
    for (size_t c = 0; c < n; c++) {
        fprintf(df, "%zu %zu\n", cs[c].nchains, cs[c].ndraws);
        for (size_t i = 0; i < cs[c].nchains * cs[c].ndraws; i++) fprintf(df, "%.17g\n", cs[c].x[i]);
    }
    fclose(df);

    char cmd[256];
    snprintf(cmd, sizeof cmd, "Rscript %s %s", spath, dpath);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char line[4096];
    size_t seen = 0, compared = 0;
    double maxrel = 0.0;
    while (fgets(line, sizeof line, p)) {
        char *s = line, *end;
        long idx = strtol(s, &end, 10);
        if (end == s || idx < 0 || (size_t)idx >= n) continue;
        s = end;
        const rcase *c = &cs[idx];
        double mine[NSTAT];
        ours(c, mine);
        for (int j = 0; j < NSTAT - 1; j++) {
            while (*s == ' ') s++;
            double ref;
            if (strncmp(s, "NA", 2) == 0) {
                ref = NAN;
                s += 2;
            } else {
                ref = strtod(s, &end);
                if (end == s) fail_msg("%s: cannot parse R output: %s", c->label, line);
                s = end;
            }
            if (isnan(ref) != isnan(mine[j]))
                fail_msg("%s: %s is %.17g here, %.17g in posterior", c->label, stat_names[j], mine[j], ref);
            if (!isnan(ref) && fabs(mine[j] - ref) > 1e-6 * fabs(ref) + 1e-300)
                fail_msg("%s: %s is %.17g here, %.17g in posterior (rel. diff %.3g)", c->label,
                         stat_names[j], mine[j], ref, fabs(mine[j] - ref) / fabs(ref));
            if (!isnan(ref) && ref != 0.0 && fabs(mine[j] - ref) / fabs(ref) > maxrel)
                maxrel = fabs(mine[j] - ref) / fabs(ref);
            compared++;
        }
        seen++;
    }
    int rc = pclose(p);
    unlink(dpath);
    unlink(spath);
    for (size_t c = 0; c < n; c++) free(cs[c].x);
    assert_int_equal(rc, 0);
    assert_int_equal(seen, n);
    fprintf(stderr, "compared %zu statistics of %zu cases with posterior: largest relative difference %.2g\n",
            compared, n, maxrel);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_iid_normal),
        cmocka_unit_test(test_ar1_ess),
        cmocka_unit_test(test_disagreeing_chains),
        cmocka_unit_test(test_quantile_type7),
        cmocka_unit_test(test_hpdi),
        cmocka_unit_test(test_ebfmi),
        cmocka_unit_test(test_counts),
        cmocka_unit_test(test_degenerate),
        cmocka_unit_test(test_summary),
        cmocka_unit_test(test_summary_errors),
        cmocka_unit_test(test_against_posterior),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
