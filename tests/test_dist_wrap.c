/* test_dist_wrap.c — families made of other families (dist_wrap.c): finite mixtures, censored,
 * truncated and weighted sites. Log densities and their pointwise terms against the same quantities computed from GSL, gradients
 * (values, component parameters, weights through the simplex transform, bounds) against finite
 * differences, draws (mixture moments, truncated draws inside their bounds with the right mean),
 * supports, and the errors named on the tape. */
#include "util/testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_cdf.h>
#include <gsl/gsl_randist.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

static const double X6[6] = {-1.5, 0.2, 0.9, 2.5, -0.3, 4.0};

/* ---- mixtures -------------------------------------------------------------------------------- */

static void test_mixture_values(void **state) {
    (void)state;
    em_tape *t = em_tape_create();
    double w[2] = {0.3, 0.7};
    em_dist comp[2] = {em_dist_normal(t, em_scalar(t, -1.0), em_scalar(t, 0.5)),
                       em_dist_student_t(t, em_scalar(t, 4.0), em_scalar(t, 2.0), em_scalar(t, 1.5))};
    em_dist d = em_dist_mixture(t, em_const(t, w, 2), comp, 2);
    double lp = em_value_scalar(t, em_dist_log_prob(&d, em_const(t, X6, 6))), want = 0.0;
    for (int i = 0; i < 6; i++)
        want += log(w[0] * gsl_ran_gaussian_pdf(X6[i] + 1.0, 0.5) + w[1] * gsl_ran_tdist_pdf((X6[i] - 2.0) / 1.5, 4.0) / 1.5);
    tu_assert_close(lp, want, 1e-13, 0);
    /* far from both components the terms are e^-1000: log_sum_exp keeps them */
    double far = 40.0;
    em_dist n2[2] = {em_dist_normal(t, em_scalar(t, 0.0), em_scalar(t, 1.0)),
                     em_dist_normal(t, em_scalar(t, 1.0), em_scalar(t, 1.0))};
    em_dist dn = em_dist_mixture(t, em_const(t, w, 2), n2, 2);
    lp = em_value_scalar(t, em_dist_log_prob(&dn, em_scalar(t, far)));
    double a = log(w[0]) - 800.0, b = log(w[1]) - 0.5 * 39.0 * 39.0;
    tu_assert_close(lp, fmax(a, b) + log1p(exp(-fabs(a - b))) - 0.5 * log(2 * M_PI), 1e-14, 0);
    /* counts: a mixture of Poissons */
    em_dist pc[2] = {em_dist_poisson(t, em_scalar(t, 1.0)), em_dist_poisson(t, em_scalar(t, 6.0))};
    em_dist dp = em_dist_mixture(t, em_const(t, w, 2), pc, 2);
    double y = 3.0;
    lp = em_value_scalar(t, em_dist_log_prob(&dp, em_scalar(t, y)));
    tu_assert_close(lp, log(w[0] * gsl_ran_poisson_pdf(3, 1.0) + w[1] * gsl_ran_poisson_pdf(3, 6.0)), 1e-13, 0);
    assert_true(em_support_is_discrete(em_dist_support(&dp)));
    assert_int_equal(em_tape_status(t), EM_OK);
    em_tape_destroy(t);
}

/* x = [free weights (2), loc0, log scale0, loc1, value (6)] */
static em_var mixture_fn(em_tape *t, const double *x, size_t n, em_var *lv, size_t *nl, void *ctx) {
    (void)n;
    (void)ctx;
    static const em_transform sx = {EM_TRANSFORM_SIMPLEX, 0, 0};
    em_var wf = lv[0] = em_leaf(t, x, 2), th = lv[1] = em_leaf(t, x + 2, 3), v = lv[2] = em_leaf(t, x + 5, 6);
    *nl = 3;
    em_var w = em_transform_forward(t, &sx, wf, NULL);
    em_dist comp[3] = {em_dist_normal(t, em_slice(t, th, 0, 1), em_exp(t, em_slice(t, th, 1, 1))),
                       em_dist_logistic(t, em_slice(t, th, 2, 1), em_scalar(t, 1.2)),
                       em_dist_cauchy(t, em_scalar(t, 0.5), em_scalar(t, 2.0))};
    em_dist d = em_dist_mixture(t, w, comp, 3);
    return em_op_mul(t, em_dist_log_prob(&d, v), em_scalar(t, 1.3));
}

