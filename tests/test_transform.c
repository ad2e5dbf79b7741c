/* test_transform.c — the bijections to each support: round trips, log|det J| against a finite-
 * difference Jacobian, tape gradients, tape = double values, errors and extreme inputs. */
#include "util/testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_linalg.h>
#include <gsl/gsl_matrix.h>
#include <gsl/gsl_permutation.h>

/* Every transform under test, with the free length m it is tested at. */
typedef struct {
    em_transform tr;
    size_t m;
    const char *label;
} tcase;

static const tcase CASES[] = {
    {{EM_TRANSFORM_IDENTITY, 0, 0}, 4, "identity"},
    {{EM_TRANSFORM_POSITIVE, 0, 0}, 4, "positive"},
    {{EM_TRANSFORM_LOWER, 2.0, 0}, 4, "lower(2)"},
    {{EM_TRANSFORM_UPPER, 0, -1.0}, 4, "upper(-1)"},
    {{EM_TRANSFORM_INTERVAL, -3.0, 5.0}, 4, "interval(-3,5)"},
    {{EM_TRANSFORM_UNIT, 0, 0}, 4, "unit"},
    {{EM_TRANSFORM_SIMPLEX, 0, 0}, 4, "simplex(5)"},
    {{EM_TRANSFORM_SIMPLEX, 0, 0}, 1, "simplex(2)"},
    {{EM_TRANSFORM_CORR_CHOLESKY, 0, 0}, 6, "corr_cholesky(4)"},
    {{EM_TRANSFORM_CORR_CHOLESKY, 0, 0}, 1, "corr_cholesky(2)"},
    {{EM_TRANSFORM_ORDERED, 0, 0}, 5, "ordered"},
};
#define NCASES (sizeof CASES / sizeof CASES[0])

/* ---- names and sizes -------------------------------------------------------------------------- */

static void test_names_and_lengths(void **state) {
    (void)state;
    assert_string_equal(em_transform_name(EM_TRANSFORM_INTERVAL), "interval");
    assert_string_equal(em_transform_name(EM_TRANSFORM_CORR_CHOLESKY), "corr_cholesky");
    assert_string_equal(em_transform_name((em_transform_kind)99), "unknown");
    for (int i = 0; i < EM_TRANSFORM_COUNT; i++)
        for (int j = 0; j < i; j++)
            assert_true(strcmp(em_transform_name((em_transform_kind)i), em_transform_name((em_transform_kind)j)) != 0);
    em_transform s = {EM_TRANSFORM_SIMPLEX, 0, 0}, c = {EM_TRANSFORM_CORR_CHOLESKY, 0, 0},
                 p = {EM_TRANSFORM_POSITIVE, 0, 0};
    assert_int_equal(em_transform_free_len(&s, 5), 4);
    assert_int_equal(em_transform_free_len(&s, 1), 0);
    assert_int_equal(em_transform_constrained_len(&s, 4), 5);
    assert_int_equal(em_transform_free_len(&c, 16), 6);
    assert_int_equal(em_transform_free_len(&c, 15), 0);
    assert_int_equal(em_transform_free_len(&c, 1), 0);
    assert_int_equal(em_transform_constrained_len(&c, 6), 16);
    assert_int_equal(em_transform_constrained_len(&c, 10), 25);
    assert_int_equal(em_transform_constrained_len(&c, 7), 0);
    assert_int_equal(em_transform_free_len(&p, 3), 3);
    assert_int_equal(em_transform_free_len(&p, 0), 0);
    for (size_t k = 2; k < 40; k++) assert_int_equal(em_transform_constrained_len(&c, k * (k - 1) / 2), k * k);
}

/* ---- round trips ------------------------------------------------------------------------------- */

