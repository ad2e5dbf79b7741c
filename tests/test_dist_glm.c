/* test_dist_glm.c — the fused GLM likelihoods (normal_id_glm, bernoulli_logit_glm,
 * poisson_log_glm): log density and gradient equal the unfused composition
 * (matvec, add, family log_prob) on the same inputs; gradients against finite differences;
 * sampling moments; bad inputs. */
#include "util/testutil.h"
#include "ember/linalg.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { NR = 40, NC = 5 };
static double X[NR * NC], y_norm[NR], y_bern[NR], y_pois[NR];

static void setup_data(void) {
    tu_fill_uniform(X, NR * NC, -1, 1, 81);
    em_rng *r = em_rng_create(82, 0);
    for (int i = 0; i < NR; i++) {
        y_norm[i] = 2 * em_rng_normal(r);
        y_bern[i] = em_rng_uniform(r) < 0.4;
        y_pois[i] = floor(6 * em_rng_uniform(r));
    }
    em_rng_destroy(r);
}

typedef struct {
    int kind;      /* 0 normal, 1 bernoulli, 2 poisson */
    int fused;
    int vec_alpha; /* alpha per row */
    int vec_sigma; /* sigma per row */
    int y_leaf;    /* y needs a gradient (normal) */
} glm_ctx;

static size_t glm_nx(const glm_ctx *c) {
    return (c->y_leaf ? NR : 0) + (c->vec_alpha ? NR : 1) + NC + (c->kind == 0 ? (c->vec_sigma ? NR : 1) : 0);
}

/* x = [y? | alpha | beta | sigma?] */
static em_var glm_fn(em_tape *t, const double *x, size_t n, em_var *leaves, size_t *nl, void *vctx) {
    glm_ctx *c = vctx;
    (void)n;
    size_t off = 0, k = 0;
    const double *ydata = c->kind == 0 ? y_norm : c->kind == 1 ? y_bern : y_pois;
    em_var y;
    if (c->y_leaf) {
        y = leaves[k++] = em_leaf(t, x, NR);
        off += NR;
    } else {
        y = em_const(t, ydata, NR);
    }
    size_t na = c->vec_alpha ? NR : 1;
    em_var alpha = leaves[k++] = em_leaf(t, x + off, na);
    off += na;
    em_var beta = leaves[k++] = em_leaf(t, x + off, NC);
    off += NC;
    em_var sigma = EM_VAR_INVALID;
    if (c->kind == 0) {
        size_t ns = c->vec_sigma ? NR : 1;
        sigma = leaves[k++] = em_leaf(t, x + off, ns);
    }
    *nl = k;
    em_var Xv = em_const_matrix(t, X, NR, NC);
    em_dist d;
    if (c->fused) {
        d = c->kind == 0   ? em_dist_normal_id_glm(t, Xv, alpha, beta, sigma)
            : c->kind == 1 ? em_dist_bernoulli_logit_glm(t, Xv, alpha, beta)
                           : em_dist_poisson_log_glm(t, Xv, alpha, beta);
    } else {
        em_var eta = em_op_add(t, em_op_matvec(t, Xv, beta), alpha);
        d = c->kind == 0   ? em_dist_normal(t, eta, sigma)
            : c->kind == 1 ? em_dist_bernoulli_logit(t, eta)
                           : em_dist_poisson_log(t, eta);
    }
    return em_op_mul(t, em_dist_log_prob(&d, y), em_scalar(t, 0.9));
}

static void fill_x(const glm_ctx *c, double *x) {
    size_t off = 0;
    if (c->y_leaf) {
        memcpy(x, y_norm, sizeof y_norm);
        off += NR;
    }
    size_t na = c->vec_alpha ? NR : 1;
    tu_fill_uniform(x + off, na, -0.5, 0.5, 83);
    off += na;
    tu_fill_uniform(x + off, NC, -0.8, 0.8, 84);
    off += NC;
    if (c->kind == 0) tu_fill_uniform(x + off, c->vec_sigma ? NR : 1, 0.7, 2.0, 85);
}