static void test_mixture_gradients(void **state) {
    (void)state;
    double x[11] = {0.3, -0.4, -1.0, log(0.7), 1.5};
    memcpy(x + 5, X6, sizeof X6);
    tu_check_gradient(mixture_fn, x, 11, NULL, 1e-6, 1e-6, 1e-8, "mixture");
}

static void test_mixture_sampling_and_errors(void **state) {
    (void)state;
    em_tape *t = em_tape_create();
    double w[2] = {0.25, 0.75};
    em_dist comp[2] = {em_dist_normal(t, em_scalar(t, -2.0), em_scalar(t, 0.5)),
                       em_dist_logistic(t, em_scalar(t, 3.0), em_scalar(t, 1.0))};
    em_dist d = em_dist_mixture(t, em_const(t, w, 2), comp, 2);
    double mv[2];
    em_error e = {0};
    assert_int_equal(em_dist_mean(&d, mv, 1, &e), EM_OK);
    assert_int_equal(em_dist_variance(&d, mv + 1, 1, &e), EM_OK);
    double m = 0.25 * -2.0 + 0.75 * 3.0, s2 = 0.25 * (0.25 + 4.0) + 0.75 * (M_PI * M_PI / 3.0 + 9.0);
    tu_assert_close(mv[0], m, 1e-14, 0);
    tu_assert_close(mv[1], s2 - m * m, 1e-14, 0);
    size_t ns = 40000;
    double *x = malloc(ns * sizeof *x), sm = 0.0, sv = 0.0;
    em_rng *r = em_rng_create(51, 0);
    assert_int_equal(em_dist_sample(&d, r, x, ns, &e), EM_OK);
    for (size_t i = 0; i < ns; i++) sm += x[i];
    sm /= ns;
    for (size_t i = 0; i < ns; i++) sv += (x[i] - sm) * (x[i] - sm);
    sv /= ns - 1;
    assert_true(fabs(sm - mv[0]) < 5.0 * sqrt(mv[1] / ns));
    assert_true(fabs(sv - mv[1]) < 0.05 * mv[1]);
    em_rng_destroy(r);
    free(x);
    /* weights not on the simplex, and mismatched components */
    double bad[2] = {0.5, 0.6};
    em_dist db = em_dist_mixture(t, em_const(t, bad, 2), comp, 2);
    assert_false(em_var_ok(em_dist_log_prob(&db, em_scalar(t, 0.0))));
    assert_non_null(strstr(em_tape_error(t)->msg, "Mixture: the weights sum to 1.1"));
    em_tape_reset(t);
    em_dist mixed[2] = {em_dist_normal(t, em_scalar(t, 0.0), em_scalar(t, 1.0)), em_dist_poisson(t, em_scalar(t, 1.0))};
    em_dist dm = em_dist_mixture(t, em_const(t, w, 2), mixed, 2);
    assert_null(dm.ops);
    assert_non_null(strstr(em_tape_error(t)->msg, "Mixture: component 1 (Poisson)"));
    em_tape_reset(t);
    em_dist dk = em_dist_mixture(t, em_const(t, w, 1), mixed, 2);
    assert_null(dk.ops);
    assert_non_null(strstr(em_tape_error(t)->msg, "Mixture: 1 weights for 2 components"));
    em_tape_destroy(t);
}

/* ---- censoring ------------------------------------------------------------------------------ */

static const double CENS[6] = {0, -1, 1, 2, 0, 2};
static const double UPPER[6] = {0, 0, 0, 3.0, 0, 4.5};

static double censored_ref(const double *mu, double sd) {
    double s = 0.0;
    for (int i = 0; i < 6; i++) {
        double z = X6[i] - mu[i];
        if (CENS[i] == 0) s += log(gsl_ran_gaussian_pdf(z, sd));
        else if (CENS[i] == -1) s += log(gsl_cdf_gaussian_P(z, sd));
        else if (CENS[i] == 1) s += log(gsl_cdf_gaussian_Q(z, sd));
        else s += log(gsl_cdf_gaussian_P(UPPER[i] - mu[i], sd) - gsl_cdf_gaussian_P(z, sd));
    }
    return s;
}