/* A random point y of the support of tc (length n), built without the transform itself. */
static void random_constrained(const tcase *tc, double *y, size_t n, uint64_t seed) {
    em_rng *r = em_rng_create(seed, 7);
    switch (tc->tr.kind) {
    case EM_TRANSFORM_IDENTITY:
        for (size_t i = 0; i < n; i++) y[i] = 10 * em_rng_normal(r);
        break;
    case EM_TRANSFORM_POSITIVE:
        for (size_t i = 0; i < n; i++) y[i] = exp(3 * em_rng_normal(r));
        break;
    case EM_TRANSFORM_LOWER:
        for (size_t i = 0; i < n; i++) y[i] = tc->tr.lo + exp(3 * em_rng_normal(r));
        break;
    case EM_TRANSFORM_UPPER:
        for (size_t i = 0; i < n; i++) y[i] = tc->tr.hi - exp(3 * em_rng_normal(r));
        break;
    case EM_TRANSFORM_INTERVAL:
        for (size_t i = 0; i < n; i++) y[i] = tc->tr.lo + (tc->tr.hi - tc->tr.lo) * em_rng_uniform(r);
        break;
    case EM_TRANSFORM_UNIT:
        for (size_t i = 0; i < n; i++) y[i] = em_rng_uniform(r);
        break;
    case EM_TRANSFORM_SIMPLEX: {
        double s = 0;
        for (size_t i = 0; i < n; i++) s += (y[i] = -log(em_rng_uniform(r))); /* Dirichlet(1) */
        for (size_t i = 0; i < n; i++) y[i] /= s;
        break;
    }
    case EM_TRANSFORM_CORR_CHOLESKY: {
        /* a random correlation matrix: S = A A' + I scaled to unit diagonal, then GSL's Cholesky */
        size_t K = (size_t)llround(sqrt((double)n));
        gsl_matrix *A = gsl_matrix_alloc(K, K), *S = gsl_matrix_calloc(K, K);
        for (size_t i = 0; i < K; i++)
            for (size_t j = 0; j < K; j++) gsl_matrix_set(A, i, j, em_rng_normal(r));
        for (size_t i = 0; i < K; i++)
            for (size_t j = 0; j < K; j++) {
                double v = i == j ? 1.0 : 0.0;
                for (size_t l = 0; l < K; l++) v += gsl_matrix_get(A, i, l) * gsl_matrix_get(A, j, l);
                gsl_matrix_set(S, i, j, v);
            }
        for (size_t i = 0; i < K; i++)
            for (size_t j = 0; j < K; j++)
                if (i != j)
                    gsl_matrix_set(S, i, j, gsl_matrix_get(S, i, j) / sqrt(gsl_matrix_get(S, i, i) * gsl_matrix_get(S, j, j)));
        for (size_t i = 0; i < K; i++) gsl_matrix_set(S, i, i, 1.0);
        assert_int_equal(gsl_linalg_cholesky_decomp1(S), 0);
        for (size_t i = 0; i < K; i++)
            for (size_t j = 0; j < K; j++) y[i * K + j] = j <= i ? gsl_matrix_get(S, i, j) : 0.0;
        gsl_matrix_free(A);
        gsl_matrix_free(S);
        break;
    }
    case EM_TRANSFORM_ORDERED:
        y[0] = 5 * em_rng_normal(r);
        for (size_t i = 1; i < n; i++) y[i] = y[i - 1] + exp(2 * em_rng_normal(r));
        break;
    default: fail();
    }
    em_rng_destroy(r);
}

static void test_round_trip_constrained(void **state) {
    (void)state;
    for (size_t c = 0; c < NCASES; c++) {
        const tcase *tc = &CASES[c];
        size_t n = em_transform_constrained_len(&tc->tr, tc->m);
        for (uint64_t seed = 1; seed <= 20; seed++) {
            double y[32], x[32], y2[32];
            random_constrained(tc, y, n, seed);
            em_error e = {0};
            if (em_transform_inverse_d(&tc->tr, y, n, x, &e) != EM_OK) fail_msg("%s: %s", tc->label, e.msg);
            assert_int_equal(em_transform_forward_d(&tc->tr, x, tc->m, y2, NULL, &e), EM_OK);
            for (size_t i = 0; i < n; i++) tu_assert_close(y2[i], y[i], 1e-12, 1e-14);
        }
    }
}

