/* test_mcmc.c — NUTS and static HMC against Gaussian targets with known moments, a conjugate
 * linear regression with a closed-form posterior, the adaptation schedule, reproducibility
 * across thread counts, failing densities, interruption and configuration errors.
 *
 * Moment checks compare a posterior mean with the truth within 4 Monte Carlo standard errors
 * (em_mcse_mean, from the ESS of the draws); a variance or covariance is checked the same way
 * as the mean of the product series (x - mu)(y - mu'), whose MCSE comes from its own ESS. Every
 * run is seeded, so a pass is reproducible; 4 MCSE keeps the chance that a correct sampler
 * fails one check near 6e-5. */
#include "util/testutil.h"

#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_linalg.h>
#include <gsl/gsl_randist.h>

#include "internal/adapt.h"

/* ---- targets ------------------------------------------------------------------------------ */

/* Gaussian N(mu, P^-1) given by its precision P (dense, row-major) — or diagonal when
 * prec_diag is set. */
typedef struct gauss {
    size_t d;
    const double *mu;
    const double *prec;      /* d*d, or NULL */
    const double *prec_diag; /* d, or NULL */
    double bad_above;        /* x[0] > bad_above is outside the domain (when has_bad) */
    int has_bad;
    atomic_long evals;
    long cancel_after; /* > 0: set *cancel_flag after this many evaluations */
    volatile int *cancel_flag;
    long sigint_after; /* > 0: raise(signo, SIGINT when 0) once after this many evaluations */
    int signo;
    atomic_int raised;
} gauss;

static em_status gauss_fn(void *ctx, const double *x, double *lp, double *grad, em_error *err) {
    gauss *g = ctx;
    long n = atomic_fetch_add(&g->evals, 1) + 1;
    if (g->cancel_after > 0 && n >= g->cancel_after) __atomic_store_n(g->cancel_flag, 1, __ATOMIC_RELAXED);
    if (g->sigint_after > 0 && n >= g->sigint_after && atomic_exchange(&g->raised, 1) == 0)
        raise(g->signo ? g->signo : SIGINT);
    if (g->has_bad && x[0] > g->bad_above)
        return em_error_set(err, EM_ERR_DOMAIN, "x[0] = %g is above %g", x[0], g->bad_above);
    size_t d = g->d;
    double s = 0;
    for (size_t i = 0; i < d; i++) {
        double gi = 0;
        if (g->prec_diag) {
            gi = -g->prec_diag[i] * (x[i] - (g->mu ? g->mu[i] : 0));
        } else {
            for (size_t j = 0; j < d; j++) gi -= g->prec[i * d + j] * (x[j] - (g->mu ? g->mu[j] : 0));
        }
        s += 0.5 * gi * (x[i] - (g->mu ? g->mu[i] : 0));
        if (grad) grad[i] = gi;
    }
    *lp = s;
    return EM_OK;
}

static em_status broken_fn(void *ctx, const double *x, double *lp, double *grad, em_error *err) {
    (void)ctx;
    (void)x;
    (void)grad;
    *lp = 0;
    return em_error_set(err, EM_ERR_DOMAIN, "always broken (test density)");
}

static double *unit_diag(size_t d, double v) {
    double *p = malloc(d * sizeof *p);
    for (size_t i = 0; i < d; i++) p[i] = v;
    return p;
}

/* ---- moment checks ------------------------------------------------------------------------- */

static double *extract(const em_mcmc_result *r, size_t col, size_t *n) {
    *n = em_mcmc_extract(r, col, NULL);
    assert_true(*n > 0);
    double *x = malloc(r->num_chains * *n * sizeof *x);
    em_mcmc_extract(r, col, x);
    return x;
}

/* mean of (x_a - ma)(x_b - mb) against target within 4 MCSE; a == b checks a variance. */
static void check_product(const em_mcmc_result *r, size_t a, size_t b, double ma, double mb,
                          double target, const char *label) {
    size_t n;
    double *xa = extract(r, a, &n), *xb = extract(r, b, &n);
    size_t m = r->num_chains * n;
    double *prod = malloc(m * sizeof *prod);
    for (size_t i = 0; i < m; i++) prod[i] = (xa[i] - ma) * (xb[i] - mb);
    double est = em_mean(prod, m);
    double mcse = em_mcse_mean(prod, r->num_chains, n, NULL);
    assert_true(isfinite(mcse) && mcse > 0);
    if (fabs(est - target) > 4 * mcse)
        fail_msg("%s: E[(x%zu-m)(x%zu-m)] = %.5g, expected %.5g, MCSE %.3g", label, a, b, est,
                 target, mcse);
    free(prod);
    free(xa);
    free(xb);
}

static void check_mean(const em_mcmc_result *r, size_t col, double mean, const char *label) {
    size_t n;
    double *x = extract(r, col, &n);
    size_t m = r->num_chains * n;
    double est = em_mean(x, m);
    double mcse = em_mcse_mean(x, r->num_chains, n, NULL);
    double ess = em_ess_bulk(x, r->num_chains, n, NULL);
    /* a near-zero ESS would make the MCSE check vacuous: demand a working sampler */
    if (!(ess > 0.1 * (double)m))
        fail_msg("%s: column %zu bulk ESS %.1f of %zu draws", label, col, ess, m);
    if (fabs(est - mean) > 4 * mcse)
        fail_msg("%s: mean of column %zu = %.5g, expected %.5g, MCSE %.3g", label, col, est, mean,
                 mcse);
    free(x);
}

static double mean_accept(const em_mcmc_result *r) {
    size_t n;
    double *x = extract(r, EM_MCMC_COL_ACCEPT, &n);
    double m = em_mean(x, r->num_chains * n);
    free(x);
    return m;
}

/* Step-size adaptation. Dual averaging makes the mean accept_stat__ over the adapting
 * iterations, taken at the fluctuating iterates eps_t = exp(x_t), converge to delta: that is
 * checked on the second half of the slow windows (warmup iterations 450..949 of 1000, saved
 * with save_warmup), within ±0.05 of 0.8. The step size kept for sampling is exp(x_bar), the
 * weighted geometric mean of the iterates; with the iterates spread around it and acceptance
 * falling steeply above the stable step, the sampling accept_stat__ sits above delta in low
 * dimensions (about 0.9 here, as in Stan), so it is only required to lie in [0.7, 0.97]. */
static void check_accept(const em_mcmc_result *r, const char *label) {
    assert_int_equal(r->config.num_warmup, 1000);
    assert_int_equal(r->config.save_warmup, 1);
    double s = 0;
    size_t n = 0;
    for (size_t k = 0; k < r->num_chains; k++) {
        assert_int_equal(r->chains[k].num_warmup_draws, 1000);
        for (size_t i = 450; i < 950; i++, n++) s += em_mcmc_draw(r, k, i)[EM_MCMC_COL_ACCEPT];
    }
    double warm = s / (double)n, samp = mean_accept(r);
    if (fabs(warm - 0.8) > 0.05)
        fail_msg("%s: mean accept_stat over warmup 450..949 is %.3f, target 0.8", label, warm);
    if (samp < 0.7 || samp > 0.97) fail_msg("%s: mean sampling accept_stat %.3f", label, samp);
}

static em_mcmc_config small_config(void) {
    em_mcmc_config c = em_mcmc_config_default();
    c.seed = 12345;
    c.num_warmup = 1000;
    c.num_samples = 1000;
    c.save_warmup = 1; /* for check_accept */
    return c;
}

