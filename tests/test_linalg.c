/* test_linalg.c — the BLAS/LAPACK ops: values against naive loops, gradients against central
 * finite differences, and the errors for shapes and matrices that are not positive definite. */
#include "util/testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal/tape.h"

/* Sizes and fixed data for the tape functions below. W is a random weight vector: the scalar
 * output is dot(W, result) so that every element of the result gets its own adjoint. */
typedef struct {
    size_t r, c, k;
    const double *A; /* a constant matrix when the op's matrix is not a leaf */
    const double *W;
} lctx;

static double *rnd(size_t n, double lo, double hi, uint64_t seed) {
    double *x = malloc(n * sizeof *x);
    assert_non_null(x);
    tu_fill_uniform(x, n, lo, hi, seed);
    return x;
}

/* A random symmetric positive-definite n×n matrix M Mᵀ + n I (row-major, both triangles). */
static double *rnd_spd(size_t n, uint64_t seed) {
    double *M = rnd(n * n, -1, 1, seed), *A = malloc(n * n * sizeof *A);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            double s = i == j ? (double)n : 0.0;
            for (size_t l = 0; l < n; l++) s += M[i * n + l] * M[j * n + l];
            A[i * n + j] = s;
        }
    free(M);
    return A;
}

/* A random lower-triangular factor with a well-conditioned diagonal in [1, 2); the upper
 * triangle holds junk that the ops must ignore. */
static double *rnd_lower(size_t n, uint64_t seed) {
    double *L = rnd(n * n, -1, 1, seed);
    for (size_t i = 0; i < n; i++) L[i * n + i] = 1.0 + 0.5 * (L[i * n + i] + 1.0);
    return L;
}

static em_var weigh(em_tape *t, em_var y, const lctx *c) {
    return em_op_dot(t, em_const(t, c->W, em_len(t, y)), y);
}

/* ---- values against naive loops --------------------------------------------------------- */

static void test_matvec_matmul_values(void **state) {
    (void)state;
    size_t m = 7, k = 5, n = 3;
    double *A = rnd(m * k, -2, 2, 1), *B = rnd(k * n, -2, 2, 2), *x = rnd(k, -2, 2, 3);
    em_tape *t = em_tape_create();
    em_var y = em_op_matvec(t, em_const_matrix(t, A, m, k), em_const(t, x, k));
    em_var C = em_op_matmul(t, em_const_matrix(t, A, m, k), em_const_matrix(t, B, k, n));
    assert_int_equal(em_tape_status(t), EM_OK);
    assert_int_equal(em_rows(t, y), m);
    assert_int_equal(em_cols(t, y), 1);
    assert_int_equal(em_rows(t, C), m);
    assert_int_equal(em_cols(t, C), n);
    assert_false(em_needs_grad(t, y));
    for (size_t i = 0; i < m; i++) {
        double s = 0;
        for (size_t j = 0; j < k; j++) s += A[i * k + j] * x[j];
        tu_assert_close(em_value(t, y)[i], s, 1e-14, 1e-14);
        for (size_t j = 0; j < n; j++) {
            double c = 0;
            for (size_t l = 0; l < k; l++) c += A[i * k + l] * B[l * n + j];
            tu_assert_close(em_value(t, C)[i * n + j], c, 1e-14, 1e-14);
        }
    }
    em_tape_destroy(t);
    free(A);
    free(B);
    free(x);
}

/* Cholesky–Banachiewicz, the textbook loop, as the reference. */
static void naive_cholesky(const double *A, double *L, size_t n) {
    memset(L, 0, n * n * sizeof *L);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j <= i; j++) {
            double s = A[i * n + j];
            for (size_t l = 0; l < j; l++) s -= L[i * n + l] * L[j * n + l];
            L[i * n + j] = i == j ? sqrt(s) : s / L[j * n + j];
        }
}

