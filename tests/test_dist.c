/* test_dist.c — univariate families: log densities against GSL's pdfs, every gradient against
 * finite differences (scalar, vector and mixed parameters, broadcast values), sampling (KS or
 * chi-square against GSL's CDFs, mean and variance), rsample, bad parameters and values.
 * Multivariate families and KL are in test_dist_multi.c, the fused GLMs in test_dist_glm.c.
 *
 * Sampling tests are seeded, so they are deterministic; their critical values are set at a
 * false-alarm rate of alpha = 1e-4 per test, so a correct sampler would fail one with a new
 * seed only once in ten thousand. */
#include "util/testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_cdf.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_sf_gamma.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

typedef em_dist (*mk_fn)(em_tape *t, const em_var *p);

static em_dist mk_normal(em_tape *t, const em_var *p) { return em_dist_normal(t, p[0], p[1]); }
static em_dist mk_half_normal(em_tape *t, const em_var *p) { return em_dist_half_normal(t, p[0]); }
static em_dist mk_lognormal(em_tape *t, const em_var *p) { return em_dist_lognormal(t, p[0], p[1]); }
static em_dist mk_uniform(em_tape *t, const em_var *p) { return em_dist_uniform(t, p[0], p[1]); }
static em_dist mk_exponential(em_tape *t, const em_var *p) { return em_dist_exponential(t, p[0]); }
static em_dist mk_gamma(em_tape *t, const em_var *p) { return em_dist_gamma(t, p[0], p[1]); }
static em_dist mk_inv_gamma(em_tape *t, const em_var *p) { return em_dist_inv_gamma(t, p[0], p[1]); }
static em_dist mk_beta(em_tape *t, const em_var *p) { return em_dist_beta(t, p[0], p[1]); }
static em_dist mk_cauchy(em_tape *t, const em_var *p) { return em_dist_cauchy(t, p[0], p[1]); }
static em_dist mk_half_cauchy(em_tape *t, const em_var *p) { return em_dist_half_cauchy(t, p[0]); }
static em_dist mk_student_t(em_tape *t, const em_var *p) { return em_dist_student_t(t, p[0], p[1], p[2]); }
static em_dist mk_laplace(em_tape *t, const em_var *p) { return em_dist_laplace(t, p[0], p[1]); }
static em_dist mk_logistic(em_tape *t, const em_var *p) { return em_dist_logistic(t, p[0], p[1]); }
static em_dist mk_weibull(em_tape *t, const em_var *p) { return em_dist_weibull(t, p[0], p[1]); }
static em_dist mk_bernoulli(em_tape *t, const em_var *p) { return em_dist_bernoulli(t, p[0]); }
static em_dist mk_bernoulli_logit(em_tape *t, const em_var *p) { return em_dist_bernoulli_logit(t, p[0]); }
static em_dist mk_poisson(em_tape *t, const em_var *p) { return em_dist_poisson(t, p[0]); }
static em_dist mk_poisson_log(em_tape *t, const em_var *p) { return em_dist_poisson_log(t, p[0]); }
static em_dist mk_nb2(em_tape *t, const em_var *p) { return em_dist_neg_binomial2(t, p[0], p[1]); }
static const double binom_N[6] = {10, 3, 7, 20, 1, 5};
static em_dist mk_binomial_logit(em_tape *t, const em_var *p) {
    size_t n = em_len(t, p[0]);
    return em_dist_binomial_logit(t, binom_N, n == 1 ? 1 : n, p[0]);
}

/* log of GSL's density at x for parameters p (the reference) */
static double ref_normal(double x, const double *p) { return log(gsl_ran_gaussian_pdf(x - p[0], p[1])); }
static double ref_half_normal(double x, const double *p) { return log(2.0 * gsl_ran_gaussian_pdf(x, p[0])); }
static double ref_lognormal(double x, const double *p) { return log(gsl_ran_lognormal_pdf(x, p[0], p[1])); }
static double ref_uniform(double x, const double *p) { return log(gsl_ran_flat_pdf(x, p[0], p[1])); }
static double ref_exponential(double x, const double *p) { return log(gsl_ran_exponential_pdf(x, 1.0 / p[0])); }
static double ref_gamma(double x, const double *p) { return log(gsl_ran_gamma_pdf(x, p[0], 1.0 / p[1])); }
static double ref_inv_gamma(double x, const double *p) {
    /* Y = 1/X with X ~ Gamma(a, rate b): p_Y(y) = p_X(1/y) / y² */
    return log(gsl_ran_gamma_pdf(1.0 / x, p[0], 1.0 / p[1])) - 2.0 * log(x);
}
static double ref_beta(double x, const double *p) { return log(gsl_ran_beta_pdf(x, p[0], p[1])); }
static double ref_cauchy(double x, const double *p) { return log(gsl_ran_cauchy_pdf(x - p[0], p[1])); }
static double ref_half_cauchy(double x, const double *p) { return log(2.0 * gsl_ran_cauchy_pdf(x, p[0])); }
static double ref_student_t(double x, const double *p) {
    return log(gsl_ran_tdist_pdf((x - p[1]) / p[2], p[0]) / p[2]);
}
static double ref_laplace(double x, const double *p) { return log(gsl_ran_laplace_pdf(x - p[0], p[1])); }
static double ref_logistic(double x, const double *p) { return log(gsl_ran_logistic_pdf(x - p[0], p[1])); }
static double ref_weibull(double x, const double *p) { return log(gsl_ran_weibull_pdf(x, p[1], p[0])); }
static double ref_bernoulli(double x, const double *p) { return log(gsl_ran_bernoulli_pdf((unsigned)x, p[0])); }
static double ref_bernoulli_logit(double x, const double *p) {
    return log(gsl_ran_bernoulli_pdf((unsigned)x, 1.0 / (1.0 + exp(-p[0]))));
}
static double ref_poisson(double x, const double *p) { return log(gsl_ran_poisson_pdf((unsigned)x, p[0])); }
static double ref_poisson_log(double x, const double *p) { return log(gsl_ran_poisson_pdf((unsigned)x, exp(p[0]))); }
static double ref_nb2(double x, const double *p) {
    return log(gsl_ran_negative_binomial_pdf((unsigned)x, p[1] / (p[0] + p[1]), p[1]));
}
static double ref_binomial_logit(double x, const double *p) {
    return log(gsl_ran_binomial_pdf((unsigned)x, 1.0 / (1.0 + exp(-p[0])), (unsigned)binom_N[0]));
}