/* f at x built twice, with ctx fused and unfused: the same value (1e-12) and gradients. */
static void assert_fused_matches(tu_tape_fn f, void *fused, void *unfused, const double *x, size_t nx, double gtol) {
    em_tape *t1 = em_tape_create(), *t2 = em_tape_create();
    em_var l1[4], l2[4];
    size_t n1, n2;
    em_var o1 = f(t1, x, nx, l1, &n1, fused), o2 = f(t2, x, nx, l2, &n2, unfused);
    if (em_tape_status(t1) || em_tape_status(t2)) fail_msg("%s / %s", em_tape_error(t1)->msg, em_tape_error(t2)->msg);
    tu_assert_close(em_value_scalar(t1, o1), em_value_scalar(t2, o2), 1e-12, 0);
    assert_int_equal(em_backward(t1, o1), EM_OK);
    assert_int_equal(em_backward(t2, o2), EM_OK);
    for (size_t k = 0; k < n1; k++) {
        const double *g1 = em_adjoint(t1, l1[k]), *g2 = em_adjoint(t2, l2[k]);
        for (size_t i = 0; i < em_len(t1, l1[k]); i++) tu_assert_close(g1[i], g2[i], gtol, 1e-12);
    }
    em_tape_destroy(t1);
    em_tape_destroy(t2);
}

static void test_glm_matches_unfused(void **state) {
    (void)state;
    setup_data();
    for (int kind = 0; kind < 3; kind++)
        for (int va = 0; va < 2; va++)
            for (int vs = 0; vs < (kind == 0 ? 2 : 1); vs++)
                for (int yl = 0; yl < (kind == 0 ? 2 : 1); yl++) {
                    glm_ctx c = {kind, 1, va, vs, yl};
                    glm_ctx u = c;
                    u.fused = 0;
                    double x[3 * NR + NC];
                    size_t nx = glm_nx(&c);
                    fill_x(&c, x);
                    assert_fused_matches(glm_fn, &c, &u, x, nx, 1e-11);
                    char label[64];
                    snprintf(label, sizeof label, "GLM kind %d alpha %d sigma %d y %d", kind, va, vs, yl);
                    tu_check_gradient(glm_fn, x, nx, &c, 1e-6, 1e-6, 1e-7, label);
                }
}

/* The one-pass kernels of the normal and the Bernoulli-logit GLM (four rows per vector with X
 * transposed for up to eight coefficients; row blocks of four beyond), on every coefficient count
 * they specialise, on row counts that leave 0-3 rows over, with y a vector or one value, and with
 * one α or one per row: the same density and gradient as matvec + add + Normal or
 * BernoulliLogit. */