static void test_cholesky_trisolve_logdet_values(void **state) {
    (void)state;
    size_t sizes[] = {1, 3, 7, 40};
    for (size_t s = 0; s < 4; s++) {
        size_t n = sizes[s];
        double *A = rnd_spd(n, 10 + s), *Lref = malloc(n * n * sizeof *Lref), *b = rnd(n, -1, 1, 20 + s);
        naive_cholesky(A, Lref, n);
        em_tape *t = em_tape_create();
        em_var L = em_op_cholesky(t, em_const_matrix(t, A, n, n));
        em_var x = em_op_trisolve_lower(t, L, em_const(t, b, n));
        em_var ld = em_op_logdet_cholesky(t, L);
        assert_int_equal(em_tape_status(t), EM_OK);
        const double *Lv = em_value(t, L);
        for (size_t i = 0; i < n * n; i++) tu_assert_close(Lv[i], Lref[i], 1e-12, 1e-13);
        /* forward substitution */
        double ldref = 0;
        for (size_t i = 0; i < n; i++) {
            double r = b[i];
            for (size_t j = 0; j < i; j++) r -= Lref[i * n + j] * em_value(t, x)[j];
            tu_assert_close(em_value(t, x)[i], r / Lref[i * n + i], 1e-12, 1e-13);
            ldref += 2 * log(Lref[i * n + i]);
        }
        tu_assert_close(em_value_scalar(t, ld), ldref, 1e-13, 1e-13);
        em_tape_destroy(t);
        free(A);
        free(Lref);
        free(b);
    }
}

static void test_trisolve_matrix_values(void **state) {
    (void)state;
    size_t n = 6, k = 4;
    double *L = rnd_lower(n, 30), *B = rnd(n * k, -1, 1, 31);
    em_tape *t = em_tape_create();
    em_var X = em_op_trisolve_lower(t, em_const_matrix(t, L, n, n), em_const_matrix(t, B, n, k));
    assert_int_equal(em_tape_status(t), EM_OK);
    assert_int_equal(em_rows(t, X), n);
    assert_int_equal(em_cols(t, X), k);
    /* L X = B using only L's lower triangle */
    const double *Xv = em_value(t, X);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < k; j++) {
            double s = 0;
            for (size_t l = 0; l <= i; l++) s += L[i * n + l] * Xv[l * k + j];
            tu_assert_close(s, B[i * k + j], 1e-12, 1e-12);
        }
    em_tape_destroy(t);
    free(L);
    free(B);
}

/* ---- gradients ------------------------------------------------------------------------------ */

static em_var f_matvec_constA(em_tape *t, const double *x, size_t n, em_var *lv, size_t *nl, void *ctx) {
    const lctx *c = ctx;
    lv[0] = em_leaf(t, x, n);
    *nl = 1;
    return weigh(t, em_op_matvec(t, em_const_matrix(t, c->A, c->r, c->c), lv[0]), c);
}

static em_var f_matvec_varA(em_tape *t, const double *x, size_t n, em_var *lv, size_t *nl, void *ctx) {
    const lctx *c = ctx;
    lv[0] = em_leaf(t, x, c->r * c->c);
    lv[1] = em_leaf(t, x + c->r * c->c, c->c);
    *nl = 2;
    return weigh(t, em_op_matvec(t, em_op_reshape(t, lv[0], c->r, c->c), lv[1]), c);
}

/* Products are linear in each single input, so a central difference has no truncation error
 * and only rounding error, which shrinks as the step grows: the product tests use h = 1e-4. */
#define H_LINEAR 1e-4

static void test_matvec_gradient(void **state) {
    (void)state;
    size_t shapes[][2] = {{1, 1}, {7, 3}, {50, 9}, {1, 6}};
    for (size_t s = 0; s < 4; s++) {
        size_t r = shapes[s][0], cc = shapes[s][1];
        double *A = rnd(r * cc, -1, 1, 40 + s), *W = rnd(r, -1, 1, 50 + s);
        lctx c = {r, cc, 0, A, W};
        double *x = rnd(cc, -2, 2, 60 + s);
        tu_check_gradient(f_matvec_constA, x, cc, &c, H_LINEAR, 1e-7, 1e-9, "matvec const A");
        free(x);
        x = rnd(r * cc + cc, -2, 2, 70 + s);
        tu_check_gradient(f_matvec_varA, x, r * cc + cc, &c, H_LINEAR, 1e-7, 1e-9, "matvec variable A");
        free(x);
        free(A);
        free(W);
    }
}