static void test_censored_values(void **state) {
    (void)state;
    em_tape *t = em_tape_create();
    double mu[6] = {0.5, -0.2, 1.0, 2.0, 0.1, 1.5};
    em_dist base = em_dist_normal(t, em_const(t, mu, 6), em_scalar(t, 1.3));
    em_dist d = em_dist_censored(&base, CENS, UPPER, 6);
    tu_assert_close(em_value_scalar(t, em_dist_log_prob(&d, em_const(t, X6, 6))), censored_ref(mu, 1.3), 1e-13, 0);
    /* its pointwise terms, in the elements' order, sum to it and are each the element's own */
    double pw[6], sum = 0;
    em_error e = {0};
    assert_int_equal(em_dist_log_prob_pointwise(&d, X6, 6, pw, &e), EM_OK);
    for (int i = 0; i < 6; i++) {
        em_dist bi = em_dist_normal(t, em_scalar(t, mu[i]), em_scalar(t, 1.3));
        em_dist di = em_dist_censored(&bi, CENS + i, UPPER + i, 1);
        tu_assert_close(pw[i], em_value_scalar(t, em_dist_log_prob(&di, em_const(t, X6 + i, 1))), 1e-13, 0);
        sum += pw[i];
    }
    tu_assert_close(sum, censored_ref(mu, 1.3), 1e-13, 0);
    /* nothing censored: the base's log density */
    static const double none[6] = {0};
    em_dist d0 = em_dist_censored(&base, none, NULL, 6);
    tu_assert_close(em_value_scalar(t, em_dist_log_prob(&d0, em_const(t, X6, 6))),
                    em_value_scalar(t, em_dist_log_prob(&base, em_const(t, X6, 6))), 1e-15, 0);
    /* right-censored far in the tail: log Q(40) */
    static const double right[1] = {1}, forty[1] = {40.0};
    em_dist sn = em_dist_normal(t, em_scalar(t, 0.0), em_scalar(t, 1.0));
    em_dist dr = em_dist_censored(&sn, right, NULL, 1);
    tu_assert_close(em_value_scalar(t, em_dist_log_prob(&dr, em_const(t, forty, 1))), -804.60844201375378817, 1e-14, 0);
    assert_int_equal(em_tape_status(t), EM_OK);
    em_tape_destroy(t);
}

/* x = [mu (6), log sd] */
static em_var censored_fn(em_tape *t, const double *x, size_t n, em_var *lv, size_t *nl, void *ctx) {
    (void)n;
    em_var mu = lv[0] = em_leaf(t, x, 6), ls = lv[1] = em_leaf(t, x + 6, 1);
    *nl = 2;
    int family = *(const int *)ctx;
    em_dist base = family != 1 ? em_dist_normal(t, mu, em_exp(t, ls))
                               : em_dist_weibull(t, em_exp(t, ls), em_exp(t, mu)); /* shape, scale per element */
    em_dist d = em_dist_censored(&base, CENS, UPPER, 6);
    static const double pos[6] = {0.5, 1.2, 0.9, 2.5, 0.3, 4.0}, w[6] = {0.7, -1.1, 0.3, 2.0, -0.4, 1.3};
    if (family == 2) /* the terms one per element (log_lik), each weighted */
        return em_op_dot(t, em_dist_pointwise(&d, EM_TERM_LOG_PROB, em_const(t, X6, 6)), em_const(t, w, 6));
    return em_op_mul(t, em_dist_log_prob(&d, em_const(t, family == 0 ? X6 : pos, 6)), em_scalar(t, 0.7));
}

static void test_censored_gradients(void **state) {
    (void)state;
    double x[7] = {0.5, -0.2, 1.0, 2.0, 0.1, 1.5, log(1.3)};
    const char *names[3] = {"censored Normal", "censored Weibull", "censored Normal pointwise"};
    for (int family = 0; family < 3; family++) tu_check_gradient(censored_fn, x, 7, &family, 1e-6, 1e-6, 1e-8, names[family]);
}

