/* test_vmath.c — the four-lane e^x and log x of the GLM kernels (internal/vmath.h) against the C
 * library at many points across their ranges, their edges (underflow to zero, overflow to
 * infinity, NaN, exact values), and the Bernoulli-logit GLM's kernel at extreme linear
 * predictors against the closed form. */
#include "util/testutil.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal/vmath.h"

/* |a - b| in units of b's last place */
static double ulps(double a, double b) {
    if (a == b) return 0.0;
    double u = nextafter(fabs(b), INFINITY) - fabs(b);
    return fabs(a - b) / u;
}

/* the largest error over n points in [lo, hi] (uniform, or log-uniform when geometric),
 * four lanes at a time */
static double worst_ulps(em_v4d (*f)(em_v4d), double (*ref)(double), double lo, double hi, int geometric,
                         size_t n, uint64_t seed) {
    double *x = malloc(n * sizeof *x), worst = 0.0;
    assert_non_null(x);
    tu_fill_uniform(x, n, geometric ? log(lo) : lo, geometric ? log(hi) : hi, seed);
    for (size_t i = 0; i + 4 <= n; i += 4) {
        double in[4], out[4];
        for (int k = 0; k < 4; k++) in[k] = geometric ? exp(x[i + k]) : x[i + k];
        em_v4_store(out, f(em_v4_load(in)));
        for (int k = 0; k < 4; k++) {
            double u = ulps(out[k], ref(in[k]));
            if (u > worst) worst = u;
        }
    }
    free(x);
    return worst;
}

static em_v4d vexp(em_v4d x) { return em_v4_exp(x); }
static em_v4d vlog(em_v4d x) { return em_v4_log(x); }

static void test_exp_accuracy(void **state) {
    (void)state;
    /* glibc's exp is within an ulp of e^x; ours within one more */
    assert_true(worst_ulps(vexp, exp, -707.7, 709.78, 0, 400000, 11) <= 2.0);
    assert_true(worst_ulps(vexp, exp, -1.0, 1.0, 0, 400000, 12) <= 2.0);
    assert_true(worst_ulps(vexp, exp, -40.0, 0.0, 0, 400000, 13) <= 2.0);
    assert_true(worst_ulps(vexp, exp, 1e-300, 1e-3, 1, 40000, 14) <= 2.0);
}

static void test_exp_edges(void **state) {
    (void)state;
    double out[4];
    em_v4_store(out, em_v4_exp((em_v4d){0.0, -0.0, 1.0, -1.0}));
    assert_true(out[0] == 1.0 && out[1] == 1.0);
    assert_true(ulps(out[2], exp(1.0)) <= 1.0 && ulps(out[3], exp(-1.0)) <= 1.0);
    em_v4_store(out, em_v4_exp((em_v4d){-707.8, -1e300, -INFINITY, NAN}));
    assert_true(out[0] == 0.0 && out[1] == 0.0 && out[2] == 0.0 && isnan(out[3]));
    em_v4_store(out, em_v4_exp((em_v4d){709.78, 709.79, 1e300, INFINITY}));
    assert_true(isfinite(out[0]) && ulps(out[0], exp(709.78)) <= 2.0);
    assert_true(isinf(out[1]) && isinf(out[2]) && isinf(out[3]));
    em_v4_store(out, em_v4_exp((em_v4d){-707.6, -700.0, 700.0, 709.0}));
    for (int k = 0; k < 4; k++) assert_true(ulps(out[k], exp((double[]){-707.6, -700.0, 700.0, 709.0}[k])) <= 2.0);
}

static void test_log_accuracy(void **state) {
    (void)state;
    assert_true(worst_ulps(vlog, log, 1.0, 2.0, 0, 400000, 21) <= 2.0); /* what the kernels pass */
    assert_true(worst_ulps(vlog, log, 0.5, 1.5, 0, 400000, 22) <= 2.0); /* near 1, where log is small */
    assert_true(worst_ulps(vlog, log, DBL_MIN, DBL_MAX, 1, 400000, 23) <= 2.0);
}

