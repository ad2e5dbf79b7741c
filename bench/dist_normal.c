/* dist_normal.c — the cost of a distribution's log density plus gradient through the tape,
 * against a hand-written C loop computing the same value and partials, in the same run.
 *
 * Cases (one JSON object each on stdout):
 *   dist_normal          Normal(μ, σ) over 10^6 values, μ a vector leaf, σ a scalar leaf
 *   dist_bernoulli_logit BernoulliLogit(l) over 10^6 values, l a vector leaf
 *   dist_poisson_log     PoissonLog(l) over 10^6 values, l a vector leaf
 *   dist_normal_id_glm   NormalIdGLM(X, α, β, σ), X 100000×20, against two dgemv calls by hand
 * The tape side includes everything a density evaluation does, every repeat: rewinding the
 * tape, making the leaves, the log-density node and the backward pass. The 10^6-vector
 * parameters are leaves referenced in place (em_leaf_ref: no copy, no NaN scan, an adjoint
 * that is allocated but not zeroed), as a caller holding its parameters in an array it keeps
 * unchanged would make them; scalar parameters are copied (em_leaf). The gradient is read from
 * the tape's adjoint arrays. The baseline reads the parameters in place and writes the gradient
 * into an array. Each side runs REPS times, interleaved, and the fastest run is reported. No time
 * is asserted. For Normal, tape_setup_us is the part of ember_us spent rewinding the tape and
 * making the two leaves: a cost of the tape design, paid by any op on a 10^6-vector leaf.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "ember.h"

#define REPS 25
#define LOG_SQRT_2PI 0.91893853320467274178

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e6 * (double)ts.tv_sec + 1e-3 * (double)ts.tv_nsec;
}

static volatile double sink;

static void report(const char *name, size_t n, double e, double b, const char *extra) {
    printf("{\"bench\":\"%s\",\"n\":%zu%s,\"ember_us\":%.1f,\"baseline_us\":%.1f,\"ratio\":%.3f}\n", name, n, extra, e, b,
           e / b);
    fflush(stdout);
}

/* ---- Normal ------------------------------------------------------------------------------------ */

static double base_normal(const double *x, const double *mu, double sigma, size_t n, double *gmu, double *gsig) {
    double is = 1.0 / sigma, ss = 0.0;
    for (size_t i = 0; i < n; i++) {
        double z = (x[i] - mu[i]) * is;
        ss += z * z;
        gmu[i] = z * is;
    }
    *gsig = (ss - (double)n) * is;
    return -0.5 * ss - (double)n * (log(sigma) + LOG_SQRT_2PI);
}

/* *setup_us: the part spent rewinding the tape and making the leaves (the tape's cost, not the
 * distribution's), reported separately to show where the ratio comes from. */
static double ember_normal(em_tape *t, const double *x, const double *mu, double sigma, size_t n, double *gsig,
                           const double **gmu, double *setup_us) {
    double t0 = now_us();
    em_tape_reset(t);
    em_var m = em_leaf_ref(t, mu, n), s = em_leaf_scalar(t, sigma);
    *setup_us = now_us() - t0;
    em_dist d = em_dist_normal(t, m, s);
    em_var lp = em_dist_log_prob(&d, em_const(t, x, n));
    em_backward(t, lp);
    *gsig = em_adjoint(t, s)[0];
    *gmu = em_adjoint(t, m); /* the gradient w.r.t. μ, where the tape left it */
    return em_value_scalar(t, lp);
}

/* ---- BernoulliLogit and PoissonLog ------------------------------------------------------------ */

static double base_bern(const double *y, const double *l, size_t n, double *g) {
    double lp = 0.0;
    for (size_t i = 0; i < n; i++) {
        double li = l[i], e = exp(-fabs(li)), s = li >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
        lp += (y[i] * li - (li > 0 ? li : 0.0)) - log1p(e);
        g[i] = y[i] - s;
    }
    return lp;
}

static double base_pois(const double *y, const double *l, size_t n, double *g) {
    double lp = 0.0;
    for (size_t i = 0; i < n; i++) {
        double el = exp(l[i]);
        lp += y[i] * l[i] - el - lgamma(y[i] + 1.0);
        g[i] = y[i] - el;
    }
    return lp;
}

static double ember_unary(em_tape *t, int pois, const double *y, const double *l, size_t n) {
    em_tape_reset(t);
    em_var lv = em_leaf_ref(t, l, n);
    em_dist d = pois ? em_dist_poisson_log(t, lv) : em_dist_bernoulli_logit(t, lv);
    em_var lp = em_dist_log_prob(&d, em_const(t, y, n));
    em_backward(t, lp);
    return em_value_scalar(t, lp);
}

/* ---- NormalIdGLM ------------------------------------------------------------------------------- */

static double base_glm(const double *X, const double *y, size_t n, size_t p, double alpha, const double *beta,
                       double sigma, double *r, double *g) {
    for (size_t i = 0; i < n; i++) r[i] = y[i] - alpha;
    cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)n, (int)p, -1.0, X, (int)p, beta, 1, 1.0, r, 1);
    double is = 1.0 / sigma, is2 = is * is, ss = 0.0, sr = 0.0;
    for (size_t i = 0; i < n; i++) {
        ss += r[i] * r[i];
        sr += r[i];
    }
    cblas_dgemv(CblasRowMajor, CblasTrans, (int)n, (int)p, is2, X, (int)p, r, 1, 0.0, g + 1, 1);
    g[0] = sr * is2;
    g[p + 1] = ss * is2 * is - (double)n * is;
    return -0.5 * ss * is2 - (double)n * (log(sigma) + LOG_SQRT_2PI);
}