static void test_one_pass_glm_kernel_shapes(void **state) {
    (void)state;
    static const size_t ps[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 20};
    static const size_t ns[] = {1, 2, 3, 4, 5, 7, 8, 39, 170};
    double Xs[170 * 20], ys[2][170], th[22], avec[170];
    tu_fill_uniform(Xs, 170 * 20, -2, 2, 91);
    tu_fill_uniform(avec, 170, -1, 1, 90);
    tu_fill_uniform(ys[0], 170, -3, 3, 92);
    for (size_t i = 0; i < 170; i++) ys[1][i] = ys[0][i] > 0.5;
    for (int bern = 0; bern < 2; bern++)
        for (size_t a = 0; a < sizeof ps / sizeof ps[0]; a++)
            for (size_t b = 0; b < sizeof ns / sizeof ns[0]; b++)
                for (int scalar_y = 0; scalar_y < 2; scalar_y++)
                    for (int va = 0; va < 2; va++) {
                        size_t p = ps[a], n = ns[b], np = p + (bern ? 1 : 2);
                        tu_fill_uniform(th, p + 2, -1, 1, 93 + (unsigned)(a * 16 + b));
                        th[p + 1] = 1.3; /* sigma */
                        double lp[2], g[2][22], ga[2][170];
                        for (int fused = 0; fused < 2; fused++) {
                            em_tape *t = em_tape_create();
                            em_var alpha = va ? em_leaf(t, avec, n) : em_leaf(t, th, 1), beta = em_leaf(t, th + 1, p);
                            em_var sigma = bern ? EM_VAR_INVALID : em_leaf(t, th + p + 1, 1);
                            em_var Xv = em_const_matrix(t, Xs, n, p), y = em_const(t, ys[bern], scalar_y ? 1 : n);
                            em_var l;
                            if (fused) {
                                em_dist d = bern ? em_dist_bernoulli_logit_glm(t, Xv, alpha, beta)
                                                 : em_dist_normal_id_glm(t, Xv, alpha, beta, sigma);
                                l = em_dist_log_prob(&d, y);
                            } else {
                                em_var eta = em_op_add(t, em_op_matvec(t, Xv, beta), alpha);
                                em_dist d = bern ? em_dist_bernoulli_logit(t, eta) : em_dist_normal(t, eta, sigma);
                                em_var yy = scalar_y ? em_op_add(t, em_op_mul(t, eta, em_scalar(t, 0.0)), y) : y;
                                l = em_op_sum(t, em_dist_log_prob(&d, yy));
                            }
                            if (em_tape_status(t)) fail_msg("p %zu n %zu: %s", p, n, em_tape_error(t)->msg);
                            assert_int_equal(em_backward(t, l), EM_OK);
                            lp[fused] = em_value_scalar(t, l);
                            g[fused][0] = em_adjoint(t, alpha)[0];
                            if (va) memcpy(ga[fused], em_adjoint(t, alpha), n * sizeof(double));
                            memcpy(g[fused] + 1, em_adjoint(t, beta), p * sizeof(double));
                            if (!bern) g[fused][p + 1] = em_adjoint(t, sigma)[0];
                            em_tape_destroy(t);
                        }
                        tu_assert_close(lp[1], lp[0], 1e-12, 0);
                        for (size_t k = 0; k < np; k++) tu_assert_close(g[1][k], g[0][k], 1e-11, 1e-12);
                        for (size_t i = 0; va && i < n; i++) tu_assert_close(ga[1][i], ga[0][i], 1e-11, 1e-12);
                    }
}

/* ∂/∂X is available too when X carries a gradient (rare; a learned design) */
static em_var glm_x_fn(em_tape *t, const double *x, size_t n, em_var *leaves, size_t *nl, void *vctx) {
    (void)vctx; (void)n;
    leaves[0] = em_leaf(t, x, 6);
    leaves[1] = em_leaf(t, x + 6, 2);
    *nl = 2;
    em_dist d = em_dist_poisson_log_glm(t, em_op_reshape(t, leaves[0], 3, 2), em_scalar(t, 0.1), leaves[1]);
    static const double y[3] = {0, 3, 1};
    return em_dist_log_prob(&d, em_const(t, y, 3));
}
static void test_glm_x_gradient(void **state) {
    (void)state;
    double x[8] = {0.1, -0.4, 0.7, 0.2, -0.3, 0.5, 0.8, -0.6};
    tu_check_gradient(glm_x_fn, x, 8, NULL, 1e-6, 1e-6, 1e-8, "PoissonLogGLM dX");
}