typedef struct family {
    const char *name;
    mk_fn mk;
    double (*ref)(double x, const double *p);
    int np;
    int discrete;
    double plo[3], phi[3]; /* parameter ranges for random tests */
    double xlo, xhi;       /* value range (continuous) or max count (discrete: xhi) */
} family;

static const family families[] = {
    {"Normal", mk_normal, ref_normal, 2, 0, {-2, 0.5}, {2, 3}, -6, 6},
    {"HalfNormal", mk_half_normal, ref_half_normal, 1, 0, {0.5}, {3}, 0.01, 6},
    {"LogNormal", mk_lognormal, ref_lognormal, 2, 0, {-1, 0.3}, {1, 1.5}, 0.05, 8},
    {"Uniform", mk_uniform, ref_uniform, 2, 0, {-3, 1}, {-1.5, 3}, -1.4, 0.9},
    {"Exponential", mk_exponential, ref_exponential, 1, 0, {0.3}, {3}, 0.01, 10},
    {"Gamma", mk_gamma, ref_gamma, 2, 0, {0.5, 0.3}, {5, 3}, 0.05, 12},
    {"InverseGamma", mk_inv_gamma, ref_inv_gamma, 2, 0, {0.5, 0.3}, {5, 3}, 0.05, 12},
    {"Beta", mk_beta, ref_beta, 2, 0, {0.4, 0.4}, {5, 5}, 0.02, 0.98},
    {"Cauchy", mk_cauchy, ref_cauchy, 2, 0, {-2, 0.5}, {2, 3}, -30, 30},
    {"HalfCauchy", mk_half_cauchy, ref_half_cauchy, 1, 0, {0.5}, {3}, 0.0, 30},
    {"StudentT", mk_student_t, ref_student_t, 3, 0, {0.7, -2, 0.5}, {30, 2, 3}, -20, 20},
    {"Laplace", mk_laplace, ref_laplace, 2, 0, {-2, 0.5}, {2, 3}, -10, 10},
    {"Logistic", mk_logistic, ref_logistic, 2, 0, {-2, 0.5}, {2, 3}, -30, 30},
    {"Bernoulli", mk_bernoulli, ref_bernoulli, 1, 1, {0.05}, {0.95}, 0, 1},
    {"BernoulliLogit", mk_bernoulli_logit, ref_bernoulli_logit, 1, 1, {-4}, {4}, 0, 1},
    {"Poisson", mk_poisson, ref_poisson, 1, 1, {0.3}, {8}, 0, 15},
    {"PoissonLog", mk_poisson_log, ref_poisson_log, 1, 1, {-1}, {2.5}, 0, 15},
    {"NegBinomial2", mk_nb2, ref_nb2, 2, 1, {0.5, 0.5}, {8, 10}, 0, 20},
    {"BinomialLogit", mk_binomial_logit, ref_binomial_logit, 1, 1, {-3}, {3}, 0, 10},
    {"Weibull", mk_weibull, ref_weibull, 2, 0, {0.5, 0.5}, {4, 3}, 0.05, 6},
};
#define NFAM (sizeof families / sizeof families[0])

/* One log density on a fresh tape: scalar parameters and value. */
static double lp_scalar(const family *f, const double *p, double x, em_status *st) {
    em_tape *t = em_tape_create();
    em_var pv[3];
    for (int k = 0; k < f->np; k++) pv[k] = em_scalar(t, p[k]);
    em_dist d = f->mk(t, pv);
    double lp = em_value_scalar(t, em_dist_log_prob(&d, em_scalar(t, x)));
    *st = em_tape_status(t);
    em_tape_destroy(t);
    return lp;
}

static void test_log_prob_vs_gsl(void **state) {
    (void)state;
    em_rng *r = em_rng_create(11, 0);
    for (size_t fi = 0; fi < NFAM; fi++) {
        const family *f = &families[fi];
        for (int rep = 0; rep < 200; rep++) {
            double p[3], x;
            for (int k = 0; k < f->np; k++) p[k] = f->plo[k] + (f->phi[k] - f->plo[k]) * em_rng_uniform(r);
            if (f->discrete) x = floor((f->xhi + 1) * em_rng_uniform(r));
            else x = f->xlo + (f->xhi - f->xlo) * em_rng_uniform(r);
            if (fi == 3) { /* Uniform: hi above lo, x inside */
                p[1] = p[0] + 0.5 + 3.0 * em_rng_uniform(r);
                x = p[0] + (p[1] - p[0]) * em_rng_uniform(r);
            }
            em_status st;
            double got = lp_scalar(f, p, x, &st), want = f->ref(x, p);
            if (st != EM_OK) fail_msg("%s: unexpected error at x=%g", f->name, x);
            if (!(fabs(got - want) <= 1e-10 * fabs(want) + 1e-12))
                fail_msg("%s: log p(%.17g | %g, %g, %g) = %.17g, GSL gives %.17g", f->name, x, p[0], p[1], p[2], got,
                         want);
        }
    }
    em_rng_destroy(r);
}

