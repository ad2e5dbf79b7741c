/* test_dist_cdf.c — log CDFs and CCDFs of the continuous univariate families (em_dist_log_cdf,
 * em_dist_log_ccdf): values against GSL's CDFs on random parameters, the far tails against
 * mpmath references (40 digits), arguments outside the support and at ±inf, every gradient
 * (value and parameters, scalar and vector layouts, both tails) against finite differences, and
 * the errors named on the tape. */
#include "util/testutil.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include <gsl/gsl_cdf.h>

typedef em_dist (*mk_fn)(em_tape *t, const em_var *p);

static em_dist mk_normal(em_tape *t, const em_var *p) { return em_dist_normal(t, p[0], p[1]); }
static em_dist mk_lognormal(em_tape *t, const em_var *p) { return em_dist_lognormal(t, p[0], p[1]); }
static em_dist mk_exponential(em_tape *t, const em_var *p) { return em_dist_exponential(t, p[0]); }
static em_dist mk_gamma(em_tape *t, const em_var *p) { return em_dist_gamma(t, p[0], p[1]); }
static em_dist mk_weibull(em_tape *t, const em_var *p) { return em_dist_weibull(t, p[0], p[1]); }
static em_dist mk_beta(em_tape *t, const em_var *p) { return em_dist_beta(t, p[0], p[1]); }
static em_dist mk_cauchy(em_tape *t, const em_var *p) { return em_dist_cauchy(t, p[0], p[1]); }
static em_dist mk_student_t(em_tape *t, const em_var *p) { return em_dist_student_t(t, p[0], p[1], p[2]); }
static em_dist mk_laplace(em_tape *t, const em_var *p) { return em_dist_laplace(t, p[0], p[1]); }
static em_dist mk_logistic(em_tape *t, const em_var *p) { return em_dist_logistic(t, p[0], p[1]); }
static em_dist mk_half_normal(em_tape *t, const em_var *p) { return em_dist_half_normal(t, p[0]); }
static em_dist mk_half_cauchy(em_tape *t, const em_var *p) { return em_dist_half_cauchy(t, p[0]); }
static em_dist mk_uniform(em_tape *t, const em_var *p) { return em_dist_uniform(t, p[0], p[1]); }
static em_dist mk_inv_gamma(em_tape *t, const em_var *p) { return em_dist_inv_gamma(t, p[0], p[1]); }
static em_dist mk_half_t(em_tape *t, const em_var *p) { return em_dist_half_student_t(t, p[0], p[1]); }

/* GSL's lower tail P and upper tail Q at x */
static double P_normal(double x, const double *p, int q) {
    return q ? gsl_cdf_gaussian_Q(x - p[0], p[1]) : gsl_cdf_gaussian_P(x - p[0], p[1]);
}
static double P_lognormal(double x, const double *p, int q) {
    return q ? gsl_cdf_lognormal_Q(x, p[0], p[1]) : gsl_cdf_lognormal_P(x, p[0], p[1]);
}
static double P_exponential(double x, const double *p, int q) {
    return q ? gsl_cdf_exponential_Q(x, 1.0 / p[0]) : gsl_cdf_exponential_P(x, 1.0 / p[0]);
}
static double P_gamma(double x, const double *p, int q) {
    return q ? gsl_cdf_gamma_Q(x, p[0], 1.0 / p[1]) : gsl_cdf_gamma_P(x, p[0], 1.0 / p[1]);
}
static double P_weibull(double x, const double *p, int q) {
    return q ? gsl_cdf_weibull_Q(x, p[1], p[0]) : gsl_cdf_weibull_P(x, p[1], p[0]);
}
static double P_beta(double x, const double *p, int q) {
    return q ? gsl_cdf_beta_Q(x, p[0], p[1]) : gsl_cdf_beta_P(x, p[0], p[1]);
}
static double P_cauchy(double x, const double *p, int q) {
    return q ? gsl_cdf_cauchy_Q(x - p[0], p[1]) : gsl_cdf_cauchy_P(x - p[0], p[1]);
}
static double P_student_t(double x, const double *p, int q) {
    double z = (x - p[1]) / p[2];
    return q ? gsl_cdf_tdist_Q(z, p[0]) : gsl_cdf_tdist_P(z, p[0]);
}
static double P_laplace(double x, const double *p, int q) {
    return q ? gsl_cdf_laplace_Q(x - p[0], p[1]) : gsl_cdf_laplace_P(x - p[0], p[1]);
}
static double P_logistic(double x, const double *p, int q) {
    return q ? gsl_cdf_logistic_Q(x - p[0], p[1]) : gsl_cdf_logistic_P(x - p[0], p[1]);
}

