/* test_loo.c — PSIS, PSIS-LOO, WAIC, comparison and LOO-PIT.
 *
 * Two kinds of checks: properties that hold whatever the implementation details (weights sum to
 * one, k̂ recovers the shape of a known Pareto tail, exact importance ratios of known
 * distributions, a matrix small enough to do by hand, clear errors), and agreement with the R
 * package loo 2.5.1 to 1e-8 relative on the log-likelihood matrices and results stored in
 * tests/r (written by tests/r/loo_reference.R; EMBER_LOO_REF names another folder of the same
 * files, which tests/test_loo_r.sh uses to compare with a live R run). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gsl/gsl_randist.h>

#include "util/json.h"
#include "util/testutil.h"

/* ---- helpers ---------------------------------------------------------------------------- */

static double sum_exp(const double *lw, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += exp(lw[i]);
    return s;
}

/* nchains stationary AR(1) chains of n draws each, chain-major */
static double *ar1(size_t nchains, size_t n, double rho, uint64_t seed) {
    double *x = malloc(nchains * n * sizeof *x);
    assert_non_null(x);
    for (size_t c = 0; c < nchains; c++) {
        em_rng *r = em_rng_create(seed, c);
        double v = em_rng_normal(r);
        for (size_t i = 0; i < n; i++) {
            v = rho * v + sqrt(1.0 - rho * rho) * em_rng_normal(r);
            x[c * n + i] = v;
        }
        em_rng_destroy(r);
    }
    return x;
}

/* Log-likelihood S x N of y_i ~ Normal(mu_s, sd) for draws mu_s. */
static double *normal_loglik(const double *mu, size_t S, const double *y, size_t N, double sd) {
    double *ll = malloc(S * N * sizeof *ll);
    assert_non_null(ll);
    for (size_t s = 0; s < S; s++)
        for (size_t i = 0; i < N; i++) ll[s * N + i] = log(gsl_ran_gaussian_pdf(y[i] - mu[s], sd));
    return ll;
}

/* ---- PSIS ------------------------------------------------------------------------------- */

static void test_psis_weights_normalise(void **state) {
    (void)state;
    const size_t S = 4000;
    double *lr = malloc(S * sizeof *lr), *lw = malloc(S * sizeof *lw);
    em_rng *r = em_rng_create(1, 0);
    for (size_t s = 0; s < S; s++) lr[s] = 50.0 + 2.0 * em_rng_normal(r); /* far from 0: the shift matters */
    em_rng_destroy(r);
    em_error err = {0};
    em_psis_diag d;
    assert_int_equal(em_psis(lr, S, 0.8, lw, &d, &err), EM_OK);
    tu_assert_close(sum_exp(lw, S), 1.0, 1e-12, 0.0);
    assert_int_equal(d.tail_len, (size_t)ceil(3.0 * sqrt(S / 0.8)));
    assert_true(d.n_eff > 0.0 && d.n_eff <= 0.8 * S);
    /* the smoothed weights keep the order of the ratios, and none exceeds the largest raw one */
    double maxlr = -INFINITY, maxlw = -INFINITY;
    size_t imax = 0;
    for (size_t s = 0; s < S; s++) {
        if (lr[s] > maxlr) {
            maxlr = lr[s];
            imax = s;
        }
        if (lw[s] > maxlw) maxlw = lw[s];
    }
    assert_true(lw[imax] == maxlw);
    for (size_t s = 0; s < S; s++) assert_true(lw[s] - maxlw <= 1e-12);
    /* in place gives the same */
    assert_int_equal(em_psis(lr, S, 0.8, lr, NULL, &err), EM_OK);
    for (size_t s = 0; s < S; s++) assert_true(lr[s] == lw[s]);
    free(lr);
    free(lw);
}

/* x ~ GPD(k, sigma) by inversion */
static double gpd_draw(em_rng *r, double k, double sigma) {
    double u = em_rng_uniform(r);
    return sigma * expm1(-k * log(u)) / k;
}

static void test_gpdfit_recovers_shape(void **state) {
    (void)state;
    const double ks[] = {0.2, 0.5, 0.9};
    const size_t n = 20000;
    double *x = malloc(n * sizeof *x);
    for (size_t j = 0; j < 3; j++) {
        em_rng *r = em_rng_create(10 + j, 0);
        for (size_t i = 0; i < n; i++) x[i] = gpd_draw(r, ks[j], 2.0);
        em_rng_destroy(r);
        double k, sigma;
        em_error err = {0};
        assert_int_equal(em_gpdfit(x, n, 0, &k, &sigma, &err), EM_OK);
        /* sd of the estimate is about (1 + k) / sqrt(n) = 0.013 at most; 0.05 is 4 sd */
        tu_assert_close(k, ks[j], 0.0, 0.05);
        tu_assert_close(sigma, 2.0, 0.08, 0.0);
        /* the prior pulls k toward 0.5 by 10 / (n + 10) of the distance */
        double kw, sw;
        assert_int_equal(em_gpdfit(x, n, 1, &kw, &sw, &err), EM_OK);
        tu_assert_close(kw, k * n / (n + 10.0) + 5.0 / (n + 10.0), 1e-12, 0.0);
    }
    free(x);
    em_error err = {0};
    double k, sigma;
    const double bad[] = {1.0, -2.0};
    assert_int_equal(em_gpdfit(bad, 2, 1, &k, &sigma, &err), EM_ERR_DOMAIN);
    assert_non_null(strstr(err.msg, "x[1]"));
}