/* Far tails, where a density computed as exp(...) would underflow before the log: compare
 * with the closed forms. */
static void test_log_prob_tails(void **state) {
    (void)state;
    em_status st;
    double p[3] = {1.0, 2.0, 0.0};
    double x = 1.0 + 2.0 * 60.0; /* z = 60: density e^-1800, below the smallest double */
    tu_assert_close(lp_scalar(&families[0], p, x, &st), -0.5 * 3600.0 - log(2.0) - 0.5 * log(2 * M_PI), 1e-14, 0);
    double q[1] = {0.0};
    /* BernoulliLogit at logit -800 for y = 1: log σ(-800) = -800 - log1p(e^-800) */
    q[0] = -800.0;
    tu_assert_close(lp_scalar(&families[14], q, 1.0, &st), -800.0, 1e-15, 0);
    q[0] = 800.0;
    tu_assert_close(lp_scalar(&families[14], q, 0.0, &st), -800.0, 1e-15, 0);
    q[0] = 40.0;
    tu_assert_close(lp_scalar(&families[14], q, 1.0, &st), -log1p(exp(-40.0)), 1e-12, 0);
    /* Logistic 700 scales out: GSL's pdf underflows; -|z| - 2 log1p(e^-|z|) - log s */
    double lg[2] = {0.0, 1.0};
    tu_assert_close(lp_scalar(&families[12], lg, 800.0, &st), -800.0, 1e-14, 0);
    tu_assert_close(lp_scalar(&families[12], lg, -800.0, &st), -800.0, 1e-14, 0);
    /* Poisson with a large count: lgamma is exact where GSL's pdf is fine too */
    double lam[1] = {1000.0};
    tu_assert_close(lp_scalar(&families[15], lam, 1100.0, &st), log(gsl_ran_poisson_pdf(1100, 1000.0)), 1e-10, 0);
    /* StudentT far tail: polynomial decay */
    double tp[3] = {3.0, 0.0, 1.0};
    double want = lgamma(2.0) - lgamma(1.5) - 0.5 * log(3.0 * M_PI) - 2.0 * log1p(1e10 / 3.0);
    tu_assert_close(lp_scalar(&families[10], tp, 1e5, &st), want, 1e-12, 0);
}

/* ---- gradients ----------------------------------------------------------------------------- */

typedef struct grad_ctx {
    const family *f;
    size_t n;        /* value length */
    int vec[3];      /* parameter k is a vector of length n */
    int value_scalar;/* the value is one number broadcast against vector parameters */
    const double *y; /* discrete values (constant) */
} grad_ctx;

static em_var grad_fn(em_tape *t, const double *x, size_t n, em_var *leaves, size_t *nleaves, void *vctx) {
    grad_ctx *c = vctx;
    size_t off = 0, k = 0;
    em_var value;
    size_t nv = c->value_scalar ? 1 : c->n;
    if (c->f->discrete) {
        value = em_const_copy(t, c->y, nv);
    } else {
        value = em_leaf(t, x, nv);
        leaves[k++] = value;
        off += nv;
    }
    em_var p[3];
    for (int j = 0; j < c->f->np; j++) {
        size_t len = c->vec[j] ? c->n : 1;
        p[j] = em_leaf(t, x + off, len);
        leaves[k++] = p[j];
        off += len;
    }
    *nleaves = k;
    (void)n;
    em_dist d = c->f->mk(t, p);
    /* scale the output so that the backward pass sees an adjoint other than 1 */
    return em_op_mul(t, em_dist_log_prob(&d, value), em_scalar(t, 1.7));
}

static void fill_case(const family *f, grad_ctx *c, double *x, size_t *nx, double *y, em_rng *r) {
    size_t off = 0;
    size_t nv = c->value_scalar ? 1 : c->n;
    double plo0 = f->plo[0], phi0 = f->phi[0];
    double pv0[16];
    if (!f->discrete) off += nv;
    for (int j = 0; j < f->np; j++) {
        size_t len = c->vec[j] ? c->n : 1;
        for (size_t i = 0; i < len; i++) {
            x[off + i] = f->plo[j] + (f->phi[j] - f->plo[j]) * em_rng_uniform(r);
            if (j == 0) pv0[i] = x[off + i];
        }
        if (f->mk == mk_uniform && j == 1) /* hi = lo + something, element by element */
            for (size_t i = 0; i < len; i++) x[off + i] = pv0[c->vec[0] ? i : 0] + 4.0 + em_rng_uniform(r);
        off += len;
    }
    (void)plo0; (void)phi0;
    *nx = off;
    if (f->discrete) {
        for (size_t i = 0; i < nv; i++) {
            double cap = f->mk == mk_binomial_logit ? binom_N[i] : f->xhi;
            y[i] = floor((cap + 1) * em_rng_uniform(r));
            if (y[i] > cap) y[i] = cap;
        }
        if (f->mk == mk_binomial_logit && !c->vec[0]) /* one total count: N[0] broadcast */
            for (size_t i = 0; i < nv; i++) y[i] = floor((binom_N[0] + 1) * em_rng_uniform(r));
    } else {
        for (size_t i = 0; i < nv; i++) {
            x[i] = f->xlo + (f->xhi - f->xlo) * em_rng_uniform(r);
            if (f->mk == mk_uniform) { /* inside [max lo, min hi] = inside every interval */
                x[i] = -0.9 + 1.8 * em_rng_uniform(r);
            }
        }
    }
}

