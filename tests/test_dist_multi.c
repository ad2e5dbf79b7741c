/* test_dist_multi.c — multivariate families (MVNormal, LKJCholesky, Dirichlet), the
 * categorical, and KL divergences: log densities against GSL or closed forms, gradients
 * against finite differences, sampling moments and KS tests (seeded; critical values at
 * alpha = 1e-4), bad inputs. */
#include "util/testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_cdf.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_sf_gamma.h>
#include <gsl/gsl_matrix.h>
#include <gsl/gsl_vector.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

static const double L3[9] = {1.2, 0, 0, 0.3, 0.8, 0, -0.5, 0.4, 1.5};
static const double mu3[3] = {0.5, -1.0, 2.0};

/* ---- MVNormal ------------------------------------------------------------------------------ */

static void test_mvn_vs_gsl(void **state) {
    (void)state;
    em_tape *t = em_tape_create();
    double x[6] = {0.1, -0.3, 2.5, 3.0, -2.0, -1.0};
    em_dist d = em_dist_mvnormal(t, em_const(t, mu3, 3), em_const_matrix(t, L3, 3, 3));
    assert_non_null(d.ops);
    assert_int_equal(em_dist_event_len(&d), 3);
    double lp = em_value_scalar(t, em_dist_log_prob(&d, em_const(t, x, 6)));
    assert_int_equal(em_tape_status(t), EM_OK);
    gsl_matrix_const_view Lv = gsl_matrix_const_view_array(L3, 3, 3);
    gsl_vector_const_view mv = gsl_vector_const_view_array(mu3, 3);
    gsl_vector *work = gsl_vector_alloc(3);
    double want = 0.0;
    for (int e = 0; e < 2; e++) {
        gsl_vector_const_view xv = gsl_vector_const_view_array(x + 3 * e, 3);
        double r;
        gsl_ran_multivariate_gaussian_log_pdf(&xv.vector, &mv.vector, &Lv.matrix, &r, work);
        want += r;
    }
    gsl_vector_free(work);
    tu_assert_close(lp, want, 1e-12, 0);
    em_tape_destroy(t);
}

typedef struct {
    int per_event_loc;
} mvn_ctx;
/* x = [value (6) | loc (3 or 6) | L (9)] */
static em_var mvn_fn(em_tape *t, const double *x, size_t n, em_var *leaves, size_t *nl, void *vctx) {
    mvn_ctx *c = vctx;
    size_t nm = c->per_event_loc ? 6 : 3;
    leaves[0] = em_leaf(t, x, 6);
    leaves[1] = em_leaf(t, x + 6, nm);
    em_var L = em_leaf(t, x + 6 + nm, 9);
    leaves[2] = L;
    *nl = 3;
    (void)n;
    em_dist d = em_dist_mvnormal(t, leaves[1], em_op_reshape(t, L, 3, 3));
    return em_op_mul(t, em_dist_log_prob(&d, leaves[0]), em_scalar(t, -0.7));
}

static void test_mvn_gradient(void **state) {
    (void)state;
    for (int pe = 0; pe < 2; pe++) {
        double x[24] = {0.1, -0.3, 2.5, 3.0, -2.0, -1.0};
        size_t nm = pe ? 6 : 3;
        for (size_t i = 0; i < nm; i++) x[6 + i] = mu3[i % 3] + 0.1 * (double)i;
        memcpy(x + 6 + nm, L3, sizeof L3);
        mvn_ctx c = {pe};
        /* Upper-triangle entries must be zero (anything else is a domain error), so they get
         * no gradient; the lower triangle is checked by finite differences below. */
        em_tape *t = em_tape_create();
        em_var leaves[3];
        size_t nl;
        em_var out = mvn_fn(t, x, 6 + nm + 9, leaves, &nl, &c);
        assert_int_equal(em_backward(t, out), EM_OK);
        const double *gL = em_adjoint(t, leaves[2]);
        assert_true(gL[1] == 0.0 && gL[2] == 0.0 && gL[5] == 0.0);
        em_tape_destroy(t);
    }
}