/* Exact importance ratios. Proposal Exp(1), target Exp(λ): the ratio λ e^{(1-λ) x} has a Pareto
 * tail of shape k = 1 - λ exactly. Proposal N(0,1), target N(0, σ²) with σ < 1: bounded ratios,
 * so k̂ stays low and the self-normalised estimate of E[x²] = σ² is accurate. */
static void test_psis_known_ratios(void **state) {
    (void)state;
    const size_t S = 100000;
    double *lr = malloc(S * sizeof *lr), *lw = malloc(S * sizeof *lw), *x = malloc(S * sizeof *x);
    em_error err = {0};
    const double lambdas[] = {0.5, 0.3};
    for (size_t j = 0; j < 2; j++) {
        double lam = lambdas[j], ksum = 0.0;
        for (int rep = 0; rep < 4; rep++) {
            em_rng *r = em_rng_create(100 + 10 * j + rep, 0);
            for (size_t s = 0; s < S; s++) {
                double v = gsl_ran_exponential(r, 1.0);
                lr[s] = log(lam) + (1.0 - lam) * v;
            }
            em_rng_destroy(r);
            em_psis_diag d;
            assert_int_equal(em_psis(lr, S, 1.0, lw, &d, &err), EM_OK);
            ksum += d.pareto_k;
        }
        /* tail of 949 draws: sd of one k̂ about 0.05, of the mean of four 0.025 */
        tu_assert_close(ksum / 4.0, 1.0 - lam, 0.0, 0.08);
    }
    em_rng *r = em_rng_create(7, 0);
    const double sig = 0.8;
    for (size_t s = 0; s < S; s++) {
        x[s] = em_rng_normal(r);
        lr[s] = log(gsl_ran_gaussian_pdf(x[s], sig)) - log(gsl_ran_gaussian_pdf(x[s], 1.0));
    }
    em_rng_destroy(r);
    em_psis_diag d;
    assert_int_equal(em_psis(lr, S, 1.0, lw, &d, &err), EM_OK);
    assert_true(d.pareto_k < 0.3);
    double m2 = 0.0;
    for (size_t s = 0; s < S; s++) m2 += exp(lw[s]) * x[s] * x[s];
    tu_assert_close(m2, sig * sig, 0.03, 0.0);
    free(lr);
    free(lw);
    free(x);
}

static void test_psis_errors(void **state) {
    (void)state;
    double lr[40], lw[40];
    for (int s = 0; s < 40; s++) lr[s] = 0.1 * s;
    em_error err = {0};
    assert_int_equal(em_psis(lr, 20, 1.0, lw, NULL, &err), EM_ERR_ARG);
    assert_non_null(strstr(err.msg, "20 draws"));
    em_error_clear(&err);
    assert_int_equal(em_psis(lr, 21, 1.0, lw, NULL, &err), EM_OK);
    assert_int_equal(em_psis(lr, 40, 0.0, lw, NULL, &err), EM_ERR_ARG);
    em_error_clear(&err);
    lr[17] = NAN;
    assert_int_equal(em_psis(lr, 40, 1.0, lw, NULL, &err), EM_ERR_NONFINITE);
    assert_non_null(strstr(err.msg, "log_ratios[17]"));
    em_error_clear(&err);
    assert_int_equal(em_psis(NULL, 40, 1.0, lw, NULL, &err), EM_ERR_ARG);
    em_error_clear(&err);
    /* a constant tail cannot be fitted: k̂ is Inf and the weights stay raw (uniform here) */
    for (int s = 0; s < 40; s++) lr[s] = 3.0;
    em_psis_diag d;
    assert_int_equal(em_psis(lr, 40, 1.0, lw, &d, &err), EM_OK);
    assert_true(isinf(d.pareto_k));
    for (int s = 0; s < 40; s++) tu_assert_close(lw[s], -log(40.0), 1e-14, 0.0);
    tu_assert_close(em_psis_k_threshold(1000), 2.0 / 3.0, 1e-15, 0.0);
    tu_assert_close(em_psis_k_threshold(100000), 0.7, 0.0, 0.0);
}

/* ---- relative efficiency ------------------------------------------------------------------ */