static em_mcmc_result *run_ok(em_logdensity *ld, const em_mcmc_config *c) {
    em_error err = {0};
    em_mcmc_result *r = NULL;
    em_status s = em_mcmc_run(ld, c, &r, &err);
    if (s != EM_OK) fail_msg("em_mcmc_run: %s: %s", em_status_str(s), err.msg);
    assert_non_null(r);
    assert_int_equal(r->status, EM_OK);
    return r;
}

/* ---- adaptation pieces --------------------------------------------------------------------- */

static void test_windows_1000(void **state) {
    (void)state;
    size_t ends[16];
    /* hand-computed from Stan's rule: 75 + 25 - 1 = 99; then windows of 50, 100, 200 end at
     * 149, 249, 449; the next (400, ending 849) would leave 849 + 800 >= 950, so it is
     * stretched to 1000 - 50 - 1 = 949 */
    size_t n = em_adapt_window_ends(1000, 75, 50, 25, ends, 16);
    size_t want[] = {99, 149, 249, 449, 949};
    assert_int_equal(n, 5);
    for (size_t i = 0; i < n; i++) assert_int_equal(ends[i], want[i]);
    /* 2000: ..., 449, 849 (849 + 1600 >= 1950 stretches the 800 window to 1949) */
    n = em_adapt_window_ends(2000, 75, 50, 25, ends, 16);
    size_t want2[] = {99, 149, 249, 449, 849, 1949};
    assert_int_equal(n, 6);
    for (size_t i = 0; i < n; i++) assert_int_equal(ends[i], want2[i]);
    /* exactly 150: one window 75..99 */
    n = em_adapt_window_ends(150, 75, 50, 25, ends, 16);
    assert_int_equal(n, 1);
    assert_int_equal(ends[0], 99);

    /* slow-window membership for 1000: iterations 75..949 feed the estimator */
    em_adapt_windows w;
    assert_int_equal(em_adapt_windows_init(&w, 1000, 75, 50, 25), 0);
    size_t first = 0, last = 0, count = 0;
    for (size_t i = 0; i < 1000; i++) {
        if (em_adapt_windows_in_slow(&w)) {
            if (!count) first = i;
            last = i;
            count++;
        }
        em_adapt_windows_advance(&w);
    }
    assert_int_equal(first, 75);
    assert_int_equal(last, 949);
    assert_int_equal(count, 875);
}

static void test_windows_fallback(void **state) {
    (void)state;
    size_t ends[8];
    /* 100 < 75 + 25 + 50: 15% / 75% / 10% -> init 15, window 75, term 10; one window 15..89 */
    em_adapt_windows w;
    assert_int_equal(em_adapt_windows_init(&w, 100, 75, 50, 25), 1);
    assert_int_equal(w.init_buffer, 15);
    assert_int_equal(w.base_window, 75);
    assert_int_equal(w.term_buffer, 10);
    size_t n = em_adapt_window_ends(100, 75, 50, 25, ends, 8);
    assert_int_equal(n, 1);
    assert_int_equal(ends[0], 89);
    /* 149: init (size_t)(22.35) = 22, term 14, window 113, ending at 22 + 113 - 1 = 134 */
    n = em_adapt_window_ends(149, 75, 50, 25, ends, 8);
    assert_int_equal(n, 1);
    assert_int_equal(ends[0], 134);
    /* below 20 warmup iterations no metric is estimated */
    assert_int_equal(em_adapt_window_ends(19, 75, 50, 25, ends, 8), 0);
    em_adapt_windows_init(&w, 19, 75, 50, 25);
    assert_int_equal(w.enabled, 0);
}

static void test_dual_averaging(void **state) {
    (void)state;
    em_dual_avg da;
    em_dual_avg_init(&da, 0.8, 0.05, 0.75, 10);
    em_dual_avg_restart(&da, log(10 * 0.5));
    /* hitting the target exactly keeps x at mu */
    double eps = 0;
    for (int i = 0; i < 10; i++) eps = em_dual_avg_learn(&da, 0.8);
    tu_assert_close(eps, 5.0, 1e-12, 0);
    tu_assert_close(em_dual_avg_final(&da), 5.0, 1e-12, 0);
    /* first step by hand: s_bar = (0.8 - 0.3)/11, x = mu - s_bar/0.05 */
    em_dual_avg_restart(&da, 0.0);
    eps = em_dual_avg_learn(&da, 0.3);
    tu_assert_close(log(eps), -(0.5 / 11) / 0.05, 1e-12, 0);
    tu_assert_close(log(em_dual_avg_final(&da)), -(0.5 / 11) / 0.05, 1e-12, 0); /* weight 1^-k = 1 */
    /* acceptance above 1 is capped, and always accepting grows the step */
    em_dual_avg_restart(&da, 0.0);
    for (int i = 0; i < 50; i++) eps = em_dual_avg_learn(&da, 3.0);
    assert_true(eps > 1);
}

static void test_metric_estimator(void **state) {
    (void)state;
    const double x[4][2] = {{1, 2}, {2, 1}, {3, 5}, {6, 0}};
    em_metric_est e;
    assert_int_equal(em_metric_est_init(&e, 2, 0), 0);
    double out[4] = {-1, -1, -1, -1};
    em_metric_est_add(&e, x[0]);
    assert_int_equal(em_metric_est_finish(&e, out), -1); /* one draw: nothing to estimate */
    assert_true(out[0] == -1);
    for (int i = 1; i < 4; i++) em_metric_est_add(&e, x[i]);
    /* var(1,2,3,6) = 14/3, var(2,1,5,0) = 14/3; n = 4: v·4/9 + 1e-3·5/9 */
    assert_int_equal(em_metric_est_finish(&e, out), 0);
    tu_assert_close(out[0], 14.0 / 3 * 4 / 9 + 5e-3 / 9, 1e-12, 0);
    tu_assert_close(out[1], 14.0 / 3 * 4 / 9 + 5e-3 / 9, 1e-12, 0);
    em_metric_est_free(&e);

    assert_int_equal(em_metric_est_init(&e, 2, 1), 0);
    for (int i = 0; i < 4; i++) em_metric_est_add(&e, x[i]);
    assert_int_equal(em_metric_est_finish(&e, out), 0);
    /* cov: means 3 and 2; sum (x-3)(y-2) = (-2)(0)+(-1)(-1)+(0)(3)+(3)(-2) = -5 -> -5/3 */
    tu_assert_close(out[0], 14.0 / 3 * 4 / 9 + 5e-3 / 9, 1e-12, 0);
    tu_assert_close(out[1], -5.0 / 3 * 4 / 9, 1e-12, 0);
    tu_assert_close(out[2], -5.0 / 3 * 4 / 9, 1e-12, 0);
    tu_assert_close(out[3], 14.0 / 3 * 4 / 9 + 5e-3 / 9, 1e-12, 0);
    em_metric_est_restart(&e);
    assert_int_equal(em_metric_est_finish(&e, out), -1);
    em_metric_est_free(&e);
}

/* ---- Gaussian targets -------------------------------------------------------------------- */