/* Only A needs a gradient: the dger branch alone. */
static em_var f_matvec_onlyA(em_tape *t, const double *x, size_t n, em_var *lv, size_t *nl, void *ctx) {
    const lctx *c = ctx;
    lv[0] = em_leaf(t, x, n);
    *nl = 1;
    return weigh(t, em_op_matvec(t, em_op_reshape(t, lv[0], c->r, c->c), em_const(t, c->A, c->c)), c);
}

static void test_matvec_gradient_only_matrix(void **state) {
    (void)state;
    size_t r = 5, cc = 4;
    double *v = rnd(cc, -1, 1, 80), *W = rnd(r, -1, 1, 81), *x = rnd(r * cc, -1, 1, 82);
    lctx c = {r, cc, 0, v, W};
    tu_check_gradient(f_matvec_onlyA, x, r * cc, &c, H_LINEAR, 1e-7, 1e-9, "matvec only A");
    free(v);
    free(W);
    free(x);
}

/* y = A x + b with b a vector (k == 0) or a broadcast scalar (k == 1); A a leaf too when
 * variable A is asked for (c->A == NULL). */
static em_var f_matvec_add(em_tape *t, const double *x, size_t n, em_var *lv, size_t *nl, void *ctx) {
    const lctx *c = ctx;
    size_t nb = c->k == 1 ? 1 : c->r, off = 0;
    em_var A;
    *nl = 0;
    if (c->A) {
        A = em_const_matrix(t, c->A, c->r, c->c);
    } else {
        lv[(*nl)++] = em_leaf(t, x, c->r * c->c);
        A = em_op_reshape(t, lv[0], c->r, c->c);
        off = c->r * c->c;
    }
    em_var xv = lv[(*nl)++] = em_leaf(t, x + off, c->c);
    em_var b = lv[(*nl)++] = em_leaf(t, x + off + c->c, nb);
    return weigh(t, em_op_matvec_add(t, A, xv, b), c);
}

static void test_matvec_add(void **state) {
    (void)state;
    size_t shapes[][2] = {{1, 1}, {7, 3}, {40, 6}};
    for (size_t s = 0; s < 3; s++) {
        size_t r = shapes[s][0], cc = shapes[s][1];
        double *A = rnd(r * cc, -1, 1, 180 + s), *W = rnd(r, -1, 1, 185 + s);
        double *x = rnd(r * cc + cc + r, -2, 2, 190 + s);
        for (size_t k = 0; k < 2; k++) {
            size_t nb = k == 1 ? 1 : r;
            lctx c = {r, cc, k, A, W};
            tu_check_gradient(f_matvec_add, x, cc + nb, &c, H_LINEAR, 1e-7, 1e-9,
                              k ? "matvec_add scalar b" : "matvec_add vector b");
            c.A = NULL;
            tu_check_gradient(f_matvec_add, x, r * cc + cc + nb, &c, H_LINEAR, 1e-7, 1e-9,
                              k ? "matvec_add variable A, scalar b" : "matvec_add variable A, vector b");
        }
        /* values: A x + b against a loop, b vector and scalar (through the _Generic macro) */
        em_tape *t = em_tape_create();
        em_var Av = em_const_matrix(t, A, r, cc), xv = em_const(t, x, cc);
        em_var y1 = em_op_matvec_add(t, Av, xv, em_const(t, x + cc, r));
        em_var y2 = em_matvec_add(t, Av, xv, 0.5);
        assert_int_equal(em_tape_status(t), EM_OK);
        for (size_t i = 0; i < r; i++) {
            double d = 0;
            for (size_t j = 0; j < cc; j++) d += A[i * cc + j] * x[j];
            tu_assert_close(em_value(t, y1)[i], d + x[cc + i], 1e-14, 1e-14);
            tu_assert_close(em_value(t, y2)[i], d + 0.5, 1e-14, 1e-14);
        }
        em_tape_destroy(t);
        free(A);
        free(W);
        free(x);
    }
}