static void test_glm_bad(void **state) {
    (void)state;
    setup_data();
    em_tape *t = em_tape_create();
    em_var Xv = em_const_matrix(t, X, NR, NC);
    double b[NC] = {0};
    em_dist d = em_dist_normal_id_glm(t, Xv, em_scalar(t, 0.0), em_const(t, b, NC), em_scalar(t, -2.0));
    em_var lp = em_dist_log_prob(&d, em_const(t, y_norm, NR));
    assert_true(isinf(em_value_scalar(t, lp)));
    assert_int_equal(em_tape_status(t), EM_ERR_DOMAIN);
    assert_non_null(strstr(em_tape_error(t)->msg, "NormalIdGLM: sigma[0] = -2 must be positive"));
    em_tape_reset(t);
    Xv = em_const_matrix(t, X, NR, NC);
    double yb[NR];
    memcpy(yb, y_bern, sizeof yb);
    yb[7] = 2;
    d = em_dist_bernoulli_logit_glm(t, Xv, em_scalar(t, 0.0), em_const(t, b, NC));
    lp = em_dist_log_prob(&d, em_const(t, yb, NR));
    assert_true(isinf(em_value_scalar(t, lp)));
    assert_non_null(strstr(em_tape_error(t)->msg, "BernoulliLogitGLM: value[7] = 2 is outside the support {0, 1}"));
    em_tape_reset(t);
    Xv = em_const_matrix(t, X, NR, NC);
    double big[NC] = {1e300, 1e300, 1e300, 1e300, 1e300};
    d = em_dist_poisson_log_glm(t, Xv, em_scalar(t, 0.0), em_const(t, big, NC));
    lp = em_dist_log_prob(&d, em_const(t, y_pois, NR));
    assert_true(isinf(em_value_scalar(t, lp)));
    assert_non_null(strstr(em_tape_error(t)->msg, "PoissonLogGLM: linear predictor"));
    em_tape_reset(t);
    Xv = em_const_matrix(t, X, NR, NC);
    d = em_dist_poisson_log_glm(t, Xv, em_scalar(t, 0.0), em_const(t, b, NC - 1));
    assert_null(d.ops);
    assert_int_equal(em_tape_status(t), EM_ERR_SHAPE);
    assert_non_null(strstr(em_tape_error(t)->msg, "beta has length 4, X has 5 columns"));
    em_tape_destroy(t);
    /* a non-finite α or β, in every family, fused path or not (leaves: the one-pass kernels;
     * constants: the general pass), one α or one per row: rejected, the coefficient named */
    double yg[NR], yo[NR];
    for (int i = 0; i < NR; i++) {
        yg[i] = fabs(y_norm[i]) + 0.1;
        yo[i] = fmin(y_pois[i], 3.0);
    }
    const double *ys[6] = {y_norm, y_bern, y_pois, y_pois, yg, yo};
    static const char *names[6] = {"NormalIdGLM", "BernoulliLogitGLM", "PoissonLogGLM", "NegBinomial2LogGLM",
                                   "GammaLogGLM", "OrderedLogisticGLM"};
    static const double cuts[3] = {-0.5, 0.4, 1.5};
    for (int kind = 0; kind < 6; kind++)
        for (int leaf = 0; leaf < 2; leaf++)
            for (int bad = 0; bad < (kind == 5 ? 2 : 4); bad++) { /* β[2] NaN, β[3] -inf; α NaN; α[13] inf */
                em_tape *tt = em_tape_create();
                double bv[NC] = {0.1, -0.2, 0.3, 0.0, 0.1}, av[NR];
                for (int i = 0; i < NR; i++) av[i] = 0.2;
                if (bad == 0) bv[2] = NAN;
                if (bad == 1) bv[3] = -INFINITY;
                if (bad == 2) av[0] = NAN;
                if (bad == 3) av[13] = INFINITY;
                size_t na = bad == 3 ? NR : 1;
                em_var Xc = em_const_matrix(tt, X, NR, NC);
                /* a leaf holds only finite values: the bad ones are added to zero leaves */
                double zero[NR] = {0};
                em_var al = em_const(tt, av, na), be = em_const(tt, bv, NC);
                if (leaf) {
                    al = em_op_add(tt, em_leaf(tt, zero, na), al);
                    be = em_op_add(tt, em_leaf(tt, zero, NC), be);
                }
                em_dist dd = kind == 0   ? em_dist_normal_id_glm(tt, Xc, al, be, em_scalar(tt, 1.5))
                             : kind == 1 ? em_dist_bernoulli_logit_glm(tt, Xc, al, be)
                             : kind == 2 ? em_dist_poisson_log_glm(tt, Xc, al, be)
                             : kind == 3 ? em_dist_neg_binomial2_log_glm(tt, Xc, al, be, em_scalar(tt, 2.0), NULL)
                             : kind == 4 ? em_dist_gamma_log_glm(tt, Xc, al, be, em_scalar(tt, 2.0), NULL)
                                         : em_dist_ordered_logistic_glm(tt, Xc, be, em_const(tt, cuts, 3), NULL);
                em_var l = em_dist_log_prob(&dd, em_const(tt, ys[kind], NR));
                char want[96];
                snprintf(want, sizeof want, "%s: %s[%d] = ", names[kind], bad < 2 ? "beta" : "alpha",
                         bad == 0 ? 2 : bad == 1 ? 3 : bad == 2 ? 0 : 13);
                if (!(em_value_scalar(tt, l) == -INFINITY && em_tape_status(tt) == EM_ERR_DOMAIN &&
                      strstr(em_tape_error(tt)->msg, want) && strstr(em_tape_error(tt)->msg, "must be finite")))
                    fail_msg("kind %d leaf %d bad %d: lp %g, '%s'", kind, leaf, bad, em_value_scalar(tt, l),
                             em_tape_error(tt)->msg);
                em_tape_destroy(tt);
            }
}