static void test_round_trip_free(void **state) {
    (void)state;
    for (size_t c = 0; c < NCASES; c++) {
        const tcase *tc = &CASES[c];
        size_t n = em_transform_constrained_len(&tc->tr, tc->m);
        for (uint64_t seed = 1; seed <= 20; seed++) {
            double x[32], y[32], x2[32];
            tu_fill_uniform(x, tc->m, -4, 4, seed);
            em_error e = {0};
            assert_int_equal(em_transform_forward_d(&tc->tr, x, tc->m, y, NULL, &e), EM_OK);
            if (em_transform_inverse_d(&tc->tr, y, n, x2, &e) != EM_OK) fail_msg("%s: %s", tc->label, e.msg);
            for (size_t i = 0; i < tc->m; i++) tu_assert_close(x2[i], x[i], 1e-9, 1e-10);
        }
    }
}

static void test_simplex_zero_is_uniform(void **state) {
    (void)state;
    em_transform tr = {EM_TRANSFORM_SIMPLEX, 0, 0};
    for (size_t K = 2; K <= 9; K++) {
        double x[8] = {0}, y[9];
        assert_int_equal(em_transform_forward_d(&tr, x, K - 1, y, NULL, NULL), EM_OK);
        for (size_t i = 0; i < K; i++) tu_assert_close(y[i], 1.0 / (double)K, 1e-14, 0);
    }
}

static void test_corr_cholesky_is_correlation(void **state) {
    (void)state;
    em_transform tr = {EM_TRANSFORM_CORR_CHOLESKY, 0, 0};
    double x[10], L[25];
    tu_fill_uniform(x, 10, -3, 3, 11);
    assert_int_equal(em_transform_forward_d(&tr, x, 10, L, NULL, NULL), EM_OK);
    for (size_t i = 0; i < 5; i++) {
        double ss = 0;
        for (size_t j = 0; j < 5; j++) {
            if (j > i) assert_true(L[i * 5 + j] == 0.0);
            ss += L[i * 5 + j] * L[i * 5 + j];
        }
        tu_assert_close(ss, 1.0, 1e-14, 0);
        assert_true(L[i * 5 + i] > 0);
    }
    /* the first column holds tanh(x) of the first partial correlations: L[1][0] = tanh(x0) */
    tu_assert_close(L[5], tanh(x[0]), 1e-15, 0);
    /* L[2][1] = tanh(x2) * sqrt(1 - L[2][0]^2) */
    tu_assert_close(L[11], tanh(x[2]) * sqrt(1 - tanh(x[1]) * tanh(x[1])), 1e-14, 0);
}

/* ---- log|det J| against a finite-difference Jacobian ------------------------------------------ */

/* Indices of the output's free coordinates: all of y, the simplex without its last element, the
 * strictly lower triangle of a correlation Cholesky factor (row-major, the order of x). */
static size_t free_coords(const tcase *tc, size_t n, size_t *idx) {
    size_t k = 0;
    if (tc->tr.kind == EM_TRANSFORM_SIMPLEX) {
        for (size_t i = 0; i + 1 < n; i++) idx[k++] = i;
    } else if (tc->tr.kind == EM_TRANSFORM_CORR_CHOLESKY) {
        size_t K = (size_t)llround(sqrt((double)n));
        for (size_t i = 0; i < K; i++)
            for (size_t j = 0; j < i; j++) idx[k++] = i * K + j;
    } else {
        for (size_t i = 0; i < n; i++) idx[k++] = i;
    }
    return k;
}

static double fd_logdet(const tcase *tc, const double *x) {
    size_t m = tc->m, n = em_transform_constrained_len(&tc->tr, m), idx[32];
    assert_int_equal(free_coords(tc, n, idx), m);
    gsl_matrix *J = gsl_matrix_alloc(m, m);
    double xp[32], yp[32], ym[32];
    for (size_t j = 0; j < m; j++) {
        double h = 1e-5 * fmax(1.0, fabs(x[j]));
        memcpy(xp, x, m * sizeof *x);
        xp[j] = x[j] + h;
        assert_int_equal(em_transform_forward_d(&tc->tr, xp, m, yp, NULL, NULL), EM_OK);
        xp[j] = x[j] - h;
        assert_int_equal(em_transform_forward_d(&tc->tr, xp, m, ym, NULL, NULL), EM_OK);
        for (size_t i = 0; i < m; i++) gsl_matrix_set(J, i, j, (yp[idx[i]] - ym[idx[i]]) / (2 * h));
    }
    gsl_permutation *p = gsl_permutation_alloc(m);
    int sgn;
    assert_int_equal(gsl_linalg_LU_decomp(J, p, &sgn), 0);
    double ld = gsl_linalg_LU_lndet(J);
    gsl_permutation_free(p);
    gsl_matrix_free(J);
    return ld;
}