static void test_gradients(void **state) {
    (void)state;
    em_rng *r = em_rng_create(12, 0);
    /* parameter layouts: all scalar, all vector, first vector only, last vector only, and a
     * scalar value against vector parameters */
    const int layouts[5][4] = {{0, 0, 0, 0}, {1, 1, 1, 0}, {1, 0, 0, 0}, {0, 1, 1, 0}, {1, 1, 1, 1}};
    for (size_t fi = 0; fi < NFAM; fi++) {
        const family *f = &families[fi];
        for (int li = 0; li < 5; li++) {
            if (layouts[li][3] && f->mk == mk_binomial_logit) continue;
            if (f->mk == mk_uniform && layouts[li][3]) continue;
            grad_ctx c = {f, 6, {layouts[li][0], layouts[li][1], layouts[li][2]}, layouts[li][3], NULL};
            if (f->mk == mk_binomial_logit && !c.vec[0]) continue; /* N has 6 entries: logits must match or be 1 */
            double x[32], y[8];
            size_t nx;
            fill_case(f, &c, x, &nx, y, r);
            c.y = y;
            char label[96];
            snprintf(label, sizeof label, "%s layout %d", f->name, li);
            tu_check_gradient(grad_fn, x, nx, &c, 1e-6, 1e-6, 1e-7, label);
        }
    }
    em_rng_destroy(r);
}

/* Vector parameters against a vector value: the sum equals the sum of scalar log densities. */
static void test_broadcast_sum(void **state) {
    (void)state;
    em_tape *t = em_tape_create();
    double x[4] = {-1, 0.5, 2, 3}, mu[4] = {0, 1, 2, -1}, s = 1.5;
    em_dist d = em_dist_normal(t, em_const(t, mu, 4), em_scalar(t, s));
    assert_int_equal(d.batch_len, 4);
    double lp = em_value_scalar(t, em_dist_log_prob(&d, em_const(t, x, 4)));
    double want = 0;
    for (int i = 0; i < 4; i++) want += log(gsl_ran_gaussian_pdf(x[i] - mu[i], s));
    tu_assert_close(lp, want, 1e-12, 0);
    /* lengths that do not broadcast: a shape error naming the family */
    em_var bad = em_dist_log_prob(&d, em_const(t, x, 3));
    assert_false(em_var_ok(bad));
    assert_int_equal(em_tape_status(t), EM_ERR_SHAPE);
    assert_non_null(strstr(em_tape_error(t)->msg, "Normal"));
    em_tape_destroy(t);
}

/* ---- bad parameters and values ------------------------------------------------------------ */

static void expect_domain(em_tape *t, em_var lp, const char *msg) {
    assert_true(em_var_ok(lp));
    assert_true(isinf(em_value_scalar(t, lp)) && em_value_scalar(t, lp) < 0);
    assert_int_equal(em_tape_status(t), EM_ERR_DOMAIN);
    if (!strstr(em_tape_error(t)->msg, msg)) fail_msg("message '%s' lacks '%s'", em_tape_error(t)->msg, msg);
}