/* Finite differences over value, loc and the lower triangle only (upper entries must stay 0). */
static em_var mvn_tri_fn(em_tape *t, const double *x, size_t n, em_var *leaves, size_t *nl, void *vctx) {
    (void)vctx;
    leaves[0] = em_leaf(t, x, 6);
    leaves[1] = em_leaf(t, x + 6, 3);
    em_var lower = em_leaf(t, x + 9, 6); /* L00 L10 L11 L20 L21 L22 */
    leaves[2] = lower;
    *nl = 3;
    (void)n;
    static const size_t idx[9] = {0, 6, 6, 1, 2, 6, 3, 4, 5}; /* 6 -> the zero appended below */
    em_var zero = em_scalar(t, 0.0);
    em_var parts[2] = {lower, zero};
    em_var ext = em_op_concat(t, parts, 2);
    em_var L = em_op_reshape(t, em_op_gather(t, ext, idx, 9), 3, 3);
    em_dist d = em_dist_mvnormal(t, leaves[1], L);
    return em_dist_log_prob(&d, leaves[0]);
}
static void test_mvn_gradient_fd(void **state) {
    (void)state;
    double x[15] = {0.1, -0.3, 2.5, 3.0, -2.0, -1.0, 0.5, -1.0, 2.0, 1.2, 0.3, 0.8, -0.5, 0.4, 1.5};
    tu_check_gradient(mvn_tri_fn, x, 15, NULL, 1e-6, 1e-6, 1e-7, "MVNormal lower");
}

static void test_mvn_sampling(void **state) {
    (void)state;
    em_tape *t = em_tape_create();
    em_dist d = em_dist_mvnormal(t, em_const(t, mu3, 3), em_const_matrix(t, L3, 3, 3));
    em_rng *r = em_rng_create(31, 0);
    size_t m = 40000;
    double *x = malloc(3 * m * sizeof *x);
    em_error e = {0};
    assert_int_equal(em_dist_sample(&d, r, x, 3 * m, &e), EM_OK);
    /* sample covariance against L·Lᵀ; standard error of a covariance entry ≈ sqrt((S_ii S_jj + S_ij²)/m) */
    double S[9] = {0}, mean[3] = {0};
    for (size_t i = 0; i < m; i++)
        for (int a = 0; a < 3; a++) mean[a] += x[3 * i + a] / (double)m;
    for (size_t i = 0; i < m; i++)
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 3; b++) S[a * 3 + b] += (x[3 * i + a] - mean[a]) * (x[3 * i + b] - mean[b]) / (double)(m - 1);
    double C[9];
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) {
            double s = 0;
            for (int k = 0; k < 3; k++) s += L3[a * 3 + k] * L3[b * 3 + k];
            C[a * 3 + b] = s;
        }
    for (int a = 0; a < 3; a++) {
        if (!(fabs(mean[a] - mu3[a]) < 5 * sqrt(C[a * 4] / (double)m))) fail_msg("mean[%d] = %g", a, mean[a]);
        for (int b = 0; b < 3; b++) {
            double se = sqrt((C[a * 4] * C[b * 4] + C[a * 3 + b] * C[a * 3 + b]) / (double)m);
            if (!(fabs(S[a * 3 + b] - C[a * 3 + b]) < 5 * se)) fail_msg("cov[%d,%d] = %g, want %g", a, b, S[a * 3 + b], C[a * 3 + b]);
        }
    }
    double v[3];
    assert_int_equal(em_dist_variance(&d, v, 3, &e), EM_OK);
    for (int a = 0; a < 3; a++) tu_assert_close(v[a], C[a * 4], 1e-14, 0);
    /* rsample: same law, and gradients flow to loc and L */
    em_var s = em_dist_rsample(&d, r, 3 * m);
    assert_true(em_var_ok(s));
    const double *y = em_value(t, s);
    for (int a = 0; a < 3; a++) {
        double mm = 0;
        for (size_t i = 0; i < m; i++) mm += y[3 * i + a] / (double)m;
        if (!(fabs(mm - mu3[a]) < 5 * sqrt(C[a * 4] / (double)m))) fail_msg("rsample mean[%d] = %g", a, mm);
    }
    free(x);
    em_rng_destroy(r);
    em_tape_destroy(t);
}