static void test_logdet_matches_fd_jacobian(void **state) {
    (void)state;
    for (size_t c = 0; c < NCASES; c++) {
        const tcase *tc = &CASES[c];
        size_t n = em_transform_constrained_len(&tc->tr, tc->m);
        for (uint64_t seed = 1; seed <= 5; seed++) {
            double x[32], y[32], ld_d;
            tu_fill_uniform(x, tc->m, -2, 2, 100 + seed);
            assert_int_equal(em_transform_forward_d(&tc->tr, x, tc->m, y, &ld_d, NULL), EM_OK);
            em_tape *t = em_tape_create();
            em_var lx = em_leaf(t, x, tc->m), ld = em_scalar(t, 0.0);
            em_var ty = em_transform_forward(t, &tc->tr, lx, &ld);
            assert_int_equal(em_tape_status(t), EM_OK);
            assert_int_equal(em_len(t, ty), n);
            double ld_t = em_value_scalar(t, ld), ld_fd = fd_logdet(tc, x);
            if (!(fabs(ld_t - ld_fd) <= 1e-7 * fmax(1, fabs(ld_fd))))
                fail_msg("%s seed %d: tape log|det J| %.12g vs finite-difference %.12g", tc->label, (int)seed, ld_t,
                         ld_fd);
            assert_true(ld_t == ld_d);
            em_tape_destroy(t);
        }
    }
}

/* ---- tape: values and gradients ------------------------------------------------------------------ */

static void test_tape_value_equals_double(void **state) {
    (void)state;
    for (size_t c = 0; c < NCASES; c++) {
        const tcase *tc = &CASES[c];
        size_t n = em_transform_constrained_len(&tc->tr, tc->m);
        double x[32], y[32], ld_d;
        tu_fill_uniform(x, tc->m, -6, 6, 5);
        assert_int_equal(em_transform_forward_d(&tc->tr, x, tc->m, y, &ld_d, NULL), EM_OK);
        em_tape *t = em_tape_create();
        em_var ld = em_scalar(t, 1.5);
        em_var ty = em_transform_forward(t, &tc->tr, em_leaf(t, x, tc->m), &ld);
        assert_int_equal(em_tape_status(t), EM_OK);
        assert_memory_equal(em_value(t, ty), y, n * sizeof *y);
        /* the accumulator's previous value is kept */
        assert_true(em_value_scalar(t, ld) == 1.5 + ld_d);
        if (tc->tr.kind == EM_TRANSFORM_CORR_CHOLESKY) {
            size_t K = (size_t)llround(sqrt((double)n));
            assert_int_equal(em_rows(t, ty), K);
            assert_int_equal(em_cols(t, ty), K);
        }
        /* no accumulator (NULL pointer or invalid var): same y, nothing else */
        em_var none = EM_VAR_INVALID;
        em_var ty2 = em_transform_forward(t, &tc->tr, em_leaf(t, x, tc->m), NULL);
        em_var ty3 = em_transform_forward(t, &tc->tr, em_const(t, x, tc->m), &none);
        assert_int_equal(em_tape_status(t), EM_OK);
        assert_memory_equal(em_value(t, ty2), y, n * sizeof *y);
        assert_memory_equal(em_value(t, ty3), y, n * sizeof *y);
        assert_false(em_var_ok(none));
        em_tape_destroy(t);
    }
}

typedef struct {
    const tcase *tc;
    const double *w;
} grad_ctx;