static void test_bad_params(void **state) {
    (void)state;
    em_tape *t = em_tape_create();
    double sc[5] = {1, 2, 3, -1, 2}, x[5] = {0, 0, 0, 0, 0};
    em_dist d = em_dist_normal(t, em_scalar(t, 0.0), em_const(t, sc, 5));
    expect_domain(t, em_dist_log_prob(&d, em_const(t, x, 5)), "Normal: scale[3] = -1 must be positive");
    em_tape_reset(t);

    double g[4] = {1, 2, -0.5, 3};
    d = em_dist_gamma(t, em_scalar(t, 2.0), em_scalar(t, 1.0));
    expect_domain(t, em_dist_log_prob(&d, em_const(t, g, 4)), "Gamma: value[2] = -0.5 is outside the support (0, inf)");
    em_tape_reset(t);

    /* a gradient-carrying parameter: still -inf, and backward reports the error, no crash */
    em_var s = em_leaf_scalar(t, 0.0);
    d = em_dist_normal(t, em_scalar(t, 0.0), s);
    em_var lp = em_dist_log_prob(&d, em_const(t, x, 5));
    expect_domain(t, lp, "Normal: scale[0] = 0 must be positive");
    assert_int_equal(em_backward(t, lp), EM_ERR_DOMAIN);
    em_tape_reset(t);

    /* the Normal fast path (vector value, scalar scale) hands a non-finite value to the
     * general driver, which names it */
    double xinf[4] = {0, 1, INFINITY, 2};
    d = em_dist_normal(t, em_leaf_scalar(t, 0.0), em_leaf_scalar(t, 1.0));
    expect_domain(t, em_dist_log_prob(&d, em_const(t, xinf, 4)), "Normal: value[2] = inf is outside the support (-inf, inf)");
    em_tape_reset(t);
    double mnan[4] = {0, NAN, 1, 2};
    d = em_dist_normal(t, em_const(t, mnan, 4), em_scalar(t, 1.0));
    expect_domain(t, em_dist_log_prob(&d, em_const(t, x, 4)), "Normal: loc[1] = nan must be finite");
    em_tape_reset(t);

    d = em_dist_bernoulli(t, em_scalar(t, 1.5));
    expect_domain(t, em_dist_log_prob(&d, em_scalar(t, 1.0)), "Bernoulli: probs[0] = 1.5 must be in [0, 1]");
    em_tape_reset(t);

    d = em_dist_student_t(t, em_scalar(t, -2.0), em_scalar(t, 0.0), em_scalar(t, 1.0));
    expect_domain(t, em_dist_log_prob(&d, em_scalar(t, 1.0)), "StudentT: df[0] = -2 must be positive");
    em_tape_reset(t);

    d = em_dist_normal(t, em_scalar(t, INFINITY), em_scalar(t, 1.0));
    expect_domain(t, em_dist_log_prob(&d, em_scalar(t, 1.0)), "Normal: loc[0] = inf must be finite");
    em_tape_reset(t);

    d = em_dist_uniform(t, em_scalar(t, 2.0), em_scalar(t, 1.0));
    expect_domain(t, em_dist_log_prob(&d, em_scalar(t, 1.5)), "Uniform: hi[0] = 1 must be greater than lo[0] = 2");
    em_tape_reset(t);

    d = em_dist_uniform(t, em_scalar(t, 0.0), em_scalar(t, 1.0));
    expect_domain(t, em_dist_log_prob(&d, em_scalar(t, 1.5)), "Uniform: value[0] = 1.5 is outside the support [0, 1]");
    em_tape_reset(t);

    d = em_dist_poisson(t, em_scalar(t, 2.0));
    expect_domain(t, em_dist_log_prob(&d, em_scalar(t, 2.5)), "Poisson: value[0] = 2.5 is outside the support");
    em_tape_reset(t);

    double N[2] = {3, 4};
    d = em_dist_binomial_logit(t, N, 2, em_scalar(t, 0.0));
    double yb[2] = {1, 5};
    expect_domain(t, em_dist_log_prob(&d, em_const(t, yb, 2)), "BinomialLogit: value[1] = 5 is outside the support {0, ..., 4}");
    em_tape_reset(t);

    double badN[1] = {2.5};
    d = em_dist_binomial_logit(t, badN, 1, em_scalar(t, 0.0));
    assert_null(d.ops);
    assert_int_equal(em_tape_status(t), EM_ERR_DOMAIN);
    em_tape_reset(t);

    /* a constructor given a failed var: no ops, and every helper fails cleanly */
    em_var broken = em_op_slice(t, em_scalar(t, 1.0), 3, 2);
    d = em_dist_normal(t, broken, em_scalar(t, 1.0));
    assert_null(d.ops);
    assert_false(em_var_ok(em_dist_log_prob(&d, em_scalar(t, 0.0))));
    em_rng *r = em_rng_create(1, 0);
    double out[2];
    em_error e = {0};
    assert_int_not_equal(em_dist_sample(&d, r, out, 2, &e), EM_OK);
    assert_int_not_equal(em_dist_mean(&d, out, 2, &e), EM_OK);
    assert_false(em_var_ok(em_dist_rsample(&d, r, 2)));
    assert_int_equal(em_dist_event_len(&d), 0);
    em_tape_reset(t);

    /* sampling with bad parameters: an error, not a crash */
    em_error e2 = {0};
    d = em_dist_gamma(t, em_scalar(t, -1.0), em_scalar(t, 1.0));
    assert_int_equal(em_dist_sample(&d, r, out, 2, &e2), EM_ERR_DOMAIN);
    assert_non_null(strstr(e2.msg, "Gamma: shape[0] = -1 must be positive"));
    /* a Poisson mean beyond what GSL's sampler can count: an error, not a hang or garbage */
    em_tape_reset(t);
    em_error e3 = {0};
    d = em_dist_poisson_log(t, em_scalar(t, 700.0));
    assert_int_equal(em_dist_sample(&d, r, out, 2, &e3), EM_ERR_DOMAIN);
    assert_non_null(strstr(e3.msg, "PoissonLog sample: mean"));
    /* not reparameterisable */
    em_tape_reset(t);
    d = em_dist_gamma(t, em_scalar(t, 1.0), em_scalar(t, 1.0));
    assert_false(em_var_ok(em_dist_rsample(&d, r, 2)));
    assert_int_equal(em_tape_status(t), EM_ERR_ARG);
    em_rng_destroy(r);
    em_tape_destroy(t);
}

/* ---- supports -------------------------------------------------------------------------------- */