static em_var f_matmul(em_tape *t, const double *x, size_t n, em_var *lv, size_t *nl, void *ctx) {
    const lctx *c = ctx;
    lv[0] = em_leaf(t, x, c->r * c->k);
    lv[1] = em_leaf(t, x + c->r * c->k, c->k * c->c);
    *nl = 2;
    em_var A = em_op_reshape(t, lv[0], c->r, c->k), B = em_op_reshape(t, lv[1], c->k, c->c);
    return weigh(t, em_op_matmul(t, A, B), c);
}

/* B constant, A variable: only the first adjoint branch. */
static em_var f_matmul_constB(em_tape *t, const double *x, size_t n, em_var *lv, size_t *nl, void *ctx) {
    const lctx *c = ctx;
    lv[0] = em_leaf(t, x, n);
    *nl = 1;
    em_var A = em_op_reshape(t, lv[0], c->r, c->k);
    return weigh(t, em_op_matmul(t, A, em_const_matrix(t, c->A, c->k, c->c)), c);
}

static void test_matmul_gradient(void **state) {
    (void)state;
    size_t shapes[][3] = {{1, 1, 1}, {4, 3, 5}, {6, 8, 2}};
    for (size_t s = 0; s < 3; s++) {
        size_t m = shapes[s][0], k = shapes[s][1], n = shapes[s][2];
        double *W = rnd(m * n, -1, 1, 90 + s), *B = rnd(k * n, -1, 1, 95 + s);
        lctx c = {m, n, k, B, W};
        size_t len = m * k + k * n;
        double *x = rnd(len, -2, 2, 100 + s);
        tu_check_gradient(f_matmul, x, len, &c, H_LINEAR, 1e-7, 1e-9, "matmul");
        tu_check_gradient(f_matmul_constB, x, m * k, &c, H_LINEAR, 1e-7, 1e-9, "matmul const B");
        free(x);
        free(W);
        free(B);
    }
}

static em_var f_cholesky(em_tape *t, const double *x, size_t n, em_var *lv, size_t *nl, void *ctx) {
    const lctx *c = ctx;
    lv[0] = em_leaf(t, x, n);
    *nl = 1;
    return weigh(t, em_op_cholesky(t, em_op_reshape(t, lv[0], c->r, c->r)), c);
}

static void test_cholesky_gradient(void **state) {
    (void)state;
    size_t sizes[] = {1, 3, 7};
    for (size_t s = 0; s < 3; s++) {
        size_t n = sizes[s];
        /* W covers the upper triangle too: adjoints put there must be dropped (L's upper
         * triangle is the constant 0). */
        double *A = rnd_spd(n, 110 + s), *W = rnd(n * n, -1, 1, 120 + s);
        lctx c = {n, n, 0, NULL, W};
        double worst = tu_check_gradient(f_cholesky, A, n * n, &c, 1e-6, 1e-6, 1e-9, "cholesky");
        assert_true(worst < 1e-6);
        free(A);
        free(W);
    }
}

/* The upper triangle of A is not read, so its gradient is exactly zero; and logdet(chol(A))
 * has the known gradient A⁻¹, folded onto the lower triangle (2·(A⁻¹)_ij off the diagonal). */
static em_var f_logdet_chol(em_tape *t, const double *x, size_t n, em_var *lv, size_t *nl, void *ctx) {
    const lctx *c = ctx;
    lv[0] = em_leaf(t, x, n);
    *nl = 1;
    return em_op_logdet_cholesky(t, em_op_cholesky(t, em_op_reshape(t, lv[0], c->r, c->r)));
}

static void test_logdet_cholesky_gradient_is_inverse(void **state) {
    (void)state;
    size_t n = 4;
    double A[16] = {4, 1, 0.5, 0, 1, 3, 0.2, 0.1, 0.5, 0.2, 2, 0.3, 0, 0.1, 0.3, 1.5};
    lctx c = {n, n, 0, NULL, NULL};
    tu_check_gradient(f_logdet_chol, A, 16, &c, 1e-6, 1e-7, 1e-9, "logdet(cholesky)");
    em_tape *t = em_tape_create();
    em_var lv[1];
    size_t nl;
    em_var out = f_logdet_chol(t, A, 16, lv, &nl, &c);
    assert_int_equal(em_backward(t, out), EM_OK);
    const double *g = em_adjoint(t, lv[0]);
    /* A · G_sym = I where G_sym is the symmetric gradient recovered from the folded one */
    double G[16];
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            G[i * n + j] = i == j ? g[i * n + i] : 0.5 * (i > j ? g[i * n + j] : g[j * n + i]);
    for (size_t i = 0; i < n; i++) {
        for (size_t j = i + 1; j < n; j++) assert_true(g[i * n + j] == 0.0);
        for (size_t j = 0; j < n; j++) {
            double s = 0;
            for (size_t l = 0; l < n; l++) s += A[i * n + l] * G[l * n + j];
            tu_assert_close(s, i == j ? 1.0 : 0.0, 1e-12, 1e-12);
        }
    }
    em_tape_destroy(t);
}