static double P_half_normal(double x, const double *p, int q) {
    return q ? 2.0 * gsl_cdf_gaussian_Q(x, p[0]) : 1.0 - 2.0 * gsl_cdf_gaussian_Q(x, p[0]);
}
static double P_half_cauchy(double x, const double *p, int q) {
    return q ? 2.0 * gsl_cdf_cauchy_Q(x, p[0]) : 1.0 - 2.0 * gsl_cdf_cauchy_Q(x, p[0]);
}
static double P_uniform(double x, const double *p, int q) {
    return q ? gsl_cdf_flat_Q(x, p[0], p[1]) : gsl_cdf_flat_P(x, p[0], p[1]);
}
static double P_inv_gamma(double x, const double *p, int q) { /* 1/X ~ Gamma(shape, rate scale) */
    return q ? gsl_cdf_gamma_P(1.0 / x, p[0], 1.0 / p[1]) : gsl_cdf_gamma_Q(1.0 / x, p[0], 1.0 / p[1]);
}
static double P_half_t(double x, const double *p, int q) {
    return q ? 2.0 * gsl_cdf_tdist_Q(x / p[1], p[0]) : 1.0 - 2.0 * gsl_cdf_tdist_Q(x / p[1], p[0]);
}

typedef struct {
    const char *name;
    mk_fn mk;
    double (*P)(double x, const double *p, int upper);
    int np;
    double plo[3], phi[3];
    double xlo, xhi;
} family;

static const family families[] = {
    {"Normal", mk_normal, P_normal, 2, {-2, 0.5}, {2, 3}, -8, 8},
    {"LogNormal", mk_lognormal, P_lognormal, 2, {-1, 0.3}, {1, 1.5}, 0.05, 8},
    {"Exponential", mk_exponential, P_exponential, 1, {0.3}, {3}, 0.01, 6},
    {"Gamma", mk_gamma, P_gamma, 2, {0.5, 0.3}, {5, 3}, 0.05, 12},
    {"Weibull", mk_weibull, P_weibull, 2, {0.5, 0.5}, {4, 3}, 0.05, 6},
    {"Beta", mk_beta, P_beta, 2, {0.4, 0.4}, {5, 5}, 0.02, 0.98},
    {"Cauchy", mk_cauchy, P_cauchy, 2, {-2, 0.5}, {2, 3}, -30, 30},
    {"StudentT", mk_student_t, P_student_t, 3, {0.7, -2, 0.5}, {30, 2, 3}, -20, 20},
    {"Laplace", mk_laplace, P_laplace, 2, {-2, 0.5}, {2, 3}, -10, 10},
    {"Logistic", mk_logistic, P_logistic, 2, {-2, 0.5}, {2, 3}, -30, 30},
    {"HalfNormal", mk_half_normal, P_half_normal, 1, {0.5}, {3}, 0.01, 6},
    {"HalfCauchy", mk_half_cauchy, P_half_cauchy, 1, {0.5}, {3}, 0.01, 30},
    {"Uniform", mk_uniform, P_uniform, 2, {-3, 1}, {-1.5, 3}, -1.4, 0.9},
    {"InverseGamma", mk_inv_gamma, P_inv_gamma, 2, {0.5, 0.3}, {5, 3}, 0.05, 12},
    {"HalfStudentT", mk_half_t, P_half_t, 2, {0.7, 0.5}, {30, 3}, 0.01, 15},
};
#define NFAM (sizeof families / sizeof families[0])