/* f(x) = sum(w ∘ y(x)) + log|det J(x)| */
static em_var weighted_fn(em_tape *t, const double *x, size_t n, em_var *leaves, size_t *nleaves, void *vctx) {
    grad_ctx *g = vctx;
    size_t ny = em_transform_constrained_len(&g->tc->tr, n);
    leaves[0] = em_leaf(t, x, n);
    *nleaves = 1;
    em_var ld = em_scalar(t, 0.0);
    em_var y = em_transform_forward(t, &g->tc->tr, leaves[0], &ld);
    em_var wy = em_op_dot(t, em_op_reshape(t, y, ny, 1), em_const(t, g->w, ny));
    return em_op_add(t, wy, ld);
}

static void test_tape_gradients(void **state) {
    (void)state;
    double w[32];
    tu_fill_uniform(w, 32, -1, 1, 77);
    for (size_t c = 0; c < NCASES; c++) {
        const tcase *tc = &CASES[c];
        grad_ctx g = {tc, w};
        for (uint64_t seed = 1; seed <= 5; seed++) {
            double x[32];
            tu_fill_uniform(x, tc->m, -3, 3, 200 + seed);
            tu_check_gradient(weighted_fn, x, tc->m, &g, 1e-6, 1e-6, 1e-8, tc->label);
        }
    }
}

/* The accumulator's adjoint passes through unchanged (d(old + ld)/d old = 1). */
static void test_accumulator_gradient(void **state) {
    (void)state;
    em_tape *t = em_tape_create();
    double x[3] = {0.1, -0.2, 0.3};
    em_var acc = em_leaf_scalar(t, 2.0), ld = acc;
    em_transform tr = {EM_TRANSFORM_INTERVAL, 0, 10};
    (void)em_transform_forward(t, &tr, em_const(t, x, 3), &ld);
    assert_int_equal(em_backward(t, ld), EM_OK);
    assert_true(em_adjoint(t, acc)[0] == 1.0);
    em_tape_destroy(t);
}

/* ---- errors ---------------------------------------------------------------------------------------- */

static void expect_inverse_error(const em_transform *tr, const double *y, size_t n, em_status s, const char *msg) {
    em_error e = {0};
    double x[32];
    assert_int_equal(em_transform_inverse_d(tr, y, n, x, &e), s);
    if (!strstr(e.msg, msg)) fail_msg("message '%s' lacks '%s'", e.msg, msg);
}