static void test_normal_1d(void **state) {
    (void)state;
    double one = 1;
    gauss g = {.d = 1, .prec_diag = &one};
    em_logdensity *ld = em_logdensity_from_fn(1, gauss_fn, &g, NULL);
    em_mcmc_config c = small_config();
    em_mcmc_result *r = run_ok(ld, &c);
    assert_int_equal(r->num_columns, 8);
    assert_string_equal(em_mcmc_column_name(r, 0), "lp__");
    assert_string_equal(em_mcmc_column_name(r, 6), "energy__");
    assert_string_equal(em_mcmc_column_name(r, 7), "theta.1");
    check_mean(r, 7, 0.0, "normal 1d");
    check_product(r, 7, 7, 0, 0, 1.0, "normal 1d");
    check_accept(r, "normal 1d");
    /* lp__ = -x²/2 at each draw, and the unconstrained draws equal the outputs */
    for (size_t k = 0; k < r->num_chains; k++) {
        const em_mcmc_chain *ch = &r->chains[k];
        assert_int_equal(ch->num_draws, 2000);
        assert_int_equal(ch->warmup_done, 1000);
        assert_int_equal(ch->samples_done, 1000);
        for (size_t i = 1000; i < ch->num_draws; i += 97) {
            const double *row = em_mcmc_draw(r, k, i);
            tu_assert_close(row[0], -0.5 * row[7] * row[7], 1e-12, 1e-14);
            assert_true(row[7] == ch->unconstrained[i]);
            assert_true(row[EM_MCMC_COL_STEPSIZE] == ch->stepsize);
        }
        assert_true(ch->inv_metric[0] > 0.6 && ch->inv_metric[0] < 1.6);
    }
    em_mcmc_result_free(r);
    em_logdensity_destroy(ld);
}

static void test_normal_10d(void **state) {
    (void)state;
    double *p = unit_diag(10, 1.0);
    double mu[10];
    for (int i = 0; i < 10; i++) mu[i] = i - 4.5;
    gauss g = {.d = 10, .prec_diag = p, .mu = mu};
    em_logdensity *ld = em_logdensity_from_fn(10, gauss_fn, &g, NULL);
    em_mcmc_config c = small_config();
    em_mcmc_result *r = run_ok(ld, &c);
    for (size_t i = 0; i < 10; i++) {
        check_mean(r, 7 + i, mu[i], "normal 10d");
        check_product(r, 7 + i, 7 + i, mu[i], mu[i], 1.0, "normal 10d");
    }
    check_product(r, 7, 8, mu[0], mu[1], 0.0, "normal 10d");
    check_accept(r, "normal 10d");
    assert_int_equal(em_mcmc_num_divergent(r), 0);
    em_mcmc_result_free(r);
    em_logdensity_destroy(ld);
    free(p);
}

/* rho = 0.9, unit variances: precision = [[1, -rho], [-rho, 1]] / (1 - rho²) */
static void correlated(em_mcmc_metric metric) {
    const double rho = 0.9;
    double prec[4] = {1 / (1 - rho * rho), -rho / (1 - rho * rho), -rho / (1 - rho * rho),
                      1 / (1 - rho * rho)};
    double mu[2] = {1.0, -2.0};
    gauss g = {.d = 2, .prec = prec, .mu = mu};
    em_logdensity *ld = em_logdensity_from_fn(2, gauss_fn, &g, NULL);
    em_mcmc_config c = small_config();
    c.metric = metric;
    em_mcmc_result *r = run_ok(ld, &c);
    const char *label = metric == EM_METRIC_DENSE ? "correlated dense" : "correlated diag";
    check_mean(r, 7, mu[0], label);
    check_mean(r, 8, mu[1], label);
    check_product(r, 7, 7, mu[0], mu[0], 1.0, label);
    check_product(r, 8, 8, mu[1], mu[1], 1.0, label);
    check_product(r, 7, 8, mu[0], mu[1], rho, label);
    check_accept(r, label);
    if (metric == EM_METRIC_DENSE) {
        assert_int_equal(r->dense_metric, 1);
        /* the adapted inverse metric estimates the covariance [[1, .9], [.9, 1]] from the last
         * window's ~500 draws: within 30% */
        for (size_t k = 0; k < r->num_chains; k++) {
            const double *m = r->chains[k].inv_metric;
            tu_assert_close(m[0], 1.0, 0.3, 0);
            tu_assert_close(m[3], 1.0, 0.3, 0);
            tu_assert_close(m[1], 0.9, 0.3, 0);
            assert_true(m[1] == m[2]);
        }
        /* a well-fitted dense metric makes the target isotropic: short trajectories */
        size_t n;
        double *td = extract(r, EM_MCMC_COL_TREEDEPTH, &n);
        assert_true(em_mean(td, r->num_chains * n) < 3.0);
        free(td);
    }
    em_mcmc_result_free(r);
    em_logdensity_destroy(ld);
}

static void test_correlated_diag(void **state) {
    (void)state;
    correlated(EM_METRIC_DIAG);
}
static void test_correlated_dense(void **state) {
    (void)state;
    correlated(EM_METRIC_DENSE);
}

static void test_badly_scaled(void **state) {
    (void)state;
    const double sd[5] = {0.01, 0.1, 1, 10, 100};
    double prec[5];
    for (int i = 0; i < 5; i++) prec[i] = 1 / (sd[i] * sd[i]);
    gauss g = {.d = 5, .prec_diag = prec};
    em_logdensity *ld = em_logdensity_from_fn(5, gauss_fn, &g, NULL);
    em_mcmc_config c = small_config();
    em_mcmc_result *r = run_ok(ld, &c);
    for (size_t i = 0; i < 5; i++) {
        check_mean(r, 7 + i, 0, "badly scaled");
        check_product(r, 7 + i, 7 + i, 0, 0, sd[i] * sd[i], "badly scaled");
        for (size_t k = 0; k < r->num_chains; k++) {
            double ratio = r->chains[k].inv_metric[i] / (sd[i] * sd[i]);
            if (ratio < 0.6 || ratio > 1.6)
                fail_msg("badly scaled: chain %zu inverse metric %zu is %g, variance %g", k, i,
                         r->chains[k].inv_metric[i], sd[i] * sd[i]);
        }
    }
    /* after adaptation the problem is isotropic: trees as shallow as for a standard normal
     * (without adaptation, sd ratio 1e4 needs ~1e4 steps per U-turn: depth 10 every time) */
    size_t n;
    double *td = extract(r, EM_MCMC_COL_TREEDEPTH, &n);
    assert_true(em_mean(td, r->num_chains * n) < 4.0);
    free(td);
    check_accept(r, "badly scaled");
    em_mcmc_result_free(r);
    em_logdensity_destroy(ld);
}

/* A skewed, non-Gaussian target: x = log g with g ~ Gamma(a, 1), density ∝ exp(a·x - e^x);
 * E[x] = ψ(a), Var[x] = ψ'(a), E[e^x] = a (read from the constrained output of a custom
 * implementation would need a model; here the third moment is checked through E[e^x]). */
static em_status loggamma_fn(void *ctx, const double *x, double *lp, double *grad, em_error *err) {
    (void)err;
    double a = *(const double *)ctx;
    *lp = a * x[0] - exp(x[0]);
    if (grad) grad[0] = a - exp(x[0]);
    return EM_OK;
}