/* log CDF (upper 0) or CCDF (upper 1) at scalar parameters and x, on a fresh tape */
static double lcdf(const family *f, const double *p, double x, int upper, em_status *st) {
    em_tape *t = em_tape_create();
    em_var pv[3];
    for (int k = 0; k < f->np; k++) pv[k] = em_scalar(t, p[k]);
    em_dist d = f->mk(t, pv);
    em_var xv = em_scalar(t, x);
    double v = em_value_scalar(t, upper ? em_dist_log_ccdf(&d, xv) : em_dist_log_cdf(&d, xv));
    *st = em_tape_status(t);
    em_tape_destroy(t);
    return v;
}

/* log of a GSL tail, through the other tail where this one is near 1 */
static double ref_log_tail(const family *f, const double *p, double x, int upper) {
    double v = f->P(x, p, upper);
    return v < 0.5 ? log(v) : log1p(-f->P(x, p, !upper));
}

static void test_values_vs_gsl(void **state) {
    (void)state;
    em_rng *r = em_rng_create(21, 0);
    for (size_t fi = 0; fi < NFAM; fi++) {
        const family *f = &families[fi];
        for (int rep = 0; rep < 200; rep++) {
            double p[3];
            for (int k = 0; k < f->np; k++) p[k] = f->plo[k] + (f->phi[k] - f->plo[k]) * em_rng_uniform(r);
            double x = f->xlo + (f->xhi - f->xlo) * em_rng_uniform(r);
            for (int upper = 0; upper < 2; upper++) {
                em_status st;
                double v = lcdf(f, p, x, upper, &st);
                assert_int_equal(st, EM_OK);
                double want = ref_log_tail(f, p, x, upper);
                if (fabs(v - want) > 1e-11 * fabs(want) + 1e-15)
                    fail_msg("%s %s at x = %.17g: %.17g, GSL %.17g", f->name, upper ? "log_ccdf" : "log_cdf", x, v,
                             want);
            }
        }
    }
    em_rng_destroy(r);
}

/* far tails, where 1 - F rounds to 0 or F underflows: references from mpmath at 40 digits */
static void test_tails(void **state) {
    (void)state;
    em_status st;
    const double std[2] = {0.0, 1.0};
    tu_assert_close(lcdf(&families[0], std, 40.0, 1, &st), -804.60844201375378817, 1e-14, 0);
    tu_assert_close(lcdf(&families[0], std, -40.0, 0, &st), -804.60844201375378817, 1e-14, 0);
    tu_assert_close(lcdf(&families[0], std, 10.0, 0, &st), -7.6198530241605260704e-24, 1e-12, 0);
    /* LogNormal(0, 1) at e^40 is Normal at 40 */
    tu_assert_close(lcdf(&families[1], std, exp(40.0), 1, &st), -804.60844201375378817, 1e-13, 0);
    /* Cauchy(0, 1) at -1e10: log(atan(1e-10)/π) */
    tu_assert_close(lcdf(&families[6], std, -1e10, 0, &st), -24.170580815789857014, 1e-14, 0);
    /* StudentT(3, 0, 1) at -1000 */
    const double t3[3] = {3.0, 0.0, 1.0};
    tu_assert_close(lcdf(&families[7], t3, -1000.0, 0, &st), -20.625545997896719685, 1e-12, 0);
    /* Gamma(2, 1) upper tail at 50, Beta(2, 3) lower tail at 1e-6 */
    const double g21[2] = {2.0, 1.0}, b23[2] = {2.0, 3.0};
    tu_assert_close(lcdf(&families[3], g21, 50.0, 1, &st), -46.068174367275674228, 1e-12, 0);
    tu_assert_close(lcdf(&families[5], b23, 1e-6, 0, &st), -25.83926298003421543, 1e-12, 0);
    /* closed forms: Logistic at ±800, Laplace at ±50, Exponential and Weibull near 0 */
    tu_assert_close(lcdf(&families[9], std, -800.0, 0, &st), -800.0, 1e-15, 0);
    tu_assert_close(lcdf(&families[9], std, 800.0, 1, &st), -800.0, 1e-15, 0);
    tu_assert_close(lcdf(&families[8], std, 50.0, 1, &st), -50.0 - log(2.0), 1e-15, 0);
    tu_assert_close(lcdf(&families[8], std, 50.0, 0, &st), -0.5 * exp(-50.0), 1e-14, 0);
    const double rate1 = 1.0, wb[2] = {2.0, 1.0};
    tu_assert_close(lcdf(&families[2], &rate1, 1e-20, 0, &st), log(1e-20), 1e-14, 0);
    tu_assert_close(lcdf(&families[2], &rate1, 700.0, 1, &st), -700.0, 1e-15, 0);
    tu_assert_close(lcdf(&families[4], wb, 1e-10, 0, &st), log(1e-20), 1e-14, 0);
    tu_assert_close(lcdf(&families[4], wb, 30.0, 1, &st), -900.0, 1e-15, 0);
    assert_int_equal(st, EM_OK);
}