static void test_inverse_domain_errors(void **state) {
    (void)state;
    em_transform iv = {EM_TRANSFORM_INTERVAL, 0, 10};
    double y1[] = {12};
    em_error e = {0};
    double x[4];
    assert_int_equal(em_transform_inverse_d(&iv, y1, 1, x, &e), EM_ERR_DOMAIN);
    assert_string_equal(e.msg, "interval(0, 10): value[0] = 12 is outside (0, 10)");
    double y2[] = {5, 10}; /* the bound itself is outside the open interval */
    expect_inverse_error(&iv, y2, 2, EM_ERR_DOMAIN, "value[1] = 10 is outside (0, 10)");
    double ynan[] = {1, NAN};
    expect_inverse_error(&iv, ynan, 2, EM_ERR_DOMAIN, "value[1] = nan");

    em_transform pos = {EM_TRANSFORM_POSITIVE, 0, 0}, low = {EM_TRANSFORM_LOWER, 2, 0}, up = {EM_TRANSFORM_UPPER, 0, -1},
                 unit = {EM_TRANSFORM_UNIT, 0, 0};
    double yp[] = {1, 0};
    expect_inverse_error(&pos, yp, 2, EM_ERR_DOMAIN, "positive: value[1] = 0 is not > 0");
    double yl[] = {2};
    expect_inverse_error(&low, yl, 1, EM_ERR_DOMAIN, "lower(2): value[0] = 2 is not > 2");
    double yu[] = {-2, -0.5};
    expect_inverse_error(&up, yu, 2, EM_ERR_DOMAIN, "upper(-1): value[1] = -0.5 is not < -1");
    double yinf[] = {INFINITY};
    expect_inverse_error(&pos, yinf, 1, EM_ERR_DOMAIN, "value[0] = inf is not finite");
    double yun[] = {0.5, 1.0};
    expect_inverse_error(&unit, yun, 2, EM_ERR_DOMAIN, "unit: value[1] = 1 is outside (0, 1)");

    em_transform sx = {EM_TRANSFORM_SIMPLEX, 0, 0};
    double ys1[] = {0.5, 0.6, -0.1};
    expect_inverse_error(&sx, ys1, 3, EM_ERR_DOMAIN, "simplex(3): value[2] = -0.1 is not in (0, 1]");
    double ys2[] = {0.5, 0.3, 0.3};
    expect_inverse_error(&sx, ys2, 3, EM_ERR_DOMAIN, "simplex(3): values sum to 1.1");
    double ys3[] = {0.5, 0.5, 0.0};
    expect_inverse_error(&sx, ys3, 3, EM_ERR_DOMAIN, "value[2] = 0 is not in (0, 1]");
    expect_inverse_error(&sx, ys3, 1, EM_ERR_SHAPE, "cannot have 1 elements");

    em_transform cc = {EM_TRANSFORM_CORR_CHOLESKY, 0, 0};
    double L1[] = {1, 0.1, 0.6, 0.8}; /* upper entry non-zero */
    expect_inverse_error(&cc, L1, 4, EM_ERR_DOMAIN, "corr_cholesky(2): value[0,1] = 0.1 is above the diagonal");
    double L2[] = {1, 0, 0.6, 0.7}; /* row 1 not unit norm */
    expect_inverse_error(&cc, L2, 4, EM_ERR_DOMAIN, "row 1 has squared norm 0.85");
    double L3[] = {1, 0, 0.6, -0.8};
    expect_inverse_error(&cc, L3, 4, EM_ERR_DOMAIN, "diagonal value[1,1] = -0.8 is not > 0");
    double L4[] = {-1, 0, 0.6, 0.8};
    expect_inverse_error(&cc, L4, 4, EM_ERR_DOMAIN, "diagonal value[0,0] = -1 is not > 0");
    expect_inverse_error(&cc, L4, 3, EM_ERR_SHAPE, "cannot have 3 elements");

    em_transform od = {EM_TRANSFORM_ORDERED, 0, 0};
    double yo[] = {1, 2, 2, 3};
    expect_inverse_error(&od, yo, 4, EM_ERR_DOMAIN, "ordered: value[2] = 2 is not greater than value[1] = 2");
}