static em_var mvn_rs_fn(em_tape *t, const double *x, size_t n, em_var *leaves, size_t *nl, void *vctx) {
    (void)vctx; (void)n;
    leaves[0] = em_leaf(t, x, 3);
    leaves[1] = em_leaf(t, x + 3, 9);
    *nl = 2;
    em_dist d = em_dist_mvnormal(t, leaves[0], em_op_reshape(t, leaves[1], 3, 3));
    em_rng *r = em_rng_create(3, 3);
    em_var s = em_dist_rsample(&d, r, 6);
    em_rng_destroy(r);
    static const double w[6] = {0.5, -1, 2, 0.3, 0.2, -0.7};
    return em_op_dot(t, s, em_const(t, w, 6));
}
static void test_mvn_rsample_gradient(void **state) {
    (void)state;
    double x[12];
    memcpy(x, mu3, sizeof mu3);
    memcpy(x + 3, L3, sizeof L3);
    /* A nonzero upper entry is rejected, so finite differences are taken on loc and on the
     * lower triangle only (the same ε each evaluation: a fresh RNG with a fixed seed). */
    em_tape *t = em_tape_create();
    em_var lv[2];
    size_t nl;
    em_var o = mvn_rs_fn(t, x, 12, lv, &nl, NULL);
    assert_int_equal(em_backward(t, o), EM_OK);
    const double *gm = em_adjoint(t, lv[0]), *gL = em_adjoint(t, lv[1]);
    double h = 1e-6;
    for (int k = 0; k < 12; k++) {
        if (k >= 3 && ((k - 3) % 3) > ((k - 3) / 3)) continue; /* upper triangle */
        double xp[12], xm[12];
        memcpy(xp, x, sizeof xp);
        memcpy(xm, x, sizeof xm);
        xp[k] += h;
        xm[k] -= h;
        em_tape *t2 = em_tape_create();
        double fp = em_value_scalar(t2, mvn_rs_fn(t2, xp, 12, lv, &nl, NULL));
        em_tape_reset(t2);
        double fm = em_value_scalar(t2, mvn_rs_fn(t2, xm, 12, lv, &nl, NULL));
        em_tape_destroy(t2);
        double g = k < 3 ? gm[k] : gL[k - 3];
        tu_assert_close(g, (fp - fm) / (2 * h), 1e-6, 1e-7);
    }
    em_tape_destroy(t);
}

static void test_mvn_bad(void **state) {
    (void)state;
    em_tape *t = em_tape_create();
    double Lbad[4] = {1, 0.5, 0, 1};
    double x[2] = {0, 0};
    em_dist d = em_dist_mvnormal(t, em_const(t, x, 2), em_const_matrix(t, Lbad, 2, 2));
    em_var lp = em_dist_log_prob(&d, em_const(t, x, 2));
    assert_true(isinf(em_value_scalar(t, lp)));
    assert_int_equal(em_tape_status(t), EM_ERR_DOMAIN);
    assert_non_null(strstr(em_tape_error(t)->msg, "MVNormal: scale_tril[0,1] = 0.5 must be zero"));
    em_tape_reset(t);
    double Lneg[4] = {1, 0, 0.5, -1};
    d = em_dist_mvnormal(t, em_const(t, x, 2), em_const_matrix(t, Lneg, 2, 2));
    lp = em_dist_log_prob(&d, em_const(t, x, 2));
    assert_non_null(strstr(em_tape_error(t)->msg, "MVNormal: scale_tril[1,1] = -1 must be positive"));
    em_tape_reset(t);
    double x3[3] = {0, 0, 0};
    double Lok[4] = {1, 0, 0.5, 1};
    d = em_dist_mvnormal(t, em_const(t, x, 2), em_const_matrix(t, Lok, 2, 2));
    assert_false(em_var_ok(em_dist_log_prob(&d, em_const(t, x3, 3))));
    assert_int_equal(em_tape_status(t), EM_ERR_SHAPE);
    em_tape_reset(t);
    d = em_dist_mvnormal(t, em_const(t, x3, 3), em_const_matrix(t, Lok, 2, 2));
    assert_null(d.ops);
    assert_int_equal(em_tape_status(t), EM_ERR_SHAPE);
    em_tape_destroy(t);
}

/* ---- Dirichlet ------------------------------------------------------------------------------- */

static const double alpha4[4] = {0.7, 2.0, 3.5, 1.2};

static void test_dirichlet_vs_gsl(void **state) {
    (void)state;
    em_tape *t = em_tape_create();
    double x[8] = {0.1, 0.2, 0.3, 0.4, 0.05, 0.05, 0.6, 0.3};
    em_dist d = em_dist_dirichlet(t, em_const(t, alpha4, 4));
    double lp = em_value_scalar(t, em_dist_log_prob(&d, em_const(t, x, 8)));
    double want = gsl_ran_dirichlet_lnpdf(4, alpha4, x) + gsl_ran_dirichlet_lnpdf(4, alpha4, x + 4);
    tu_assert_close(lp, want, 1e-12, 0);
    assert_int_equal(em_dist_support(&d).kind, EM_SUPPORT_SIMPLEX);
    assert_int_equal(em_dist_event_len(&d), 4);
    em_tape_reset(t);
    double bad[4] = {0.1, 0.2, 0.3, 0.5};
    d = em_dist_dirichlet(t, em_const(t, alpha4, 4));
    em_var v = em_dist_log_prob(&d, em_const(t, bad, 4));
    assert_true(isinf(em_value_scalar(t, v)));
    assert_non_null(strstr(em_tape_error(t)->msg, "Dirichlet: event 0 sums to 1.1"));
    em_tape_destroy(t);
}