static void test_censored_errors(void **state) {
    (void)state;
    em_tape *t = em_tape_create();
    em_dist base = em_dist_normal(t, em_scalar(t, 0.0), em_scalar(t, 1.0));
    static const double bad[2] = {0, 3};
    em_dist d = em_dist_censored(&base, bad, NULL, 2);
    assert_null(d.ops);
    assert_non_null(strstr(em_tape_error(t)->msg, "Censored Normal: cens[1] = 3 must be -1 (left), 0, 1 (right) or 2"));
    em_tape_reset(t);
    base = em_dist_normal(t, em_scalar(t, 0.0), em_scalar(t, 1.0));
    static const double iv[2] = {0, 2};
    d = em_dist_censored(&base, iv, NULL, 2);
    assert_non_null(strstr(em_tape_error(t)->msg, "Censored Normal: cens[1] = 2 (interval) needs upper bounds"));
    em_tape_reset(t);
    base = em_dist_normal(t, em_scalar(t, 0.0), em_scalar(t, 1.0));
    static const double up[2] = {0, 0.1}, xv[2] = {0.5, 0.5};
    d = em_dist_censored(&base, iv, up, 2);
    em_var lp = em_dist_log_prob(&d, em_const(t, xv, 2));
    assert_true(em_value_scalar(t, lp) == -INFINITY);
    assert_non_null(strstr(em_tape_error(t)->msg, "Censored Normal: upper[1] = 0.1 must be above value[1] = 0.5"));
    em_tape_reset(t);
    em_dist p = em_dist_poisson(t, em_scalar(t, 1.0));
    d = em_dist_censored(&p, iv, up, 2);
    assert_null(d.ops);
    assert_non_null(strstr(em_tape_error(t)->msg, "Censored: Poisson has no log CDF"));
    em_tape_destroy(t);
}

/* ---- truncation ------------------------------------------------------------------------------ */

static void test_truncated_values_and_support(void **state) {
    (void)state;
    em_tape *t = em_tape_create();
    em_dist base = em_dist_normal(t, em_scalar(t, 1.0), em_scalar(t, 2.0));
    static const double xs[3] = {0.5, 2.0, 2.9};
    em_var x = em_const(t, xs, 3);
    double lp0 = 0.0;
    for (int i = 0; i < 3; i++) lp0 += log(gsl_ran_gaussian_pdf(xs[i] - 1.0, 2.0));
    double P0 = gsl_cdf_gaussian_P(-1.0, 2.0), P3 = gsl_cdf_gaussian_P(2.0, 2.0);
    em_dist both = em_truncated(t, &base, 0.0, 3.0), lo = em_truncated(t, &base, 0.0, INFINITY);
    em_dist hi = em_truncated(t, &base, -INFINITY, 3.0);
    tu_assert_close(em_value_scalar(t, em_dist_log_prob(&both, x)), lp0 - 3.0 * log(P3 - P0), 1e-13, 0);
    tu_assert_close(em_value_scalar(t, em_dist_log_prob(&lo, x)), lp0 - 3.0 * log(1.0 - P0), 1e-13, 0);
    tu_assert_close(em_value_scalar(t, em_dist_log_prob(&hi, x)), lp0 - 3.0 * log(P3), 1e-13, 0);
    /* one lower bound per element */
    static const double lbs[3] = {-1.0, 0.0, 1.0};
    em_dist per = em_dist_truncated(&base, em_const(t, lbs, 3), em_scalar(t, INFINITY));
    double want = lp0;
    for (int i = 0; i < 3; i++) want -= log(gsl_cdf_gaussian_Q(lbs[i] - 1.0, 2.0));
    tu_assert_close(em_value_scalar(t, em_dist_log_prob(&per, x)), want, 1e-13, 0);
    /* supports and their transforms */
    em_support s = em_dist_support(&both);
    assert_true(s.kind == EM_SUPPORT_INTERVAL && s.lo == 0.0 && s.hi == 3.0);
    assert_int_equal(em_dist_support(&lo).kind, EM_SUPPORT_POSITIVE);
    em_dist lo2 = em_truncated(t, &base, -2.0, INFINITY);
    s = em_dist_support(&lo2);
    assert_true(s.kind == EM_SUPPORT_LOWER && s.lo == -2.0);
    assert_int_equal(em_support_transform(s).kind, EM_TRANSFORM_LOWER);
    s = em_dist_support(&hi);
    assert_true(s.kind == EM_SUPPORT_UPPER && s.hi == 3.0);
    assert_int_equal(em_support_transform(s).kind, EM_TRANSFORM_UPPER);
    em_dist ln = em_dist_lognormal(t, em_scalar(t, 0.0), em_scalar(t, 1.0));
    em_dist lnt = em_truncated(t, &ln, -INFINITY, 5.0);
    s = em_dist_support(&lnt);
    assert_true(s.kind == EM_SUPPORT_INTERVAL && s.lo == 0.0 && s.hi == 5.0);
    /* no bounds: the base itself */
    em_dist same = em_truncated(t, &base, -INFINITY, INFINITY);
    assert_ptr_equal(same.ops, base.ops);
    assert_int_equal(em_tape_status(t), EM_OK);
    /* a value outside the bounds */
    static const double out[2] = {1.0, 3.5};
    em_var lp = em_dist_log_prob(&both, em_const(t, out, 2));
    assert_true(em_value_scalar(t, lp) == -INFINITY);
    assert_non_null(strstr(em_tape_error(t)->msg, "Truncated Normal: value[1] = 3.5 is outside the truncation [0, 3]"));
    em_tape_reset(t);
    base = em_dist_normal(t, em_scalar(t, 1.0), em_scalar(t, 2.0));
    em_dist inv = em_truncated(t, &base, 2.0, 1.0);
    assert_null(inv.ops);
    assert_non_null(strstr(em_tape_error(t)->msg, "Truncated Normal: lb[0] = 2 must be below ub[0] = 1"));
    em_tape_destroy(t);
}