static double ember_glm(em_tape *t, const double *X, const double *y, size_t n, size_t p, const double *theta) {
    em_tape_reset(t);
    em_var a = em_leaf(t, theta, 1), b = em_leaf(t, theta + 1, p), s = em_leaf(t, theta + 1 + p, 1);
    em_dist d = em_dist_normal_id_glm(t, em_const_matrix(t, X, n, p), a, b, s);
    em_var lp = em_dist_log_prob(&d, em_const(t, y, n));
    em_backward(t, lp);
    return em_value_scalar(t, lp);
}

int main(void) {
    size_t n = 1000000;
    double *x = malloc(n * sizeof *x), *mu = malloc(n * sizeof *mu), *g = malloc(n * sizeof *g);
    double *yb = malloc(n * sizeof *yb), *yp = malloc(n * sizeof *yp);
    em_rng *r = em_rng_create(2024, 0);
    for (size_t i = 0; i < n; i++) {
        mu[i] = em_rng_normal(r);
        x[i] = mu[i] + 1.3 * em_rng_normal(r);
        yb[i] = em_rng_uniform(r) < 0.5;
        yp[i] = floor(5.0 * em_rng_uniform(r));
    }
    em_tape *t = em_tape_create();
    double best_e, best_b, gs, gs2, lp_e = 0, lp_b = 0, setup, best_setup = INFINITY;
    const double *gmu_e = NULL;

    /* Normal */
    best_e = best_b = INFINITY;
    for (int k = 0; k < REPS; k++) {
        double t0 = now_us();
        lp_e = ember_normal(t, x, mu, 1.3, n, &gs, &gmu_e, &setup);
        best_setup = fmin(best_setup, setup);
        double t1 = now_us();
        lp_b = base_normal(x, mu, 1.3, n, g, &gs2);
        double t2 = now_us();
        best_e = fmin(best_e, t1 - t0);
        best_b = fmin(best_b, t2 - t1);
    }
    double gmu_diff = 0.0;
    for (size_t i = 0; i < n; i++) gmu_diff = fmax(gmu_diff, fabs(gmu_e[i] - g[i]));
    if (fabs(lp_e - lp_b) > 1e-8 * fabs(lp_b) || fabs(gs - gs2) > 1e-6 * fabs(gs2) || !(gmu_diff < 1e-12))
        fprintf(stderr, "dist_normal: ember and baseline disagree (%g vs %g, gradient w.r.t. mu off by %g)\n", lp_e,
                lp_b, gmu_diff);
    char extra[96];
    snprintf(extra, sizeof extra, ",\"tape_setup_us\":%.1f", best_setup);
    report("dist_normal", n, best_e, best_b, extra);

    /* BernoulliLogit, PoissonLog */
    for (int pois = 0; pois < 2; pois++) {
        const double *y = pois ? yp : yb;
        best_e = best_b = INFINITY;
        for (int k = 0; k < REPS; k++) {
            double t0 = now_us();
            lp_e = ember_unary(t, pois, y, mu, n);
            double t1 = now_us();
            lp_b = pois ? base_pois(y, mu, n, g) : base_bern(y, mu, n, g);
            double t2 = now_us();
            best_e = fmin(best_e, t1 - t0);
            best_b = fmin(best_b, t2 - t1);
        }
        if (fabs(lp_e - lp_b) > 1e-8 * fabs(lp_b))
            fprintf(stderr, "%s: ember and baseline disagree (%g vs %g)\n", pois ? "poisson_log" : "bernoulli_logit", lp_e, lp_b);
        report(pois ? "dist_poisson_log" : "dist_bernoulli_logit", n, best_e, best_b, "");
    }

    /* NormalIdGLM, 100000 × 20 */
    size_t gn = 100000, gp = 20;
    double *X = malloc(gn * gp * sizeof *X), *gy = malloc(gn * sizeof *gy), *res = malloc(gn * sizeof *res);
    double theta[22], grad[22];
    for (size_t i = 0; i < gn * gp; i++) X[i] = em_rng_normal(r);
    for (size_t j = 0; j < gp + 2; j++) theta[j] = 0.3 * em_rng_normal(r);
    theta[gp + 1] = 1.5;
    for (size_t i = 0; i < gn; i++) {
        double m = theta[0];
        for (size_t j = 0; j < gp; j++) m += X[i * gp + j] * theta[1 + j];
        gy[i] = m + 1.5 * em_rng_normal(r);
    }
    best_e = best_b = INFINITY;
    for (int k = 0; k < REPS; k++) {
        double t0 = now_us();
        lp_e = ember_glm(t, X, gy, gn, gp, theta);
        double t1 = now_us();
        lp_b = base_glm(X, gy, gn, gp, theta[0], theta + 1, theta[gp + 1], res, grad);
        double t2 = now_us();
        best_e = fmin(best_e, t1 - t0);
        best_b = fmin(best_b, t2 - t1);
    }
    if (fabs(lp_e - lp_b) > 1e-8 * fabs(lp_b))
        fprintf(stderr, "normal_id_glm: ember and baseline disagree (%g vs %g)\n", lp_e, lp_b);
    report("dist_normal_id_glm", gn, best_e, best_b, ",\"d\":20");
    sink = g[0] + grad[0];

    em_tape_destroy(t);
    em_rng_destroy(r);
    free(x);
    free(mu);
    free(g);
    free(yb);
    free(yp);
    free(X);
    free(gy);
    free(res);
    return 0;
}