/* outside the support and at ±inf: 0 or -inf, no error, and a zero gradient */
static void test_outside_support(void **state) {
    (void)state;
    em_tape *t = em_tape_create();
    double xs[4] = {-1.0, 0.0, INFINITY, -INFINITY};
    em_var x = em_leaf(t, xs, 3);
    em_var rate = em_leaf_scalar(t, 2.0);
    em_dist d = em_dist_exponential(t, rate);
    em_var lo = em_dist_log_cdf(&d, em_slice(t, x, 0, 2)), hi = em_dist_log_ccdf(&d, em_slice(t, x, 0, 2));
    assert_true(em_value_scalar(t, lo) == -INFINITY && em_value_scalar(t, hi) == 0.0);
    em_var up = em_dist_log_ccdf(&d, em_slice(t, x, 2, 1));
    assert_true(em_value_scalar(t, up) == -INFINITY);
    assert_true(em_value_scalar(t, em_dist_log_cdf(&d, em_slice(t, x, 2, 1))) == 0.0);
    em_dist beta = em_dist_beta(t, rate, rate);
    assert_true(em_value_scalar(t, em_dist_log_cdf(&beta, em_scalar(t, 1.5))) == 0.0);
    assert_true(em_value_scalar(t, em_dist_log_ccdf(&beta, em_scalar(t, 1.0))) == -INFINITY);
    assert_true(em_value_scalar(t, em_dist_log_cdf(&beta, em_scalar(t, -0.5))) == -INFINITY);
    em_dist n = em_dist_normal(t, rate, rate);
    em_var ninf = em_const(t, xs + 2, 2);
    em_var both = em_op_add(t, em_dist_log_cdf(&n, em_slice(t, ninf, 0, 1)), em_dist_log_ccdf(&n, em_slice(t, ninf, 1, 1)));
    assert_true(em_value_scalar(t, both) == 0.0);
    assert_int_equal(em_tape_status(t), EM_OK);
    assert_int_equal(em_backward(t, hi), EM_OK);
    assert_true(em_adjoint(t, x)[0] == 0.0 && em_adjoint(t, x)[1] == 0.0 && em_adjoint(t, rate)[0] == 0.0);
    em_tape_destroy(t);
}

typedef struct {
    const family *f;
    size_t n;
    int vec[3];
    int upper;
} grad_ctx;