/* x = [loc, log scale, lb, ub]: gradients in the parameters and in both bounds */
static em_var truncated_fn(em_tape *t, const double *x, size_t n, em_var *lv, size_t *nl, void *ctx) {
    (void)n;
    int family = *(const int *)ctx;
    em_var th = lv[0] = em_leaf(t, x, 4);
    *nl = 1;
    em_var loc = em_slice(t, th, 0, 1), sc = em_exp(t, em_slice(t, th, 1, 1));
    em_dist base = family == 0 || family == 3 ? em_dist_normal(t, loc, sc)
                 : family == 1 ? em_dist_gamma(t, em_exp(t, loc), sc)
                               : em_dist_student_t(t, em_scalar(t, 3.0), loc, sc);
    em_dist d = em_dist_truncated(&base, em_slice(t, th, 2, 1), em_slice(t, th, 3, 1));
    static const double xs[3] = {0.5, 2.0, 2.9}, w[3] = {1.4, -0.6, 0.8};
    if (family >= 3) { /* the pointwise terms, weighted, and they sum to the density */
        em_var pw = em_dist_pointwise(&d, EM_TERM_LOG_PROB, em_const(t, xs, 3));
        tu_assert_close(em_value_scalar(t, em_sum(t, pw)), em_value_scalar(t, em_dist_log_prob(&d, em_const(t, xs, 3))),
                        1e-13, 0);
        return em_op_dot(t, pw, em_const(t, w, 3));
    }
    return em_dist_log_prob(&d, em_const(t, xs, 3));
}

static void test_truncated_gradients(void **state) {
    (void)state;
    const char *names[4] = {"truncated Normal", "truncated Gamma", "truncated StudentT", "truncated Normal pointwise"};
    for (int family = 0; family < 4; family++) {
        double x[4] = {0.8, log(1.5), 0.2, 3.4};
        tu_check_gradient(truncated_fn, x, 4, &family, 1e-6, 1e-6, 1e-8, names[family]);
    }
}

/* Weighted: Σ w_i log p(x_i), each term weighted in the pointwise form, gradients through both */
static const double WX[4] = {0.4, 1.7, -0.8, 2.2}, WW[4] = {1.0, 0.0, 2.5, 0.3};
static em_var weighted_fn(em_tape *t, const double *x, size_t n, em_var *lv, size_t *nl, void *ctx) {
    (void)n;
    em_var th = lv[0] = em_leaf(t, x, 2);
    *nl = 1;
    em_dist base = em_dist_student_t(t, em_scalar(t, 4.0), em_slice(t, th, 0, 1), em_exp(t, em_slice(t, th, 1, 1)));
    em_dist d = em_dist_weighted(&base, WW, 4);
    if (*(const int *)ctx) {
        static const double v[4] = {0.3, -1.0, 0.8, 1.9};
        return em_op_dot(t, em_dist_pointwise(&d, EM_TERM_LOG_PROB, em_const(t, WX, 4)), em_const(t, v, 4));
    }
    return em_dist_log_prob(&d, em_const(t, WX, 4));
}