static void test_relative_eff(void **state) {
    (void)state;
    const size_t C = 4, n = 2000, S = C * n;
    const double rhos[] = {0.0, 0.6};
    for (size_t j = 0; j < 2; j++) {
        double *x = ar1(C, n, rhos[j], 30 + j);
        /* exp(log_lik) = exp(x / 4): close enough to linear that its ESS is x's */
        for (size_t s = 0; s < S; s++) x[s] *= 0.25;
        double r;
        em_error err = {0};
        assert_int_equal(em_relative_eff(x, S, 1, NULL, C, &r, &err), EM_OK);
        tu_assert_close(r, (1.0 - rhos[j]) / (1.0 + rhos[j]), 0.12, 0.0);
        /* chain ids in any order name the same chains */
        int *id = malloc(S * sizeof *id);
        double *perm = malloc(S * sizeof *perm);
        for (size_t s = 0; s < S; s++) {
            size_t c = s % C, i = s / C; /* interleaved: draw i of chain c */
            id[s] = (int)c + 1;
            perm[s] = x[c * n + i];
        }
        double r2;
        assert_int_equal(em_relative_eff(perm, S, 1, id, 0, &r2, &err), EM_OK);
        tu_assert_close(r2, r, 1e-14, 0.0);
        id[5] = 7;
        assert_int_equal(em_relative_eff(perm, S, 1, id, 0, &r2, &err), EM_ERR_SHAPE);
        free(id);
        free(perm);
        free(x);
    }
    em_error err = {0};
    double x[30] = {0}, r;
    assert_int_equal(em_relative_eff(x, 30, 1, NULL, 4, &r, &err), EM_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "30 draws"));
}

/* ---- LOO and WAIC by hand ----------------------------------------------------------------- */

/* Two observations: one whose log-likelihood is the same under every draw, one with two values.
 * Both make every tail ratio equal, so PSIS leaves the raw weights (k̂ = Inf) and LOO is the
 * harmonic-mean identity elpd_i = -log mean_s exp(-ll_si). */
static void test_loo_waic_by_hand(void **state) {
    (void)state;
    const size_t S = 30, N = 2;
    const double c = -1.25, a = -3.0, b = -0.5;
    double ll[60];
    for (size_t s = 0; s < S; s++) {
        ll[s * N] = c;
        ll[s * N + 1] = s % 3 == 0 ? a : b; /* 10 draws at a (the largest ratios: more than the tail of 6) */
    }
    em_loo_options o = {.nchains = 1};
    em_loo_result *l = NULL;
    em_error err = {0};
    assert_int_equal(em_loo(ll, S, N, &o, &l, &err), EM_OK);
    double e1 = -log((10.0 * exp(-a) + 20.0 * exp(-b)) / 30.0);
    double lpd1 = log((10.0 * exp(a) + 20.0 * exp(b)) / 30.0);
    tu_assert_close(l->elpd_i[0], c, 1e-14, 0.0);
    tu_assert_close(l->p_i[0], 0.0, 0.0, 1e-14);
    tu_assert_close(l->elpd_i[1], e1, 1e-14, 0.0);
    tu_assert_close(l->p_i[1], lpd1 - e1, 1e-13, 0.0);
    tu_assert_close(l->looic_i[1], -2.0 * e1, 1e-14, 0.0);
    assert_true(isinf(l->pareto_k[0]) && isinf(l->pareto_k[1]));
    tu_assert_close(l->elpd_loo, c + e1, 1e-14, 0.0);
    /* SE = sqrt(N) sd = |x1 - x2| for two values */
    tu_assert_close(l->se_elpd_loo, fabs(c - e1), 1e-13, 0.0);
    assert_int_equal(l->k_count[EM_K_VERY_BAD], 2);
    assert_true(isnan(l->mcse_elpd_loo));
    /* constant likelihood: r_eff is loo's S/2 of the degenerate autocorrelation */
    tu_assert_close(l->r_eff[0], 0.5, 1e-15, 0.0);
    em_loo_free(l);

    em_waic_result *w = NULL;
    assert_int_equal(em_waic(ll, S, N, &w, &err), EM_OK);
    double mean = (10.0 * a + 20.0 * b) / 30.0;
    double var = (10.0 * (a - mean) * (a - mean) + 20.0 * (b - mean) * (b - mean)) / 29.0;
    tu_assert_close(w->p_i[0], 0.0, 0.0, 1e-15);
    tu_assert_close(w->elpd_i[0], c, 1e-14, 0.0);
    tu_assert_close(w->p_i[1], var, 1e-13, 0.0);
    tu_assert_close(w->elpd_i[1], lpd1 - var, 1e-13, 0.0);
    tu_assert_close(w->waic, -2.0 * (c + lpd1 - var), 1e-13, 0.0);
    assert_int_equal(w->p_waic_high, var > 0.4);
    em_waic_free(w);
}