static void test_log_gamma(void **state) {
    (void)state;
    double a = 2.0;
    em_logdensity *ld = em_logdensity_from_fn(1, loggamma_fn, &a, NULL);
    em_mcmc_config c = small_config();
    em_mcmc_result *r = run_ok(ld, &c);
    const double psi = 0.42278433509846713939, psi1 = 0.64493406684822643647; /* ψ(2), ψ'(2) */
    check_mean(r, 7, psi, "log gamma");
    check_product(r, 7, 7, psi, psi, psi1, "log gamma");
    /* E[e^x] = a through the product series e^{x/2}·e^{x/2} */
    size_t n;
    double *x = extract(r, 7, &n);
    size_t m = r->num_chains * n;
    for (size_t i = 0; i < m; i++) x[i] = exp(x[i]);
    double mcse = em_mcse_mean(x, r->num_chains, n, NULL);
    if (fabs(em_mean(x, m) - a) > 4 * mcse)
        fail_msg("log gamma: E[e^x] = %.4f, expected %.1f, MCSE %.3g", em_mean(x, m), a, mcse);
    free(x);
    check_accept(r, "log gamma");
    em_mcmc_result_free(r);
    em_logdensity_destroy(ld);
}

/* A higher target acceptance gives smaller steps, higher acceptance and longer trees. */
static void test_target_accept(void **state) {
    (void)state;
    double *p = unit_diag(10, 1.0);
    gauss g = {.d = 10, .prec_diag = p};
    em_logdensity *ld = em_logdensity_from_fn(10, gauss_fn, &g, NULL);
    em_mcmc_config c = small_config();
    c.num_warmup = 500;
    c.num_samples = 300;
    c.save_warmup = 0;
    em_mcmc_result *lo = run_ok(ld, &c);
    c.target_accept = 0.97;
    em_mcmc_result *hi = run_ok(ld, &c);
    for (size_t k = 0; k < 4; k++) assert_true(hi->chains[k].stepsize < lo->chains[k].stepsize);
    assert_true(mean_accept(hi) > mean_accept(lo));
    assert_true(mean_accept(hi) > 0.93);
    size_t n;
    double *a = extract(lo, EM_MCMC_COL_N_LEAPFROG, &n), *b = extract(hi, EM_MCMC_COL_N_LEAPFROG, &n);
    assert_true(em_mean(b, 4 * n) > em_mean(a, 4 * n));
    free(a);
    free(b);
    em_mcmc_result_free(lo);
    em_mcmc_result_free(hi);
    em_logdensity_destroy(ld);
    free(p);
}

/* Through the model bridge: a prior-only model with a positive latent, so NUTS runs on
 * log sigma with the transform's Jacobian and reports sigma: sigma ~ Gamma(3, rate 2) has mean
 * 1.5 and variance 0.75; mu ~ Normal(1, 2). */
static void prior_model(em_model *m, const void *data) {
    (void)data;
    em_sample(m, "mu", em_normal(m, 1.0, 2.0));
    em_sample(m, "sigma", em_gamma(m, 3.0, 2.0));
}

static void test_model_density(void **state) {
    (void)state;
    em_error err = {0};
    em_logdensity *ld = em_logdensity_from_model(prior_model, NULL, NULL, &err);
    if (!ld) fail_msg("em_logdensity_from_model: %s", err.msg);
    em_mcmc_config c = small_config();
    em_mcmc_result *r = run_ok(ld, &c);
    long jm = em_mcmc_column_index(r, "mu"), js = em_mcmc_column_index(r, "sigma");
    assert_int_equal(jm, 7);
    assert_int_equal(js, 8);
    check_mean(r, 7, 1.0, "model");
    check_product(r, 7, 7, 1.0, 1.0, 4.0, "model");
    check_mean(r, 8, 1.5, "model");
    check_product(r, 8, 8, 1.5, 1.5, 0.75, "model");
    /* the unconstrained draws are log sigma */
    const em_mcmc_chain *ch = &r->chains[2];
    for (size_t i = 0; i < ch->num_draws; i += 101)
        tu_assert_close(exp(ch->unconstrained[i * 2 + 1]), em_mcmc_draw(r, 2, i)[8], 1e-12, 0);
    check_accept(r, "model");
    em_mcmc_result_free(r);
    em_logdensity_destroy(ld);
}

/* Exactness does not depend on the step size: without adaptation, at a step near the
 * leapfrog's stability limit for a unit normal (2), energy errors are large, and only correct
 * multinomial weights exp(-H) (and, for static HMC, the Metropolis correction) keep the
 * variance at 1. A sampler that picks states uniformly inside a subtree, for instance, gets
 * it wrong here while passing on adapted step sizes. */
static void test_large_fixed_step(void **state) {
    (void)state;
    double *p = unit_diag(3, 1.0);
    gauss g = {.d = 3, .prec_diag = p};
    em_logdensity *ld = em_logdensity_from_fn(3, gauss_fn, &g, NULL);
    for (int alg = 0; alg <= 1; alg++) {
        em_mcmc_config c = small_config();
        c.algorithm = alg ? EM_MCMC_HMC : EM_MCMC_NUTS;
        c.hmc_num_steps = 2;
        c.adapt = 0;
        c.num_warmup = 200;
        c.num_samples = 2500;
        c.stepsize = 1.7;
        c.save_warmup = 0;
        em_mcmc_result *r = run_ok(ld, &c);
        const char *label = alg ? "static hmc, step 1.7" : "nuts, step 1.7";
        for (size_t i = 0; i < 3; i++) {
            check_mean(r, 7 + i, 0, label);
            check_product(r, 7 + i, 7 + i, 0, 0, 1.0, label);
        }
        assert_true(r->chains[0].stepsize == 1.7);
        assert_true(mean_accept(r) < 0.8); /* the step really is too large */
        em_mcmc_result_free(r);
    }
    em_logdensity_destroy(ld);
    free(p);
}

/* ---- conjugate normal linear regression --------------------------------------------------- */

#define REG_N 40
#define REG_P 3

typedef struct regression {
    double x[REG_N * REG_P], y[REG_N];
    double sigma, tau;
} regression;

static em_status regression_fn(void *ctx, const double *b, double *lp, double *grad, em_error *err) {
    (void)err;
    const regression *d = ctx;
    double s = 0;
    if (grad)
        for (int j = 0; j < REG_P; j++) grad[j] = -b[j] / (d->tau * d->tau);
    for (int j = 0; j < REG_P; j++) s -= 0.5 * b[j] * b[j] / (d->tau * d->tau);
    for (int i = 0; i < REG_N; i++) {
        double r = d->y[i];
        for (int j = 0; j < REG_P; j++) r -= d->x[i * REG_P + j] * b[j];
        s -= 0.5 * r * r / (d->sigma * d->sigma);
        if (grad)
            for (int j = 0; j < REG_P; j++) grad[j] += d->x[i * REG_P + j] * r / (d->sigma * d->sigma);
    }
    *lp = s;
    return EM_OK;
}