static em_var grad_fn(em_tape *t, const double *x, size_t n, em_var *leaves, size_t *nleaves, void *vctx) {
    grad_ctx *c = vctx;
    em_var value = em_leaf(t, x, c->n), p[3];
    leaves[0] = value;
    size_t off = c->n, k = 1;
    for (int j = 0; j < c->f->np; j++) {
        size_t len = c->vec[j] ? c->n : 1;
        p[j] = leaves[k++] = em_leaf(t, x + off, len);
        off += len;
    }
    *nleaves = k;
    (void)n;
    em_dist d = c->f->mk(t, p);
    em_var lp = c->upper ? em_dist_log_ccdf(&d, value) : em_dist_log_cdf(&d, value);
    return em_op_mul(t, lp, em_scalar(t, 1.7)); /* an adjoint other than 1 */
}

/* Every gradient in four layouts (all scalar, all vector, first vector, the rest vector), both
 * tails. The shape derivatives of Gamma, Beta and StudentT are differences themselves: the
 * tolerance (1e-6 relative) is the finite-difference check's, well above their own error. */
static void test_gradients(void **state) {
    (void)state;
    em_rng *r = em_rng_create(22, 0);
    const int layouts[4][3] = {{0, 0, 0}, {1, 1, 1}, {1, 0, 0}, {0, 1, 1}};
    for (size_t fi = 0; fi < NFAM; fi++) {
        const family *f = &families[fi];
        for (int li = 0; li < 4; li++)
            for (int upper = 0; upper < 2; upper++) {
                grad_ctx c = {f, 5, {layouts[li][0], layouts[li][1], layouts[li][2]}, upper};
                double x[32];
                size_t off = c.n;
                for (size_t i = 0; i < c.n; i++) x[i] = f->xlo + (f->xhi - f->xlo) * em_rng_uniform(r);
                for (int j = 0; j < f->np; j++) {
                    size_t len = c.vec[j] ? c.n : 1;
                    for (size_t i = 0; i < len; i++)
                        x[off + i] = f->plo[j] + (f->phi[j] - f->plo[j]) * em_rng_uniform(r);
                    off += len;
                }
                char label[96];
                snprintf(label, sizeof label, "%s %s layout %d", f->name, upper ? "log_ccdf" : "log_cdf", li);
                tu_check_gradient(grad_fn, x, off, &c, 1e-6, 1e-6, 1e-8, label);
            }
    }
    em_rng_destroy(r);
}

/* the gradient deep in the tails, against the closed form of d log Φ: at z = 40 (CCDF) it is
 * -φ(40)/Q(40) ≈ -40.025, where a formula through 1 - Φ would give NaN */
static void test_tail_gradient(void **state) {
    (void)state;
    em_tape *t = em_tape_create();
    em_var x = em_leaf_scalar(t, 40.0), mu = em_leaf_scalar(t, 0.0), sd = em_leaf_scalar(t, 1.0);
    em_dist d = em_dist_normal(t, mu, sd);
    em_var lp = em_dist_log_ccdf(&d, x);
    assert_int_equal(em_backward(t, lp), EM_OK);
    tu_assert_close(em_adjoint(t, x)[0], -40.024968847207263723, 1e-12, 0);
    tu_assert_close(em_adjoint(t, mu)[0], 40.024968847207263723, 1e-12, 0);
    tu_assert_close(em_adjoint(t, sd)[0], 40.0 * 40.024968847207263723, 1e-12, 0);
    em_tape_destroy(t);
}

/* The shape derivatives by differences (dshape in dist_continuous.c) against mpmath's
 * derivatives of the regularised incomplete gamma and beta functions at 40 digits: the
 * accuracy the header promises, about 1e-9 relative. */