static void test_glm_moments_and_sampling(void **state) {
    (void)state;
    setup_data();
    em_tape *t = em_tape_create();
    double b[NC] = {0.3, -0.2, 0.5, 0.1, -0.4};
    em_var Xv = em_const_matrix(t, X, NR, NC);
    em_dist d = em_dist_poisson_log_glm(t, Xv, em_scalar(t, 0.7), em_const(t, b, NC));
    double mean[NR];
    em_error e = {0};
    assert_int_equal(em_dist_mean(&d, mean, NR, &e), EM_OK);
    for (int i = 0; i < NR; i++) {
        double eta = 0.7;
        for (int j = 0; j < NC; j++) eta += X[i * NC + j] * b[j];
        tu_assert_close(mean[i], exp(eta), 1e-13, 0);
    }
    /* 2000 replicates of the whole batch: each row's sample mean within 5 standard errors */
    size_t reps = 2000;
    double *s = malloc(reps * NR * sizeof *s);
    em_rng *r = em_rng_create(86, 0);
    assert_int_equal(em_dist_sample(&d, r, s, reps * NR, &e), EM_OK);
    for (int i = 0; i < NR; i++) {
        double m = 0;
        for (size_t k = 0; k < reps; k++) m += s[k * NR + i];
        m /= (double)reps;
        if (!(fabs(m - mean[i]) < 5 * sqrt(mean[i] / (double)reps))) fail_msg("row %d: mean %g vs %g", i, m, mean[i]);
    }
    free(s);
    em_rng_destroy(r);
    em_tape_destroy(t);
}

/* ---- offsets and the one-pass kernels (negative binomial, Gamma, ordered logistic) ------------
 * Each against its unfused form (matvec + add + the family's own log density) on the same
 * leaves, value and every gradient to 1e-12, then against finite differences. */

enum { NK = 6 }; /* 0 normal, 1 bernoulli, 2 poisson, 3 neg_binomial_2_log, 4 gamma log, 5 ordered */
static double offs[NR], y_nb[NR], y_gam[NR], y_ord[NR];
static const double CUT3[3] = {-0.8, 0.1, 1.2};

typedef struct {
    int kind, fused, vec_alpha, vec_par, offset, x_leaf;
} glm2_ctx;

static size_t glm2_nx(const glm2_ctx *c) {
    size_t npar = c->kind == 5 ? 3 : c->kind == 1 || c->kind == 2 ? 0 : (c->vec_par ? NR : 1);
    return (c->kind == 5 ? 0 : (c->vec_alpha ? NR : 1)) + NC + npar + (c->x_leaf ? NR * NC : 0);
}