static void test_conjugate_regression(void **state) {
    (void)state;
    regression d = {.sigma = 0.5, .tau = 2.0};
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(rng, 77);
    const double beta[REG_P] = {1.5, -0.7, 0.3};
    for (int i = 0; i < REG_N; i++) {
        d.x[i * REG_P] = 1.0;
        for (int j = 1; j < REG_P; j++) d.x[i * REG_P + j] = gsl_ran_gaussian(rng, 1.0) + (j == 2 ? 0.8 * d.x[i * REG_P + 1] : 0);
        d.y[i] = gsl_ran_gaussian(rng, d.sigma);
        for (int j = 0; j < REG_P; j++) d.y[i] += d.x[i * REG_P + j] * beta[j];
    }
    gsl_rng_free(rng);

    /* posterior: Σ = (XᵀX/σ² + I/τ²)^-1, μ = Σ Xᵀy / σ² */
    gsl_matrix *a = gsl_matrix_calloc(REG_P, REG_P);
    gsl_vector *rhs = gsl_vector_calloc(REG_P), *mu = gsl_vector_alloc(REG_P);
    for (int j = 0; j < REG_P; j++) {
        for (int k = 0; k < REG_P; k++) {
            double s = 0;
            for (int i = 0; i < REG_N; i++) s += d.x[i * REG_P + j] * d.x[i * REG_P + k];
            gsl_matrix_set(a, j, k, s / (d.sigma * d.sigma) + (j == k ? 1 / (d.tau * d.tau) : 0));
        }
        double s = 0;
        for (int i = 0; i < REG_N; i++) s += d.x[i * REG_P + j] * d.y[i];
        gsl_vector_set(rhs, j, s / (d.sigma * d.sigma));
    }
    assert_int_equal(gsl_linalg_cholesky_decomp1(a), 0);
    gsl_linalg_cholesky_solve(a, rhs, mu);
    assert_int_equal(gsl_linalg_cholesky_invert(a), 0);

    /* the hand-written gradient against central differences */
    {
        double b0[REG_P] = {0.3, -0.2, 0.9}, g0[REG_P], lp0, lpp, lpm;
        regression_fn(&d, b0, &lp0, g0, NULL);
        for (int j = 0; j < REG_P; j++) {
            double h = 1e-5, bp[REG_P], bm[REG_P];
            memcpy(bp, b0, sizeof bp);
            memcpy(bm, b0, sizeof bm);
            bp[j] += h;
            bm[j] -= h;
            regression_fn(&d, bp, &lpp, NULL, NULL);
            regression_fn(&d, bm, &lpm, NULL, NULL);
            tu_assert_close(g0[j], (lpp - lpm) / (2 * h), 1e-6, 1e-6);
        }
    }

    const char *names[REG_P] = {"beta.1", "beta.2", "beta.3"};
    em_logdensity *ld = em_logdensity_from_fn(REG_P, regression_fn, &d, names);
    for (int dense = 0; dense <= 1; dense++) {
        em_mcmc_config c = small_config();
        c.metric = dense ? EM_METRIC_DENSE : EM_METRIC_DIAG;
        em_mcmc_result *r = run_ok(ld, &c);
        assert_int_equal(em_mcmc_column_index(r, "beta.2"), 8);
        const char *label = dense ? "regression dense" : "regression diag";
        for (size_t j = 0; j < REG_P; j++) check_mean(r, 7 + j, gsl_vector_get(mu, j), label);
        for (size_t j = 0; j < REG_P; j++)
            for (size_t k = j; k < REG_P; k++)
                check_product(r, 7 + j, 7 + k, gsl_vector_get(mu, j), gsl_vector_get(mu, k),
                              gsl_matrix_get(a, j, k), label);
        check_accept(r, label);
        em_mcmc_result_free(r);
    }
    em_logdensity_destroy(ld);
    gsl_matrix_free(a);
    gsl_vector_free(rhs);
    gsl_vector_free(mu);
}

/* ---- static HMC ------------------------------------------------------------------------- */

static void test_static_hmc(void **state) {
    (void)state;
    double *p = unit_diag(5, 1.0);
    gauss g = {.d = 5, .prec_diag = p};
    em_logdensity *ld = em_logdensity_from_fn(5, gauss_fn, &g, NULL);
    for (int fixed = 0; fixed <= 1; fixed++) {
        em_mcmc_config c = small_config();
        c.algorithm = EM_MCMC_HMC;
        /* about a quarter period of the oscillator, where draws are nearly independent; and a
         * fixed count of steps */
        c.hmc_int_time = 1.5;
        c.hmc_num_steps = fixed ? 3 : 0;
        em_mcmc_result *r = run_ok(ld, &c);
        for (size_t i = 0; i < 5; i++) {
            check_mean(r, 7 + i, 0, "static hmc");
            check_product(r, 7 + i, 7 + i, 0, 0, 1.0, "static hmc");
        }
        check_accept(r, "static hmc");
        const double *row = em_mcmc_draw(r, 0, 0);
        assert_true(row[EM_MCMC_COL_TREEDEPTH] == 0);
        if (fixed) {
            assert_true(row[EM_MCMC_COL_N_LEAPFROG] == 3);
        } else {
            double want = floor(1.5 / row[EM_MCMC_COL_STEPSIZE]);
            assert_true(row[EM_MCMC_COL_N_LEAPFROG] == (want < 1 ? 1 : want));
        }
        em_mcmc_result_free(r);
    }
    em_logdensity_destroy(ld);
    free(p);
}

/* ---- reproducibility ---------------------------------------------------------------------- */

static em_mcmc_result *repro_run(em_logdensity *ld, int threads, uint64_t seed, em_mcmc_metric m) {
    em_mcmc_config c = small_config();
    c.num_warmup = 300;
    c.num_samples = 200;
    c.num_threads = threads;
    c.seed = seed;
    c.metric = m;
    c.save_warmup = 1;
    return run_ok(ld, &c);
}

static int same_result(const em_mcmc_result *a, const em_mcmc_result *b) {
    if (a->num_chains != b->num_chains) return 0;
    for (size_t k = 0; k < a->num_chains; k++) {
        const em_mcmc_chain *x = &a->chains[k], *y = &b->chains[k];
        if (x->num_draws != y->num_draws) return 0;
        if (memcmp(x->draws, y->draws, x->num_draws * a->num_columns * sizeof(double))) return 0;
        if (memcmp(x->unconstrained, y->unconstrained, x->num_draws * a->dim * sizeof(double)))
            return 0;
        if (memcmp(&x->stepsize, &y->stepsize, sizeof(double))) return 0;
        size_t msize = a->dense_metric ? a->dim * a->dim : a->dim;
        if (memcmp(x->inv_metric, y->inv_metric, msize * sizeof(double))) return 0;
    }
    return 1;
}

static void test_threads_bit_identical(void **state) {
    (void)state;
    double *p = unit_diag(6, 1.0);
    p[0] = 100;
    gauss g = {.d = 6, .prec_diag = p};
    em_logdensity *ld = em_logdensity_from_fn(6, gauss_fn, &g, NULL);
    for (int m = 0; m <= 1; m++) {
        em_mcmc_metric metric = m ? EM_METRIC_DENSE : EM_METRIC_DIAG;
        em_mcmc_result *r1 = repro_run(ld, 1, 99, metric);
        em_mcmc_result *r4 = repro_run(ld, 4, 99, metric);
        em_mcmc_result *r4b = repro_run(ld, 4, 99, metric);
        em_mcmc_result *r2 = repro_run(ld, 2, 100, metric);
        assert_true(same_result(r1, r4));
        assert_true(same_result(r4, r4b));
        assert_false(same_result(r1, r2));
        /* chains differ from each other (distinct streams) */
        assert_true(memcmp(r1->chains[0].draws, r1->chains[1].draws,
                           r1->chains[0].num_draws * r1->num_columns * sizeof(double)) != 0);
        em_mcmc_result_free(r1);
        em_mcmc_result_free(r4);
        em_mcmc_result_free(r4b);
        em_mcmc_result_free(r2);
    }
    em_logdensity_destroy(ld);
    free(p);
}