static double shape_grad(int fam, int upper, double s1, double s2, double x, int which) {
    em_tape *t = em_tape_create();
    em_var a = em_leaf_scalar(t, s1), b = em_leaf_scalar(t, s2);
    em_dist d = fam == 0 ? em_dist_gamma(t, a, em_scalar(t, s2))
                : fam == 1 ? em_dist_student_t(t, a, em_scalar(t, 0.0), em_scalar(t, 1.0))
                           : em_dist_beta(t, a, b);
    em_var lp = upper ? em_dist_log_ccdf(&d, em_scalar(t, x)) : em_dist_log_cdf(&d, em_scalar(t, x));
    assert_int_equal(em_backward(t, lp), EM_OK);
    double g = em_adjoint(t, which ? b : a)[0];
    em_tape_destroy(t);
    return g;
}

static void test_shape_derivatives(void **state) {
    (void)state;
    const struct {
        int fam, upper;
        double s1, s2, x;
        int which;
        double want;
    } cases[] = {
        {0, 0, 2.5, 1.0, 1.7, 0, -0.73746659613657454},   {0, 1, 2.5, 1.0, 1.7, 0, 0.41740551646166395},
        {0, 0, 0.6, 2.0, 0.3, 0, -0.86928559616116885},   {0, 1, 0.6, 2.0, 0.3, 0, 1.7506092356096756},
        {0, 0, 8.0, 1.0, 20.0, 0, -0.00081652110490533699}, {0, 1, 8.0, 1.0, 20.0, 0, 1.0479010560260816},
        {0, 0, 1.5, 1.0, 0.01, 0, -5.3099282623912424},   {0, 1, 1.5, 1.0, 0.01, 0, 0.0039734984146428889},
        {1, 0, 3.5, 0.0, 2.2, 0, 0.011641135500823715},   {1, 1, 3.5, 0.0, 2.2, 0, -0.21587303122579333},
        {2, 0, 2.0, 3.0, 0.35, 0, -0.57154602078459225},  {2, 0, 2.0, 3.0, 0.35, 1, 0.3350061171983468},
        {2, 1, 2.0, 3.0, 0.35, 0, 0.4436672226131092},    {2, 1, 2.0, 3.0, 0.35, 1, -0.26005120877538106},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        tu_assert_close(shape_grad(cases[k].fam, cases[k].upper, cases[k].s1, cases[k].s2, cases[k].x, cases[k].which),
                        cases[k].want, 2e-9, 0);
}

static void test_errors(void **state) {
    (void)state;
    em_tape *t = em_tape_create();
    em_dist d = em_dist_normal(t, em_scalar(t, 0.0), em_scalar(t, -1.0));
    em_var lp = em_dist_log_cdf(&d, em_scalar(t, 0.5));
    assert_true(em_value_scalar(t, lp) == -INFINITY);
    assert_int_equal(em_tape_status(t), EM_ERR_DOMAIN);
    assert_non_null(strstr(em_tape_error(t)->msg, "Normal: scale[0] = -1 must be positive"));

    em_tape_reset(t);
    double xs[3] = {0.5, NAN, 1.0};
    d = em_dist_gamma(t, em_scalar(t, 2.0), em_scalar(t, 1.0));
    lp = em_dist_log_ccdf(&d, em_const(t, xs, 3));
    assert_int_equal(em_tape_status(t), EM_ERR_DOMAIN);
    assert_non_null(strstr(em_tape_error(t)->msg, "Gamma: value[1] = nan"));

    em_tape_reset(t);
    d = em_dist_poisson(t, em_scalar(t, 1.0)); /* no CDF yet */
    lp = em_dist_log_cdf(&d, em_scalar(t, 0.5));
    assert_false(em_var_ok(lp));
    assert_int_equal(em_tape_status(t), EM_ERR_ARG);
    assert_non_null(strstr(em_tape_error(t)->msg, "Poisson: log_cdf is not available"));
    em_tape_destroy(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values_vs_gsl),   cmocka_unit_test(test_tails),
        cmocka_unit_test(test_outside_support), cmocka_unit_test(test_gradients),
        cmocka_unit_test(test_tail_gradient),   cmocka_unit_test(test_shape_derivatives),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