/* x = [alpha (not ordered) | beta | par (sigma, phi, shape or the cutpoints) | X?] */
static em_var glm2_fn(em_tape *t, const double *x, size_t n, em_var *lv, size_t *nl, void *vctx) {
    const glm2_ctx *c = vctx;
    (void)n;
    size_t off = 0, k = 0, na = c->vec_alpha ? NR : 1;
    em_var alpha = em_scalar(t, 0.0), par = EM_VAR_INVALID;
    if (c->kind != 5) {
        alpha = lv[k++] = em_leaf(t, x, na);
        off += na;
    }
    em_var beta = lv[k++] = em_leaf(t, x + off, NC);
    off += NC;
    if (c->kind != 1 && c->kind != 2) {
        size_t np = c->kind == 5 ? 3 : c->vec_par ? NR : 1;
        par = lv[k++] = em_leaf(t, x + off, np);
        off += np;
    }
    em_var Xv = em_const_matrix(t, X, NR, NC);
    if (c->x_leaf) Xv = em_op_reshape(t, lv[k++] = em_leaf(t, x + off, NR * NC), NR, NC);
    *nl = k;
    const double *o = c->offset ? offs : NULL;
    const double *yd[NK] = {y_norm, y_bern, y_pois, y_nb, y_gam, y_ord};
    em_var y = em_const(t, yd[c->kind], NR);
    em_dist d;
    if (c->fused) {
        switch (c->kind) {
        case 0: d = em_dist_normal_id_glm_offset(t, Xv, alpha, beta, par, o); break;
        case 1: d = em_dist_bernoulli_logit_glm_offset(t, Xv, alpha, beta, o); break;
        case 2: d = em_dist_poisson_log_glm_offset(t, Xv, alpha, beta, o); break;
        case 3: d = em_dist_neg_binomial2_log_glm(t, Xv, alpha, beta, par, o); break;
        case 4: d = em_dist_gamma_log_glm(t, Xv, alpha, beta, par, o); break;
        default: d = em_dist_ordered_logistic_glm(t, Xv, beta, par, o); break;
        }
    } else {
        em_var eta = em_op_add(t, em_op_matvec(t, Xv, beta), alpha);
        if (o) eta = em_op_add(t, eta, em_const(t, o, NR));
        switch (c->kind) {
        case 0: d = em_dist_normal(t, eta, par); break;
        case 1: d = em_dist_bernoulli_logit(t, eta); break;
        case 2: d = em_dist_poisson_log(t, eta); break;
        case 3: d = em_dist_neg_binomial2_log(t, eta, par); break;
        case 4: d = em_dist_gamma_mean(t, em_op_exp(t, eta), par); break;
        default: d = em_dist_ordered_logistic(t, eta, par); break;
        }
    }
    return em_op_mul(t, em_dist_log_prob(&d, y), em_scalar(t, 0.9));
}

static void glm2_fill(const glm2_ctx *c, double *x) {
    size_t off = 0;
    if (c->kind != 5) {
        tu_fill_uniform(x, c->vec_alpha ? NR : 1, -0.5, 0.5, 91);
        off += c->vec_alpha ? NR : 1;
    }
    tu_fill_uniform(x + off, NC, -0.8, 0.8, 92);
    off += NC;
    if (c->kind == 5) {
        memcpy(x + off, CUT3, sizeof CUT3);
        off += 3;
    } else if (c->kind != 1 && c->kind != 2) {
        tu_fill_uniform(x + off, c->vec_par ? NR : 1, 0.7, 3.0, 93);
        off += c->vec_par ? NR : 1;
    }
    if (c->x_leaf) memcpy(x + off, X, sizeof X);
}

static void test_glm_offsets_and_one_pass_kernels(void **state) {
    (void)state;
    setup_data();
    tu_fill_uniform(offs, NR, -0.6, 0.6, 94);
    em_rng *r = em_rng_create(95, 0);
    for (int i = 0; i < NR; i++) {
        y_nb[i] = floor(8 * em_rng_uniform(r));
        y_gam[i] = 0.05 + 4 * em_rng_uniform(r);
        y_ord[i] = floor(4 * em_rng_uniform(r));
    }
    em_rng_destroy(r);
    for (int kind = 0; kind < NK; kind++)
        for (int va = 0; va < (kind == 5 ? 1 : 2); va++)
            for (int vp = 0; vp < (kind == 0 || kind == 3 || kind == 4 ? 2 : 1); vp++)
                for (int of = 0; of < 2; of++)
                    for (int xl = 0; xl < 2; xl++) {
                        glm2_ctx c = {kind, 1, va, vp, of, xl}, u = c;
                        u.fused = 0;
                        double x[NR * NC + 2 * NR + NC + 3];
                        size_t nx = glm2_nx(&c);
                        glm2_fill(&c, x);
                        assert_fused_matches(glm2_fn, &c, &u, x, nx, 1e-12);
                        char label[128];
                        snprintf(label, sizeof label, "GLM kind %d alpha %d par %d offset %d X leaf %d", kind, va, vp, of,
                                 xl);
                        tu_check_gradient(glm2_fn, x, nx, &c, 1e-6, 1e-6, 1e-7, label);
                    }
}