static void test_supports(void **state) {
    (void)state;
    em_tape *t = em_tape_create();
    em_dist d = em_dist_uniform(t, em_scalar(t, -1.0), em_scalar(t, 4.0));
    em_support s = em_dist_support(&d);
    assert_int_equal(s.kind, EM_SUPPORT_INTERVAL);
    em_transform tr = em_support_transform(s);
    assert_int_equal(tr.kind, EM_TRANSFORM_INTERVAL);
    assert_true(tr.lo == -1.0 && tr.hi == 4.0);
    double los[2] = {0.0, 1.0};
    d = em_dist_uniform(t, em_const(t, los, 2), em_scalar(t, 4.0));
    s = em_dist_support(&d); /* different intervals: no single support */
    assert_true(isnan(s.lo) && isnan(s.hi));
    d = em_dist_gamma(t, em_scalar(t, 1.0), em_scalar(t, 1.0));
    assert_int_equal(em_support_transform(em_dist_support(&d)).kind, EM_TRANSFORM_POSITIVE);
    d = em_dist_half_cauchy(t, em_scalar(t, 1.0));
    assert_int_equal(em_support_transform(em_dist_support(&d)).kind, EM_TRANSFORM_POSITIVE);
    d = em_dist_beta(t, em_scalar(t, 1.0), em_scalar(t, 1.0));
    assert_int_equal(em_support_transform(em_dist_support(&d)).kind, EM_TRANSFORM_UNIT);
    d = em_dist_normal(t, em_scalar(t, 1.0), em_scalar(t, 1.0));
    assert_int_equal(em_support_transform(em_dist_support(&d)).kind, EM_TRANSFORM_IDENTITY);
    assert_int_equal(em_dist_event_len(&d), 1);
    em_support sx = {EM_SUPPORT_SIMPLEX, 0, 1};
    assert_int_equal(em_support_transform(sx).kind, EM_TRANSFORM_SIMPLEX);
    em_support sc = {EM_SUPPORT_CORR_CHOLESKY, 0, 0};
    assert_int_equal(em_support_transform(sc).kind, EM_TRANSFORM_CORR_CHOLESKY);
    d = em_dist_poisson(t, em_scalar(t, 1.0));
    assert_true(em_support_is_discrete(em_dist_support(&d)));
    assert_true(d.ops->discrete);
    d = em_dist_bernoulli_logit(t, em_scalar(t, 1.0));
    assert_int_equal(em_dist_support(&d).kind, EM_SUPPORT_BOOLEAN);
    em_tape_destroy(t);
}

/* ---- sampling -------------------------------------------------------------------------------- */

#define NS 20000
/* KS critical value for n draws at alpha = 1e-4: sqrt(-ln(alpha/2)/2)/sqrt(n) */
static double ks_crit(size_t n) { return sqrt(-0.5 * log(0.5e-4)) / sqrt((double)n); }

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double ks_stat(double *x, size_t n, double (*cdf)(double, const double *), const double *p) {
    qsort(x, n, sizeof *x, cmp_d);
    double D = 0.0;
    for (size_t i = 0; i < n; i++) {
        double F = cdf(x[i], p);
        double a = fabs(F - (double)i / n), b = fabs((double)(i + 1) / n - F);
        if (a > D) D = a;
        if (b > D) D = b;
    }
    return D;
}

static double cdf_normal(double x, const double *p) { return gsl_cdf_gaussian_P(x - p[0], p[1]); }
static double cdf_half_normal(double x, const double *p) { return 2.0 * gsl_cdf_gaussian_P(x, p[0]) - 1.0; }
static double cdf_lognormal(double x, const double *p) { return gsl_cdf_lognormal_P(x, p[0], p[1]); }
static double cdf_uniform(double x, const double *p) { return gsl_cdf_flat_P(x, p[0], p[1]); }
static double cdf_exponential(double x, const double *p) { return gsl_cdf_exponential_P(x, 1.0 / p[0]); }
static double cdf_gamma(double x, const double *p) { return gsl_cdf_gamma_P(x, p[0], 1.0 / p[1]); }
static double cdf_inv_gamma(double x, const double *p) { return gsl_cdf_gamma_Q(1.0 / x, p[0], 1.0 / p[1]); }
static double cdf_beta(double x, const double *p) { return gsl_cdf_beta_P(x, p[0], p[1]); }
static double cdf_cauchy(double x, const double *p) { return gsl_cdf_cauchy_P(x - p[0], p[1]); }
static double cdf_half_cauchy(double x, const double *p) { return 2.0 * gsl_cdf_cauchy_P(x, p[0]) - 1.0; }
static double cdf_student_t(double x, const double *p) { return gsl_cdf_tdist_P((x - p[1]) / p[2], p[0]); }
static double cdf_laplace(double x, const double *p) { return gsl_cdf_laplace_P(x - p[0], p[1]); }
static double cdf_logistic(double x, const double *p) { return gsl_cdf_logistic_P(x - p[0], p[1]); }
static double cdf_weibull(double x, const double *p) { return gsl_cdf_weibull_P(x, p[1], p[0]); }

typedef struct {
    const family *f;
    double p[3];
    double (*cdf)(double, const double *);
    double mean, var; /* NaN: not checked (undefined or infinite) */
} cont_case;

static void check_draws(const char *what, double *x, size_t n, const cont_case *c) {
    double m = 0, v = 0;
    for (size_t i = 0; i < n; i++) m += x[i];
    m /= (double)n;
    for (size_t i = 0; i < n; i++) v += (x[i] - m) * (x[i] - m);
    v /= (double)(n - 1);
    if (!isnan(c->mean) && !(fabs(m - c->mean) <= 5.0 * sqrt(c->var / (double)n)))
        fail_msg("%s %s: sample mean %g, expected %g", c->f->name, what, m, c->mean);
    /* the variance of a sample variance depends on the kurtosis; 8% at n = 20000 is several
     * standard errors for every family tested here */
    if (!isnan(c->var) && !(fabs(v - c->var) <= 0.08 * c->var))
        fail_msg("%s %s: sample variance %g, expected %g", c->f->name, what, v, c->var);
    double D = ks_stat(x, n, c->cdf, c->p);
    if (!(D < ks_crit(n))) fail_msg("%s %s: KS statistic %g >= critical %g", c->f->name, what, D, ks_crit(n));
}