/* Two different models sampled at once, each from its own thread (and each with two chains on
 * threads of its own), give the same draws as each sampled alone: nothing in the tape, the
 * model bridge, the densities (lgamma, digamma: reentrant) or the sampler is shared between
 * runs. `make check-tsan` runs this under ThreadSanitizer, which also reports any race that
 * happens not to change a draw. */
static const double PX[12] = {-1.2, -0.7, -0.3, 0.0, 0.2, 0.5, 0.9, 1.3, -0.9, 0.4, 1.7, -1.6};
static const double PY[12] = {0, 1, 1, 2, 1, 3, 2, 5, 0, 2, 6, 0};
static void pois_model(em_model *m, const void *data) {
    (void)data;
    em_var a = em_sample(m, "a", em_normal(m, 0.0, 1.0));
    em_var b = em_sample(m, "b", em_normal(m, 0.0, 1.0));
    em_var phi = em_sample(m, "phi", em_gamma(m, 2.0, 0.5));
    em_observe(m, "y", em_neg_binomial2_log(m, em_add(m, a, em_mul(m, b, em_data(m, PX, 12))), phi), PY, 12);
}

typedef struct conc_job {
    em_model_fn model;
    em_mcmc_result *r;
    em_status s;
    em_error err;
} conc_job;

static void *conc_run(void *arg) {
    conc_job *j = arg;
    em_logdensity *ld = em_logdensity_from_model(j->model, NULL, NULL, &j->err);
    if (!ld) {
        j->s = j->err.status;
        return NULL;
    }
    em_mcmc_config c = small_config();
    c.num_chains = 2;
    c.num_threads = 2;
    c.num_warmup = 200;
    c.num_samples = 200;
    j->s = em_mcmc_run(ld, &c, &j->r, &j->err);
    em_logdensity_destroy(ld);
    return NULL;
}

static void test_two_models_on_two_threads(void **state) {
    (void)state;
    conc_job alone[2] = {{.model = prior_model}, {.model = pois_model}}, both[2] = {{.model = prior_model}, {.model = pois_model}};
    for (int k = 0; k < 2; k++) {
        conc_run(&alone[k]);
        if (alone[k].s != EM_OK) fail_msg("model %d alone: %s", k, alone[k].err.msg);
    }
    pthread_t th[2];
    for (int k = 0; k < 2; k++) assert_int_equal(pthread_create(&th[k], NULL, conc_run, &both[k]), 0);
    for (int k = 0; k < 2; k++) pthread_join(th[k], NULL);
    for (int k = 0; k < 2; k++) {
        if (both[k].s != EM_OK) fail_msg("model %d beside the other: %s", k, both[k].err.msg);
        assert_true(same_result(alone[k].r, both[k].r));
        em_mcmc_result_free(alone[k].r);
        em_mcmc_result_free(both[k].r);
    }
}

/* A run of chains 3..4 alone (first_chain = 2) has the draws chains 3 and 4 have in a run of
 * all four: what lets groups of processes split the chains of one run (mpi.h). */
static void test_first_chain(void **state) {
    (void)state;
    double *p = unit_diag(3, 1.0);
    gauss g = {.d = 3, .prec_diag = p};
    em_logdensity *ld = em_logdensity_from_fn(3, gauss_fn, &g, NULL);
    em_mcmc_config c = small_config();
    c.num_chains = 4;
    c.seed = 5;
    em_mcmc_result *all = run_ok(ld, &c);
    c.num_chains = 2;
    c.first_chain = 2;
    em_mcmc_result *part = run_ok(ld, &c);
    for (size_t k = 0; k < 2; k++) {
        const em_mcmc_chain *x = &all->chains[k + 2], *y = &part->chains[k];
        assert_int_equal(x->num_draws, y->num_draws);
        assert_memory_equal(x->draws, y->draws, x->num_draws * all->num_columns * sizeof(double));
    }
    em_error err = {0};
    c.first_chain = EM_MCMC_MAX_CHAINS - 1; /* with 2 chains: past the last chain */
    assert_int_equal(em_mcmc_config_validate(&c, &err), EM_ERR_ARG);
    assert_non_null(strstr(err.msg, "first_chain"));
    em_mcmc_result_free(all);
    em_mcmc_result_free(part);
    em_logdensity_destroy(ld);
    free(p);
}

/* ---- failing densities -------------------------------------------------------------------- */

static void test_domain_errors_divergences(void **state) {
    (void)state;
    double *p = unit_diag(2, 1.0);
    gauss g = {.d = 2, .prec_diag = p, .has_bad = 1, .bad_above = 1.0};
    em_logdensity *ld = em_logdensity_from_fn(2, gauss_fn, &g, NULL);
    em_mcmc_config c = small_config();
    c.num_warmup = 500;
    c.num_samples = 500;
    em_mcmc_result *r = run_ok(ld, &c);
    size_t div = em_mcmc_num_divergent(r);
    assert_true(div > 0);
    size_t count = 0;
    for (size_t k = 0; k < r->num_chains; k++) {
        const em_mcmc_chain *ch = &r->chains[k];
        for (size_t i = 0; i < ch->num_draws; i++) {
            const double *row = em_mcmc_draw(r, k, i);
            assert_true(row[7] <= 1.0);
            assert_true(isfinite(row[0]) && isfinite(row[EM_MCMC_COL_ENERGY]));
            if (i >= ch->num_warmup_draws) count += row[EM_MCMC_COL_DIVERGENT] != 0;
        }
    }
    assert_int_equal(count, div); /* the per-chain counts agree with the divergent__ column */
    em_mcmc_result_free(r);
    em_logdensity_destroy(ld);
    free(p);
}

static void test_never_finite(void **state) {
    (void)state;
    em_logdensity *ld = em_logdensity_from_fn(3, broken_fn, NULL, NULL);
    em_mcmc_config c = small_config();
    c.num_chains = 2;
    em_error err = {0};
    em_mcmc_result *r = (em_mcmc_result *)1;
    assert_int_equal(em_mcmc_run(ld, &c, &r, &err), EM_ERR_NUMERIC);
    assert_null(r);
    assert_non_null(strstr(err.msg, "chain 1"));
    assert_non_null(strstr(err.msg, "100 initialisation attempts"));
    assert_non_null(strstr(err.msg, "always broken"));

    /* user initial values are not retried */
    double init[3] = {0, 0, 0};
    c.init = init;
    c.init_len = 3;
    em_error_clear(&err);
    assert_int_equal(em_mcmc_run(ld, &c, &r, &err), EM_ERR_NUMERIC);
    assert_non_null(strstr(err.msg, "given initial values"));
    em_logdensity_destroy(ld);
}

static void test_init_values(void **state) {
    (void)state;
    double one = 1;
    double mu = 50;
    gauss g = {.d = 1, .prec_diag = &one, .mu = &mu};
    em_logdensity *ld = em_logdensity_from_fn(1, gauss_fn, &g, NULL);
    em_mcmc_config c = small_config();
    c.num_warmup = 0;
    c.num_samples = 3;
    c.adapt = 0;
    c.stepsize = 1e-3; /* so the first draw stays next to where each chain started */
    double init[4] = {10, 20, 30, 40};
    c.init = init;
    c.init_len = 4; /* one per chain */
    em_mcmc_result *r = run_ok(ld, &c);
    for (size_t k = 0; k < 4; k++) tu_assert_close(em_mcmc_draw(r, k, 0)[7], init[k], 0, 0.5);
    em_mcmc_result_free(r);
    c.init_len = 1; /* shared */
    r = run_ok(ld, &c);
    for (size_t k = 0; k < 4; k++) tu_assert_close(em_mcmc_draw(r, k, 0)[7], 10, 0, 0.5);
    em_mcmc_result_free(r);
    em_error err = {0};
    c.init_len = 3;
    assert_int_equal(em_mcmc_run(ld, &c, &r, &err), EM_ERR_ARG);
    assert_non_null(strstr(err.msg, "init_len"));
    em_logdensity_destroy(ld);
}