static void test_log_edges(void **state) {
    (void)state;
    double out[4];
    em_v4_store(out, em_v4_log((em_v4d){1.0, 2.0, 0.5, 1024.0}));
    assert_true(out[0] == 0.0);
    assert_true(ulps(out[1], log(2.0)) <= 1.0 && ulps(out[2], log(0.5)) <= 1.0 && ulps(out[3], log(1024.0)) <= 1.0);
    em_v4_store(out, em_v4_log((em_v4d){DBL_MIN, DBL_MAX, 1.0 + DBL_EPSILON, 1.0 - DBL_EPSILON / 2}));
    assert_true(ulps(out[0], log(DBL_MIN)) <= 1.0 && ulps(out[1], log(DBL_MAX)) <= 1.0);
    assert_true(ulps(out[2], log1p(DBL_EPSILON)) <= 1.0 && ulps(out[3], log1p(-DBL_EPSILON / 2)) <= 1.0);
}

/* The fused Bernoulli-logit GLM at linear predictors from -800 to 800 (one coefficient, X = 1):
 * log p(y | η) and its derivative y - σ(η), from long double. */
static void test_bernoulli_glm_extreme_eta(void **state) {
    (void)state;
    static const double etas[] = {-800, -709, -40, -20, -1e-9, 0, 1e-9, 3, 20, 40, 709, 800};
    for (size_t k = 0; k < sizeof etas / sizeof etas[0]; k++)
        for (int y = 0; y < 2; y++) {
            em_tape *t = em_tape_create();
            double one = 1.0, yv = y, b = etas[k];
            em_var beta = em_leaf(t, &b, 1);
            em_dist d = em_dist_bernoulli_logit_glm(t, em_const_matrix(t, &one, 1, 1), em_scalar(t, 0.0), beta);
            em_var l = em_dist_log_prob(&d, em_const(t, &yv, 1));
            assert_int_equal(em_tape_status(t), EM_OK);
            assert_int_equal(em_backward(t, l), EM_OK);
            /* log p = -log(1 + e^{-η}) for y = 1, -log(1 + e^{η}) for y = 0: no cancellation */
            long double e = y ? -etas[k] : etas[k], lp = -(e > 0 ? e + log1pl(expl(-e)) : log1pl(expl(e)));
            /* y - σ(η) = σ(-η) for y = 1, -σ(η) for y = 0 */
            long double h = e, sig = h > 0 ? 1.0L / (1.0L + expl(-h)) : expl(h) / (1.0L + expl(h));
            tu_assert_close(em_value_scalar(t, l), (double)lp, 1e-14, 1e-300);
            tu_assert_close(em_adjoint(t, beta)[0], (double)(y ? sig : -sig), 1e-14, 1e-300);
            em_tape_destroy(t);
        }
}

/* The eight-lane functions are the four-lane ones' body at another width: the same bits, lane for
 * lane, over both ranges and the edges (0, ±inf, NaN, under- and overflow) */
static void test_eight_lanes_match_four(void **state) {
    (void)state;
    enum { N = 80000 };
    double *x = malloc(N * sizeof *x);
    assert_non_null(x);
    static const double edges[8] = {0.0, -0.0, INFINITY, -INFINITY, -707.8, 709.79, 1e-310, 1.0};
    for (int which = 0; which < 2; which++) {
        tu_fill_uniform(x, N, which ? -700.0 : -745.0, which ? 700.0 : 710.0, 21 + which);
        memcpy(x, edges, sizeof edges);
        x[8] = NAN;
        for (size_t i = 0; i < N; i += 8) {
            double a[8], b[8], in[8];
            for (int k = 0; k < 8; k++) in[k] = which ? exp(x[i + k]) : x[i + k]; /* log: positive x */
            em_v8d v = em_v8_load(in);
            em_v8_store(a, which ? em_v8_log(v) : em_v8_exp(v));
            for (int h = 0; h < 2; h++) em_v4_store(b + 4 * h, which ? em_v4_log(em_v4_load(in + 4 * h))
                                                                       : em_v4_exp(em_v4_load(in + 4 * h)));
            if (memcmp(a, b, sizeof a)) fail_msg("%s: eight lanes differ from four near x = %g", which ? "log" : "exp", in[0]);
        }
    }
    free(x);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exp_accuracy),
        cmocka_unit_test(test_exp_edges),
        cmocka_unit_test(test_log_accuracy),
        cmocka_unit_test(test_log_edges),
        cmocka_unit_test(test_bernoulli_glm_extreme_eta),
        cmocka_unit_test(test_eight_lanes_match_four),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