static em_var dir_fn(em_tape *t, const double *x, size_t n, em_var *leaves, size_t *nl, void *vctx) {
    (void)vctx; (void)n;
    leaves[0] = em_leaf(t, x, 8);
    leaves[1] = em_leaf(t, x + 8, 4);
    *nl = 2;
    em_dist d = em_dist_dirichlet(t, leaves[1]);
    return em_dist_log_prob(&d, leaves[0]);
}
static void test_dirichlet_gradient(void **state) {
    (void)state;
    /* Perturbing the value would leave the simplex (a domain error), so the value's partial
     * is compared with its formula (α_k - 1)/x_k and the concentration's with finite
     * differences. */
    double x[12] = {0.1, 0.2, 0.3, 0.4, 0.05, 0.05, 0.6, 0.3, 0.7, 2.0, 3.5, 1.2};
    em_tape *t = em_tape_create();
    em_var lv[2];
    size_t nl;
    em_var o = dir_fn(t, x, 12, lv, &nl, NULL);
    assert_int_equal(em_backward(t, o), EM_OK);
    const double *ga = em_adjoint(t, lv[1]), *gx = em_adjoint(t, lv[0]);
    for (int i = 0; i < 8; i++) tu_assert_close(gx[i], (alpha4[i % 4] - 1) / x[i], 1e-14, 0);
    double h = 1e-6;
    for (int k = 0; k < 4; k++) {
        double xp[12], xm[12];
        memcpy(xp, x, sizeof xp);
        memcpy(xm, x, sizeof xm);
        xp[8 + k] += h;
        xm[8 + k] -= h;
        em_tape *t2 = em_tape_create();
        double fp = em_value_scalar(t2, dir_fn(t2, xp, 12, lv, &nl, NULL));
        em_tape_reset(t2);
        double fm = em_value_scalar(t2, dir_fn(t2, xm, 12, lv, &nl, NULL));
        em_tape_destroy(t2);
        tu_assert_close(ga[k], (fp - fm) / (2 * h), 1e-6, 1e-7);
    }
    em_tape_destroy(t);
}

static void test_dirichlet_sampling(void **state) {
    (void)state;
    em_tape *t = em_tape_create();
    em_dist d = em_dist_dirichlet(t, em_const(t, alpha4, 4));
    em_rng *r = em_rng_create(41, 0);
    size_t m = 20000;
    double *x = malloc(4 * m * sizeof *x), mv[4], vv[4];
    em_error e = {0};
    assert_int_equal(em_dist_sample(&d, r, x, 4 * m, &e), EM_OK);
    assert_int_equal(em_dist_mean(&d, mv, 4, &e), EM_OK);
    assert_int_equal(em_dist_variance(&d, vv, 4, &e), EM_OK);
    double A = 7.4;
    for (int k = 0; k < 4; k++) {
        tu_assert_close(mv[k], alpha4[k] / A, 1e-14, 0);
        double s = 0;
        for (size_t i = 0; i < m; i++) s += x[4 * i + k];
        s /= (double)m;
        if (!(fabs(s - mv[k]) < 5 * sqrt(vv[k] / (double)m))) fail_msg("Dirichlet mean[%d] = %g vs %g", k, s, mv[k]);
    }
    free(x);
    em_rng_destroy(r);
    em_tape_destroy(t);
}

/* ---- LKJCholesky --------------------------------------------------------------------------- */

static double lkj_lp(size_t K, double eta, const double *L) {
    em_tape *t = em_tape_create();
    em_dist d = em_dist_lkj_cholesky(t, K, em_scalar(t, eta));
    double lp = em_value_scalar(t, em_dist_log_prob(&d, em_const(t, L, K * K)));
    if (em_tape_status(t) != EM_OK) fail_msg("LKJ: %s", em_tape_error(t)->msg);
    em_tape_destroy(t);
    return lp;
}

static void test_lkj_k2(void **state) {
    (void)state;
    /* K = 2: r = L_10, L_11 = sqrt(1-r²), density (1-r²)^(η-1) / (2^(2η-1) B(η, η)) */
    double etas[3] = {0.5, 1.0, 3.7};
    for (int i = 0; i < 3; i++)
        for (double r = -0.95; r < 0.96; r += 0.19) {
            double L[4] = {1, 0, r, sqrt(1 - r * r)};
            double eta = etas[i];
            double want = (eta - 1) * log1p(-r * r) - (2 * eta - 1) * log(2.0) - gsl_sf_lnbeta(eta, eta);
            tu_assert_close(lkj_lp(2, eta, L), want, 1e-12, 1e-14);
        }
}

/* K = 3: the density integrates to 1 over the strictly-lower elements (L10, L20, L21) with
 * |row|<1. Monte Carlo over the cube [-1,1]^3 (importance weight 8): the estimate's relative
 * standard error at 400000 points is about 0.3%, the tolerance 2%. */