static void test_loo_errors(void **state) {
    (void)state;
    const size_t S = 40, N = 3;
    double ll[120];
    for (size_t k = 0; k < S * N; k++) ll[k] = -1.0 - 0.01 * (double)(k % 17);
    em_loo_result *l = NULL;
    em_error err = {0};
    ll[2 * N + 1] = NAN;
    assert_int_equal(em_loo(ll, S, N, NULL, &l, &err), EM_ERR_NONFINITE);
    assert_non_null(strstr(err.msg, "observation 1 under draw 2"));
    assert_null(l);
    em_error_clear(&err);
    ll[2 * N + 1] = -INFINITY;
    em_waic_result *w = NULL;
    assert_int_equal(em_waic(ll, S, N, &w, &err), EM_ERR_NONFINITE);
    assert_non_null(strstr(err.msg, "observation 1 under draw 2"));
    em_error_clear(&err);
    ll[2 * N + 1] = -1.0;
    assert_int_equal(em_loo(ll, 20, N, NULL, &l, &err), EM_ERR_ARG);
    assert_non_null(strstr(err.msg, "20 draws"));
    em_error_clear(&err);
    em_loo_options o = {.nchains = 3};
    assert_int_equal(em_loo(ll, S, N, &o, &l, &err), EM_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "3 equal chains"));
    em_error_clear(&err);
    const double r_eff[3] = {1.0, -0.5, 1.0};
    o = (em_loo_options){.r_eff = r_eff};
    assert_int_equal(em_loo(ll, S, N, &o, &l, &err), EM_ERR_ARG);
    assert_non_null(strstr(err.msg, "r_eff[1]"));
    em_error_clear(&err);

    /* comparing models on different observations */
    em_loo_result *a = NULL, *b = NULL;
    assert_int_equal(em_loo(ll, S, N, NULL, &a, &err), EM_OK);
    assert_int_equal(em_loo(ll, S, N - 1, NULL, &b, &err), EM_OK);
    const em_loo_result *fits[2] = {a, b};
    em_loo_comparison *c = NULL;
    assert_int_equal(em_loo_compare(fits, 2, NULL, &c, &err), EM_ERR_SHAPE);
    assert_non_null(strstr(err.msg, "model 1 has 2 observations"));
    em_error_clear(&err);
    assert_int_equal(em_loo_compare(fits, 1, NULL, &c, &err), EM_ERR_ARG);
    em_error_clear(&err);
    assert_int_equal(em_loo_set_exact(a, 3, -1.0, &err), EM_ERR_INDEX);
    em_loo_free(a);
    em_loo_free(b);
}

/* em_loo's shortcuts (the weights outside the tail as divisions of the likelihoods, a log-space
 * sum when the likelihoods span more than e^700) against em_psis on the same ratios and the
 * definitions written out; chain ids against the equivalent chain count. */
static void test_loo_matches_psis(void **state) {
    (void)state;
    const size_t S = 600, N = 5;
    const double spread[5] = {0.05, 1.0, 4.0, 40.0, 300.0}; /* the last spans about e^1800 */
    double *ll = malloc(S * N * sizeof *ll), *lr = malloc(S * sizeof *lr), *lw = malloc(S * sizeof *lw);
    em_rng *r = em_rng_create(77, 0);
    for (size_t s = 0; s < S; s++)
        for (size_t i = 0; i < N; i++) ll[s * N + i] = -1.0 - spread[i] * fabs(em_rng_normal(r));
    em_rng_destroy(r);
    double ones[5] = {1, 1, 1, 1, 1};
    em_loo_options o = {.r_eff = ones, .save_log_weights = 1};
    em_loo_result *l = NULL;
    em_error err = {0};
    assert_int_equal(em_loo(ll, S, N, &o, &l, &err), EM_OK);
    for (size_t i = 0; i < N; i++) {
        for (size_t s = 0; s < S; s++) lr[s] = -ll[s * N + i];
        em_psis_diag d;
        assert_int_equal(em_psis(lr, S, 1.0, lw, &d, &err), EM_OK);
        long double mx = -INFINITY, sum = 0.0L, mxl = -INFINITY, suml = 0.0L;
        for (size_t s = 0; s < S; s++) {
            tu_assert_close(l->log_weights[s * N + i], lw[s], 1e-12, 1e-12);
            if (ll[s * N + i] + lw[s] > mx) mx = ll[s * N + i] + lw[s];
            if (ll[s * N + i] > mxl) mxl = ll[s * N + i];
        }
        for (size_t s = 0; s < S; s++) {
            sum += expl(ll[s * N + i] + lw[s] - mx);
            suml += expl(ll[s * N + i] - mxl);
        }
        double elpd = (double)(mx + logl(sum)), lpd = (double)(mxl + logl(suml)) - log((double)S);
        tu_assert_close(l->elpd_i[i], elpd, 1e-12, 0.0);
        tu_assert_close(l->lpd_i[i], lpd, 1e-13, 0.0);
        tu_assert_close(l->pareto_k[i], d.pareto_k, 1e-13, 0.0);
        tu_assert_close(l->n_eff[i], d.n_eff, 1e-12, 0.0);
        assert_true(isfinite(l->mcse_elpd_i[i]) && l->mcse_elpd_i[i] >= 0.0);
    }
    em_loo_free(l);

    /* 3 chains given by id (draw s in chain s % 3 + 1, interleaved) or chain-major */
    double *perm = malloc(S * N * sizeof *perm);
    int *id = malloc(S * sizeof *id);
    const size_t per = S / 3;
    for (size_t s = 0; s < S; s++) {
        size_t c = s % 3, t = s / 3;
        id[s] = (int)c + 1;
        memcpy(perm + s * N, ll + (c * per + t) * N, N * sizeof *perm);
    }
    em_loo_result *a = NULL, *b = NULL;
    em_loo_options oc = {.nchains = 3}, oi = {.chain_id = id};
    assert_int_equal(em_loo(ll, S, N, &oc, &a, &err), EM_OK);
    assert_int_equal(em_loo(perm, S, N, &oi, &b, &err), EM_OK);
    for (size_t i = 0; i < N; i++) {
        tu_assert_close(b->r_eff[i], a->r_eff[i], 1e-14, 0.0);
        tu_assert_close(b->elpd_i[i], a->elpd_i[i], 1e-12, 0.0);
    }
    em_loo_free(a);
    em_loo_free(b);
    free(perm);
    free(id);
    free(ll);
    free(lr);
    free(lw);
}