static void test_sampling_continuous(void **state) {
    (void)state;
    const cont_case cases[] = {
        {&families[0], {1.5, 2.0}, cdf_normal, 1.5, 4.0},
        {&families[1], {2.0}, cdf_half_normal, 2.0 * sqrt(2.0 / M_PI), 4.0 * (1 - 2 / M_PI)},
        {&families[2], {0.3, 0.5}, cdf_lognormal, exp(0.3 + 0.125), (exp(0.25) - 1) * exp(0.6 + 0.25)},
        {&families[3], {-1.0, 3.0}, cdf_uniform, 1.0, 16.0 / 12.0},
        {&families[4], {2.5}, cdf_exponential, 0.4, 0.16},
        {&families[5], {3.0, 2.0}, cdf_gamma, 1.5, 0.75},
        {&families[6], {5.0, 2.0}, cdf_inv_gamma, 0.5, 4.0 / (16.0 * 3.0)},
        {&families[7], {2.0, 3.0}, cdf_beta, 0.4, 6.0 / (25.0 * 6.0)},
        {&families[8], {1.0, 2.0}, cdf_cauchy, NAN, NAN},
        {&families[9], {2.0}, cdf_half_cauchy, NAN, NAN},
        {&families[10], {5.0, 1.0, 2.0}, cdf_student_t, 1.0, 4.0 * 5.0 / 3.0},
        {&families[11], {1.0, 2.0}, cdf_laplace, 1.0, 8.0},
        {&families[12], {1.0, 2.0}, cdf_logistic, 1.0, 4.0 * M_PI * M_PI / 3.0},
        {&families[19], {1.5, 2.0}, cdf_weibull, 2.0 * gsl_sf_gamma(1.0 + 1.0 / 1.5),
         4.0 * (gsl_sf_gamma(1.0 + 2.0 / 1.5) - gsl_sf_gamma(1.0 + 1.0 / 1.5) * gsl_sf_gamma(1.0 + 1.0 / 1.5))},
    };
    double *x = malloc(NS * sizeof *x);
    em_tape *t = em_tape_create();
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const cont_case *c = &cases[ci];
        em_tape_reset(t);
        em_var pv[3];
        for (int k = 0; k < c->f->np; k++) pv[k] = em_scalar(t, c->p[k]);
        em_dist d = c->f->mk(t, pv);
        em_rng *r = em_rng_create(100 + ci, 0);
        em_error e = {0};
        assert_int_equal(em_dist_sample(&d, r, x, NS, &e), EM_OK);
        check_draws("sample", x, NS, c);
        /* the moments the distribution reports agree with the closed forms */
        double mv[2];
        assert_int_equal(em_dist_mean(&d, mv, 1, &e), EM_OK);
        assert_int_equal(em_dist_variance(&d, mv + 1, 1, &e), EM_OK);
        if (!isnan(c->mean)) tu_assert_close(mv[0], c->mean, 1e-12, 0);
        if (!isnan(c->var)) tu_assert_close(mv[1], c->var, 1e-12, 0);
        if (d.ops->reparameterized) {
            em_var v = em_dist_rsample(&d, r, NS);
            assert_true(em_var_ok(v));
            memcpy(x, em_value(t, v), NS * sizeof *x);
            check_draws("rsample", x, NS, c);
        }
        em_rng_destroy(r);
    }
    em_tape_destroy(t);
    free(x);
}

/* rsample's pathwise gradient: d/dθ Σ w_i x_i(θ, ε) against finite differences with ε fixed
 * (same seed each evaluation). */
typedef struct {
    const family *f;
    int vec;
} rs_ctx;
static em_var rs_fn(em_tape *t, const double *x, size_t n, em_var *leaves, size_t *nleaves, void *vctx) {
    rs_ctx *c = vctx;
    em_var p[3];
    size_t off = 0;
    for (int k = 0; k < c->f->np; k++) {
        size_t len = c->vec ? 4 : 1;
        p[k] = leaves[k] = em_leaf(t, x + off, len);
        off += len;
    }
    *nleaves = (size_t)c->f->np;
    (void)n;
    em_dist d = c->f->mk(t, p);
    em_rng *r = em_rng_create(5, 1);
    em_var s = em_dist_rsample(&d, r, 8);
    em_rng_destroy(r);
    static const double w[8] = {0.3, -1.2, 0.7, 2.0, -0.4, 1.1, 0.5, -0.9};
    return em_op_dot(t, s, em_const(t, w, 8));
}

static void test_rsample_gradients(void **state) {
    (void)state;
    for (size_t fi = 0; fi < NFAM; fi++) {
        const family *f = &families[fi];
        em_tape *t = em_tape_create();
        em_var pv[3];
        for (int k = 0; k < f->np; k++) pv[k] = em_scalar(t, 1.0 + k);
        em_dist d = f->mk(t, pv);
        int rep = d.ops->reparameterized;
        em_tape_destroy(t);
        if (!rep) continue;
        for (int vec = 0; vec < 2; vec++) {
            rs_ctx c = {f, vec};
            double x[12];
            size_t len = vec ? 4 : 1, nx = 0;
            for (int k = 0; k < f->np; k++)
                for (size_t i = 0; i < len; i++) x[nx++] = f->plo[k] + (f->phi[k] - f->plo[k]) * (0.3 + 0.1 * i);
            if (f->mk == mk_uniform)
                for (size_t i = 0; i < len; i++) x[len + i] = x[i] + 1.5;
            char label[64];
            snprintf(label, sizeof label, "%s rsample vec=%d", f->name, vec);
            tu_check_gradient(rs_fn, x, nx, &c, 1e-6, 1e-6, 1e-7, label);
        }
    }
}