static void test_lkj_normaliser_k3(void **state) {
    (void)state;
    em_rng *r = em_rng_create(51, 0);
    double etas[2] = {1.0, 2.5};
    for (int ie = 0; ie < 2; ie++) {
        em_tape *t = em_tape_create();
        size_t N = 400000;
        double s = 0;
        for (size_t i = 0; i < N; i++) {
            double a = 2 * em_rng_uniform(r) - 1, b = 2 * em_rng_uniform(r) - 1, c = 2 * em_rng_uniform(r) - 1;
            if (b * b + c * c >= 1) continue;
            double L[9] = {1, 0, 0, a, sqrt(1 - a * a), 0, b, c, sqrt(1 - b * b - c * c)};
            em_tape_reset(t);
            em_dist d = em_dist_lkj_cholesky(t, 3, em_scalar(t, etas[ie]));
            s += exp(em_value_scalar(t, em_dist_log_prob(&d, em_const(t, L, 9))));
        }
        em_tape_destroy(t);
        tu_assert_close(8.0 * s / (double)N, 1.0, 0.02, 0);
    }
    em_rng_destroy(r);
}

static em_var lkj_fn(em_tape *t, const double *x, size_t n, em_var *leaves, size_t *nl, void *vctx) {
    (void)vctx; (void)n;
    /* eta, then a valid 3×3 factor L (only eta is perturbed by finite differences: moving one
     * element of L alone would leave the support) */
    leaves[0] = em_leaf(t, x, 1);
    leaves[1] = em_leaf(t, x + 1, 9);
    *nl = 2;
    em_dist d = em_dist_lkj_cholesky(t, 3, leaves[0]);
    return em_dist_log_prob(&d, leaves[1]);
}
static void test_lkj_gradient(void **state) {
    (void)state;
    double a = 0.3, b = -0.4, c = 0.5;
    double x[10] = {1.7, 1, 0, 0, a, sqrt(1 - a * a), 0, b, c, sqrt(1 - b * b - c * c)};
    em_tape *t = em_tape_create();
    em_var lv[2];
    size_t nl;
    em_var o = lkj_fn(t, x, 10, lv, &nl, NULL);
    assert_int_equal(em_backward(t, o), EM_OK);
    double geta = em_adjoint(t, lv[0])[0];
    const double *gL = em_adjoint(t, lv[1]);
    /* d/dL_ii = (K - i - 1 + 2η - 2)/L_ii (0-based i >= 1); everything else 0 */
    tu_assert_close(gL[4], (3 - 1 - 1 + 2 * 1.7 - 2) / x[5], 1e-14, 0);
    tu_assert_close(gL[8], (3 - 2 - 1 + 2 * 1.7 - 2) / x[9], 1e-14, 0);
    assert_true(gL[0] == 0 && gL[3] == 0 && gL[6] == 0 && gL[7] == 0);
    double h = 1e-6, xp[10], xm[10];
    memcpy(xp, x, sizeof xp);
    memcpy(xm, x, sizeof xm);
    xp[0] += h;
    xm[0] -= h;
    em_tape *t2 = em_tape_create();
    double fp = em_value_scalar(t2, lkj_fn(t2, xp, 10, lv, &nl, NULL));
    em_tape_reset(t2);
    double fm = em_value_scalar(t2, lkj_fn(t2, xm, 10, lv, &nl, NULL));
    em_tape_destroy(t2);
    tu_assert_close(geta, (fp - fm) / (2 * h), 1e-6, 1e-8);
    em_tape_destroy(t);
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Onion sampler: every draw is a valid correlation Cholesky factor, and the marginal of an
 * off-diagonal correlation is (r+1)/2 ~ Beta(β, β), β = η - 1 + K/2 (LKJ 2009, section 3.2).
 * KS test at alpha = 1e-4. */
static void test_lkj_sampling(void **state) {
    (void)state;
    size_t K = 4, m = 20000;
    double eta = 1.8, beta = eta - 1 + 0.5 * (double)K;
    em_tape *t = em_tape_create();
    em_dist d = em_dist_lkj_cholesky(t, K, em_scalar(t, eta));
    assert_int_equal(em_dist_event_len(&d), 16);
    assert_int_equal(em_support_transform(em_dist_support(&d)).kind, EM_TRANSFORM_CORR_CHOLESKY);
    em_rng *r = em_rng_create(52, 0);
    double *x = malloc(16 * m * sizeof *x), *r03 = malloc(m * sizeof *r03), *r12 = malloc(m * sizeof *r12);
    em_error e = {0};
    assert_int_equal(em_dist_sample(&d, r, x, 16 * m, &e), EM_OK);
    /* each draw scores finitely (it is in the support) */
    em_var lp = em_dist_log_prob(&d, em_const(t, x, 16 * 50));
    assert_int_equal(em_tape_status(t), EM_OK);
    assert_true(isfinite(em_value_scalar(t, lp)));
    for (size_t i = 0; i < m; i++) {
        const double *L = x + 16 * i;
        r03[i] = L[12]; /* corr(0,3) = L[3,0]·L[0,0] */
        r12[i] = L[4] * L[8] + L[5] * L[9]; /* corr(1,2) = row1·row2 */
    }
    double *rs[2] = {r03, r12};
    for (int k = 0; k < 2; k++) {
        qsort(rs[k], m, sizeof(double), cmp_d);
        double D = 0;
        for (size_t i = 0; i < m; i++) {
            double F = gsl_cdf_beta_P(0.5 * (rs[k][i] + 1), beta, beta);
            D = fmax(D, fmax(fabs(F - (double)i / m), fabs((double)(i + 1) / m - F)));
        }
        double crit = sqrt(-0.5 * log(0.5e-4)) / sqrt((double)m);
        if (!(D < crit)) fail_msg("LKJ marginal %d: KS %g >= %g", k, D, crit);
    }
    free(x);
    free(r03);
    free(r12);
    em_rng_destroy(r);
    em_tape_destroy(t);
}

static void test_lkj_bad(void **state) {
    (void)state;
    em_tape *t = em_tape_create();
    double L[4] = {1, 0, 0.6, 0.6};
    em_dist d = em_dist_lkj_cholesky(t, 2, em_scalar(t, 1.0));
    em_var lp = em_dist_log_prob(&d, em_const(t, L, 4));
    assert_true(isinf(em_value_scalar(t, lp)));
    assert_non_null(strstr(em_tape_error(t)->msg, "LKJCholesky: value row 1"));
    em_tape_reset(t);
    double I[4] = {1, 0, 0, 1};
    d = em_dist_lkj_cholesky(t, 2, em_scalar(t, -1.0));
    lp = em_dist_log_prob(&d, em_const(t, I, 4));
    assert_non_null(strstr(em_tape_error(t)->msg, "LKJCholesky: eta[0] = -1 must be positive"));
    em_tape_reset(t);
    d = em_dist_lkj_cholesky(t, 1, em_scalar(t, 1.0));
    assert_null(d.ops);
    em_tape_destroy(t);
}

/* ---- Categorical ----------------------------------------------------------------------------- */

static void test_categorical(void **state) {
    (void)state;
    em_tape *t = em_tape_create();
    double l[3] = {0.5, -1.0, 2.0}, y[4] = {0, 2, 2, 1};
    em_dist d = em_dist_categorical_logit(t, em_const(t, l, 3));
    double lp = em_value_scalar(t, em_dist_log_prob(&d, em_const(t, y, 4)));
    double lse = log(exp(0.5) + exp(-1.0) + exp(2.0));
    tu_assert_close(lp, 0.5 + 2 + 2 - 1 - 4 * lse, 1e-14, 0);
    assert_int_equal(em_dist_support(&d).kind, EM_SUPPORT_CATEGORY);
    double bad[1] = {3};
    em_var v = em_dist_log_prob(&d, em_const(t, bad, 1));
    assert_true(isinf(em_value_scalar(t, v)));
    assert_non_null(strstr(em_tape_error(t)->msg, "CategoricalLogit: value[0] = 3 is outside the support {0, ..., 2}"));
    /* sampling: chi-square against the softmax at alpha = 1e-4 (2 degrees of freedom) */
    em_tape_reset(t);
    d = em_dist_categorical_logit(t, em_const(t, l, 3));
    em_rng *r = em_rng_create(61, 0);
    size_t m = 30000;
    double *x = malloc(m * sizeof *x), cnt[3] = {0};
    em_error e = {0};
    assert_int_equal(em_dist_sample(&d, r, x, m, &e), EM_OK);
    for (size_t i = 0; i < m; i++) cnt[(int)x[i]] += 1;
    double chi = 0;
    for (int k = 0; k < 3; k++) {
        double ex = m * exp(l[k] - lse);
        chi += (cnt[k] - ex) * (cnt[k] - ex) / ex;
    }
    if (!(chi < gsl_cdf_chisq_Qinv(1e-4, 2))) fail_msg("Categorical chi-square %g", chi);
    free(x);
    em_rng_destroy(r);
    em_tape_destroy(t);
}

static em_var cat_fn(em_tape *t, const double *x, size_t n, em_var *leaves, size_t *nl, void *vctx) {
    int batched = *(int *)vctx;
    (void)n;
    static const double y[4] = {0, 2, 2, 1};
    em_var l = em_leaf(t, x, batched ? 12 : 3);
    leaves[0] = l;
    *nl = 1;
    if (batched) l = em_op_reshape(t, l, 4, 3);
    em_dist d = em_dist_categorical_logit(t, l);
    return em_dist_log_prob(&d, em_const(t, y, 4));
}
static void test_categorical_gradient(void **state) {
    (void)state;
    double x[12];
    tu_fill_uniform(x, 12, -2, 2, 62);
    int b = 0;
    tu_check_gradient(cat_fn, x, 3, &b, 1e-6, 1e-6, 1e-8, "Categorical");
    b = 1;
    tu_check_gradient(cat_fn, x, 12, &b, 1e-6, 1e-6, 1e-8, "Categorical batched");
}

/* ---- KL -------------------------------------------------------------------------------------- */

static em_var kl_fn(em_tape *t, const double *x, size_t n, em_var *leaves, size_t *nl, void *vctx) {
    (void)vctx; (void)n;
    for (int k = 0; k < 4; k++) leaves[k] = em_leaf(t, x + 3 * k, 3);
    *nl = 4;
    em_dist p = em_dist_normal(t, leaves[0], leaves[1]);
    em_dist q = em_dist_normal(t, leaves[2], leaves[3]);
    return em_dist_kl(&p, &q);
}

static void test_kl_normal(void **state) {
    (void)state;
    double x[12] = {0.1, 1.0, -2.0, 0.5, 1.2, 2.0, 1.0, -0.5, 0.0, 1.5, 0.7, 3.0};
    em_tape *t = em_tape_create();
    em_var lv[4];
    size_t nl;
    em_var kl = kl_fn(t, x, 12, lv, &nl, NULL);
    double want = 0;
    for (int i = 0; i < 3; i++) {
        double m1 = x[i], s1 = x[3 + i], m2 = x[6 + i], s2 = x[9 + i];
        want += log(s2 / s1) + (s1 * s1 + (m1 - m2) * (m1 - m2)) / (2 * s2 * s2) - 0.5;
    }
    tu_assert_close(em_value_scalar(t, kl), want, 1e-13, 0);
    em_dist p = em_dist_normal(t, lv[0], lv[1]);
    em_dist g = em_dist_gamma(t, lv[1], lv[1]);
    assert_true(em_dist_has_kl(&p, &p));
    assert_false(em_dist_has_kl(&p, &g));
    em_tape_destroy(t);
    tu_check_gradient(kl_fn, x, 12, NULL, 1e-6, 1e-6, 1e-8, "KL Normal");
    /* no closed form: an error on the tape, not a crash */
    t = em_tape_create();
    em_dist a = em_dist_normal(t, em_scalar(t, 0.0), em_scalar(t, 1.0));
    em_dist b = em_dist_laplace(t, em_scalar(t, 0.0), em_scalar(t, 1.0));
    assert_false(em_var_ok(em_dist_kl(&a, &b)));
    assert_int_equal(em_tape_status(t), EM_ERR_ARG);
    em_tape_destroy(t);
}

static const double L2b[9] = {0.9, 0, 0, -0.2, 1.4, 0, 0.6, 0.1, 0.7};
static const double mu3b[3] = {0.0, 0.5, 1.0};

static em_var kl_mvn_fn(em_tape *t, const double *x, size_t n, em_var *leaves, size_t *nl, void *vctx) {
    (void)vctx; (void)n;
    leaves[0] = em_leaf(t, x, 3);
    leaves[1] = em_leaf(t, x + 3, 9);
    leaves[2] = em_leaf(t, x + 12, 3);
    leaves[3] = em_leaf(t, x + 15, 9);
    *nl = 4;
    em_dist p = em_dist_mvnormal(t, leaves[0], em_op_reshape(t, leaves[1], 3, 3));
    em_dist q = em_dist_mvnormal(t, leaves[2], em_op_reshape(t, leaves[3], 3, 3));
    return em_dist_kl(&p, &q);
}

static void test_kl_mvn(void **state) {
    (void)state;
    double x[24];
    memcpy(x, mu3, sizeof mu3);
    memcpy(x + 3, L3, sizeof L3);
    memcpy(x + 12, mu3b, sizeof mu3b);
    memcpy(x + 15, L2b, sizeof L2b);
    em_tape *t = em_tape_create();
    em_var lv[4];
    size_t nl;
    em_var kl = kl_mvn_fn(t, x, 24, lv, &nl, NULL);
    double k = em_value_scalar(t, kl);
    assert_int_equal(em_backward(t, kl), EM_OK);
    /* Monte Carlo: E_p[log p(X) - log q(X)], 200000 draws; its standard error is estimated
     * from the same draws and the tolerance is 5 of them. */
    em_dist p = em_dist_mvnormal(t, em_const(t, mu3, 3), em_const_matrix(t, L3, 3, 3));
    em_dist q = em_dist_mvnormal(t, em_const(t, mu3b, 3), em_const_matrix(t, L2b, 3, 3));
    em_rng *r = em_rng_create(71, 0);
    size_t m = 200000;
    double *xs = malloc(3 * m * sizeof *xs);
    em_error e = {0};
    assert_int_equal(em_dist_sample(&p, r, xs, 3 * m, &e), EM_OK);
    em_tape *t2 = em_tape_create();
    double s = 0, s2 = 0;
    for (size_t i = 0; i < m; i++) {
        em_tape_reset(t2);
        em_dist p2 = em_dist_mvnormal(t2, em_const(t2, mu3, 3), em_const_matrix(t2, L3, 3, 3));
        em_dist q2 = em_dist_mvnormal(t2, em_const(t2, mu3b, 3), em_const_matrix(t2, L2b, 3, 3));
        em_var xv = em_const(t2, xs + 3 * i, 3);
        double dlt = em_value_scalar(t2, em_dist_log_prob(&p2, xv)) - em_value_scalar(t2, em_dist_log_prob(&q2, xv));
        s += dlt;
        s2 += dlt * dlt;
    }
    double mean = s / m, se = sqrt((s2 / m - mean * mean) / m);
    if (!(fabs(mean - k) < 5 * se)) fail_msg("KL MVN %g vs Monte Carlo %g (se %g)", k, mean, se);
    (void)q;
    free(xs);
    em_rng_destroy(r);
    em_tape_destroy(t2);
    em_tape_destroy(t);
    /* K = 1 reduces to the univariate formula */
    t = em_tape_create();
    double a1 = 1.3, a2 = 0.4;
    em_dist p1 = em_dist_mvnormal(t, em_scalar(t, 0.2), em_const_matrix(t, &a1, 1, 1));
    em_dist q1 = em_dist_mvnormal(t, em_scalar(t, -1.0), em_const_matrix(t, &a2, 1, 1));
    double want = log(a2 / a1) + (a1 * a1 + 1.44) / (2 * a2 * a2) - 0.5;
    tu_assert_close(em_value_scalar(t, em_dist_kl(&p1, &q1)), want, 1e-13, 0);
    em_tape_destroy(t);
}

/* gradient over loc and the lower triangles (upper entries stay zero) */
static em_var kl_mvn_tri_fn(em_tape *t, const double *x, size_t n, em_var *leaves, size_t *nl, void *vctx) {
    (void)vctx; (void)n;
    static const size_t idx[9] = {0, 6, 6, 1, 2, 6, 3, 4, 5};
    em_var Ls[2];
    for (int j = 0; j < 2; j++) {
        leaves[2 * j] = em_leaf(t, x + 9 * j, 3);
        leaves[2 * j + 1] = em_leaf(t, x + 9 * j + 3, 6);
        em_var parts[2] = {leaves[2 * j + 1], em_scalar(t, 0.0)};
        Ls[j] = em_op_reshape(t, em_op_gather(t, em_op_concat(t, parts, 2), idx, 9), 3, 3);
    }
    *nl = 4;
    em_dist p = em_dist_mvnormal(t, leaves[0], Ls[0]);
    em_dist q = em_dist_mvnormal(t, leaves[2], Ls[1]);
    return em_op_mul(t, em_dist_kl(&p, &q), em_scalar(t, 1.3));
}
static void test_kl_mvn_gradient(void **state) {
    (void)state;
    double x[18] = {0.5, -1.0, 2.0, 1.2, 0.3, 0.8, -0.5, 0.4, 1.5, 0.0, 0.5, 1.0, 0.9, -0.2, 1.4, 0.6, 0.1, 0.7};
    tu_check_gradient(kl_mvn_tri_fn, x, 18, NULL, 1e-6, 1e-6, 1e-8, "KL MVN");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mvn_vs_gsl),        cmocka_unit_test(test_mvn_gradient),
        cmocka_unit_test(test_mvn_gradient_fd),   cmocka_unit_test(test_mvn_sampling),
        cmocka_unit_test(test_mvn_rsample_gradient), cmocka_unit_test(test_mvn_bad),
        cmocka_unit_test(test_dirichlet_vs_gsl),  cmocka_unit_test(test_dirichlet_gradient),
        cmocka_unit_test(test_dirichlet_sampling), cmocka_unit_test(test_lkj_k2),
        cmocka_unit_test(test_lkj_normaliser_k3), cmocka_unit_test(test_lkj_gradient),
        cmocka_unit_test(test_lkj_sampling),      cmocka_unit_test(test_lkj_bad),
        cmocka_unit_test(test_categorical),       cmocka_unit_test(test_categorical_gradient),
        cmocka_unit_test(test_kl_normal),         cmocka_unit_test(test_kl_mvn),
        cmocka_unit_test(test_kl_mvn_gradient),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