static em_var f_trisolve_vec(em_tape *t, const double *x, size_t n, em_var *lv, size_t *nl, void *ctx) {
    const lctx *c = ctx;
    lv[0] = em_leaf(t, x, c->r * c->r);
    lv[1] = em_leaf(t, x + c->r * c->r, c->r * c->k);
    *nl = 2;
    em_var L = em_op_reshape(t, lv[0], c->r, c->r);
    em_var b = c->k == 1 ? lv[1] : em_op_reshape(t, lv[1], c->r, c->k);
    return weigh(t, em_op_trisolve_lower(t, L, b), c);
}

/* L constant: the right-hand side's adjoint alone. */
static em_var f_trisolve_constL(em_tape *t, const double *x, size_t n, em_var *lv, size_t *nl, void *ctx) {
    const lctx *c = ctx;
    lv[0] = em_leaf(t, x, n);
    *nl = 1;
    em_var b = c->k == 1 ? lv[0] : em_op_reshape(t, lv[0], c->r, c->k);
    return weigh(t, em_op_trisolve_lower(t, em_const_matrix(t, c->A, c->r, c->r), b), c);
}

static void test_trisolve_gradient(void **state) {
    (void)state;
    size_t cases[][2] = {{1, 1}, {3, 1}, {7, 1}, {1, 3}, {5, 3}, {7, 4}};
    for (size_t s = 0; s < 6; s++) {
        size_t n = cases[s][0], k = cases[s][1];
        double *L = rnd_lower(n, 130 + s), *b = rnd(n * k, -1, 1, 140 + s), *W = rnd(n * k, -1, 1, 150 + s);
        lctx c = {n, 0, k, L, W};
        size_t len = n * n + n * k;
        double *x = malloc(len * sizeof *x);
        memcpy(x, L, n * n * sizeof *x);
        memcpy(x + n * n, b, n * k * sizeof *x);
        tu_check_gradient(f_trisolve_vec, x, len, &c, 1e-6, 1e-7, 1e-9, k == 1 ? "trisolve vector" : "trisolve matrix");
        tu_check_gradient(f_trisolve_constL, b, n * k, &c, 1e-6, 1e-7, 1e-9, "trisolve const L");
        free(x);
        free(L);
        free(b);
        free(W);
    }
}

static em_var f_logdet(em_tape *t, const double *x, size_t n, em_var *lv, size_t *nl, void *ctx) {
    const lctx *c = ctx;
    lv[0] = em_leaf(t, x, n);
    *nl = 1;
    return em_op_logdet_cholesky(t, em_op_reshape(t, lv[0], c->r, c->r));
}

static void test_logdet_gradient(void **state) {
    (void)state;
    size_t sizes[] = {1, 3, 7};
    for (size_t s = 0; s < 3; s++) {
        size_t n = sizes[s];
        double *L = rnd_lower(n, 160 + s);
        lctx c = {n, n, 0, NULL, NULL};
        tu_check_gradient(f_logdet, L, n * n, &c, 1e-6, 1e-7, 1e-9, "logdet_cholesky");
        free(L);
    }
}

/* ---- errors --------------------------------------------------------------------------------- */

static void assert_msg_has(const em_tape *t, const char *needle) {
    const char *msg = em_tape_error(t)->msg;
    if (!strstr(msg, needle)) fail_msg("error message \"%s\" does not contain \"%s\"", msg, needle);
}