/* ---- exact replacement and CSV --------------------------------------------------------------- */

static void test_set_exact_and_csv(void **state) {
    (void)state;
    /* a Normal model with an outlier: its k̂ is high; replacing it with an exact value redoes the
     * totals as if that observation had been refitted */
    const size_t S = 2000, N = 15;
    double y[15], *mu = malloc(S * sizeof *mu);
    em_rng *r = em_rng_create(3, 0);
    for (size_t i = 0; i < N; i++) y[i] = em_rng_normal(r);
    y[4] = 16.0;
    double ybar = 0.0;
    for (size_t i = 0; i < N; i++) ybar += y[i] / (double)N;
    for (size_t s = 0; s < S; s++) mu[s] = ybar + em_rng_normal(r) / sqrt((double)N);
    em_rng_destroy(r);
    double *ll = normal_loglik(mu, S, y, N, 1.0);
    em_loo_result *l = NULL;
    em_error err = {0};
    assert_int_equal(em_loo(ll, S, N, NULL, &l, &err), EM_OK);
    assert_true(l->pareto_k[4] > 0.7);
    assert_true(isnan(l->mcse_elpd_loo));
    /* the exact LOO predictive of y_4 given the others: Normal(mean of the rest, 1 + 1/(N-1)) */
    double rest = (ybar * N - y[4]) / (double)(N - 1);
    double exact = log(gsl_ran_gaussian_pdf(y[4] - rest, sqrt(1.0 + 1.0 / (double)(N - 1))));
    double before = l->elpd_loo, old = l->elpd_i[4];
    assert_int_equal(em_loo_set_exact(l, 4, exact, &err), EM_OK);
    tu_assert_close(l->elpd_loo, before - old + exact, 1e-12, 0.0);
    tu_assert_close(l->p_i[4], l->lpd_i[4] - exact, 1e-14, 0.0);
    assert_true(l->exact[4] && l->pareto_k[4] == 0.0 && l->mcse_elpd_i[4] == 0.0);
    double sum_p = 0.0;
    for (size_t i = 0; i < N; i++) sum_p += l->p_i[i];
    tu_assert_close(l->p_loo, sum_p, 1e-12, 0.0);
    assert_false(isnan(l->mcse_elpd_loo));
    assert_int_equal(l->k_count[EM_K_BAD] + l->k_count[EM_K_VERY_BAD], 0);

    char dir[] = "/tmp/ember_loo_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/pointwise.csv", dir);
    assert_int_equal(em_loo_write_csv(l, path, &err), EM_OK);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[1024];
    assert_non_null(fgets(line, sizeof line, f));
    assert_string_equal(line, "obs,elpd_loo,mcse_elpd_loo,p_loo,looic,influence_pareto_k,n_eff,r_eff,exact\n");
    size_t rows = 0;
    while (fgets(line, sizeof line, f)) {
        rows++;
        if (rows == 5) {
            assert_int_equal(strtol(line, NULL, 10), 5);
            double v = strtod(strchr(line, ',') + 1, NULL);
            assert_true(v == exact); /* %.17g round-trips */
            assert_non_null(strstr(line, ",1\n"));
        }
    }
    fclose(f);
    assert_int_equal(rows, N);
    unlink(path);
    snprintf(path, sizeof path, "%s/no/such/dir/p.csv", dir);
    assert_int_equal(em_loo_write_csv(l, path, &err), EM_ERR_IO);
    rmdir(dir);
    em_loo_free(l);
    free(ll);
    free(mu);
}

/* ---- LOO-PIT -------------------------------------------------------------------------------- */