static void test_weighted(void **state) {
    (void)state;
    em_tape *t = em_tape_create();
    em_dist base = em_dist_normal(t, em_scalar(t, 0.5), em_scalar(t, 1.5));
    em_dist d = em_dist_weighted(&base, WW, 4);
    double want = 0;
    for (int i = 0; i < 4; i++) want += WW[i] * log(gsl_ran_gaussian_pdf(WX[i] - 0.5, 1.5));
    tu_assert_close(em_value_scalar(t, em_dist_log_prob(&d, em_const(t, WX, 4))), want, 1e-14, 0);
    double pw[4];
    em_error e = {0};
    assert_int_equal(em_dist_log_prob_pointwise(&d, WX, 4, pw, &e), EM_OK);
    for (int i = 0; i < 4; i++) tu_assert_close(pw[i], WW[i] * log(gsl_ran_gaussian_pdf(WX[i] - 0.5, 1.5)), 1e-14, 1e-300);
    /* a negative weight, named */
    static const double bad[4] = {1, 1, -2, 1};
    em_dist b2 = em_dist_weighted(&base, bad, 4);
    assert_null(b2.ops);
    assert_non_null(strstr(em_tape_error(t)->msg, "Weighted Normal: weight[2] = -2 must be finite and non-negative"));
    em_tape_destroy(t);
    double x[2] = {0.3, log(0.9)};
    for (int pwise = 0; pwise < 2; pwise++)
        tu_check_gradient(weighted_fn, x, 2, &pwise, 1e-6, 1e-6, 1e-8, pwise ? "weighted pointwise" : "weighted");
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Normal(1, 2) truncated to [0, inf): draws inside, mean μ + σφ(a)/(1 - Φ(a)), a = -μ/σ;
 * a lognormal cut to (0, 0.5], where most of the base's mass is outside */
static void test_truncated_sampling(void **state) {
    (void)state;
    em_tape *t = em_tape_create();
    em_dist base = em_dist_normal(t, em_scalar(t, 1.0), em_scalar(t, 2.0));
    em_dist d = em_truncated(t, &base, 0.0, INFINITY);
    size_t ns = 40000;
    double *x = malloc(ns * sizeof *x), m = 0.0;
    em_rng *r = em_rng_create(52, 0);
    em_error e = {0};
    assert_int_equal(em_dist_sample(&d, r, x, ns, &e), EM_OK);
    for (size_t i = 0; i < ns; i++) {
        assert_true(x[i] >= 0.0);
        m += x[i];
    }
    m /= ns;
    double a = -0.5, mean = 1.0 + 2.0 * gsl_ran_ugaussian_pdf(a) / gsl_cdf_ugaussian_Q(a);
    assert_true(fabs(m - mean) < 5.0 * 2.0 / sqrt((double)ns));
    em_dist ln = em_dist_lognormal(t, em_scalar(t, 0.0), em_scalar(t, 1.0));
    em_dist dl = em_truncated(t, &ln, 0.0, 0.5);
    assert_int_equal(em_dist_sample(&dl, r, x, 1000, &e), EM_OK);
    for (size_t i = 0; i < 1000; i++) assert_true(x[i] > 0.0 && x[i] <= 0.5);
    /* almost no mass inside: drawn by inverting the CDF, with the right distribution (the
     * conditional CCDF of the draws, Q(x)/Q(30) for Normal(1, 2) above 30, uniform) */
    em_dist far = em_truncated(t, &base, 30.0, INFINITY);
    assert_int_equal(em_dist_sample(&far, r, x, 2000, &e), EM_OK);
    double lq30 = log(gsl_cdf_gaussian_Q(29.0, 2.0)), ks = 0.0;
    for (size_t i = 0; i < 2000; i++) assert_true(x[i] >= 30.0);
    qsort(x, 2000, sizeof *x, cmp_double);
    for (size_t i = 0; i < 2000; i++) {
        double u = 1.0 - exp(log(gsl_cdf_gaussian_Q(x[i] - 1.0, 2.0)) - lq30);
        ks = fmax(ks, fmax(fabs(u - (double)i / 2000.0), fabs(u - (double)(i + 1) / 2000.0)));
    }
    assert_true(ks < 1.95 / sqrt(2000.0)); /* KS at alpha = 1e-3 */
    em_dist box = em_truncated(t, &base, -12.0, -11.5);
    assert_int_equal(em_dist_sample(&box, r, x, 200, &e), EM_OK);
    for (size_t i = 0; i < 200; i++) assert_true(x[i] >= -12.0 && x[i] <= -11.5);
    em_rng_destroy(r);
    free(x);
    em_tape_destroy(t);
}

/* ---- in a model: a truncated prior, a truncated and a censored observe site -------------------- */

static const double YT[5] = {0.3, 1.2, 0.8, 1.9, 0.1};
static const double CENS5[5] = {0, 1, 0, -1, 2}, UP5[5] = {0, 0, 0, 0, 0.9};

static void wrap_model(em_model *m, const void *arg) {
    (void)arg;
    em_var mu = em_sample(m, "mu", em_normal(m, 0.5, 1.0));
    em_dist sp = em_normal(m, 1.0, 1.0);
    em_var sigma = em_sample(m, "sigma", em_truncated(m, &sp, 0.0, INFINITY)); /* a lower-truncated prior */
    em_dist lik = em_normal(m, mu, sigma);
    em_observe(m, "y", em_truncated(m, &lik, 0.0, 2.0), YT, 5);
    em_observe(m, "yc", em_censored(&lik, CENS5, UP5, 5), YT, 5);
}

static void test_model_sites(void **state) {
    (void)state;
    em_error err = {0};
    em_predictive *pr = NULL;
    em_predictive_options opt = {.seed = 7};
    em_status st = em_predictive_prior(wrap_model, NULL, 300, &opt, &pr, &err);
    if (st != EM_OK) fail_msg("prior predictive: %s", err.msg);
    const em_pred_site *y = em_predictive_site(pr, "y"), *sg = em_predictive_site(pr, "sigma");
    assert_non_null(y);
    assert_non_null(sg);
    for (size_t i = 0; i < 300 * 5; i++) assert_true(y->draws[i] >= 0.0 && y->draws[i] <= 2.0);
    for (size_t i = 0; i < 300; i++) assert_true(sg->draws[i] > 0.0);
    em_predictive_free(pr);
    /* the density: sigma on the log scale (the support is (0, inf)), every term by hand */
    em_logdensity *ld = em_logdensity_from_model(wrap_model, NULL, NULL, &err);
    assert_non_null(ld);
    assert_int_equal(em_logdensity_dim(ld), 2);
    double th[2] = {0.4, log(0.7)}, lp, g[2];
    assert_int_equal(em_logdensity_eval(ld, th, &lp, g, &err), EM_OK);
    double mu = 0.4, s = 0.7, want = log(gsl_ran_gaussian_pdf(mu - 0.5, 1.0));
    want += log(gsl_ran_gaussian_pdf(s - 1.0, 1.0)) - log(gsl_cdf_gaussian_Q(-1.0, 1.0)) + log(s);
    double z = log(gsl_cdf_gaussian_P(2.0 - mu, s) - gsl_cdf_gaussian_P(-mu, s));
    for (int i = 0; i < 5; i++) {
        want += log(gsl_ran_gaussian_pdf(YT[i] - mu, s)) - z;
        double d = YT[i] - mu;
        want += CENS5[i] == 0    ? log(gsl_ran_gaussian_pdf(d, s))
                : CENS5[i] == 1  ? log(gsl_cdf_gaussian_Q(d, s))
                : CENS5[i] == -1 ? log(gsl_cdf_gaussian_P(d, s))
                                 : log(gsl_cdf_gaussian_P(UP5[i] - mu, s) - gsl_cdf_gaussian_P(d, s));
    }
    tu_assert_close(lp, want, 1e-12, 0);
    /* a second point: the replayed tape gives the density there too */
    double th2[2] = {-0.2, log(1.3)}, lp2, g2[2];
    assert_int_equal(em_logdensity_eval(ld, th2, &lp2, g2, &err), EM_OK);
    assert_true(isfinite(lp2) && lp2 != lp);
    em_logdensity_destroy(ld);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mixture_values),      cmocka_unit_test(test_mixture_gradients),
        cmocka_unit_test(test_mixture_sampling_and_errors), cmocka_unit_test(test_censored_values),
        cmocka_unit_test(test_censored_gradients),  cmocka_unit_test(test_censored_errors),
        cmocka_unit_test(test_truncated_values_and_support), cmocka_unit_test(test_truncated_gradients),
        cmocka_unit_test(test_truncated_sampling),  cmocka_unit_test(test_model_sites),
        cmocka_unit_test(test_weighted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