static void test_not_positive_definite(void **state) {
    (void)state;
    /* eigenvalues 3 and -1: the second pivot is 1 - 4 < 0 */
    double A[4] = {1, 2, 2, 1};
    em_tape *t = em_tape_create();
    em_var L = em_op_cholesky(t, em_const_matrix(t, A, 2, 2));
    assert_false(em_var_ok(L));
    assert_int_equal(em_tape_status(t), EM_ERR_NUMERIC);
    assert_msg_has(t, "cholesky");
    assert_msg_has(t, "not positive definite");
    assert_msg_has(t, "pivot 1");
    /* later ops on the failed result stay invalid and keep the first error */
    em_var ld = em_op_logdet_cholesky(t, L);
    assert_false(em_var_ok(ld));
    assert_msg_has(t, "cholesky: 2x2");

    /* a 3x3 that fails at the last pivot, with a gradient requested */
    double B[9] = {2, 1, 1, 1, 2, 1, 1, 1, -1};
    em_tape_reset(t);
    em_var b = em_op_reshape(t, em_leaf(t, B, 9), 3, 3);
    assert_false(em_var_ok(em_op_cholesky(t, b)));
    assert_int_equal(em_tape_status(t), EM_ERR_NUMERIC);
    assert_msg_has(t, "pivot 2");

    /* NaN and infinity in the lower triangle */
    double C[4] = {1, 0, NAN, 1};
    em_tape_reset(t);
    assert_false(em_var_ok(em_op_cholesky(t, em_const_matrix(t, C, 2, 2))));
    assert_int_equal(em_tape_status(t), EM_ERR_NONFINITE);
    assert_msg_has(t, "A[1,0]");
    em_tape_destroy(t);
}

static void test_shape_errors(void **state) {
    (void)state;
    double d[64] = {0};
    for (int i = 0; i < 64; i++) d[i] = 1.0 + i;
    em_tape *t = em_tape_create();

    assert_false(em_var_ok(em_op_matvec(t, em_const_matrix(t, d, 3, 4), em_const(t, d, 5))));
    assert_int_equal(em_tape_status(t), EM_ERR_SHAPE);
    assert_msg_has(t, "matvec: A is 3x4 but x has length 5");

    em_tape_reset(t);
    assert_false(em_var_ok(em_op_matvec_add(t, em_const_matrix(t, d, 3, 4), em_const(t, d, 4), em_const(t, d, 2))));
    assert_int_equal(em_tape_status(t), EM_ERR_SHAPE);
    assert_msg_has(t, "matvec_add: A is 3x4 but b has length 2 (need 3 or 1)");
    em_tape_reset(t);
    assert_false(em_var_ok(em_op_matvec_add(t, em_const_matrix(t, d, 3, 4), em_const(t, d, 3), em_scalar(t, 1))));
    assert_msg_has(t, "matvec_add: A is 3x4 but x has length 3");

    em_tape_reset(t);
    assert_false(em_var_ok(em_op_matmul(t, em_const_matrix(t, d, 2, 3), em_const_matrix(t, d, 4, 2))));
    assert_int_equal(em_tape_status(t), EM_ERR_SHAPE);
    assert_msg_has(t, "matmul: A is 2x3 but B is 4x2");

    em_tape_reset(t);
    assert_false(em_var_ok(em_op_cholesky(t, em_const_matrix(t, d, 2, 3))));
    assert_int_equal(em_tape_status(t), EM_ERR_SHAPE);
    assert_msg_has(t, "cholesky: A must be square, got 2x3");

    em_tape_reset(t);
    assert_false(em_var_ok(em_op_trisolve_lower(t, em_const_matrix(t, d, 3, 3), em_const(t, d, 4))));
    assert_int_equal(em_tape_status(t), EM_ERR_SHAPE);
    assert_msg_has(t, "trisolve_lower: L is 3x3 but b is 4x1");

    em_tape_reset(t);
    assert_false(em_var_ok(em_op_trisolve_lower(t, em_const_matrix(t, d, 3, 2), em_const(t, d, 3))));
    assert_int_equal(em_tape_status(t), EM_ERR_SHAPE);
    assert_msg_has(t, "trisolve_lower: L must be square");

    em_tape_reset(t);
    assert_false(em_var_ok(em_op_logdet_cholesky(t, em_const_matrix(t, d, 1, 4))));
    assert_int_equal(em_tape_status(t), EM_ERR_SHAPE);
    assert_msg_has(t, "logdet_cholesky: L must be square, got 1x4");

    /* the first error wins over a later one, and invalid inputs propagate */
    em_tape_reset(t);
    em_var bad = em_op_matvec(t, em_const_matrix(t, d, 3, 4), em_const(t, d, 5));
    em_var worse = em_op_matmul(t, em_const_matrix(t, d, 2, 3), em_const_matrix(t, d, 4, 2));
    assert_false(em_var_ok(worse));
    assert_false(em_var_ok(em_op_matvec(t, bad, bad)));
    assert_false(em_var_ok(em_op_trisolve_lower(t, bad, bad)));
    assert_msg_has(t, "matvec");
    em_tape_destroy(t);
}