static void test_bad_transforms_and_inputs(void **state) {
    (void)state;
    double x[3] = {0, 1, 2}, y[9];
    em_transform bad[] = {
        {EM_TRANSFORM_INTERVAL, 1, 1},   {EM_TRANSFORM_INTERVAL, 2, 1},        {EM_TRANSFORM_INTERVAL, NAN, 1},
        {EM_TRANSFORM_INTERVAL, 0, INFINITY}, {EM_TRANSFORM_LOWER, -INFINITY, 0}, {EM_TRANSFORM_UPPER, 0, NAN},
        {(em_transform_kind)42, 0, 0},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        em_error e = {0};
        assert_int_equal(em_transform_forward_d(&bad[i], x, 3, y, NULL, &e), EM_ERR_ARG);
        assert_true(strlen(e.msg) > 0);
        em_error_clear(&e);
        assert_int_equal(em_transform_inverse_d(&bad[i], x, 3, y, &e), EM_ERR_ARG);
        em_tape *t = em_tape_create();
        em_var ld = em_scalar(t, 0);
        assert_false(em_var_ok(em_transform_forward(t, &bad[i], em_leaf(t, x, 3), &ld)));
        assert_int_equal(em_tape_status(t), EM_ERR_ARG);
        em_tape_destroy(t);
    }
    em_error e = {0};
    assert_int_equal(em_transform_forward_d(NULL, x, 3, y, NULL, &e), EM_ERR_ARG);
    em_error_clear(&e);
    assert_int_equal(em_transform_validate(&bad[0], &e), EM_ERR_ARG);
    assert_non_null(strstr(e.msg, "lo < hi"));

    /* a corr_cholesky needs a triangular number of free values */
    em_transform cc = {EM_TRANSFORM_CORR_CHOLESKY, 0, 0};
    em_error_clear(&e);
    assert_int_equal(em_transform_forward_d(&cc, x, 2, y, NULL, &e), EM_ERR_SHAPE);
    em_tape *t = em_tape_create();
    assert_false(em_var_ok(em_transform_forward(t, &cc, em_leaf(t, x, 2), NULL)));
    assert_int_equal(em_tape_status(t), EM_ERR_SHAPE);
    em_tape_reset(t);

    /* a non-scalar accumulator */
    em_var ld = em_const(t, x, 3);
    em_transform pos = {EM_TRANSFORM_POSITIVE, 0, 0};
    assert_false(em_var_ok(em_transform_forward(t, &pos, em_leaf(t, x, 3), &ld)));
    assert_int_equal(em_tape_status(t), EM_ERR_SHAPE);
    em_tape_reset(t);

    /* a non-finite x, on doubles and on the tape (inf reaches a leaf; NaN is refused there) */
    double xi[3] = {0, INFINITY, 1};
    em_error_clear(&e);
    assert_int_equal(em_transform_forward_d(&pos, xi, 3, y, NULL, &e), EM_ERR_NONFINITE);
    assert_string_equal(e.msg, "positive: x[1] = inf is not finite");
    double xn[2] = {NAN, 0};
    em_error_clear(&e);
    em_transform iv = {EM_TRANSFORM_INTERVAL, 0, 10};
    assert_int_equal(em_transform_forward_d(&iv, xn, 2, y, NULL, &e), EM_ERR_NONFINITE);
    assert_string_equal(e.msg, "interval(0, 10): x[0] = nan is not finite");
    assert_false(em_var_ok(em_transform_forward(t, &iv, em_leaf(t, xi, 3), NULL)));
    assert_int_equal(em_tape_status(t), EM_ERR_NONFINITE);
    assert_non_null(strstr(em_tape_error(t)->msg, "x[1] = inf"));
    em_tape_reset(t);

    /* exp overflow is reported, not turned into inf */
    double xo[2] = {1, 800};
    em_error_clear(&e);
    assert_int_equal(em_transform_forward_d(&pos, xo, 2, y, NULL, &e), EM_ERR_NONFINITE);
    assert_string_equal(e.msg, "positive: exp(x[1] = 800) overflows");
    em_transform od = {EM_TRANSFORM_ORDERED, 0, 0};
    em_error_clear(&e);
    assert_int_equal(em_transform_forward_d(&od, xo, 2, y, NULL, &e), EM_ERR_NONFINITE);
    assert_false(em_var_ok(em_transform_forward(t, &od, em_leaf(t, xo, 2), NULL)));
    assert_int_equal(em_tape_status(t), EM_ERR_NONFINITE);
    em_tape_reset(t);

    /* an invalid input var propagates without a new error */
    em_var bad_in = EM_VAR_INVALID;
    assert_false(em_var_ok(em_transform_forward(t, &pos, bad_in, NULL)));
    assert_int_equal(em_tape_status(t), EM_OK);
    em_tape_destroy(t);
}

/* ---- extreme inputs ------------------------------------------------------------------------------------ */