/* ---- configuration ------------------------------------------------------------------------- */

static void expect_arg_error(em_mcmc_config c, const char *field) {
    em_error err = {0};
    assert_int_equal(em_mcmc_config_validate(&c, &err), EM_ERR_ARG);
    if (!strstr(err.msg, field)) fail_msg("message for %s: %s", field, err.msg);
}

static void test_config_validation(void **state) {
    (void)state;
    em_mcmc_config d = em_mcmc_config_default();
    em_error err = {0};
    assert_int_equal(em_mcmc_config_validate(&d, &err), EM_OK);
    assert_int_equal(d.num_chains, 4);
    assert_int_equal(d.num_warmup, 1000);
    assert_int_equal(d.max_treedepth, 10);
    assert_true(d.target_accept == 0.8);
    assert_int_equal(d.metric, EM_METRIC_DIAG);
    assert_int_equal(d.algorithm, EM_MCMC_NUTS);

    em_mcmc_config c;
    c = d, c.num_chains = 0, expect_arg_error(c, "num_chains");
    c = d, c.num_warmup = -1, expect_arg_error(c, "num_warmup");
    c = d, c.num_samples = -5, expect_arg_error(c, "num_samples");
    c = d, c.num_samples = 0, c.num_warmup = 0, expect_arg_error(c, "both 0");
    c = d, c.target_accept = 1.0, expect_arg_error(c, "target_accept");
    c = d, c.target_accept = 0, expect_arg_error(c, "target_accept");
    c = d, c.target_accept = NAN, expect_arg_error(c, "target_accept");
    c = d, c.max_treedepth = 0, expect_arg_error(c, "max_treedepth");
    c = d, c.max_treedepth = 31, expect_arg_error(c, "max_treedepth");
    c = d, c.thin = 0, expect_arg_error(c, "thin");
    c = d, c.num_threads = -1, expect_arg_error(c, "num_threads");
    c = d, c.stepsize = 0, expect_arg_error(c, "stepsize");
    c = d, c.init_radius = -1, expect_arg_error(c, "init_radius");
    c = d, c.metric = (em_mcmc_metric)7, expect_arg_error(c, "metric");
    c = d, c.algorithm = (em_mcmc_algorithm)7, expect_arg_error(c, "algorithm");
    c = d, c.algorithm = EM_MCMC_HMC, c.hmc_int_time = 0, expect_arg_error(c, "hmc_int_time");
    c = d, c.algorithm = EM_MCMC_HMC, c.hmc_num_steps = -2, expect_arg_error(c, "hmc_num_steps");
    c = d, c.gamma = -1, expect_arg_error(c, "gamma");
    c = d, c.base_window = -1, expect_arg_error(c, "base_window");

    /* em_mcmc_run reports the same and leaves *out NULL */
    double one = 1;
    gauss g = {.d = 1, .prec_diag = &one};
    em_logdensity *ld = em_logdensity_from_fn(1, gauss_fn, &g, NULL);
    em_mcmc_result *r = (em_mcmc_result *)1;
    c = d, c.num_chains = -3;
    em_error_clear(&err);
    assert_int_equal(em_mcmc_run(ld, &c, &r, &err), EM_ERR_ARG);
    assert_null(r);
    assert_non_null(strstr(err.msg, "num_chains = -3"));
    em_error_clear(&err);
    assert_int_equal(em_mcmc_run(NULL, &d, &r, &err), EM_ERR_ARG);
    /* a dense initial metric that is not positive definite */
    double bad[1] = {-1};
    c = d, c.metric = EM_METRIC_DENSE, c.inv_metric = bad;
    em_error_clear(&err);
    assert_int_equal(em_mcmc_run(ld, &c, &r, &err), EM_ERR_ARG);
    assert_non_null(strstr(err.msg, "inv_metric"));
    em_logdensity_destroy(ld);
}

/* Counts near INT_MAX: validated with their arithmetic in size_t, never overflowing an int. */
static void test_config_limits(void **state) {
    (void)state;
    em_mcmc_config d = em_mcmc_config_default(), c;
    c = d, c.num_chains = EM_MCMC_MAX_CHAINS + 1, expect_arg_error(c, "num_chains = 65537, must be in 1..65536");
    c = d, c.num_threads = INT_MAX, expect_arg_error(c, "num_threads = 2147483647");
    /* the documented cap of 10^6 leapfrog steps holds for a count the user gives */
    c = d, c.algorithm = EM_MCMC_HMC, c.hmc_num_steps = INT_MAX,
    expect_arg_error(c, "hmc_num_steps = 2147483647, must be in 0..1000000");
    c = d, c.hmc_num_steps = EM_MCMC_HMC_MAX_STEPS + 1, expect_arg_error(c, "hmc_num_steps = 1000001");
    c = d, c.algorithm = EM_MCMC_HMC, c.hmc_num_steps = EM_MCMC_HMC_MAX_STEPS;
    em_error err = {0};
    assert_int_equal(em_mcmc_config_validate(&c, &err), EM_OK);

    double one = 1;
    gauss g = {.d = 1, .prec_diag = &one};
    em_logdensity *ld = em_logdensity_from_fn(1, gauss_fn, &g, NULL);
    em_mcmc_result *r = NULL;
    /* thin = INT_MAX keeps one row per phase; a run cancelled before it starts has none */
    volatile int cancel = 1;
    c = d, c.num_chains = 2, c.num_warmup = INT_MAX, c.num_samples = INT_MAX, c.thin = INT_MAX, c.save_warmup = 1;
    c.cancel = &cancel;
    assert_int_equal(em_mcmc_run(ld, &c, &r, &err), EM_ERR_INTERRUPTED);
    assert_non_null(r);
    assert_int_equal(r->chains[0].num_draws, 0);
    assert_int_equal(r->chains[1].samples_done, 0);
    em_mcmc_result_free(r);
    r = (em_mcmc_result *)1;
    /* 4 x 2^31 rows of 8 + 1 doubles: more memory than any machine this runs on has */
    c = d, c.num_samples = INT_MAX, c.cancel = &cancel;
    em_error_clear(&err);
    assert_int_equal(em_mcmc_run(ld, &c, &r, &err), EM_ERR_ARG);
    assert_null(r);
    if (!strstr(err.msg, "4 chains x 2147483647 saved rows (num_warmup 1000 not saved, num_samples 2147483647, thin 1)"
                         " x (8 columns + 1 unconstrained) doubles need 618475290336 bytes, more than can be allocated"))
        fail_msg("message: %s", err.msg);
    em_logdensity_destroy(ld);
}

/* ---- thinning, saved warmup and the extract helper ----------------------------------------- */