static void test_singular_and_bad_factor(void **state) {
    (void)state;
    double L[4] = {1, 0, 3, 0}, b[2] = {1, 1}, Ln[4] = {-1, 0, 1, 2};
    em_tape *t = em_tape_create();
    assert_false(em_var_ok(em_op_trisolve_lower(t, em_const_matrix(t, L, 2, 2), em_const(t, b, 2))));
    assert_int_equal(em_tape_status(t), EM_ERR_NUMERIC);
    assert_msg_has(t, "trisolve_lower: L[1,1] = 0");
    em_tape_reset(t);
    assert_false(em_var_ok(em_op_logdet_cholesky(t, em_const_matrix(t, Ln, 2, 2))));
    assert_int_equal(em_tape_status(t), EM_ERR_DOMAIN);
    assert_msg_has(t, "logdet_cholesky: L[0,0] = -1");
    em_tape_destroy(t);
}

/* The same Gaussian-process-like computation repeated on one tape settles into a fixed arena. */
static void test_no_allocation_after_warmup(void **state) {
    (void)state;
    size_t n = 30;
    double *A = rnd_spd(n, 170), *b = rnd(n, -1, 1, 171);
    em_tape *t = em_tape_create();
    size_t cap = 0, mallocs = 0;
    for (int it = 0; it < 20; it++) {
        em_tape_reset(t);
        em_var a = em_op_reshape(t, em_leaf(t, A, n * n), n, n);
        em_var L = em_op_cholesky(t, a);
        em_var z = em_op_trisolve_lower(t, L, em_const(t, b, n));
        em_var out = em_op_add(t, em_op_dot(t, z, z), em_op_logdet_cholesky(t, L));
        assert_int_equal(em_backward(t, out), EM_OK);
        if (it == 0) {
            cap = em_arena_capacity(em_tape_arena(t));
        } else if (it == 1) {
            mallocs = em_arena_malloc_count(em_tape_arena(t));
            assert_true(em_arena_capacity(em_tape_arena(t)) >= cap);
            cap = em_arena_capacity(em_tape_arena(t));
        } else {
            assert_int_equal(em_arena_capacity(em_tape_arena(t)), cap);
            assert_int_equal(em_arena_malloc_count(em_tape_arena(t)), mallocs);
        }
    }
    em_tape_destroy(t);
    free(A);
    free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matvec_matmul_values),
        cmocka_unit_test(test_cholesky_trisolve_logdet_values),
        cmocka_unit_test(test_trisolve_matrix_values),
        cmocka_unit_test(test_matvec_gradient),
        cmocka_unit_test(test_matvec_gradient_only_matrix),
        cmocka_unit_test(test_matvec_add),
        cmocka_unit_test(test_matmul_gradient),
        cmocka_unit_test(test_cholesky_gradient),
        cmocka_unit_test(test_logdet_cholesky_gradient_is_inverse),
        cmocka_unit_test(test_trisolve_gradient),
        cmocka_unit_test(test_logdet_gradient),
        cmocka_unit_test(test_not_positive_definite),
        cmocka_unit_test(test_shape_errors),
        cmocka_unit_test(test_singular_and_bad_factor),
        cmocka_unit_test(test_no_allocation_after_warmup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