/* Discrete sampling: chi-square goodness of fit against GSL's pmf; cells with expected count
 * below 5 are pooled into the last cell. Critical value at alpha = 1e-4. */
static void chisq_check(const char *name, const double *x, size_t n, double (*pmf)(unsigned, const double *),
                        const double *p) {
    double obs[512] = {0}, exp_[512] = {0};
    size_t K = 0;
    double cum = 0.0;
    while (K < 510) {
        double e = n * pmf((unsigned)K, p);
        if (e < 5.0 && K > 0) break;
        exp_[K] = e;
        cum += e;
        K++;
    }
    exp_[K] = (double)n - cum; /* the tail cell */
    for (size_t i = 0; i < n; i++) {
        size_t k = (size_t)x[i];
        obs[k < K ? k : K] += 1.0;
    }
    double chi = 0.0;
    size_t cells = K + (exp_[K] > 1e-9 ? 1 : 0);
    for (size_t k = 0; k < cells; k++) chi += (obs[k] - exp_[k]) * (obs[k] - exp_[k]) / exp_[k];
    double crit = gsl_cdf_chisq_Qinv(1e-4, (double)(cells - 1));
    if (!(chi < crit)) fail_msg("%s: chi-square %g >= critical %g (%zu cells)", name, chi, crit, cells);
}
static double pmf_bern(unsigned k, const double *p) { return gsl_ran_bernoulli_pdf(k, p[0]); }
static double pmf_bern_logit(unsigned k, const double *p) { return gsl_ran_bernoulli_pdf(k, 1 / (1 + exp(-p[0]))); }
static double pmf_pois(unsigned k, const double *p) { return gsl_ran_poisson_pdf(k, p[0]); }
static double pmf_pois_log(unsigned k, const double *p) { return gsl_ran_poisson_pdf(k, exp(p[0])); }
static double pmf_nb2(unsigned k, const double *p) { return gsl_ran_negative_binomial_pdf(k, p[1] / (p[0] + p[1]), p[1]); }
static double pmf_binom(unsigned k, const double *p) { return gsl_ran_binomial_pdf(k, 1 / (1 + exp(-p[0])), 10); }

static void test_sampling_discrete(void **state) {
    (void)state;
    struct {
        const family *f;
        double p[2];
        double (*pmf)(unsigned, const double *);
        double mean, var;
    } cases[] = {
        {&families[13], {0.3}, pmf_bern, 0.3, 0.21},
        {&families[14], {-0.5}, pmf_bern_logit, 1 / (1 + exp(0.5)), 1 / (1 + exp(0.5)) * (1 - 1 / (1 + exp(0.5)))},
        {&families[15], {4.5}, pmf_pois, 4.5, 4.5},
        {&families[16], {1.2}, pmf_pois_log, exp(1.2), exp(1.2)},
        {&families[17], {3.0, 2.0}, pmf_nb2, 3.0, 3.0 + 4.5},
        {&families[18], {0.4}, pmf_binom, 10 / (1 + exp(-0.4)), 10 / (1 + exp(-0.4)) * (1 - 1 / (1 + exp(-0.4)))},
    };
    double *x = malloc(NS * sizeof *x);
    em_tape *t = em_tape_create();
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        em_tape_reset(t);
        em_var pv[2];
        for (int k = 0; k < cases[ci].f->np; k++) pv[k] = em_scalar(t, cases[ci].p[k]);
        em_dist d = cases[ci].f->mk(t, pv);
        em_rng *r = em_rng_create(200 + ci, 0);
        em_error e = {0};
        assert_int_equal(em_dist_sample(&d, r, x, NS, &e), EM_OK);
        chisq_check(cases[ci].f->name, x, NS, cases[ci].pmf, cases[ci].p);
        double mv[2];
        assert_int_equal(em_dist_mean(&d, mv, 1, &e), EM_OK);
        assert_int_equal(em_dist_variance(&d, mv + 1, 1, &e), EM_OK);
        tu_assert_close(mv[0], cases[ci].mean, 1e-12, 0);
        tu_assert_close(mv[1], cases[ci].var, 1e-12, 0);
        em_rng_destroy(r);
    }
    em_tape_destroy(t);
    free(x);
}

/* A steady workload stops allocating: log_prob + backward on a rewound tape. */
static void test_no_alloc_after_warmup(void **state) {
    (void)state;
    em_tape *t = em_tape_create();
    double x[1000];
    tu_fill_uniform(x, 1000, -3, 3, 4);
    size_t before = 0;
    for (int it = 0; it < 5; it++) {
        em_tape_reset(t);
        em_var mu = em_leaf(t, x, 1000);
        em_var s = em_leaf_scalar(t, 1.3);
        em_dist d = em_dist_normal(t, mu, s);
        em_var lp = em_dist_log_prob(&d, em_const(t, x, 1000));
        assert_int_equal(em_backward(t, lp), EM_OK);
        if (it == 1) before = em_arena_malloc_count(em_tape_arena(t));
    }
    assert_int_equal(em_arena_malloc_count(em_tape_arena(t)), before);
    em_tape_destroy(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_prob_vs_gsl),   cmocka_unit_test(test_log_prob_tails),
        cmocka_unit_test(test_gradients),         cmocka_unit_test(test_broadcast_sum),
        cmocka_unit_test(test_bad_params),        cmocka_unit_test(test_supports),
        cmocka_unit_test(test_sampling_continuous), cmocka_unit_test(test_rsample_gradients),
        cmocka_unit_test(test_sampling_discrete), cmocka_unit_test(test_no_alloc_after_warmup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