static void test_thin_save_warmup(void **state) {
    (void)state;
    double one = 1;
    gauss g = {.d = 1, .prec_diag = &one};
    em_logdensity *ld = em_logdensity_from_fn(1, gauss_fn, &g, NULL);
    em_mcmc_config c = small_config();
    c.num_chains = 2;
    c.num_warmup = 101;
    c.num_samples = 50;
    c.thin = 3;
    c.save_warmup = 1;
    em_mcmc_result *r = run_ok(ld, &c);
    for (size_t k = 0; k < 2; k++) {
        assert_int_equal(r->chains[k].num_warmup_draws, 34); /* ceil(101/3) */
        assert_int_equal(r->chains[k].num_draws, 34 + 17);
        assert_true(r->chains[k].warmup_seconds >= 0 && r->chains[k].sampling_seconds >= 0);
    }
    assert_int_equal(em_mcmc_extract(r, 7, NULL), 17);
    assert_null(em_mcmc_draw(r, 0, 51));
    assert_null(em_mcmc_draw(r, 2, 0));
    /* the sampling rows use the final step size; warmup rows the adapting one */
    assert_true(em_mcmc_draw(r, 0, 40)[EM_MCMC_COL_STEPSIZE] == r->chains[0].stepsize);
    em_mcmc_result_free(r);
    em_logdensity_destroy(ld);
}

/* ---- interruption ------------------------------------------------------------------------- */

static void check_partial(const em_mcmc_result *r, size_t total_samples) {
    assert_int_equal(r->status, EM_ERR_INTERRUPTED);
    for (size_t k = 0; k < r->num_chains; k++) {
        const em_mcmc_chain *ch = &r->chains[k];
        assert_true(ch->samples_done < total_samples);
        assert_int_equal(ch->num_draws, ch->samples_done); /* thin 1, no saved warmup */
        for (size_t i = 0; i < ch->num_draws; i++)
            assert_true(isfinite(em_mcmc_draw(r, k, i)[7]) && isfinite(em_mcmc_draw(r, k, i)[0]));
    }
}

static void test_cancel_flag(void **state) {
    (void)state;
    double one = 1;
    volatile int cancel = 0;
    gauss g = {.d = 1, .prec_diag = &one, .cancel_after = 4000, .cancel_flag = &cancel};
    em_logdensity *ld = em_logdensity_from_fn(1, gauss_fn, &g, NULL);
    em_mcmc_config c = small_config();
    c.num_chains = 1;
    c.num_warmup = 100;
    c.num_samples = 100000;
    c.save_warmup = 0;
    c.cancel = &cancel;
    em_error err = {0};
    em_mcmc_result *r = NULL;
    assert_int_equal(em_mcmc_run(ld, &c, &r, &err), EM_ERR_INTERRUPTED);
    assert_non_null(r);
    assert_non_null(strstr(err.msg, "interrupted"));
    check_partial(r, 100000);
    assert_int_equal(r->chains[0].warmup_done, 100);
    assert_true(r->chains[0].samples_done > 10);
    em_mcmc_result_free(r);

    /* several chains on threads all stop */
    cancel = 0;
    atomic_store(&g.evals, 0);
    c.num_chains = 3;
    c.num_threads = 3;
    em_error_clear(&err);
    assert_int_equal(em_mcmc_run(ld, &c, &r, &err), EM_ERR_INTERRUPTED);
    check_partial(r, 100000);
    em_mcmc_result_free(r);
    em_logdensity_destroy(ld);
}

static volatile sig_atomic_t test_handler_hits;
static void test_handler(int s) {
    (void)s;
    test_handler_hits++;
}

/* SIGINT, and SIGTERM (what Slurm sends) and SIGHUP alike: the run stops and keeps its draws,
 * and the caller's handler is back afterwards. */
static void test_signals(void **state) {
    (void)state;
    const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < 3; i++) {
        struct sigaction sa, old;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = test_handler;
        sigemptyset(&sa.sa_mask);
        sigaction(sigs[i], &sa, &old);
        test_handler_hits = 0;

        double one = 1;
        gauss g = {.d = 1, .prec_diag = &one, .sigint_after = 3000, .signo = sigs[i]};
        em_logdensity *ld = em_logdensity_from_fn(1, gauss_fn, &g, NULL);
        em_mcmc_config c = small_config();
        c.num_chains = 2;
        c.num_warmup = 100;
        c.num_samples = 100000;
        c.save_warmup = 0;
        c.handle_sigint = 1;
        em_error err = {0};
        em_mcmc_result *r = NULL;
        if (em_mcmc_run(ld, &c, &r, &err) != EM_ERR_INTERRUPTED) fail_msg("signal %d: %s", sigs[i], err.msg);
        assert_int_equal(test_handler_hits, 0); /* ours was replaced during the run */
        check_partial(r, 100000);
        em_mcmc_result_free(r);
        raise(sigs[i]); /* and restored afterwards */
        assert_int_equal(test_handler_hits, 1);
        sigaction(sigs[i], &old, NULL);
        em_logdensity_destroy(ld);
    }
}

/* ---- progress ------------------------------------------------------------------------------ */

static void test_progress_lines(void **state) {
    (void)state;
    double one = 1;
    gauss g = {.d = 1, .prec_diag = &one};
    em_logdensity *ld = em_logdensity_from_fn(1, gauss_fn, &g, NULL);
    em_mcmc_config c = small_config();
    c.num_chains = 2;
    c.num_warmup = 100;
    c.num_samples = 100;
    c.progress = 1;
    FILE *f = tmpfile();
    assert_non_null(f);
    c.progress_stream = f;
    em_mcmc_result *r = run_ok(ld, &c);
    rewind(f);
    char line[512];
    int lines = 0, chain2 = 0, sampling = 0, done = 0;
    while (fgets(line, sizeof line, f)) {
        lines++;
        chain2 += strstr(line, "chain 2:") != NULL;
        sampling += strstr(line, "sampling") != NULL;
        done += strstr(line, "200/200 (100%)") != NULL;
        assert_non_null(strstr(line, "stepsize"));
        assert_non_null(strstr(line, "left"));
    }
    /* not a terminal: one line per chain every 10% of the 200 iterations */
    assert_int_equal(lines, 20);
    assert_int_equal(chain2, 10);
    assert_int_equal(sampling, 10);
    assert_int_equal(done, 2);
    fclose(f);
    em_mcmc_result_free(r);
    em_logdensity_destroy(ld);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_windows_1000),
        cmocka_unit_test(test_windows_fallback),
        cmocka_unit_test(test_dual_averaging),
        cmocka_unit_test(test_metric_estimator),
        cmocka_unit_test(test_config_validation),
        cmocka_unit_test(test_config_limits),
        cmocka_unit_test(test_normal_1d),
        cmocka_unit_test(test_normal_10d),
        cmocka_unit_test(test_correlated_diag),
        cmocka_unit_test(test_correlated_dense),
        cmocka_unit_test(test_badly_scaled),
        cmocka_unit_test(test_log_gamma),
        cmocka_unit_test(test_target_accept),
        cmocka_unit_test(test_large_fixed_step),
        cmocka_unit_test(test_conjugate_regression),
        cmocka_unit_test(test_model_density),
        cmocka_unit_test(test_static_hmc),
        cmocka_unit_test(test_threads_bit_identical),
        cmocka_unit_test(test_two_models_on_two_threads),
        cmocka_unit_test(test_first_chain),
        cmocka_unit_test(test_domain_errors_divergences),
        cmocka_unit_test(test_never_finite),
        cmocka_unit_test(test_init_values),
        cmocka_unit_test(test_thin_save_warmup),
        cmocka_unit_test(test_cancel_flag),
        cmocka_unit_test(test_signals),
        cmocka_unit_test(test_progress_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