static void test_loo_pit(void **state) {
    (void)state;
    /* y_i ~ N(θ, 1), θ's posterior N(ybar, 1/N): the model is right, so LOO-PIT is uniform;
     * a model that claims sd 0.4 is too sure, and its PIT piles up at 0 and 1 */
    const size_t S = 2000, N = 200;
    double *y = malloc(N * sizeof *y), *mu = malloc(S * sizeof *mu);
    double *yrep = malloc(S * N * sizeof *yrep), *pit = malloc(N * sizeof *pit);
    em_rng *r = em_rng_create(11, 0);
    for (size_t i = 0; i < N; i++) y[i] = 1.0 + em_rng_normal(r);
    double ybar = 0.0;
    for (size_t i = 0; i < N; i++) ybar += y[i] / (double)N;
    for (size_t s = 0; s < S; s++) mu[s] = ybar + em_rng_normal(r) / sqrt((double)N);
    const double sds[2] = {1.0, 0.4};
    double pvals[2];
    em_error err = {0};
    for (int m = 0; m < 2; m++) {
        for (size_t s = 0; s < S; s++)
            for (size_t i = 0; i < N; i++) yrep[s * N + i] = mu[s] + sds[m] * em_rng_normal(r);
        double *ll = normal_loglik(mu, S, y, N, sds[m]);
        em_loo_options o = {.save_log_weights = 1};
        em_loo_result *l = NULL;
        assert_int_equal(em_loo(ll, S, N, &o, &l, &err), EM_OK);
        assert_non_null(l->log_weights);
        for (size_t i = 0; i < N; i += 37) {
            double t = 0.0;
            for (size_t s = 0; s < S; s++) t += exp(l->log_weights[s * N + i]);
            tu_assert_close(t, 1.0, 1e-12, 0.0);
        }
        assert_int_equal(em_loo_pit(yrep, y, l->log_weights, S, N, EM_PIT_MID, NULL, pit, &err), EM_OK);
        double D;
        assert_int_equal(em_ks_uniform(pit, N, &D, &pvals[m], &err), EM_OK);
        if (m == 0) {
            char dir[] = "/tmp/ember_pit_XXXXXX";
            assert_non_null(mkdtemp(dir));
            assert_int_equal(em_loo_pit_figure(dir, "loo_pit", pit, N, &err), EM_OK);
            char cmd[512];
            snprintf(cmd, sizeof cmd, "test -s %s/loo_pit.dat && grep -q 'loo_pit.dat' %s/loo_pit.gp", dir, dir);
            assert_int_equal(system(cmd), 0);
            /* gnuplot, when there, must accept the script */
            if (system("command -v gnuplot >/dev/null 2>&1") == 0) {
                snprintf(cmd, sizeof cmd, "cd %s && gnuplot loo_pit.gp 2>/dev/null && test -s loo_pit.png", dir);
                assert_int_equal(system(cmd), 0);
            }
            snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
            assert_int_equal(system(cmd), 0);
        }
        em_loo_free(l);
        free(ll);
    }
    em_rng_destroy(r);
    assert_true(pvals[0] > 0.01);
    assert_true(pvals[1] < 1e-6);

    /* discrete: replicates that tie with y. Draw weights uniform over 4 draws. */
    const double yr[4 * 2] = {0, 3, 1, 3, 1, 2, 2, 5};
    const double yd[2] = {1, 3};
    double lw[8];
    for (int k = 0; k < 8; k++) lw[k] = log(0.25);
    double p[2];
    assert_int_equal(em_loo_pit(yr, yd, lw, 4, 2, EM_PIT_MID, NULL, p, &err), EM_OK);
    tu_assert_close(p[0], 0.25 + 0.5 * 0.5, 1e-15, 0.0); /* below: {0}; ties: {1, 1} */
    tu_assert_close(p[1], 0.25 + 0.5 * 0.5, 1e-15, 0.0); /* below: {2}; ties: {3, 3} */
    em_rng *g = em_rng_create(5, 0);
    for (int rep = 0; rep < 50; rep++) {
        assert_int_equal(em_loo_pit(yr, yd, lw, 4, 2, EM_PIT_RANDOMIZED, g, p, &err), EM_OK);
        assert_true(p[0] >= 0.25 && p[0] <= 0.75 && p[1] >= 0.25 && p[1] <= 0.75);
    }
    em_rng_destroy(g);
    assert_int_equal(em_loo_pit(yr, yd, lw, 4, 2, EM_PIT_RANDOMIZED, NULL, p, &err), EM_ERR_ARG);
    assert_non_null(strstr(err.msg, "rng"));
    free(y);
    free(mu);
    free(yrep);
    free(pit);
}

/* ---- agreement with R's loo 2.5.1 ------------------------------------------------------------- */

static const char *ref_dir(void) {
    const char *d = getenv("EMBER_LOO_REF");
    if (d && *d) return d;
    static const char *const dirs[] = {"tests/r", "../tests/r", "../../tests/r", "../../../tests/r"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        char probe[256];
        snprintf(probe, sizeof probe, "%s/loo_compare.json", dirs[i]);
        if (access(probe, R_OK) == 0) return dirs[i];
    }
    return "tests/r";
}

static tu_json *read_ref(const char *name) {
    char path[512], msg[256];
    snprintf(path, sizeof path, "%s/%s", ref_dir(), name);
    tu_json *j = tu_json_read_file(path, msg, sizeof msg);
    if (!j) fail_msg("%s", msg);
    return j;
}

/* Numbers of an array, null as NaN; n values expected. */
static double *ref_vec(const tu_json *doc, const char *key, size_t n) {
    const tu_json *a = tu_json_get(doc, key);
    if (!a || a->type != TU_JSON_ARRAY || tu_json_len(a) != n)
        fail_msg("reference: '%s' is not an array of %zu values", key, n);
    double *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = tu_json_number(tu_json_at(a, i));
    return v;
}

typedef struct agreement {
    const char *what;
    double max_rel;
} agreement;