static void test_interval_strictly_inside(void **state) {
    (void)state;
    const double bounds[][2] = {{0, 1}, {0, 10}, {-1e-3, 1e-3}, {-5, 1e6}, {1e8, 1e8 + 1}, {-1, 0}};
    for (size_t b = 0; b < sizeof bounds / sizeof bounds[0]; b++) {
        em_transform tr = {EM_TRANSFORM_INTERVAL, bounds[b][0], bounds[b][1]};
        for (double x = -40; x <= 40; x += 0.5) {
            double y, ld;
            assert_int_equal(em_transform_forward_d(&tr, &x, 1, &y, &ld, NULL), EM_OK);
            if (!(y > tr.lo && y < tr.hi)) fail_msg("interval(%g, %g) at x = %g gives %.17g", tr.lo, tr.hi, x, y);
            assert_true(isfinite(ld));
        }
        /* and far out: finite, inside, and a finite log-Jacobian and gradient on the tape */
        const double far[] = {-700, -300, 300, 700, -1e10, 1e10};
        for (size_t i = 0; i < sizeof far / sizeof far[0]; i++) {
            double y, ld;
            assert_int_equal(em_transform_forward_d(&tr, &far[i], 1, &y, &ld, NULL), EM_OK);
            assert_true(y > tr.lo && y < tr.hi);
            assert_true(isfinite(ld));
            em_tape *t = em_tape_create();
            em_var x = em_leaf(t, &far[i], 1), acc = em_scalar(t, 0);
            em_var yv = em_transform_forward(t, &tr, x, &acc);
            assert_int_equal(em_backward(t, em_op_add(t, yv, acc)), EM_OK);
            assert_true(isfinite(em_adjoint(t, x)[0]));
            em_tape_destroy(t);
        }
    }
    /* the log-Jacobian keeps its precision in the tails: log(10) - |x| - 2 log1p(e^-|x|) */
    em_transform tr = {EM_TRANSFORM_INTERVAL, 0, 10};
    double x = 700, y, ld;
    em_transform_forward_d(&tr, &x, 1, &y, &ld, NULL);
    tu_assert_close(ld, log(10.0) - 700.0, 1e-15, 0);
    /* and near the bound the distance keeps its relative precision (computed from hi) */
    x = 30;
    em_transform_forward_d(&tr, &x, 1, &y, &ld, NULL);
    tu_assert_close(10.0 - y, 10.0 * exp(-30.0), 1e-2, 0);
    em_transform un = {EM_TRANSFORM_UNIT, 0, 0};
    x = -700;
    em_transform_forward_d(&un, &x, 1, &y, &ld, NULL);
    tu_assert_close(y, exp(-700.0), 1e-12, 0);
}

static void test_structured_extremes(void **state) {
    (void)state;
    em_transform sx = {EM_TRANSFORM_SIMPLEX, 0, 0}, cc = {EM_TRANSFORM_CORR_CHOLESKY, 0, 0};
    const double big[6] = {700, -700, 650, -40, 700, -700};
    double y[16], ld;
    assert_int_equal(em_transform_forward_d(&sx, big, 5, y, &ld, NULL), EM_OK);
    double s = 0;
    for (int i = 0; i < 6; i++) {
        assert_true(isfinite(y[i]) && y[i] >= 0);
        s += y[i];
    }
    tu_assert_close(s, 1.0, 1e-15, 0);
    assert_true(isfinite(ld));
    assert_int_equal(em_transform_forward_d(&cc, big, 6, y, &ld, NULL), EM_OK);
    for (int i = 0; i < 16; i++) assert_true(isfinite(y[i]));
    assert_true(isfinite(ld));
    /* log(1 - tanh(700)^2) = 2 log sech(700), which 1 - tanh^2 would round to log(0) */
    double x1 = 700;
    assert_int_equal(em_transform_forward_d(&cc, &x1, 1, y, &ld, NULL), EM_OK);
    tu_assert_close(ld, 2 * (log(2.0) - 700.0), 1e-15, 0);
    for (int k = 0; k < 2; k++) {
        const em_transform *tr = k ? &cc : &sx;
        size_t m = k ? 6 : 5;
        em_tape *t = em_tape_create();
        em_var x = em_leaf(t, big, m), acc = em_scalar(t, 0);
        em_var yv = em_transform_forward(t, tr, x, &acc);
        assert_int_equal(em_backward(t, em_op_add(t, em_op_sum(t, yv), acc)), EM_OK);
        for (size_t i = 0; i < m; i++) assert_true(isfinite(em_adjoint(t, x)[i]));
        em_tape_destroy(t);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_and_lengths),
        cmocka_unit_test(test_round_trip_constrained),
        cmocka_unit_test(test_round_trip_free),
        cmocka_unit_test(test_simplex_zero_is_uniform),
        cmocka_unit_test(test_corr_cholesky_is_correlation),
        cmocka_unit_test(test_logdet_matches_fd_jacobian),
        cmocka_unit_test(test_tape_value_equals_double),
        cmocka_unit_test(test_tape_gradients),
        cmocka_unit_test(test_accumulator_gradient),
        cmocka_unit_test(test_inverse_domain_errors),
        cmocka_unit_test(test_bad_transforms_and_inputs),
        cmocka_unit_test(test_interval_strictly_inside),
        cmocka_unit_test(test_structured_extremes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