/* the new kernels' draws and moments, and their errors */
static void test_one_pass_glm_moments_and_errors(void **state) {
    (void)state;
    setup_data();
    em_tape *t = em_tape_create();
    em_var Xv = em_const_matrix(t, X, NR, NC), beta = em_leaf(t, (double[NC]){0.2, -0.1, 0.3, 0.0, 0.1}, NC);
    em_dist nb = em_dist_neg_binomial2_log_glm(t, Xv, em_scalar(t, 1.0), beta, em_scalar(t, 2.0), NULL);
    em_dist ga = em_dist_gamma_log_glm(t, Xv, em_scalar(t, 0.5), beta, em_scalar(t, 3.0), NULL);
    em_dist od = em_dist_ordered_logistic_glm(t, Xv, beta, em_const(t, CUT3, 3), NULL);
    const em_dist *ds[3] = {&nb, &ga, &od};
    size_t ns = 4000 * NR;
    double *x = malloc(ns * sizeof *x), mean[NR], var[NR];
    em_rng *r = em_rng_create(96, 0);
    em_error e = {0};
    for (int k = 0; k < 3; k++) {
        assert_int_equal(em_dist_mean(ds[k], mean, NR, &e), EM_OK);
        assert_int_equal(em_dist_variance(ds[k], var, NR, &e), EM_OK);
        assert_int_equal(em_dist_sample(ds[k], r, x, ns, &e), EM_OK);
        double zmax = 0.0;
        for (size_t i = 0; i < NR; i++) {
            double m = 0.0;
            for (size_t j = 0; j < 4000; j++) m += x[j * NR + i];
            m /= 4000.0;
            zmax = fmax(zmax, fabs(m - mean[i]) / sqrt(var[i] / 4000.0));
        }
        if (!(zmax < 5.0)) fail_msg("GLM kernel %d: a row's sample mean is %g standard errors off", k, zmax);
    }
    em_rng_destroy(r);
    free(x);
    /* errors */
    static const double badc[3] = {0.0, -1.0, 2.0};
    em_dist bo = em_dist_ordered_logistic_glm(t, Xv, beta, em_const(t, badc, 3), NULL);
    em_var lp = em_dist_log_prob(&bo, em_const(t, y_ord, NR));
    assert_true(em_value_scalar(t, lp) == -INFINITY);
    assert_non_null(strstr(em_tape_error(t)->msg, "OrderedLogisticGLM: cutpoints[1] = -1 must be finite and above"));
    em_tape_reset(t);
    Xv = em_const_matrix(t, X, NR, NC);
    beta = em_leaf(t, (double[NC]){0.2, -0.1, 0.3, 0.0, 0.1}, NC);
    ga = em_dist_gamma_log_glm(t, Xv, em_scalar(t, 0.5), beta, em_scalar(t, -3.0), NULL);
    lp = em_dist_log_prob(&ga, em_const(t, y_gam, NR));
    assert_non_null(strstr(em_tape_error(t)->msg, "GammaLogGLM: shape[0] = -3 must be positive"));
    em_tape_reset(t);
    Xv = em_const_matrix(t, X, NR, NC);
    beta = em_leaf(t, (double[NC]){0.2, -0.1, 0.3, 0.0, 0.1}, NC);
    nb = em_dist_neg_binomial2_log_glm(t, Xv, em_scalar(t, 0.5), beta, em_scalar(t, 3.0), NULL);
    lp = em_dist_log_prob(&nb, em_const(t, y_gam, NR)); /* not counts */
    assert_non_null(strstr(em_tape_error(t)->msg, "NegBinomial2LogGLM: value[0] ="));
    em_tape_destroy(t);
}

/* ---- the one-pass kernels' tiles and lanes -------------------------------------------------
 * The pass runs in tiles of 64 rows and eight lanes: a tile's last rows are padded, a group of
 * eight whose rows include one beyond the closed form's range (NB2 past |η| = 700, ordered past
 * 300) goes row by row, and so do ordinal responses with more than 16 categories. On row counts
 * either side of those boundaries, with such rows in several groups and tiles, each kernel
 * against its unfused form, value and gradients to 1e-12. */
enum { TR = 203, TP = 13 };
static double tX[TR * TP], tyn[TR], tyg[TR], tyo[TR], tyo18[TR], toff[TR];
typedef struct {
    int kind, fused; /* 3 NB2, 4 Gamma, 5 ordered */
    size_t n, p, K;  /* rows; columns of X (5: four and one at a time; 13: eight, four, one); categories */
} tile_ctx;