enum { NQ = 16 };
static agreement agree[NQ] = {
    {"r_eff", 0},   {"elpd_loo_i", 0}, {"p_loo_i", 0},      {"looic_i", 0},     {"mcse_elpd_loo_i", 0},
    {"pareto_k", 0}, {"n_eff", 0},     {"loo totals+SE", 0}, {"mcse_elpd_loo", 0}, {"waic pointwise", 0},
    {"waic totals+SE", 0}, {"psis log weights", 0}, {"psis k", 0}, {"elpd_diff", 0}, {"se_diff", 0},
    {"ks D, p", 0}};

static void close_to(int q, const char *ctx, size_t i, double mine, double ref) {
    if (isnan(ref) || isnan(mine)) {
        if (isnan(ref) != isnan(mine)) fail_msg("%s [%zu]: %.17g here, %.17g in loo", ctx, i, mine, ref);
        return;
    }
    double d = fabs(mine - ref), rel = ref != 0.0 ? d / fabs(ref) : d;
    if (rel > agree[q].max_rel) agree[q].max_rel = rel;
    if (d > 1e-8 * fabs(ref) + 1e-300)
        fail_msg("%s [%zu]: %.17g here, %.17g in loo (rel. diff %.3g)", ctx, i, mine, ref, rel);
}

static void close_vec(int q, const char *ctx, const double *mine, const double *ref, size_t n) {
    for (size_t i = 0; i < n; i++) close_to(q, ctx, i, mine[i], ref[i]);
}

/* Capture what a print function writes. */
static char *printed(em_status (*fn)(FILE *, const void *, int, em_error *), const void *x) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    em_error err = {0};
    assert_int_equal(fn(f, x, 1, &err), EM_OK);
    fclose(f);
    return buf;
}

static em_status print_loo(FILE *f, const void *x, int d, em_error *e) { return em_loo_print(f, x, d, e); }
static em_status print_waic(FILE *f, const void *x, int d, em_error *e) { return em_waic_print(f, x, d, e); }
static em_status print_cmp(FILE *f, const void *x, int d, em_error *e) { return em_loo_comparison_print(f, x, d, e); }

static void same_text(const char *what, const char *mine, const tu_json *ref) {
    if (!ref || ref->type != TU_JSON_STRING) fail_msg("reference: no printed %s", what);
    if (strcmp(mine, ref->string) != 0)
        fail_msg("%s prints differently from loo.\n--- here:\n%s--- loo:\n%s", what, mine, ref->string);
}

static const char *const cases[] = {"normal", "normal_intercept", "bernoulli", "poisson"};

static em_loo_result *check_case(const char *name, em_loo_result **keep) {
    char file[64];
    snprintf(file, sizeof file, "loo_%s.json", name);
    tu_json *doc = read_ref(file);
    size_t S = (size_t)tu_json_number(tu_json_get(doc, "S")), N = (size_t)tu_json_number(tu_json_get(doc, "N"));
    size_t C = (size_t)tu_json_number(tu_json_get(doc, "nchains"));
    double *ll;
    size_t rows, cols;
    char msg[256];
    if (tu_json_matrix(tu_json_get(doc, "log_lik"), &ll, &rows, &cols, msg, sizeof msg)) fail_msg("%s: %s", name, msg);
    assert_int_equal(rows, S);
    assert_int_equal(cols, N);
    em_error err = {0};

    double *r_eff = malloc(N * sizeof *r_eff), *ref = ref_vec(doc, "r_eff", N);
    assert_int_equal(em_relative_eff(ll, S, N, NULL, C, r_eff, &err), EM_OK);
    close_vec(0, name, r_eff, ref, N);
    free(ref);

    em_loo_options o = {.nchains = C};
    em_loo_result *l = NULL;
    if (em_loo(ll, S, N, &o, &l, &err) != EM_OK) fail_msg("%s: %s", name, err.msg);
    static const char *const pw[] = {"elpd_loo", "p_loo", "looic", "mcse_elpd_loo", "pareto_k", "n_eff"};
    double *mine[] = {l->elpd_i, l->p_i, l->looic_i, l->mcse_elpd_i, l->pareto_k, l->n_eff};
    for (int q = 0; q < 6; q++) {
        ref = ref_vec(doc, pw[q], N);
        char ctx[96];
        snprintf(ctx, sizeof ctx, "%s: %s", name, pw[q]);
        close_vec(1 + q, ctx, mine[q], ref, N);
        free(ref);
    }
    ref = ref_vec(doc, "estimates", 6);
    const double tot[6] = {l->elpd_loo, l->se_elpd_loo, l->p_loo, l->se_p_loo, l->looic, l->se_looic};
    close_vec(7, name, tot, ref, 6);
    free(ref);
    close_to(8, name, 0, l->mcse_elpd_loo, tu_json_number(tu_json_get(doc, "mcse_loo")));
    char *text = printed(print_loo, l);
    same_text(name, text, tu_json_get(doc, "print_loo"));
    free(text);

    em_waic_result *w = NULL;
    assert_int_equal(em_waic(ll, S, N, &w, &err), EM_OK);
    static const char *const wk[] = {"elpd_waic", "p_waic", "waic"};
    double *wm[] = {w->elpd_i, w->p_i, w->waic_i};
    for (int q = 0; q < 3; q++) {
        ref = ref_vec(doc, wk[q], N);
        close_vec(9, name, wm[q], ref, N);
        free(ref);
    }
    ref = ref_vec(doc, "waic_estimates", 6);
    const double wt[6] = {w->elpd_waic, w->se_elpd_waic, w->p_waic, w->se_p_waic, w->waic, w->se_waic};
    close_vec(10, name, wt, ref, 6);
    free(ref);
    text = printed(print_waic, w);
    same_text(name, text, tu_json_get(doc, "print_waic"));
    free(text);
    em_waic_free(w);

    /* em_psis on the first observation's leave-one-out ratios */
    double *lr = malloc(S * sizeof *lr);
    for (size_t s = 0; s < S; s++) lr[s] = -ll[s * N];
    em_psis_diag d;
    assert_int_equal(em_psis(lr, S, r_eff[0], lr, &d, &err), EM_OK);
    ref = ref_vec(doc, "psis1_log_weights", S);
    close_vec(11, name, lr, ref, S);
    free(ref);
    close_to(12, name, 0, d.pareto_k, tu_json_number(tu_json_get(doc, "psis1_pareto_k")));
    free(lr);
    free(r_eff);

    if (keep) {
        /* the same matrix with r_eff = 1, for the comparison's third model */
        double *ones = malloc(N * sizeof *ones);
        for (size_t i = 0; i < N; i++) ones[i] = 1.0;
        em_loo_options o1 = {.r_eff = ones};
        assert_int_equal(em_loo(ll, S, N, &o1, keep, &err), EM_OK);
        free(ones);
    }
    free(ll);
    tu_json_free(doc);
    return l;
}

static void test_against_loo(void **state) {
    (void)state;
    em_loo_result *fits[3] = {NULL, NULL, NULL};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        em_loo_result *l = check_case(cases[c], c == 0 ? &fits[2] : NULL);
        if (c < 2) fits[c] = l;
        else em_loo_free(l);
    }
    tu_json *doc = read_ref("loo_compare.json");
    double *ref = ref_vec(doc, "normal_reff1_elpd_loo", fits[2]->N);
    close_vec(1, "normal, r_eff = 1", fits[2]->elpd_i, ref, fits[2]->N);
    free(ref);
    const char *const names[3] = {"normal", "normal_intercept", "normal_reff1"};
    em_loo_comparison *cmp = NULL;
    em_error err = {0};
    assert_int_equal(em_loo_compare((const em_loo_result *const *)fits, 3, names, &cmp, &err), EM_OK);
    double *ord = ref_vec(doc, "order", 3);
    for (size_t k = 0; k < 3; k++) assert_int_equal(cmp->order[k], (size_t)ord[k]);
    free(ord);
    ref = ref_vec(doc, "elpd_diff", 3);
    close_vec(13, "elpd_diff", cmp->elpd_diff, ref, 3);
    free(ref);
    ref = ref_vec(doc, "se_diff", 3);
    close_vec(14, "se_diff", cmp->se_diff, ref, 3);
    free(ref);
    char *text = printed(print_cmp, cmp);
    same_text("loo_compare", text, tu_json_get(doc, "print_compare"));
    free(text);
    em_loo_comparison_free(cmp);

    const size_t ns[2] = {30, 150};
    for (int t = 0; t < 2; t++) {
        char ku[16], kd[16], kp[16];
        snprintf(ku, sizeof ku, "ks%zu_u", ns[t]);
        snprintf(kd, sizeof kd, "ks%zu_D", ns[t]);
        snprintf(kp, sizeof kp, "ks%zu_p", ns[t]);
        double *u = ref_vec(doc, ku, ns[t]), D, p;
        assert_int_equal(em_ks_uniform(u, ns[t], &D, &p, &err), EM_OK);
        close_to(15, kd, 0, D, tu_json_number(tu_json_get(doc, kd)));
        /* R's pkstwo sums its series to 1e-6 (its default tol) below sqrt(n) D = 1 and Marsaglia et
         * al.'s algorithm is exact to about 1e-13; both are far inside 1e-8 relative here */
        close_to(15, kp, 0, p, tu_json_number(tu_json_get(doc, kp)));
        free(u);
    }
    tu_json_free(doc);
    for (int k = 0; k < 3; k++) em_loo_free(fits[k]);
    fprintf(stderr, "agreement with loo 2.5.1 (%s), largest relative difference:\n", ref_dir());
    for (int q = 0; q < NQ; q++) fprintf(stderr, "  %-18s %.2g\n", agree[q].what, agree[q].max_rel);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_psis_weights_normalise),
        cmocka_unit_test(test_gpdfit_recovers_shape),
        cmocka_unit_test(test_psis_known_ratios),
        cmocka_unit_test(test_psis_errors),
        cmocka_unit_test(test_relative_eff),
        cmocka_unit_test(test_loo_waic_by_hand),
        cmocka_unit_test(test_loo_errors),
        cmocka_unit_test(test_loo_matches_psis),
        cmocka_unit_test(test_set_exact_and_csv),
        cmocka_unit_test(test_loo_pit),
        cmocka_unit_test(test_against_loo),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