static em_var tile_fn(em_tape *t, const double *x, size_t nx, em_var *lv, size_t *nl, void *vctx) {
    const tile_ctx *c = vctx;
    (void)nx;
    size_t k = 0, off = 0;
    em_var alpha = em_scalar(t, 0.0), par;
    if (c->kind != 5) alpha = lv[k++] = em_leaf(t, x + off++, 1);
    em_var beta = lv[k++] = em_leaf(t, x + off, c->p);
    off += c->p;
    par = lv[k++] = em_leaf(t, x + off, c->kind == 5 ? c->K - 1 : 1);
    *nl = k;
    em_var Xv = em_const_matrix(t, tX, c->n, c->p);
    const double *y = c->kind == 3 ? tyn : c->kind == 4 ? tyg : c->K == 4 ? tyo : tyo18;
    em_dist d;
    if (c->fused) {
        d = c->kind == 3   ? em_dist_neg_binomial2_log_glm(t, Xv, alpha, beta, par, toff)
            : c->kind == 4 ? em_dist_gamma_log_glm(t, Xv, alpha, beta, par, toff)
                           : em_dist_ordered_logistic_glm(t, Xv, beta, par, toff);
    } else {
        em_var eta = em_op_add(t, em_op_add(t, em_op_matvec(t, Xv, beta), alpha), em_const(t, toff, c->n));
        d = c->kind == 3   ? em_dist_neg_binomial2_log(t, eta, par)
            : c->kind == 4 ? em_dist_gamma_mean(t, em_op_exp(t, eta), par)
                           : em_dist_ordered_logistic(t, eta, par);
    }
    return em_dist_log_prob(&d, em_const(t, y, c->n));
}

static void test_one_pass_tiles_and_lanes(void **state) {
    (void)state;
    tu_fill_uniform(tX, TR * TP, -1, 1, 201);
    em_rng *r = em_rng_create(202, 0);
    for (int i = 0; i < TR; i++) {
        tyn[i] = floor(8 * em_rng_uniform(r));
        tyg[i] = 0.05 + 4 * em_rng_uniform(r);
        tyo[i] = floor(4 * em_rng_uniform(r));
        tyo18[i] = floor(18 * em_rng_uniform(r));
    }
    em_rng_destroy(r);
    static const size_t ns[] = {1, 7, 8, 9, 64, 65, 71, 203};
    for (int kind = 3; kind <= 5; kind++)
        for (size_t K = 4; K <= (kind == 5 ? 18 : 4); K += 14)
            for (size_t p = NC; p <= TP; p += TP - NC)
                for (size_t s = 0; s < sizeof ns / sizeof *ns; s++) {
                    /* rows out of the closed form's range in several groups (none for Gamma: its
                     * unfused form overflows e^η first) */
                    for (int i = 0; i < TR; i++)
                        toff[i] = kind == 4 || i % 29 != 5 ? 0.0 : (i % 2 ? 1.0 : -1.0) * (kind == 3 ? 720.0 : 320.0);
                    tile_ctx c = {kind, 1, ns[s], p, K}, u = c;
                    u.fused = 0;
                    double x[1 + TP + 17];
                    size_t nx = (kind == 5 ? 0 : 1) + p + (kind == 5 ? K - 1 : 1), o = 0;
                    if (kind != 5) x[o++] = 0.2;
                    tu_fill_uniform(x + o, p, -0.5 * 5 / (double)p, 0.5 * 5 / (double)p, 203);
                    o += p;
                    if (kind == 5)
                        for (size_t k = 0; k + 1 < K; k++) x[o + k] = -2.0 + 4.0 * (double)k / (double)(K - 2);
                    else
                        x[o] = 1.7;
                    assert_fused_matches(tile_fn, &c, &u, x, nx, 1e-12);
                }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_glm_matches_unfused),
        cmocka_unit_test(test_one_pass_glm_kernel_shapes),
        cmocka_unit_test(test_glm_x_gradient),
        cmocka_unit_test(test_glm_bad),
        cmocka_unit_test(test_glm_moments_and_sampling),
        cmocka_unit_test(test_glm_offsets_and_one_pass_kernels),
        cmocka_unit_test(test_one_pass_glm_moments_and_errors),
        cmocka_unit_test(test_one_pass_tiles_and_lanes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
